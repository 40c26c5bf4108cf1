//! The simulator adapter: synthetic devices for demos, tests and benchmarks.
//!
//! Waves are anchored to the Unix epoch, not to the gateway's start, so
//! anyone holding a reading's timestamp can compute the value it must have
//! (`sine` at `t` is `low + (high - low) * (0.5 + 0.5 * sin(2π t / period))`).
//! Outages are anchored to the gateway's start, so a demo starts online.

use std::collections::BTreeMap;
use std::f64::consts::TAU;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use schemars::JsonSchema;
use serde::Deserialize;
use tokio::time::Instant;

use crate::adapter::{Adapter, AdapterContext, AdapterFuture, sample};
use crate::command::{Action, AdapterError, Command};
use crate::device::{AdapterDevice, PointSource};
use crate::duration;
use crate::event::DeviceStatus;
use crate::id::{ConnectionId, DeviceId, PointId};
use crate::value::{Quality, Sample, Value, ValueKind};

pub mod kind;

pub use self::kind::Simulator;

/// Poll period of a simulated device without `poll`.
pub const DEFAULT_POLL: Duration = Duration::from_secs(1);
/// Wave period of a simulated device without `period`.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(60);

/// `connections.<id>.simulator`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SimulatorConnection {
    /// Seed for `random_walk` points, so that runs can be repeated.
    #[serde(default)]
    pub seed: Option<u64>,
}

/// A simulated device's own keys under `devices.<id>`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SimulatorDevice {
    /// One full cycle of every wave of the device (default 60 s).
    #[serde(default, deserialize_with = "duration::optional")]
    #[schemars(schema_with = "duration::optional_schema")]
    pub period: Option<Duration>,
    /// Scheduled outages, so that presence changes can be watched.
    #[serde(default)]
    pub outage: Option<Outage>,
}

/// The device is online for `every - duration`, then offline for `duration`,
/// repeating from the gateway's start.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Outage {
    /// Length of one online + offline cycle.
    #[serde(deserialize_with = "duration::required")]
    #[schemars(schema_with = "duration::schema")]
    pub every: Duration,
    /// How long the device is offline at the end of each cycle.
    #[serde(deserialize_with = "duration::required")]
    #[schemars(schema_with = "duration::schema")]
    pub duration: Duration,
}

/// The shape a simulated point follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// A sine wave over `range`.
    Sine,
    /// A sawtooth from low to high over each period.
    Ramp,
    /// A bounded random walk within `range`.
    RandomWalk,
    /// On for the first half of each period, off for the second.
    Toggle,
    /// Always `value`.
    Constant,
}

/// A simulated point's own keys under `devices.<id>.points.<id>`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SimulatorPoint {
    /// The shape the point follows.
    pub signal: Signal,
    /// `[low, high]` of `sine`, `ramp` and `random_walk` (default `[0, 100]`).
    #[serde(default)]
    pub range: Option<[f64; 2]>,
    /// The value of a `constant` point (number, bool or text).
    #[serde(default)]
    pub value: Option<Value>,
}

impl PointSource for SimulatorPoint {
    fn kind(&self) -> ValueKind {
        match self.signal {
            Signal::Sine | Signal::Ramp | Signal::RandomWalk => ValueKind::Float,
            Signal::Toggle => ValueKind::Bool,
            Signal::Constant => self.value.as_ref().map_or(ValueKind::Float, Value::kind),
        }
    }
}

impl SimulatorPoint {
    /// Why this point's settings cannot work, if they cannot.
    pub fn check(&self) -> Result<(), String> {
        if let Some([low, high]) = self.range {
            if !(low.is_finite() && high.is_finite() && low < high) {
                return Err(format!(
                    "range [{low}, {high}] must be [low, high] with low < high"
                ));
            }
            if matches!(self.signal, Signal::Toggle | Signal::Constant) {
                return Err("range applies only to sine, ramp and random_walk".into());
            }
        }
        match (self.signal, &self.value) {
            (Signal::Constant, None) => Err("a constant point needs `value`".into()),
            (Signal::Constant, Some(_)) | (_, None) => Ok(()),
            (_, Some(_)) => Err("value applies only to constant points".into()),
        }
    }

    fn bounds(&self) -> (f64, f64) {
        let [low, high] = self.range.unwrap_or([0.0, 100.0]);
        (low, high)
    }
}

/// The simulator adapter: one per `simulator` connection.
#[derive(Debug)]
pub struct SimulatorAdapter {
    id: ConnectionId,
    settings: SimulatorConnection,
    devices: Vec<AdapterDevice<SimulatorDevice, SimulatorPoint>>,
}

impl SimulatorAdapter {
    /// An adapter simulating `devices` for connection `id`.
    pub fn new(
        id: ConnectionId,
        settings: SimulatorConnection,
        devices: Vec<AdapterDevice<SimulatorDevice, SimulatorPoint>>,
    ) -> Self {
        Self {
            id,
            settings,
            devices,
        }
    }
}

impl Adapter for SimulatorAdapter {
    fn name(&self) -> String {
        format!("simulator {}", self.id)
    }

    fn devices(&self) -> Vec<DeviceId> {
        self.devices.iter().map(|d| d.spec.id.clone()).collect()
    }

    fn run(self: Box<Self>, ctx: AdapterContext) -> AdapterFuture {
        Box::pin(run(*self, ctx))
    }
}

struct SimPoint {
    config: SimulatorPoint,
    /// A written value, reported from then on instead of the signal.
    written: Option<Value>,
    walk: f64,
    rng: SmallRng,
}

struct SimDevice {
    id: DeviceId,
    poll: Duration,
    period: Duration,
    outage: Option<Outage>,
    in_outage: bool,
    next_due: Instant,
    points: BTreeMap<PointId, SimPoint>,
}

async fn run(adapter: SimulatorAdapter, mut ctx: AdapterContext) {
    let start = Instant::now();
    let seed = adapter.settings.seed.unwrap_or_else(rand::random);
    let mut devices: Vec<SimDevice> = adapter
        .devices
        .into_iter()
        .map(|d| {
            let points = d
                .points
                .into_iter()
                .map(|(id, config)| {
                    let (low, high) = config.bounds();
                    let rng = SmallRng::seed_from_u64(
                        seed ^ fnv1a(d.spec.id.as_str()) ^ fnv1a(id.as_str()).rotate_left(17),
                    );
                    let p = SimPoint {
                        config,
                        written: None,
                        walk: (low + high) / 2.0,
                        rng,
                    };
                    (id, p)
                })
                .collect();
            SimDevice {
                id: d.spec.id.clone(),
                poll: d.spec.settings.poll.unwrap_or(DEFAULT_POLL),
                period: d.config.period.unwrap_or(DEFAULT_PERIOD),
                outage: d.config.outage.clone(),
                in_outage: false,
                next_due: start,
                points,
            }
        })
        .collect();
    tracing::info!(connection = %adapter.id, devices = devices.len(), "simulator started");
    let mut commands_open = true;
    loop {
        let next = devices
            .iter()
            .map(|d| d.next_due)
            .min()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            command = ctx.commands.recv(), if commands_open => match command {
                Some(c) => handle_command(&mut devices, c, &ctx).await,
                None => commands_open = false,
            },
            _ = tokio::time::sleep_until(next) => {
                let now = Instant::now();
                for d in devices.iter_mut().filter(|d| d.next_due <= now) {
                    poll_device(d, now.duration_since(start), &ctx).await;
                    d.next_due += d.poll;
                    if d.next_due <= now {
                        // Fell behind (a suspended machine): skip, do not burst.
                        d.next_due = now + d.poll;
                    }
                }
            }
        }
    }
    tracing::info!(connection = %adapter.id, "simulator stopped");
}

async fn poll_device(d: &mut SimDevice, since_start: Duration, ctx: &AdapterContext) {
    let in_outage = d.outage.as_ref().is_some_and(|o| {
        let every = o.every.as_secs_f64();
        every > 0.0 && since_start.as_secs_f64() % every >= every - o.duration.as_secs_f64()
    });
    if in_outage != d.in_outage {
        d.in_outage = in_outage;
        if let (true, Some(o)) = (in_outage, &d.outage) {
            let reason = format!(
                "scheduled outage (simulated) for {}",
                duration::format(o.duration)
            );
            ctx.events
                .status(&d.id, DeviceStatus::Offline { reason })
                .await;
        }
    }
    if in_outage {
        return;
    }
    let at = SystemTime::now();
    let t = at
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let period = d.period.as_secs_f64();
    // One poll reads every point at once: one event, one time.
    let samples = d
        .points
        .iter_mut()
        .map(|(id, p)| good_sample(id, p.value_at(t, period), at))
        .collect();
    ctx.events.readings(&d.id, samples).await;
}

/// A good sample read at `at`: the time the wave's value is computed for.
fn good_sample(point: &PointId, value: Value, at: SystemTime) -> Sample {
    Sample {
        at,
        ..sample(point, value, Quality::Good)
    }
}

async fn handle_command(devices: &mut [SimDevice], command: Command, ctx: &AdapterContext) {
    let Command {
        device,
        point,
        action,
        reply,
    } = command;
    let Some(d) = devices.iter_mut().find(|d| d.id == device) else {
        let _ = reply.send(Err(AdapterError::NotHere(format!(
            "{device} is not simulated here"
        ))));
        return;
    };
    if d.in_outage {
        let _ = reply.send(Err(AdapterError::Unavailable(format!(
            "{device} is offline (scheduled outage)"
        ))));
        return;
    }
    let Some(p) = d.points.get_mut(&point) else {
        let _ = reply.send(Err(AdapterError::NotHere(format!(
            "{device} has no point {point}"
        ))));
        return;
    };
    let at = SystemTime::now();
    let value = match action {
        Action::Write(v) => {
            tracing::info!(device = %device, point = %point, value = %v, "simulated write");
            p.written = Some(v.clone());
            v
        }
        Action::Read => {
            let t = at
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64();
            p.value_at(t, d.period.as_secs_f64())
        }
    };
    // Published at once, so that subscribers see the effect of a write
    // without waiting for the next poll.
    ctx.events
        .readings(&device, vec![good_sample(&point, value.clone(), at)])
        .await;
    let _ = reply.send(Ok(value));
}

impl SimPoint {
    fn value_at(&mut self, t: f64, period: f64) -> Value {
        if let Some(v) = &self.written {
            return v.clone();
        }
        let (low, high) = self.config.bounds();
        let phase = if period > 0.0 {
            (t % period) / period
        } else {
            0.0
        };
        match self.config.signal {
            Signal::Sine => Value::Float(sine(low, high, t, period)),
            Signal::Ramp => Value::Float(low + (high - low) * phase),
            Signal::RandomWalk => {
                let step = (high - low) * 0.05 * self.rng.random_range(-1.0..=1.0);
                self.walk = (self.walk + step).clamp(low, high);
                Value::Float(self.walk)
            }
            Signal::Toggle => Value::Bool(phase < 0.5),
            Signal::Constant => self.config.value.clone().unwrap_or(Value::Float(0.0)),
        }
    }
}

/// The sine signal at Unix time `t` seconds: what tests compare against.
pub fn sine(low: f64, high: f64, t: f64, period: f64) -> f64 {
    let phase = if period > 0.0 {
        (t % period) / period
    } else {
        0.0
    };
    low + (high - low) * (0.5 + 0.5 * (TAU * phase).sin())
}

/// A stable hash, so that a seed gives the same walk on every platform.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests;
