//! A reload reaching the engine: the new directory, applied between two
//! events, so that an adapter started after [`EngineReload::reconfigure`]
//! returned finds its devices known.
//!
//! Unchanged devices keep everything (status, baselines, timers): nothing
//! is published for them. A changed device keeps its status and timers,
//! and each point whose spec is unchanged keeps its state; new points start
//! unpublished. A removed device's state (held samples included) is
//! dropped: its sinks have been told it is gone.
//!
//! Alarms take the new settings at once: an unchanged alarm keeps its
//! state; a changed one that was raised ends (a Cleared alert) and the new
//! one is evaluated against the point's latest good value; a removed one,
//! or one of a removed device, that was raised clears.

use std::sync::Arc;

use std::time::SystemTime;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::{DeviceState, Engine};
use crate::device::Directory;

/// A new directory, and who waits until it is applied.
pub(super) type Reload = (Arc<Directory>, oneshot::Sender<()>);

/// Tells a running engine (see [`super::spawn_reloadable`]) of a reload.
#[derive(Debug, Clone)]
pub struct EngineReload {
    pub(super) tx: mpsc::Sender<Reload>,
}

impl EngineReload {
    /// Hands the engine `directory` and waits until it is applied. False
    /// when the engine has stopped.
    pub async fn reconfigure(&self, directory: Arc<Directory>) -> bool {
        let (applied, done) = oneshot::channel();
        self.tx.send((directory, applied)).await.is_ok() && done.await.is_ok()
    }
}

impl Engine {
    pub(super) fn reconfigure(&mut self, directory: Arc<Directory>, now: Instant) {
        // Alarms first, while the old states still hold the latest values.
        let devices = &self.devices;
        self.alarms.reconfigure(
            &directory,
            |d, p| {
                let sample = devices.get(d)?.points.get(p)?.latest.as_ref()?;
                let r = &sample.reading;
                r.quality.is_good().then(|| r.value.clone())
            },
            |d| devices.get(d)?.status.clone(),
            now.into_std(),
            SystemTime::now(),
        );
        let old = std::mem::replace(&mut self.directory, directory);
        // Removed devices (and run-time ones of a removed connection): their
        // status no longer counts either.
        let telemetry = &self.telemetry;
        let directory = &self.directory;
        self.devices.retain(|id, _| {
            let kept = directory.device(id.as_str()).is_some();
            if !kept {
                telemetry.forget_device(id);
            }
            kept
        });
        for spec in self.directory.devices() {
            let unchanged = old.device(spec.id.as_str()) == Some(spec);
            match self.devices.get_mut(&spec.id) {
                Some(_) if unchanged => {}
                Some(state) => {
                    let mut new = DeviceState::new(spec);
                    new.status = state.status.take();
                    new.last_fresh = state.last_fresh;
                    new.last_published = state.last_published;
                    for (id, point) in &mut new.points {
                        if let Some(kept) = state.points.remove(id)
                            && kept.spec == point.spec
                        {
                            *point = kept;
                        }
                    }
                    *state = new;
                }
                None => {
                    self.telemetry.device_known(&spec.id);
                    self.devices.insert(spec.id.clone(), DeviceState::new(spec));
                }
            }
        }
    }
}
