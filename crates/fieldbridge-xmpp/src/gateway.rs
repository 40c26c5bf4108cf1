//! The component's behaviour, free of I/O: inbound stanzas and bus events
//! in, stanzas to send out. The connection loop only moves elements (and
//! runs the [`Job`]s and store writes handed to it), so everything here is
//! tested without a server.
//!
//! The [`Gateway`] is made of parts that each own their state and answer
//! their stanzas; this file parses each stanza once (`Inbound`: its
//! sender and the device it is for) and hands it to the part it is for:
//!
//! - `guard`: what is looked at at all (own domain, rate), and how
//!   refusals are counted and logged;
//! - `subscribers`: who is subscribed to what, within limits;
//! - `presence`: the presence book, what each device last said;
//! - [`items`] and [`history`]: the pubsub nodes, a device's state as
//!   items, kept in the store, caught up after an outage; `pubsub`
//!   answers the pubsub requests on them;
//! - `entity`: who we are, service discovery, caps and the small XEPs;
//! - `card`: how devices introduce themselves: nickname, vCard, avatar;
//! - `upgrade`: what an older version kept, read back once;
//! - `reload`: a new directory and access lists, taken on the same link;
//! - `jobs`, `commands`, `messages`, `iot`: work for an adapter,
//!   asked for by ad-hoc command, chat or XEP-0323/0325;
//! - [`alerts`] and `room`: alarms to people (chat, the alerts room) and
//!   to software (the `alerts` node), `alarms` and `ack`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fieldbridge_core::audit::AuditLog;
use fieldbridge_core::telemetry::{InternalEvent, LinkChanged, Telemetry};
use fieldbridge_core::{
    DeviceEvent, DeviceId, DeviceStatus, Directory, EventKind, PointId, Sample,
};
use jiff::tz::TimeZone;
use minidom::Element;
use tokio::time::Instant;
use xmpp_parsers::jid::{BareJid, Jid};

use crate::access::Access;
use crate::reader::Refusal;
use crate::xml::{DefinedCondition, ErrorType};
use crate::xml::{NS_DISCO_INFO, NS_DISCO_ITEMS, NS_PUBSUB, NS_SENSORDATA, iq_error};
use fieldbridge_store::Store;

use entity::Entity;
use guard::{Guard, is_request, sender};
pub use history::{Found, StoreRead, StoreWrite};
use items::Nodes;
pub use items::Notification;
use jobs::Commands;
use presence::PresenceBook;
use subscribers::Subscribers;
pub use subscribers::{MAX_RESOURCES_PER_USER, MAX_SUBSCRIBERS_PER_DEVICE, MAX_SUBSCRIPTIONS};

/// How often an online device's status text may change with its values by
/// default (`xmpp.status_interval`): a phone that shows a contact's status
/// is woken for each change, so fast-changing values must not wake it
/// every few seconds. Status changes (online, stale, offline) go at once.
pub const STATUS_INTERVAL: Duration = Duration::from_secs(60);

/// After a status change, the status text is completed this soon: a device
/// that comes online with one message of several readings shows them all.
pub const STATUS_SETTLE: Duration = Duration::from_secs(1);

/// XEP-0059 result set management.
pub const NS_RSM: &str = "http://jabber.org/protocol/rsm";

/// The most items one items request returns; more are asked for by id.
pub const MAX_ITEMS_REPLY: usize = 500;

/// What the gateway knows of a device now: read by presence, chat,
/// commands and items alike.
#[derive(Debug, Default)]
struct DeviceState {
    status: Option<DeviceStatus>,
    /// Every point's newest sample: the device's state.
    latest: BTreeMap<PointId, Sample>,
}

/// An inbound stanza with what every part needs parsed once.
struct Inbound<'a> {
    el: &'a Element,
    /// The sender, if the stanza names a valid one.
    from: Option<Jid>,
    /// The device it is addressed to (the localpart of `to`); `None` for
    /// the service itself.
    device: Option<String>,
}

impl<'a> Inbound<'a> {
    fn parse(el: &'a Element) -> Self {
        Self {
            el,
            from: sender(el),
            device: el
                .attr("to")
                .and_then(|t| Jid::new(t).ok())
                .and_then(|t| t.node().map(|n| n.as_str().to_owned())),
        }
    }
}

/// Pauses the subscribers `access` does not allow (see
/// `Subscribers::pause_unless`), saying how many.
fn pause_outsiders(subscribers: &mut Subscribers, access: &Access) {
    let paused = subscribers.pause_unless(|jid| access.may_read(jid));
    if paused > 0 {
        tracing::info!(
            paused,
            "subscribers outside xmpp.access get nothing until it allows them again"
        );
    }
}

/// The component's state and logic.
#[derive(Debug)]
pub struct Gateway {
    me: Entity,
    directory: Arc<Directory>,
    access: Access,
    devices: HashMap<DeviceId, DeviceState>,
    subscribers: Subscribers,
    presence: PresenceBook,
    nodes: Nodes,
    guard: Guard,
    commands: Commands,
    /// The zone of times shown to people.
    zone: TimeZone,
    /// Where what happens is counted.
    telemetry: Arc<Telemetry>,
    /// Where write attempts are recorded.
    audit: AuditLog,
    /// Devices a reload removed, as they were: a probe from a subscriber
    /// is told so, and adding one back takes up where it left off.
    removed: HashMap<DeviceId, (items::NodeState, DeviceState)>,
    /// Active alarms and the alerts still to deliver.
    alerts: alerts::AlertBook,
}

impl Gateway {
    /// The gateway for `domain`, with subscriptions and items loaded from
    /// the store in `state_dir` (upgrading what an older version left),
    /// counting what it does into `telemetry`.
    pub fn new(
        domain: &str,
        gateway_id: &str,
        directory: Arc<Directory>,
        access: Access,
        state_dir: &Path,
        telemetry: Arc<Telemetry>,
    ) -> std::io::Result<Self> {
        let store =
            Arc::new(Store::open(state_dir, &mut upgrade::upgrade).map_err(std::io::Error::other)?);
        // Subscriptions to devices not configured now are kept: a device
        // that an adapter creates at run time (an MQTT template) is back
        // with its first message, and its subscribers with it.
        let subs = store.subscriptions().map_err(std::io::Error::other)?;
        let mut devices = HashMap::new();
        let mut nodes = Nodes::new(store, Arc::clone(&telemetry));
        let mut presence = PresenceBook::new(STATUS_INTERVAL);
        for d in directory.devices() {
            let state = nodes.resume(d).map_err(std::io::Error::other)?;
            devices.insert(d.id.clone(), state);
            presence.add(d);
        }
        let mut subscribers = Subscribers::new(subs, Arc::clone(&telemetry));
        pause_outsiders(&mut subscribers, &access);
        Ok(Self {
            me: Entity::new(domain, gateway_id),
            directory,
            access,
            devices,
            subscribers,
            presence,
            nodes,
            guard: Guard::new(Arc::clone(&telemetry)),
            commands: Commands::default(),
            zone: TimeZone::UTC,
            telemetry,
            audit: AuditLog::log_only(),
            removed: HashMap::new(),
            alerts: alerts::AlertBook::default(),
        })
    }

    /// Sets how often a status text may change with the values.
    pub fn set_status_interval(&mut self, interval: Duration) {
        self.presence.set_interval(interval);
    }

    /// Sets the zone of times shown to people (UTC until set).
    pub fn set_time_zone(&mut self, zone: TimeZone) {
        self.zone = zone;
    }

    /// Sets where write attempts are audited (only logged until set).
    pub fn set_audit(&mut self, audit: AuditLog) {
        self.audit = audit;
    }

    /// The metrics it counts into.
    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.telemetry
    }

    /// The component domain.
    pub fn domain(&self) -> &str {
        &self.me.domain
    }

    // ----- bus events -------------------------------------------------

    /// Takes on a device that an adapter created at run time (it is in the
    /// directory, but was not when the gateway started). False if unknown.
    fn adopt(&mut self, device: &DeviceId) -> bool {
        let Some(spec) = self.directory.device(device.as_str()).cloned() else {
            return false;
        };
        let state = match self.nodes.resume(&spec) {
            Ok(state) => state,
            Err(e) => {
                tracing::error!(device = %device, error = %e, "cannot read the history");
                self.nodes.add_empty(&spec);
                DeviceState::default()
            }
        };
        tracing::info!(device = %device, "device appeared at run time");
        self.devices.insert(device.clone(), state);
        self.presence.add(&spec);
        true
    }

    /// Readings or a status change. Readings update the device's state,
    /// whose item follows within [`items::ITEM_WINDOW`] (see
    /// [`Gateway::publish_due`]), so that what arrives together goes out
    /// as one item; a status change goes to presence subscribers at once.
    pub fn on_event(&mut self, event: DeviceEvent, now: Instant) -> Vec<Element> {
        if let EventKind::Alert(alert) = event.kind {
            return self.on_alert(alert, now);
        }
        let device = event.device;
        if !self.devices.contains_key(&device) && !self.adopt(&device) {
            return Vec::new();
        }
        let Some(state) = self.devices.get_mut(&device) else {
            return Vec::new();
        };
        match event.kind {
            EventKind::Readings(samples) => {
                if samples.is_empty() {
                    return Vec::new();
                }
                if self.nodes.has_unpublished(&device, state, &samples) {
                    // A second reading of a point whose first one still
                    // waits for its item: that item goes now, so that the
                    // window merges points, never loses a reading.
                    self.nodes
                        .publish(&self.me, &device, state, &mut self.subscribers);
                }
                for s in samples {
                    state.latest.insert(s.reading.point.clone(), s);
                }
                self.nodes.readings_came(&device, now);
                self.presence
                    .refresh_if_due(&self.me, &device, state, &self.subscribers, now)
            }
            EventKind::Status(status) => {
                state.status = Some(status);
                self.presence
                    .status_changed(&self.me, &device, state, &self.subscribers, now)
            }
            // Taken above.
            EventKind::Alert(_) => Vec::new(),
        }
    }

    /// Periodic work: status texts of online devices whose values
    /// changed; alarm reminders; rejoining the alerts room.
    pub fn tick(&mut self, now: Instant) -> Vec<Element> {
        let mut out = self.alerts_tick(now);
        for (device, state) in &self.devices {
            out.extend(self.presence.refresh_if_due(
                &self.me,
                device,
                state,
                &self.subscribers,
                now,
            ));
        }
        out
    }

    /// Every device's presence to every subscriber: after (re)connecting.
    pub fn all_presences(&mut self, now: Instant) -> Vec<Element> {
        let mut out = Vec::new();
        for (device, state) in &self.devices {
            out.extend(
                self.presence
                    .broadcast(&self.me, device, state, &self.subscribers, now),
            );
        }
        out
    }

    /// After (re)connecting: every device's presence to every presence
    /// subscriber (a device a reload removed says so again), and to every
    /// node subscriber the items published while
    /// the link was down (bounded by the history), oldest first. Item ids
    /// are stable: a subscriber that already has an item can drop the
    /// duplicate.
    pub fn on_connected(&mut self, now: Instant) -> Vec<Element> {
        LinkChanged { up: true }.emit(&self.telemetry);
        self.nodes.connected = true;
        let mut out = self.all_presences(now);
        // Devices a reload removed, perhaps while the link was down.
        let mut removed: Vec<&DeviceId> = self.removed.keys().collect();
        removed.sort();
        for device in removed {
            out.extend(presence::removed(&self.me, device, &self.subscribers));
        }
        self.nodes.read_missed(&self.subscribers);
        out.extend(self.alerts_connected(now));
        out
    }

    /// The last word: every device unavailable to every subscriber.
    pub fn goodbye(&mut self) -> Vec<Element> {
        let mut out = presence::goodbye(&self.me, &self.subscribers);
        if let Some(room) = self.alerts.settings.room.clone() {
            let nick = self.alerts.settings.nick.clone();
            out.extend(self.alerts.room.leave(&self.me.domain, &room, &nick));
        }
        out
    }

    // ----- inbound stanzas -------------------------------------------

    /// Handles one stanza from the server; returns what to send back.
    pub fn on_stanza(&mut self, el: &Element) -> Vec<Element> {
        let inbound = Inbound::parse(el);
        if !self.guard.admit(el, inbound.from.as_ref(), &self.me.domain) {
            return Guard::over_limit(el, inbound.from.as_ref(), &self.me.domain);
        }
        if let Some(out) = self.on_room_stanza(el, inbound.from.as_ref()) {
            return out;
        }
        match el.name() {
            "iq" => self.on_iq(&inbound),
            "presence" => self.on_presence(&inbound),
            "message" => self.on_message(&inbound),
            _ => Vec::new(),
        }
    }

    /// A stanza the reader refused for its depth or size (only its top
    /// element is left): a request gets `policy-violation`, the rest is
    /// dropped. Counted as malformed.
    pub fn refused(&mut self, stanza: &Element, why: Refusal) -> Vec<Element> {
        let from = sender(stanza);
        if !self.guard.admit(stanza, from.as_ref(), &self.me.domain) {
            return Guard::over_limit(stanza, from.as_ref(), &self.me.domain);
        }
        self.guard.malformed(stanza, why.as_str());
        if is_request(stanza) {
            return vec![iq_error(
                stanza,
                ErrorType::Modify,
                DefinedCondition::PolicyViolation,
                Some(why.as_str()),
            )];
        }
        Vec::new()
    }

    fn on_iq(&mut self, inbound: &Inbound<'_>) -> Vec<Element> {
        let el = inbound.el;
        let kind = el.attr("type").unwrap_or_default();
        if kind == "result" || kind == "error" {
            return Vec::new();
        }
        let Some(from) = &inbound.from else {
            self.guard.malformed(el, "iq without a valid sender");
            return Vec::new();
        };
        if kind != "get" && kind != "set" {
            self.guard.malformed(el, "iq of unknown type");
            return Vec::new();
        }
        if el.attr("id").is_none_or(str::is_empty) {
            // A reply could not be matched to anything by the sender.
            self.guard.malformed(el, "iq without an id");
            return Vec::new();
        }
        let payloads: Vec<&Element> = el.children().collect();
        let [payload] = payloads[..] else {
            self.guard.malformed(el, "iq without exactly one payload");
            return vec![iq_error(
                el,
                ErrorType::Modify,
                DefinedCondition::BadRequest,
                Some("an iq request carries exactly one payload"),
            )];
        };
        let bare = from.to_bare();
        if !self.access.may_read(&bare) {
            self.guard
                .forbidden(&bare, "request refused: not in access.read");
            return vec![iq_error(
                el,
                ErrorType::Auth,
                DefinedCondition::Forbidden,
                None,
            )];
        }
        let ns = payload.ns();
        let reply = match &inbound.device {
            None => self.service_iq(el, kind, payload, &ns, &bare),
            Some(d) => self.device_iq(el, kind, payload, d, &bare),
        };
        // No reply yet: it waits for the adapter (an ad-hoc job).
        let Some(reply) = reply else {
            return Vec::new();
        };
        let subscribed = reply.attr("type") == Some("result");
        let mut out = vec![reply];
        out.append(&mut self.commands.follow_ups);
        if subscribed && let Some(last) = self.last_item_for(el) {
            // XEP-0060 §6.1.7: a new subscriber gets the last published item.
            out.push(last);
        }
        out
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
            return Some(iq_error(
                el,
                ErrorType::Cancel,
                DefinedCondition::ItemNotFound,
                None,
            ));
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
                self.commands.follow_ups.extend(out);
                return reply;
            }
            ("set", "set", iot::NS_CONTROL) => return self.control(el, payload, &spec, from),
            ("get", "query", NS_DISCO_ITEMS)
                if payload.attr("node") == Some(commands::NS_COMMANDS) =>
            {
                let jid = self.me.device_jid(device);
                return Some(self.command_list(el, &jid, Some(&spec), from));
            }
            _ => {}
        }
        Some(
            self.entity_iq(el, kind, payload, Some(&spec))
                .or_else(|| self.vcard_iq(el, kind, payload, Some(&spec)))
                .or_else(|| self.device_disco_iq(el, kind, payload, &spec))
                .unwrap_or_else(|| self.guard.unsupported(el)),
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
        if let Some(reply) = self
            .entity_iq(el, kind, payload, None)
            .or_else(|| self.vcard_iq(el, kind, payload, None))
        {
            return Some(reply);
        }
        Some(match (kind, payload.name(), ns) {
            ("set", "command", commands::NS_COMMANDS) => {
                return self.command(el, payload, None, from);
            }
            ("get", "query", NS_DISCO_ITEMS)
                if payload.attr("node") == Some(commands::NS_COMMANDS) =>
            {
                let jid = self.me.domain.clone();
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
            _ => self.guard.unsupported(el),
        })
    }
}

pub mod alerts;
mod card;
mod commands;
mod entity;
mod guard;
pub mod history;
mod iot;
pub mod items;
mod jobs;
mod messages;
mod presence;
mod pubsub;
mod reload;
mod room;
mod subscribers;
mod upgrade;

pub use alerts::AlertSettings;
pub use jobs::{Job, JobOutcome, MAX_QUEUED_JOBS, MAX_RUNNING_JOBS};
pub use reload::Reconfigured;
#[cfg(test)]
mod tests;
