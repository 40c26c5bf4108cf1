//! The component's behaviour, free of I/O: inbound stanzas and bus events
//! in, stanzas to send out. The connection loop only moves elements (and
//! runs the [`Job`]s and store writes handed to it), so everything here is
//! tested without a server.
//!
//! Here: presence, pubsub and service discovery. Beside it: items (a
//! device's state as pubsub items, sent once serialized), messages (chat
//! commands), commands (XEP-0050), iot (XEP-0323/0325), entity (the small
//! XEPs and caps), history (kept items, catching up after an outage) and
//! jobs (work that waits for an adapter).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fieldbridge_core::{
    DeviceEvent, DeviceId, DeviceStatus, Directory, EventKind, PointId, Sample,
};
use minidom::Element;
use tokio::time::Instant;
use xmpp_parsers::jid::{BareJid, Jid};

use crate::access::Access;
use crate::flood::{self, SenderLimits, Verdict};
use crate::reader::Refusal;
use crate::xml::{
    NS_COMPONENT, NS_DISCO_INFO, NS_DISCO_ITEMS, NS_PING, NS_PUBSUB, NS_PUBSUB_ERRORS,
    NS_SENSORDATA, NS_STANZAS, child, element, iq_error, iq_result, set, stanza, text, with,
};
use fieldbridge_store::{Change, Limits, Snapshot, Store, SubscriptionKind, Subscriptions};

use history::Query;
pub use history::{Found, StoreRead, StoreWrite};
pub use items::Notification;

/// How often an online device's status text may change with its values by
/// default (`xmpp.status_interval`): a phone that shows a contact's status
/// is woken for each change, so fast-changing values must not wake it
/// every few seconds. Status changes (online, stale, offline) go at once.
pub const STATUS_INTERVAL: Duration = Duration::from_secs(60);

/// After a status change, the status text is completed this soon: a device
/// that comes online with one message of several readings shows them all.
pub const STATUS_SETTLE: Duration = Duration::from_secs(1);

/// Counters of what the component received and refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Stanzas that could not be understood (no sender, bad JID, bad type).
    pub malformed: u64,
    /// Requests refused because the sender is not in `access.read`.
    pub forbidden: u64,
    /// IQ requests answered with `service-unavailable` or a similar error.
    pub unsupported: u64,
    /// Items published (one per device update).
    pub items: u64,
    /// Pubsub notifications sent (one per item and subscriber).
    pub notifications: u64,
    /// Chat commands answered.
    pub chat_commands: u64,
    /// Stanzas refused because their sender was over its rate limit.
    pub rate_limited: u64,
    /// Subscriptions refused because a limit was reached.
    pub subscriptions_refused: u64,
}

#[derive(Debug, Default)]
struct Live {
    status: Option<DeviceStatus>,
    /// Every point's newest sample: the device's state.
    latest: BTreeMap<PointId, Sample>,
    /// The newest item: the state as last published.
    last_item: Option<Arc<Snapshot>>,
    /// The item sequence number (XEP-0323 `seqnr`) of the next item.
    seqnr: u64,
    /// Readings came since the last item, the first of them then; the
    /// item follows within [`items::ITEM_WINDOW`].
    pending_since: Option<Instant>,
    /// The newest item sent to the node's subscribers: after a reconnect,
    /// everything newer is sent from the history.
    last_sent: u64,
    /// After a reconnect, until the missed items are read: they go out
    /// when read, and items published meanwhile go out at once.
    catching_up: bool,
    /// The first item sent at once while catching up: the missed items
    /// end before it.
    first_live: Option<u64>,
    sent_text: Option<String>,
    sent_at: Option<Instant>,
    /// The last presence went out for a status change, perhaps before the
    /// rest of that message's readings: the text may follow after
    /// [`STATUS_SETTLE`] instead of the status interval.
    sent_for_status: bool,
}

impl Live {
    /// Whether `point` has a reading that is not in the last item yet.
    fn unpublished(&self, point: &PointId) -> bool {
        let Some(latest) = self.latest.get(point) else {
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

/// The component's state and logic.
#[derive(Debug)]
pub struct Gateway {
    domain: String,
    name: String,
    /// The resource devices speak from: the gateway's id.
    resource: String,
    directory: Arc<Directory>,
    access: Access,
    subs: Subscriptions,
    live: HashMap<DeviceId, Live>,
    stats: Stats,
    /// Causes of refused stanzas already logged at `info`: each is said
    /// loudly once, then only at `debug`, so a noisy peer cannot flood logs.
    logged_causes: HashSet<&'static str>,
    /// Per-sender rate limits.
    senders: SenderLimits,
    /// Refused senders already logged at `info` (bounded).
    logged_senders: HashSet<BareJid>,
    /// Adapter work asked for since the connection loop last took it.
    jobs: Vec<Job>,
    /// Items and subscriptions, kept across restarts.
    store: Arc<Store>,
    /// History bounds per node.
    limits: Arc<HashMap<String, Limits>>,
    /// Items published but not yet handed to the store writer.
    unsaved: Vec<(String, Arc<Snapshot>)>,
    /// Items handed to the store writer and not yet confirmed written:
    /// still served from here meanwhile.
    writing: Vec<(String, Arc<Snapshot>)>,
    /// Subscription changes not yet handed to the store writer.
    changes: Vec<Change>,
    /// Devices with readings waiting for their item, oldest first.
    pending: VecDeque<(Instant, DeviceId)>,
    /// Notifications ready to send: each item serialized once.
    notifications: Vec<Notification>,
    /// Store reads asked for since the connection loop last took them.
    reads: Vec<StoreRead>,
    /// Whether the server link is up: notifications are only produced
    /// while it is; the history fills the gap after a reconnect.
    connected: bool,
    /// When the gateway started (last activity of silent devices, uptime).
    started: SystemTime,
    /// Each device's entity capabilities element, sent in every presence.
    caps: HashMap<DeviceId, Element>,
    /// Ad-hoc command sessions started (their ids).
    sessions: u64,
    /// Stanzas that follow an IQ's reply (readout values), sent after it.
    follow_ups: Vec<Element>,
    /// How often a status text may change with the values.
    status_interval: Duration,
}

/// Why an inbound stanza could not be handled, for logs.
fn sender(el: &Element) -> Option<Jid> {
    el.attr("from").and_then(|f| Jid::new(f).ok())
}

/// One kind of subscription, by node.
fn of_kind(
    subs: &mut Subscriptions,
    kind: SubscriptionKind,
) -> &mut BTreeMap<String, BTreeSet<String>> {
    match kind {
        SubscriptionKind::Presence => &mut subs.presence,
        SubscriptionKind::Pubsub => &mut subs.pubsub,
    }
}

impl Gateway {
    /// The gateway for `domain`, with subscriptions and items loaded from
    /// the store in `state_dir` (upgrading what an older version left).
    pub fn new(
        domain: &str,
        gateway_id: &str,
        directory: Arc<Directory>,
        access: Access,
        state_dir: &Path,
    ) -> std::io::Result<Self> {
        let store =
            Arc::new(Store::open(state_dir, &mut history::upgrade).map_err(std::io::Error::other)?);
        // Subscriptions to devices not configured now are kept: a device
        // that an adapter creates at run time (an MQTT template) is back
        // with its first message, and its subscribers with it.
        let subs = store.subscriptions().map_err(std::io::Error::other)?;
        let limits = directory
            .devices()
            .map(|d| (d.id.to_string(), history::limits(d)))
            .collect();
        let caps = directory
            .devices()
            .map(|d| (d.id.clone(), entity::device_caps(d)))
            .collect();
        let mut live = HashMap::new();
        for d in directory.devices() {
            live.insert(
                d.id.clone(),
                history::resume(&store, d.id.as_str()).map_err(std::io::Error::other)?,
            );
        }
        Ok(Self {
            domain: domain.to_owned(),
            name: format!("fieldbridge {gateway_id}"),
            resource: gateway_id.to_owned(),
            directory,
            access,
            subs,
            live,
            stats: Stats::default(),
            logged_causes: HashSet::new(),
            senders: SenderLimits::default(),
            logged_senders: HashSet::new(),
            jobs: Vec::new(),
            store,
            limits: Arc::new(limits),
            unsaved: Vec::new(),
            writing: Vec::new(),
            changes: Vec::new(),
            pending: VecDeque::new(),
            notifications: Vec::new(),
            reads: Vec::new(),
            connected: false,
            started: SystemTime::now(),
            caps,
            sessions: 0,
            follow_ups: Vec::new(),
            status_interval: STATUS_INTERVAL,
        })
    }

    /// Sets how often a status text may change with the values.
    pub fn set_status_interval(&mut self, interval: Duration) {
        self.status_interval = interval;
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The component domain.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    fn device_jid(&self, device: &str) -> String {
        format!("{device}@{}", self.domain)
    }

    /// The device's full JID (`boiler@gw.example.org/<gateway id>`): what
    /// its presence and messages come from. Clients such as Gajim apply
    /// presence to resources only, so a device that spoke from its bare
    /// JID stayed offline there. Subscription answers stay bare.
    fn device_full_jid(&self, device: &str) -> String {
        format!("{device}@{}/{}", self.domain, self.resource)
    }

    /// Adds a subscription; false if it existed. It reaches the store with
    /// the next write of the connection loop, off the event loop.
    fn subscribe(&mut self, kind: SubscriptionKind, node: &str, jid: &str) -> bool {
        let added = of_kind(&mut self.subs, kind)
            .entry(node.to_owned())
            .or_default()
            .insert(jid.to_owned());
        if added {
            self.changes.push(Change::Subscribe {
                kind,
                node: node.to_owned(),
                jid: jid.to_owned(),
            });
        }
        added
    }

    /// Removes a subscription; false if there was none.
    fn unsubscribe(&mut self, kind: SubscriptionKind, node: &str, jid: &str) -> bool {
        let removed = of_kind(&mut self.subs, kind)
            .get_mut(node)
            .is_some_and(|s| s.remove(jid));
        if removed {
            self.changes.push(Change::Unsubscribe {
                kind,
                node: node.to_owned(),
                jid: jid.to_owned(),
            });
        }
        removed
    }

    // ----- bus events -------------------------------------------------

    /// Takes on a device that an adapter created at run time (it is in the
    /// directory, but was not when the gateway started). False if unknown.
    fn adopt(&mut self, device: &DeviceId) -> bool {
        let Some(spec) = self.directory.device(device.as_str()).cloned() else {
            return false;
        };
        let live = match history::resume(&self.store, device.as_str()) {
            Ok(live) => live,
            Err(e) => {
                tracing::error!(device = %device, error = %e, "cannot read the history");
                Live::default()
            }
        };
        tracing::info!(device = %device, "device appeared at run time");
        self.live.insert(device.clone(), live);
        self.caps.insert(device.clone(), entity::device_caps(&spec));
        Arc::make_mut(&mut self.limits).insert(device.to_string(), history::limits(&spec));
        true
    }

    /// Readings or a status change. Readings update the device's state,
    /// whose item follows within [`items::ITEM_WINDOW`] (see
    /// [`Gateway::publish_due`]), so that what arrives together goes out
    /// as one item; a status change goes to presence subscribers at once.
    pub fn on_event(&mut self, event: DeviceEvent, now: Instant) -> Vec<Element> {
        let mut out = Vec::new();
        let device = event.device;
        if !self.live.contains_key(&device) && !self.adopt(&device) {
            return out;
        }
        let Some(live) = self.live.get_mut(&device) else {
            return out;
        };
        match event.kind {
            EventKind::Readings(samples) => {
                if samples.is_empty() {
                    return out;
                }
                if live.pending_since.is_some()
                    && samples.iter().any(|s| live.unpublished(&s.reading.point))
                {
                    // A second reading of a point whose first one still
                    // waits for its item: that item goes now, so that the
                    // window merges points, never loses a reading.
                    self.publish(device.as_str());
                }
                let Some(live) = self.live.get_mut(&device) else {
                    return out;
                };
                for s in samples {
                    live.latest.insert(s.reading.point.clone(), s);
                }
                if live.pending_since.is_none() {
                    live.pending_since = Some(now);
                    self.pending.push_back((now, device.clone()));
                }
                if self.text_refresh_due(&device, now) {
                    out.extend(self.broadcast_presence(&device, now));
                }
            }
            EventKind::Status(status) => {
                live.status = Some(status);
                out.extend(self.broadcast_presence(&device, now));
                if let Some(live) = self.live.get_mut(&device) {
                    live.sent_for_status = true;
                }
            }
        }
        out
    }

    /// Periodic work: status texts of online devices whose values changed.
    pub fn tick(&mut self, now: Instant) -> Vec<Element> {
        let due: Vec<DeviceId> = self
            .live
            .keys()
            .filter(|d| self.text_refresh_due(d, now))
            .cloned()
            .collect();
        due.iter()
            .flat_map(|d| self.broadcast_presence(d, now))
            .collect()
    }

    fn text_refresh_due(&self, device: &DeviceId, now: Instant) -> bool {
        let Some(live) = self.live.get(device) else {
            return false;
        };
        // Cheap tests first: the text is built only when it could be sent.
        live.status == Some(DeviceStatus::Online)
            && live.sent_at.is_none_or(|t| {
                let waited = now.duration_since(t);
                waited >= self.status_interval || (live.sent_for_status && waited >= STATUS_SETTLE)
            })
            && live.sent_text.as_deref() != Some(&self.status_text(device.as_str()))
    }

    /// Every device's presence to every subscriber: after (re)connecting.
    pub fn all_presences(&mut self, now: Instant) -> Vec<Element> {
        let devices: Vec<DeviceId> = self.live.keys().cloned().collect();
        devices
            .iter()
            .flat_map(|d| self.broadcast_presence(d, now))
            .collect()
    }

    /// After (re)connecting: every device's presence to every presence
    /// subscriber, and to every node subscriber the items published while
    /// the link was down (bounded by the history), oldest first. Item ids
    /// are stable: a subscriber that already has an item can drop the
    /// duplicate.
    pub fn on_connected(&mut self, now: Instant) -> Vec<Element> {
        self.connected = true;
        let out = self.all_presences(now);
        self.read_missed();
        out
    }

    /// The last word: every device unavailable to every subscriber.
    pub fn goodbye(&self) -> Vec<Element> {
        let mut out = Vec::new();
        for (device, subscribers) in &self.subs.presence {
            for to in subscribers {
                let mut p = with(
                    stanza("presence", &self.device_full_jid(device), to),
                    "type",
                    "unavailable",
                );
                p.append_child(text("status", NS_COMPONENT, "gateway stopped"));
                out.push(p);
            }
        }
        out
    }

    fn broadcast_presence(&mut self, device: &DeviceId, now: Instant) -> Vec<Element> {
        let text = self.status_text(device.as_str());
        if let Some(live) = self.live.get_mut(device) {
            live.sent_text = Some(text);
            live.sent_at = Some(now);
            live.sent_for_status = false;
        }
        self.subs
            .presence
            .get(device.as_str())
            .into_iter()
            .flatten()
            .map(|to| self.presence(device.as_str(), to))
            .collect()
    }

    /// Latest readings as people read them: `temperature 21.5 °C, pump on`.
    fn readings_text(&self, device: &str) -> String {
        let Some(live) = self.live.get(device) else {
            return String::new();
        };
        live.latest
            .values()
            .map(|s| &s.reading)
            .map(|r| match &r.unit {
                Some(u) => format!("{} {} {u}", r.point, r.value),
                None => format!("{} {}", r.point, r.value),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn status_text(&self, device: &str) -> String {
        let readings = self.readings_text(device);
        match self.live.get(device).and_then(|l| l.status.as_ref()) {
            None => "waiting for the first reading".to_owned(),
            Some(DeviceStatus::Online) if readings.is_empty() => "online".to_owned(),
            Some(DeviceStatus::Online) => readings,
            Some(DeviceStatus::Stale) if readings.is_empty() => "no fresh readings".to_owned(),
            Some(DeviceStatus::Stale) => format!("no fresh readings; last: {readings}"),
            Some(DeviceStatus::Offline { reason }) => reason.clone(),
        }
    }

    /// The device's current presence, addressed to `to`.
    fn presence(&self, device: &str, to: &str) -> Element {
        let mut p = stanza("presence", &self.device_full_jid(device), to);
        let status = self.live.get(device).and_then(|l| l.status.as_ref());
        match status {
            None | Some(DeviceStatus::Offline { .. }) => set(&mut p, "type", "unavailable"),
            Some(DeviceStatus::Stale) => {
                p.append_child(text("show", NS_COMPONENT, "xa"));
            }
            Some(DeviceStatus::Online) => {}
        }
        p.append_child(text("status", NS_COMPONENT, self.status_text(device)));
        if let Some(c) = self.caps.get(device) {
            p.append_child(c.clone());
        }
        p
    }

    // ----- inbound stanzas -------------------------------------------

    /// Handles one stanza from the server; returns what to send back.
    pub fn on_stanza(&mut self, el: &Element) -> Vec<Element> {
        if !self.admit(el) {
            return self.over_limit(el);
        }
        match el.name() {
            "iq" => self.on_iq(el),
            "presence" => self.on_presence(el),
            "message" => self.on_message(el),
            _ => Vec::new(),
        }
    }

    /// A stanza the reader refused for its depth or size (only its top
    /// element is left): a request gets `policy-violation`, the rest is
    /// dropped. Counted as malformed.
    pub fn refused(&mut self, stanza: &Element, why: Refusal) -> Vec<Element> {
        if !self.admit(stanza) {
            return self.over_limit(stanza);
        }
        self.malformed(stanza, why.as_str());
        if self.is_request(stanza) {
            return vec![iq_error(
                stanza,
                "modify",
                "policy-violation",
                Some(why.as_str()),
            )];
        }
        Vec::new()
    }

    /// Whether a stanza is looked at at all: not from our own domain (we
    /// never send requests to ourselves, so that is a bounce or a spoof,
    /// and answering could start a loop), and its sender within its rate.
    fn admit(&mut self, el: &Element) -> bool {
        let Some(from) = sender(el) else {
            return true;
        };
        if from.domain().as_str() == self.domain {
            self.malformed(el, "stanza from our own domain");
            return false;
        }
        match self.senders.check(&from.to_bare(), Instant::now()) {
            Verdict::Allowed => true,
            Verdict::FloodStarts => {
                self.stats.rate_limited += 1;
                tracing::info!(jid = %from.to_bare(), rate = flood::RATE, burst = flood::BURST, "sender over its rate limit: its stanzas are refused until it slows down");
                false
            }
            Verdict::Refused => {
                self.stats.rate_limited += 1;
                false
            }
        }
    }

    /// The answer to a stanza that was not admitted: a request from over
    /// the rate limit is told to wait (so that a client does not hang until
    /// its own timeout); anything else is dropped.
    fn over_limit(&mut self, el: &Element) -> Vec<Element> {
        let own = sender(el).is_some_and(|f| f.domain().as_str() == self.domain);
        if !own && self.is_request(el) {
            return vec![iq_error(
                el,
                "wait",
                "resource-constraint",
                Some("too many requests; slow down"),
            )];
        }
        Vec::new()
    }

    /// An IQ get or set that can be answered (it has a sender and an id).
    fn is_request(&self, el: &Element) -> bool {
        el.name() == "iq"
            && matches!(el.attr("type"), Some("get" | "set"))
            && el.attr("id").is_some_and(|id| !id.is_empty())
            && sender(el).is_some()
    }

    fn malformed(&mut self, el: &Element, why: &'static str) {
        self.stats.malformed += 1;
        let jid = el.attr("from").unwrap_or("?");
        if self.logged_causes.insert(why) {
            tracing::info!(
                jid,
                error = why,
                malformed = self.stats.malformed,
                "malformed stanza dropped (further ones with this cause are logged at debug)"
            );
        } else {
            tracing::debug!(
                jid,
                error = why,
                malformed = self.stats.malformed,
                "malformed stanza dropped"
            );
        }
    }

    /// A sender refused for what `access` says: counted, and logged at
    /// `info` the first time for each sender (then at `debug`), so that an
    /// operator sees who was refused without a flood filling the log.
    fn forbidden(&mut self, who: &BareJid, what: &'static str) {
        self.stats.forbidden += 1;
        if self.logged_senders.len() >= 1000 {
            self.logged_senders.clear();
        }
        if self.logged_senders.insert(who.clone()) {
            tracing::info!(jid = %who, "{what} (further refusals of this sender are logged at debug)");
        } else {
            tracing::debug!(jid = %who, "{what}");
        }
    }

    /// A request refused by a limit: logged once per cause at `info`.
    fn limit_reached(&mut self, jid: &str, cause: &'static str) {
        self.stats.subscriptions_refused += 1;
        if self.logged_causes.insert(cause) {
            tracing::info!(
                jid,
                cause,
                "subscription refused (further ones for this cause are logged at debug)"
            );
        } else {
            tracing::debug!(jid, cause, "subscription refused");
        }
    }

    fn on_iq(&mut self, el: &Element) -> Vec<Element> {
        let kind = el.attr("type").unwrap_or_default();
        if kind == "result" || kind == "error" {
            return Vec::new();
        }
        let Some(from) = sender(el) else {
            self.malformed(el, "iq without a valid sender");
            return Vec::new();
        };
        if kind != "get" && kind != "set" {
            self.malformed(el, "iq of unknown type");
            return Vec::new();
        }
        if el.attr("id").is_none_or(str::is_empty) {
            // A reply could not be matched to anything by the sender.
            self.malformed(el, "iq without an id");
            return Vec::new();
        }
        let payloads: Vec<&Element> = el.children().collect();
        let [payload] = payloads[..] else {
            self.malformed(el, "iq without exactly one payload");
            return vec![iq_error(
                el,
                "modify",
                "bad-request",
                Some("an iq request carries exactly one payload"),
            )];
        };
        let bare = from.to_bare();
        if !self.access.may_read(&bare) {
            self.forbidden(&bare, "request refused: not in access.read");
            return vec![iq_error(el, "auth", "forbidden", None)];
        }
        let to = el.attr("to").and_then(|t| Jid::new(t).ok());
        let device = to
            .as_ref()
            .and_then(|t| t.node().map(|n| n.as_str().to_owned()));
        let ns = payload.ns();
        let reply = match device {
            None => self.service_iq(el, kind, payload, &ns, &bare),
            Some(d) => self.device_iq(el, kind, payload, &d, &bare),
        };
        // No reply yet: it waits for the adapter (an ad-hoc job).
        let Some(reply) = reply else {
            return Vec::new();
        };
        let subscribed = reply.attr("type") == Some("result");
        let mut out = vec![reply];
        out.append(&mut self.follow_ups);
        if subscribed && let Some(last) = self.last_item_for(el) {
            // XEP-0060 §6.1.7: a new subscriber gets the last published item.
            out.push(last);
        }
        out
    }

    fn unsupported(&mut self, el: &Element) -> Element {
        self.stats.unsupported += 1;
        iq_error(el, "cancel", "service-unavailable", None)
    }

    fn device_iq(
        &mut self,
        el: &Element,
        kind: &str,
        payload: &Element,
        device: &str,
        from: &BareJid,
    ) -> Option<Element> {
        let Some(spec) = self.directory.device(device).cloned() else {
            return Some(iq_error(el, "cancel", "item-not-found", None));
        };
        let ns = payload.ns();
        match (kind, payload.name(), ns.as_str()) {
            ("set", "command", commands::NS_COMMANDS) => {
                return self.command(el, payload, Some(&spec), from);
            }
            ("get", "req", NS_SENSORDATA) => {
                let to = el.attr("from").unwrap_or_default().to_owned();
                let mut out = self.readout(el, payload, &spec, &to).into_iter();
                let reply = out.next();
                self.follow_ups.extend(out);
                return reply;
            }
            ("set", "set", iot::NS_CONTROL) => return self.control(el, payload, &spec, from),
            ("get", "query", NS_DISCO_ITEMS)
                if payload.attr("node") == Some(commands::NS_COMMANDS) =>
            {
                let jid = self.device_jid(device);
                return Some(self.command_list(el, &jid, Some(&spec), from));
            }
            _ => {}
        }
        Some(
            self.entity_iq(el, kind, payload, Some(&spec))
                .or_else(|| self.device_disco_iq(el, kind, payload, &spec))
                .unwrap_or_else(|| self.unsupported(el)),
        )
    }

    fn service_iq(
        &mut self,
        el: &Element,
        kind: &str,
        payload: &Element,
        ns: &str,
        from: &BareJid,
    ) -> Option<Element> {
        if let Some(reply) = self.entity_iq(el, kind, payload, None) {
            return Some(reply);
        }
        Some(match (kind, payload.name(), ns) {
            ("set", "command", commands::NS_COMMANDS) => {
                return self.command(el, payload, None, from);
            }
            ("get", "query", NS_DISCO_ITEMS)
                if payload.attr("node") == Some(commands::NS_COMMANDS) =>
            {
                let jid = self.domain.clone();
                self.command_list(el, &jid, None, from)
            }
            ("get", "query", NS_DISCO_INFO) => self.disco_info(el, payload.attr("node")),
            ("get", "query", NS_DISCO_ITEMS) => self.disco_items(el, payload.attr("node")),
            ("get", "pubsub", NS_PUBSUB)
                if payload
                    .children()
                    .next()
                    .is_some_and(|a| a.name() == "items") =>
            {
                return self.get_items(el, payload);
            }
            (_, "pubsub", NS_PUBSUB) => self.pubsub(el, kind, payload, from),
            _ => self.unsupported(el),
        })
    }

    fn disco_info(&mut self, el: &Element, node: Option<&str>) -> Element {
        let mut q = element("query", NS_DISCO_INFO);
        let mut identity = with(element("identity", NS_DISCO_INFO), "category", "pubsub");
        // A node's description (XEP-0128), after the features.
        let mut meta_data = None;
        match node {
            None => {
                set(&mut identity, "type", "service");
                set(&mut identity, "name", self.name.clone());
            }
            Some(n) => {
                let Some(spec) = self.directory.device(n).cloned() else {
                    return iq_error(el, "cancel", "item-not-found", None);
                };
                set(&mut q, "node", n);
                set(&mut identity, "type", "leaf");
                set(&mut identity, "name", spec.display_name());
                meta_data = Some(self.node_meta_data(&spec));
            }
        }
        q.append_child(identity);
        let features = [
            NS_DISCO_INFO,
            NS_DISCO_ITEMS,
            NS_PING,
            entity::NS_VERSION,
            entity::NS_LAST,
            entity::NS_TIME,
            commands::NS_COMMANDS,
            NS_PUBSUB,
            "http://jabber.org/protocol/pubsub#subscribe",
            "http://jabber.org/protocol/pubsub#retrieve-items",
            NS_RSM,
            "http://jabber.org/protocol/pubsub#retrieve-subscriptions",
            "http://jabber.org/protocol/pubsub#retrieve-affiliations",
            "http://jabber.org/protocol/pubsub#last-published",
            "http://jabber.org/protocol/pubsub#persistent-items",
            "http://jabber.org/protocol/pubsub#meta-data",
            if self.access.access_model() == "open" {
                "http://jabber.org/protocol/pubsub#access-open"
            } else {
                "http://jabber.org/protocol/pubsub#access-whitelist"
            },
        ];
        for f in features {
            q.append_child(with(element("feature", NS_DISCO_INFO), "var", f));
        }
        if let Some(form) = meta_data {
            q.append_child(form);
        }
        iq_result(el, Some(q))
    }

    fn disco_items(&mut self, el: &Element, node: Option<&str>) -> Element {
        let mut q = element("query", NS_DISCO_ITEMS);
        match node {
            None => {
                for d in self.directory.devices() {
                    let mut item =
                        with(element("item", NS_DISCO_ITEMS), "jid", self.domain.clone());
                    set(&mut item, "node", d.id.as_str());
                    set(&mut item, "name", d.display_name());
                    q.append_child(item);
                }
            }
            Some(n) if self.directory.device(n).is_some() => set(&mut q, "node", n),
            Some(_) => return iq_error(el, "cancel", "item-not-found", None),
        }
        iq_result(el, Some(q))
    }

    fn pubsub_error(el: &Element, kind: &str, condition: &str, pubsub_condition: &str) -> Element {
        let mut reply = iq_error(el, kind, condition, None);
        if let Some(error) = reply.get_child_mut("error", NS_COMPONENT) {
            error.append_child(element(pubsub_condition, NS_PUBSUB_ERRORS));
        }
        reply
    }

    fn pubsub(&mut self, el: &Element, kind: &str, payload: &Element, from: &BareJid) -> Element {
        let Some(action) = payload.children().next() else {
            return iq_error(el, "modify", "bad-request", None);
        };
        let node = action.attr("node");
        let known = node
            .and_then(|n| self.directory.device(n))
            .map(|d| d.id.clone());
        match (kind, action.name()) {
            ("set", "subscribe") => {
                let Some(node) = known else {
                    return iq_error(el, "cancel", "item-not-found", None);
                };
                let Some(jid) = action.attr("jid").and_then(|j| Jid::new(j).ok()) else {
                    return Self::pubsub_error(el, "modify", "bad-request", "jid-required");
                };
                if &jid.to_bare() != from {
                    return Self::pubsub_error(el, "modify", "bad-request", "invalid-jid");
                }
                let jid = jid.to_string();
                let known = self
                    .subs
                    .pubsub
                    .get(node.as_str())
                    .is_some_and(|s| s.contains(&jid));
                if !known && let Some(limit) = self.pubsub_limit(node.as_str(), from) {
                    self.limit_reached(&jid, limit.cause());
                    let mut reply = Self::pubsub_error(
                        el,
                        "cancel",
                        "policy-violation",
                        "too-many-subscriptions",
                    );
                    if let Some(error) = reply.get_child_mut("error", NS_COMPONENT) {
                        error.append_child(text("text", NS_STANZAS, limit.to_string()));
                    }
                    return reply;
                }
                self.subscribe(SubscriptionKind::Pubsub, node.as_str(), &jid);
                tracing::info!(jid = %jid, device = %node, "pubsub subscription");
                let mut sub = with(element("subscription", NS_PUBSUB), "node", node.as_str());
                set(&mut sub, "jid", jid.clone());
                set(&mut sub, "subscription", "subscribed");
                iq_result(el, Some(child(element("pubsub", NS_PUBSUB), sub)))
            }
            ("set", "unsubscribe") => {
                let Some(node) = known else {
                    return iq_error(el, "cancel", "item-not-found", None);
                };
                let jid = action.attr("jid").unwrap_or_default();
                if !Jid::new(jid).is_ok_and(|j| &j.to_bare() == from) {
                    // Nobody unsubscribes someone else (XEP-0060 §6.2.3.3).
                    return Self::pubsub_error(el, "modify", "bad-request", "invalid-jid");
                }
                if !self.unsubscribe(SubscriptionKind::Pubsub, node.as_str(), jid) {
                    return Self::pubsub_error(
                        el,
                        "cancel",
                        "unexpected-request",
                        "not-subscribed",
                    );
                }
                iq_result(el, None)
            }
            ("get", "affiliations") => {
                // Everyone who may read is a member of every node's
                // whitelist; the gateway alone publishes.
                let mut list = element("affiliations", NS_PUBSUB);
                for d in self.directory.devices() {
                    if node.is_some_and(|want| want != d.id.as_str()) {
                        continue;
                    }
                    let mut a = with(element("affiliation", NS_PUBSUB), "node", d.id.as_str());
                    set(&mut a, "affiliation", "member");
                    list.append_child(a);
                }
                iq_result(el, Some(child(element("pubsub", NS_PUBSUB), list)))
            }
            ("get", "subscriptions") => {
                let mut list = element("subscriptions", NS_PUBSUB);
                for (n, jids) in &self.subs.pubsub {
                    if node.is_some_and(|want| want != n) {
                        continue;
                    }
                    for j in jids
                        .iter()
                        .filter(|j| Jid::new(j).is_ok_and(|j| &j.to_bare() == from))
                    {
                        let mut s = with(element("subscription", NS_PUBSUB), "node", n.clone());
                        set(&mut s, "jid", j.clone());
                        set(&mut s, "subscription", "subscribed");
                        list.append_child(s);
                    }
                }
                iq_result(el, Some(child(element("pubsub", NS_PUBSUB), list)))
            }
            (_, other) => {
                // XEP-0060's answer to a pubsub request the service does not
                // offer (the nodes are the gateway's own: nobody publishes,
                // creates or configures them).
                self.stats.unsupported += 1;
                let feature = match other {
                    "publish" => "publish",
                    "create" => "create-nodes",
                    "delete" => "delete-nodes",
                    "retract" => "retract-items",
                    "purge" => "purge-nodes",
                    "configure" => "config-node",
                    "options" => "subscription-options",
                    "default" => "retrieve-default",
                    _ => "",
                };
                let mut reply = iq_error(el, "cancel", "feature-not-implemented", None);
                if let Some(error) = reply.get_child_mut("error", NS_COMPONENT) {
                    let mut unsupported = element("unsupported", NS_PUBSUB_ERRORS);
                    if !feature.is_empty() {
                        set(&mut unsupported, "feature", feature);
                    }
                    error.append_child(unsupported);
                }
                reply
            }
        }
    }

    /// A pubsub items request: answered once the store was read (see
    /// [`Gateway::read_done`]); `Some` only for a request that is refused.
    fn get_items(&mut self, el: &Element, payload: &Element) -> Option<Element> {
        let Some(action) = payload.get_child("items", NS_PUBSUB) else {
            return Some(iq_error(el, "modify", "bad-request", None));
        };
        let Some(node) = action
            .attr("node")
            .and_then(|n| self.directory.device(n))
            .map(|d| d.id.clone())
        else {
            return Some(iq_error(el, "cancel", "item-not-found", None));
        };
        let wanted: Vec<&str> = action
            .children()
            .filter(|c| c.name() == "item")
            .filter_map(|c| c.attr("id"))
            .collect();
        // "What did I miss?": result set management (XEP-0059) with
        // <after> the last item id the subscriber has, or <before>
        // (empty: the last page) to page backwards.
        let rsm = payload.get_child("set", NS_RSM);
        let bound = |name: &str| {
            rsm.and_then(|r| r.get_child(name, NS_RSM)).map(|b| {
                let t = b.text();
                if t.is_empty() && name == "before" {
                    Ok(None)
                } else {
                    t.parse::<u64>().map(Some)
                }
            })
        };
        let (Ok(after), Ok(before)) = (
            bound("after").transpose().map(Option::flatten),
            bound("before").transpose().map(Option::flatten),
        ) else {
            return Some(iq_error(
                el,
                "modify",
                "bad-request",
                Some("<after> and <before> take an item id of this service"),
            ));
        };
        let query = if let Some(rsm) = rsm {
            let max = rsm
                .get_child("max", NS_RSM)
                .and_then(|m| m.text().parse::<usize>().ok())
                .unwrap_or(MAX_ITEMS_REPLY)
                .min(MAX_ITEMS_REPLY);
            Query::Page { after, before, max }
        } else if wanted.is_empty() {
            // Newest first is what max_items asks for; sent oldest
            // first, in publication order (XEP-0060 §6.5.7).
            let max = action
                .attr("max_items")
                .and_then(|m| m.parse::<usize>().ok())
                .unwrap_or(MAX_ITEMS_REPLY)
                .min(MAX_ITEMS_REPLY);
            Query::Page {
                after: None,
                before: None,
                max,
            }
        } else {
            Query::Ids(
                wanted
                    .iter()
                    .filter_map(|id| id.parse::<u64>().ok())
                    .collect(),
            )
        };
        let rsm = rsm.is_some();
        self.read(
            node.as_str(),
            query,
            history::Then::Items {
                request: el.clone(),
                rsm,
            },
        );
        None
    }

    fn on_presence(&mut self, el: &Element) -> Vec<Element> {
        let kind = el.attr("type").unwrap_or("available");
        if !matches!(kind, "subscribe" | "unsubscribe" | "probe") {
            // Directed presence, unsubscribed, errors: nothing to say back.
            return Vec::new();
        }
        let Some(from) = sender(el) else {
            self.malformed(el, "presence without a valid sender");
            return Vec::new();
        };
        let bare = from.to_bare();
        let Some(device) = el
            .attr("to")
            .and_then(|t| Jid::new(t).ok())
            .and_then(|t| t.node().map(|n| n.as_str().to_owned()))
        else {
            return Vec::new();
        };
        let device_jid = self.device_jid(&device);
        let refuse = |gw: &mut Self| {
            gw.forbidden(&bare, "presence subscription or probe refused");
            vec![with(
                stanza("presence", &device_jid, &bare.to_string()),
                "type",
                "unsubscribed",
            )]
        };
        let exists = self.directory.device(&device).is_some();
        if !exists
            && kind == "probe"
            && self.access.may_read(&bare)
            && self
                .subs
                .presence
                .get(&device)
                .is_some_and(|s| s.contains(&bare.to_string()))
        {
            // A subscriber's device made at run time, not seen since the
            // gateway started: offline, not "unsubscribed" (which would
            // remove it from the subscriber's roster).
            let mut p = with(
                stanza(
                    "presence",
                    &self.device_full_jid(&device),
                    &from.to_string(),
                ),
                "type",
                "unavailable",
            );
            p.append_child(text(
                "status",
                NS_COMPONENT,
                "not seen since the gateway started",
            ));
            return vec![p];
        }
        if !exists || !self.access.may_read(&bare) {
            if kind == "unsubscribe" {
                return Vec::new();
            }
            return refuse(self);
        }
        match kind {
            "subscribe" => {
                let known = self
                    .subs
                    .presence
                    .get(&device)
                    .is_some_and(|s| s.contains(&bare.to_string()));
                if !known && let Some(limit) = self.presence_limit(&device) {
                    self.limit_reached(&bare.to_string(), limit.cause());
                    let mut p = with(
                        stanza("presence", &device_jid, &from.to_string()),
                        "type",
                        "error",
                    );
                    let mut error = with(element("error", NS_COMPONENT), "type", "cancel");
                    error.append_child(element("policy-violation", NS_STANZAS));
                    error.append_child(text("text", NS_STANZAS, limit.to_string()));
                    p.append_child(error);
                    return vec![p];
                }
                if self.subscribe(SubscriptionKind::Presence, &device, &bare.to_string()) {
                    tracing::info!(jid = %bare, device = %device, "presence subscription");
                }
                vec![
                    with(
                        stanza("presence", &device_jid, &bare.to_string()),
                        "type",
                        "subscribed",
                    ),
                    self.presence(&device, &bare.to_string()),
                ]
            }
            "unsubscribe" => {
                self.unsubscribe(SubscriptionKind::Presence, &device, &bare.to_string());
                vec![with(
                    stanza("presence", &device_jid, &bare.to_string()),
                    "type",
                    "unsubscribed",
                )]
            }
            _ => vec![self.presence(&device, &from.to_string())],
        }
    }
}

/// A node's subscriptions per user (bare JID): one per resource, and
/// that many resources at most.
pub const MAX_RESOURCES_PER_USER: usize = 4;

/// Subscribers of one device, pubsub and presence each.
pub const MAX_SUBSCRIBERS_PER_DEVICE: usize = 1000;

/// Subscriptions of all kinds to all devices of the gateway.
pub const MAX_SUBSCRIPTIONS: usize = 50_000;

/// Which subscription limit a request reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limit {
    Resources,
    Device,
    Gateway,
}

impl Limit {
    fn cause(self) -> &'static str {
        match self {
            Limit::Resources => "resources per user",
            Limit::Device => "subscribers per device",
            Limit::Gateway => "subscriptions per gateway",
        }
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Limit::Resources => write!(
                f,
                "at most {MAX_RESOURCES_PER_USER} resources of one user may subscribe to a node"
            ),
            Limit::Device => write!(
                f,
                "this device has its limit of {MAX_SUBSCRIBERS_PER_DEVICE} subscribers"
            ),
            Limit::Gateway => write!(
                f,
                "the gateway has its limit of {MAX_SUBSCRIPTIONS} subscriptions"
            ),
        }
    }
}

impl Gateway {
    fn subscription_count(&self) -> usize {
        self.subs
            .pubsub
            .values()
            .chain(self.subs.presence.values())
            .map(|s| s.len())
            .sum()
    }

    /// The limit a new pubsub subscription of `user` to `node` would break.
    fn pubsub_limit(&self, node: &str, user: &BareJid) -> Option<Limit> {
        let subscribers = self.subs.pubsub.get(node);
        let user = user.to_string();
        let resources = subscribers
            .into_iter()
            .flatten()
            .filter(|j| {
                j.strip_prefix(user.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            })
            .count();
        if resources >= MAX_RESOURCES_PER_USER {
            Some(Limit::Resources)
        } else if subscribers.map_or(0, |s| s.len()) >= MAX_SUBSCRIBERS_PER_DEVICE {
            Some(Limit::Device)
        } else if self.subscription_count() >= MAX_SUBSCRIPTIONS {
            Some(Limit::Gateway)
        } else {
            None
        }
    }

    /// The limit a new presence subscription to `device` would break.
    fn presence_limit(&self, device: &str) -> Option<Limit> {
        if self.subs.presence.get(device).map_or(0, |s| s.len()) >= MAX_SUBSCRIBERS_PER_DEVICE {
            Some(Limit::Device)
        } else if self.subscription_count() >= MAX_SUBSCRIPTIONS {
            Some(Limit::Gateway)
        } else {
            None
        }
    }
}

/// XEP-0059 result set management.
pub const NS_RSM: &str = "http://jabber.org/protocol/rsm";

/// The most items one items request returns; more are asked for by id.
pub const MAX_ITEMS_REPLY: usize = 500;

mod commands;
mod entity;
pub mod history;
mod iot;
pub mod items;
mod jobs;
mod messages;

pub use jobs::{Job, JobOutcome, MAX_QUEUED_JOBS, MAX_RUNNING_JOBS};
#[cfg(test)]
mod tests;
