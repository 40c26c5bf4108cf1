//! The contract between core and a protocol adapter.
//!
//! An adapter owns its transport loop: it connects, polls or receives,
//! reconnects with backoff, and reports raw readings and status through an
//! [`EventSender`]: what it read at once (one poll, frame or message) as one
//! [`EventSender::readings`] batch of [`sample`]s. Core normalizes what it
//! reports and fans it out; the adapter never sees a sink.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::command::Command;
use crate::event::{DeviceEvent, DeviceStatus, EventKind};
use crate::id::{DeviceId, PointId};
use crate::telemetry::Telemetry;
use crate::value::{Quality, Reading, Sample, Value};

/// A raw sample of `point` read just now, for [`EventSender::readings`]. A
/// device that says when it measured sets the sample's `at` to that instead.
pub fn sample(point: &PointId, value: Value, quality: Quality) -> Sample {
    Sample {
        at: SystemTime::now(),
        reading: Reading {
            point: point.clone(),
            value,
            unit: None,
            quality,
        },
    }
}

/// A boxed future returned by [`Adapter::run`].
pub type AdapterFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A protocol adapter: one per configured connection.
pub trait Adapter: Send {
    /// A name for logs, e.g. `simulator demo` or `modbus_tcp plc`.
    fn name(&self) -> String;

    /// The devices this adapter serves (commands to them are routed here).
    fn devices(&self) -> Vec<DeviceId>;

    /// Runs the transport loop until `ctx.shutdown` is cancelled. Transport
    /// failures are reported as device status and retried, never returned.
    fn run(self: Box<Self>, ctx: AdapterContext) -> AdapterFuture;
}

/// What core hands an adapter when it starts.
#[derive(Debug)]
pub struct AdapterContext {
    /// Where readings and status go.
    pub events: EventSender,
    /// Commands for this adapter's devices.
    pub commands: mpsc::Receiver<Command>,
    /// Cancelled when the gateway stops.
    pub shutdown: CancellationToken,
}

/// Reports raw (not yet normalized) events to core. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EventSender {
    tx: mpsc::Sender<DeviceEvent>,
    telemetry: Arc<Telemetry>,
}

impl EventSender {
    pub(crate) fn new(tx: mpsc::Sender<DeviceEvent>, telemetry: Arc<Telemetry>) -> Self {
        Self { tx, telemetry }
    }

    /// The gateway's metrics: where an adapter's events
    /// ([`crate::telemetry::InternalEvent`]) are counted.
    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.telemetry
    }

    /// Reports what was read together from one device (one poll, one frame,
    /// one message). Core normalizes it as one update: points that did not
    /// change ride along with those that did. Nothing is sent for an empty
    /// batch.
    pub async fn readings(&self, device: &DeviceId, readings: Vec<Sample>) {
        if readings.is_empty() {
            return;
        }
        self.send(DeviceEvent {
            device: device.clone(),
            at: SystemTime::now(),
            kind: EventKind::Readings(readings),
        })
        .await;
    }

    /// Reports the device's reachability as the adapter sees it.
    pub async fn status(&self, device: &DeviceId, status: DeviceStatus) {
        self.send(DeviceEvent {
            device: device.clone(),
            at: SystemTime::now(),
            kind: EventKind::Status(status),
        })
        .await;
    }

    /// Sends any event. Waits only if core itself is behind (it does not
    /// wait on sinks, so this is brief); after shutdown the event is dropped.
    pub async fn send(&self, event: DeviceEvent) {
        // An error means core has stopped: we are shutting down.
        let _ = self.tx.send(event).await;
    }

    /// Events sent and not yet taken by the engine (a barrier for tests).
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}
