//! `simulator:` as a connection kind (see [`crate::kind`]).

use std::fmt::Write as _;
use std::time::Duration;

use super::{
    DEFAULT_POLL, Signal, SimulatorAdapter, SimulatorConnection, SimulatorDevice, SimulatorPoint,
};
use crate::adapter::Adapter;
use crate::device::AdapterDevice;
use crate::duration;
use crate::id::ConnectionId;
use crate::kind::{AdapterKind, BuildContext, Described};

/// `simulator:` synthetic devices.
#[derive(Debug)]
pub struct Simulator;

impl AdapterKind for Simulator {
    const NAME: &'static str = "simulator";
    const DEFAULT_POLL: Option<Duration> = Some(DEFAULT_POLL);
    type Connection = SimulatorConnection;
    type Device = SimulatorDevice;
    type Point = SimulatorPoint;

    fn check_point(point: &SimulatorPoint) -> Result<(), String> {
        point.check()
    }

    fn describe_connection(
        settings: &SimulatorConnection,
        _id: &ConnectionId,
        _ctx: &BuildContext,
    ) -> String {
        settings
            .seed
            .map(|s| format!(", seed {s}"))
            .unwrap_or_default()
    }

    fn describe_device(d: &AdapterDevice<SimulatorDevice, SimulatorPoint>) -> Described {
        let mut extra = String::new();
        if let Some(p) = d.config.period {
            let _ = write!(extra, ", period {}", duration::format(p));
        }
        if let Some(o) = &d.config.outage {
            let _ = write!(
                extra,
                ", outage {} every {}",
                duration::format(o.duration),
                duration::format(o.every)
            );
        }
        let points = d
            .points
            .iter()
            .map(|(id, sim)| {
                let mut line = format!(", {}", signal_name(sim.signal));
                if let Some([lo, hi]) = sim.range {
                    let _ = write!(line, " {lo}..{hi}");
                }
                if let Some(v) = &sim.value {
                    let _ = write!(line, " {v}");
                }
                (id.clone(), line)
            })
            .collect();
        (extra, points)
    }

    fn build(
        id: ConnectionId,
        settings: SimulatorConnection,
        devices: Vec<AdapterDevice<SimulatorDevice, SimulatorPoint>>,
        _ctx: &BuildContext,
    ) -> Box<dyn Adapter> {
        Box::new(SimulatorAdapter::new(id, settings, devices))
    }
}

/// A signal as written in `gateway.yaml`.
fn signal_name(signal: Signal) -> &'static str {
    match signal {
        Signal::Sine => "sine",
        Signal::Ramp => "ramp",
        Signal::RandomWalk => "random_walk",
        Signal::Toggle => "toggle",
        Signal::Constant => "constant",
    }
}
