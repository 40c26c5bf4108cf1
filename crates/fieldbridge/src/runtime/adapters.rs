//! The running adapters, one per connection, each with its own stop token
//! and task, so that a reload can stop or start one while the others run.

use std::collections::BTreeMap;
use std::sync::Arc;

use fieldbridge::config::Connection;
use fieldbridge_core::adapter::AdapterContext;
use fieldbridge_core::command::{CommandRouter, CommandRoutes, DEFAULT_COMMAND_TIMEOUT};
use fieldbridge_core::kind::BuildContext;
use fieldbridge_core::{ConnectionId, Directory, EventSender};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::STOP_GRACE;

/// Every running adapter, and what starts another.
pub(super) struct Adapters {
    /// Where adapters report. Dropped on stop: when the last adapter has
    /// let go of its clone, the engine drains and closes the bus.
    events: Option<EventSender>,
    /// Each adapter's command inbox.
    routes: CommandRoutes,
    running: BTreeMap<ConnectionId, Running>,
    /// The parent of every adapter's own token: cancelled on stop.
    shutdown: CancellationToken,
}

struct Running {
    name: String,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Adapters {
    pub(super) fn new(events: EventSender) -> Self {
        Self {
            events: Some(events),
            routes: CommandRoutes::new(),
            running: BTreeMap::new(),
            shutdown: CancellationToken::new(),
        }
    }

    /// Builds and starts `connection`'s adapter.
    pub(super) fn start(&mut self, connection: Connection, build: &BuildContext) {
        let Some(events) = &self.events else {
            return;
        };
        let id = connection.id.clone();
        let adapter = connection.kind.build(connection.id, build);
        let name = adapter.name();
        let stop = self.shutdown.child_token();
        let ctx = AdapterContext {
            events: events.clone(),
            // By connection too: devices an adapter adds at run time (MQTT
            // template rules) get their commands.
            commands: self.routes.register_connection(&id, adapter.devices()),
            shutdown: stop.clone(),
        };
        tracing::debug!(adapter = %name, "starting adapter");
        // Counted as running until its loop returns.
        let running = events.telemetry().adapter_running();
        let run = adapter.run(ctx);
        let task = tokio::spawn(async move {
            run.await;
            drop(running);
        });
        self.running.insert(id, Running { name, stop, task });
        self.count_configured();
    }

    /// Stops `id`'s adapter (a reload removed or changed it) and waits for
    /// it, within [`STOP_GRACE`].
    pub(super) async fn stop(&mut self, id: &ConnectionId) {
        self.routes.remove_connection(id);
        let Some(running) = self.running.remove(id) else {
            return;
        };
        self.count_configured();
        tracing::debug!(adapter = %running.name, "stopping adapter");
        running.stop.cancel();
        let deadline = tokio::time::Instant::now() + STOP_GRACE;
        if !finish(running, deadline).await {
            tracing::warn!(connection = %id, "the adapter did not stop within {STOP_GRACE:?}; abandoning it");
        }
    }

    /// Stops every adapter and lets go of the event sender.
    pub(super) async fn stop_all(&mut self) {
        self.events = None;
        self.shutdown.cancel();
        let deadline = tokio::time::Instant::now() + STOP_GRACE;
        let mut abandoned = false;
        for (_, running) in std::mem::take(&mut self.running) {
            abandoned |= !finish(running, deadline).await;
        }
        if abandoned {
            tracing::warn!("adapters did not stop within {STOP_GRACE:?}; abandoning them");
        }
    }

    /// Tells health how many adapters should be running.
    fn count_configured(&self) {
        if let Some(events) = &self.events {
            events
                .telemetry()
                .set_adapters_configured(self.running.len());
        }
    }

    /// The routes to every running adapter, for the router.
    pub(super) fn routes(&self) -> CommandRoutes {
        self.routes.clone()
    }

    /// A router over the running adapters.
    pub(super) fn router(&self, directory: Arc<Directory>) -> CommandRouter {
        self.routes()
            .into_router(directory, DEFAULT_COMMAND_TIMEOUT)
    }
}

/// Waits for a cancelled adapter until `deadline`; aborts it then. False
/// if it had to be abandoned.
async fn finish(running: Running, deadline: tokio::time::Instant) -> bool {
    let Running { name, task, .. } = running;
    let abort = task.abort_handle();
    match tokio::time::timeout_at(deadline, task).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::error!(adapter = %name, error = %e, "an adapter panicked");
            true
        }
        Err(_) => {
            abort.abort();
            false
        }
    }
}
