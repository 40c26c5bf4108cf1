//! Test fixtures: a real tokio-modbus server over a register bank the test
//! controls (TCP on a free loopback port, or RTU on a socat pty), and a rig
//! that runs the adapter with core's normalization and command routing,
//! so that outcomes are checked on the bus as sinks see them.

#![allow(clippy::unwrap_used, dead_code)] // test fixtures: a failure should stop the test loudly

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fieldbridge_core::adapter::{Adapter, AdapterContext};
use fieldbridge_core::bus::{Bus, Subscription};
use fieldbridge_core::device::{AdapterDevice, PointSource};
use fieldbridge_core::{
    CommandRouter, CommandRoutes, ConnectionId, DeviceEvent, DeviceId, DeviceSettings, DeviceSpec,
    DeviceStatus, Directory, EventKind, PointId, PointSettings, PointSpec, Quality, Reading, Value,
    normalize,
};
use fieldbridge_modbus::config::{ModbusDevice, ModbusPoint, Table};
use fieldbridge_modbus::{ModbusAdapter, Transport};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_modbus::server::Service;
use tokio_modbus::{ExceptionCode, Request, Response, SlaveRequest};
use tokio_util::sync::CancellationToken;

/// Every await in these tests is bounded by this.
pub const WAIT: Duration = Duration::from_secs(15);

/// One request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Unit id addressed.
    pub unit: u8,
    /// Function code.
    pub function: u8,
    /// First address.
    pub address: u16,
    /// Count (reads) or values written.
    pub count: u16,
    /// When.
    pub at: Instant,
}

/// The registers of one unit.
#[derive(Debug, Default, Clone)]
pub struct Regs {
    pub holding: HashMap<u16, u16>,
    pub input: HashMap<u16, u16>,
    pub coils: HashMap<u16, bool>,
    pub discrete: HashMap<u16, bool>,
}

impl Regs {
    /// Stores words from `at` on.
    pub fn put(&mut self, table: Table, at: u16, words: &[u16]) {
        let map = match table {
            Table::Holding => &mut self.holding,
            Table::Input => &mut self.input,
            _ => panic!("registers only"),
        };
        for (i, w) in words.iter().enumerate() {
            map.insert(at + i as u16, *w);
        }
    }
}

/// What the server does: answers, stays silent, refuses, replies late.
#[derive(Debug, Default)]
pub struct State {
    /// Units that answer; any other unit gets no answer (a dead device).
    pub units: HashMap<u8, Regs>,
    /// No answer to anyone.
    pub silent: bool,
    /// (unit, table, address) that raise "illegal data address" when read.
    pub faulty: HashSet<(u8, Table, u16)>,
    /// The next read of this unit is answered this late, with every
    /// register set to the marker value.
    pub late: Option<(u8, Duration, u16)>,
    /// Every answer takes this long (a slow device or gateway).
    pub delay: Duration,
    /// (address, max): the device accepts writes to this holding register
    /// but keeps at most `max` (as drives clamp a set-point).
    pub clamp: Option<(u16, u16)>,
    /// Every request seen.
    pub log: Vec<Seen>,
}

/// A register bank shared by the server and the test.
#[derive(Debug, Clone, Default)]
pub struct Bank(pub Arc<Mutex<State>>);

impl Bank {
    /// A bank with these live units.
    pub fn with_units(units: &[u8]) -> Self {
        let bank = Self::default();
        for u in units {
            bank.0.lock().unwrap().units.insert(*u, Regs::default());
        }
        bank
    }

    /// Changes the bank.
    pub fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.0.lock().unwrap())
    }

    /// The registers of `unit`.
    pub fn regs<R>(&self, unit: u8, f: impl FnOnce(&mut Regs) -> R) -> R {
        self.with(|s| f(s.units.entry(unit).or_default()))
    }

    /// A copy of the request log.
    pub fn log(&self) -> Vec<Seen> {
        self.with(|s| s.log.clone())
    }

    /// Waits (bounded) until `f` holds for the log.
    pub async fn wait_log(&self, what: &str, f: impl Fn(&[Seen]) -> bool) -> Vec<Seen> {
        let deadline = Instant::now() + WAIT;
        loop {
            let log = self.log();
            if f(&log) {
                return log;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn answer(
        &self,
        req: &SlaveRequest<'static>,
    ) -> Option<(Result<Response, ExceptionCode>, Duration)> {
        let mut s = self.0.lock().unwrap();
        let unit = req.slave;
        let (function, address, count) = describe(&req.request);
        s.log.push(Seen {
            unit,
            function,
            address,
            count,
            at: Instant::now(),
        });
        if s.silent || !s.units.contains_key(&unit) {
            return None;
        }
        let late = match s.late {
            Some((u, delay, marker)) if u == unit && function <= 4 => {
                s.late = None;
                Some((delay, marker))
            }
            _ => None,
        };
        let table = match function {
            1 | 5 | 15 => Table::Coil,
            2 => Table::Discrete,
            4 => Table::Input,
            _ => Table::Holding,
        };
        if function <= 4
            && (address..address.saturating_add(count))
                .any(|a| s.faulty.contains(&(unit, table, a)))
        {
            return Some((Err(ExceptionCode::IllegalDataAddress), Duration::ZERO));
        }
        let clamp = s.clamp;
        let regs = s.units.get_mut(&unit)?;
        let range = address..address.saturating_add(count);
        let words = |m: &HashMap<u16, u16>| -> Vec<u16> {
            range
                .clone()
                .map(|a| late.map_or(*m.get(&a).unwrap_or(&0), |l| l.1))
                .collect()
        };
        let bits = |m: &HashMap<u16, bool>| -> Vec<bool> {
            range
                .clone()
                .map(|a| *m.get(&a).unwrap_or(&false))
                .collect()
        };
        let response = match &req.request {
            Request::ReadCoils(..) => Response::ReadCoils(bits(&regs.coils)),
            Request::ReadDiscreteInputs(..) => Response::ReadDiscreteInputs(bits(&regs.discrete)),
            Request::ReadHoldingRegisters(..) => {
                Response::ReadHoldingRegisters(words(&regs.holding))
            }
            Request::ReadInputRegisters(..) => Response::ReadInputRegisters(words(&regs.input)),
            Request::WriteSingleCoil(a, v) => {
                regs.coils.insert(*a, *v);
                Response::WriteSingleCoil(*a, *v)
            }
            Request::WriteSingleRegister(a, v) => {
                let kept = match clamp {
                    Some((at, max)) if at == *a => (*v).min(max),
                    _ => *v,
                };
                regs.holding.insert(*a, kept);
                Response::WriteSingleRegister(*a, *v)
            }
            Request::WriteMultipleCoils(a, v) => {
                for (i, b) in v.iter().enumerate() {
                    regs.coils.insert(a + i as u16, *b);
                }
                Response::WriteMultipleCoils(*a, v.len() as u16)
            }
            Request::WriteMultipleRegisters(a, v) => {
                for (i, w) in v.iter().enumerate() {
                    regs.holding.insert(a + i as u16, *w);
                }
                Response::WriteMultipleRegisters(*a, v.len() as u16)
            }
            _ => return Some((Err(ExceptionCode::IllegalFunction), Duration::ZERO)),
        };
        Some((Ok(response), late.map_or(s.delay, |l| l.0)))
    }
}

fn describe(r: &Request<'_>) -> (u8, u16, u16) {
    match r {
        Request::ReadCoils(a, n) => (1, *a, *n),
        Request::ReadDiscreteInputs(a, n) => (2, *a, *n),
        Request::ReadHoldingRegisters(a, n) => (3, *a, *n),
        Request::ReadInputRegisters(a, n) => (4, *a, *n),
        Request::WriteSingleCoil(a, _) => (5, *a, 1),
        Request::WriteSingleRegister(a, _) => (6, *a, 1),
        Request::WriteMultipleCoils(a, v) => (15, *a, v.len() as u16),
        Request::WriteMultipleRegisters(a, v) => (16, *a, v.len() as u16),
        _ => (0, 0, 0),
    }
}

type Answer = Pin<Box<dyn Future<Output = Result<Option<Response>, ExceptionCode>> + Send>>;

impl Service for Bank {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = Answer;

    fn call(&self, req: Self::Request) -> Self::Future {
        let answer = self.answer(&req);
        Box::pin(async move {
            match answer {
                None => Ok(None),
                Some((result, delay)) => {
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    result.map(Some)
                }
            }
        })
    }
}

/// A Modbus TCP server on a free loopback port.
pub struct TcpServer {
    pub addr: SocketAddr,
    pub bank: Bank,
    task: Option<JoinHandle<()>>,
}

impl TcpServer {
    pub async fn start(bank: Bank) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = Some(serve(listener, bank.clone()));
        Self { addr, bank, task }
    }

    /// Stops listening and drops every connection.
    pub async fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }

    /// Listens again on the same port.
    pub async fn restart(&mut self) {
        self.stop().await;
        let deadline = Instant::now() + WAIT;
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "cannot rebind {}: {e}",
                        self.addr
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        self.task = Some(serve(listener, self.bank.clone()));
    }
}

impl Drop for TcpServer {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

fn serve(listener: tokio::net::TcpListener, bank: Bank) -> JoinHandle<()> {
    tokio::spawn(async move {
        let server = tokio_modbus::server::tcp::Server::new(listener);
        let on_connected = |stream, addr| {
            let bank = bank.clone();
            async move {
                tokio_modbus::server::tcp::accept_tcp_connection(stream, addr, move |_| {
                    Ok(Some(bank.clone()))
                })
            }
        };
        let _ = server.serve(&on_connected, |_err| {}).await;
    })
}

/// A socat pty pair with a Modbus RTU server on one end; the adapter
/// opens the other (`dev`) as it would open /dev/ttyUSB0.
pub struct RtuServer {
    dir: tempfile::TempDir,
    child: Option<Child>,
    task: Option<JoinHandle<()>>,
    pub bank: Bank,
}

impl RtuServer {
    pub async fn start(bank: Bank) -> Self {
        let found = Command::new("socat")
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        assert!(
            matches!(found, Ok(s) if s.success()),
            "socat not found: install it with `apt-get install -y socat` (scripts/test does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let link = |p: &Path| format!("pty,raw,echo=0,link={}", p.display());
        let dev = dir.path().join("dev");
        let peer = dir.path().join("peer");
        let child = Command::new("socat")
            .args(["-d", "-d", &link(&dev), &link(&peer)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + WAIT;
        while !(dev.exists() && peer.exists()) {
            assert!(Instant::now() < deadline, "socat made no ptys");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        use tokio_serial::SerialPortBuilderExt;
        let port = tokio_serial::new(peer.to_string_lossy(), 19200)
            .open_native_async()
            .unwrap();
        let server = tokio_modbus::server::rtu::Server::new(port);
        let b = bank.clone();
        let task = tokio::spawn(async move {
            let _ = server.serve_forever(b).await;
        });
        Self {
            dir,
            child: Some(child),
            task: Some(task),
            bank,
        }
    }

    pub fn dev(&self) -> PathBuf {
        self.dir.path().join("dev")
    }
}

impl Drop for RtuServer {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A point of a test device: its id, Modbus settings and core settings.
pub fn point(
    id: &str,
    config: ModbusPoint,
    core: PointSettings,
) -> (String, ModbusPoint, PointSettings) {
    (id.to_owned(), config, core)
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
            for (_, mp, _) in &d.points {
                mp.check().unwrap();
            }
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
                EventKind::Status(_) => {}
                EventKind::Readings(_) => self.passed.push_back(event),
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

/// The readings an event carries (none for a status).
pub fn readings(kind: EventKind) -> Vec<Reading> {
    match kind {
        EventKind::Readings(samples) => samples.into_iter().map(|s| s.reading).collect(),
        EventKind::Status(_) => Vec::new(),
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
pub fn at(table: Table, address: u16) -> ModbusPoint {
    let mut p = ModbusPoint::default();
    match table {
        Table::Coil => p.coil = Some(address),
        Table::Discrete => p.discrete = Some(address),
        Table::Input => p.input = Some(address),
        Table::Holding => p.holding = Some(address),
    }
    p
}
