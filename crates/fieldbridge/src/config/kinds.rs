//! The connection kinds this gateway runs: [`KINDS`], the one list.
//!
//! Each kind is an adapter crate's [`AdapterKind`] impl, which says
//! everything about it (its structs, checks, files, lines in `check`, how
//! to build it). Loading, the JSON schema, `check` and the wiring all
//! derive from this list; adding an adapter is one line here.
//!
//! [`ErasedKind`] is a kind as the loader and the schema use it, without
//! its types; [`LoadedConnection`] is a loaded connection of some kind, as
//! `check` and the wiring use it.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use fieldbridge_core::adapter::Adapter;
use fieldbridge_core::device::AdapterDevice;
use fieldbridge_core::files;
use fieldbridge_core::kind::{AdapterKind, BuildContext, NamedFile};
use fieldbridge_core::simulator::Simulator;
use fieldbridge_core::{ConnectionId, DeviceId, DeviceSpec, PointId};
use fieldbridge_modbus::{ModbusRtu, ModbusTcp};
use fieldbridge_mqtt::Mqtt;
use fieldbridge_serial::Serial;
use serde_json::Value;

use super::de::read;
use super::load::{Loader, Purpose};
use super::schema::schema_of;
use super::tree::{Node, join, null_as_empty_map};

/// Every connection kind this version runs, in the order the schema and
/// messages list them.
pub static KINDS: &[&dyn ErasedKind] = &[
    &Kind::<Simulator>::NEW,
    &Kind::<Serial>::NEW,
    &Kind::<ModbusTcp>::NEW,
    &Kind::<ModbusRtu>::NEW,
    &Kind::<Mqtt>::NEW,
];

/// The keys of [`KINDS`], for messages.
pub fn names() -> Vec<&'static str> {
    KINDS.iter().map(|k| k.name()).collect()
}

/// A connection kind without its types: what the loader and the schema ask
/// of it.
pub trait ErasedKind: Sync {
    /// `connections.<id>.<name>`
    fn name(&self) -> &'static str;
    /// Its device shape in the schema (shared by kinds with the same
    /// device and point structs).
    fn shape(&self) -> &'static str;
    /// The schema of `connections.<id>.<name>`.
    fn connection_schema(&self) -> Value;
    /// The schema of its own keys under `devices.<id>`.
    fn device_schema(&self) -> Value;
    /// The schema of its own keys under `devices.<id>.points.<id>`.
    fn point_schema(&self) -> Value;
    /// Reads `connections.<id>.<name>` (at `path`), recording problems.
    fn declare(
        &self,
        settings: &Node,
        path: &str,
        loader: &Loader<'_>,
    ) -> Box<dyn PendingConnection>;
}

/// [`AdapterKind`] `K` as an [`ErasedKind`].
struct Kind<K>(PhantomData<fn() -> K>);

impl<K> Kind<K> {
    const NEW: Self = Kind(PhantomData);
}

impl<K: AdapterKind> ErasedKind for Kind<K> {
    fn name(&self) -> &'static str {
        K::NAME
    }
    fn shape(&self) -> &'static str {
        K::SHAPE
    }
    fn connection_schema(&self) -> Value {
        schema_of::<K::Connection>()
    }
    fn device_schema(&self) -> Value {
        schema_of::<K::Device>()
    }
    fn point_schema(&self) -> Value {
        schema_of::<K::Point>()
    }
    fn declare(&self, node: &Node, path: &str, loader: &Loader<'_>) -> Box<dyn PendingConnection> {
        // `simulator:` with nothing after the colon means "no settings".
        let node = null_as_empty_map(node);
        let settings = read::<K::Connection>(&node, path, &[], true, loader.problems)
            .filter(|s| {
                K::check_connection(s)
                    .map_err(|e| loader.problems.push(&node.origin, path, e))
                    .is_ok()
            })
            .map(|mut s| {
                K::resolve_paths(&mut s, loader.base);
                for file in K::files(&s) {
                    let at = node.get(file.key).unwrap_or(&node);
                    check_file(loader, at, &join(path, file.key), &file);
                }
                s
            });
        Box::new(Pending::<K> {
            settings,
            devices: Vec::new(),
        })
    }
}

/// Reads a file the settings name as the adapter will: a file that is
/// missing, of the wrong kind or too large is a problem. One the system
/// refuses to read is a note in `check`, which may run as another user
/// than the gateway (as for the XMPP secret file). Also for `xmpp.tls.ca_file`.
pub(super) fn check_file(loader: &Loader<'_>, at: &Node, path: &str, file: &NamedFile<'_>) {
    let read = if file.text {
        files::read_text_limited(file.path, file.limit).map(drop)
    } else {
        files::read_limited(file.path, file.limit).map(drop)
    };
    let Err(e) = read else { return };
    match e.problem() {
        files::Problem::Io(io)
            if loader.purpose == Purpose::Check && io.kind() != std::io::ErrorKind::NotFound =>
        {
            loader.notes.borrow_mut().push(format!(
                "{} ({path}) cannot be read here ({io}); the gateway's own user must be able to read it",
                file.path.display()
            ));
        }
        files::Problem::TooLarge(_) => {
            loader
                .problems
                .push(&at.origin, path, format!("{e}: is this {}?", file.holds));
        }
        _ => loader.problems.push(&at.origin, path, e.to_string()),
    }
}

/// A connection being loaded: its settings (if they were valid) and the
/// devices found on it so far.
pub trait PendingConnection {
    /// Loads one device of this connection; its spec on success.
    fn add_device(
        &mut self,
        loader: &Loader<'_>,
        node: &Node,
        path: &str,
        id: Option<DeviceId>,
    ) -> Option<DeviceSpec>;
    /// How many of the devices added are rules that create devices at run
    /// time (not in the directory).
    fn rules(&self) -> usize;
    /// The finished connection, if its own settings were valid.
    fn finish(self: Box<Self>) -> Option<Box<dyn LoadedConnection>>;
}

struct Pending<K: AdapterKind> {
    settings: Option<K::Connection>,
    devices: Vec<AdapterDevice<K::Device, K::Point>>,
}

impl<K: AdapterKind> PendingConnection for Pending<K> {
    fn add_device(
        &mut self,
        loader: &Loader<'_>,
        node: &Node,
        path: &str,
        id: Option<DeviceId>,
    ) -> Option<DeviceSpec> {
        let device = loader.device::<K::Device, K::Point>(
            node,
            path,
            id,
            K::DEFAULT_POLL,
            K::stale_default,
            K::check_point,
        )?;
        let mut problems = K::check_device(&device.config, &device.points);
        problems.extend(K::check_spec(&device.spec, &device.points));
        for (point, message) in &problems {
            let (at, at_path) = match point {
                Some(p) => (
                    node.get("points")
                        .and_then(|ps| ps.get(p.as_str()))
                        .unwrap_or(node),
                    format!("{path}.points.{p}"),
                ),
                None => (node, path.to_owned()),
            };
            loader.problems.push(&at.origin, &at_path, message.clone());
        }
        if !problems.is_empty() {
            return None;
        }
        if K::is_rule(&device.config) {
            self.devices.push(device);
            return None;
        }
        let spec = (*device.spec).clone();
        self.devices.push(device);
        Some(spec)
    }

    fn rules(&self) -> usize {
        self.devices
            .iter()
            .filter(|d| K::is_rule(&d.config))
            .count()
    }

    fn finish(self: Box<Self>) -> Option<Box<dyn LoadedConnection>> {
        let this = *self;
        Some(Box::new(Loaded::<K> {
            settings: this.settings?,
            devices: this.devices,
        }))
    }
}

/// A device as `check` renders it: core's spec, what follows the device's
/// line, and what follows each point's.
pub type DeviceLines<'a> = (&'a DeviceSpec, String, BTreeMap<PointId, String>);

/// A loaded, checked connection of some kind, with its devices.
pub trait LoadedConnection: fmt::Debug + Send + Sync {
    /// The key of its kind (`modbus_tcp`).
    fn name(&self) -> &'static str;
    /// Its lines in `check`: what follows the connection's line, and each
    /// device (template rules included).
    fn describe(&self, id: &ConnectionId, ctx: &BuildContext) -> (String, Vec<DeviceLines<'_>>);
    /// The running adapter.
    fn build(self: Box<Self>, id: ConnectionId, ctx: &BuildContext) -> Box<dyn Adapter>;
    /// Itself, for `of_kind`.
    fn as_any(&self) -> &dyn std::any::Any;
    /// What a reload compares to decide whether the adapter restarts: its
    /// `Debug` rendering without the devices' alarm settings, which the
    /// engine applies at once.
    fn compared(&self) -> String;
}

impl dyn LoadedConnection {
    /// The connection as one of kind `K`, if it is one (`modbus scan`
    /// finds a configured Modbus device this way).
    pub fn of_kind<K: AdapterKind>(&self) -> Option<&Loaded<K>> {
        self.as_any().downcast_ref()
    }
}

/// A loaded connection of kind `K`.
pub struct Loaded<K: AdapterKind> {
    /// `connections.<id>.<kind>`, checked, its paths resolved.
    pub settings: K::Connection,
    /// Its devices (and template rules), checked.
    pub devices: Vec<AdapterDevice<K::Device, K::Point>>,
}

impl<K: AdapterKind> fmt::Debug for Loaded<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(K::NAME)
            .field("settings", &self.settings)
            .field("devices", &self.devices)
            .finish()
    }
}

impl<K: AdapterKind> LoadedConnection for Loaded<K> {
    fn name(&self) -> &'static str {
        K::NAME
    }
    fn describe(&self, id: &ConnectionId, ctx: &BuildContext) -> (String, Vec<DeviceLines<'_>>) {
        let devices = self
            .devices
            .iter()
            .map(|d| {
                let (extra, points) = K::describe_device(d);
                (&*d.spec, extra, points)
            })
            .collect();
        (K::describe_connection(&self.settings, id, ctx), devices)
    }
    fn build(self: Box<Self>, id: ConnectionId, ctx: &BuildContext) -> Box<dyn Adapter> {
        let this = *self;
        K::build(id, this.settings, this.devices, ctx)
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn compared(&self) -> String {
        let devices: Vec<_> = self
            .devices
            .iter()
            .map(|d| (d.spec.without_alarms(), &d.config, &d.points))
            .collect();
        format!("{}: {:?} {devices:?}", K::NAME, self.settings)
    }
}
