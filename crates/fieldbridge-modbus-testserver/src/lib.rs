//! A Modbus device played by a test: a real tokio-modbus server, in the
//! test's own process, serving a register bank that the test reads and
//! writes, over TCP on a free loopback port or over RTU on one end of a
//! socat pty pair (the code under test opens the other end as it would
//! open /dev/ttyUSB0).
//!
//! One crate for the adapter's integration tests and the end-to-end
//! workspace, so that both test against the same device behaviour.
//!
//! The bank answers the units it was given, as devices on a bus do:
//! requests for any other unit get no answer. It can be told to go silent,
//! to refuse some addresses with an exception, to answer slowly or once
//! late, and to clamp a written set-point, and it keeps a log of every
//! request it saw, so that a test can check what was asked and written.
//! Registers and bits never set read as 0 / off.
//!
//! Fixtures fail loudly: a wait that runs out panics with what was seen.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_modbus::server::Service;
use tokio_modbus::{ExceptionCode, Request, Response, SlaveRequest};

/// How long the fixtures wait for socat, a port to be free again, or a
/// stopped server to end.
const SETUP_WAIT: Duration = Duration::from_secs(10);

/// One of the four Modbus tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    /// Coils (FC 1, 5, 15).
    Coil,
    /// Discrete inputs (FC 2).
    Discrete,
    /// Input registers (FC 4).
    Input,
    /// Holding registers (FC 3, 6, 16).
    Holding,
}

/// One request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The unit id addressed.
    pub unit: u8,
    /// The function code (3 = read holding registers, 6 = write one, …).
    pub function: u8,
    /// The first address.
    pub address: u16,
    /// Registers or bits read or written.
    pub count: u16,
    /// When it arrived (tokio's clock, so paused-clock tests can use it).
    pub at: Instant,
}

/// The four tables of one unit.
#[derive(Debug, Default, Clone)]
pub struct Regs {
    /// Holding registers.
    pub holding: HashMap<u16, u16>,
    /// Input registers.
    pub input: HashMap<u16, u16>,
    /// Coils.
    pub coils: HashMap<u16, bool>,
    /// Discrete inputs.
    pub discrete: HashMap<u16, bool>,
}

impl Regs {
    /// Stores `words` in the holding registers from `address` on.
    pub fn put_holding(&mut self, address: u16, words: &[u16]) {
        put(&mut self.holding, address, words);
    }

    /// Stores `words` in the input registers from `address` on.
    pub fn put_input(&mut self, address: u16, words: &[u16]) {
        put(&mut self.input, address, words);
    }
}

/// What the server does: answers, stays silent, refuses, replies late.
#[derive(Debug, Default)]
pub struct State {
    /// Units that answer; any other unit gets no answer (a dead device).
    pub units: HashMap<u8, Regs>,
    /// No answer to anyone (devices that stopped answering; the link and
    /// the TCP connection stay up).
    pub silent: bool,
    /// (unit, table, address) that raise "illegal data address" when read.
    pub faulty: HashSet<(u8, Table, u16)>,
    /// (unit, delay, marker): the next read of this unit is answered this
    /// late, with every register set to the marker value.
    pub late: Option<(u8, Duration, u16)>,
    /// Every answer takes this long (a slow device or gateway).
    pub delay: Duration,
    /// (address, max): the device accepts writes to this holding register
    /// but keeps at most `max` (as drives clamp a set-point).
    pub clamp: Option<(u16, u16)>,
    /// Every request seen, answered or not.
    pub log: Vec<Seen>,
}

/// A register bank shared by the server and the test.
#[derive(Debug, Clone)]
pub struct Bank {
    /// The unit the shorthands (`set_holding`, `coil`, …) address.
    unit: u8,
    state: Arc<Mutex<State>>,
}

impl Bank {
    /// An empty bank of one device, unit `unit`.
    pub fn new(unit: u8) -> Self {
        Self::with_units(&[unit])
    }

    /// An empty bank with these live units; the shorthands address the
    /// first (unit 1 when there is none).
    pub fn with_units(units: &[u8]) -> Self {
        let state = State {
            units: units.iter().map(|u| (*u, Regs::default())).collect(),
            ..State::default()
        };
        Self {
            unit: units.first().copied().unwrap_or(1),
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// The unit the shorthands address.
    pub fn unit(&self) -> u8 {
        self.unit
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding the lock has failed already;
        // the registers themselves are still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the bank in one step: the server sees all of it or none.
    pub fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.lock())
    }

    /// The registers of `unit` (made live if it was not).
    pub fn regs<R>(&self, unit: u8, f: impl FnOnce(&mut Regs) -> R) -> R {
        self.with(|s| f(s.units.entry(unit).or_default()))
    }

    /// Stores `words` in the holding registers from `address` on.
    pub fn set_holding(&self, address: u16, words: &[u16]) {
        self.regs(self.unit, |r| r.put_holding(address, words));
    }

    /// Stores `words` in the input registers from `address` on.
    pub fn set_input(&self, address: u16, words: &[u16]) {
        self.regs(self.unit, |r| r.put_input(address, words));
    }

    /// Sets a coil.
    pub fn set_coil(&self, address: u16, on: bool) {
        self.regs(self.unit, |r| r.coils.insert(address, on));
    }

    /// Sets a discrete input.
    pub fn set_discrete(&self, address: u16, on: bool) {
        self.regs(self.unit, |r| r.discrete.insert(address, on));
    }

    /// `count` holding registers from `address` on.
    pub fn holding(&self, address: u16, count: u16) -> Vec<u16> {
        self.regs(self.unit, |r| get(&r.holding, address, count))
    }

    /// A coil.
    pub fn coil(&self, address: u16) -> bool {
        self.regs(self.unit, |r| {
            r.coils.get(&address).copied().unwrap_or(false)
        })
    }

    /// Stops (`true`) or resumes (`false`) answering.
    pub fn set_silent(&self, silent: bool) {
        self.with(|s| s.silent = silent);
    }

    /// A copy of the request log.
    pub fn log(&self) -> Vec<Seen> {
        self.with(|s| s.log.clone())
    }

    /// Requests seen so far.
    pub fn requests(&self) -> usize {
        self.with(|s| s.log.len())
    }

    /// Waits until `f` holds for the request log, and returns the log;
    /// panics with the last requests seen when `within` runs out.
    pub async fn wait_log(
        &self,
        what: &str,
        within: Duration,
        f: impl Fn(&[Seen]) -> bool,
    ) -> Vec<Seen> {
        let deadline = Instant::now() + within;
        loop {
            let log = self.log();
            if f(&log) {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "the Modbus server saw no {what} within {within:?}; it saw {} requests, the last: {:?}",
                log.len(),
                &log[log.len().saturating_sub(10)..]
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The answer to one request and how long it takes, or `None` for no
    /// answer at all.
    fn answer(
        &self,
        req: &SlaveRequest<'_>,
    ) -> Option<(Result<Response, ExceptionCode>, Duration)> {
        let mut s = self.lock();
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
        let refuse = |code| Some((Err(code), Duration::ZERO));
        if u32::from(address) + u32::from(count) > 65_536 {
            return refuse(ExceptionCode::IllegalDataAddress);
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
        if function <= 4 && addresses(address, count).any(|a| s.faulty.contains(&(unit, table, a)))
        {
            return refuse(ExceptionCode::IllegalDataAddress);
        }
        let (clamp, delay) = (s.clamp, s.delay);
        let regs = s.units.get_mut(&unit)?;
        let words = |m: &HashMap<u16, u16>| -> Vec<u16> {
            match late {
                Some((_, marker)) => addresses(address, count).map(|_| marker).collect(),
                None => get(m, address, count),
            }
        };
        let bits = |m: &HashMap<u16, bool>| -> Vec<bool> {
            addresses(address, count)
                .map(|a| m.get(&a).copied().unwrap_or(false))
                .collect()
        };
        let response = match &req.request {
            Request::ReadCoils(..) => Response::ReadCoils(bits(&regs.coils)),
            Request::ReadDiscreteInputs(..) => Response::ReadDiscreteInputs(bits(&regs.discrete)),
            Request::ReadHoldingRegisters(..) => {
                Response::ReadHoldingRegisters(words(&regs.holding))
            }
            Request::ReadInputRegisters(..) => Response::ReadInputRegisters(words(&regs.input)),
            Request::WriteSingleCoil(a, on) => {
                regs.coils.insert(*a, *on);
                Response::WriteSingleCoil(*a, *on)
            }
            Request::WriteMultipleCoils(a, on) => {
                for (at, b) in addresses(*a, on.len() as u16).zip(on.iter()) {
                    regs.coils.insert(at, *b);
                }
                Response::WriteMultipleCoils(*a, on.len() as u16)
            }
            Request::WriteSingleRegister(a, w) => {
                let kept = match clamp {
                    Some((at, max)) if at == *a => (*w).min(max),
                    _ => *w,
                };
                regs.holding.insert(*a, kept);
                Response::WriteSingleRegister(*a, *w)
            }
            Request::WriteMultipleRegisters(a, w) => {
                regs.put_holding(*a, w);
                Response::WriteMultipleRegisters(*a, w.len() as u16)
            }
            _ => return refuse(ExceptionCode::IllegalFunction),
        };
        Some((Ok(response), late.map_or(delay, |l| l.0)))
    }
}

/// `count` addresses from `address` on, stopping at the last one (65535).
fn addresses(address: u16, count: u16) -> impl Iterator<Item = u16> {
    (u32::from(address)..u32::from(address) + u32::from(count)).map_while(|a| u16::try_from(a).ok())
}

fn put(map: &mut HashMap<u16, u16>, address: u16, words: &[u16]) {
    for (a, w) in addresses(address, words.len() as u16).zip(words) {
        map.insert(a, *w);
    }
}

fn get(map: &HashMap<u16, u16>, address: u16, count: u16) -> Vec<u16> {
    addresses(address, count)
        .map(|a| map.get(&a).copied().unwrap_or(0))
        .collect()
}

/// (function code, first address, count) of a request.
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
            let Some((result, delay)) = answer else {
                return Ok(None);
            };
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            result.map(Some)
        })
    }
}

/// Where the server listens.
enum Line {
    Tcp(SocketAddr),
    Rtu {
        dir: tempfile::TempDir,
        socat: Child,
    },
}

/// A Modbus server on TCP or RTU; stopped (connections closed, socat
/// ended) when dropped.
pub struct ModbusServer {
    /// The registers it serves.
    pub bank: Bank,
    line: Line,
    task: Option<JoinHandle<()>>,
}

impl ModbusServer {
    /// A Modbus TCP server on a free port of 127.0.0.1 (bound to port 0,
    /// so no other process can take it between choosing and binding).
    pub async fn tcp(bank: Bank) -> io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        Ok(Self {
            task: Some(serve_tcp(listener, bank.clone())),
            bank,
            line: Line::Tcp(addr),
        })
    }

    /// A Modbus RTU server on one end of a fresh socat pty pair; fails
    /// saying how to install socat when it is missing.
    pub async fn rtu(bank: Bank) -> io::Result<Self> {
        let dir = tempfile::tempdir()?;
        let link = |p: &Path| format!("pty,raw,echo=0,link={}", p.display());
        let dev = dir.path().join("dev");
        let peer = dir.path().join("peer");
        let socat = Command::new("socat")
            .args([link(&dev), link(&peer)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "cannot run socat ({e}): run scripts/test (or apt-get install -y socat)"
                    ),
                )
            })?;
        let mut server = Self {
            bank: bank.clone(),
            line: Line::Rtu { dir, socat },
            task: None,
        };
        let deadline = Instant::now() + SETUP_WAIT;
        while !(dev.exists() && peer.exists()) {
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("socat made no ptys in {SETUP_WAIT:?}"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // A pty ignores the baud rate; the setting of the code under test
        // does not matter.
        let rtu = tokio_modbus::server::rtu::Server::new_from_path(&peer, 19_200)?;
        server.task = Some(tokio::spawn(async move {
            if let Err(e) = rtu.serve_forever(bank).await {
                eprintln!("the Modbus RTU server stopped: {e}");
            }
        }));
        Ok(server)
    }

    /// The TCP address (`127.0.0.1:port`); panics for an RTU server.
    pub fn addr(&self) -> SocketAddr {
        match &self.line {
            Line::Tcp(a) => *a,
            Line::Rtu { .. } => panic!("an RTU server has no address"),
        }
    }

    /// The pty the code under test opens; panics for a TCP server.
    pub fn dev(&self) -> PathBuf {
        match &self.line {
            Line::Rtu { dir, .. } => dir.path().join("dev"),
            Line::Tcp(_) => panic!("a TCP server has no serial port"),
        }
    }

    /// Stops serving: the listener and every connection (TCP), or the
    /// port reader (RTU), are closed.
    pub async fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = tokio::time::timeout(SETUP_WAIT, t).await;
        }
    }

    /// Listens again on the same TCP address after [`Self::stop`], with the
    /// same bank (a device that rebooted).
    pub async fn restart(&mut self) -> io::Result<()> {
        self.stop().await;
        let addr = self.addr();
        let deadline = Instant::now() + SETUP_WAIT;
        let listener = loop {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => break l,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("cannot listen on {addr} again: {e}"),
                    ));
                }
            }
        };
        self.task = Some(serve_tcp(listener, self.bank.clone()));
        Ok(())
    }
}

impl Drop for ModbusServer {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        if let Line::Rtu { socat, .. } = &mut self.line {
            let _ = socat.kill();
            let _ = socat.wait();
        }
    }
}

/// Serves `bank` on every connection to `listener`. Aborting the task ends
/// the connections too (tokio-modbus cancels them when `serve` is dropped).
fn serve_tcp(listener: tokio::net::TcpListener, bank: Bank) -> JoinHandle<()> {
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
        if let Err(e) = server.serve(&on_connected, |_| {}).await {
            eprintln!("the Modbus TCP server stopped: {e}");
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(unit: u8, request: Request<'static>) -> SlaveRequest<'static> {
        SlaveRequest {
            slave: unit,
            request,
        }
    }

    fn answer(
        bank: &Bank,
        unit: u8,
        r: Request<'static>,
    ) -> Option<Result<Response, ExceptionCode>> {
        bank.answer(&request(unit, r)).map(|(a, _)| a)
    }

    #[test]
    fn only_live_units_answer_and_every_request_is_logged() {
        let bank = Bank::with_units(&[1, 2]);
        bank.regs(2, |r| r.put_holding(10, &[7, 8]));
        let read = || Request::ReadHoldingRegisters(10, 2);
        assert_eq!(
            answer(&bank, 2, read()),
            Some(Ok(Response::ReadHoldingRegisters(vec![7, 8])))
        );
        assert_eq!(
            answer(&bank, 1, read()),
            Some(Ok(Response::ReadHoldingRegisters(vec![0, 0])))
        );
        assert_eq!(answer(&bank, 3, read()), None);
        bank.set_silent(true);
        assert_eq!(answer(&bank, 2, read()), None);
        let log: Vec<(u8, u8, u16, u16)> = bank
            .log()
            .iter()
            .map(|s| (s.unit, s.function, s.address, s.count))
            .collect();
        assert_eq!(
            log,
            [(2, 3, 10, 2), (1, 3, 10, 2), (3, 3, 10, 2), (2, 3, 10, 2)]
        );
    }

    #[test]
    fn writes_land_in_the_tables_and_a_clamped_set_point_keeps_its_maximum() {
        let bank = Bank::new(1);
        bank.with(|s| s.clamp = Some((5, 100)));
        answer(&bank, 1, Request::WriteSingleRegister(5, 300));
        answer(
            &bank,
            1,
            Request::WriteMultipleRegisters(20, vec![1, 2].into()),
        );
        answer(&bank, 1, Request::WriteSingleCoil(3, true));
        answer(
            &bank,
            1,
            Request::WriteMultipleCoils(65_534, vec![true, true].into()),
        );
        assert_eq!(bank.holding(5, 1), [100]);
        assert_eq!(bank.holding(20, 2), [1, 2]);
        assert!(bank.coil(3));
        assert!(bank.coil(65_534) && bank.coil(65_535));
    }

    #[test]
    fn faults_reads_past_the_end_and_late_replies_are_what_was_asked_for() {
        let bank = Bank::new(1);
        bank.with(|s| s.faulty.insert((1, Table::Input, 4)));
        let refused = Some(Err(ExceptionCode::IllegalDataAddress));
        assert_eq!(answer(&bank, 1, Request::ReadInputRegisters(3, 2)), refused);
        assert_eq!(
            answer(&bank, 1, Request::ReadHoldingRegisters(65_535, 2)),
            refused
        );
        bank.with(|s| s.late = Some((1, Duration::from_millis(300), 0xDEAD)));
        let late = bank.answer(&request(1, Request::ReadHoldingRegisters(0, 2)));
        assert_eq!(
            late,
            Some((
                Ok(Response::ReadHoldingRegisters(vec![0xDEAD, 0xDEAD])),
                Duration::from_millis(300)
            ))
        );
        // Only once.
        assert_eq!(
            answer(&bank, 1, Request::ReadHoldingRegisters(0, 1)),
            Some(Ok(Response::ReadHoldingRegisters(vec![0])))
        );
        assert_eq!(
            answer(&bank, 1, Request::ReadHoldingRegisters(65_535, 1)),
            Some(Ok(Response::ReadHoldingRegisters(vec![0])))
        );
    }
}
