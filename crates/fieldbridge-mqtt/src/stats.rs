//! The adapter's internal events (counted in core's telemetry) and a view
//! of its counters for tests and benches.

use std::sync::Arc;

use fieldbridge_core::telemetry::{
    BadInput, Connected, DeviceRefused, InternalEvent, MessageReceived, Reconnect, SubscribeAcked,
    Telemetry,
};
use fieldbridge_core::{ConnectionId, DeviceId, PointId};

use crate::payload::{Cause, PayloadError};

/// One connection's counters, read from (and counted into) the gateway's
/// [`Telemetry`]: cheap to clone, holds no counts of its own.
#[derive(Debug, Clone)]
pub struct MqttStats {
    connection: ConnectionId,
    telemetry: Arc<Telemetry>,
}

impl MqttStats {
    /// The counters of `connection` in `telemetry`.
    pub fn new(connection: ConnectionId, telemetry: Arc<Telemetry>) -> Self {
        Self {
            connection,
            telemetry,
        }
    }

    fn of(&self) -> [(&'static str, &str); 1] {
        [("connection", self.connection.as_str())]
    }

    /// Messages received from the broker.
    pub fn messages(&self) -> u64 {
        self.telemetry.sum("messages_received_total", self.of()) as u64
    }
    /// Messages that matched no device.
    pub fn unmatched(&self) -> u64 {
        Telemetry::count(
            &self.telemetry.messages_received,
            [
                ("connection", self.connection.as_str()),
                ("matched", "false"),
            ],
        )
    }
    /// ConnAcks received (first connection and every reconnection).
    pub fn connects(&self) -> u64 {
        Telemetry::count(&self.telemetry.connects, self.of())
    }
    /// SUBACKs received: after the n-th, the subscriptions asked for on
    /// the n-th ConnAck are in place.
    pub fn subacks(&self) -> u64 {
        Telemetry::count(&self.telemetry.subacks, self.of())
    }
    /// Connection errors (each followed by a backoff).
    pub fn connection_errors(&self) -> u64 {
        Telemetry::count(&self.telemetry.reconnects, self.of())
    }
    /// Payload failures of `device` for `cause`.
    pub fn failures(&self, device: &str, cause: Cause) -> u64 {
        Telemetry::count(
            &self.telemetry.bad_input,
            [
                ("connection", self.connection.as_str()),
                ("device", device),
                ("cause", cause.name()),
            ],
        )
    }
    /// Ids a template rule did not create (invalid, taken, or over the cap).
    pub fn refused_devices(&self) -> u64 {
        self.telemetry.sum(
            "bad_input_total",
            [
                ("connection", self.connection.as_str()),
                ("cause", "device_refused"),
            ],
        ) as u64
    }

    // ----- the events ----------------------------------------------------

    pub(crate) fn message(&self, matched: bool) {
        MessageReceived {
            connection: &self.connection,
            matched,
        }
        .emit(&self.telemetry);
    }

    pub(crate) fn connected(&self) {
        Connected {
            connection: &self.connection,
        }
        .emit(&self.telemetry);
    }

    pub(crate) fn suback(&self) {
        SubscribeAcked {
            connection: &self.connection,
        }
        .emit(&self.telemetry);
    }

    pub(crate) fn connection_error(&self) {
        Reconnect {
            connection: &self.connection,
        }
        .emit(&self.telemetry);
    }

    /// A payload a point (or the device's timestamp) could not use:
    /// counted, logged once per device and cause.
    pub(crate) fn failure(&self, device: &DeviceId, point: Option<&PointId>, f: &PayloadError) {
        BadInput {
            connection: &self.connection,
            device: Some(device),
            point: point.map(PointId::as_str),
            cause: f.cause().name(),
            what: "payload unusable; the point keeps its last value with bad quality",
            error: f,
        }
        .emit(&self.telemetry);
    }

    /// A template rule did not create a device (the router logs the id).
    pub(crate) fn device_refused(&self, rule: &DeviceId) {
        DeviceRefused {
            connection: &self.connection,
            rule,
        }
        .emit(&self.telemetry);
    }
}
