//! What flows on the bus: readings and device status changes.
//!
//! What a device was read at once travels as one event: an adapter reports
//! everything one poll, frame or message read together, and core forwards
//! one update per device, so that a sink sees "this device changed" rather
//! than a stream of unrelated points.

use std::fmt;
use std::time::SystemTime;

use crate::alarm::Alert;
use crate::id::DeviceId;
use crate::value::Sample;

/// One thing that happened to one device.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceEvent {
    /// The device it happened to.
    pub device: DeviceId,
    /// When it happened. For readings from an adapter: when they were
    /// reported; for an update core makes on its own (a heartbeat, readings
    /// released after `min_interval`): when it made it. Each sample keeps
    /// its own time.
    pub at: SystemTime,
    /// What happened.
    pub kind: EventKind,
}

/// The two kinds of device event.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// Readings of the device taken together. From an adapter: everything
    /// one poll, frame or message read. On the bus: what normalization let
    /// through for one device update (a heartbeat repeats every point's
    /// latest sample).
    Readings(Vec<Sample>),
    /// The device's reachability changed.
    Status(DeviceStatus),
    /// An alarm was raised or cleared (only core's engine makes these;
    /// from an adapter it is ignored). `DeviceEvent::device` is the first
    /// of [`Alert::devices`]; never coalesced on the bus.
    Alert(Alert),
}

/// Whether a device can be trusted to report its current state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceStatus {
    /// Answering and reporting fresh readings.
    Online,
    /// Nothing fresh for longer than its `stale_after`; values may be old.
    Stale,
    /// Not reachable; the reason says why, in words a person can act on.
    Offline {
        /// E.g. "connection refused by 192.168.1.10:502" or "scheduled outage".
        reason: String,
    },
}

impl fmt::Display for DeviceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceStatus::Online => f.write_str("online"),
            DeviceStatus::Stale => f.write_str("stale"),
            DeviceStatus::Offline { reason } => write!(f, "offline: {reason}"),
        }
    }
}
