//! A device's state as pubsub items: one item per device update, holding
//! every point's latest value (what a subscriber that joins late needs, as
//! with PEP), published when readings came, after a short window that
//! gathers what arrives together. An item's payload is serialized once and
//! written to each subscriber as is ([`Notification`]).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fieldbridge_store::{Snapshot, micros};
use minidom::Element;
use tokio::time::Instant;

use super::history::item_id;
use super::{Gateway, NS_RSM};
use crate::sensordata::{self, FieldType, escape_into};
use crate::xml::{NS_PUBSUB, NS_PUBSUB_EVENT, child, element, iq_result, set, stanza, text, with};

/// Readings of one device that arrive within this long of the first go
/// into one item: the points of one MQTT device published as separate
/// messages, or a poll whose values trickle in.
pub const ITEM_WINDOW: Duration = Duration::from_millis(50);

/// XEP-0203 delayed delivery.
pub const NS_DELAY: &str = "urn:xmpp:delay";

/// One item on its way to a node's subscribers: the payload serialized
/// once, written to each of them.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    from: String,
    node: String,
    id: String,
    payload: Arc<str>,
    to: Vec<String>,
}

impl Notification {
    /// Appends the notification messages (one per subscriber) as XML.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let mut s = String::with_capacity(self.to.len() * (200 + self.payload.len()));
        for to in &self.to {
            s.push_str("<message from='");
            escape_into(&mut s, &self.from);
            s.push_str("' to='");
            escape_into(&mut s, to);
            s.push_str("' type='headline'><event xmlns='");
            s.push_str(NS_PUBSUB_EVENT);
            s.push_str("'><items node='");
            escape_into(&mut s, &self.node);
            s.push_str("'><item id='");
            s.push_str(&self.id);
            s.push_str("'>");
            s.push_str(&self.payload);
            s.push_str("</item></items></event></message>");
        }
        out.extend_from_slice(s.as_bytes());
    }

    /// How many messages this is.
    pub fn len(&self) -> usize {
        self.to.len()
    }

    /// True when it goes to nobody.
    pub fn is_empty(&self) -> bool {
        self.to.is_empty()
    }

    /// The messages as elements (for tests and logs).
    pub fn elements(&self) -> Vec<Element> {
        let mut out = Vec::new();
        self.write_to(&mut out);
        let text = String::from_utf8_lossy(&out);
        // Each message parsed on its own: the text is a sequence of them.
        text.split_inclusive("</message>")
            .filter_map(|m| {
                let m = m.replacen("<message ", "<message xmlns='jabber:component:accept' ", 1);
                crate::reader::parse_element(&m)
            })
            .collect()
    }
}

/// An item's payload: the snapshot as XEP-0323 `fields`.
pub(super) fn payload(device: &str, item: &Snapshot) -> String {
    sensordata::fields(
        &item.seqnr.to_string(),
        device,
        &item.samples,
        FieldType::Momentary,
        true,
    )
}

/// The payload as an element, for replies that carry stored items.
fn payload_element(device: &str, item: &Snapshot) -> Option<Element> {
    crate::reader::parse_element(&payload(device, item))
}

impl Gateway {
    /// When the next item is due, if readings wait for one: the connection
    /// loop calls [`Gateway::publish_due`] then.
    pub fn next_publish(&self) -> Option<Instant> {
        self.pending.front().map(|(since, _)| *since + ITEM_WINDOW)
    }

    /// Publishes the items whose window has passed: each device's whole
    /// state, to the store and (while connected) to its subscribers.
    pub fn publish_due(&mut self, now: Instant) {
        while let Some((since, _)) = self.pending.front() {
            if *since + ITEM_WINDOW > now {
                break;
            }
            let Some((since, device)) = self.pending.pop_front() else {
                break;
            };
            // An entry whose item went out early (see `on_event`) is stale.
            if self
                .live
                .get(&device)
                .is_some_and(|l| l.pending_since == Some(since))
            {
                self.publish(device.as_str());
            }
        }
    }

    /// Everything waiting, now (the gateway is stopping).
    pub fn publish_all(&mut self) {
        while let Some((_, device)) = self.pending.pop_front() {
            self.publish(device.as_str());
        }
    }

    pub(super) fn publish(&mut self, device: &str) {
        let Some(live) = self.live.get_mut(device) else {
            return;
        };
        if live.pending_since.take().is_none() {
            return;
        }
        // Ids are the publication time in microseconds, nudged to stay
        // strictly increasing per node: stable, ordered, unique.
        let last = live.last_item.as_ref().map_or(0, |i| i.id);
        let id = micros(SystemTime::now()).max(last + 1);
        live.seqnr += 1;
        let item = Arc::new(Snapshot {
            id,
            seqnr: live.seqnr,
            samples: live.latest.values().cloned().collect(),
        });
        live.last_item = Some(item.clone());
        self.stats.items += 1;
        self.unsaved.push((device.to_owned(), item.clone()));
        if self.connected {
            if let Some(live) = self.live.get_mut(device) {
                live.last_sent = id;
                if live.catching_up && live.first_live.is_none() {
                    live.first_live = Some(id);
                }
            }
            self.notify(device, &item);
        }
    }

    /// Queues `item` for every subscriber of `node`; how many there are.
    pub(super) fn notify(&mut self, node: &str, item: &Snapshot) -> usize {
        let to: Vec<String> = match self.subs.pubsub.get(node) {
            Some(s) if !s.is_empty() => s.iter().cloned().collect(),
            _ => return 0,
        };
        let n = to.len();
        self.stats.notifications += n as u64;
        self.notifications.push(Notification {
            from: self.domain.clone(),
            node: node.to_owned(),
            id: item_id(item.id),
            payload: payload(node, item).into(),
            to,
        });
        n
    }

    /// Notifications ready to send, for the connection loop.
    pub fn take_notifications(&mut self) -> Vec<Notification> {
        std::mem::take(&mut self.notifications)
    }

    /// After a successful pubsub subscribe: the current state, the last
    /// item, stamped with when it was published (XEP-0203), so that a
    /// client does not show an old state as news.
    pub fn last_item_for(&self, request: &Element) -> Option<Element> {
        let action = request
            .get_child("pubsub", NS_PUBSUB)?
            .get_child("subscribe", NS_PUBSUB)?;
        let node = action.attr("node")?;
        let jid = action.attr("jid")?;
        let item = self.live.get(node)?.last_item.clone()?;
        let entry = child(
            with(element("item", NS_PUBSUB_EVENT), "id", item_id(item.id)),
            payload_element(node, &item)?,
        );
        let items = child(with(element("items", NS_PUBSUB_EVENT), "node", node), entry);
        let mut message = with(stanza("message", &self.domain, jid), "type", "headline");
        message.append_child(child(element("event", NS_PUBSUB_EVENT), items));
        let mut delay = with(element("delay", NS_DELAY), "from", self.domain.clone());
        let published = UNIX_EPOCH + Duration::from_micros(item.id);
        set(&mut delay, "stamp", sensordata::timestamp(published));
        message.append_child(delay);
        Some(message)
    }

    /// The result of an items request: `items` oldest first, and with
    /// `count` a XEP-0059 set (first, last, count).
    pub(super) fn items_reply(
        &self,
        request: &Element,
        node: &str,
        items: &[Arc<Snapshot>],
        count: Option<u64>,
    ) -> Element {
        let mut list = with(element("items", NS_PUBSUB), "node", node);
        for item in items {
            if let Some(p) = payload_element(node, item) {
                list.append_child(child(
                    with(element("item", NS_PUBSUB), "id", item_id(item.id)),
                    p,
                ));
            }
        }
        let mut reply = child(element("pubsub", NS_PUBSUB), list);
        if let Some(count) = count {
            let mut rsm = element("set", NS_RSM);
            if let (Some(first), Some(last)) = (items.first(), items.last()) {
                rsm.append_child(text("first", NS_RSM, item_id(first.id)));
                rsm.append_child(text("last", NS_RSM, item_id(last.id)));
            }
            rsm.append_child(text("count", NS_RSM, count.to_string()));
            reply.append_child(rsm);
        }
        iq_result(request, Some(reply))
    }
}
