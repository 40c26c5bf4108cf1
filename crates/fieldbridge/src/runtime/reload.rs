//! SIGHUP: `gateway.yaml` read again and applied on the running gateway.
//!
//! An invalid file is refused with every problem logged (as at start-up)
//! and nothing changes. A valid one is compared with what runs
//! ([`fieldbridge::reload::Diff`]) and applied in an order that loses
//! nothing: the adapters of removed and changed connections stop; the
//! engine, then the XMPP component, take the new directory, each
//! confirming before the next step; the adapters of added and changed
//! connections start; the router takes their inboxes. One line then
//! logs what changed.

use std::path::PathBuf;
use std::sync::Arc;

use fieldbridge::config::{self, Purpose};
use fieldbridge::reload::{Applied, Diff};
use fieldbridge_core::Directory;
use fieldbridge_core::command::CommandRouter;
use fieldbridge_core::kind::BuildContext;
use fieldbridge_core::normalize::EngineReload;
use fieldbridge_xmpp::Reloader;

use super::adapters::Adapters;

/// What a reload needs of the running gateway.
pub(super) struct Reloading {
    /// The configuration file, read again on each reload.
    pub(super) source: PathBuf,
    /// What runs now, as a reload compares it.
    pub(super) applied: Applied,
    /// The directory every part holds now.
    pub(super) directory: Arc<Directory>,
    /// The running gateway id (a changed one needs a restart).
    pub(super) gateway_id: String,
    pub(super) engine: EngineReload,
    pub(super) xmpp: Reloader,
    pub(super) router: CommandRouter,
}

impl Reloading {
    /// Reads the file again and applies it, or logs why not.
    pub(super) async fn reload(&mut self, adapters: &mut Adapters) {
        let file = self.source.display().to_string();
        tracing::info!(file = %file, "reloading");
        let cfg = match config::load(&self.source, Purpose::Run) {
            Ok(cfg) => cfg,
            Err(errors) => {
                for e in errors.iter() {
                    tracing::error!("{e}");
                }
                tracing::error!(
                    "{file} not reloaded ({} problem{}): the running configuration stays",
                    errors.len(),
                    if errors.len() == 1 { "" } else { "s" }
                );
                return;
            }
        };
        let next = Applied::of(&cfg);
        let diff = Diff::between(&self.applied, &next);
        let directory = Arc::new(self.directory.reconfigured(
            cfg.directory.configured().values().map(|d| (**d).clone()),
            cfg.connections.iter().map(|c| c.id.clone()),
        ));
        let stopping: Vec<_> = diff
            .connections_removed
            .iter()
            .chain(&diff.connections_changed)
            .collect();
        for id in stopping {
            adapters.stop(id).await;
        }
        // Each part confirms before adapters start: their first events
        // find their devices known everywhere.
        if !self.engine.reconfigure(Arc::clone(&directory)).await {
            return;
        }
        let Some(taken) = self
            .xmpp
            .reconfigure(Arc::clone(&directory), &cfg.xmpp, &cfg.alerts)
            .await
        else {
            return;
        };
        // Beside the file's devices: those made at run time on a removed
        // connection.
        tracing::debug!(added = ?taken.added, removed = ?taken.removed, changed = ?taken.changed, "the XMPP component took the new directory");
        let build = BuildContext {
            gateway_id: self.gateway_id.clone(),
            directory: Arc::clone(&directory),
        };
        for connection in cfg.connections {
            if diff.starts(&connection.id) {
                adapters.start(connection, &build);
            }
        }
        self.router
            .reconfigure(adapters.routes(), Arc::clone(&directory));
        self.directory = directory;
        self.applied = self.applied.apply(next);
        if diff.needs_restart.is_empty() {
            tracing::info!("reloaded {file}: {diff}");
        } else {
            tracing::warn!("reloaded {file}: {diff}");
        }
    }
}
