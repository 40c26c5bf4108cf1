//! The devices and points a gateway knows, as configured: the part of
//! `gateway.yaml` that core understands, whatever the adapter.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::alarm::AlarmSettings;
use crate::duration;
use crate::id::{ConnectionId, DeviceId, PointId};
use crate::value::{Unit, ValueKind};

/// The most `decimals` a point may keep: f64 holds about 15 significant
/// digits, and no sensor resolves a billionth.
pub const MAX_DECIMALS: u8 = 9;

/// Staleness when a device has no poll period and its kind no default of
/// its own (a serial line that streams readings).
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(60);

/// When a device that does not set `stale_after` turns stale: its kind's
/// default ([`AdapterKind::stale_default`](crate::kind::AdapterKind::stale_default)),
/// because how often a device reports depends on what it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StaleDefault {
    /// Three poll periods, or [`DEFAULT_STALE_AFTER`] without a poll.
    #[default]
    PollPeriods,
    /// After this long without a fresh reading.
    After(Duration),
    /// Never by time alone: the device says itself when it is lost (MQTT
    /// `availability`), and a quiet device is not a lost one.
    Never,
}

/// How long an online device may publish nothing when none of its points
/// sets `max_interval`: then its latest readings are repeated, so that a
/// subscriber can tell a quiet device from a lost one.
pub const DEFAULT_MAX_INTERVAL: Duration = Duration::from_secs(10 * 60);

/// Settings under `devices.<id>` that every device has. Adapters add their
/// own keys (a Modbus `unit`, an MQTT `topic`) beside these.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceSettings {
    /// Human-readable name, shown in clients (defaults to the id).
    #[serde(default)]
    pub name: Option<String>,
    /// The connection (key under `connections:`) the device is reached through.
    pub connection: ConnectionId,
    /// How often the adapter reads the device; push devices have none.
    #[serde(default, deserialize_with = "duration::optional")]
    #[schemars(schema_with = "duration::optional_schema")]
    pub poll: Option<Duration>,
    /// A device with no fresh reading for this long turns stale. Default:
    /// three poll periods for polled devices (Modbus, simulator); for
    /// MQTT, 15 minutes (three missed reports at Tasmota's default
    /// 300 s TelePeriod), or never by time when `availability` is
    /// configured, which then says when the device is lost; 60 s for a
    /// serial line.
    #[serde(default, deserialize_with = "duration::optional")]
    #[schemars(schema_with = "duration::optional_schema")]
    pub stale_after: Option<Duration>,
    /// How much of the device's published history is kept, for subscribers
    /// that were away (defaults: 10,000 items, 7 days).
    #[serde(default)]
    pub history: Option<HistorySettings>,
    /// What applies without `stale_after`: set from the device's kind by
    /// the loader, never read from the file.
    #[serde(skip)]
    pub stale_default: StaleDefault,
    /// The points, in this order, that the presence status text shows
    /// (default: the points in id order, as many as fit a phone's line).
    #[serde(default)]
    pub summary: Option<Vec<PointId>>,
    /// Raise an alert (severity warning) when the device has been offline
    /// for this long, cleared when it is online again (default: off).
    #[serde(default, deserialize_with = "duration::optional")]
    #[schemars(schema_with = "duration::optional_schema")]
    pub offline_alert: Option<Duration>,
}

impl DeviceSettings {
    /// A device on `connection` with every other setting at its default:
    /// where code that makes devices without a file (tests, benches)
    /// starts, so that a new setting is added in one place.
    pub fn on(connection: ConnectionId) -> Self {
        Self {
            name: None,
            connection,
            poll: None,
            stale_after: None,
            history: None,
            summary: None,
            offline_alert: None,
            stale_default: StaleDefault::default(),
        }
    }
}

/// `devices.<id>.history`: bounds of a device's kept history.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HistorySettings {
    /// At most this many items (one per published update of the device).
    #[serde(default)]
    pub max_items: Option<u64>,
    /// Items older than this are dropped.
    #[serde(default, deserialize_with = "duration::optional")]
    #[schemars(schema_with = "duration::optional_schema")]
    pub max_age: Option<Duration>,
}

/// Settings under `devices.<id>.points.<id>` that core applies to every
/// point. Adapters add their own keys (register address, JSON pointer).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PointSettings {
    /// What people read for this point in chat, status texts and forms
    /// (defaults to the id). `name`, its old key, is still read.
    #[serde(default, alias = "name")]
    pub label: Option<String>,
    /// Unit of measure after scaling (`°C`, `kWh`).
    #[serde(default)]
    pub unit: Option<Unit>,
    /// Multiplier applied to the raw value: `value = raw * scale + offset`.
    #[serde(default)]
    pub scale: Option<f64>,
    /// Added to the raw value after `scale`.
    #[serde(default)]
    pub offset: Option<f64>,
    /// Decimal places kept after `scale` and `offset` (0 to 9): the
    /// sensor's real precision. What is published, shown and compared for
    /// changes, so that noise below it neither shows nor wakes anyone.
    #[serde(default)]
    pub decimals: Option<u8>,
    /// Publish only when the value moved by more than this since the last
    /// published one (or its quality changed). Without a deadband, any
    /// change is published and an unchanged value is not. Points of the
    /// device read at the same time ride along with a change.
    #[serde(default)]
    pub deadband: Option<f64>,
    /// Publish changes at most once per this interval: a change that comes
    /// sooner is held (the newest wins) and published when it has passed.
    #[serde(default, deserialize_with = "duration::optional")]
    #[schemars(schema_with = "duration::optional_schema")]
    pub min_interval: Option<Duration>,
    /// Repeat the device's latest readings after this long without a publish,
    /// so that subscribers see it is alive even when nothing changes. The
    /// device uses the shortest of its points' (default: 10 minutes).
    #[serde(default, deserialize_with = "duration::optional")]
    #[schemars(schema_with = "duration::optional_schema")]
    pub max_interval: Option<Duration>,
    /// Whether users in `access.control` may write this point.
    #[serde(default)]
    pub writable: bool,
    /// Lowest value a write may set, in the point's unit (after `scale` and
    /// `offset`); numeric points only. The gateway refuses a write below it
    /// before the device sees it, whoever asks and whatever the adapter.
    #[serde(default)]
    pub min: Option<f64>,
    /// Highest value a write may set, in the point's unit (after `scale`
    /// and `offset`); numeric points only, at least `min`.
    #[serde(default)]
    pub max: Option<f64>,
    /// Limits beyond which the point is in alarm, and what people are told.
    #[serde(default)]
    pub alarm: Option<AlarmSettings>,
}

/// A point as every part of the gateway sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct PointSpec {
    /// The point's id within its device.
    pub id: PointId,
    /// What kind of value the point carries (decided by its adapter config).
    pub kind: ValueKind,
    /// Core settings: unit, scaling, deadband, rates, writability.
    pub settings: PointSettings,
}

impl PointSpec {
    /// What people read for the point: its label, or its id.
    pub fn label(&self) -> &str {
        self.settings.label.as_deref().unwrap_or(self.id.as_str())
    }
}

/// A device as every part of the gateway sees it. Equal specs mean an
/// unchanged device on reload.
#[derive(Debug, Clone, PartialEq)]
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

    /// How long without a fresh reading before the device is stale; None
    /// when time alone never makes it stale (see [`StaleDefault::Never`]).
    pub fn stale_after(&self) -> Option<Duration> {
        if let Some(d) = self.settings.stale_after {
            return Some(d);
        }
        match self.settings.stale_default {
            StaleDefault::PollPeriods => {
                Some(self.settings.poll.map_or(DEFAULT_STALE_AFTER, |p| p * 3))
            }
            StaleDefault::After(d) => Some(d),
            StaleDefault::Never => None,
        }
    }

    /// The spec without what the engine applies at once on a reload (its
    /// `offline_alert` and its points' `alarm`s): what must be equal for
    /// its adapter to run on.
    pub fn without_alarms(&self) -> Self {
        let mut spec = self.clone();
        spec.settings.offline_alert = None;
        for p in spec.points.values_mut() {
            p.settings.alarm = None;
        }
        spec
    }

    /// How long the device, while online, goes without publishing before its
    /// latest readings are repeated: the shortest `max_interval` of its
    /// points, or [`DEFAULT_MAX_INTERVAL`].
    pub fn max_interval(&self) -> Duration {
        self.points
            .values()
            .filter_map(|p| p.settings.max_interval)
            .min()
            .unwrap_or(DEFAULT_MAX_INTERVAL)
    }
}

/// Most devices adapters may create at run time (template rules), over
/// all connections.
pub const MAX_RUNTIME_DEVICES: usize = 1024;

/// Every device, shared by adapters, core and sinks: the configured ones,
/// fixed for this directory, and those adapters create at run time (an
/// MQTT template rule), which are only ever added, never changed or
/// removed, so that a `&Arc<DeviceSpec>` handed out stays valid.
///
/// A reload makes a new directory with [`Directory::reconfigured`]: new
/// configured devices, the same table of run-time devices (an adapter that
/// keeps running keeps adding to it through the directory it was built
/// with), showing only those of connections that are still configured.
#[derive(Debug, Default)]
pub struct Directory {
    devices: BTreeMap<DeviceId, Arc<DeviceSpec>>,
    runtime: Arc<RuntimeDevices>,
    /// Run-time devices of other connections are hidden (their connection
    /// was removed by a reload); None: every connection's are shown.
    connections: Option<BTreeSet<ConnectionId>>,
}

/// Devices added at run time: fixed slots, each written once.
#[derive(Debug, Default)]
struct RuntimeDevices {
    slots: OnceLock<Box<[OnceLock<Arc<DeviceSpec>>]>>,
    index: Mutex<HashMap<DeviceId, usize>>,
}

/// Why a device could not be added at run time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddDeviceError {
    /// The id is taken.
    #[error("a device {0} exists already")]
    Exists(DeviceId),
    /// [`MAX_RUNTIME_DEVICES`] were created already.
    #[error("the gateway already created {MAX_RUNTIME_DEVICES} devices at run time")]
    Full,
}

impl Clone for Directory {
    /// A copy with a table of run-time devices of its own.
    fn clone(&self) -> Self {
        let copy = Self {
            devices: self.devices.clone(),
            runtime: Arc::default(),
            connections: self.connections.clone(),
        };
        for d in self.runtime_devices() {
            let _ = copy.insert((**d).clone());
        }
        copy
    }
}

impl Directory {
    /// Builds the directory; device ids are unique by construction of the map.
    pub fn new(devices: impl IntoIterator<Item = DeviceSpec>) -> Self {
        Self {
            devices: devices
                .into_iter()
                .map(|d| (d.id.clone(), Arc::new(d)))
                .collect(),
            runtime: Arc::default(),
            connections: None,
        }
    }

    /// The directory after a reload: the configured `devices` (those equal
    /// to one here keep its `Arc`), this directory's run-time devices
    /// (shared, not copied: adapters still add to them), of which only
    /// those on `connections` show.
    pub fn reconfigured(
        &self,
        devices: impl IntoIterator<Item = DeviceSpec>,
        connections: impl IntoIterator<Item = ConnectionId>,
    ) -> Self {
        let devices = devices
            .into_iter()
            .map(|d| match self.devices.get(&d.id) {
                Some(same) if **same == d => (d.id.clone(), Arc::clone(same)),
                _ => (d.id.clone(), Arc::new(d)),
            })
            .collect();
        Self {
            devices,
            runtime: Arc::clone(&self.runtime),
            connections: Some(connections.into_iter().collect()),
        }
    }

    /// The configured devices (not those added at run time), by id.
    pub fn configured(&self) -> &BTreeMap<DeviceId, Arc<DeviceSpec>> {
        &self.devices
    }

    /// Adds a device at run time (adapters that discover devices). Core
    /// picks it up with its first event; sinks see it from now on.
    pub fn insert(&self, device: DeviceSpec) -> Result<Arc<DeviceSpec>, AddDeviceError> {
        if self.devices.contains_key(&device.id) {
            return Err(AddDeviceError::Exists(device.id));
        }
        let slots = self
            .runtime
            .slots
            .get_or_init(|| (0..MAX_RUNTIME_DEVICES).map(|_| OnceLock::new()).collect());
        let mut index = self.runtime.index.lock().unwrap_or_else(|p| p.into_inner());
        if index.contains_key(&device.id) {
            return Err(AddDeviceError::Exists(device.id));
        }
        let n = index.len();
        let slot = slots.get(n).ok_or(AddDeviceError::Full)?;
        let spec = Arc::new(device);
        if slot.set(Arc::clone(&spec)).is_err() {
            return Err(AddDeviceError::Full);
        }
        index.insert(spec.id.clone(), n);
        Ok(spec)
    }

    /// Whether a run-time device shows here: its connection is configured,
    /// and no configured device took its id in a reload.
    fn shows(&self, d: &DeviceSpec) -> bool {
        !self.devices.contains_key(&d.id)
            && self
                .connections
                .as_ref()
                .is_none_or(|c| c.contains(&d.settings.connection))
    }

    fn runtime_devices(&self) -> impl Iterator<Item = &Arc<DeviceSpec>> {
        self.runtime
            .slots
            .get()
            .into_iter()
            .flat_map(|s| s.iter())
            .map_while(OnceLock::get)
            .filter(|d| self.shows(d))
    }

    /// One device by id.
    pub fn device(&self, id: &str) -> Option<&Arc<DeviceSpec>> {
        if let Some(d) = self.devices.get(id) {
            return Some(d);
        }
        let slots = self.runtime.slots.get()?;
        let n = *self
            .runtime
            .index
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)?;
        slots.get(n)?.get().filter(|d| self.shows(d))
    }

    /// All devices: the configured ones ordered by id, then those added at
    /// run time in the order they were added.
    pub fn devices(&self) -> impl Iterator<Item = &Arc<DeviceSpec>> {
        self.devices.values().chain(self.runtime_devices())
    }

    /// Number of devices.
    pub fn len(&self) -> usize {
        self.devices.len() + self.runtime_devices().count()
    }

    /// True when no device is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Total number of points over all devices.
    pub fn point_count(&self) -> usize {
        self.devices().map(|d| d.points.len()).sum()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(id: &str) -> DeviceSpec {
        DeviceSpec {
            id: DeviceId::new(id).unwrap(),
            settings: DeviceSettings::on(ConnectionId::new("c").unwrap()),
            points: BTreeMap::new(),
        }
    }

    #[test]
    fn stale_after_is_the_devices_own_else_its_kinds_default() {
        let with = |poll: Option<u64>, own: Option<u64>, default| {
            let mut d = spec("d");
            d.settings.poll = poll.map(Duration::from_secs);
            d.settings.stale_after = own.map(Duration::from_secs);
            d.settings.stale_default = default;
            d.stale_after()
        };
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(with(Some(5), None, StaleDefault::PollPeriods), secs(15));
        assert_eq!(
            with(None, None, StaleDefault::PollPeriods),
            Some(DEFAULT_STALE_AFTER)
        );
        let quarter = StaleDefault::After(Duration::from_secs(900));
        assert_eq!(with(None, None, quarter), secs(900));
        assert_eq!(with(None, None, StaleDefault::Never), None);
        // The device's own setting wins over any default.
        assert_eq!(with(Some(5), Some(7), quarter), secs(7));
        assert_eq!(with(None, Some(7), StaleDefault::Never), secs(7));
    }

    #[test]
    fn devices_added_at_run_time_are_found_listed_and_never_duplicated() {
        let dir = Directory::new([spec("boiler")]);
        assert_eq!(dir.len(), 1);
        let held = dir.device("boiler").unwrap();
        dir.insert(spec("th-1")).unwrap();
        dir.insert(spec("th-2")).unwrap();
        // References handed out before an insert stay valid.
        assert_eq!(held.id.as_str(), "boiler");
        assert_eq!(dir.device("th-2").unwrap().id.as_str(), "th-2");
        assert!(dir.device("th-3").is_none());
        let ids: Vec<&str> = dir.devices().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["boiler", "th-1", "th-2"]);
        assert_eq!(dir.len(), 3);
        assert!(matches!(
            dir.insert(spec("boiler")),
            Err(AddDeviceError::Exists(_))
        ));
        assert!(matches!(
            dir.insert(spec("th-1")),
            Err(AddDeviceError::Exists(_))
        ));
        assert_eq!(dir.clone().len(), 3);
    }

    #[test]
    fn a_reconfigured_directory_shares_run_time_devices_of_configured_connections() {
        let on = |id: &str, connection: &str| {
            let mut d = spec(id);
            d.settings.connection = ConnectionId::new(connection).unwrap();
            d
        };
        let c = |id: &str| ConnectionId::new(id).unwrap();
        let old = Directory::new([on("boiler", "plc"), on("pump", "plc")]);
        old.insert(on("th-1", "broker")).unwrap();
        let mut pump = on("pump", "plc");
        pump.settings.name = Some("Pump".into());
        let new = old.reconfigured(
            [on("boiler", "plc"), pump, on("fan", "plc")],
            [c("plc"), c("broker")],
        );
        // An unchanged device keeps its spec; a changed one has the new one.
        assert!(Arc::ptr_eq(
            old.device("boiler").unwrap(),
            new.device("boiler").unwrap()
        ));
        assert_eq!(new.device("pump").unwrap().display_name(), "Pump");
        let ids: Vec<&str> = new.devices().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["boiler", "fan", "pump", "th-1"]);
        assert_eq!(new.configured().len(), 3);
        // A device the old directory's adapter adds later shows in the new one.
        old.insert(on("th-2", "broker")).unwrap();
        assert!(new.device("th-2").is_some());
        // Without its connection, a run-time device is hidden; back with it.
        let gone = new.reconfigured([on("boiler", "plc")], [c("plc")]);
        assert!(gone.device("th-1").is_none());
        assert_eq!(gone.len(), 1);
        let back = gone.reconfigured([on("boiler", "plc")], [c("plc"), c("broker")]);
        assert_eq!(back.len(), 3);
        // A configured device that takes a run-time device's id wins, once.
        let taken = back.reconfigured([on("th-1", "plc")], [c("plc"), c("broker")]);
        let ids: Vec<&str> = taken.devices().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["th-1", "th-2"]);
        assert_eq!(
            taken.device("th-1").unwrap().settings.connection.as_str(),
            "plc"
        );
    }

    #[test]
    fn run_time_devices_are_capped() {
        let dir = Directory::new([]);
        for i in 0..MAX_RUNTIME_DEVICES {
            dir.insert(spec(&format!("d{i}"))).unwrap();
        }
        assert_eq!(
            dir.insert(spec("one-more")).unwrap_err(),
            AddDeviceError::Full
        );
        assert_eq!(dir.len(), MAX_RUNTIME_DEVICES);
    }
}
