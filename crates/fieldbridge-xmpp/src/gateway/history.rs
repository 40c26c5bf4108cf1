//! The gateway's side of the item history: what is published is kept (in
//! batches, by the connection loop), what subscribers missed while the link
//! was down is sent when it returns, and requests for older items are
//! served from it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fieldbridge_core::DeviceSpec;
use fieldbridge_store::{History, Item, Limits, StoreError, micros};
use minidom::Element;

use super::{Gateway, Live};
use crate::xml::NS_SENSORDATA;

/// Items published this long before a disconnect are sent again after the
/// reconnect: they may have been in flight when the link died.
/// Subscribers drop the duplicates by item id.
pub const REPLAY_MARGIN: Duration = Duration::from_secs(5);

/// Items of a device searched for a chat `history` of one of its points.
pub const SCAN: usize = 1000;

/// Items written to the history in one transaction at most.
pub const BATCH: usize = 512;

/// A device's history bounds, from `devices.<id>.history`.
pub(super) fn limits(spec: &DeviceSpec) -> Limits {
    let d = Limits::default();
    let h = spec.settings.history.unwrap_or_default();
    Limits {
        max_items: h.max_items.unwrap_or(d.max_items),
        max_age: h.max_age.unwrap_or(d.max_age),
    }
}

/// A device's live state as the history left it: its last item, its item
/// sequence, and nothing left to send.
///
/// The sequence goes on [`BATCH`] past the last stored item: at most that
/// many items wait to be written at any time, so numbers sent to
/// subscribers just before a crash are never used again.
pub(super) fn resume(history: &History, node: &str) -> Result<Live, StoreError> {
    let mut live = Live::default();
    if let Some(item) = history.last(node, 1)?.pop()
        && let Some(payload) = parse(&item)
    {
        live.seqnr = payload
            .attr("seqnr")
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0)
            .saturating_add(BATCH as u64);
        live.last_item_micros = item.id;
        live.last_sent = item.id;
        live.last_item = Some((item_id(item.id), payload));
    }
    Ok(live)
}

/// A stored payload as an element; `None` (logged) if it cannot be read.
/// Read with the stream's own limits, so that every payload that could be
/// published can be read back.
pub(super) fn parse(item: &Item) -> Option<Element> {
    match crate::reader::parse_element(&item.payload) {
        Some(e) if e.ns() == NS_SENSORDATA => Some(e),
        Some(_) | None => {
            tracing::warn!(item = item.id, "unreadable item in the history; skipped");
            None
        }
    }
}

/// The id of an item as XMPP sees it: fixed width, so that ids sort as
/// text in publication order.
pub fn item_id(micros: u64) -> String {
    format!("{micros:016}")
}

/// Items on their way to the history database, written off the async
/// runtime by the connection loop.
#[derive(Debug)]
pub struct HistoryWrite {
    history: Arc<History>,
    limits: Arc<HashMap<String, Limits>>,
    items: Vec<(String, Item)>,
}

impl HistoryWrite {
    /// Writes the batch (blocking: call it from `spawn_blocking`).
    pub fn write(self) -> Result<usize, StoreError> {
        let limits = |node: &str| self.limits.get(node).copied().unwrap_or_default();
        self.history
            .append(&self.items, limits, SystemTime::now())
            .map(|()| self.items.len())
    }
}

impl Gateway {
    /// The link to the server is down: stop producing notifications (the
    /// history keeps what is published) and plan to resend what may have
    /// been in flight.
    pub fn on_disconnected(&mut self) {
        self.connected = false;
        let rewind = micros(SystemTime::now() - REPLAY_MARGIN);
        for live in self.live.values_mut() {
            live.last_sent = live.last_sent.min(rewind);
        }
    }

    /// Items published and not yet written, for the connection loop to
    /// write; `None` when there are none.
    pub fn take_history(&mut self) -> Option<HistoryWrite> {
        if self.unsaved.is_empty() {
            return None;
        }
        Some(HistoryWrite {
            history: self.history.clone(),
            limits: self.limits.clone(),
            items: std::mem::take(&mut self.unsaved),
        })
    }

    /// Whether notifications are being sent (the link is up).
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// How many published items wait to be written.
    pub fn unsaved(&self) -> usize {
        self.unsaved.len()
    }

    /// One page of `node`'s items, oldest first: at most `max` of those
    /// newer than `after` and older than `before`; the oldest of them when
    /// `after` is given ("what came after X"), else the newest ("the last
    /// N"). Stored items and those not yet written alike: the unwritten are
    /// all newer than the stored.
    pub(super) fn page(
        &self,
        node: &str,
        after: Option<u64>,
        before: Option<u64>,
        max: usize,
    ) -> Result<Vec<Item>, StoreError> {
        let upper = before.unwrap_or(u64::MAX);
        let unsaved = self
            .unsaved
            .iter()
            .filter(|(n, i)| n == node && i.id < upper && after.is_none_or(|a| i.id > a))
            .map(|(_, i)| i);
        match after {
            Some(after) => {
                let mut items: Vec<Item> = self
                    .history
                    .after(node, after, max)?
                    .into_iter()
                    .take_while(|i| i.id < upper)
                    .collect();
                let room = max.saturating_sub(items.len());
                items.extend(unsaved.take(room).cloned());
                Ok(items)
            }
            None => {
                let unsaved: Vec<&Item> = unsaved.collect();
                let newest = &unsaved[unsaved.len().saturating_sub(max)..];
                let room = max.saturating_sub(newest.len());
                let mut items = if room > 0 {
                    self.history.before(node, upper, room)?
                } else {
                    Vec::new()
                };
                items.extend(newest.iter().map(|i| (*i).clone()));
                Ok(items)
            }
        }
    }

    /// How many items `node` has, stored or not yet written.
    pub(super) fn item_count(&self, node: &str) -> Result<u64, StoreError> {
        let unsaved = self.unsaved.iter().filter(|(n, _)| n == node).count();
        Ok(self.history.len(node)? + unsaved as u64)
    }

    /// One item of `node` by id.
    pub(super) fn item(&self, node: &str, id: u64) -> Result<Option<Item>, StoreError> {
        if let Some((_, i)) = self.unsaved.iter().find(|(n, i)| n == node && i.id == id) {
            return Ok(Some(i.clone()));
        }
        self.history.get(node, id)
    }

    /// The last `count` published values of one point, oldest first, as
    /// (timestamp, value) text. Items hold one reading each; the newest
    /// [`SCAN`] items of the device are searched.
    pub(super) fn point_history(
        &self,
        node: &str,
        point: &str,
        count: usize,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let mut out: Vec<(String, String)> = self
            .page(node, None, None, SCAN)?
            .iter()
            .rev()
            .filter_map(parse)
            .filter_map(|payload| {
                let ts = payload
                    .get_child("node", NS_SENSORDATA)?
                    .get_child("timestamp", NS_SENSORDATA)?;
                let field = ts.children().find(|f| f.attr("name") == Some(point))?;
                let value = match (field.name(), field.attr("value")?) {
                    ("boolean", "true") => "on".to_owned(),
                    ("boolean", "false") => "off".to_owned(),
                    (_, v) => v.to_owned(),
                };
                Some((ts.attr("value")?.to_owned(), value))
            })
            .take(count)
            .collect();
        out.reverse();
        Ok(out)
    }

    /// Every node subscriber's missed items, oldest first.
    pub(super) fn missed_items(&mut self) -> Vec<Element> {
        let mut out = Vec::new();
        let nodes: Vec<String> = self
            .subs
            .pubsub
            .iter()
            .filter(|(_, s)| !s.is_empty())
            .map(|(n, _)| n.clone())
            .collect();
        for node in nodes {
            let Some(since) = self.live.get(node.as_str()).map(|l| l.last_sent) else {
                continue;
            };
            let max = self
                .limits
                .get(&node)
                .map_or(Limits::default().max_items, |l| l.max_items);
            let items = match self.page(
                &node,
                Some(since),
                None,
                usize::try_from(max).unwrap_or(usize::MAX),
            ) {
                Ok(items) => items,
                Err(e) => {
                    tracing::error!(device = %node, error = %e, "cannot read the history; subscribers get only new items");
                    continue;
                }
            };
            let Some(newest) = items.last().map(|i| i.id) else {
                continue;
            };
            let subscribers: Vec<String> = self.subs.pubsub[&node].iter().cloned().collect();
            for item in &items {
                let Some(payload) = parse(item) else { continue };
                for jid in &subscribers {
                    out.push(self.notification(jid, &node, &item_id(item.id), payload.clone()));
                    self.stats.notifications += 1;
                }
            }
            tracing::info!(device = %node, items = items.len(), subscribers = subscribers.len(), "sent items published while disconnected");
            if let Some(live) = self.live.get_mut(node.as_str()) {
                live.last_sent = newest;
            }
        }
        out
    }
}
