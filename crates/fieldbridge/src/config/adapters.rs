//! The connection kinds the loader knows, each described once.
//!
//! Adding an adapter (modbus_tcp, modbus_rtu, mqtt, serial) is: one
//! [`ConnectionKind`] variant, one [`AdapterKind`] impl naming its
//! connection, device and point structs, and one arm in [`declare`]. The
//! loader does the rest (key splitting between core and adapter structs,
//! unknown keys, point checks, staleness defaults) generically.
//!
//! Adapter structs are plain `#[derive(Deserialize)]` structs with
//! `#[serde(deny_unknown_fields)]` and no `#[serde(flatten)]`: the loader
//! learns their keys from the field list serde passes to
//! `deserialize_struct`, and splits each mapping between core and adapter.

use std::time::Duration;

use fieldbridge_core::device::{AdapterDevice, PointSource};
use std::collections::BTreeMap;

use fieldbridge_core::simulator::{self, SimulatorConnection, SimulatorDevice, SimulatorPoint};
use fieldbridge_core::{DeviceId, DeviceSpec, PointId};
use fieldbridge_modbus::config::{
    DEFAULT_POLL as MODBUS_DEFAULT_POLL, ModbusDevice, ModbusPoint, ModbusRtuConnection,
    ModbusTcpConnection, Table,
};
use fieldbridge_mqtt::config::{MqttConnection, MqttDevice, MqttPoint};
use fieldbridge_serial::config::{SerialConnection, SerialDevice, SerialPoint};
use fieldbridge_serial::format::Parser;
use serde::de::DeserializeOwned;

use super::de::{Problems, read};
use super::tree::{Kind, Node};
use super::{ConnectionKind, Loader};

/// Connection kinds this version understands, as written in `gateway.yaml`.
pub const KINDS: &[&str] = &["simulator", "serial", "modbus_tcp", "modbus_rtu", "mqtt"];

/// What the loader needs to know of one connection kind.
pub trait AdapterKind: 'static {
    /// `connections.<id>.<kind>`
    type Connection: DeserializeOwned;
    /// The adapter's own keys under `devices.<id>`, beside core's.
    type Device: DeserializeOwned;
    /// The adapter's own keys under `devices.<id>.points.<id>`, beside core's.
    type Point: DeserializeOwned + PointSource;
    /// Poll period of a device that does not set `poll` (None: push device).
    const DEFAULT_POLL: Option<Duration>;
    /// Checks one point beyond what serde can (e.g. a constant needs a value).
    fn check_point(_point: &Self::Point) -> Result<(), String> {
        Ok(())
    }
    /// Checks the connection's settings beyond what serde can.
    fn check_connection(_settings: &Self::Connection) -> Result<(), String> {
        Ok(())
    }
    /// Checks a device as a whole: its settings, and its points against
    /// them (a CSV device's points need a column). Problems name the point
    /// they are about, or none for the device itself.
    fn check_device(
        _device: &Self::Device,
        _points: &BTreeMap<PointId, Self::Point>,
    ) -> Vec<(Option<PointId>, String)> {
        Vec::new()
    }
    /// Checks a device's points against core's view of them (writable,
    /// scale), which the adapter's own structs do not carry.
    fn check_spec(
        _spec: &DeviceSpec,
        _points: &BTreeMap<PointId, Self::Point>,
    ) -> Vec<(Option<PointId>, String)> {
        Vec::new()
    }
    /// True when this "device" is a rule that creates devices at run time
    /// (an MQTT template): it is handed to the adapter but is not itself a
    /// device in the directory.
    fn is_rule(_device: &Self::Device) -> bool {
        false
    }
    /// The finished connection.
    fn build(
        settings: Self::Connection,
        devices: Vec<AdapterDevice<Self::Device, Self::Point>>,
    ) -> ConnectionKind;
}

/// `simulator:` synthetic devices.
pub struct Simulator;

impl AdapterKind for Simulator {
    type Connection = SimulatorConnection;
    type Device = SimulatorDevice;
    type Point = SimulatorPoint;
    const DEFAULT_POLL: Option<Duration> = Some(simulator::DEFAULT_POLL);
    fn check_point(point: &SimulatorPoint) -> Result<(), String> {
        point.check()
    }
    fn build(
        settings: SimulatorConnection,
        devices: Vec<AdapterDevice<SimulatorDevice, SimulatorPoint>>,
    ) -> ConnectionKind {
        ConnectionKind::Simulator { settings, devices }
    }
}

/// `serial:` lines.
pub struct Serial;

impl AdapterKind for Serial {
    type Connection = SerialConnection;
    type Device = SerialDevice;
    type Point = SerialPoint;
    const DEFAULT_POLL: Option<Duration> = None;
    fn check_connection(settings: &SerialConnection) -> Result<(), String> {
        settings.check()
    }
    fn check_device(
        device: &SerialDevice,
        points: &BTreeMap<PointId, SerialPoint>,
    ) -> Vec<(Option<PointId>, String)> {
        let parser = match Parser::new(device) {
            Ok(p) => p,
            Err(e) => return vec![(None, e)],
        };
        let mut out: Vec<(Option<PointId>, String)> = points
            .iter()
            .filter_map(|(id, p)| parser.check_point(p).err().map(|e| (Some(id.clone()), e)))
            .collect();
        if let Some(ack) = device.write.as_ref().and_then(|w| w.ack.as_deref())
            && let Err(e) = regex::Regex::new(ack)
        {
            out.push((
                None,
                format!("write.ack is not a valid regular expression: {e}"),
            ));
        }
        out
    }
    fn build(
        settings: SerialConnection,
        devices: Vec<AdapterDevice<SerialDevice, SerialPoint>>,
    ) -> ConnectionKind {
        ConnectionKind::Serial { settings, devices }
    }
}

/// A Modbus transport's settings: `modbus_tcp:` endpoints and
/// `modbus_rtu:` buses carry the same devices and points.
pub trait ModbusTransport: DeserializeOwned + 'static {
    /// Checks the settings beyond what serde can.
    fn check(&self) -> Result<(), String>;
    /// The finished connection.
    fn build(self, devices: Vec<AdapterDevice<ModbusDevice, ModbusPoint>>) -> ConnectionKind;
}

impl ModbusTransport for ModbusTcpConnection {
    fn check(&self) -> Result<(), String> {
        ModbusTcpConnection::check(self)
    }
    fn build(self, devices: Vec<AdapterDevice<ModbusDevice, ModbusPoint>>) -> ConnectionKind {
        ConnectionKind::ModbusTcp {
            settings: self,
            devices,
        }
    }
}

impl ModbusTransport for ModbusRtuConnection {
    fn check(&self) -> Result<(), String> {
        ModbusRtuConnection::check(self)
    }
    fn build(self, devices: Vec<AdapterDevice<ModbusDevice, ModbusPoint>>) -> ConnectionKind {
        ConnectionKind::ModbusRtu {
            settings: self,
            devices,
        }
    }
}

/// `modbus_tcp:` or `modbus_rtu:`, by its transport's settings.
pub struct Modbus<T>(std::marker::PhantomData<T>);

impl<T: ModbusTransport> AdapterKind for Modbus<T> {
    type Connection = T;
    type Device = ModbusDevice;
    type Point = ModbusPoint;
    const DEFAULT_POLL: Option<Duration> = Some(MODBUS_DEFAULT_POLL);
    fn check_point(point: &ModbusPoint) -> Result<(), String> {
        point.check()
    }
    fn check_connection(settings: &T) -> Result<(), String> {
        settings.check()
    }
    fn check_device(
        device: &ModbusDevice,
        points: &BTreeMap<PointId, ModbusPoint>,
    ) -> Vec<(Option<PointId>, String)> {
        modbus_device_problems(device, points)
    }
    fn check_spec(
        spec: &DeviceSpec,
        points: &BTreeMap<PointId, ModbusPoint>,
    ) -> Vec<(Option<PointId>, String)> {
        modbus_spec_problems(spec, points)
    }
    fn build(
        settings: T,
        devices: Vec<AdapterDevice<ModbusDevice, ModbusPoint>>,
    ) -> ConnectionKind {
        settings.build(devices)
    }
}

/// A Modbus device's settings, and its points against them.
fn modbus_device_problems(
    device: &ModbusDevice,
    points: &BTreeMap<PointId, ModbusPoint>,
) -> Vec<(Option<PointId>, String)> {
    if let Err(e) = device.check() {
        return vec![(None, e)];
    }
    points
        .iter()
        .filter_map(|(id, p)| {
            let at = p.location().ok()?;
            let limit = if at.table.is_bits() {
                device.max_bits
            } else {
                device.max_registers
            };
            (p.width() > limit).then(|| {
                (
                    Some(id.clone()),
                    format!(
                        "the point takes {} registers, more than the device's max_registers {limit}",
                        p.width()
                    ),
                )
            })
        })
        .collect()
}

/// Writability against the Modbus tables: only coils and holding
/// registers can be written.
fn modbus_spec_problems(
    spec: &DeviceSpec,
    points: &BTreeMap<PointId, ModbusPoint>,
) -> Vec<(Option<PointId>, String)> {
    points
        .iter()
        .filter_map(|(id, p)| {
            let at = p.location().ok()?;
            let writable = spec.points.get(id)?.settings.writable;
            (writable && !matches!(at.table, Table::Coil | Table::Holding)).then(|| {
                (
                    Some(id.clone()),
                    format!(
                        "{} cannot be written: Modbus writes only coils and holding registers",
                        at.table.describe()
                    ),
                )
            })
        })
        .collect()
}

/// `mqtt:` brokers.
pub struct Mqtt;

impl AdapterKind for Mqtt {
    type Connection = MqttConnection;
    type Device = MqttDevice;
    type Point = MqttPoint;
    const DEFAULT_POLL: Option<Duration> = None;
    fn check_connection(settings: &MqttConnection) -> Result<(), String> {
        settings.check()
    }
    fn check_point(point: &MqttPoint) -> Result<(), String> {
        point.check()
    }
    fn check_device(
        device: &MqttDevice,
        points: &BTreeMap<PointId, MqttPoint>,
    ) -> Vec<(Option<PointId>, String)> {
        fieldbridge_mqtt::config::check_device(device, points)
    }
    fn is_rule(device: &MqttDevice) -> bool {
        device.is_template()
    }
    fn check_spec(
        spec: &DeviceSpec,
        points: &BTreeMap<PointId, MqttPoint>,
    ) -> Vec<(Option<PointId>, String)> {
        points
            .iter()
            .filter_map(|(id, p)| {
                let writable = spec.points.get(id).is_some_and(|s| s.settings.writable);
                match (writable, &p.command_topic) {
                    (true, None) => Some((
                        Some(id.clone()),
                        "a writable point needs a `command_topic` to publish writes on".into(),
                    )),
                    (false, Some(_)) => Some((
                        Some(id.clone()),
                        "`command_topic` is for writable points: add `writable: true`".into(),
                    )),
                    _ => None,
                }
            })
            .collect()
    }
    fn build(
        settings: MqttConnection,
        devices: Vec<AdapterDevice<MqttDevice, MqttPoint>>,
    ) -> ConnectionKind {
        ConnectionKind::Mqtt { settings, devices }
    }
}

/// Reads `connections.<id>.<kind>`. `None` when the kind is not one this
/// version can run (the problem is recorded).
pub fn declare(
    kind: &str,
    settings: &Node,
    path: &str,
    problems: &Problems,
) -> Option<Box<dyn PendingConnection>> {
    match kind {
        "simulator" => Some(Pending::<Simulator>::declare(settings, path, problems)),
        "serial" => Some(Pending::<Serial>::declare(settings, path, problems)),
        "modbus_tcp" => Some(Pending::<Modbus<ModbusTcpConnection>>::declare(
            settings, path, problems,
        )),
        "modbus_rtu" => Some(Pending::<Modbus<ModbusRtuConnection>>::declare(
            settings, path, problems,
        )),
        "mqtt" => Some(Pending::<Mqtt>::declare(settings, path, problems)),
        _ => None,
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
    fn finish(self: Box<Self>) -> Option<ConnectionKind>;
}

struct Pending<K: AdapterKind> {
    settings: Option<K::Connection>,
    devices: Vec<AdapterDevice<K::Device, K::Point>>,
}

impl<K: AdapterKind> Pending<K> {
    fn declare(node: &Node, path: &str, problems: &Problems) -> Box<dyn PendingConnection> {
        // `simulator:` with nothing after the colon means "no settings".
        let node = match node.kind {
            Kind::Null => Node {
                origin: node.origin.clone(),
                kind: Kind::Map(Vec::new()),
            },
            _ => node.clone(),
        };
        let settings = read::<K::Connection>(&node, path, &[], true, problems).filter(|s| {
            K::check_connection(s)
                .map_err(|e| problems.push(&node.origin, path, e))
                .is_ok()
        });
        Box::new(Pending::<K> {
            settings,
            devices: Vec::new(),
        })
    }
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

    fn finish(self: Box<Self>) -> Option<ConnectionKind> {
        let this = *self;
        Some(K::build(this.settings?, this.devices))
    }
}
