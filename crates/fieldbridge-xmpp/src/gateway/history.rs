//! The gateway's side of the store: published items and subscription
//! changes are written in batches by the connection loop, off the event
//! loop; reads for item requests, chat `history`, historical readouts and
//! the catch-up after an outage run there too ([`StoreRead`]), and are
//! completed here with what is not written yet.
//!
//! The store keeps typed snapshots (a device's whole state per item), never
//! XML: stanzas are built when sent.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fieldbridge_core::telemetry::{HistorySize, InternalEvent, LinkChanged, Telemetry};
use fieldbridge_core::{DeviceSpec, PointId, Sample};
use fieldbridge_store::{Change, Limits, Snapshot, Store, StoreError, SubscriptionKind, micros};
use minidom::Element;

use super::entity::Entity;
use super::items::{NodeState, Nodes, items_reply};
use super::subscribers::Subscribers;
use super::{DeviceState, Gateway};
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
    telemetry: Arc<Telemetry>,
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
            .commit(&self.items, &self.changes, limits, SystemTime::now())?;
        // The history size of what was written, counted here, off the
        // event loop.
        let mut nodes: Vec<&str> = self.items.iter().map(|(n, _)| n.as_str()).collect();
        nodes.sort_unstable();
        nodes.dedup();
        for device in nodes {
            if let Ok(items) = self.store.len(device) {
                HistorySize { device, items }.emit(&self.telemetry);
            }
        }
        Ok(self.items.len())
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
            // Held items are in the history: the next catch-up sends them.
            node.held.clear();
            node.catching_up = false;
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
            telemetry: Arc::clone(&self.telemetry),
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
                n.held.clear();
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
    /// subscriber of `node`, up to the first item held while catching up,
    /// then the held ones: every item in order. Ids are stable, so a
    /// subscriber that already has one can drop the duplicate.
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
        let held = std::mem::take(&mut n.held);
        n.catching_up = false;
        if !self.connected {
            return;
        }
        let upper = held.first().map_or(u64::MAX, |s| s.id);
        let missed: Vec<&Arc<Snapshot>> = items
            .iter()
            .filter(|s| s.id > since && s.id < upper)
            .collect();
        let mut sent_to = 0;
        for item in &missed {
            sent_to = self.notify(me, node, item, subscribers);
        }
        if !missed.is_empty() {
            tracing::info!(device = %node, items = missed.len(), subscribers = sent_to, "sent items published while disconnected");
        }
        for item in &held {
            self.notify(me, node, item, subscribers);
        }
        let newest = missed
            .iter()
            .map(|s| s.id)
            .chain(held.iter().map(|s| s.id))
            .max();
        if let (Some(newest), Some(n)) = (newest, self.get_mut(node)) {
            n.last_sent = n.last_sent.max(newest);
        }
    }
}

impl Gateway {
    /// The link to the server is down: stop producing notifications (the
    /// history keeps what is published) and plan to resend what may have
    /// been in flight.
    pub fn on_disconnected(&mut self) {
        LinkChanged { up: false }.emit(&self.telemetry);
        self.nodes.disconnected();
        self.alerts.room.disconnected();
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
                let (mut values, mut total) = point_history(&items, &point, count);
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
                    total += 1;
                    if values.len() > count {
                        values.remove(0);
                    }
                }
                let found = crate::chat::HistoryFound {
                    total,
                    // The scan stopped at its bound: older values may exist.
                    more: items.len() >= SCAN,
                    asked: count,
                };
                let spec = self.directory.device(&node).cloned();
                let text = match spec.as_ref().and_then(|s| s.points.get(&point)) {
                    Some(p) => crate::chat::history(p, &values, found, &self.zone),
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
            Then::Missed { since } => {
                // What was missed stays unread; what was held goes now.
                self.nodes
                    .send_missed(&self.me, node, since, &[], &mut self.subscribers);
                Vec::new()
            }
        }
    }
}

/// The last `count` values of `point` in `items`, oldest first, each with
/// the time it was first read: an item repeats the values that did not
/// change (read again at every poll), and a person asking for a history
/// wants the changes, not "off, off, off". Also how many values `items`
/// hold in all, for the answer to say what it left out.
fn point_history(items: &[Arc<Snapshot>], point: &PointId, count: usize) -> (Vec<Sample>, usize) {
    let mut out: Vec<Sample> = Vec::new();
    // Distinct values (runs of one value) in all of `items`.
    let mut total = 0;
    let mut previous: Option<&Sample> = None;
    for s in items.iter().rev() {
        let Some(sample) = s.samples.iter().find(|x| &x.reading.point == point) else {
            continue;
        };
        let same = previous.is_some_and(|p| {
            p.reading.value == sample.reading.value && p.reading.quality == sample.reading.quality
        });
        previous = Some(sample);
        if same {
            // The same value, read earlier: the run started then.
            if total <= count
                && let Some(last) = out.last_mut()
            {
                *last = sample.clone();
            }
            continue;
        }
        total += 1;
        if out.len() < count {
            out.push(sample.clone());
        }
    }
    out.reverse();
    (out, total)
}
