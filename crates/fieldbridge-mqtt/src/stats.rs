//! The adapter's counters: the router counts messages, readings and
//! payload failures, the loop counts connections; tests, benches and
//! (later) metrics read them.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::payload::Cause;

/// Counters of one adapter, shared with whoever wants to look (tests,
/// benches, future metrics).
#[derive(Debug, Default)]
pub struct MqttStats {
    inner: Mutex<StatsInner>,
}

#[derive(Debug, Default, Clone)]
pub(crate) struct StatsInner {
    pub(crate) messages: u64,
    pub(crate) readings: u64,
    pub(crate) unmatched: u64,
    pub(crate) connects: u64,
    pub(crate) subacks: u64,
    pub(crate) connection_errors: u64,
    pub(crate) failures: BTreeMap<(String, Cause), u64>,
    pub(crate) refused_devices: u64,
}

impl MqttStats {
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut StatsInner) -> R) -> R {
        f(&mut self.inner.lock().unwrap_or_else(|p| p.into_inner()))
    }
    /// Messages received from the broker.
    pub fn messages(&self) -> u64 {
        self.with(|s| s.messages)
    }
    /// Good readings extracted.
    pub fn readings(&self) -> u64 {
        self.with(|s| s.readings)
    }
    /// Messages that matched no device.
    pub fn unmatched(&self) -> u64 {
        self.with(|s| s.unmatched)
    }
    /// ConnAcks received (first connection and every reconnection).
    pub fn connects(&self) -> u64 {
        self.with(|s| s.connects)
    }
    /// SUBACKs received: after the n-th, the subscriptions asked for on
    /// the n-th ConnAck are in place.
    pub fn subacks(&self) -> u64 {
        self.with(|s| s.subacks)
    }
    /// Connection errors (each followed by a backoff).
    pub fn connection_errors(&self) -> u64 {
        self.with(|s| s.connection_errors)
    }
    /// Payload failures of `device` for `cause`.
    pub fn failures(&self, device: &str, cause: Cause) -> u64 {
        self.with(|s| {
            s.failures
                .get(&(device.to_owned(), cause))
                .copied()
                .unwrap_or(0)
        })
    }
    /// Ids a template rule did not create (invalid, taken, or over the cap).
    pub fn refused_devices(&self) -> u64 {
        self.with(|s| s.refused_devices)
    }
}
