//! What a reload changes: the running configuration against the file as
//! it is now, and the one log line that says so.
//!
//! A connection is changed when its settings or any of its devices (their
//! set, or a device's settings or points) changed: it restarts alone,
//! while the others run on. Connections are compared by their `Debug`
//! rendering, which every adapter's settings derive and which holds only
//! what the file said (no maps of random order, no handles); devices by
//! their spec. Alarm settings (`offline_alert`, points' `alarm`) are left
//! out of the connection's rendering: the engine applies them at once, so
//! changing only them restarts no adapter ("alarms changed"). What the
//! running component cannot take without a new link or a new store
//! (`xmpp.component`, `xmpp.server`, `xmpp.tls`, the secret, `gateway.*`)
//! is reported as needing a restart and keeps its running value;
//! everything else applies.

use std::collections::BTreeMap;
use std::fmt;
use std::hash::{Hash as _, Hasher as _};
use std::sync::Arc;

use fieldbridge_core::alarm::AlarmSettings;
use fieldbridge_core::{ConnectionId, DeviceId, DeviceSpec, PointId};

use crate::config::GatewayConfig;

/// Of a configuration, what a reload compares. It holds no secret: what
/// may hold one (a connection's settings, the component secret) is kept
/// as a hash of its rendering.
#[derive(Debug, Clone)]
pub struct Applied {
    /// Each connection's kind, settings and devices, rendered and hashed.
    connections: BTreeMap<ConnectionId, u64>,
    /// The configured devices (not those made at run time).
    devices: BTreeMap<DeviceId, Arc<DeviceSpec>>,
    /// `xmpp.access`, rendered.
    access: String,
    /// `xmpp.status_interval`, in effect.
    status_interval: std::time::Duration,
    /// `alerts:`, applied at once.
    alerts: fieldbridge_xmpp::AlertsConfig,
    /// Each setting that needs a restart, by key path, rendered.
    restart: Vec<(&'static str, String)>,
}

impl Applied {
    /// What `cfg` configures.
    pub fn of(cfg: &GatewayConfig) -> Self {
        let connections = cfg
            .connections
            .iter()
            .map(|c| (c.id.clone(), hash(&c.kind.compared())))
            .collect();
        Self {
            connections,
            devices: cfg.directory.configured().clone(),
            access: format!("{:?}", cfg.xmpp.access),
            status_interval: cfg.xmpp.status_interval(),
            alerts: cfg.alerts.clone(),
            restart: restart_only(cfg),
        }
    }

    /// What runs once `diff` (from here to `next`) is applied: `next`,
    /// except for the settings that need a restart, which keep theirs.
    pub fn apply(&self, next: Self) -> Self {
        Self {
            restart: self.restart.clone(),
            ..next
        }
    }
}

/// The settings the running gateway cannot change: the link, the
/// component's identity, the store, its HTTP listeners.
fn restart_only(cfg: &GatewayConfig) -> Vec<(&'static str, String)> {
    let xmpp = &cfg.xmpp;
    vec![
        ("gateway.id", cfg.gateway.id.clone()),
        ("gateway.state_dir", format!("{:?}", cfg.gateway.state_dir)),
        ("gateway.timezone", format!("{:?}", cfg.gateway.time_zone)),
        ("xmpp.component", xmpp.component.clone()),
        ("xmpp.server", xmpp.server.clone()),
        ("xmpp.tls", format!("{:?}", xmpp.tls)),
        ("xmpp.secret", hash(&cfg.secret).to_string()),
        // The listeners are bound once, before anything starts.
        ("metrics", format!("{:?}", cfg.metrics)),
        ("dashboard", format!("{:?}", cfg.dashboard)),
    ]
}

/// A rendering's hash: enough to tell a change, nothing to read back.
/// (`DefaultHasher::new()` hashes alike within one process, which is
/// all a reload compares.)
fn hash(text: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// What changed between two configurations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    /// Connections to start.
    pub connections_added: Vec<ConnectionId>,
    /// Connections to stop.
    pub connections_removed: Vec<ConnectionId>,
    /// Connections to restart: their settings or devices changed.
    pub connections_changed: Vec<ConnectionId>,
    /// Devices that appear.
    pub devices_added: Vec<DeviceId>,
    /// Devices that go.
    pub devices_removed: Vec<DeviceId>,
    /// Devices whose settings or points changed.
    pub devices_changed: Vec<DeviceId>,
    /// Alarm settings (`offline_alert`, points' `alarm`) changed on a
    /// device in both: the engine applies them at once, and they alone
    /// restart no connection.
    pub alarms: bool,
    /// `xmpp.access` changed (applies at once).
    pub access: bool,
    /// `xmpp.status_interval` changed (applies at once).
    pub status_interval: bool,
    /// `alerts:` changed (applies at once).
    pub alerts: bool,
    /// Key paths of changed settings that need a restart (not applied).
    pub needs_restart: Vec<&'static str>,
}

/// Keys only in `new`, only in `old`, and in both but different.
fn split<K: Ord + Clone, V: PartialEq>(
    old: &BTreeMap<K, V>,
    new: &BTreeMap<K, V>,
) -> (Vec<K>, Vec<K>, Vec<K>) {
    let added = new.keys().filter(|k| !old.contains_key(*k)).cloned();
    let removed = old.keys().filter(|k| !new.contains_key(*k)).cloned();
    let changed = new
        .iter()
        .filter(|(k, v)| old.get(*k).is_some_and(|o| o != *v))
        .map(|(k, _)| k.clone());
    (added.collect(), removed.collect(), changed.collect())
}

impl Diff {
    /// From the running configuration `old` to `new`.
    pub fn between(old: &Applied, new: &Applied) -> Self {
        let (connections_added, connections_removed, connections_changed) =
            split(&old.connections, &new.connections);
        let (devices_added, devices_removed, devices_changed) = split(&old.devices, &new.devices);
        let alarms = devices_changed
            .iter()
            .filter_map(|id| Some((old.devices.get(id)?, new.devices.get(id)?)))
            .any(|(o, n)| alarms_of(o) != alarms_of(n));
        let needs_restart = old
            .restart
            .iter()
            .zip(&new.restart)
            .filter(|(o, n)| o != n)
            .map(|((key, _), _)| *key)
            .collect();
        Self {
            connections_added,
            connections_removed,
            connections_changed,
            devices_added,
            devices_removed,
            devices_changed,
            alarms,
            access: old.access != new.access,
            status_interval: old.status_interval != new.status_interval,
            alerts: old.alerts != new.alerts,
            needs_restart,
        }
    }

    /// Whether a connection must stop (removed or changed).
    pub fn stops(&self, id: &ConnectionId) -> bool {
        self.connections_removed.contains(id) || self.connections_changed.contains(id)
    }

    /// Whether a connection must start (added or changed).
    pub fn starts(&self, id: &ConnectionId) -> bool {
        self.connections_added.contains(id) || self.connections_changed.contains(id)
    }
}

/// `+2 devices (a, b), -1 device (c), ~1 connection (plc), access changed;
/// needs a restart for: xmpp.server`, or `nothing changed`.
impl fmt::Display for Diff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        let mut list = |sign: &str, what: &str, ids: Vec<String>| {
            if ids.is_empty() {
                return;
            }
            let plural = if ids.len() == 1 { "" } else { "s" };
            parts.push(format!(
                "{sign}{} {what}{plural} ({})",
                ids.len(),
                ids.join(", ")
            ));
        };
        list("+", "device", names(&self.devices_added));
        list("-", "device", names(&self.devices_removed));
        list("~", "device", names(&self.devices_changed));
        list("+", "connection", names(&self.connections_added));
        list("-", "connection", names(&self.connections_removed));
        list("~", "connection", names(&self.connections_changed));
        if self.access {
            parts.push("access changed".to_owned());
        }
        if self.status_interval {
            parts.push("status_interval changed".to_owned());
        }
        if self.alarms {
            parts.push("alarms changed".to_owned());
        }
        if self.alerts {
            parts.push("alerts changed".to_owned());
        }
        if parts.is_empty() {
            parts.push("nothing changed".to_owned());
        }
        f.write_str(&parts.join(", "))?;
        if !self.needs_restart.is_empty() {
            write!(
                f,
                "; needs a restart for: {}",
                self.needs_restart.join(", ")
            )?;
        }
        Ok(())
    }
}

/// A device's alarm settings: its `offline_alert`, its points' `alarm`s.
fn alarms_of(d: &DeviceSpec) -> (Option<std::time::Duration>, Vec<(&PointId, &AlarmSettings)>) {
    let points = d
        .points
        .values()
        .filter_map(|p| Some((&p.id, p.settings.alarm.as_ref()?)))
        .collect();
    (d.settings.offline_alert, points)
}

fn names<T: fmt::Display>(ids: &[T]) -> Vec<String> {
    ids.iter().map(T::to_string).collect()
}

#[cfg(test)]
mod tests;
