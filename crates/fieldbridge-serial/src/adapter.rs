//! The serial transport loop: open the port (and keep trying while it is
//! missing or busy), cut frames, hand each device its fields, send poll
//! requests and writes, and report the truth about each device meanwhile.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fieldbridge_core::adapter::{Adapter, AdapterContext, AdapterFuture, sample};
use fieldbridge_core::backoff::Backoff;
use fieldbridge_core::device::AdapterDevice;
use fieldbridge_core::telemetry::{BadInput, InternalEvent, Reconnect, RequestDone, Telemetry};
use fieldbridge_core::{
    Action, AdapterError, Command, ConnectionId, DeviceId, DeviceStatus, PointId, Quality, Sample,
    Value,
};
use fieldbridge_serialport::{LineSettings, OpenError, SerialStream};
use futures::StreamExt;
use regex::Regex;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;
use tokio_util::codec::FramedRead;

use crate::config::{SerialConnection, SerialDevice, SerialPoint};
use crate::format::{Parser, convert};
use crate::framing::FrameDecoder;

/// First reopen delay; doubles up to [`BACKOFF_CAP`].
const BACKOFF_START: Duration = Duration::from_millis(250);
/// Longest wait between attempts to open the port.
const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// Default time a polled device has to answer.
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
/// Default time a write has to be acknowledged.
const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(2);

/// The adapter of one `serial` connection.
#[derive(Debug)]
pub struct SerialAdapter {
    id: ConnectionId,
    settings: SerialConnection,
    devices: Vec<AdapterDevice<SerialDevice, SerialPoint>>,
}

impl SerialAdapter {
    /// An adapter for connection `id` and its devices.
    pub fn new(
        id: ConnectionId,
        settings: SerialConnection,
        devices: Vec<AdapterDevice<SerialDevice, SerialPoint>>,
    ) -> Self {
        Self {
            id,
            settings,
            devices,
        }
    }
}

impl Adapter for SerialAdapter {
    fn name(&self) -> String {
        format!("serial {}", self.id)
    }

    fn devices(&self) -> Vec<DeviceId> {
        self.devices.iter().map(|d| d.spec.id.clone()).collect()
    }

    fn run(self: Box<Self>, ctx: AdapterContext) -> AdapterFuture {
        Box::pin(run(*self, ctx))
    }
}

struct Device {
    id: DeviceId,
    parser: Parser,
    prefix: Option<String>,
    points: BTreeMap<PointId, SerialPoint>,
    last: BTreeMap<PointId, Value>,
    poll: Duration,
    request: Option<(Vec<u8>, Duration)>,
    next_request: Instant,
    awaiting: Option<Instant>,
    write: Option<(String, Option<Regex>, Duration)>,
}

struct PendingWrite {
    device: usize,
    ack: Regex,
    deadline: Instant,
    value: Value,
    reply: tokio::sync::oneshot::Sender<Result<Value, AdapterError>>,
}

/// Reports what went wrong on this connection as internal events: each
/// distinct problem of a device logged once, all of them counted.
struct Problems {
    connection: ConnectionId,
    telemetry: Arc<Telemetry>,
}

impl Problems {
    fn report(
        &self,
        device: &DeviceId,
        point: Option<&str>,
        cause: &'static str,
        what: &'static str,
        detail: &dyn std::fmt::Display,
    ) {
        BadInput {
            connection: &self.connection,
            device: Some(device),
            point,
            cause,
            what,
            error: detail,
        }
        .emit(&self.telemetry);
    }

    /// A frame that belongs to no device yet (not text, too long).
    fn bad_frame(&self, detail: &dyn std::fmt::Display) {
        BadInput {
            connection: &self.connection,
            device: None,
            point: None,
            cause: "bad_frame",
            what: "bad frame; skipped",
            error: detail,
        }
        .emit(&self.telemetry);
    }

    /// A poll request answered (`elapsed` after it was sent) or not.
    fn request(&self, outcome: &'static str, elapsed: Duration) {
        RequestDone {
            connection: &self.connection,
            outcome,
            elapsed: Some(elapsed),
        }
        .emit(&self.telemetry);
    }

    /// The port was lost or could not be opened.
    fn reconnect(&self) {
        Reconnect {
            connection: &self.connection,
        }
        .emit(&self.telemetry);
    }
}

fn build(devices: Vec<AdapterDevice<SerialDevice, SerialPoint>>) -> Vec<Device> {
    let now = Instant::now();
    devices
        .into_iter()
        .filter_map(|d| {
            // The config loader has checked all of this; a failure here is a bug
            // worth a loud log, not a crash.
            let parser = match Parser::new(&d.config) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(device = %d.spec.id, error = %e, "device skipped");
                    return None;
                }
            };
            let write = d.config.write.as_ref().map(|w| {
                let ack = w.ack.as_deref().and_then(|a| Regex::new(a).ok());
                (
                    w.template.clone(),
                    ack,
                    w.timeout.unwrap_or(DEFAULT_ACK_TIMEOUT),
                )
            });
            Some(Device {
                id: d.spec.id.clone(),
                parser,
                prefix: d.config.prefix.clone(),
                poll: d.spec.settings.poll.unwrap_or(Duration::from_secs(5)),
                request: d.config.request.as_ref().map(|r| {
                    (
                        r.send.as_bytes().to_vec(),
                        r.timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT),
                    )
                }),
                next_request: now,
                awaiting: None,
                write,
                points: d.points,
                last: BTreeMap::new(),
            })
        })
        .collect()
}

fn open(s: &SerialConnection) -> Result<SerialStream, OpenError> {
    let line = LineSettings {
        baud: s.baud,
        data_bits: s.data_bits,
        parity: s.parity,
        stop_bits: s.stop_bits,
        flow_control: s.flow_control,
    };
    fieldbridge_serialport::open(&s.port, &line)
}

async fn run(adapter: SerialAdapter, mut ctx: AdapterContext) {
    let SerialAdapter {
        id,
        settings,
        devices,
    } = adapter;
    let mut devices = build(devices);
    let framing = match settings.framing.framing() {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(connection = %id, error = %e, "serial connection not started");
            return;
        }
    };
    let port_name = settings.port.display().to_string();
    let problems = Problems {
        connection: id.clone(),
        telemetry: Arc::clone(ctx.events.telemetry()),
    };
    let mut backoff = Backoff::new(BACKOFF_START, BACKOFF_CAP);
    let mut last_failure: Option<String> = None;
    let mut commands_open = true;

    'reopen: loop {
        let port = match open(&settings) {
            Ok(p) => p,
            Err(e) => {
                // `e` names the port: "cannot open /dev/ttyUSB0: …".
                let reason = format!("cannot open {e}");
                problems.reconnect();
                if last_failure.as_deref() != Some(&reason) {
                    tracing::warn!(connection = %id, error = %reason, "serial port unavailable; retrying");
                    for d in &devices {
                        ctx.events
                            .status(
                                &d.id,
                                DeviceStatus::Offline {
                                    reason: reason.clone(),
                                },
                            )
                            .await;
                    }
                    last_failure = Some(reason);
                }
                let delay = backoff.next_delay();
                tokio::select! {
                    _ = ctx.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(delay) => continue 'reopen,
                }
            }
        };
        tracing::info!(connection = %id, port = %port_name, "serial port open");
        backoff.reset();
        last_failure = None;
        let (reader, mut writer) = tokio::io::split(port);
        let mut frames = FramedRead::new(
            reader,
            FrameDecoder::new(framing.clone(), settings.max_frame),
        );
        let mut pending: Option<PendingWrite> = None;
        let now = Instant::now();
        for d in &mut devices {
            d.next_request = now;
            d.awaiting = None;
        }

        loop {
            let next_timer = devices
                .iter()
                .filter(|d| d.request.is_some())
                .map(|d| d.awaiting.unwrap_or(d.next_request).min(d.next_request))
                .chain(pending.as_ref().map(|p| p.deadline))
                .min()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                _ = ctx.shutdown.cancelled() => return,
                frame = frames.next() => match frame {
                    Some(Ok(Ok(text))) => {
                        if let Some(p) = &pending
                            && p.ack.is_match(&text)
                            && let Some(p) = pending.take()
                        {
                            tracing::debug!(device = %devices[p.device].id, "write acknowledged");
                            let _ = p.reply.send(Ok(p.value));
                        }
                        dispatch(&text, &mut devices, &ctx, &problems).await;
                    }
                    Some(Ok(Err(e))) => problems.bad_frame(&e),
                    Some(Err(e)) => {
                        problems.reconnect();
                        lost(&id, &port_name, &e.to_string(), &devices, &ctx, &mut pending).await;
                        continue 'reopen;
                    }
                    None => {
                        problems.reconnect();
                        lost(&id, &port_name, "the port closed", &devices, &ctx, &mut pending).await;
                        continue 'reopen;
                    }
                },
                received = ctx.commands.recv(), if commands_open => match received {
                    None => commands_open = false,
                    Some(c) => {
                        if let Err(e) = handle_command(c, &mut devices, &mut writer, &mut pending).await {
                            problems.reconnect();
                            lost(&id, &port_name, &e.to_string(), &devices, &ctx, &mut pending).await;
                            continue 'reopen;
                        }
                    }
                },
                _ = tokio::time::sleep_until(next_timer) => {
                    let now = Instant::now();
                    if let Some(p) = &pending
                        && p.deadline <= now
                        && let Some(p) = pending.take()
                    {
                        let _ = p.reply.send(Err(AdapterError::NoAnswer("the device did not acknowledge the write in time".into())));
                    }
                    for d in devices.iter_mut().filter(|d| d.request.is_some()) {
                        if let Some(deadline) = d.awaiting
                            && deadline <= now
                        {
                            d.awaiting = None;
                            let reason = "no answer to the poll request".to_owned();
                            let at = SystemTime::now();
                            let unanswered = d
                                .last
                                .iter()
                                .map(|(point, value)| {
                                    sample_at(point, value.clone(), Quality::Bad { reason: reason.clone() }, at)
                                })
                                .collect();
                            // Counted before it is reported: whoever sees the
                            // bad readings sees the counts too.
                            if let Some((_, timeout)) = &d.request {
                                problems.request("timeout", *timeout);
                            }
                            problems.report(&d.id, None, "no_answer", "no answer to the poll request; skipped", &"timeout");
                            ctx.events.readings(&d.id, unanswered).await;
                        }
                        if d.next_request <= now
                            && let Some(deadline) = d.awaiting
                        {
                            // Still waiting for the last answer (a poll
                            // shorter than the timeout): one request at a
                            // time, the next once this one is answered or
                            // timed out.
                            d.next_request = deadline;
                        } else if d.next_request <= now {
                            d.next_request = now + d.poll;
                            if let Some((send, timeout)) = &d.request {
                                if let Err(e) = writer.write_all(send).await {
                                    problems.reconnect();
                                    lost(&id, &port_name, &e.to_string(), &devices, &ctx, &mut pending).await;
                                    continue 'reopen;
                                }
                                d.awaiting = Some(now + *timeout);
                            }
                        }
                    }
                }
            }
        }
    }
}

async fn lost(
    id: &ConnectionId,
    port: &str,
    why: &str,
    devices: &[Device],
    ctx: &AdapterContext,
    pending: &mut Option<PendingWrite>,
) {
    let reason = format!("serial port {port} lost: {why}");
    tracing::warn!(connection = %id, error = %reason, "reopening");
    if let Some(p) = pending.take() {
        let _ = p.reply.send(Err(AdapterError::Unavailable(reason.clone())));
    }
    for d in devices {
        ctx.events
            .status(
                &d.id,
                DeviceStatus::Offline {
                    reason: reason.clone(),
                },
            )
            .await;
    }
}

async fn dispatch(text: &str, devices: &mut [Device], ctx: &AdapterContext, problems: &Problems) {
    let at = SystemTime::now();
    for d in devices.iter_mut() {
        if d.prefix.as_deref().is_some_and(|p| !text.starts_with(p)) {
            continue;
        }
        let record = match d.parser.parse(text) {
            Ok(r) => r,
            Err(e) => {
                // One label for all causes (the log names `e.cause()`).
                problems.report(&d.id, None, "unreadable_frame", e.cause(), &e);
                continue;
            }
        };
        // One frame, one event: every value of it, read at the same time.
        let mut samples = Vec::new();
        let mut any = false;
        for (point_id, point) in &d.points {
            let Some(raw) = record.field(point) else {
                continue;
            };
            any = true;
            match convert(raw, point.kind) {
                Ok(value) => {
                    d.last.insert(point_id.clone(), value.clone());
                    samples.push(sample_at(point_id, value, Quality::Good, at));
                }
                Err(e) => {
                    let reason = e.to_string();
                    problems.report(
                        &d.id,
                        Some(point_id.as_str()),
                        "bad_value",
                        "bad value; skipped",
                        &reason,
                    );
                    if let Some(last) = d.last.get(point_id) {
                        let bad = Quality::Bad { reason };
                        samples.push(sample_at(point_id, last.clone(), bad, at));
                    }
                }
            }
        }
        if any {
            // An answer to the poll request: how long it took (counted
            // before the readings are reported).
            if let (Some(deadline), Some((_, timeout))) = (d.awaiting.take(), &d.request) {
                let sent = deadline - *timeout;
                problems.request("ok", Instant::now().saturating_duration_since(sent));
            }
        }
        ctx.events.readings(&d.id, samples).await;
    }
}

/// A sample of `point` received `at` (when its frame arrived).
fn sample_at(point: &PointId, value: Value, quality: Quality, at: SystemTime) -> Sample {
    Sample {
        at,
        ..sample(point, value, quality)
    }
}

/// Renders a value for a device's command line: booleans as 1/0, which is
/// what most firmware expects.
fn render(value: &Value) -> String {
    match value {
        Value::Bool(b) => u8::from(*b).to_string(),
        other => other.to_string(),
    }
}

async fn handle_command<W: tokio::io::AsyncWrite + Unpin>(
    c: Command,
    devices: &mut [Device],
    writer: &mut W,
    pending: &mut Option<PendingWrite>,
) -> std::io::Result<()> {
    let Command {
        device,
        point,
        action,
        reply,
    } = c;
    let Some(index) = devices.iter().position(|d| d.id == device) else {
        let _ = reply.send(Err(AdapterError::NotHere(format!(
            "{device} is not on this serial connection"
        ))));
        return Ok(());
    };
    let d = &devices[index];
    match action {
        Action::Read => {
            let _ = reply.send(d.last.get(&point).cloned().ok_or_else(|| {
                AdapterError::Unavailable(format!(
                    "no value of {point} received yet; the device reports on its own"
                ))
            }));
        }
        Action::Write(value) => {
            let Some((template, ack, timeout)) = &d.write else {
                let _ = reply.send(Err(AdapterError::Unsupported(format!(
                    "{device} has no `write` template"
                ))));
                return Ok(());
            };
            if pending.is_some() {
                let _ = reply.send(Err(AdapterError::Unavailable(
                    "another write is waiting for its acknowledgement".into(),
                )));
                return Ok(());
            }
            let line = template
                .replace("{point}", point.as_str())
                .replace("{value}", &render(&value));
            tracing::info!(device = %device, point = %point, value = %value, "serial write");
            writer.write_all(line.as_bytes()).await?;
            writer.flush().await?;
            match ack {
                Some(ack) => {
                    *pending = Some(PendingWrite {
                        device: index,
                        ack: ack.clone(),
                        deadline: Instant::now() + *timeout,
                        value,
                        reply,
                    });
                }
                None => {
                    let _ = reply.send(Ok(value));
                }
            }
        }
    }
    Ok(())
}
