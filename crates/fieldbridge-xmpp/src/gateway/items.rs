//! A device's state as pubsub items: one item per device update, holding
//! every point's latest value (what a subscriber that joins late needs, as
//! with PEP), published when readings came, after a short window that
//! gathers what arrives together. An item's payload is serialized once and
//! written to each subscriber as is ([`Notification`]).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fieldbridge_core::alarm::Severity;
use fieldbridge_core::telemetry::{
    HistorySize, InternalEvent, ItemPublished, ItemSent, NotificationsSent, Telemetry,
};
use fieldbridge_core::{DeviceId, DeviceSpec, PointId, Sample};
use fieldbridge_store::{Limits, Snapshot, Store, StoreError, micros};
use minidom::Element;
use tokio::time::Instant;

use super::entity::Entity;
use super::history::{self, StoreRead, item_id};
use super::subscribers::Subscribers;
use super::{DeviceState, Gateway, NS_RSM};
use crate::sensordata::{self, FieldType, escape_into};
use crate::xml::{NS_PUBSUB, NS_PUBSUB_EVENT, child, element, iq_result, set, stanza, text, with};

/// Readings of one device that arrive within this long of the first go
/// into one item: the points of one MQTT device published as separate
/// messages, or a poll whose values trickle in.
pub const ITEM_WINDOW: Duration = Duration::from_millis(50);
/// Items of one node held while the missed ones are read after a
/// reconnect (a read takes milliseconds; this is a bound, not a size).
const MAX_HELD: usize = 1000;

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
    /// The node's subscribers when it was published: shared by every
    /// item until they change, not copied per item.
    to: Arc<[String]>,
}

impl Notification {
    /// An item of `node` from `from`, to `to`.
    pub(super) fn new(
        from: String,
        node: &str,
        id: u64,
        payload: Arc<str>,
        to: Arc<[String]>,
    ) -> Self {
        Self {
            from,
            node: node.to_owned(),
            id: item_id(id),
            payload,
            to,
        }
    }

    /// Appends the notification messages (one per subscriber) as XML.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let mut s = String::with_capacity(self.to.len() * (200 + self.payload.len()));
        for to in self.to.iter() {
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

/// An item's payload: the snapshot as XEP-0323 `fields`, its points in
/// alarm flagged as `flags` says (see [`sensordata::fields_flagged`]).
pub(super) fn payload(device: &str, item: &Snapshot, flags: Option<&AlarmFlags>) -> String {
    sensordata::fields_flagged(
        &item.seqnr.to_string(),
        device,
        &item.samples,
        FieldType::Momentary,
        true,
        |p| flags.and_then(|f| f.get(p).copied()),
    )
}

/// The payload as an element, for replies that carry stored items.
fn payload_element(device: &str, item: &Snapshot, flags: Option<&AlarmFlags>) -> Option<Element> {
    crate::reader::parse_element(&payload(device, item, flags))
}

/// The points of a device in alarm, by severity.
pub(super) type AlarmFlags = BTreeMap<PointId, Severity>;

/// The pubsub nodes, one per device: each one's items, published and on
/// their way to the store and to subscribers.
#[derive(Debug)]
pub(super) struct Nodes {
    nodes: HashMap<DeviceId, NodeState>,
    /// Items and subscriptions, kept across restarts.
    pub(super) store: Arc<Store>,
    /// History bounds per node.
    pub(super) limits: Arc<HashMap<String, Limits>>,
    /// Items published but not yet handed to the store writer.
    pub(super) unsaved: Vec<(String, Arc<Snapshot>)>,
    /// Items handed to the store writer and not yet confirmed written:
    /// still served from here meanwhile.
    pub(super) writing: Vec<(String, Arc<Snapshot>)>,
    /// Devices with readings waiting for their item, oldest first.
    pending: VecDeque<(Instant, DeviceId)>,
    /// Notifications ready to send: each item serialized once.
    notifications: Vec<Notification>,
    /// Store reads asked for since the connection loop last took them.
    pub(super) reads: Vec<StoreRead>,
    /// Whether the server link is up: notifications are only produced
    /// while it is; the history fills the gap after a reconnect.
    pub(super) connected: bool,
    /// Where items, notifications and their delay are counted.
    pub(super) telemetry: Arc<Telemetry>,
    /// The points in alarm now, by device: flagged in the items sent.
    pub(super) flags: HashMap<DeviceId, AlarmFlags>,
}

/// One node's items.
#[derive(Debug, Default)]
pub(super) struct NodeState {
    /// The newest item: the state as last published.
    pub(super) last_item: Option<Arc<Snapshot>>,
    /// The item sequence number (XEP-0323 `seqnr`) of the last item.
    pub(super) seqnr: u64,
    /// Readings came since the last item, the first of them then; the
    /// item follows within [`ITEM_WINDOW`].
    pending_since: Option<Instant>,
    /// The newest item sent to the node's subscribers: after a reconnect,
    /// everything newer is sent from the history.
    pub(super) last_sent: u64,
    /// After a reconnect, until the missed items are read: they go out
    /// when read, and items published meanwhile after them.
    pub(super) catching_up: bool,
    /// Items published while catching up, held so that subscribers get
    /// every item in order (a client shows the last one it got as the
    /// device's state); the missed items end before the first of them. At
    /// most [`MAX_HELD`]: should the store be that slow, newer ones go at
    /// once rather than pile up.
    pub(super) held: Vec<Arc<Snapshot>>,
}

impl NodeState {
    /// Whether `point` has a reading in `state` that is not in the last
    /// item yet.
    fn unpublished(&self, state: &DeviceState, point: &PointId) -> bool {
        let Some(latest) = state.latest.get(point) else {
            return false;
        };
        let Some(item) = &self.last_item else {
            return true;
        };
        // An item's samples are in point order (they come from `latest`).
        item.samples
            .binary_search_by(|s| s.reading.point.cmp(point))
            .map_or(true, |i| item.samples[i].at != latest.at)
    }
}

impl Nodes {
    pub(super) fn new(store: Arc<Store>, telemetry: Arc<Telemetry>) -> Self {
        Self {
            nodes: HashMap::new(),
            store,
            limits: Arc::new(HashMap::new()),
            unsaved: Vec::new(),
            writing: Vec::new(),
            pending: VecDeque::new(),
            notifications: Vec::new(),
            flags: HashMap::new(),
            reads: Vec::new(),
            connected: false,
            telemetry,
        }
    }

    /// Takes on `spec`'s node as the store left it; the device's state
    /// as its last item holds it.
    pub(super) fn resume(&mut self, spec: &DeviceSpec) -> Result<DeviceState, StoreError> {
        let (node, state) = history::resume(&self.store, spec.id.as_str())?;
        if let Ok(items) = self.store.len(spec.id.as_str()) {
            HistorySize {
                device: spec.id.as_str(),
                items,
            }
            .emit(&self.telemetry);
        }
        self.nodes.insert(spec.id.clone(), node);
        Arc::make_mut(&mut self.limits).insert(spec.id.to_string(), history::limits(spec));
        Ok(state)
    }

    /// Takes on `spec`'s node with no history (the store could not be read).
    pub(super) fn add_empty(&mut self, spec: &DeviceSpec) {
        self.nodes.insert(spec.id.clone(), NodeState::default());
        Arc::make_mut(&mut self.limits).insert(spec.id.to_string(), history::limits(spec));
    }

    /// Stops serving `device`'s node (removed by a reload); its history
    /// stays in the store, and items on their way there still go. What the
    /// node was, for [`Nodes::restore`].
    pub(super) fn remove(&mut self, device: &DeviceId) -> Option<NodeState> {
        self.nodes.remove(device)
    }

    /// Serves a node removed earlier again, as it was (the store may not
    /// have its newest items yet).
    pub(super) fn restore(&mut self, spec: &DeviceSpec, node: NodeState) {
        self.nodes.insert(spec.id.clone(), node);
        self.set_limits(spec);
    }

    /// `spec`'s history bounds, after a reload changed them.
    pub(super) fn set_limits(&mut self, spec: &DeviceSpec) {
        Arc::make_mut(&mut self.limits).insert(spec.id.to_string(), history::limits(spec));
    }

    /// One node's items.
    pub(super) fn get(&self, node: &str) -> Option<&NodeState> {
        self.nodes.get(node)
    }

    pub(super) fn get_mut(&mut self, node: &str) -> Option<&mut NodeState> {
        self.nodes.get_mut(node)
    }

    /// Every node's items.
    pub(super) fn all_mut(&mut self) -> impl Iterator<Item = &mut NodeState> {
        self.nodes.values_mut()
    }

    /// A node's history bounds.
    pub(super) fn limits(&self, node: &str) -> Limits {
        self.limits.get(node).copied().unwrap_or_default()
    }

    /// Whether `samples` hold a second reading of a point whose first one
    /// still waits for its item.
    pub(super) fn has_unpublished(
        &self,
        device: &DeviceId,
        state: &DeviceState,
        samples: &[Sample],
    ) -> bool {
        self.nodes.get(device).is_some_and(|n| {
            n.pending_since.is_some()
                && samples
                    .iter()
                    .any(|s| n.unpublished(state, &s.reading.point))
        })
    }

    /// Readings came for `device`: its item is due within the window.
    pub(super) fn readings_came(&mut self, device: &DeviceId, now: Instant) {
        if let Some(n) = self.nodes.get_mut(device)
            && n.pending_since.is_none()
        {
            n.pending_since = Some(now);
            self.pending.push_back((now, device.clone()));
        }
    }

    /// When the next item is due, if readings wait for one.
    pub(super) fn next_publish(&self) -> Option<Instant> {
        self.pending.front().map(|(since, _)| *since + ITEM_WINDOW)
    }

    /// The next device whose item is due by `now` (`None` when no more
    /// are), or with `now` None the next waiting at all.
    pub(super) fn next_due(&mut self, now: Option<Instant>) -> Option<DeviceId> {
        loop {
            let (since, _) = self.pending.front()?;
            if now.is_some_and(|now| *since + ITEM_WINDOW > now) {
                return None;
            }
            let (since, device) = self.pending.pop_front()?;
            // An entry whose item went out early (see `on_event`) is stale.
            if self
                .nodes
                .get(&device)
                .is_some_and(|n| n.pending_since == Some(since))
            {
                return Some(device);
            }
        }
    }

    /// Publishes `device`'s state as an item, to the store and (while
    /// connected) to its subscribers; nothing if no readings wait.
    pub(super) fn publish(
        &mut self,
        me: &Entity,
        device: &DeviceId,
        state: &DeviceState,
        subscribers: &mut Subscribers,
    ) {
        let Some(node) = self.nodes.get_mut(device) else {
            return;
        };
        if node.pending_since.take().is_none() {
            return;
        }
        // Ids are the publication time in microseconds, nudged to stay
        // strictly increasing per node: stable, ordered, unique.
        let last = node.last_item.as_ref().map_or(0, |i| i.id);
        let id = micros(SystemTime::now()).max(last + 1);
        node.seqnr += 1;
        let item = Arc::new(Snapshot {
            id,
            seqnr: node.seqnr,
            samples: state.latest.values().cloned().collect(),
        });
        node.last_item = Some(item.clone());
        ItemPublished { device }.emit(&self.telemetry);
        self.unsaved.push((device.to_string(), item.clone()));
        if self.connected {
            if node.catching_up && node.held.len() < MAX_HELD {
                node.held.push(item);
                return;
            }
            node.last_sent = id;
            self.notify(me, device.as_str(), &item, subscribers);
        }
    }

    /// Queues `item` for every subscriber of `node`; how many there are.
    pub(super) fn notify(
        &mut self,
        me: &Entity,
        node: &str,
        item: &Snapshot,
        subscribers: &mut Subscribers,
    ) -> usize {
        let to = subscribers.pubsub_list(node);
        if to.is_empty() {
            return 0;
        }
        let n = to.len();
        NotificationsSent { count: n as u64 }.emit(&self.telemetry);
        // How old the item's newest reading is as it goes out.
        if let Some(newest) = item.samples.iter().map(|s| s.at).max() {
            let delay = SystemTime::now().duration_since(newest).unwrap_or_default();
            ItemSent { delay }.emit(&self.telemetry);
        }
        self.notifications.push(Notification {
            from: me.domain.clone(),
            node: node.to_owned(),
            id: item_id(item.id),
            payload: payload(node, item, self.flags.get(node)).into(),
            to,
        });
        n
    }

    /// Queues a notification made elsewhere (the `alerts` node's).
    pub(super) fn push_notification(&mut self, n: Notification) {
        NotificationsSent {
            count: n.len() as u64,
        }
        .emit(&self.telemetry);
        self.notifications.push(n);
    }

    pub(super) fn take_notifications(&mut self) -> Vec<Notification> {
        std::mem::take(&mut self.notifications)
    }
}

impl Gateway {
    /// When the next item is due, if readings wait for one: the connection
    /// loop calls [`Gateway::publish_due`] then.
    pub fn next_publish(&self) -> Option<Instant> {
        self.nodes.next_publish()
    }

    /// Publishes the items whose window has passed: each device's whole
    /// state, to the store and (while connected) to its subscribers.
    pub fn publish_due(&mut self, now: Instant) {
        while let Some(device) = self.nodes.next_due(Some(now)) {
            self.publish(&device);
        }
    }

    /// Everything waiting, now (the gateway is stopping).
    pub fn publish_all(&mut self) {
        while let Some(device) = self.nodes.next_due(None) {
            self.publish(&device);
        }
    }

    pub(super) fn publish(&mut self, device: &DeviceId) {
        if let Some(state) = self.devices.get(device) {
            self.nodes
                .publish(&self.me, device, state, &mut self.subscribers);
        }
    }

    /// Notifications ready to send, for the connection loop.
    pub fn take_notifications(&mut self) -> Vec<Notification> {
        self.nodes.take_notifications()
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
        if node == super::alerts::ALERTS_NODE && self.nodes.get(node).is_none() {
            return self.last_alert_item(jid);
        }
        let item = self.nodes.get(node)?.last_item.clone()?;
        let domain = &self.me.domain;
        let entry = child(
            with(element("item", NS_PUBSUB_EVENT), "id", item_id(item.id)),
            payload_element(node, &item, self.nodes.flags.get(node))?,
        );
        let items = child(with(element("items", NS_PUBSUB_EVENT), "node", node), entry);
        let mut message = with(stanza("message", domain, jid), "type", "headline");
        message.append_child(child(element("event", NS_PUBSUB_EVENT), items));
        let mut delay = with(element("delay", NS_DELAY), "from", domain.clone());
        let published = UNIX_EPOCH + Duration::from_micros(item.id);
        set(&mut delay, "stamp", sensordata::timestamp(published));
        message.append_child(delay);
        // A notification like any other (its reading is old by design: no
        // delay observed).
        NotificationsSent { count: 1 }.emit(&self.telemetry);
        Some(message)
    }
}

/// The result of an items request: `items` oldest first, and with
/// `count` a XEP-0059 set (first, last, count).
pub(super) fn items_reply(
    request: &Element,
    node: &str,
    items: &[Arc<Snapshot>],
    count: Option<u64>,
) -> Element {
    let mut list = with(element("items", NS_PUBSUB), "node", node);
    for item in items {
        if let Some(p) = payload_element(node, item, None) {
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
