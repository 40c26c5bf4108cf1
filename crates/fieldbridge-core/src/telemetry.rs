//! Internal events: each thing worth knowing that happens in the gateway is
//! one type whose [`InternalEvent::emit`] both logs it (rate-limited where it
//! can repeat) and counts it, in one place (vector's `internal_events`).
//!
//! The counters, gauges and histograms live in one [`Telemetry`]: a
//! Prometheus registry made once at start-up and handed down explicitly
//! (the [`Bus`](crate::bus::Bus) carries it to the engine, to every
//! [`EventSender`](crate::adapter::EventSender) and to every sink), so that
//! each test reads its own counters. They are readable while running, the
//! `/metrics` endpoint encodes them, the shutdown summary reads them, and
//! [`Telemetry::health`] sums them up for `/healthz`.
//!
//! Labels are bounded: a `connection` or `device` id (configured, or made
//! by a template rule up to [`MAX_RUNTIME_DEVICES`](crate::device::MAX_RUNTIME_DEVICES)),
//! and a `cause`/`outcome`/`kind` from a fixed list; never a value or a JID.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::event::DeviceStatus;
use crate::id::DeviceId;

mod events;
pub use events::*;

/// A metric's labels: a few `(name, value)` pairs with bounded values.
pub type Labels = Vec<(&'static str, String)>;
/// A family of counters by [`Labels`].
pub type Counters = Family<Labels, Counter>;
/// A family of gauges by [`Labels`].
pub type Gauges = Family<Labels, Gauge>;
/// A family of histograms by [`Labels`].
pub type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

/// Distinct (event, key) pairs remembered for "log once" before the memory
/// is reset: a peer that invents keys cannot grow it without bound.
const MAX_LOGGED_KEYS: usize = 4096;

/// The device statuses counted by `fieldbridge_devices{status}`;
/// `unknown` is a device that has not reported yet.
pub const STATUSES: [&str; 4] = ["online", "stale", "offline", "unknown"];

/// Something that happened, logged and counted by its `emit`.
pub trait InternalEvent {
    /// Logs the event (rate-limited where it can repeat) and counts it.
    fn emit(&self, t: &Telemetry);
}

/// Every counter, gauge and histogram of one gateway, and the registry
/// that encodes them.
#[derive(Debug)]
pub struct Telemetry {
    registry: Registry,
    /// Samples received from adapters, by device.
    pub readings_received: Counters,
    /// Samples normalization put on the bus, by device.
    pub readings_published: Counters,
    /// Device updates normalization put on the bus, by device.
    pub updates_published: Counters,
    /// Samples normalization did not publish, by device and cause
    /// (`deadband`, `rate_limited`, `unknown`, `invalid`).
    pub readings_skipped: Counters,
    /// Samples or statuses a lagging sink's mailbox replaced by newer ones,
    /// by sink.
    pub readings_coalesced: Counters,
    /// Samples or statuses dropped because a sink's overflow was full.
    pub readings_dropped: Counters,
    /// Unusable input from the field, by connection, device (empty when
    /// not known) and cause.
    pub bad_input: Counters,
    /// Messages received from a broker or lines from a port, by connection.
    pub messages_received: Counters,
    /// Requests to field devices, by connection and outcome (`ok`,
    /// `exception`, `timeout`, `connect`, `transport`, `protocol`).
    pub requests: Counters,
    /// How long field requests took, by connection.
    pub request_duration: Histograms,
    /// Times a field connection was lost or could not be opened, by
    /// connection.
    pub reconnects: Counters,
    /// Connections made (MQTT ConnAcks), by connection.
    pub connects: Counters,
    /// MQTT subscriptions acknowledged, by connection.
    pub subacks: Counters,
    /// Stanzas refused by the component, by cause (`malformed`,
    /// `forbidden`, `unsupported`, `rate_limited`, `subscription_limit`).
    pub stanzas_refused: Counters,
    /// Pubsub items published, by device.
    pub items_published: Counters,
    /// Pubsub notifications sent (one per item and subscriber).
    pub notifications_sent: Counters,
    /// Chat commands answered.
    pub chat_commands: Counters,
    /// Writes asked for over XMPP, by device and outcome (`done`,
    /// `refused`, `failed`).
    pub writes: Counters,
    /// Subscriptions added and removed, by kind (`presence`, `pubsub`) and
    /// change (`added`, `removed`).
    pub subscriptions: Counters,
    /// XMPP links established.
    pub xmpp_connects: Counters,
    /// Devices by status.
    pub devices: Gauges,
    /// 1 while the component is connected to the XMPP server.
    pub xmpp_link_up: Gauges,
    /// Subscribers, by kind (`presence`, `pubsub`).
    pub subscribers: Gauges,
    /// Items kept in the history of every device.
    pub history_items: Gauges,
    /// Adapter jobs waiting and running (`state`).
    pub jobs: Gauges,
    /// Adapters running.
    pub adapters_running: Gauges,
    /// From a reading's time to its pubsub item leaving the gateway.
    pub publish_delay: Histograms,
    /// Alarms raised, by severity (`info`, `warning`, `critical`).
    pub alarms_raised: Counters,
    /// Alarms raised now, by severity.
    pub alarms_active: Gauges,
    /// Alert messages sent to people, by `via` (`chat`, `room`) and `kind`
    /// (`live`, `replay`, `reminder`).
    pub alert_messages: Counters,
    /// Alerts dropped from a full delivery queue, by `queue` (`chat`,
    /// `room`).
    pub alerts_dropped: Counters,
    /// Device → status, for the `devices` gauge and for health.
    statuses: Mutex<HashMap<DeviceId, &'static str>>,
    /// Adapters configured (for health).
    adapters_configured: AtomicU64,
    /// What was logged once already.
    logged: Mutex<HashSet<(&'static str, String)>>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

fn request_histogram() -> Histogram {
    // 1 ms to ~16 s: a Modbus TCP answer to a serial line timing out.
    Histogram::new([
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

fn delay_histogram() -> Histogram {
    // 1 ms to minutes: items wait for min_interval and for outages.
    Histogram::new([
        0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
    ])
}

impl Telemetry {
    /// A fresh set of metrics, all at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("fieldbridge");
        macro_rules! reg {
            ($name:literal, $help:literal, $metric:expr) => {{
                let m = $metric;
                registry.register($name, $help, m.clone());
                m
            }};
        }
        let histograms = |f: fn() -> Histogram| Histograms::new_with_constructor(f);
        let t = Self {
            readings_received: reg!(
                "readings_received",
                "Samples received from adapters",
                Counters::default()
            ),
            readings_published: reg!(
                "readings_published",
                "Samples put on the bus by normalization",
                Counters::default()
            ),
            updates_published: reg!(
                "updates_published",
                "Device updates put on the bus by normalization",
                Counters::default()
            ),
            readings_skipped: reg!(
                "readings_skipped",
                "Samples not published, by cause",
                Counters::default()
            ),
            readings_coalesced: reg!(
                "readings_coalesced",
                "Samples or statuses replaced by newer ones while a sink lagged",
                Counters::default()
            ),
            readings_dropped: reg!(
                "readings_dropped",
                "Samples or statuses dropped because a sink's overflow was full",
                Counters::default()
            ),
            bad_input: reg!(
                "bad_input",
                "Unusable frames, payloads or values from the field, by cause",
                Counters::default()
            ),
            messages_received: reg!(
                "messages_received",
                "Messages received from a broker",
                Counters::default()
            ),
            requests: reg!(
                "requests",
                "Requests to field devices, by outcome",
                Counters::default()
            ),
            request_duration: reg!(
                "request_duration_seconds",
                "How long requests to field devices took",
                histograms(request_histogram)
            ),
            reconnects: reg!(
                "reconnects",
                "Field connections lost or not opened",
                Counters::default()
            ),
            connects: reg!(
                "connects",
                "Field connections made (MQTT ConnAck)",
                Counters::default()
            ),
            subacks: reg!(
                "subacks",
                "MQTT subscriptions acknowledged",
                Counters::default()
            ),
            stanzas_refused: reg!(
                "stanzas_refused",
                "Stanzas refused by the component, by cause",
                Counters::default()
            ),
            items_published: reg!(
                "items_published",
                "Pubsub items published",
                Counters::default()
            ),
            notifications_sent: reg!(
                "notifications_sent",
                "Pubsub notifications sent (one per item and subscriber)",
                Counters::default()
            ),
            chat_commands: reg!(
                "chat_commands",
                "Chat commands answered",
                Counters::default()
            ),
            writes: reg!(
                "writes",
                "Writes asked for over XMPP, by outcome",
                Counters::default()
            ),
            subscriptions: reg!(
                "subscriptions",
                "Subscriptions added and removed",
                Counters::default()
            ),
            xmpp_connects: reg!(
                "xmpp_connects",
                "Links to the XMPP server established",
                Counters::default()
            ),
            devices: reg!("devices", "Devices by status", Gauges::default()),
            xmpp_link_up: reg!(
                "xmpp_link_up",
                "1 while the component is connected to the XMPP server",
                Gauges::default()
            ),
            subscribers: reg!("subscribers", "Subscribers, by kind", Gauges::default()),
            history_items: reg!(
                "history_items",
                "Items kept in the devices' histories",
                Gauges::default()
            ),
            jobs: reg!(
                "jobs",
                "Adapter jobs asked for over XMPP, by state",
                Gauges::default()
            ),
            adapters_running: reg!("adapters_running", "Adapters running", Gauges::default()),
            publish_delay: reg!(
                "publish_delay_seconds",
                "From a reading's time to its pubsub item leaving the gateway",
                histograms(delay_histogram)
            ),
            alarms_raised: reg!(
                "alarms_raised",
                "Alarms raised, by severity",
                Counters::default()
            ),
            alarms_active: reg!(
                "alarms_active",
                "Alarms raised now, by severity",
                Gauges::default()
            ),
            alert_messages: reg!(
                "alert_messages",
                "Alert messages sent to people, by via and kind",
                Counters::default()
            ),
            alerts_dropped: reg!(
                "alerts_dropped",
                "Alerts dropped from a full delivery queue while the link was down",
                Counters::default()
            ),
            registry,
            statuses: Mutex::new(HashMap::new()),
            adapters_configured: AtomicU64::new(0),
            logged: Mutex::new(HashSet::new()),
        };
        // Present from the start, so that a scrape shows them at zero.
        t.xmpp_link_up.get_or_create(&Vec::new()).set(0);
        t.adapters_running.get_or_create(&Vec::new()).set(0);
        for status in STATUSES {
            drop(t.devices.get_or_create(&labels([("status", status)])));
        }
        for severity in crate::alarm::Severity::ALL {
            let l = labels([("severity", severity.name())]);
            drop(t.alarms_raised.get_or_create(&l));
            drop(t.alarms_active.get_or_create(&l));
        }
        t
    }

    /// The metrics in the Prometheus text format (0.0.4), which every
    /// scraper and `promtool check metrics` read.
    pub fn encode(&self) -> String {
        let mut open_metrics = String::new();
        if encode(&mut open_metrics, &self.registry).is_err() {
            return String::new();
        }
        to_prometheus_text(&open_metrics)
    }

    /// True the first time `(event, key)` is seen (until many distinct keys
    /// have been seen): what "logged once per cause" asks.
    pub fn first(&self, event: &'static str, key: &str) -> bool {
        let mut logged = self.logged.lock().unwrap_or_else(|p| p.into_inner());
        if logged.contains(&(event, key.to_owned())) {
            return false;
        }
        if logged.len() >= MAX_LOGGED_KEYS {
            logged.clear();
        }
        logged.insert((event, key.to_owned()))
    }

    /// A counter's value now (0 if it never moved): what tests and the
    /// shutdown summary read.
    pub fn count<const N: usize>(family: &Counters, labels_: [(&'static str, &str); N]) -> u64 {
        family.get(&labels(labels_)).map_or(0, |c| c.get())
    }

    /// The sum of the samples named `fieldbridge_<name>` (e.g.
    /// `readings_received_total`) whose labels include every pair of
    /// `filter`, read from the encoded metrics: for summaries and tests,
    /// not for hot paths.
    pub fn sum<const N: usize>(&self, name: &str, filter: [(&str, &str); N]) -> f64 {
        sum_samples(&self.encode(), &format!("fieldbridge_{name}"), &filter)
    }

    /// A gauge's value now (0 if never set).
    pub fn gauge<const N: usize>(family: &Gauges, labels_: [(&'static str, &str); N]) -> i64 {
        family.get(&labels(labels_)).map_or(0, |g| g.get())
    }

    /// Records a device's status (see [`DeviceStatusChanged`]); `None` for a
    /// device known but not reported yet.
    fn set_device_status(&self, device: &DeviceId, status: Option<&DeviceStatus>) {
        let new = status.map_or("unknown", status_label);
        let mut statuses = self.statuses.lock().unwrap_or_else(|p| p.into_inner());
        let old = statuses.insert(device.clone(), new);
        if old != Some(new) {
            if let Some(old) = old {
                self.devices.get_or_create(&labels([("status", old)])).dec();
            }
            self.devices.get_or_create(&labels([("status", new)])).inc();
        }
        drop(statuses);
    }

    /// Counts a device that has not reported a status yet (as `unknown`);
    /// a no-op for one already known.
    pub fn device_known(&self, device: &DeviceId) {
        let known = self
            .statuses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(device);
        if !known {
            self.set_device_status(device, None);
        }
    }

    /// Forgets a device removed at run time: its status no longer counts.
    pub fn forget_device(&self, device: &DeviceId) {
        let old = self
            .statuses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(device);
        if let Some(old) = old {
            self.devices.get_or_create(&labels([("status", old)])).dec();
        }
    }

    /// Sets how many adapters were started (health compares the running
    /// ones with it).
    pub fn set_adapters_configured(&self, n: usize) {
        self.adapters_configured.store(n as u64, Ordering::Relaxed);
    }

    /// Marks an adapter as running until the returned guard is dropped.
    pub fn adapter_running(self: &std::sync::Arc<Self>) -> RunningAdapter {
        self.adapters_running.get_or_create(&Vec::new()).inc();
        RunningAdapter {
            telemetry: std::sync::Arc::clone(self),
        }
    }

    /// Sets whether the XMPP link is up.
    pub fn set_link_up(&self, up: bool) {
        self.xmpp_link_up
            .get_or_create(&Vec::new())
            .set(i64::from(up));
    }

    /// What `/healthz` (and the service manager's status line) say.
    pub fn health(&self) -> Health {
        let link_up = Self::gauge(&self.xmpp_link_up, []) == 1;
        let running = Self::gauge(&self.adapters_running, []).max(0) as u64;
        let configured = self.adapters_configured.load(Ordering::Relaxed);
        let mut devices = DeviceCounts::default();
        for status in self
            .statuses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            match *status {
                "online" => devices.online += 1,
                "stale" => devices.stale += 1,
                "offline" => devices.offline += 1,
                _ => devices.unknown += 1,
            }
        }
        let problem = if !link_up {
            Some("the XMPP link is down".to_owned())
        } else if configured > 0 && running == 0 {
            Some("no adapter is running".to_owned())
        } else {
            None
        };
        Health {
            link_up,
            adapters_running: running,
            adapters_configured: configured,
            devices,
            problem,
        }
    }
}

/// Keeps an adapter counted as running (see [`Telemetry::adapter_running`]).
#[derive(Debug)]
pub struct RunningAdapter {
    telemetry: std::sync::Arc<Telemetry>,
}

impl Drop for RunningAdapter {
    fn drop(&mut self) {
        self.telemetry
            .adapters_running
            .get_or_create(&Vec::new())
            .dec();
    }
}

/// The gateway's health at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// The component is connected to the XMPP server.
    pub link_up: bool,
    /// Adapters whose transport loop is running.
    pub adapters_running: u64,
    /// Adapters started at all.
    pub adapters_configured: u64,
    /// Devices by status.
    pub devices: DeviceCounts,
    /// Why the gateway is not healthy; `None` when it is.
    pub problem: Option<String>,
}

impl Health {
    /// True when nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.problem.is_none()
    }

    /// The `/healthz` body: a small JSON object (`status`, `link`,
    /// `adapters`, `devices`, and `reason` when unhealthy).
    pub fn to_json(&self) -> String {
        let d = &self.devices;
        let mut body = serde_json::json!({
            "status": if self.is_ok() { "ok" } else { "unhealthy" },
            "link": if self.link_up { "up" } else { "down" },
            "adapters": {
                "running": self.adapters_running,
                "configured": self.adapters_configured,
            },
            "devices": {
                "online": d.online,
                "stale": d.stale,
                "offline": d.offline,
                "unknown": d.unknown,
            },
        });
        if let Some(problem) = &self.problem {
            body["reason"] = problem.as_str().into();
        }
        body.to_string()
    }
}

/// Devices by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceCounts {
    /// Reporting fresh readings.
    pub online: u64,
    /// Nothing fresh for longer than `stale_after`.
    pub stale: u64,
    /// Not reachable.
    pub offline: u64,
    /// Not reported yet.
    pub unknown: u64,
}

/// A device status as a label value (without the offline reason: bounded).
pub fn status_label(status: &DeviceStatus) -> &'static str {
    match status {
        DeviceStatus::Online => "online",
        DeviceStatus::Stale => "stale",
        DeviceStatus::Offline { .. } => "offline",
    }
}

/// Labels from fixed names and values.
pub fn labels<const N: usize>(pairs: [(&'static str, &str); N]) -> Labels {
    pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

/// Seconds as a histogram observation.
pub fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// The sum of the samples of `name` in Prometheus text whose labels
/// include every pair of `filter`.
pub fn sum_samples(text: &str, name: &str, filter: &[(&str, &str)]) -> f64 {
    let mut sum = 0.0;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (labels, value) = match rest.strip_prefix('{') {
            Some(r) => match r.split_once("} ") {
                Some(split) => split,
                None => continue,
            },
            None => match rest.strip_prefix(' ') {
                Some(v) => ("", v),
                None => continue,
            },
        };
        let matches = filter
            .iter()
            .all(|(k, v)| labels.split(',').any(|l| l == format!("{k}=\"{v}\"")));
        if matches && let Ok(v) = value.trim().parse::<f64>() {
            sum += v;
        }
    }
    sum
}

/// OpenMetrics (what prometheus-client writes) to the Prometheus text
/// format: a counter's `# HELP`/`# TYPE` name its `_total` sample, no
/// empty `{}`, and no `# EOF`. Histograms and gauges read the same in both.
fn to_prometheus_text(open_metrics: &str) -> String {
    let counters: HashSet<&str> = open_metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(open_metrics.len() + 16 * counters.len());
    for line in open_metrics.lines() {
        if line == "# EOF" {
            continue;
        }
        let meta = line
            .strip_prefix("# HELP ")
            .map(|r| ("# HELP ", r))
            .or_else(|| line.strip_prefix("# TYPE ").map(|r| ("# TYPE ", r)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                out.push_str(prefix);
                out.push_str(name);
                if counters.contains(name) {
                    out.push_str("_total");
                }
                out.push(' ');
                out.push_str(tail);
            }
            // A metric without labels, as Prometheus writes it.
            None => out.push_str(&line.replacen("{} ", " ", 1)),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests;
