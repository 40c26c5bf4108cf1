//! What flows on the bus: readings and device status changes.

use std::fmt;
use std::time::SystemTime;

use crate::id::DeviceId;
use crate::value::Reading;

/// One thing that happened to one device.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceEvent {
    /// The device it happened to.
    pub device: DeviceId,
    /// When it happened (for readings: when the value was read).
    pub at: SystemTime,
    /// What happened.
    pub kind: EventKind,
}

/// The two kinds of device event.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// A point has a (new) value.
    Reading(Reading),
    /// The device's reachability changed.
    Status(DeviceStatus),
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
