//! What the gateway needs to know of one connection kind, in one place.
//!
//! Each adapter crate implements [`AdapterKind`] once per kind it runs
//! (`simulator`, `serial`, `modbus_tcp`, `modbus_rtu`, `mqtt`): the key that
//! selects it in `gateway.yaml`, the structs its connection, device and
//! point keys are read into, the checks serde cannot make, the files it
//! names, its lines in `fieldbridge check`, and how to build the running
//! adapter. The binary keeps one list of kinds and derives everything from
//! it (loading, the JSON schema, `check`, wiring), so adding an adapter adds
//! one line there and none of its rules.
//!
//! Adapter structs are plain `#[derive(Deserialize)]` structs with
//! `#[serde(deny_unknown_fields)]` and no `#[serde(flatten)]`: the loader
//! learns their keys from the field list serde passes to
//! `deserialize_struct`, and splits each device and point mapping between
//! core's keys and the adapter's.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use crate::adapter::Adapter;
use crate::device::{AdapterDevice, DeviceSpec, Directory, PointSource, StaleDefault};
use crate::id::{ConnectionId, PointId};

/// A problem a kind found in a device: about one of its points, or (None)
/// about the device itself.
pub type DeviceProblem = (Option<PointId>, String);

/// A device's lines in `fieldbridge check`: what follows the device's own
/// line, and what follows each point's.
pub type Described = (String, BTreeMap<PointId, String>);

/// What adapters need of the gateway when they are built (and what
/// `check` shows that depends on it).
#[derive(Debug, Clone)]
pub struct BuildContext {
    /// `gateway.id`: part of default MQTT client ids.
    pub gateway_id: String,
    /// Every device: adapters that create devices at run time (MQTT
    /// template rules) announce them here.
    pub directory: Arc<Directory>,
}

/// A file a connection's settings name (a CA, a key, a password file),
/// which the loader checks is there and readable, so that `check` finds
/// what the adapter would only find when it connects.
#[derive(Debug, Clone, Copy)]
pub struct NamedFile<'a> {
    /// The key naming it, under `connections.<id>.<kind>`.
    pub key: &'static str,
    /// The path, already resolved against the configuration's directory.
    pub path: &'a Path,
    /// The most it may hold, in bytes.
    pub limit: u64,
    /// True when it must be UTF-8 text.
    pub text: bool,
    /// What it should hold, for the hint when it is too large (`a PEM
    /// file`: "is this a PEM file?").
    pub holds: &'static str,
}

/// One connection kind: everything the gateway knows of it.
///
/// Only [`build`](Self::build) and the types are required; every check
/// defaults to "nothing beyond what serde reads".
pub trait AdapterKind: 'static {
    /// The key that selects it in `gateway.yaml`: `connections.<id>.<NAME>`.
    const NAME: &'static str;
    /// Names the device shape in the JSON schema: kinds whose devices and
    /// points are the same structs (Modbus TCP and RTU) share one shape.
    const SHAPE: &'static str = Self::NAME;
    /// Poll period of a device that does not set `poll` (None: push device).
    const DEFAULT_POLL: Option<Duration>;

    /// `connections.<id>.<NAME>`
    type Connection: DeserializeOwned + JsonSchema + Debug + Send + Sync + 'static;
    /// The adapter's own keys under `devices.<id>`, beside core's.
    type Device: DeserializeOwned + JsonSchema + Debug + Send + Sync + 'static;
    /// The adapter's own keys under `devices.<id>.points.<id>`, beside core's.
    type Point: DeserializeOwned + JsonSchema + PointSource + Debug + Send + Sync + 'static;

    /// Checks the connection's settings beyond what serde can.
    fn check_connection(_settings: &Self::Connection) -> Result<(), String> {
        Ok(())
    }

    /// Makes the relative paths in the settings relative to `base`, the
    /// configuration file's directory. Called when the file is loaded, so
    /// that `check` and the adapter see the same paths.
    fn resolve_paths(_settings: &mut Self::Connection, _base: &Path) {}

    /// The files the settings name, for the loader to check they can be
    /// read (after [`resolve_paths`](Self::resolve_paths)).
    fn files(_settings: &Self::Connection) -> Vec<NamedFile<'_>> {
        Vec::new()
    }

    /// Checks one point beyond what serde can (e.g. a constant needs a value).
    fn check_point(_point: &Self::Point) -> Result<(), String> {
        Ok(())
    }

    /// Checks a device as a whole: its settings, and its points against
    /// them (a CSV device's points need a column).
    fn check_device(
        _device: &Self::Device,
        _points: &BTreeMap<PointId, Self::Point>,
    ) -> Vec<DeviceProblem> {
        Vec::new()
    }

    /// Checks a device's points against core's view of them (writable,
    /// scale), which the adapter's own structs do not carry.
    fn check_spec(
        _spec: &DeviceSpec,
        _points: &BTreeMap<PointId, Self::Point>,
    ) -> Vec<DeviceProblem> {
        Vec::new()
    }

    /// When a device of this kind that does not set `stale_after` turns
    /// stale: by default three poll periods (60 s without a poll). A kind
    /// whose devices report at their own pace, or say themselves when
    /// they are lost, says so here.
    fn stale_default(_device: &Self::Device) -> StaleDefault {
        StaleDefault::PollPeriods
    }

    /// True when this "device" is a rule that creates devices at run time
    /// (an MQTT template): it is handed to the adapter but is not itself a
    /// device in the directory.
    fn is_rule(_device: &Self::Device) -> bool {
        false
    }

    /// What `check` prints after `connection <id> (<NAME>)`, starting with
    /// `, ` when not empty.
    fn describe_connection(
        _settings: &Self::Connection,
        _id: &ConnectionId,
        _ctx: &BuildContext,
    ) -> String {
        String::new()
    }

    /// What `check` prints after a device's line and after each of its
    /// points' lines, each starting with `, ` when not empty.
    fn describe_device(_device: &AdapterDevice<Self::Device, Self::Point>) -> Described {
        (String::new(), BTreeMap::new())
    }

    /// The running adapter of connection `id`.
    fn build(
        id: ConnectionId,
        settings: Self::Connection,
        devices: Vec<AdapterDevice<Self::Device, Self::Point>>,
        ctx: &BuildContext,
    ) -> Box<dyn Adapter>;
}
