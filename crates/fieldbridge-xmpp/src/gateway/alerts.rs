//! Alarms reaching people (issue 14): the engine's [`Alert`]s from the
//! bus, kept as the active alarms by key (with who acknowledged them), and
//! delivered as chat messages from the device's JID to `alerts.to`, as
//! groupchat messages in `alerts.room`, and as items of the `alerts`
//! pubsub node.
//!
//! Every transition updates the book (so that `alarms` is right); only
//! those with `notify` are sent. While the link is down (or the gateway is
//! not in its room) they wait, at most [`MAX_QUEUED`] (the oldest dropped,
//! and said so), and go when it is back with a XEP-0203 delay stamp of
//! when they happened; more than [`SUMMARY_OVER`] go as one message, a
//! line each. Every `remind`, a raised critical alarm nobody acknowledged
//! is sent again. The room itself (joining, rejoining, creating) is
//! `room`.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fieldbridge_core::alarm::{AlarmKey, Alert, Change, Severity};
use fieldbridge_core::audit::{Entry, Via};
use fieldbridge_core::display::clock;
use fieldbridge_core::telemetry::{AlertMessagesSent, AlertsDropped, InternalEvent};
use fieldbridge_core::{DeviceId, DeviceSpec};
use fieldbridge_store::micros;
use jiff::tz::TimeZone;
use minidom::Element;
use tokio::time::Instant;
use xmpp_parsers::jid::BareJid;

use super::Gateway;
use super::items::{NS_DELAY, Notification};
use super::room::Room;
use crate::chat;
use crate::config::AlertsConfig;
use crate::sensordata::{self, escape_into};
use crate::xml::{
    NS_COMPONENT, NS_PUBSUB, NS_PUBSUB_EVENT, child, element, iq_result, set, stanza, text, with,
};

/// The pubsub node of alarm transitions, at the component domain.
pub const ALERTS_NODE: &str = "alerts";
/// The namespace of an `alerts` item's payload.
pub const NS_ALERT: &str = "urn:fieldbridge:alert:0";
/// Alerts kept for a recipient (or the room) while they cannot be sent;
/// beyond, the oldest are dropped and counted.
pub const MAX_QUEUED: usize = 1000;
/// More waiting alerts than this go as one message, a line each.
pub const SUMMARY_OVER: usize = 5;
/// Items of the `alerts` node kept for items requests (newest).
pub const NODE_ITEMS: usize = 100;

/// The answer to an `ack` from a reader who may not control.
pub const NOT_ACK: &str =
    "Only users in access.control may acknowledge alarms; `alarms` shows them to you.";

/// `alerts:` as the component uses it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertSettings {
    /// Who gets alerts as chat messages.
    pub to: Vec<BareJid>,
    /// The room, if any.
    pub room: Option<BareJid>,
    /// The gateway's nickname in it.
    pub nick: String,
    /// How often unacknowledged critical alarms are sent again.
    pub remind: Option<Duration>,
}

impl AlertSettings {
    /// From the checked `alerts:` section; `gateway_id` is the default
    /// nickname.
    pub fn new(config: &AlertsConfig, gateway_id: &str) -> Self {
        Self {
            to: config.recipients(),
            room: config.room_jid(),
            nick: config.nick_or(gateway_id).to_owned(),
            remind: config.remind,
        }
    }
}

/// One raised alarm.
#[derive(Debug, Clone)]
struct Active {
    /// The transition that raised it (or the flapping summary that left it
    /// raised).
    alert: Alert,
    /// Who acknowledged it, and when.
    acked: Option<(BareJid, SystemTime)>,
    /// When it was last sent (raised or reminded).
    sent: Instant,
}

/// What the gateway knows of alarms and what it still has to say.
#[derive(Debug, Default)]
pub(super) struct AlertBook {
    pub(super) settings: AlertSettings,
    active: BTreeMap<AlarmKey, Active>,
    /// Notifying alerts the chat recipients have not been sent (the link
    /// was down).
    chat_queue: VecDeque<Alert>,
    chat_dropped: u64,
    /// Notifying alerts the room has not been sent (not in it).
    room_queue: VecDeque<Alert>,
    room_dropped: u64,
    /// The `alerts` node's newest items: id and payload.
    items: VecDeque<(u64, Arc<str>)>,
    /// The newest item the node's subscribers were sent.
    last_sent: u64,
    pub(super) room: Room,
}

/// Pushes `alert`, dropping (and counting) the oldest beyond the bound;
/// how many it dropped.
fn enqueue(queue: &mut VecDeque<Alert>, dropped: &mut u64, alert: Alert) -> u64 {
    queue.push_back(alert);
    let mut now_dropped = 0;
    while queue.len() > MAX_QUEUED {
        queue.pop_front();
        now_dropped += 1;
    }
    if now_dropped > 0 && *dropped == 0 {
        tracing::warn!(
            max = MAX_QUEUED,
            "more alerts wait than are kept: the oldest are dropped (the summary says how many)"
        );
    }
    *dropped += now_dropped;
    now_dropped
}

/// Who alert messages go to: `alerts.to` in chat, or the room.
#[derive(Debug, Clone, Copy)]
enum Audience {
    Chat,
    Room,
}

impl Audience {
    /// The `via` label of the messages counted.
    fn via(self) -> &'static str {
        match self {
            Audience::Chat => "chat",
            Audience::Room => "room",
        }
    }
}

/// The marker people see first: how bad, or that it is over.
pub fn marker(alert: &Alert) -> &'static str {
    let raised = match alert.change {
        Change::Raised => true,
        Change::Cleared => false,
        Change::Flapping { raised, .. } => raised,
    };
    if !raised {
        return "✅ CLEARED";
    }
    match alert.severity {
        Severity::Critical => "🔴 CRITICAL",
        Severity::Warning => "🟠 WARNING",
        Severity::Info => "🔵 INFO",
    }
}

/// An alert as people read it: `🔴 CRITICAL Boiler room: Temperature is
/// 95.3 °C, above 85 °C for 30 s · 14:03:12 +01:00`.
pub fn render(alert: &Alert, zone: &TimeZone) -> String {
    format!(
        "{} {} · {}",
        marker(alert),
        alert.text,
        clock(alert.at, zone)
    )
}

/// Several alerts as one message, a line each, oldest first; `dropped`
/// older ones did not fit.
fn summary(alerts: &[Alert], dropped: u64, zone: &TimeZone) -> String {
    let mut out = format!("{} alerts while they could not be sent:", alerts.len());
    if dropped > 0 {
        let _ = write!(out, " ({dropped} older ones dropped)");
    }
    for a in alerts {
        out.push('\n');
        out.push_str(&render(a, zone));
    }
    out
}

/// The `change` attribute of an item.
fn change_name(change: &Change) -> &'static str {
    match change {
        Change::Raised => "raised",
        Change::Cleared => "cleared",
        Change::Flapping { .. } => "flapping",
    }
}

/// An `alerts` item's payload: `<alert xmlns='urn:fieldbridge:alert:0'
/// key='boiler/temperature' severity='critical' change='raised' at=…
/// since=… value='95.3'><device id='boiler' name='Boiler room'/><text>…
/// </text></alert>`; a flapping summary adds `times` and `raised`.
pub fn alert_payload(alert: &Alert, name_of: impl Fn(&DeviceId) -> String) -> String {
    let mut out = String::with_capacity(256 + alert.text.len());
    let attr = |out: &mut String, name: &str, value: &str| {
        let _ = write!(out, " {name}='");
        escape_into(out, value);
        out.push('\'');
    };
    out.push_str("<alert xmlns='");
    out.push_str(NS_ALERT);
    out.push('\'');
    attr(&mut out, "key", &alert.key.to_string());
    attr(&mut out, "severity", alert.severity.name());
    attr(&mut out, "change", change_name(&alert.change));
    attr(&mut out, "at", &sensordata::timestamp(alert.at));
    attr(&mut out, "since", &sensordata::timestamp(alert.since));
    if let Some(v) = &alert.value {
        attr(&mut out, "value", &v.to_string());
    }
    if let Change::Flapping { times, raised } = alert.change {
        attr(&mut out, "times", &times.to_string());
        attr(&mut out, "raised", if raised { "true" } else { "false" });
    }
    out.push('>');
    for d in &alert.devices {
        out.push_str("<device");
        attr(&mut out, "id", d.as_str());
        attr(&mut out, "name", &name_of(d));
        out.push_str("/>");
    }
    out.push_str("<text>");
    escape_into(&mut out, &alert.text);
    out.push_str("</text></alert>");
    out
}

/// A XEP-0203 delay stamp from the component.
fn delay(at: SystemTime, from: &str) -> Element {
    let mut d = with(element("delay", NS_DELAY), "from", from);
    set(&mut d, "stamp", sensordata::timestamp(at));
    d
}

/// Whether `alert` concerns `device`.
fn concerns(alert: &Alert, device: &DeviceId) -> bool {
    alert.devices.contains(device)
}

impl AlertBook {
    /// Takes a transition into the active alarms.
    fn record(&mut self, alert: &Alert, now: Instant) {
        let raised = match alert.change {
            Change::Raised => true,
            Change::Cleared => false,
            Change::Flapping { raised, .. } => raised,
        };
        if !raised {
            self.active.remove(&alert.key);
            return;
        }
        match self.active.get_mut(&alert.key) {
            // A flapping summary of an alarm still raised keeps its ack.
            Some(a) if matches!(alert.change, Change::Flapping { .. }) => {
                a.alert = alert.clone();
                a.sent = now;
            }
            _ => {
                self.active.insert(
                    alert.key.clone(),
                    Active {
                        alert: alert.clone(),
                        acked: None,
                        sent: now,
                    },
                );
            }
        }
    }

    /// The raised alarms of `device` (all when `None`), by key.
    fn of<'a>(
        &'a self,
        device: Option<&'a DeviceId>,
    ) -> impl Iterator<Item = (&'a AlarmKey, &'a Active)> + 'a {
        self.active
            .iter()
            .filter(move |(_, a)| device.is_none_or(|d| concerns(&a.alert, d)))
    }

    /// The severity of each point of `device` in alarm (the worst, should
    /// there be several).
    pub(super) fn point_flags(&self, device: &DeviceId) -> super::items::AlarmFlags {
        let mut out = BTreeMap::new();
        for key in self.active.keys() {
            if let AlarmKey::Point { device: d, point } = key
                && d == device
            {
                let s = self.active[key].alert.severity;
                let worst = out.entry(point.clone()).or_insert(s);
                *worst = (*worst).max(s);
            }
        }
        out
    }

    /// The raised alarms, as the `alarms` command answers.
    fn listing(&self, device: Option<&DeviceId>, title: &str, zone: &TimeZone) -> String {
        let mut lines: Vec<String> = Vec::new();
        for (_, a) in self.of(device) {
            let ack = match &a.acked {
                Some((who, at)) => format!("acknowledged by {who} at {}", clock(*at, zone)),
                None => "not acknowledged".to_owned(),
            };
            lines.push(format!(
                "{} {} · raised {} · {ack}",
                marker(&a.alert),
                a.alert.text,
                clock(a.alert.at, zone)
            ));
        }
        match lines.len() {
            0 => format!("{title}: no active alarms."),
            1 => format!("{title}: 1 active alarm\n{}", lines[0]),
            n => format!("{title}: {n} active alarms\n{}", lines.join("\n")),
        }
    }
}

impl Gateway {
    /// Sets `alerts:` (at start, and on reload): a new room is joined (the
    /// old one left), new recipients get what follows.
    pub fn set_alerts(&mut self, settings: AlertSettings, now: Instant) -> Vec<Element> {
        let old_room = self.alerts.settings.room.clone();
        let old_nick = self.alerts.settings.nick.clone();
        self.alerts.settings = settings;
        let mut out = Vec::new();
        if old_room != self.alerts.settings.room || old_nick != self.alerts.settings.nick {
            if let Some(old) = &old_room {
                out.extend(self.alerts.room.leave(&self.me.domain, old, &old_nick));
            }
            // What waited for the old room is not for the new one.
            self.alerts.room_queue.clear();
            self.alerts.room_dropped = 0;
            if self.is_connected() {
                out.extend(self.room_join(now));
            }
        }
        out
    }

    /// A transition from the engine: the book, then (when it notifies)
    /// the node, the recipients and the room, now or when they can be
    /// reached.
    pub(super) fn on_alert(&mut self, alert: Alert, now: Instant) -> Vec<Element> {
        self.alerts.record(&alert, now);
        if let AlarmKey::Point { device, .. } = &alert.key {
            // The state item shows the point's alarm flags: publish it.
            let flags = self.alerts.point_flags(device);
            if flags.is_empty() {
                self.nodes.flags.remove(device);
            } else {
                self.nodes.flags.insert(device.clone(), flags);
            }
            if self
                .devices
                .get(device)
                .is_some_and(|d| !d.latest.is_empty())
            {
                self.nodes.readings_came(device, now);
            }
        }
        if !alert.notify {
            return Vec::new();
        }
        tracing::info!(alarm = %alert.key, severity = alert.severity.name(), change = change_name(&alert.change), "{}", alert.text);
        self.publish_alert(&alert);
        let mut out = Vec::new();
        if self.is_connected() {
            let sent = self.messages(Audience::Chat, std::slice::from_ref(&alert), None, None);
            self.count_sent(Audience::Chat, "live", sent.len());
            out.extend(sent);
        } else {
            let b = &mut self.alerts;
            let count = enqueue(&mut b.chat_queue, &mut b.chat_dropped, alert.clone());
            AlertsDropped {
                queue: "chat",
                count,
            }
            .emit(&self.telemetry);
        }
        if self.alerts.settings.room.is_some() {
            if self.is_connected() && self.alerts.room.is_in() {
                let sent = self.messages(Audience::Room, &[alert], None, None);
                self.count_sent(Audience::Room, "live", sent.len());
                out.extend(sent);
            } else {
                let b = &mut self.alerts;
                let count = enqueue(&mut b.room_queue, &mut b.room_dropped, alert);
                AlertsDropped {
                    queue: "room",
                    count,
                }
                .emit(&self.telemetry);
            }
        }
        out
    }

    fn count_sent(&self, to: Audience, kind: &'static str, count: usize) {
        AlertMessagesSent {
            via: to.via(),
            kind,
            count,
        }
        .emit(&self.telemetry);
    }

    /// After (re)connecting: what waited for the recipients, delay-stamped;
    /// the node's subscribers get the items they missed; the room is
    /// joined (its queue goes once in).
    pub(super) fn alerts_connected(&mut self, now: Instant) -> Vec<Element> {
        let waiting: Vec<Alert> = self.alerts.chat_queue.drain(..).collect();
        let dropped = std::mem::take(&mut self.alerts.chat_dropped);
        for a in &waiting {
            // Just sent, if late: the next reminder is a `remind` away.
            if let Some(active) = self.alerts.active.get_mut(&a.key) {
                active.sent = now;
            }
        }
        let mut out = self.replay(&waiting, dropped, Audience::Chat);
        let missed: Vec<(u64, Arc<str>)> = self
            .alerts
            .items
            .iter()
            .filter(|(id, _)| *id > self.alerts.last_sent)
            .cloned()
            .collect();
        for (id, payload) in missed {
            self.notify_alert_item(id, payload);
        }
        out.extend(self.room_join(now));
        out
    }

    /// Once in the room: what waited for it.
    pub(super) fn room_entered(&mut self) -> Vec<Element> {
        let waiting: Vec<Alert> = self.alerts.room_queue.drain(..).collect();
        let dropped = std::mem::take(&mut self.alerts.room_dropped);
        self.replay(&waiting, dropped, Audience::Room)
    }

    /// Waiting alerts, each with its time, or one message for many.
    fn replay(&mut self, waiting: &[Alert], dropped: u64, to: Audience) -> Vec<Element> {
        let out = if waiting.len() > SUMMARY_OVER {
            let body = summary(waiting, dropped, &self.zone);
            let stamp = waiting.first().map(|a| a.at);
            self.messages(to, waiting, stamp, Some(&body))
        } else {
            waiting
                .iter()
                .flat_map(|a| self.messages(to, std::slice::from_ref(a), Some(a.at), None))
                .collect()
        };
        self.count_sent(to, "replay", out.len());
        out
    }

    /// The messages of one alert (its own text, or `body`) or of a summary
    /// of several (`body`) to `to`; `stamp`: a replay, delay-stamped.
    fn messages(
        &self,
        to: Audience,
        alerts: &[Alert],
        stamp: Option<SystemTime>,
        body: Option<&str>,
    ) -> Vec<Element> {
        let Some(first) = alerts.first() else {
            return Vec::new();
        };
        let rendered;
        let body = match body {
            Some(b) => b,
            None => {
                rendered = render(first, &self.zone);
                &rendered
            }
        };
        match to {
            Audience::Chat => self.chat_alerts(alerts, stamp, body),
            Audience::Room => self.room_alerts(stamp, body),
        }
    }

    /// `body` to every recipient who may read, from the device when all
    /// `alerts` are of one device.
    fn chat_alerts(&self, alerts: &[Alert], stamp: Option<SystemTime>, body: &str) -> Vec<Element> {
        let Some(first) = alerts.first() else {
            return Vec::new();
        };
        // From the device when all are of one device (a connection alert
        // is from the gateway itself).
        let one_device = match &first.key {
            AlarmKey::Connection(_) => None,
            _ => first.devices.first(),
        }
        .filter(|d| {
            alerts
                .iter()
                .all(|a| !matches!(a.key, AlarmKey::Connection(_)) && a.devices.first() == Some(*d))
        });
        let from = one_device.map_or_else(
            || self.me.domain.clone(),
            |d| self.me.device_jid(d.as_str()),
        );
        self.alerts
            .settings
            .to
            .iter()
            .filter(|to| self.access.may_read(to))
            .map(|to| self.alert_message(&from, &to.to_string(), "chat", body, stamp))
            .collect()
    }

    /// `body` as a groupchat message in the room, if there is one.
    fn room_alerts(&self, stamp: Option<SystemTime>, body: &str) -> Vec<Element> {
        let Some(room) = &self.alerts.settings.room else {
            return Vec::new();
        };
        vec![self.alert_message(
            &self.room_occupant_jid(),
            &room.to_string(),
            "groupchat",
            body,
            stamp,
        )]
    }

    /// `<component>/alerts`: who the gateway is in the room.
    pub(super) fn room_occupant_jid(&self) -> String {
        format!("{}/{}", self.me.domain, super::room::RESOURCE)
    }

    fn alert_message(
        &self,
        from: &str,
        to: &str,
        kind: &str,
        body: &str,
        stamp: Option<SystemTime>,
    ) -> Element {
        let mut m = with(stanza("message", from, to), "type", kind);
        m.append_child(text("body", NS_COMPONENT, body));
        if let Some(at) = stamp {
            m.append_child(delay(at, &self.me.domain));
        }
        m
    }

    /// An item on the `alerts` node, and (while connected) to its
    /// subscribers. Ids are microseconds, increasing: ordered across
    /// restarts too.
    fn publish_alert(&mut self, alert: &Alert) {
        let directory = Arc::clone(&self.directory);
        let name_of = |d: &DeviceId| {
            directory
                .device(d.as_str())
                .map_or_else(|| d.to_string(), |s| s.display_name().to_owned())
        };
        let payload: Arc<str> = alert_payload(alert, name_of).into();
        let last = self.alerts.items.back().map_or(0, |(id, _)| *id);
        let id = micros(SystemTime::now()).max(last + 1);
        self.alerts.items.push_back((id, Arc::clone(&payload)));
        while self.alerts.items.len() > NODE_ITEMS {
            self.alerts.items.pop_front();
        }
        if self.is_connected() {
            self.notify_alert_item(id, payload);
        }
    }

    fn notify_alert_item(&mut self, id: u64, payload: Arc<str>) {
        self.alerts.last_sent = self.alerts.last_sent.max(id);
        let to = self.subscribers.pubsub_list(ALERTS_NODE);
        if to.is_empty() {
            return;
        }
        self.nodes.push_notification(Notification::new(
            self.me.domain.clone(),
            ALERTS_NODE,
            id,
            payload,
            to,
        ));
    }

    /// An items request on the `alerts` node, answered from memory: the
    /// newest `max_items` (all that are kept, at most [`NODE_ITEMS`]), or
    /// those asked for by id, oldest first.
    pub(super) fn alert_items_reply(&self, request: &Element, action: &Element) -> Element {
        let wanted: Vec<&str> = action
            .children()
            .filter(|c| c.name() == "item")
            .filter_map(|c| c.attr("id"))
            .collect();
        let max = action
            .attr("max_items")
            .and_then(|m| m.parse::<usize>().ok())
            .unwrap_or(NODE_ITEMS);
        let skip = self.alerts.items.len().saturating_sub(max);
        let mut list = with(element("items", NS_PUBSUB), "node", ALERTS_NODE);
        for (id, payload) in self.alerts.items.iter().skip(skip) {
            let id = super::history::item_id(*id);
            if !wanted.is_empty() && !wanted.contains(&id.as_str()) {
                continue;
            }
            if let Some(p) = crate::reader::parse_element(payload) {
                list.append_child(child(with(element("item", NS_PUBSUB), "id", id), p));
            }
        }
        iq_result(request, Some(child(element("pubsub", NS_PUBSUB), list)))
    }

    /// After subscribing to the `alerts` node: its newest item, if any,
    /// delay-stamped with when it was published.
    pub(super) fn last_alert_item(&self, jid: &str) -> Option<Element> {
        let (id, payload) = self.alerts.items.back()?;
        let entry = child(
            with(
                element("item", NS_PUBSUB_EVENT),
                "id",
                super::history::item_id(*id),
            ),
            crate::reader::parse_element(payload)?,
        );
        let items = child(
            with(element("items", NS_PUBSUB_EVENT), "node", ALERTS_NODE),
            entry,
        );
        let mut message = with(stanza("message", &self.me.domain, jid), "type", "headline");
        message.append_child(child(element("event", NS_PUBSUB_EVENT), items));
        let published = SystemTime::UNIX_EPOCH + Duration::from_micros(*id);
        message.append_child(delay(published, &self.me.domain));
        Some(message)
    }

    /// Periodic work: reminders of raised critical alarms nobody
    /// acknowledged; the room rejoined when its backoff is over.
    pub(super) fn alerts_tick(&mut self, now: Instant) -> Vec<Element> {
        let mut out = Vec::new();
        if !self.is_connected() {
            return out;
        }
        out.extend(self.room_retry(now));
        let Some(every) = self.alerts.settings.remind else {
            return out;
        };
        let due: Vec<Alert> = self
            .alerts
            .active
            .values_mut()
            .filter(|a| {
                a.alert.severity == Severity::Critical
                    && a.acked.is_none()
                    && now.saturating_duration_since(a.sent) >= every
            })
            .map(|a| {
                a.sent = now;
                a.alert.clone()
            })
            .collect();
        for a in due {
            let body = format!("Reminder: {}", render(&a, &self.zone));
            let chat = self.messages(Audience::Chat, std::slice::from_ref(&a), None, Some(&body));
            self.count_sent(Audience::Chat, "reminder", chat.len());
            out.extend(chat);
            if self.alerts.room.is_in() {
                let room =
                    self.messages(Audience::Room, std::slice::from_ref(&a), None, Some(&body));
                self.count_sent(Audience::Room, "reminder", room.len());
                out.extend(room);
            }
        }
        out
    }

    /// The `alarms` answer: `device`'s raised alarms, or all.
    pub(super) fn alarms_text(&self, device: Option<&DeviceSpec>) -> String {
        match device {
            Some(spec) => self
                .alerts
                .listing(Some(&spec.id), spec.display_name(), &self.zone),
            None => self.alerts.listing(None, "All devices", &self.zone),
        }
    }

    /// `ack <what>` from `who`: on a device, a point (id or label),
    /// `offline` or `all`; on the gateway's own JID, an alarm key
    /// (`boiler/temperature`) or `all`. Only `access.control`; the answer
    /// says what was acknowledged or why not. Logged and audited.
    pub(super) fn ack(
        &mut self,
        who: &BareJid,
        via: Via,
        device: Option<&DeviceSpec>,
        what: &str,
    ) -> String {
        if !self.access.may_control(who) {
            let target = device.map(|d| d.id.clone());
            if let Some(d) = &target {
                self.guard.control_refused(who, d, "ack");
            }
            return NOT_ACK.to_owned();
        }
        let what = what.trim();
        let all = what.eq_ignore_ascii_case("all");
        let keys: Vec<AlarmKey> = match device {
            Some(spec) if all => self
                .alerts
                .of(Some(&spec.id))
                .map(|(k, _)| k.clone())
                .collect(),
            None if all => self.alerts.active.keys().cloned().collect(),
            Some(spec) if what.eq_ignore_ascii_case("offline") => self
                .alerts
                .of(Some(&spec.id))
                .filter(|(k, _)| matches!(k, AlarmKey::Offline(_) | AlarmKey::Connection(_)))
                .map(|(k, _)| k.clone())
                .collect(),
            Some(spec) => match chat::find_point(spec, what) {
                Some(p) => vec![AlarmKey::Point {
                    device: spec.id.clone(),
                    point: p.id.clone(),
                }],
                None => return super::messages::unknown_point(spec, what),
            },
            None => self
                .alerts
                .active
                .keys()
                .filter(|k| k.to_string().eq_ignore_ascii_case(what))
                .cloned()
                .collect(),
        };
        let now = SystemTime::now();
        let mut done = Vec::new();
        for key in keys {
            let Some(a) = self.alerts.active.get_mut(&key) else {
                continue;
            };
            if a.acked.is_some() {
                continue;
            }
            a.acked = Some((who.clone(), now));
            let device = a
                .alert
                .devices
                .first()
                .map(ToString::to_string)
                .unwrap_or_default();
            tracing::info!(jid = %who, via = via.as_str(), alarm = %key, "alarm acknowledged");
            self.audit
                .record(Entry::ack(who.to_string(), via, device, key.to_string()));
            done.push(a.alert.text.clone());
        }
        match done.len() {
            0 if all => "Nothing to acknowledge: no unacknowledged alarms.".to_owned(),
            0 => format!("No unacknowledged alarm of {what:?} is raised."),
            _ => format!("Acknowledged:\n{}", done.join("\n")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fieldbridge_core::{PointId, Value};

    fn alert(change: Change, severity: Severity) -> Alert {
        let boiler = DeviceId::new("boiler").unwrap();
        Alert {
            key: AlarmKey::Point {
                device: boiler.clone(),
                point: PointId::new("temperature").unwrap(),
            },
            severity,
            change,
            notify: true,
            devices: vec![boiler],
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_615_392),
            since: SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_615_362),
            value: Some(Value::Float(95.3)),
            text: "Boiler room: Temperature is 95.3 °C, above 85 °C for 30 s".into(),
        }
    }

    #[test]
    fn an_alert_reads_marker_text_and_local_time() {
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        let raised = alert(Change::Raised, Severity::Critical);
        assert_eq!(
            render(&raised, &berlin),
            "🔴 CRITICAL Boiler room: Temperature is 95.3 °C, above 85 °C for 30 s · 15:03:12 +01:00"
        );
        let cases = [
            (Change::Raised, Severity::Warning, "🟠 WARNING"),
            (Change::Raised, Severity::Info, "🔵 INFO"),
            (Change::Cleared, Severity::Critical, "✅ CLEARED"),
            (
                Change::Flapping {
                    times: 5,
                    raised: true,
                },
                Severity::Critical,
                "🔴 CRITICAL",
            ),
            (
                Change::Flapping {
                    times: 5,
                    raised: false,
                },
                Severity::Critical,
                "✅ CLEARED",
            ),
        ];
        for (change, severity, want) in cases {
            assert_eq!(marker(&alert(change.clone(), severity)), want, "{change:?}");
        }
    }

    #[test]
    fn an_item_carries_key_times_devices_and_text() {
        let mut a = alert(Change::Raised, Severity::Critical);
        a.text = "x < y & 'z'".into();
        let payload = alert_payload(&a, |_| "Boiler room".into());
        assert_eq!(
            payload,
            "<alert xmlns='urn:fieldbridge:alert:0' key='boiler/temperature' severity='critical' \
             change='raised' at='2026-11-25T14:03:12.000Z' since='2026-11-25T14:02:42.000Z' \
             value='95.3'><device id='boiler' name='Boiler room'/><text>x &lt; y &amp; &apos;z&apos;</text></alert>"
        );
        let el = crate::reader::parse_element(&payload).expect("well-formed");
        assert_eq!(el.ns(), NS_ALERT);
        let flapping = alert_payload(
            &alert(
                Change::Flapping {
                    times: 5,
                    raised: false,
                },
                Severity::Warning,
            ),
            |_| "B".into(),
        );
        assert!(
            flapping.contains(" change='flapping'")
                && flapping.contains(" times='5' raised='false'"),
            "{flapping}"
        );
    }

    #[test]
    fn queues_are_bounded_and_count_what_they_drop() {
        let mut q = VecDeque::new();
        let mut dropped = 0;
        for i in 0..MAX_QUEUED + 3 {
            let mut a = alert(Change::Raised, Severity::Info);
            a.text = i.to_string();
            enqueue(&mut q, &mut dropped, a);
        }
        assert_eq!(q.len(), MAX_QUEUED);
        assert_eq!(dropped, 3);
        assert_eq!(q.front().map(|a| a.text.as_str()), Some("3"));
    }
}
