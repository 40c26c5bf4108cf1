//! The simulator adapter: synthetic devices for demos, tests and benchmarks.
//!
//! Waves are anchored to the Unix epoch, not to the gateway's start, so
//! anyone holding a reading's timestamp can compute the value it must have
//! (`sine` at `t` is `low + (high - low) * (0.5 + 0.5 * sin(2π t / period))`).
//! Outages are anchored to the gateway's start, so a demo starts online.

use std::collections::{BTreeMap, HashMap};
use std::f64::consts::TAU;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use tokio::time::Instant;

use crate::adapter::{Adapter, AdapterContext, AdapterFuture};
use crate::command::{Action, Command};
use crate::device::{AdapterDevice, PointSource};
use crate::duration;
use crate::event::DeviceStatus;
use crate::id::{ConnectionId, DeviceId, PointId};
use crate::value::{Value, ValueKind};

/// Poll period of a simulated device without `poll`.
pub const DEFAULT_POLL: Duration = Duration::from_secs(1);
/// Wave period of a simulated device without `period`.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(60);

/// `connections.<id>.simulator`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatorConnection {
    /// Seed for `random_walk` points, so that runs can be repeated.
    #[serde(default)]
    pub seed: Option<u64>,
}

/// A simulated device's own keys under `devices.<id>`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatorDevice {
    /// One full cycle of every wave of the device (default 60 s).
    #[serde(default, deserialize_with = "duration::optional")]
    pub period: Option<Duration>,
    /// Scheduled outages, so that presence changes can be watched.
    #[serde(default)]
    pub outage: Option<Outage>,
}

/// The device is online for `every - duration`, then offline for `duration`,
/// repeating from the gateway's start.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outage {
    /// Length of one online + offline cycle.
    #[serde(deserialize_with = "duration::required")]
    pub every: Duration,
    /// How long the device is offline at the end of each cycle.
    #[serde(deserialize_with = "duration::required")]
    pub duration: Duration,
}

/// The shape a simulated point follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
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
#[derive(Debug, Clone, Deserialize)]
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
