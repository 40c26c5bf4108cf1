//! The devices and points a gateway knows, as configured: the part of
//! `gateway.yaml` that core understands, whatever the adapter.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::duration;
use crate::id::{ConnectionId, DeviceId, PointId};
use crate::value::{Unit, ValueKind};

/// Staleness when a device has no poll period (push devices such as MQTT).
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(60);

/// Settings under `devices.<id>` that every device has. Adapters add their
/// own keys (a Modbus `unit`, an MQTT `topic`) beside these.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceSettings {
    /// Human-readable name, shown in clients (defaults to the id).
    #[serde(default)]
    pub name: Option<String>,
    /// The connection (key under `connections:`) the device is reached through.
    pub connection: ConnectionId,
    /// How often the adapter reads the device; push devices have none.
    #[serde(default, deserialize_with = "duration::optional")]
    pub poll: Option<Duration>,
    /// A device with no fresh reading for this long turns stale
    /// (default: three poll periods, or 60 s without a poll period).
    #[serde(default, deserialize_with = "duration::optional")]
    pub stale_after: Option<Duration>,
    /// How much of the device's published history is kept, for subscribers
    /// that were away (defaults: 1000 items, 7 days).
    #[serde(default)]
    pub history: Option<HistorySettings>,
}

/// `devices.<id>.history`: bounds of a device's kept history.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistorySettings {
    /// At most this many items (one per published reading).
    #[serde(default)]
    pub max_items: Option<u64>,
    /// Items older than this are dropped.
    #[serde(default, deserialize_with = "duration::optional")]
    pub max_age: Option<Duration>,
}

/// Settings under `devices.<id>.points.<id>` that core applies to every
/// point. Adapters add their own keys (register address, JSON pointer).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointSettings {
    /// Human-readable name (defaults to the id).
    #[serde(default)]
    pub name: Option<String>,
    /// Unit of measure after scaling (`°C`, `kWh`).
    #[serde(default)]
    pub unit: Option<Unit>,
    /// Multiplier applied to the raw value: `value = raw * scale + offset`.
    #[serde(default)]
    pub scale: Option<f64>,
    /// Added to the raw value after `scale`.
    #[serde(default)]
    pub offset: Option<f64>,
    /// Publish only when the value moved by more than this since the last
    /// published one.
    #[serde(default)]
    pub deadband: Option<f64>,
    /// Publish at most once per this interval (the newest value wins).
    #[serde(default, deserialize_with = "duration::optional")]
    pub min_interval: Option<Duration>,
    /// Republish the last value after this long without a publish, so that
    /// subscribers see the point is alive even when it does not change.
    #[serde(default, deserialize_with = "duration::optional")]
    pub max_interval: Option<Duration>,
    /// Whether users in `access.control` may write this point.
    #[serde(default)]
    pub writable: bool,
}

/// A point as every part of the gateway sees it.
#[derive(Debug, Clone)]
pub struct PointSpec {
    /// The point's id within its device.
    pub id: PointId,
    /// What kind of value the point carries (decided by its adapter config).
    pub kind: ValueKind,
    /// Core settings: unit, scaling, deadband, rates, writability.
    pub settings: PointSettings,
}

impl PointSpec {
    /// The name to show people.
    pub fn display_name(&self) -> &str {
        self.settings.name.as_deref().unwrap_or(self.id.as_str())
    }
}

/// A device as every part of the gateway sees it.
#[derive(Debug, Clone)]
pub struct DeviceSpec {
    /// The device id (JID localpart and pubsub node).
    pub id: DeviceId,
    /// Core settings: name, connection, poll, staleness.
    pub settings: DeviceSettings,
    /// The device's points, by id.
    pub points: BTreeMap<PointId, PointSpec>,
}

impl DeviceSpec {
    /// The name to show people.
    pub fn display_name(&self) -> &str {
        self.settings.name.as_deref().unwrap_or(self.id.as_str())
    }

    /// How long without a fresh reading before the device is stale.
    pub fn stale_after(&self) -> Duration {
        self.settings
            .stale_after
            .or(self.settings.poll.map(|p| p * 3))
            .unwrap_or(DEFAULT_STALE_AFTER)
    }
}

/// Every configured device, shared read-only by adapters, core and sinks.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    devices: BTreeMap<DeviceId, Arc<DeviceSpec>>,
}

impl Directory {
    /// Builds the directory; device ids are unique by construction of the map.
    pub fn new(devices: impl IntoIterator<Item = DeviceSpec>) -> Self {
        Self {
            devices: devices
                .into_iter()
                .map(|d| (d.id.clone(), Arc::new(d)))
                .collect(),
        }
    }

    /// One device by id.
    pub fn device(&self, id: &str) -> Option<&Arc<DeviceSpec>> {
        self.devices.get(id)
    }

    /// All devices, ordered by id.
    pub fn devices(&self) -> impl Iterator<Item = &Arc<DeviceSpec>> {
        self.devices.values()
    }

    /// Number of devices.
    pub fn len(&self) -> usize {
        self.devices.len()
    }

    /// True when no device is configured.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// Total number of points over all devices.
    pub fn point_count(&self) -> usize {
        self.devices.values().map(|d| d.points.len()).sum()
    }
}

/// What an adapter's per-point config must tell core.
pub trait PointSource {
    /// The kind of value the point produces (and accepts, if writable).
    fn kind(&self) -> ValueKind;
}

/// One device as handed to its adapter: core's spec plus the adapter's own
/// settings for the device and for each point.
#[derive(Debug, Clone)]
pub struct AdapterDevice<D, P> {
    /// Core's view (id, name, poll, points with their core settings).
    pub spec: Arc<DeviceSpec>,
    /// The adapter's device settings (e.g. Modbus unit id).
    pub config: D,
    /// The adapter's point settings (e.g. register address), by point id.
    pub points: BTreeMap<PointId, P>,
}
