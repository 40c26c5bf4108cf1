//! Test fixtures: a real tokio-modbus server over a register bank the test
//! controls (TCP on a free loopback port, or RTU on a socat pty; from
//! `fieldbridge-modbus-testserver`, shared with the end-to-end tests), and
//! a rig that runs the adapter with core's normalization and command
//! routing, so that outcomes are checked on the bus as sinks see them.

#![allow(clippy::unwrap_used, dead_code)] // test fixtures: a failure should stop the test loudly

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use fieldbridge_core::adapter::{Adapter, AdapterContext};
use fieldbridge_core::bus::{Bus, Subscription};
use fieldbridge_core::device::{AdapterDevice, PointSource};
use fieldbridge_core::{
    CommandRouter, CommandRoutes, ConnectionId, DeviceEvent, DeviceId, DeviceSettings, DeviceSpec,
    DeviceStatus, Directory, EventKind, PointId, PointSettings, PointSpec, Quality, Reading, Value,
    normalize,
};
use fieldbridge_modbus::config::{ModbusDevice, ModbusPoint, RawModbusPoint, Table};
use fieldbridge_modbus::{ModbusAdapter, Transport};
pub use fieldbridge_modbus_testserver::{Bank, ModbusServer};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Every await in these tests is bounded by this.
pub const WAIT: Duration = Duration::from_secs(15);

/// A point of a test device: its id, Modbus settings and core settings.
/// The point is checked as the loader checks it, and must pass.
pub fn point(
    id: &str,
    config: RawModbusPoint,
    core: PointSettings,
) -> (String, ModbusPoint, PointSettings) {
    let checked = ModbusPoint::try_from(config).unwrap_or_else(|e| panic!("point {id}: {e}"));
    (id.to_owned(), checked, core)
}

/// A test device.
pub struct TestDevice {
    pub id: &'static str,
    pub config: ModbusDevice,
    pub poll: Duration,
    pub points: Vec<(String, ModbusPoint, PointSettings)>,
}

/// The adapter running with core's normalization and command router.
pub struct Rig {
    pub sub: Subscription,
    pub router: CommandRouter,
    shutdown: CancellationToken,
    /// Readings events a status wait passed, for the reading waits that
    /// follow: core publishes an unchanged value only once, so a reading
    /// passed over would not come again.
    passed: VecDeque<DeviceEvent>,
}

impl Rig {
    pub fn start(transport: Transport, devices: Vec<TestDevice>) -> Self {
        let connection = ConnectionId::new("field").unwrap();
        let mut adapter_devices = Vec::new();
        let mut specs = Vec::new();
        for d in devices {
            let specs_of: BTreeMap<PointId, PointSpec> = d
                .points
                .iter()
                .map(|(p, mp, core)| {
                    let pid = PointId::new(p).unwrap();
                    let mut kind = mp.kind();
                    if kind == fieldbridge_core::ValueKind::Int && core.scale.is_some() {
                        kind = fieldbridge_core::ValueKind::Float;
                    }
                    (
                        pid.clone(),
                        PointSpec {
                            id: pid,
                            kind,
                            settings: core.clone(),
                        },
                    )
                })
                .collect();
            let spec = Arc::new(DeviceSpec {
                id: DeviceId::new(d.id).unwrap(),
                settings: device_settings(connection.as_str(), d.poll),
                points: specs_of,
            });
            specs.push((*spec).clone());
            adapter_devices.push(AdapterDevice {
                spec,
                config: d.config,
                points: d
                    .points
                    .into_iter()
                    .map(|(p, mp, _)| (PointId::new(&p).unwrap(), mp))
                    .collect(),
            });
        }
        let directory = Arc::new(Directory::new(specs));
        let bus = Bus::new(8192);
        let sub = bus.subscribe("test");
        let (events, _engine) = normalize::spawn(directory.clone(), bus);
        let adapter = Box::new(ModbusAdapter::new(connection, transport, adapter_devices));
        let mut routes = CommandRoutes::new();
        let shutdown = CancellationToken::new();
        let ctx = AdapterContext {
            events,
            commands: routes.register(adapter.devices()),
            shutdown: shutdown.clone(),
        };
        tokio::spawn(adapter.run(ctx));
        Rig {
            sub,
            router: routes.into_router(directory, Duration::from_secs(10)),
            shutdown,
            passed: VecDeque::new(),
        }
    }

    /// The next event (readings a status wait passed first), within `left`.
    async fn recv(&mut self, left: Duration) -> Option<DeviceEvent> {
        if let Some(e) = self.passed.pop_front() {
            return Some(e);
        }
        tokio::time::timeout(left, self.sub.recv())
            .await
            .ok()
            .map(|e| e.expect("bus open"))
    }

    /// The next event: (device, kind).
    pub async fn next(&mut self) -> (String, EventKind) {
        let e = self.recv(WAIT).await.expect("an event in time");
        (e.device.to_string(), e.kind)
    }

    /// Waits for a reading of `device.point` that satisfies `f`.
    pub async fn reading_where(
        &mut self,
        device: &str,
        point: &str,
        f: impl Fn(&Value, &Quality) -> bool,
    ) -> (Value, Quality) {
        let deadline = Instant::now() + WAIT;
        let mut last = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = self.recv(left).await.unwrap_or_else(|| {
                panic!(
                    "no matching reading of {device}.{point} within {WAIT:?}; \
                     the last one: {last:?}"
                )
            });
            if event.device.as_str() != device {
                continue;
            }
            for r in readings(event.kind) {
                if r.point.as_str() == point {
                    if f(&r.value, &r.quality) {
                        return (r.value, r.quality);
                    }
                    last = Some((r.value, r.quality));
                }
            }
        }
    }

    /// Waits for a status of `device` that satisfies `f`. The readings it
    /// passes are kept for the reading waits that follow.
    pub async fn status_where(
        &mut self,
        device: &str,
        f: impl Fn(&DeviceStatus) -> bool,
    ) -> DeviceStatus {
        let deadline = Instant::now() + WAIT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = tokio::time::timeout(left, self.sub.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!("no matching status of {device} within {WAIT:?}; saw {seen:?}")
                })
                .expect("bus open");
            match event.kind {
                EventKind::Status(s) if event.device.as_str() == device => {
                    if f(&s) {
                        return s;
                    }
                    seen.push(s);
                }
                EventKind::Readings(_) => self.passed.push_back(event),
                _ => {}
            }
        }
    }

    /// Collects the latest good value of every point of `device` until all
    /// of `points` have one, within [`WAIT`]; fails naming the points that
    /// have none.
    pub async fn latest_good(&mut self, device: &str, points: &[&str]) -> HashMap<String, Value> {
        let deadline = Instant::now() + WAIT;
        let mut seen = HashMap::new();
        let mut bad = HashMap::new();
        loop {
            let missing: Vec<&str> = points
                .iter()
                .copied()
                .filter(|p| !seen.contains_key(*p))
                .collect();
            if missing.is_empty() {
                return seen;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let event = self.recv(left).await.unwrap_or_else(|| {
                panic!(
                    "no good reading of {device}.{missing:?} within {WAIT:?}; \
                     good: {seen:?}, last bad: {bad:?}"
                )
            });
            if event.device.as_str() != device {
                continue;
            }
            for r in readings(event.kind) {
                if r.quality == Quality::Good {
                    seen.insert(r.point.to_string(), r.value);
                } else {
                    bad.insert(r.point.to_string(), r.quality);
                }
            }
        }
    }
}

/// The readings an event carries (none for a status or an alert).
pub fn readings(kind: EventKind) -> Vec<Reading> {
    match kind {
        EventKind::Readings(samples) => samples.into_iter().map(|s| s.reading).collect(),
        _ => Vec::new(),
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Core's settings of a device on `connection` polled every `poll`, read
/// from keys as the loader reads them, so that settings core adds later
/// keep their defaults here too.
pub fn device_settings(connection: &str, poll: Duration) -> DeviceSettings {
    use serde::Deserialize;
    DeviceSettings::deserialize(serde_json::json!({
        "connection": connection,
        "poll": format!("{}us", poll.as_micros()),
        "stale_after": "10m",
    }))
    .unwrap()
}

/// Core settings with nothing set.
pub fn plain() -> PointSettings {
    PointSettings::default()
}

/// A point on `table` at `address` with `type`.
pub fn at(table: Table, address: u16) -> RawModbusPoint {
    let mut p = RawModbusPoint::default();
    match table {
        Table::Coil => p.coil = Some(address),
        Table::Discrete => p.discrete = Some(address),
        Table::Input => p.input = Some(address),
        Table::Holding => p.holding = Some(address),
    }
    p
}
