//! Normalization: from what an adapter read to what sinks publish.
//!
//! One task owns the state of every point and device. An adapter's event
//! carries what it read of one device at once; the engine normalizes each
//! sample (`scale`, `offset`, unit) and decides per point whether it is
//! *due*: it has never been published, its quality changed, or its value
//! moved beyond the `deadband` (any change without one). A due point
//! faster than its `min_interval` is held instead (the newest wins) and
//! released on a tick when the interval has passed. When anything is due,
//! the event goes on the bus as one update with every sample except held
//! ones, so that unchanged points read in the same poll refresh their time;
//! when nothing is, nothing is published. A device that published nothing
//! for its max interval repeats its latest samples (a heartbeat).
//!
//! Per device it turns status into what users see: online on a fresh
//! reading, stale after `stale_after` without one (if it has one: see
//! [`DeviceSpec::stale_after`]), offline when the adapter says the device
//! cannot be reached.
//!
//! Alarms ([`crate::alarm`]) see every normalized reading before the
//! deadband and `min_interval` decide what is published, every status
//! change and every tick; the alerts they make go on the bus right after
//! what made them (see `alarm/engine.rs`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::adapter::EventSender;
use crate::alarm::engine::Alarms;
use crate::bus::Bus;
use crate::device::{DeviceSpec, Directory, MAX_DECIMALS, PointSpec};
use crate::event::{DeviceEvent, DeviceStatus, EventKind};
use crate::id::{DeviceId, PointId};
use crate::telemetry::{
    DeviceStatusChanged, InternalEvent, ReadingsReceived, ReadingsSkipped, SkipCause, Telemetry,
    UpdatePublished,
};
use crate::value::{Quality, Reading, Sample, Value};
use crate::watchdog::Heartbeat;

pub use crate::device::DEFAULT_MAX_INTERVAL;
pub use reload::EngineReload;
use reload::Reload;

/// Raw events queued from adapters to the engine.
const INPUT_QUEUE: usize = 4096;
/// How often timers (staleness, heartbeats, held readings) are checked.
const TICK: Duration = Duration::from_millis(100);

/// Starts the engine. Adapters report through the returned sender; when
/// every clone of it is dropped the engine flushes, stops, and drops the
/// bus, which ends every sink's subscription.
///
/// What it does is counted in the bus's [`Telemetry`] (samples received,
/// published, skipped by cause; updates; device statuses), which the
/// sender hands on to adapters.
pub fn spawn(directory: Arc<Directory>, bus: Bus) -> (EventSender, JoinHandle<()>) {
    let (tx, _reload, task) =
        spawn_reloadable(directory, bus, Heartbeat::new("normalization engine"));
    (tx, task)
}

/// [`spawn`], with the handle that tells the engine of a reload, the
/// engine beating `alive` at least every tick (100 ms) for a watchdog.
pub fn spawn_reloadable(
    directory: Arc<Directory>,
    bus: Bus,
    alive: Heartbeat,
) -> (EventSender, EngineReload, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(INPUT_QUEUE);
    let (reload, reloads) = mpsc::channel(1);
    let telemetry = Arc::clone(bus.telemetry());
    let engine = Engine::new(directory, bus);
    (
        EventSender::new(tx, telemetry),
        EngineReload { tx: reload },
        tokio::spawn(engine.run(rx, reloads, alive)),
    )
}

#[derive(Debug)]
struct PointState {
    spec: PointSpec,
    /// What deadband and quality changes compare against: the value and
    /// quality last published as due (not as a ride-along or heartbeat).
    baseline: Option<(Value, Quality)>,
    /// When the point was last published as due; `min_interval` counts from it.
    due_published_at: Option<Instant>,
    /// Newest normalized sample received, published or not.
    latest: Option<Sample>,
    /// A sample held back by `min_interval`.
    held: Option<Sample>,
}

impl PointState {
    /// True when `reading` is worth publishing on its own.
    fn is_due(&self, reading: &Reading) -> bool {
        match &self.baseline {
            None => true,
            Some((value, quality)) => {
                quality != &reading.quality
                    || moved(self.spec.settings.deadband, value, &reading.value)
            }
        }
    }

    /// True while `min_interval` since the last due publish has not passed.
    fn too_soon(&self, now: Instant) -> bool {
        match (self.spec.settings.min_interval, self.due_published_at) {
            (Some(min), Some(at)) => now.duration_since(at) < min,
            _ => false,
        }
    }

    /// Records `sample` as published because it was due.
    fn mark_due_published(&mut self, sample: &Sample, now: Instant) {
        self.baseline = Some((sample.reading.value.clone(), sample.reading.quality.clone()));
        self.due_published_at = Some(now);
    }
}

#[derive(Debug)]
struct DeviceState {
    /// None: time alone never makes the device stale.
    stale_after: Option<Duration>,
    max_interval: Duration,
    status: Option<DeviceStatus>,
    last_fresh: Option<Instant>,
    /// When readings of the device were last published; heartbeats count from it.
    last_published: Option<Instant>,
    points: HashMap<PointId, PointState>,
    /// Point ids in configuration order, so that heartbeats list them stably.
    order: Vec<PointId>,
}

impl DeviceState {
    fn new(d: &DeviceSpec) -> Self {
        let points = d
            .points
            .values()
            .map(|p| {
                (
                    p.id.clone(),
                    PointState {
                        spec: p.clone(),
                        baseline: None,
                        due_published_at: None,
                        latest: None,
                        held: None,
                    },
                )
            })
            .collect();
        DeviceState {
            stale_after: d.stale_after(),
            max_interval: d.max_interval(),
            status: None,
            last_fresh: None,
            last_published: None,
            points,
            order: d.points.keys().cloned().collect(),
        }
    }

    /// Takes the held samples whose `min_interval` has passed (all of them
    /// when `all`), marking them published.
    fn release_held(&mut self, now: Instant, all: bool) -> Vec<Sample> {
        let mut released = Vec::new();
        for id in &self.order {
            let Some(p) = self.points.get_mut(id) else {
                continue;
            };
            if p.held.is_none() || (!all && p.too_soon(now)) {
                continue;
            }
            if let Some(sample) = p.held.take() {
                p.mark_due_published(&sample, now);
                released.push(sample);
            }
        }
        released
    }

    /// Every point's latest sample except held ones, for a heartbeat.
    fn heartbeat(&self) -> Vec<Sample> {
        self.order
            .iter()
            .filter_map(|id| self.points.get(id))
            .filter(|p| p.held.is_none())
            .filter_map(|p| p.latest.clone())
            .collect()
    }
}

struct Engine {
    bus: Bus,
    /// Every alarm's state; alerts it makes go on the bus after what made
    /// them.
    alarms: Alarms,
    /// Consulted for devices added at run time (template rules).
    directory: Arc<Directory>,
    devices: HashMap<DeviceId, DeviceState>,
    telemetry: Arc<Telemetry>,
}

impl Engine {
    fn new(directory: Arc<Directory>, bus: Bus) -> Self {
        let telemetry = Arc::clone(bus.telemetry());
        let mut alarms = Alarms::new(Arc::clone(&telemetry));
        let devices = directory
            .devices()
            .map(|d| {
                telemetry.device_known(&d.id);
                alarms.add_device(d);
                (d.id.clone(), DeviceState::new(d))
            })
            .collect();
        Self {
            bus,
            alarms,
            directory,
            devices,
            telemetry,
        }
    }

    /// Runs until every sender is gone; beats `alive` on every turn (events
    /// come first, so a flood could starve the tick: both arms beat).
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<DeviceEvent>,
        mut reloads: mpsc::Receiver<Reload>,
        alive: Heartbeat,
    ) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                event = rx.recv() => match event {
                    Some(e) => {
                        let now = Instant::now();
                        alive.beat_at(now);
                        self.handle(e, now);
                        self.publish_alerts();
                    }
                    None => break,
                },
                _ = tick.tick() => {
                    let now = Instant::now();
                    alive.beat_at(now);
                    self.on_tick(now);
                    self.publish_alerts();
                }
                Some((directory, applied)) = reloads.recv() => {
                    self.reconfigure(directory, Instant::now());
                    self.publish_alerts();
                    let _ = applied.send(());
                }
            }
        }
        // Publish what min_interval was holding back: nothing is lost on stop.
        self.release_held(Instant::now(), true);
    }

    fn handle(&mut self, event: DeviceEvent, now: Instant) {
        let DeviceEvent { device, at, kind } = event;
        if !self.devices.contains_key(&device)
            && let Some(spec) = self.directory.device(device.as_str())
        {
            // Added at run time by its adapter.
            self.telemetry.device_known(&device);
            self.alarms.add_device(spec);
            self.devices.insert(device.clone(), DeviceState::new(spec));
        }
        match kind {
            EventKind::Status(status) => self.on_status(&device, status, at, now),
            EventKind::Readings(samples) => self.on_readings(&device, samples, at, now),
            // Alerts are the engine's own output, never an adapter's.
            EventKind::Alert(_) => {}
        }
    }

    fn skipped(&self, device: &DeviceId, point: Option<&PointId>, cause: SkipCause, count: u64) {
        if count == 0 {
            return;
        }
        ReadingsSkipped {
            device,
            known_device: self.devices.contains_key(device),
            point,
            cause,
            count,
        }
        .emit(&self.telemetry);
    }

    fn set_status(&mut self, device: &DeviceId, status: DeviceStatus, at: SystemTime) {
        let Some(state) = self.devices.get_mut(device) else {
            return;
        };
        if state.status.as_ref() == Some(&status) {
            return;
        }
        self.alarms.status(
            device,
            &status,
            Instant::now().into_std(),
            SystemTime::now(),
        );
        DeviceStatusChanged {
            device,
            status: &status,
        }
        .emit(&self.telemetry);
        state.status = Some(status.clone());
        self.bus.publish(DeviceEvent {
            device: device.clone(),
            at,
            kind: EventKind::Status(status),
        });
    }

    fn on_status(&mut self, device: &DeviceId, status: DeviceStatus, at: SystemTime, now: Instant) {
        let Some(state) = self.devices.get_mut(device) else {
            self.skipped(device, None, SkipCause::Unknown, 1);
            return;
        };
        if status == DeviceStatus::Online {
            // Connected: staleness counts from now.
            state.last_fresh = Some(now);
        }
        self.set_status(device, status, at);
    }

    fn on_readings(&mut self, device: &DeviceId, raw: Vec<Sample>, at: SystemTime, now: Instant) {
        ReadingsReceived {
            device,
            known_device: self.devices.contains_key(device),
            count: raw.len() as u64,
        }
        .emit(&self.telemetry);
        let Some(state) = self.devices.get_mut(device) else {
            self.skipped(device, None, SkipCause::Unknown, raw.len() as u64);
            return;
        };
        let mut rate_limited = 0;
        let mut unknown = Vec::new();
        let mut invalid = Vec::new();
        // What goes out if anything is due: every sample not held, in the
        // order read.
        let mut update = Vec::with_capacity(raw.len());
        let mut any_due = false;
        let mut fresh = false;
        let wall = SystemTime::now();
        for Sample {
            at: read_at,
            reading,
        } in raw
        {
            let Some(point) = state.points.get_mut(&reading.point) else {
                unknown.push(reading.point);
                continue;
            };
            let Some(reading) = normalize(&point.spec, reading) else {
                invalid.push(point.spec.id.clone());
                continue;
            };
            fresh |= reading.quality.is_good();
            let sample = Sample {
                at: read_at,
                reading,
            };
            // Alarms see every reading, whatever is published of it.
            self.alarms.reading(
                device,
                &sample.reading.point,
                &sample.reading.value,
                &sample.reading.quality,
                now.into_std(),
                wall,
            );
            point.latest = Some(sample.clone());
            if !point.is_due(&sample.reading) {
                // Back within the deadband: a change held earlier is void.
                point.held = None;
                update.push(sample);
            } else if point.too_soon(now) {
                if point.held.replace(sample).is_some() {
                    rate_limited += 1;
                }
            } else {
                point.held = None;
                point.mark_due_published(&sample, now);
                any_due = true;
                update.push(sample);
            }
        }
        let came_back = fresh && state.status != Some(DeviceStatus::Online);
        if fresh {
            state.last_fresh = Some(now);
        }
        let within_deadband = if any_due {
            self.publish_readings(device, update, at, now);
            0
        } else {
            update.len() as u64
        };
        self.skipped(device, None, SkipCause::Deadband, within_deadband);
        self.skipped(device, None, SkipCause::RateLimited, rate_limited);
        for point in unknown {
            self.skipped(device, Some(&point), SkipCause::Unknown, 1);
        }
        for point in invalid {
            self.skipped(device, Some(&point), SkipCause::Invalid, 1);
        }
        // The readings go first, so that the "online" status that follows
        // can already show them.
        if came_back {
            self.set_status(device, DeviceStatus::Online, at);
        }
    }

    fn on_tick(&mut self, now: Instant) {
        let mut stale = Vec::new();
        for (id, d) in &self.devices {
            if d.status == Some(DeviceStatus::Online)
                && d.last_fresh
                    .zip(d.stale_after)
                    .is_some_and(|(t, after)| now.duration_since(t) >= after)
            {
                stale.push(id.clone());
            }
        }
        for id in stale {
            self.set_status(&id, DeviceStatus::Stale, SystemTime::now());
        }
        self.alarms.tick(now.into_std(), SystemTime::now());
        // Releasing held samples publishes, which a heartbeat then need not.
        self.release_held(now, false);
        let mut heartbeats = Vec::new();
        for (id, d) in &mut self.devices {
            if d.status == Some(DeviceStatus::Online)
                && d.last_published
                    .is_some_and(|t| now.duration_since(t) >= d.max_interval)
            {
                // Counts as published even if every point is held: those
                // come out on their own when their interval has passed.
                d.last_published = Some(now);
                heartbeats.push((id.clone(), d.heartbeat()));
            }
        }
        for (device, samples) in heartbeats {
            self.publish_readings(&device, samples, SystemTime::now(), now);
        }
    }

    /// Publishes, one update per device, the held samples whose
    /// `min_interval` has passed (every held sample when `all`).
    fn release_held(&mut self, now: Instant, all: bool) {
        let mut released = Vec::new();
        for (id, d) in &mut self.devices {
            let samples = d.release_held(now, all);
            if !samples.is_empty() {
                released.push((id.clone(), samples));
            }
        }
        for (device, samples) in released {
            self.publish_readings(&device, samples, SystemTime::now(), now);
        }
    }

    /// Puts the alerts the alarms made on the bus, each on its own (the bus
    /// never merges them).
    fn publish_alerts(&mut self) {
        for alert in self.alarms.take() {
            let Some(device) = alert.devices.first().cloned() else {
                continue;
            };
            self.bus.publish(DeviceEvent {
                device,
                at: alert.at,
                kind: EventKind::Alert(alert),
            });
        }
    }

    fn publish_readings(
        &mut self,
        device: &DeviceId,
        samples: Vec<Sample>,
        at: SystemTime,
        now: Instant,
    ) {
        if samples.is_empty() {
            return;
        }
        if let Some(d) = self.devices.get_mut(device) {
            d.last_published = Some(now);
        }
        UpdatePublished {
            device,
            samples: samples.len() as u64,
        }
        .emit(&self.telemetry);
        self.bus.publish(DeviceEvent {
            device: device.clone(),
            at,
            kind: EventKind::Readings(samples),
        });
    }
}

/// Applies scale and offset and fills in the unit; `None` for a value that
/// is not a finite number.
pub fn normalize(spec: &PointSpec, raw: Reading) -> Option<Reading> {
    let s = &spec.settings;
    let value = match raw.value {
        Value::Float(f) if !f.is_finite() => return None,
        Value::Int(i) if s.scale.is_some() || s.offset.is_some_and(|o| o.fract() != 0.0) => {
            scaled(i as f64, s.scale, s.offset)?
        }
        Value::Int(i) => match s.offset {
            Some(o) => Value::Int(i.saturating_add(o as i64)),
            None => Value::Int(i),
        },
        Value::Float(f) => scaled(f, s.scale, s.offset)?,
        other => other,
    };
    let value = match (value, s.decimals) {
        (Value::Float(x), Some(d)) => {
            let factor = 10f64.powi(i32::from(d.min(MAX_DECIMALS)));
            Value::Float((x * factor).round() / factor)
        }
        (v, _) => v,
    };
    Some(Reading {
        point: raw.point,
        value,
        unit: s.unit.clone(),
        quality: raw.quality,
    })
}

fn scaled(x: f64, scale: Option<f64>, offset: Option<f64>) -> Option<Value> {
    let y = x * scale.unwrap_or(1.0) + offset.unwrap_or(0.0);
    y.is_finite().then_some(Value::Float(y))
}

/// True when `new` is worth publishing after `last`: numbers must move by
/// more than the deadband, other values (and numbers without a deadband)
/// must change.
fn moved(deadband: Option<f64>, last: &Value, new: &Value) -> bool {
    match (deadband, last, new) {
        (_, Value::Bool(a), Value::Bool(b)) => a != b,
        (Some(band), _, _) => match (last.as_f64(), new.as_f64()) {
            (Some(a), Some(b)) => (a - b).abs() > band,
            _ => last != new,
        },
        (None, _, _) => last != new,
    }
}

mod reload;
#[cfg(test)]
mod tests;
