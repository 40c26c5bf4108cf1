//! A Modbus device played by the test: a real tokio-modbus server, in this
//! process, serving a register bank that the test reads and writes, over
//! TCP on a free loopback port or over RTU on one end of a socat pty pair
//! (the gateway opens the other end as it would open /dev/ttyUSB0).
//!
//! The bank answers one unit id, as a device on a bus does: requests for
//! any other unit get no answer. It can be told to go silent (a device that
//! stops answering) and keeps a log of every request it saw, so that a test
//! can check what the gateway asked and wrote. Registers and bits that were
//! never set read as 0 / off.

use std::collections::HashMap;
use std::future::Future;
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

use crate::require_tool;

const WAIT: Duration = Duration::from_secs(10);

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
}

/// The four tables and the server's behaviour.
#[derive(Debug, Default)]
pub struct Registers {
    /// Holding registers (FC 3, 6, 16).
    pub holding: HashMap<u16, u16>,
    /// Input registers (FC 4).
    pub input: HashMap<u16, u16>,
    /// Coils (FC 1, 5, 15).
    pub coils: HashMap<u16, bool>,
    /// Discrete inputs (FC 2).
    pub discrete: HashMap<u16, bool>,
    /// When set, no request gets an answer (a device that stopped
    /// answering; its link and the TCP connection stay up).
    pub silent: bool,
    /// Every request seen, answered or not.
    pub log: Vec<Seen>,
}

/// A register bank shared by the server and the test.
#[derive(Debug, Clone)]
pub struct Bank {
    unit: u8,
    state: Arc<Mutex<Registers>>,
}

impl Bank {
    /// An empty bank that answers unit `unit`.
    pub fn new(unit: u8) -> Self {
        Self {
            unit,
            state: Arc::default(),
        }
    }

    /// The unit id the bank answers.
    pub fn unit(&self) -> u8 {
        self.unit
    }

    fn lock(&self) -> MutexGuard<'_, Registers> {
        // A test that panicked while holding the lock has failed already;
        // the registers themselves are still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the bank in one step: the server sees all of it or none.
    pub fn with<R>(&self, f: impl FnOnce(&mut Registers) -> R) -> R {
        f(&mut self.lock())
    }

    /// Stores `words` in the holding registers from `address` on.
    pub fn set_holding(&self, address: u16, words: &[u16]) {
        self.with(|r| put(&mut r.holding, address, words));
    }

    /// Stores `words` in the input registers from `address` on.
    pub fn set_input(&self, address: u16, words: &[u16]) {
        self.with(|r| put(&mut r.input, address, words));
    }

    /// Sets a coil.
    pub fn set_coil(&self, address: u16, on: bool) {
        self.with(|r| r.coils.insert(address, on));
    }

    /// Sets a discrete input.
    pub fn set_discrete(&self, address: u16, on: bool) {
        self.with(|r| r.discrete.insert(address, on));
    }

    /// `count` holding registers from `address` on.
    pub fn holding(&self, address: u16, count: u16) -> Vec<u16> {
        self.with(|r| get(&r.holding, address, count))
    }

    /// A coil.
    pub fn coil(&self, address: u16) -> bool {
        self.with(|r| r.coils.get(&address).copied().unwrap_or(false))
    }

    /// Stops (`true`) or resumes (`false`) answering.
    pub fn set_silent(&self, silent: bool) {
        self.with(|r| r.silent = silent);
    }

    /// A copy of the request log.
    pub fn log(&self) -> Vec<Seen> {
        self.with(|r| r.log.clone())
    }

    /// Requests seen so far.
    pub fn requests(&self) -> usize {
        self.with(|r| r.log.len())
    }

    /// Waits until `f` holds for the request log; fails with the log.
    pub async fn wait_log(
        &self,
        what: &str,
        within: Duration,
        f: impl Fn(&[Seen]) -> bool,
    ) -> anyhow::Result<Vec<Seen>> {
        let deadline = Instant::now() + within;
        loop {
            let log = self.log();
            if f(&log) {
                return Ok(log);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the Modbus server saw no {what} within {within:?}; it saw {} requests, the last: {:?}",
                log.len(),
                &log[log.len().saturating_sub(10)..]
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The answer to one request, or `None` for no answer at all.
    fn answer(&self, req: &SlaveRequest<'_>) -> Option<Result<Response, ExceptionCode>> {
        let mut r = self.lock();
        let (function, address, count) = describe(&req.request);
        r.log.push(Seen {
            unit: req.slave,
            function,
            address,
            count,
        });
        if r.silent || req.slave != self.unit {
            return None;
        }
        if u32::from(address) + u32::from(count) > 65_536 {
            return Some(Err(ExceptionCode::IllegalDataAddress));
        }
        let bits = |m: &HashMap<u16, bool>| -> Vec<bool> {
            addresses(address, count)
                .map(|a| m.get(&a).copied().unwrap_or(false))
                .collect()
        };
        Some(Ok(match &req.request {
            Request::ReadCoils(..) => Response::ReadCoils(bits(&r.coils)),
            Request::ReadDiscreteInputs(..) => Response::ReadDiscreteInputs(bits(&r.discrete)),
            Request::ReadHoldingRegisters(..) => {
                Response::ReadHoldingRegisters(get(&r.holding, address, count))
            }
            Request::ReadInputRegisters(..) => {
                Response::ReadInputRegisters(get(&r.input, address, count))
            }
            Request::WriteSingleCoil(a, on) => {
                r.coils.insert(*a, *on);
                Response::WriteSingleCoil(*a, *on)
            }
            Request::WriteMultipleCoils(a, bits) => {
                for (at, on) in addresses(*a, bits.len() as u16).zip(bits.iter()) {
                    r.coils.insert(at, *on);
                }
                Response::WriteMultipleCoils(*a, bits.len() as u16)
            }
            Request::WriteSingleRegister(a, w) => {
                r.holding.insert(*a, *w);
                Response::WriteSingleRegister(*a, *w)
            }
            Request::WriteMultipleRegisters(a, words) => {
                put(&mut r.holding, *a, words);
                Response::WriteMultipleRegisters(*a, words.len() as u16)
            }
            _ => return Some(Err(ExceptionCode::IllegalFunction)),
        }))
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
        let answer = self.answer(&req).transpose();
        Box::pin(std::future::ready(answer))
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
    pub async fn tcp(bank: Bank) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        Ok(Self {
            task: Some(serve_tcp(listener, bank.clone())),
            bank,
            line: Line::Tcp(addr),
        })
    }

    /// A Modbus RTU server on one end of a fresh socat pty pair.
    pub async fn rtu(bank: Bank) -> anyhow::Result<Self> {
        require_tool("socat", "socat");
        let dir = tempfile::tempdir()?;
        let link = |p: &Path| format!("pty,raw,echo=0,link={}", p.display());
        let dev = dir.path().join("dev");
        let peer = dir.path().join("peer");
        let socat = Command::new("socat")
            .args([link(&dev), link(&peer)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let mut server = Self {
            bank: bank.clone(),
            line: Line::Rtu { dir, socat },
            task: None,
        };
        let deadline = Instant::now() + WAIT;
        while !(dev.exists() && peer.exists()) {
            anyhow::ensure!(Instant::now() < deadline, "socat made no ptys in {WAIT:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // A pty ignores the baud rate; the gateway's setting does not matter.
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

    /// The pty the gateway opens; panics for a TCP server.
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
            let _ = tokio::time::timeout(WAIT, t).await;
        }
    }

    /// Listens again on the same TCP address after [`Self::stop`], with the
    /// same bank (a device that rebooted).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await;
        let addr = self.addr();
        let deadline = Instant::now() + WAIT;
        let listener = loop {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => break l,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => anyhow::bail!("cannot listen on {addr} again: {e}"),
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
