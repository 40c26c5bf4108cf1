//! The events, one type each: what it counts and how it is logged.

use std::fmt::Display;
use std::time::Duration;

use super::{InternalEvent, Telemetry, labels, seconds};
use crate::alarm::{AlarmKey, Severity};
use crate::event::DeviceStatus;
use crate::id::{ConnectionId, DeviceId, PointId};

// ----- normalization ---------------------------------------------------

/// Samples of one device received from its adapter.
#[derive(Debug)]
pub struct ReadingsReceived<'a> {
    /// The device (not necessarily configured).
    pub device: &'a DeviceId,
    /// Whether the device is configured: if not, its label is empty, as
    /// for [`ReadingsSkipped`] (ids an adapter invents must not grow the
    /// metrics).
    pub known_device: bool,
    /// How many samples.
    pub count: u64,
}

impl InternalEvent for ReadingsReceived<'_> {
    fn emit(&self, t: &Telemetry) {
        let device = if self.known_device {
            self.device.as_str()
        } else {
            ""
        };
        t.readings_received
            .get_or_create(&labels([("device", device)]))
            .inc_by(self.count);
    }
}

/// One device update put on the bus.
#[derive(Debug)]
pub struct UpdatePublished<'a> {
    /// The device.
    pub device: &'a DeviceId,
    /// Samples it carries.
    pub samples: u64,
}

impl InternalEvent for UpdatePublished<'_> {
    fn emit(&self, t: &Telemetry) {
        let l = labels([("device", self.device.as_str())]);
        t.updates_published.get_or_create(&l).inc();
        t.readings_published.get_or_create(&l).inc_by(self.samples);
    }
}

/// Why normalization did not publish a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipCause {
    /// It did not move beyond the deadband (or did not change) and nothing
    /// else of its update was due.
    Deadband,
    /// A held sample replaced by a newer one during `min_interval`.
    RateLimited,
    /// A device or point that is not configured.
    Unknown,
    /// Not a finite number.
    Invalid,
}

impl SkipCause {
    /// The `cause` label.
    pub fn name(self) -> &'static str {
        match self {
            SkipCause::Deadband => "deadband",
            SkipCause::RateLimited => "rate_limited",
            SkipCause::Unknown => "unknown",
            SkipCause::Invalid => "invalid",
        }
    }
}

/// Samples normalization did not publish. Unknown and invalid ones are
/// logged once per device and point (then at debug); the others are normal
/// and only counted.
#[derive(Debug)]
pub struct ReadingsSkipped<'a> {
    /// The device; its label is empty for a device that is not configured
    /// (ids an adapter invents must not grow the metrics).
    pub device: &'a DeviceId,
    /// Whether the device is configured.
    pub known_device: bool,
    /// The point, when one is to blame.
    pub point: Option<&'a PointId>,
    /// Why.
    pub cause: SkipCause,
    /// How many samples.
    pub count: u64,
}

impl InternalEvent for ReadingsSkipped<'_> {
    fn emit(&self, t: &Telemetry) {
        let device = if self.known_device {
            self.device.as_str()
        } else {
            ""
        };
        t.readings_skipped
            .get_or_create(&labels([("device", device), ("cause", self.cause.name())]))
            .inc_by(self.count);
        let point = self.point.map(PointId::as_str).unwrap_or("");
        let loud = matches!(self.cause, SkipCause::Unknown | SkipCause::Invalid)
            && t.first(self.cause.name(), &format!("{}\0{point}", self.device));
        let what = match (self.cause, self.point) {
            (SkipCause::Unknown, Some(_)) => "reading for a point that is not configured; ignored",
            (SkipCause::Unknown, None) => "event for a device that is not configured; ignored",
            (SkipCause::Invalid, _) => "value is not a finite number; ignored",
            _ => return,
        };
        if loud {
            tracing::warn!(device = %self.device, point, "{what} (further ones are counted quietly)");
        } else {
            tracing::debug!(device = %self.device, point, "{what}");
        }
    }
}

/// A device's status changed (or it became known, with `None`).
#[derive(Debug)]
pub struct DeviceStatusChanged<'a> {
    /// The device.
    pub device: &'a DeviceId,
    /// Its new status.
    pub status: &'a DeviceStatus,
}

impl InternalEvent for DeviceStatusChanged<'_> {
    fn emit(&self, t: &Telemetry) {
        tracing::info!(device = %self.device, status = %self.status, "device status changed");
        t.set_device_status(self.device, Some(self.status));
    }
}

// ----- alarms -----------------------------------------------------------

/// An alarm was raised (a point's limit, a device offline, a connection
/// down).
#[derive(Debug)]
pub struct AlarmRaised<'a> {
    /// What is in alarm (`boiler/temperature`, `connection/plc`): logged,
    /// never a label.
    pub key: &'a AlarmKey,
    /// How urgent.
    pub severity: Severity,
    /// Whether people are told of it (false while it flaps).
    pub notify: bool,
}

impl InternalEvent for AlarmRaised<'_> {
    fn emit(&self, t: &Telemetry) {
        let (device, point) = key_parts(self.key);
        tracing::info!(
            alarm = %self.key,
            device,
            point,
            severity = self.severity.name(),
            notify = self.notify,
            "alarm raised"
        );
        t.alarms_raised
            .get_or_create(&labels([("severity", self.severity.name())]))
            .inc();
    }
}

/// An alarm was cleared.
#[derive(Debug)]
pub struct AlarmCleared<'a> {
    /// What was in alarm.
    pub key: &'a AlarmKey,
    /// How urgent it was.
    pub severity: Severity,
    /// How long it was raised.
    pub lasted: Duration,
}

impl InternalEvent for AlarmCleared<'_> {
    fn emit(&self, _: &Telemetry) {
        let (device, point) = key_parts(self.key);
        tracing::info!(
            alarm = %self.key,
            device,
            point,
            severity = self.severity.name(),
            lasted_s = seconds(self.lasted),
            "alarm cleared"
        );
    }
}

/// The alarms raised now changed: `active` per severity, for the
/// `alarms_active` gauge.
#[derive(Debug)]
pub struct AlarmsActive {
    /// Raised alarms of each of [`Severity::ALL`], in that order.
    pub active: [usize; 3],
}

impl InternalEvent for AlarmsActive {
    fn emit(&self, t: &Telemetry) {
        for (severity, n) in Severity::ALL.into_iter().zip(self.active) {
            t.alarms_active
                .get_or_create(&labels([("severity", severity.name())]))
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}

/// The device and point fields of an alarm's log line (empty when the key
/// has none).
fn key_parts(key: &AlarmKey) -> (&str, &str) {
    match key {
        AlarmKey::Point { device, point } => (device.as_str(), point.as_str()),
        AlarmKey::Offline(device) => (device.as_str(), ""),
        AlarmKey::Connection(_) => ("", ""),
    }
}

// ----- the bus -----------------------------------------------------------

/// A sink fell behind: its mailbox starts coalescing.
#[derive(Debug)]
pub struct SinkLagging<'a> {
    /// The sink's name.
    pub sink: &'a str,
}

impl InternalEvent for SinkLagging<'_> {
    fn emit(&self, _: &Telemetry) {
        tracing::warn!(
            sink = %self.sink,
            "sink is falling behind; keeping only the newest value per point until it catches up"
        );
    }
}

/// A lagging sink caught up; logged once per lag episode.
#[derive(Debug)]
pub struct SinkCaughtUp<'a> {
    /// The sink's name.
    pub sink: &'a str,
    /// Samples and statuses replaced during the episode.
    pub coalesced: u64,
}

impl InternalEvent for SinkCaughtUp<'_> {
    fn emit(&self, _: &Telemetry) {
        let n = self.coalesced;
        tracing::warn!(
            sink = %self.sink,
            coalesced = n,
            "sink caught up; {n} readings were replaced by newer values of the same point"
        );
    }
}

/// Samples or statuses replaced by newer ones in a lagging sink's mailbox
/// (counted; the episode is logged by [`SinkLagging`] and [`SinkCaughtUp`]).
#[derive(Debug)]
pub struct ReadingsCoalesced<'a> {
    /// The sink's name.
    pub sink: &'a str,
    /// How many were replaced.
    pub count: u64,
}

impl InternalEvent for ReadingsCoalesced<'_> {
    fn emit(&self, t: &Telemetry) {
        if self.count > 0 {
            t.readings_coalesced
                .get_or_create(&labels([("sink", self.sink)]))
                .inc_by(self.count);
        }
    }
}

/// Samples or statuses dropped because a sink's overflow was full (a
/// misbehaving publisher). Logged at 1, 2, 4, 8… dropped: loud, never a
/// flood.
#[derive(Debug)]
pub struct ReadingsDropped<'a> {
    /// The sink's name.
    pub sink: &'a str,
    /// How many were dropped now.
    pub count: u64,
}

impl InternalEvent for ReadingsDropped<'_> {
    fn emit(&self, t: &Telemetry) {
        if self.count == 0 {
            return;
        }
        let c = t
            .readings_dropped
            .get_or_create(&labels([("sink", self.sink)]));
        let before = c.inc_by(self.count);
        let after = before + self.count;
        if before.checked_ilog2() != after.checked_ilog2() {
            tracing::error!(sink = %self.sink, dropped = after, "sink overflow is full; dropping readings");
        }
    }
}

// ----- the field side ----------------------------------------------------

/// Unusable input from the field: a bad frame, payload or value. Counted
/// by cause; logged once per connection, device and cause at `warn`, then
/// at `debug`.
pub struct BadInput<'a> {
    /// The connection it came in on.
    pub connection: &'a ConnectionId,
    /// The device it was for, when known.
    pub device: Option<&'a DeviceId>,
    /// The point it was for, when known.
    pub point: Option<&'a str>,
    /// A fixed name of the cause (`bad_frame`, `not_json`, …): the label.
    pub cause: &'static str,
    /// What the log says happened (a fixed sentence).
    pub what: &'static str,
    /// The error.
    pub error: &'a dyn Display,
}

impl InternalEvent for BadInput<'_> {
    fn emit(&self, t: &Telemetry) {
        let device = self.device.map(DeviceId::as_str).unwrap_or("");
        let c = t
            .bad_input
            .get_or_create(&labels([
                ("connection", self.connection.as_str()),
                ("device", device),
                ("cause", self.cause),
            ]))
            .inc()
            + 1;
        let point = self.point.unwrap_or("");
        // A `&str` field: log formats quote it.
        let error = self.error.to_string();
        let key = format!("{}\0{device}\0{}", self.connection, self.cause);
        if t.first("bad_input", &key) {
            tracing::warn!(connection = %self.connection, device, point, cause = self.cause, error = error.as_str(), count = c, "{} (further ones of this cause are counted quietly)", self.what);
        } else {
            tracing::debug!(connection = %self.connection, device, point, cause = self.cause, error = error.as_str(), "{}", self.what);
        }
    }
}

/// Values a device answered with that could not be decoded: counted as
/// `bad_input{cause="bad_value"}`; the adapter logs them once per point
/// and reason, as it marks the point bad.
#[derive(Debug)]
pub struct BadValues<'a> {
    /// The connection.
    pub connection: &'a ConnectionId,
    /// The device.
    pub device: &'a DeviceId,
    /// How many values.
    pub count: u64,
}

impl InternalEvent for BadValues<'_> {
    fn emit(&self, t: &Telemetry) {
        t.bad_input
            .get_or_create(&labels([
                ("connection", self.connection.as_str()),
                ("device", self.device.as_str()),
                ("cause", "bad_value"),
            ]))
            .inc_by(self.count);
    }
}

/// A request to a field device answered, failed or timed out.
#[derive(Debug)]
pub struct RequestDone<'a> {
    /// The connection.
    pub connection: &'a ConnectionId,
    /// `ok`, `exception` (a Modbus exception), `timeout`, `connect`,
    /// `transport` or `protocol`.
    pub outcome: &'static str,
    /// How long it took (`None` when it never went out: not timed).
    pub elapsed: Option<Duration>,
}

impl InternalEvent for RequestDone<'_> {
    fn emit(&self, t: &Telemetry) {
        let connection = self.connection.as_str();
        t.requests
            .get_or_create(&labels([
                ("connection", connection),
                ("outcome", self.outcome),
            ]))
            .inc();
        if let Some(elapsed) = self.elapsed {
            t.request_duration
                .get_or_create(&labels([("connection", connection)]))
                .observe(seconds(elapsed));
        }
    }
}

/// A field connection was lost or could not be opened (the adapter logs
/// why, with its backoff).
#[derive(Debug)]
pub struct Reconnect<'a> {
    /// The connection.
    pub connection: &'a ConnectionId,
}

impl InternalEvent for Reconnect<'_> {
    fn emit(&self, t: &Telemetry) {
        t.reconnects
            .get_or_create(&labels([("connection", self.connection.as_str())]))
            .inc();
    }
}

/// A field connection was made (an MQTT ConnAck).
#[derive(Debug)]
pub struct Connected<'a> {
    /// The connection.
    pub connection: &'a ConnectionId,
}

impl InternalEvent for Connected<'_> {
    fn emit(&self, t: &Telemetry) {
        t.connects
            .get_or_create(&labels([("connection", self.connection.as_str())]))
            .inc();
    }
}

/// The broker acknowledged subscriptions.
#[derive(Debug)]
pub struct SubscribeAcked<'a> {
    /// The connection.
    pub connection: &'a ConnectionId,
}

impl InternalEvent for SubscribeAcked<'_> {
    fn emit(&self, t: &Telemetry) {
        t.subacks
            .get_or_create(&labels([("connection", self.connection.as_str())]))
            .inc();
    }
}

/// A message came in from a broker.
#[derive(Debug)]
pub struct MessageReceived<'a> {
    /// The connection.
    pub connection: &'a ConnectionId,
    /// Whether it matched a device (else it is only counted).
    pub matched: bool,
}

impl InternalEvent for MessageReceived<'_> {
    fn emit(&self, t: &Telemetry) {
        let matched = if self.matched { "true" } else { "false" };
        t.messages_received
            .get_or_create(&labels([
                ("connection", self.connection.as_str()),
                ("matched", matched),
            ]))
            .inc();
    }
}

/// A template rule did not create a device for an id it read (invalid,
/// taken, or over its cap): counted as `bad_input{cause="device_refused"}`
/// of the rule; the adapter logs each refused id once (ids are not labels).
#[derive(Debug)]
pub struct DeviceRefused<'a> {
    /// The connection.
    pub connection: &'a ConnectionId,
    /// The template rule's id.
    pub rule: &'a DeviceId,
}

impl InternalEvent for DeviceRefused<'_> {
    fn emit(&self, t: &Telemetry) {
        t.bad_input
            .get_or_create(&labels([
                ("connection", self.connection.as_str()),
                ("device", self.rule.as_str()),
                ("cause", "device_refused"),
            ]))
            .inc();
    }
}

// ----- the XMPP side ------------------------------------------------------

/// Why the component refused a stanza (the `cause` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalCause {
    /// Could not be understood (no sender, bad JID, bad type, own domain).
    Malformed,
    /// The sender is not in `access.read` (or not in `access.control`).
    Forbidden,
    /// An IQ we do not support, answered with an error.
    Unsupported,
    /// The sender is over its rate limit.
    RateLimited,
    /// A subscription over a limit.
    SubscriptionLimit,
}

impl RefusalCause {
    /// The `cause` label.
    pub fn name(self) -> &'static str {
        match self {
            RefusalCause::Malformed => "malformed",
            RefusalCause::Forbidden => "forbidden",
            RefusalCause::Unsupported => "unsupported",
            RefusalCause::RateLimited => "rate_limited",
            RefusalCause::SubscriptionLimit => "subscription_limit",
        }
    }
}

/// A stanza refused (the component's guard logs it per sender and cause:
/// it knows the JIDs, which never become labels).
#[derive(Debug)]
pub struct StanzaRefused {
    /// Why.
    pub cause: RefusalCause,
}

impl InternalEvent for StanzaRefused {
    fn emit(&self, t: &Telemetry) {
        t.stanzas_refused
            .get_or_create(&labels([("cause", self.cause.name())]))
            .inc();
    }
}

/// A pubsub item published for a device.
#[derive(Debug)]
pub struct ItemPublished<'a> {
    /// The device.
    pub device: &'a DeviceId,
}

impl InternalEvent for ItemPublished<'_> {
    fn emit(&self, t: &Telemetry) {
        t.items_published
            .get_or_create(&labels([("device", self.device.as_str())]))
            .inc();
    }
}

/// Pubsub notifications handed to the link.
#[derive(Debug)]
pub struct NotificationsSent {
    /// How many.
    pub count: u64,
}

impl InternalEvent for NotificationsSent {
    fn emit(&self, t: &Telemetry) {
        if self.count > 0 {
            t.notifications_sent
                .get_or_create(&Vec::new())
                .inc_by(self.count);
        }
    }
}

/// An item left the gateway: how old its newest reading was.
#[derive(Debug)]
pub struct ItemSent {
    /// From the reading's time to now.
    pub delay: Duration,
}

impl InternalEvent for ItemSent {
    fn emit(&self, t: &Telemetry) {
        t.publish_delay
            .get_or_create(&Vec::new())
            .observe(seconds(self.delay));
    }
}

/// A chat command answered.
#[derive(Debug)]
pub struct ChatAnswered;

impl InternalEvent for ChatAnswered {
    fn emit(&self, t: &Telemetry) {
        t.chat_commands.get_or_create(&Vec::new()).inc();
    }
}

/// How a write asked for over XMPP ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The adapter wrote it.
    Done,
    /// Refused before reaching the device (access, not writable, out of
    /// range).
    Refused,
    /// The adapter or device failed it.
    Failed,
}

/// A write asked for over XMPP ended (the write audit log records who).
#[derive(Debug)]
pub struct WriteEnded<'a> {
    /// The device (configured: unknown ones are refused before this).
    pub device: &'a DeviceId,
    /// How it ended.
    pub outcome: WriteOutcome,
}

impl InternalEvent for WriteEnded<'_> {
    fn emit(&self, t: &Telemetry) {
        let outcome = match self.outcome {
            WriteOutcome::Done => "done",
            WriteOutcome::Refused => "refused",
            WriteOutcome::Failed => "failed",
        };
        t.writes
            .get_or_create(&labels([
                ("device", self.device.as_str()),
                ("outcome", outcome),
            ]))
            .inc();
    }
}

/// A subscription added or removed.
#[derive(Debug)]
pub struct SubscriptionChanged {
    /// `presence` or `pubsub`.
    pub kind: &'static str,
    /// Added (else removed).
    pub added: bool,
}

impl InternalEvent for SubscriptionChanged {
    fn emit(&self, t: &Telemetry) {
        let change = if self.added { "added" } else { "removed" };
        t.subscriptions
            .get_or_create(&labels([("kind", self.kind), ("change", change)]))
            .inc();
        let gauge = t.subscribers.get_or_create(&labels([("kind", self.kind)]));
        if self.added {
            gauge.inc();
        } else {
            gauge.dec();
        }
    }
}

/// Subscriptions loaded from the store at start-up.
#[derive(Debug)]
pub struct SubscribersLoaded {
    /// `presence` or `pubsub`.
    pub kind: &'static str,
    /// How many.
    pub count: u64,
}

impl InternalEvent for SubscribersLoaded {
    fn emit(&self, t: &Telemetry) {
        t.subscribers
            .get_or_create(&labels([("kind", self.kind)]))
            .set(i64::try_from(self.count).unwrap_or(i64::MAX));
    }
}

/// A device's history holds this many items now (read after a store
/// write, off the event loop).
#[derive(Debug)]
pub struct HistorySize<'a> {
    /// The device (its pubsub node).
    pub device: &'a str,
    /// Items kept.
    pub items: u64,
}

impl InternalEvent for HistorySize<'_> {
    fn emit(&self, t: &Telemetry) {
        t.history_items
            .get_or_create(&labels([("device", self.device)]))
            .set(i64::try_from(self.items).unwrap_or(i64::MAX));
    }
}

/// Adapter jobs asked for over XMPP, waiting and running.
#[derive(Debug)]
pub struct JobsPending {
    /// Waiting for a slot.
    pub queued: usize,
    /// Running.
    pub running: usize,
}

impl InternalEvent for JobsPending {
    fn emit(&self, t: &Telemetry) {
        let set = |state, n: usize| {
            t.jobs
                .get_or_create(&labels([("state", state)]))
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        };
        set("queued", self.queued);
        set("running", self.running);
    }
}

/// The XMPP link came up or went down (the component logs why).
#[derive(Debug)]
pub struct LinkChanged {
    /// Up (else down).
    pub up: bool,
}

impl InternalEvent for LinkChanged {
    fn emit(&self, t: &Telemetry) {
        if self.up {
            t.xmpp_connects.get_or_create(&Vec::new()).inc();
        }
        t.set_link_up(self.up);
    }
}

// ----- issue 14: alert delivery (the XMPP component) -------------------

/// Alert messages sent to people (one per recipient, or one to the room).
#[derive(Debug)]
pub struct AlertMessagesSent {
    /// `chat` or `room`.
    pub via: &'static str,
    /// `live`, `replay` (after the link or the room was back) or
    /// `reminder`.
    pub kind: &'static str,
    /// How many messages.
    pub count: usize,
}

impl InternalEvent for AlertMessagesSent {
    fn emit(&self, t: &Telemetry) {
        if self.count > 0 {
            t.alert_messages
                .get_or_create(&labels([("via", self.via), ("kind", self.kind)]))
                .inc_by(self.count as u64);
        }
    }
}

/// Alerts dropped, oldest first, from a delivery queue that was full.
#[derive(Debug)]
pub struct AlertsDropped {
    /// `chat` or `room`.
    pub queue: &'static str,
    /// How many.
    pub count: u64,
}

impl InternalEvent for AlertsDropped {
    fn emit(&self, t: &Telemetry) {
        if self.count > 0 {
            t.alerts_dropped
                .get_or_create(&labels([("queue", self.queue)]))
                .inc_by(self.count);
        }
    }
}
