//! The gateway's side of the store: published items and subscription
//! changes are written in batches by the connection loop, off the event
//! loop; reads for item requests, chat `history`, historical readouts and
//! the catch-up after an outage run there too ([`StoreRead`]), and are
//! completed here with what is not written yet.
//!
//! The store keeps typed snapshots (a device's whole state per item), never
//! XML: stanzas are built when sent.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fieldbridge_core::{DeviceSpec, PointId, Quality, Reading, Sample, Unit, Value};
use fieldbridge_store::{Change, Limits, Snapshot, Store, StoreError, SubscriptionKind, micros};
use minidom::Element;

use super::entity::Entity;
use super::items::{NodeState, Nodes, items_reply};
use super::subscribers::Subscribers;
use super::{DeviceState, Gateway};
use crate::xml::NS_SENSORDATA;
use crate::xml::{DefinedCondition, ErrorType};

/// Items published this long before a disconnect are sent again after the
/// reconnect: they may have been in flight when the link died.
/// Subscribers drop the duplicates by item id.
pub const REPLAY_MARGIN: Duration = Duration::from_secs(5);

/// Items of a device searched for a chat `history` of one of its points.
pub const SCAN: usize = 1000;

/// Items waiting for the store at most before a write starts at once.
pub const BATCH: usize = 512;

/// Items published and not yet written, at most: past it the connection
/// loop takes no more bus events until the store has caught up (the bus
/// then keeps the newest value per point), so a slow disk costs neither
/// unbounded memory nor more than this many items to a crash.
pub const MAX_UNWRITTEN: usize = 4096;

/// A device's history bounds, from `devices.<id>.history`.
pub(super) fn limits(spec: &DeviceSpec) -> Limits {
    let d = Limits::default();
    let h = spec.settings.history.unwrap_or_default();
    Limits {
        max_items: h.max_items.unwrap_or(d.max_items),
        max_age: h.max_age.unwrap_or(d.max_age),
    }
}

/// A device's live state as the store left it: its last item, its state
/// (each value with the time it was read, so nothing old passes for new),
/// its item sequence, and nothing left to send.
///
/// The sequence goes on past the last stored item by more than can wait to
/// be written at any time (a node has at most [`MAX_UNWRITTEN`] + 1 items
/// unwritten: intake stops at the limit, and a device has at most one item
/// pending), so numbers sent to subscribers just before a crash are never
/// used again.
pub(super) fn resume(store: &Store, node: &str) -> Result<(NodeState, DeviceState), StoreError> {
    let mut items = NodeState::default();
    let mut state = DeviceState::default();
    if let Some(item) = store.last(node, 1)?.pop() {
        items.seqnr = item.seqnr.saturating_add(MAX_UNWRITTEN as u64 + 1);
        items.last_sent = item.id;
        state.latest = item
            .samples
            .iter()
            .map(|s| (s.reading.point.clone(), s.clone()))
            .collect();
        items.last_item = Some(Arc::new(item));
    }
    Ok((items, state))
}

/// The items of an older version (one reading per item, as XEP-0323 XML)
/// as snapshots: each item becomes the device's whole state as it stood
/// after that reading, so that a subscriber that asks for old items gets
/// what a new one would have shown. Unreadable items are skipped (logged).
pub(super) fn upgrade(node: &str, items: Vec<(u64, String)>) -> Vec<Snapshot> {
    let mut state: BTreeMap<PointId, Sample> = BTreeMap::new();
    let mut out = Vec::with_capacity(items.len());
    let mut skipped = 0usize;
    for (id, payload) in items {
        let Some(fields) =
            crate::reader::parse_element(&payload).filter(|e| e.ns() == NS_SENSORDATA)
        else {
            skipped += 1;
            continue;
        };
        let seqnr = fields
            .attr("seqnr")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let samples = legacy_samples(&fields, UNIX_EPOCH + Duration::from_micros(id));
        if samples.is_empty() {
            skipped += 1;
            continue;
        }
        for s in samples {
            state.insert(s.reading.point.clone(), s);
        }
        out.push(Snapshot {
            id,
            seqnr,
            samples: state.values().cloned().collect(),
        });
    }
    if skipped > 0 {
        tracing::warn!(
            device = node,
            skipped,
            "items of the previous version that could not be read were left out"
        );
    }
    out
}

/// The readings in an old item's `<fields>`, read at its timestamp (or,
/// without a readable one, at the item's own time).
fn legacy_samples(fields: &Element, item_time: SystemTime) -> Vec<Sample> {
    let mut out = Vec::new();
    for node in fields.children().filter(|c| c.name() == "node") {
        for ts in node.children().filter(|c| c.name() == "timestamp") {
            let at = ts
                .attr("value")
                .and_then(parse_timestamp)
                .unwrap_or(item_time);
            for f in ts.children() {
                let (Some(name), Some(text)) = (f.attr("name"), f.attr("value")) else {
                    continue;
                };
                let Ok(point) = PointId::new(name) else {
                    continue;
                };
                let value = match f.name() {
                    "boolean" => Value::Bool(text == "true"),
                    "numeric" => match text.parse::<i64>() {
                        Ok(i) => Value::Int(i),
                        Err(_) => match text.parse::<f64>() {
                            Ok(x) if x.is_finite() => Value::Float(x),
                            _ => continue,
                        },
                    },
                    _ => Value::Text(text.to_owned()),
                };
                let quality = if f.attr("invalid") == Some("true") {
                    Quality::Bad {
                        reason: "marked invalid".to_owned(),
                    }
                } else if f.attr("questionable") == Some("true") {
                    Quality::Uncertain
                } else {
                    Quality::Good
                };
                out.push(Sample {
                    at,
                    reading: Reading {
                        point,
                        value,
                        unit: f.attr("unit").map(|u| Unit(u.to_owned())),
                        quality,
                    },
                });
            }
        }
    }
    out
}

/// `2026-11-25T05:00:00.123Z` (what [`crate::sensordata::timestamp`]
/// writes) back to a time; `None` for anything else.
fn parse_timestamp(t: &str) -> Option<SystemTime> {
    let b = t.as_bytes();
    if b.len() != 24 || b[4] != b'-' || b[10] != b'T' || b[23] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| t.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss, ms) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let millis = ((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1000 + ms).max(0);
    Some(UNIX_EPOCH + Duration::from_millis(u64::try_from(millis).ok()?))
}

/// The id of an item as XMPP sees it: fixed width, so that ids sort as
/// text in publication order.
pub fn item_id(micros: u64) -> String {
    format!("{micros:016}")
}

/// Items and subscription changes on their way to the store, written off
/// the async runtime by the connection loop.
#[derive(Debug)]
pub struct StoreWrite {
    store: Arc<Store>,
    limits: Arc<HashMap<String, Limits>>,
    items: Vec<(String, Arc<Snapshot>)>,
    changes: Vec<Change>,
}

impl StoreWrite {
    /// Writes the batch in one transaction (blocking: call it from
    /// `spawn_blocking`); the number of items written.
    pub fn write(self) -> Result<usize, StoreError> {
        let limits = |node: &str| self.limits.get(node).copied().unwrap_or_default();
        self.store
            .commit(&self.items, &self.changes, limits, SystemTime::now())
            .map(|()| self.items.len())
    }
}

/// Which items a read asks for.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Query {
    /// At most `max` of those newer than `after` and older than `before`:
    /// the oldest of them when `after` is given ("what came after X"),
    /// else the newest ("the last N"); oldest first.
    Page {
        after: Option<u64>,
        before: Option<u64>,
        max: usize,
    },
    /// These items, by id, in the order asked.
    Ids(Vec<u64>),
}

/// What a finished read is for.
#[derive(Debug, Clone)]
pub(super) enum Then {
    /// A pubsub items request: the IQ result.
    Items { request: Element, rsm: bool },
    /// A chat `history`: the reply message, addressed and threaded.
    ChatHistory {
        reply: Element,
        point: PointId,
        count: usize,
    },
    /// A XEP-0323 historical readout: a `fields` message.
    Historical {
        to: String,
        seqnr: String,
        points: Vec<PointId>,
        done: bool,
    },
    /// After a reconnect: the items the node's subscribers missed, those
    /// published after `since`.
    Missed { since: u64 },
}

/// A read of the store, run off the event loop by the connection loop and
/// completed by [`Gateway::read_done`].
#[derive(Debug)]
pub struct StoreRead {
    store: Arc<Store>,
    node: String,
    query: Query,
    then: Then,
}

/// What a [`StoreRead`] found.
#[derive(Debug)]
pub struct Found {
    items: Result<Vec<Snapshot>, StoreError>,
    /// Items the node holds in the store.
    stored: u64,
}

impl StoreRead {
    /// Reads (blocking: call it from `spawn_blocking`).
    pub fn run(&self) -> Found {
        let store = &self.store;
        let node = self.node.as_str();
        let items = match &self.query {
            Query::Page {
                after: Some(after),
                before,
                max,
            } => store.after(node, *after, *max).map(|items| {
                items
                    .into_iter()
                    .take_while(|i| before.is_none_or(|b| i.id < b))
                    .collect()
            }),
            Query::Page {
                after: None,
                before,
                max,
            } => store.before(node, before.unwrap_or(u64::MAX), *max),
            Query::Ids(ids) => ids
                .iter()
                .filter_map(|id| store.get(node, *id).transpose())
                .collect(),
        };
        let stored = if matches!(self.then, Then::Items { rsm: true, .. }) {
            store.len(node).unwrap_or(0)
        } else {
            0
        };
        Found { items, stored }
    }
}

impl Nodes {
    /// The link to the server is down: stop producing notifications (the
    /// history keeps what is published) and plan to resend what may have
    /// been in flight.
    fn disconnected(&mut self) {
        self.connected = false;
        let rewind = micros(SystemTime::now() - REPLAY_MARGIN);
        for node in self.all_mut() {
            node.last_sent = node.last_sent.min(rewind);
        }
    }

    /// What waits to be written, with the subscription `changes`; `None`
    /// when nothing does or a write is still under way (one at a time, so
    /// that the store sees changes in order).
    fn take_writes(&mut self, subscribers: &mut Subscribers) -> Option<StoreWrite> {
        if !self.writing.is_empty() || (self.unsaved.is_empty() && subscribers.unsaved() == 0) {
            return None;
        }
        self.writing = std::mem::take(&mut self.unsaved);
        Some(StoreWrite {
            store: self.store.clone(),
            limits: self.limits.clone(),
            items: self.writing.clone(),
            changes: subscribers.take_changes(),
        })
    }

    /// Asks for a read of `node`'s items; [`Gateway::read_done`] answers.
    pub(super) fn read(&mut self, node: &str, query: Query, then: Then) {
        self.reads.push(StoreRead {
            store: self.store.clone(),
            node: node.to_owned(),
            query,
            then,
        });
    }

    /// Items of `node` not in the store yet (all newer than the stored).
    fn unwritten_of<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a Arc<Snapshot>> + 'a {
        self.writing
            .iter()
            .chain(&self.unsaved)
            .filter(move |(n, _)| n == node)
            .map(|(_, s)| s)
    }

    /// `stored` completed with what is not written yet, as `query` asks;
    /// and how many items the node has.
    fn complete(
        &self,
        node: &str,
        query: &Query,
        stored: Vec<Snapshot>,
        stored_count: u64,
    ) -> (Vec<Arc<Snapshot>>, u64) {
        let newest_stored = stored.last().map_or(0, |s| s.id);
        let mut items: Vec<Arc<Snapshot>> = stored.into_iter().map(Arc::new).collect();
        let mut unwritten = 0u64;
        match query {
            Query::Page { after, before, max } => {
                for s in self.unwritten_of(node) {
                    unwritten += 1;
                    if s.id > newest_stored
                        && after.is_none_or(|a| s.id > a)
                        && before.is_none_or(|b| s.id < b)
                    {
                        items.push(s.clone());
                    }
                }
                items.sort_by_key(|s| s.id);
                items.dedup_by_key(|s| s.id);
                if after.is_some() {
                    items.truncate(*max);
                } else {
                    let skip = items.len().saturating_sub(*max);
                    items.drain(..skip);
                }
            }
            Query::Ids(ids) => {
                for id in ids {
                    if !items.iter().any(|s| s.id == *id)
                        && let Some(s) = self.unwritten_of(node).find(|s| s.id == *id)
                    {
                        items.push(s.clone());
                    }
                }
            }
        }
        (items, stored_count + unwritten)
    }

    /// After (re)connecting: a read of what each node's subscribers missed.
    pub(super) fn read_missed(&mut self, subscribers: &Subscribers) {
        let nodes: Vec<(String, u64, usize)> = subscribers
            .all(SubscriptionKind::Pubsub)
            .filter(|(_, s)| !s.is_empty())
            .filter_map(|(n, _)| {
                let since = self.get(n.as_str())?.last_sent;
                let max = self.limits(n).max_items;
                Some((n.clone(), since, usize::try_from(max).unwrap_or(usize::MAX)))
            })
            .collect();
        for (node, since, max) in nodes {
            if let Some(n) = self.get_mut(node.as_str()) {
                n.catching_up = true;
                n.first_live = None;
            }
            self.read(
                &node,
                Query::Page {
                    after: Some(since),
                    before: None,
                    max,
                },
                Then::Missed { since },
            );
        }
    }

    /// Sends `items` published after `since`, oldest first, to every
    /// subscriber of `node`: up to the first item sent live since the
    /// reconnect (that one and those after it went out already). Ids are
    /// stable, so a subscriber that already has one can drop the duplicate.
    fn send_missed(
        &mut self,
        me: &Entity,
        node: &str,
        since: u64,
        items: &[Arc<Snapshot>],
        subscribers: &mut Subscribers,
    ) {
        let Some(n) = self.get_mut(node) else {
            return;
        };
        let upper = n.first_live.take().unwrap_or(u64::MAX);
        n.catching_up = false;
        if !self.connected {
            return;
        }
        let missed: Vec<&Arc<Snapshot>> = items
            .iter()
            .filter(|s| s.id > since && s.id < upper)
            .collect();
        let Some(newest) = missed.last().map(|s| s.id) else {
            return;
        };
        let mut sent_to = 0;
        for item in &missed {
            sent_to = self.notify(me, node, item, subscribers);
        }
        tracing::info!(device = %node, items = missed.len(), subscribers = sent_to, "sent items published while disconnected");
        if let Some(n) = self.get_mut(node) {
            n.last_sent = n.last_sent.max(newest);
        }
    }
}

impl Gateway {
    /// The link to the server is down: stop producing notifications (the
    /// history keeps what is published) and plan to resend what may have
    /// been in flight.
    pub fn on_disconnected(&mut self) {
        self.nodes.disconnected();
    }

    /// What waits to be written, for the connection loop to write; `None`
    /// when nothing does or a write is still under way (one at a time, so
    /// that the store sees changes in order).
    pub fn take_writes(&mut self) -> Option<StoreWrite> {
        self.nodes.take_writes(&mut self.subscribers)
    }

    /// The write handed out by [`Gateway::take_writes`] ended. A failure is
    /// logged; its items are then only in what subscribers received.
    pub fn written(&mut self, result: Result<usize, StoreError>) {
        if let Err(e) = result {
            tracing::error!(error = %e, items = self.nodes.writing.len(), "cannot write to the store; these items and subscription changes are lost on restart");
        }
        self.nodes.writing.clear();
    }

    /// Whether notifications are being sent (the link is up).
    pub fn is_connected(&self) -> bool {
        self.nodes.connected
    }

    /// Whether subscriptions changed since the last write: they are
    /// written at once, so that a subscriber is not lost to a crash.
    pub fn subscriptions_changed(&self) -> bool {
        self.subscribers.unsaved() > 0
    }

    /// How many published items and subscription changes wait for the store.
    pub fn unsaved(&self) -> usize {
        self.nodes.unsaved.len() + self.subscribers.unsaved()
    }

    /// Published items not yet in the store (waiting, or being written).
    pub fn unwritten(&self) -> usize {
        self.nodes.unsaved.len() + self.nodes.writing.len()
    }

    /// Reads asked for since the connection loop last took them.
    pub fn take_reads(&mut self) -> Vec<StoreRead> {
        std::mem::take(&mut self.nodes.reads)
    }

    /// What a read found, completed with what is not written yet: the
    /// answer it was for.
    pub fn read_done(&mut self, read: StoreRead, found: Found) -> Vec<Element> {
        let StoreRead {
            node, query, then, ..
        } = read;
        let stored = match found.items {
            Ok(items) => items,
            Err(e) => {
                tracing::error!(device = %node, error = %e, "cannot read the history");
                return self.read_failed(&node, then);
            }
        };
        let (items, count) = self.nodes.complete(&node, &query, stored, found.stored);
        match then {
            Then::Items { request, rsm } => {
                vec![items_reply(&request, &node, &items, rsm.then_some(count))]
            }
            Then::ChatHistory {
                reply,
                point,
                count,
            } => {
                let mut values = point_history(&items, &point, count);
                // A value read in the last instants may still wait for its
                // item: what `get` shows, `history` shows too.
                if let Some(newest) = self
                    .devices
                    .get(node.as_str())
                    .and_then(|d| d.latest.get(&point))
                    && values.last().is_none_or(|last| {
                        last.at < newest.at
                            && (last.reading.value != newest.reading.value
                                || last.reading.quality != newest.reading.quality)
                    })
                {
                    values.push(newest.clone());
                    if values.len() > count {
                        values.remove(0);
                    }
                }
                let spec = self.directory.device(&node).cloned();
                let text = match spec.as_ref().and_then(|s| s.points.get(&point)) {
                    Some(p) => crate::chat::history(p, &values),
                    None => format!("{point}: no history yet"),
                };
                vec![super::messages::with_body(reply, text)]
            }
            Then::Historical {
                to,
                seqnr,
                points,
                done,
            } => vec![self.historical_done(&node, &to, &seqnr, &points, done, &items)],
            Then::Missed { since } => {
                self.nodes
                    .send_missed(&self.me, &node, since, &items, &mut self.subscribers);
                Vec::new()
            }
        }
    }

    /// The answer when the store could not be read.
    fn read_failed(&mut self, node: &str, then: Then) -> Vec<Element> {
        match then {
            Then::Items { request, .. } => vec![crate::xml::iq_error(
                &request,
                ErrorType::Wait,
                DefinedCondition::InternalServerError,
                None,
            )],
            Then::ChatHistory { reply, .. } => vec![super::messages::with_body(
                reply,
                "The history cannot be read right now.".to_owned(),
            )],
            Then::Historical { to, seqnr, .. } => {
                vec![self.historical_failed(node, &to, &seqnr)]
            }
            Then::Missed { .. } => {
                if let Some(n) = self.nodes.get_mut(node) {
                    n.first_live = None;
                    n.catching_up = false;
                }
                Vec::new()
            }
        }
    }
}

/// The last `count` values of `point` in `items`, oldest first, each with
/// the time it was first read: an item repeats the values that did not
/// change (read again at every poll), and a person asking for a history
/// wants the changes, not "off, off, off".
fn point_history(items: &[Arc<Snapshot>], point: &PointId, count: usize) -> Vec<Sample> {
    let mut out: Vec<Sample> = Vec::new();
    for s in items.iter().rev() {
        let Some(sample) = s.samples.iter().find(|x| &x.reading.point == point) else {
            continue;
        };
        let full = out.len() == count;
        match out.last_mut() {
            // The same value, read earlier: the run started then.
            Some(last)
                if last.reading.value == sample.reading.value
                    && last.reading.quality == sample.reading.quality =>
            {
                *last = sample.clone();
            }
            _ if full => break,
            _ => out.push(sample.clone()),
        }
    }
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_read_back_what_was_written() {
        for ms in [0u64, 951_782_400_000, 1_795_582_800_123, 4_102_444_800_999] {
            let t = UNIX_EPOCH + Duration::from_millis(ms);
            assert_eq!(
                parse_timestamp(&crate::sensordata::timestamp(t)),
                Some(t),
                "{ms}"
            );
        }
        assert_eq!(parse_timestamp("yesterday"), None);
        assert_eq!(parse_timestamp("2026-11-25 05:00:00.123Z"), None);
    }

    #[test]
    fn old_items_become_the_state_after_each_reading() {
        let item = |seqnr: u32, point: &str, field: &str| {
            format!(
                "<fields xmlns='urn:xmpp:iot:sensordata' done='true' seqnr='{seqnr}'><node nodeId='boiler'>\
<timestamp value='2026-11-25T05:00:0{seqnr}.000Z'>{field}</timestamp></node></fields>"
            )
            .replace("POINT", point)
        };
        let items = vec![
            (
                1,
                item(
                    1,
                    "temperature",
                    "<numeric automaticReadout='true' momentary='true' name='POINT' unit='°C' value='21.5'/>",
                ),
            ),
            (2, "not xml".to_owned()),
            (
                3,
                item(
                    3,
                    "pump",
                    "<boolean automaticReadout='true' invalid='true' momentary='true' name='POINT' value='true'/>",
                ),
            ),
            (
                4,
                item(
                    4,
                    "temperature",
                    "<numeric automaticReadout='true' momentary='true' name='POINT' unit='°C' value='22'/>",
                ),
            ),
        ];
        let snapshots = upgrade("boiler", items);
        type View = (u64, u64, Vec<(String, String)>);
        let view: Vec<View> = snapshots
            .iter()
            .map(|s| {
                (
                    s.id,
                    s.seqnr,
                    s.samples
                        .iter()
                        .map(|x| (x.reading.point.to_string(), x.reading.value.to_string()))
                        .collect(),
                )
            })
            .collect();
        let pair = |p: &str, v: &str| (p.to_owned(), v.to_owned());
        assert_eq!(
            view,
            vec![
                (1, 1, vec![pair("temperature", "21.5")]),
                (3, 3, vec![pair("pump", "on"), pair("temperature", "21.5")]),
                (4, 4, vec![pair("pump", "on"), pair("temperature", "22")]),
            ]
        );
        let pump = &snapshots[1].samples[0];
        assert!(!pump.reading.quality.is_good());
        assert_eq!(
            crate::sensordata::timestamp(pump.at),
            "2026-11-25T05:00:03.000Z"
        );
        assert_eq!(
            snapshots[2].samples[1].reading.unit,
            Some(Unit("°C".into()))
        );
    }
}
