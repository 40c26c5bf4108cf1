//! One link to the field: a TCP connection or an RTU port, with every
//! call under a timeout and the recoveries tokio-modbus needs.
//!
//! - TCP: after a timeout, a transport error or a response header mismatch
//!   the connection is dropped (tokio-modbus would stay off by one) and the
//!   next call reconnects; failed connects back off exponentially (250ms
//!   doubling to 30s, ±25% jitter).
//! - RTU: after a timeout or a garbled answer the port is closed, one more
//!   timeout is waited out so that a late reply has arrived, and the next
//!   call reopens the port and flushes its input; `inter_request_delay` of
//!   silence is kept between requests.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use fieldbridge_core::AdapterError;
use fieldbridge_core::backoff::Backoff;
use fieldbridge_serialport::{FlowControl, LineSettings};
use tokio::time::Instant;
use tokio_modbus::client::Context;
use tokio_modbus::prelude::*;
use tokio_serial::SerialPort;

use crate::config::{DEFAULT_TIMEOUT, ModbusRtuConnection, ModbusTcpConnection};

/// First delay before reconnecting after a failed connect.
pub const BACKOFF_START: Duration = Duration::from_millis(250);
/// Longest delay between connect attempts.
pub const BACKOFF_CAP: Duration = Duration::from_secs(30);

/// Why a request got no usable answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    /// The device answered with a Modbus exception: it is reachable, the
    /// request (address, function, value) is what it refused.
    #[error("modbus exception: {0}")]
    Exception(ExceptionCode),
    /// No answer in time.
    #[error("no answer within {}ms", .0.as_millis())]
    Timeout(Duration),
    /// The connection or port could not be opened.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// Not connected, and the next attempt is not due yet.
    #[error("not connected ({reason}); next attempt in {}ms", .retry_in.as_millis())]
    Waiting {
        /// Why the last attempt failed.
        reason: String,
        /// Until the next attempt.
        retry_in: Duration,
    },
    /// The connection failed during the request.
    #[error("transport error: {0}")]
    Transport(String),
    /// The answer did not match the request (header, function code, length).
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl CallError {
    /// The command failure this is, by cause, with `what` was being done.
    pub fn failed(&self, what: impl std::fmt::Display) -> AdapterError {
        let text = format!("{what}: {self}");
        match self {
            CallError::Exception(
                ExceptionCode::IllegalFunction | ExceptionCode::IllegalDataAddress,
            ) => AdapterError::Unsupported(text),
            CallError::Exception(
                ExceptionCode::ServerDeviceBusy
                | ExceptionCode::Acknowledge
                | ExceptionCode::GatewayPathUnavailable
                | ExceptionCode::GatewayTargetDevice,
            ) => AdapterError::Unavailable(text),
            CallError::Exception(_) => AdapterError::Refused(text),
            CallError::Timeout(_) => AdapterError::NoAnswer(text),
            CallError::Connect(_)
            | CallError::Waiting { .. }
            | CallError::Transport(_)
            | CallError::Protocol(_) => AdapterError::Unavailable(text),
        }
    }

    /// True when the device answered (an exception): it is alive.
    pub fn device_answered(&self) -> bool {
        matches!(self, CallError::Exception(_))
    }
}

/// A link to one TCP endpoint or one RTU bus.
pub enum Link {
    /// Modbus TCP.
    Tcp(TcpLink),
    /// Modbus RTU.
    Rtu(RtuLink),
}

impl Link {
    /// Sends one request to `unit` and waits (at most the timeout) for the answer.
    pub async fn call(
        &mut self,
        unit: u8,
        request: Request<'static>,
    ) -> Result<Response, CallError> {
        match self {
            Link::Tcp(l) => l.call(unit, request).await,
            Link::Rtu(l) => l.call(unit, request).await,
        }
    }

    /// Closes the connection or port (at shutdown).
    pub async fn close(&mut self) {
        let ctx = match self {
            Link::Tcp(l) => l.ctx.take(),
            Link::Rtu(l) => l.ctx.take(),
        };
        if let Some(mut ctx) = ctx {
            let _ = tokio::time::timeout(Duration::from_millis(500), ctx.disconnect()).await;
        }
    }
}

/// Where a link stands between calls.
#[derive(Debug)]
struct Retry {
    backoff: Backoff,
    not_before: Option<(Instant, String)>,
}

impl Retry {
    fn new() -> Self {
        Self {
            backoff: Backoff::new(BACKOFF_START, BACKOFF_CAP),
            not_before: None,
        }
    }
    fn check(&self) -> Result<(), CallError> {
        match &self.not_before {
            Some((at, reason)) if Instant::now() < *at => Err(CallError::Waiting {
                reason: reason.clone(),
                retry_in: at.saturating_duration_since(Instant::now()),
            }),
            _ => Ok(()),
        }
    }
    fn failed(&mut self, reason: String) {
        let delay = self.backoff.next_delay();
        self.not_before = Some((Instant::now() + delay, reason));
    }
    fn succeeded(&mut self) {
        self.backoff.reset();
        self.not_before = None;
    }
}

/// A Modbus TCP connection, reopened as needed.
pub struct TcpLink {
    address: SocketAddr,
    timeout: Duration,
    ctx: Option<Context>,
    retry: Retry,
}

impl TcpLink {
    /// A link to `settings.address`, not connected yet.
    pub fn new(settings: &ModbusTcpConnection) -> Self {
        Self {
            address: settings.address,
            timeout: settings.timeout.unwrap_or(DEFAULT_TIMEOUT),
            ctx: None,
            retry: Retry::new(),
        }
    }

    async fn connect(&mut self) -> Result<(), CallError> {
        if self.ctx.is_some() {
            return Ok(());
        }
        self.retry.check()?;
        let attempt = async {
            let stream = tokio::net::TcpStream::connect(self.address).await?;
            // Small request/answer exchanges: never wait for Nagle.
            stream.set_nodelay(true)?;
            Ok::<_, io::Error>(stream)
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(Ok(stream)) => {
                tracing::debug!(address = %self.address, "modbus tcp connected");
                self.ctx = Some(tcp::attach(stream));
                self.retry.succeeded();
                Ok(())
            }
            Ok(Err(e)) => {
                let reason = format!("{}: {e}", self.address);
                self.retry.failed(reason.clone());
                Err(CallError::Connect(reason))
            }
            Err(_) => {
                let reason = format!(
                    "{}: no answer to connect within {}ms",
                    self.address,
                    self.timeout.as_millis()
                );
                self.retry.failed(reason.clone());
                Err(CallError::Connect(reason))
            }
        }
    }

    async fn call(&mut self, unit: u8, request: Request<'static>) -> Result<Response, CallError> {
        self.connect().await?;
        let Some(ctx) = self.ctx.as_mut() else {
            return Err(CallError::Connect("not connected".into()));
        };
        ctx.set_slave(Slave(unit));
        let outcome = classify(
            tokio::time::timeout(self.timeout, ctx.call(request)).await,
            self.timeout,
        );
        if let Err(e) = &outcome
            && !e.device_answered()
        {
            // Off by one for ever otherwise: start afresh.
            self.ctx = None;
        }
        outcome
    }
}

/// A Modbus RTU port, closed and reopened around timeouts.
pub struct RtuLink {
    settings: ModbusRtuConnection,
    timeout: Duration,
    ctx: Option<Context>,
    retry: Retry,
    quiet_until: Option<Instant>,
}

impl RtuLink {
    /// A link to `settings.port`, not open yet.
    pub fn new(settings: &ModbusRtuConnection) -> Self {
        Self {
            timeout: settings.timeout.unwrap_or(DEFAULT_TIMEOUT),
            settings: settings.clone(),
            ctx: None,
            retry: Retry::new(),
            quiet_until: None,
        }
    }

    fn open(&mut self) -> Result<(), CallError> {
        if self.ctx.is_some() {
            return Ok(());
        }
        self.retry.check()?;
        let s = &self.settings;
        let line = LineSettings {
            baud: s.baud,
            data_bits: s.data_bits,
            parity: s.parity,
            stop_bits: s.stop_bits,
            flow_control: FlowControl::None,
        };
        match fieldbridge_serialport::open(&s.port, &line) {
            Ok(port) => {
                // Whatever arrived while the port was closed is stale.
                if let Err(e) = port.clear(tokio_serial::ClearBuffer::Input) {
                    tracing::debug!(port = %s.port.display(), error = %e, "could not flush the port's input");
                }
                tracing::debug!(port = %s.port.display(), "modbus rtu port open");
                self.ctx = Some(rtu::attach(port));
                self.retry.succeeded();
                Ok(())
            }
            Err(e) => {
                // `e` names the port.
                let reason = e.to_string();
                self.retry.failed(reason.clone());
                Err(CallError::Connect(reason))
            }
        }
    }

    async fn call(&mut self, unit: u8, request: Request<'static>) -> Result<Response, CallError> {
        if let Some(t) = self.quiet_until.take() {
            tokio::time::sleep_until(t).await;
        }
        self.open()?;
        let Some(ctx) = self.ctx.as_mut() else {
            return Err(CallError::Connect("port not open".into()));
        };
        ctx.set_slave(Slave(unit));
        let outcome = classify(
            tokio::time::timeout(self.timeout, ctx.call(request)).await,
            self.timeout,
        );
        if let Err(e) = &outcome
            && !e.device_answered()
        {
            // A late reply must never be taken for the next answer: close,
            // let it arrive, reopen (flushing the input) on the next call.
            self.ctx = None;
            tokio::time::sleep(self.timeout).await;
        }
        let delay = self.settings.inter_request_delay.unwrap_or_default();
        if !delay.is_zero() {
            self.quiet_until = Some(Instant::now() + delay);
        }
        outcome
    }
}

type Called = Result<tokio_modbus::Result<Response>, tokio::time::error::Elapsed>;

fn classify(outcome: Called, timeout: Duration) -> Result<Response, CallError> {
    match outcome {
        Err(_) => Err(CallError::Timeout(timeout)),
        Ok(Err(tokio_modbus::Error::Transport(e))) => Err(CallError::Transport(e.to_string())),
        Ok(Err(tokio_modbus::Error::Protocol(e))) => Err(CallError::Protocol(e.to_string())),
        Ok(Ok(Err(code))) => Err(CallError::Exception(code)),
        Ok(Ok(Ok(response))) => Ok(response),
    }
}
