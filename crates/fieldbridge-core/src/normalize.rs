//! Normalization: from what an adapter read to what sinks publish.
//!
//! One task owns the state of every point and device. Per point it applies
//! `scale` and `offset`, suppresses changes within the `deadband`, holds back
//! readings that come faster than `min_interval` (the newest wins and is
//! published when the interval has passed) and republishes after
//! `max_interval` of silence. Per device it turns status into what users
//! see: online on a fresh reading, stale after `stale_after` without one,
//! offline when the adapter says the device cannot be reached.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::adapter::EventSender;
use crate::bus::Bus;
use crate::device::{DeviceSpec, Directory, PointSpec};
use crate::event::{DeviceEvent, DeviceStatus, EventKind};
use crate::id::{DeviceId, PointId};
use crate::value::{Quality, Reading, Value};

/// Raw events queued from adapters to the engine.
const INPUT_QUEUE: usize = 4096;
/// How often timers (staleness, heartbeats, held readings) are checked.
const TICK: Duration = Duration::from_millis(100);

/// Counters the engine returns when it stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NormalizeStats {
    /// Raw readings received from adapters.
    pub received: u64,
    /// Readings published on the bus (including heartbeats).
    pub published: u64,
    /// Readings within the deadband, not published.
    pub within_deadband: u64,
    /// Readings replaced by a newer one during `min_interval`.
    pub rate_limited: u64,
    /// Events for devices or points that are not configured.
    pub unknown: u64,
    /// Values that are not finite numbers (NaN, infinity).
    pub invalid: u64,
}

/// Starts the engine. Adapters report through the returned sender; when
/// every clone of it is dropped the engine flushes, stops, and drops the
/// bus, which ends every sink's subscription.
pub fn spawn(directory: Arc<Directory>, bus: Bus) -> (EventSender, JoinHandle<NormalizeStats>) {
    let (tx, rx) = mpsc::channel(INPUT_QUEUE);
    let engine = Engine::new(directory, bus);
    (EventSender::new(tx), tokio::spawn(engine.run(rx)))
}

#[derive(Debug)]
struct PointState {
    spec: PointSpec,
    /// Last value published, with its quality and when it was published.
    published: Option<(Value, Quality, Instant)>,
    /// Newest normalized reading received, published or not.
    latest: Option<(Reading, SystemTime)>,
    /// A reading held back by `min_interval`.
    held: Option<(Reading, SystemTime)>,
}

#[derive(Debug)]
struct DeviceState {
    stale_after: Duration,
    status: Option<DeviceStatus>,
    last_fresh: Option<Instant>,
    points: HashMap<PointId, PointState>,
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
                        published: None,
                        latest: None,
                        held: None,
                    },
                )
            })
            .collect();
        DeviceState {
            stale_after: d.stale_after(),
            status: None,
            last_fresh: None,
            points,
        }
    }
}

struct Engine {
    bus: Bus,
    /// Consulted for devices added at run time (template rules).
    directory: Arc<Directory>,
    devices: HashMap<DeviceId, DeviceState>,
    stats: NormalizeStats,
    warned_unknown: HashSet<(DeviceId, Option<PointId>)>,
}

impl Engine {
    fn new(directory: Arc<Directory>, bus: Bus) -> Self {
        let devices = directory
            .devices()
            .map(|d| (d.id.clone(), DeviceState::new(d)))
            .collect();
        Self {
            bus,
            directory,
            devices,
            stats: NormalizeStats::default(),
            warned_unknown: HashSet::new(),
        }
    }

    async fn run(mut self, mut rx: mpsc::Receiver<DeviceEvent>) -> NormalizeStats {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                event = rx.recv() => match event {
                    Some(e) => self.handle(e, Instant::now()),
                    None => break,
                },
                _ = tick.tick() => self.on_tick(Instant::now()),
            }
        }
        // Publish what min_interval was holding back: nothing is lost on stop.
        self.flush_held(Instant::now(), true);
        self.stats
    }

    fn handle(&mut self, event: DeviceEvent, now: Instant) {
        let DeviceEvent { device, at, kind } = event;
        if !self.devices.contains_key(&device)
            && let Some(spec) = self.directory.device(device.as_str())
        {
            // Added at run time by its adapter.
            self.devices.insert(device.clone(), DeviceState::new(spec));
        }
        match kind {
            EventKind::Status(status) => self.on_status(&device, status, at, now),
            EventKind::Reading(reading) => self.on_reading(&device, reading, at, now),
        }
    }

    fn warn_unknown(&mut self, device: &DeviceId, point: Option<&PointId>) {
        self.stats.unknown += 1;
        if self.warned_unknown.insert((device.clone(), point.cloned())) {
            match point {
                Some(p) => {
                    tracing::warn!(device = %device, point = %p, "reading for a point that is not configured; ignored")
                }
                None => {
                    tracing::warn!(device = %device, "event for a device that is not configured; ignored")
                }
            }
        }
    }

    fn set_status(&mut self, device: &DeviceId, status: DeviceStatus, at: SystemTime) {
        let Some(state) = self.devices.get_mut(device) else {
            return;
        };
        if state.status.as_ref() == Some(&status) {
            return;
        }
        tracing::info!(device = %device, status = %status, "device status changed");
        state.status = Some(status.clone());
        self.bus.publish(DeviceEvent {
            device: device.clone(),
            at,
            kind: EventKind::Status(status),
        });
    }

    fn on_status(&mut self, device: &DeviceId, status: DeviceStatus, at: SystemTime, now: Instant) {
        let Some(state) = self.devices.get_mut(device) else {
            self.warn_unknown(device, None);
            return;
        };
        if status == DeviceStatus::Online {
            // Connected: staleness counts from now.
            state.last_fresh = Some(now);
        }
        self.set_status(device, status, at);
    }

    fn on_reading(&mut self, device: &DeviceId, raw: Reading, at: SystemTime, now: Instant) {
        self.stats.received += 1;
        let Some(state) = self.devices.get_mut(device) else {
            self.warn_unknown(device, None);
            return;
        };
        let Some(point) = state.points.get_mut(&raw.point) else {
            let p = raw.point.clone();
            self.warn_unknown(device, Some(&p));
            return;
        };
        let Some(reading) = normalize(&point.spec, raw) else {
            self.stats.invalid += 1;
            tracing::warn!(device = %device, point = %point.spec.id, "value is not a finite number; ignored");
            return;
        };
        let fresh = reading.quality.is_good();
        point.latest = Some((reading.clone(), at));
        let came_back = fresh && state.status != Some(DeviceStatus::Online);
        if fresh {
            state.last_fresh = Some(now);
        }
        // The reading goes first, so that the "online" status that follows
        // can already show it.
        self.offer(device, reading, at, now);
        if came_back {
            self.set_status(device, DeviceStatus::Online, at);
        }
    }

    /// Applies deadband and min_interval, then publishes.
    fn offer(&mut self, device: &DeviceId, reading: Reading, at: SystemTime, now: Instant) {
        let Some(point) = self
            .devices
            .get_mut(device)
            .and_then(|d| d.points.get_mut(&reading.point))
        else {
            return;
        };
        if let Some((last, last_quality, published_at)) = &point.published {
            if last_quality == &reading.quality
                && within_deadband(point.spec.settings.deadband, last, &reading.value)
            {
                self.stats.within_deadband += 1;
                point.held = None;
                return;
            }
            if let Some(min) = point.spec.settings.min_interval
                && now.duration_since(*published_at) < min
            {
                if point.held.replace((reading, at)).is_some() {
                    self.stats.rate_limited += 1;
                }
                return;
            }
        }
        point.held = None;
        self.publish_now(device, reading, at, now);
    }

    fn on_tick(&mut self, now: Instant) {
        let mut stale = Vec::new();
        let mut heartbeats = Vec::new();
        for (id, d) in &self.devices {
            if d.status == Some(DeviceStatus::Online)
                && d.last_fresh
                    .is_some_and(|t| now.duration_since(t) >= d.stale_after)
            {
                stale.push(id.clone());
            }
            if d.status != Some(DeviceStatus::Online) {
                continue;
            }
            for p in d.points.values() {
                if let (Some(max), Some((_, _, published_at)), Some((latest, at))) =
                    (p.spec.settings.max_interval, &p.published, &p.latest)
                    && p.held.is_none()
                    && now.duration_since(*published_at) >= max
                {
                    heartbeats.push((id.clone(), latest.clone(), *at));
                }
            }
        }
        for id in stale {
            self.set_status(&id, DeviceStatus::Stale, SystemTime::now());
        }
        for (device, reading, at) in heartbeats {
            self.publish_now(&device, reading, at, now);
        }
        self.flush_held(now, false);
    }

    fn flush_held(&mut self, now: Instant, all: bool) {
        let mut due = Vec::new();
        for (id, d) in &mut self.devices {
            for p in d.points.values_mut() {
                let ready = match (&p.held, &p.published, p.spec.settings.min_interval) {
                    (Some(_), Some((_, _, t)), Some(min)) => all || now.duration_since(*t) >= min,
                    (Some(_), _, _) => true,
                    _ => false,
                };
                if ready && let Some((reading, at)) = p.held.take() {
                    due.push((id.clone(), reading, at));
                }
            }
        }
        for (device, reading, at) in due {
            self.publish_now(&device, reading, at, now);
        }
    }

    fn publish_now(&mut self, device: &DeviceId, reading: Reading, at: SystemTime, now: Instant) {
        if let Some(p) = self
            .devices
            .get_mut(device)
            .and_then(|d| d.points.get_mut(&reading.point))
        {
            p.published = Some((reading.value.clone(), reading.quality.clone(), now));
        }
        self.stats.published += 1;
        self.bus.publish(DeviceEvent {
            device: device.clone(),
            at,
            kind: EventKind::Reading(reading),
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

/// True when `new` is not worth publishing after `last`. Without a deadband
/// every reading is published; with one, numbers must move by more than it
/// and other values must change.
fn within_deadband(deadband: Option<f64>, last: &Value, new: &Value) -> bool {
    let Some(band) = deadband else {
        return false;
    };
    match (last.as_f64(), new.as_f64(), last, new) {
        (_, _, Value::Bool(a), Value::Bool(b)) => a == b,
        (Some(a), Some(b), _, _) => (a - b).abs() <= band,
        _ => last == new,
    }
}

#[cfg(test)]
mod tests;
