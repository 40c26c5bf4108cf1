//! The Modbus transport loop: one scheduler per link, polling each device
//! at its own period, answering commands between requests, and telling the
//! truth about each device meanwhile.
//!
//! An RTU bus is one link: one request at a time, the device whose poll is
//! most overdue goes first (so devices share the bus fairly whatever their
//! periods). A TCP connection is one link too; `max_in_flight: N` opens N
//! links to the endpoint and spreads the devices over them.
//!
//! A device whose cycle fails (no answer, connection lost) `offline_after`
//! times in a row is reported offline with the reason, and then retried
//! with a capped, jittered backoff so that a dead device costs the bus
//! little; its first answer brings it back online. A Modbus exception is an
//! answer: it marks only the points of the refused request bad. When a
//! merged read is refused, it is split into one read per point for good,
//! so that one missing register does not take its neighbours down.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fieldbridge_core::adapter::{Adapter, AdapterContext, AdapterFuture, sample};
use fieldbridge_core::backoff::Backoff;
use fieldbridge_core::device::AdapterDevice;
use fieldbridge_core::normalize::normalize;
use fieldbridge_core::telemetry::{BadValues, InternalEvent, Reconnect, RequestDone, Telemetry};
use fieldbridge_core::{
    Action, AdapterError, Command, ConnectionId, DeviceId, DeviceSpec, DeviceStatus, EventSender,
    PointId, PointSpec, Quality, Reading, Sample, Value,
};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_modbus::prelude::{Request, Response};
use tokio_util::sync::CancellationToken;

use crate::codec::{Codec, set_bit, unscale};
use crate::config::{
    DEFAULT_POLL, DataType, Location, ModbusDevice, ModbusPoint, ModbusRtuConnection,
    ModbusTcpConnection, Table,
};
use crate::plan::{Limits, Read, Span, one_per_point, plan};
use crate::transport::{CallError, Link, RtuLink, TcpLink};

/// Longest wait between attempts to reach an offline device (or its poll
/// period, if longer).
pub const OFFLINE_RETRY_CAP: Duration = Duration::from_secs(30);
/// Commands queued per link.
const LANE_QUEUE: usize = 16;

/// The transport of a connection.
#[derive(Debug, Clone)]
pub enum Transport {
    /// `modbus_tcp`
    Tcp(ModbusTcpConnection),
    /// `modbus_rtu`
    Rtu(ModbusRtuConnection),
}

/// The adapter of one `modbus_tcp` or `modbus_rtu` connection.
#[derive(Debug)]
pub struct ModbusAdapter {
    id: ConnectionId,
    transport: Transport,
    devices: Vec<AdapterDevice<ModbusDevice, ModbusPoint>>,
}

impl ModbusAdapter {
    /// An adapter for connection `id` and its devices.
    pub fn new(
        id: ConnectionId,
        transport: Transport,
        devices: Vec<AdapterDevice<ModbusDevice, ModbusPoint>>,
    ) -> Self {
        Self {
            id,
            transport,
            devices,
        }
    }
}

impl Adapter for ModbusAdapter {
    fn name(&self) -> String {
        match self.transport {
            Transport::Tcp(_) => format!("modbus_tcp {}", self.id),
            Transport::Rtu(_) => format!("modbus_rtu {}", self.id),
        }
    }

    fn devices(&self) -> Vec<DeviceId> {
        self.devices.iter().map(|d| d.spec.id.clone()).collect()
    }

    fn run(self: Box<Self>, ctx: AdapterContext) -> AdapterFuture {
        Box::pin(run(*self, ctx))
    }
}

/// One point as the scheduler keeps it.
#[derive(Debug)]
pub(crate) struct Point {
    pub(crate) id: PointId,
    pub(crate) spec: PointSpec,
    pub(crate) at: Location,
    pub(crate) codec: Codec,
    pub(crate) config: ModbusPoint,
    last: Option<Value>,
    bad: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reported {
    Nothing,
    Online,
    Offline,
}

/// One device as the scheduler keeps it.
#[derive(Debug)]
struct Device {
    id: DeviceId,
    unit: u8,
    poll: Duration,
    offline_after: u32,
    points: Vec<Point>,
    spans: Vec<Span>,
    reads: Vec<Read>,
    next_due: Instant,
    failures: u32,
    reported: Reported,
    retry: Backoff,
}

impl Device {
    fn new(d: AdapterDevice<ModbusDevice, ModbusPoint>, start: Instant) -> Self {
        let spec: Arc<DeviceSpec> = d.spec;
        let poll = spec.settings.poll.unwrap_or(DEFAULT_POLL);
        let order = d.config.order;
        let points: Vec<Point> = d
            .points
            .into_iter()
            .filter_map(|(id, config)| {
                let at = config.location();
                let core = spec.points.get(&id)?.clone();
                Some(Point {
                    codec: Codec::of(&config, order),
                    id,
                    spec: core,
                    at,
                    config,
                    last: None,
                    bad: None,
                })
            })
            .collect();
        let spans: Vec<Span> = points
            .iter()
            .map(|p| Span {
                at: p.at,
                width: p.codec.width,
            })
            .collect();
        let limits = Limits {
            max_registers: d.config.max_registers,
            max_bits: d.config.max_bits,
            max_gap: d.config.max_gap,
            max_bit_gap: d.config.max_bit_gap,
        };
        let reads = plan(&spans, limits);
        Self {
            id: spec.id.clone(),
            unit: d.config.unit,
            poll,
            offline_after: d.config.offline_after,
            points,
            spans,
            reads,
            next_due: start,
            failures: 0,
            reported: Reported::Nothing,
            retry: Backoff::new(poll, OFFLINE_RETRY_CAP.max(poll)),
        }
    }
}

async fn run(adapter: ModbusAdapter, ctx: AdapterContext) {
    let AdapterContext {
        events,
        mut commands,
        shutdown,
    } = ctx;
    let lanes = match &adapter.transport {
        Transport::Tcp(t) => usize::from(t.max_in_flight.max(1)),
        Transport::Rtu(_) => 1,
    }
    .min(adapter.devices.len().max(1));
    let start = Instant::now();
    let mut groups: Vec<Vec<Device>> = (0..lanes).map(|_| Vec::new()).collect();
    let mut owner: HashMap<DeviceId, usize> = HashMap::new();
    for (i, d) in adapter.devices.into_iter().enumerate() {
        owner.insert(d.spec.id.clone(), i % lanes);
        groups[i % lanes].push(Device::new(d, start));
    }
    tracing::info!(
        connection = %adapter.id,
        devices = owner.len(),
        links = lanes,
        requests_per_cycle = groups.iter().flatten().map(|d| d.reads.len()).sum::<usize>(),
        "modbus adapter started"
    );
    let mut tasks = tokio::task::JoinSet::new();
    let mut inboxes = Vec::new();
    for devices in groups {
        let (tx, rx) = mpsc::channel(LANE_QUEUE);
        inboxes.push(tx);
        let link = match &adapter.transport {
            Transport::Tcp(t) => Link::Tcp(TcpLink::new(t)),
            Transport::Rtu(r) => Link::Rtu(RtuLink::new(r)),
        };
        let lane = Lane {
            connection: adapter.id.clone(),
            link,
            devices,
            stats: Stats {
                telemetry: Arc::clone(events.telemetry()),
                connection: adapter.id.clone(),
            },
            events: events.clone(),
        };
        tasks.spawn(lane.run(rx, shutdown.clone()));
    }
    // Route commands to the link that owns the device.
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            command = commands.recv() => match command {
                None => break,
                Some(c) => match owner.get(&c.device).and_then(|l| inboxes.get(*l)) {
                    Some(inbox) => {
                        if let Err(mpsc::error::SendError(c)) = inbox.send(c).await {
                            let _ = c.reply.send(Err(AdapterError::Unavailable("the Modbus link has stopped".into())));
                        }
                    }
                    None => {
                        let _ = c.reply.send(Err(AdapterError::NotHere(format!("{} is not on this connection", c.device))));
                    }
                },
            },
        }
    }
    drop(inboxes);
    while tasks.join_next().await.is_some() {}
}

/// Counts what a link did into the gateway's telemetry: every request by
/// outcome with its latency, lost connections, unusable values.
#[derive(Debug)]
struct Stats {
    telemetry: Arc<Telemetry>,
    connection: ConnectionId,
}

impl Stats {
    /// Counts a request that started at `started`.
    fn count(&self, outcome: &Result<Response, CallError>, started: Instant) {
        let connection = &self.connection;
        let (outcome, sent) = match outcome {
            Ok(_) => ("ok", true),
            Err(CallError::Exception(_)) => ("exception", true),
            Err(CallError::Timeout(_)) => ("timeout", true),
            Err(CallError::Connect(_) | CallError::Waiting { .. }) => ("connect", false),
            Err(CallError::Transport(_)) => ("transport", true),
            Err(CallError::Protocol(_)) => ("protocol", true),
        };
        RequestDone {
            connection,
            outcome,
            // A request that never went out has no latency.
            elapsed: sent.then(|| started.elapsed()),
        }
        .emit(&self.telemetry);
        if matches!(outcome, "connect" | "transport" | "timeout") {
            Reconnect { connection }.emit(&self.telemetry);
        }
    }

    /// Counts values that could not be decoded (`mark_bad` logs them, once
    /// per point and reason).
    fn bad_values(&self, device: &DeviceId, n: u64) {
        if n > 0 {
            BadValues {
                connection: &self.connection,
                device,
                count: n,
            }
            .emit(&self.telemetry);
        }
    }
}

/// One link and the devices polled through it.
pub(crate) struct Lane {
    connection: ConnectionId,
    link: Link,
    devices: Vec<Device>,
    events: EventSender,
    stats: Stats,
}

impl Lane {
    async fn run(mut self, mut inbox: mpsc::Receiver<Command>, shutdown: CancellationToken) {
        loop {
            // The most overdue device goes next: fair whatever the periods.
            let next = self
                .devices
                .iter()
                .enumerate()
                .min_by_key(|(_, d)| d.next_due)
                .map(|(i, d)| (i, d.next_due));
            let sleep = async {
                match next {
                    Some((_, at)) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                Some(command) = inbox.recv() => self.command(command).await,
                () = sleep => {
                    if let Some((i, _)) = next {
                        self.poll(i).await;
                    }
                }
            }
        }
        self.link.close().await;
        let t = &self.stats.telemetry;
        let connection = [("connection", self.connection.as_str())];
        tracing::info!(
            connection = %self.connection,
            requests = t.sum("requests_total", connection) as u64,
            timeouts = t.sum("requests_total", [("connection", self.connection.as_str()), ("outcome", "timeout")]) as u64,
            exceptions = t.sum("requests_total", [("connection", self.connection.as_str()), ("outcome", "exception")]) as u64,
            reconnects = t.sum("reconnects_total", connection) as u64,
            bad_values = t.sum("bad_input_total", connection) as u64,
            "modbus link stopped"
        );
    }

    /// One poll cycle of device `i`.
    async fn poll(&mut self, i: usize) {
        let Lane {
            connection,
            link,
            devices,
            events,
            stats,
        } = self;
        let Some(d) = devices.get_mut(i) else {
            return;
        };
        let due = d.next_due;
        let mut failure = None;
        // Everything this cycle read, reported as one event.
        let mut readings = Vec::new();
        let mut r = 0;
        while r < d.reads.len() {
            let read = d.reads[r].clone();
            let started = Instant::now();
            let outcome = link.call(d.unit, request(&read)).await;
            stats.count(&outcome, started);
            match outcome {
                Ok(response) => {
                    let bad = deliver(connection, d, &read, &response, &mut readings);
                    stats.bad_values(&d.id, bad);
                }
                Err(CallError::Exception(code)) if read.points.len() > 1 => {
                    tracing::warn!(
                        connection = %connection, device = %d.id, error = %code,
                        table = %read.table, address = read.address, count = read.count,
                        "merged read refused; reading these points one by one from now on"
                    );
                    let spans: Vec<Span> = read.points.iter().map(|&p| d.spans[p]).collect();
                    let singles = one_per_point(&spans).into_iter().map(|mut s| {
                        s.points = s.points.iter().map(|&k| read.points[k]).collect();
                        s
                    });
                    d.reads.splice(r..=r, singles);
                    continue;
                }
                Err(CallError::Exception(code)) => {
                    let reason =
                        format!("modbus exception: {code} ({} {})", read.table, read.address);
                    for &p in &read.points {
                        mark_bad(
                            connection,
                            &d.id,
                            &mut d.points[p],
                            reason.clone(),
                            &mut readings,
                        );
                    }
                }
                Err(e) => {
                    failure = Some(e);
                    // The rest of this cycle would fail the same way and
                    // hold up the other devices on the link.
                    break;
                }
            }
            r += 1;
        }
        // What was read before a failure is still news.
        events.readings(&d.id, readings).await;
        let now = Instant::now();
        match failure {
            None => {
                d.failures = 0;
                d.retry.reset();
                if d.reported != Reported::Online {
                    if d.reported == Reported::Offline {
                        tracing::info!(connection = %connection, device = %d.id, "device answers again");
                    }
                    d.reported = Reported::Online;
                    events.status(&d.id, DeviceStatus::Online).await;
                }
                d.next_due = (due + d.poll).max(now);
            }
            Some(e) => {
                d.failures += 1;
                tracing::debug!(connection = %connection, device = %d.id, error = %e, failures = d.failures, "poll failed");
                if d.failures >= d.offline_after {
                    if d.reported != Reported::Offline {
                        let reason = format!(
                            "unit {} on {connection}: {e} ({} polls in a row)",
                            d.unit, d.failures
                        );
                        tracing::warn!(connection = %connection, device = %d.id, error = %e, "device offline");
                        d.reported = Reported::Offline;
                        events.status(&d.id, DeviceStatus::Offline { reason }).await;
                    }
                    d.next_due = now + d.retry.next_delay();
                } else {
                    d.next_due = (due + d.poll).max(now);
                }
            }
        }
    }

    async fn command(&mut self, command: Command) {
        let Command {
            device,
            point,
            action,
            reply,
        } = command;
        let Some(i) = self.devices.iter().position(|d| d.id == device) else {
            let _ = reply.send(Err(AdapterError::NotHere(format!(
                "{device} is not on this connection"
            ))));
            return;
        };
        let Some(p) = self.devices[i].points.iter().position(|p| p.id == point) else {
            let _ = reply.send(Err(AdapterError::NotHere(format!(
                "{device} has no Modbus point {point}"
            ))));
            return;
        };
        let result = match action {
            Action::Read => self.read_point(i, p).await,
            Action::Write(value) => self.write_point(i, p, value).await,
        };
        if let Err(e) = &result {
            tracing::warn!(connection = %self.connection, device = %device, point = %point, error = %e, "command failed");
        }
        let _ = reply.send(result);
    }

    /// Reads one point now and publishes it; the normalized value.
    async fn read_point(&mut self, i: usize, p: usize) -> Result<Value, AdapterError> {
        let Lane {
            connection,
            link,
            devices,
            events,
            stats,
        } = self;
        let d = &mut devices[i];
        let read = Read {
            table: d.points[p].at.table,
            address: d.points[p].at.address,
            count: d.points[p].codec.width.max(1),
            points: vec![p],
        };
        let started = Instant::now();
        let outcome = link.call(d.unit, request(&read)).await;
        stats.count(&outcome, started);
        let response = outcome.map_err(|e| e.failed(format_args!("reading {}", d.points[p].id)))?;
        let mut readings = Vec::new();
        let bad = deliver(connection, d, &read, &response, &mut readings);
        stats.bad_values(&d.id, bad);
        events.readings(&d.id, readings).await;
        let point = &d.points[p];
        match (&point.bad, &point.last) {
            (None, Some(v)) => Ok(normalized(&point.spec, v.clone())),
            // The device answered with a value that cannot be used.
            (Some(why), _) => Err(AdapterError::Unavailable(why.clone())),
            (None, None) => Err(AdapterError::Unavailable("no value".into())),
        }
    }

    /// Checks, encodes and writes a value, reads it back, publishes it.
    /// Core's router has checked its kind and the point's `min`/`max`.
    async fn write_point(
        &mut self,
        i: usize,
        p: usize,
        value: Value,
    ) -> Result<Value, AdapterError> {
        let d = &self.devices[i];
        let unit = d.unit;
        let point = &d.points[p];
        if !point.spec.settings.writable {
            return Err(AdapterError::Unsupported(format!(
                "{}.{} is read-only",
                d.id, point.id
            )));
        }
        let address = point.at.address;
        let multiple = point.config.write_multiple();
        let request = match (point.at.table, point.codec.data_type) {
            (Table::Coil, _) => {
                let Value::Bool(on) = value else {
                    return Err(AdapterError::Refused(format!("{value} is not on/off")));
                };
                if multiple {
                    Request::WriteMultipleCoils(address, Cow::Owned(vec![on]))
                } else {
                    Request::WriteSingleCoil(address, on)
                }
            }
            (Table::Holding, DataType::Bool) => {
                let Value::Bool(on) = value else {
                    return Err(AdapterError::Refused(format!("{value} is not on/off")));
                };
                let bit = point.codec.bit.unwrap_or(0);
                // The register's other bits are kept: read, change, write.
                let started = Instant::now();
                let outcome = self
                    .link
                    .call(unit, Request::ReadHoldingRegisters(address, 1))
                    .await;
                self.stats.count(&outcome, started);
                let current = match outcome {
                    Ok(Response::ReadHoldingRegisters(w)) if !w.is_empty() => w[0],
                    Ok(_) => {
                        return Err(AdapterError::Unavailable(
                            "short answer reading the register".into(),
                        ));
                    }
                    Err(e) => return Err(e.failed("reading the register before the write")),
                };
                let word = set_bit(current, bit, on);
                if multiple {
                    Request::WriteMultipleRegisters(address, Cow::Owned(vec![word]))
                } else {
                    Request::WriteSingleRegister(address, word)
                }
            }
            (Table::Holding, _) => {
                let s = &point.spec.settings;
                let raw = unscale(&value, s.scale, s.offset);
                let words = point
                    .codec
                    .encode(&raw)
                    .map_err(|e| AdapterError::Refused(e.to_string()))?;
                match words.as_slice() {
                    [w] if !multiple => Request::WriteSingleRegister(address, *w),
                    _ => Request::WriteMultipleRegisters(address, Cow::Owned(words)),
                }
            }
            (table, _) => {
                return Err(AdapterError::Unsupported(format!(
                    "{} cannot be written (Modbus writes only coils and holding registers)",
                    table.describe()
                )));
            }
        };
        tracing::info!(connection = %self.connection, device = %d.id, point = %point.id, value = %value, "modbus write");
        let started = Instant::now();
        let outcome = self.link.call(unit, request).await;
        self.stats.count(&outcome, started);
        outcome.map_err(|e| e.failed("write refused"))?;
        // Read back: the device has the last word on what it holds.
        let now = self.read_point(i, p).await?;
        if !same(&value, &now, &self.devices[i].points[p]) {
            return Err(AdapterError::Refused(format!(
                "wrote {value}, but the device reads back {now}"
            )));
        }
        Ok(now)
    }
}

/// True when the value read back is the value written (within what the
/// encoding can represent).
fn same(written: &Value, read: &Value, p: &Point) -> bool {
    match (written, read) {
        (Value::Text(a), Value::Text(b)) => a.trim().eq_ignore_ascii_case(b),
        (a, b) => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => {
                let step = p.spec.settings.scale.map_or(0.0, f64::abs) / 2.0;
                let precision = if p.codec.data_type == DataType::F32 {
                    x.abs() * 1e-6
                } else {
                    0.0
                };
                (x - y).abs() <= step.max(precision).max(1e-9)
            }
            _ => a == b,
        },
    }
}

fn normalized(spec: &PointSpec, raw: Value) -> Value {
    let reading = Reading {
        point: spec.id.clone(),
        value: raw.clone(),
        unit: None,
        quality: Quality::Good,
    };
    normalize(spec, reading).map_or(raw, |r| r.value)
}

/// The request that performs a read.
pub(crate) fn request(read: &Read) -> Request<'static> {
    match read.table {
        Table::Coil => Request::ReadCoils(read.address, read.count),
        Table::Discrete => Request::ReadDiscreteInputs(read.address, read.count),
        Table::Input => Request::ReadInputRegisters(read.address, read.count),
        Table::Holding => Request::ReadHoldingRegisters(read.address, read.count),
    }
}

/// Decodes a read's answer into its points' samples, added to `readings`;
/// how many could not be decoded.
fn deliver(
    connection: &ConnectionId,
    d: &mut Device,
    read: &Read,
    response: &Response,
    readings: &mut Vec<Sample>,
) -> u64 {
    let mut bad = 0;
    for &pi in &read.points {
        let Some(p) = d.points.get_mut(pi) else {
            continue;
        };
        let offset = read.offset(p.at);
        let width = usize::from(p.codec.width.max(1));
        let decoded = match response {
            Response::ReadCoils(bits) | Response::ReadDiscreteInputs(bits) => bits
                .get(offset)
                .map(|b| Value::Bool(*b))
                .ok_or_else(|| format!("short answer: {} bits for bit {offset}", bits.len())),
            Response::ReadHoldingRegisters(words) | Response::ReadInputRegisters(words) => {
                match words.get(offset..offset + width) {
                    Some(w) => p.codec.decode(w).map_err(|e| e.to_string()),
                    None => Err(format!(
                        "short answer: {} registers, the point needs {}..{}",
                        words.len(),
                        offset,
                        offset + width
                    )),
                }
            }
            other => Err(format!("unexpected answer {other:?}")),
        };
        match decoded {
            Ok(v) => {
                if p.bad.take().is_some() {
                    tracing::info!(connection = %connection, device = %d.id, point = %p.id, "point reads again");
                }
                p.last = Some(v.clone());
                readings.push(sample(&p.id, v, Quality::Good));
            }
            Err(reason) => {
                bad += 1;
                mark_bad(connection, &d.id, p, reason, readings);
            }
        }
    }
    bad
}

/// Marks a point bad: logged and reported (added to `readings`) once per
/// cause, with its last known value (a point never read has none to report).
fn mark_bad(
    connection: &ConnectionId,
    device: &DeviceId,
    p: &mut Point,
    reason: String,
    readings: &mut Vec<Sample>,
) {
    if p.bad.as_ref() == Some(&reason) {
        return;
    }
    tracing::warn!(connection = %connection, device = %device, point = %p.id, error = %reason, "point bad");
    p.bad = Some(reason.clone());
    if let Some(last) = &p.last {
        readings.push(sample(&p.id, last.clone(), Quality::Bad { reason }));
    }
}
