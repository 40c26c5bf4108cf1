//! `modbus_tcp:` and `modbus_rtu:` as connection kinds (see
//! [`fieldbridge_core::kind`]). Both carry the same devices and points, so
//! they share their device checks, their lines in `check` and one device
//! shape in the JSON schema (`modbus`); only the transport differs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::marker::PhantomData;
use std::time::Duration;

use fieldbridge_core::adapter::Adapter;
use fieldbridge_core::device::AdapterDevice;
use fieldbridge_core::duration;
use fieldbridge_core::kind::{AdapterKind, BuildContext, Described, DeviceProblem};
use fieldbridge_core::{ConnectionId, DeviceSpec, PointId};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use crate::config::{
    DEFAULT_POLL, ModbusDevice, ModbusPoint, ModbusRtuConnection, ModbusTcpConnection, Parity,
    SettingsError, Table,
};
use crate::plan::{Limits, Span, plan};
use crate::{ModbusAdapter, Transport};

/// `modbus_tcp:` endpoints.
pub type ModbusTcp = Modbus<ModbusTcpConnection>;

/// `modbus_rtu:` buses.
pub type ModbusRtu = Modbus<ModbusRtuConnection>;

/// A Modbus connection kind, by its transport's settings: everything but
/// the transport is the same for both.
#[derive(Debug)]
pub struct Modbus<T>(PhantomData<fn() -> T>);

/// What differs between `modbus_tcp:` and `modbus_rtu:`: their settings.
pub trait ModbusTransport:
    DeserializeOwned + JsonSchema + std::fmt::Debug + Send + Sync + 'static
{
    /// `connections.<id>.<NAME>`
    const NAME: &'static str;
    /// Checks the settings beyond what serde can.
    fn check(&self) -> Result<(), SettingsError>;
    /// What `check` prints after the connection's line.
    fn describe(&self) -> String;
    /// The transport the adapter runs.
    fn into_transport(self) -> Transport;
}

impl ModbusTransport for ModbusTcpConnection {
    const NAME: &'static str = "modbus_tcp";
    fn check(&self) -> Result<(), SettingsError> {
        ModbusTcpConnection::check(self)
    }
    fn describe(&self) -> String {
        let mut extra = format!(", {}", self.address);
        if let Some(t) = self.timeout {
            let _ = write!(extra, ", timeout {}", duration::format(t));
        }
        if self.max_in_flight > 1 {
            let _ = write!(extra, ", {} requests in flight", self.max_in_flight);
        }
        extra
    }
    fn into_transport(self) -> Transport {
        Transport::Tcp(self)
    }
}

impl ModbusTransport for ModbusRtuConnection {
    const NAME: &'static str = "modbus_rtu";
    fn check(&self) -> Result<(), SettingsError> {
        ModbusRtuConnection::check(self)
    }
    fn describe(&self) -> String {
        let parity = match self.parity {
            Parity::None => 'N',
            Parity::Even => 'E',
            Parity::Odd => 'O',
        };
        let mut extra = format!(
            ", {} at {} baud {}{parity}{}",
            self.port.display(),
            self.baud,
            self.data_bits,
            self.stop_bits
        );
        if let Some(t) = self.timeout {
            let _ = write!(extra, ", timeout {}", duration::format(t));
        }
        if let Some(d) = self.inter_request_delay {
            let _ = write!(extra, ", inter_request_delay {}", duration::format(d));
        }
        extra
    }
    fn into_transport(self) -> Transport {
        Transport::Rtu(self)
    }
}

impl<T: ModbusTransport> AdapterKind for Modbus<T> {
    const NAME: &'static str = T::NAME;
    /// Both Modbus kinds share one device shape in the JSON schema.
    const SHAPE: &'static str = "modbus";
    const DEFAULT_POLL: Option<Duration> = Some(DEFAULT_POLL);
    type Connection = T;
    type Device = ModbusDevice;
    type Point = ModbusPoint;

    fn check_connection(settings: &T) -> Result<(), String> {
        settings.check().map_err(|e| e.to_string())
    }
    fn check_device(
        device: &ModbusDevice,
        points: &BTreeMap<PointId, ModbusPoint>,
    ) -> Vec<DeviceProblem> {
        device_problems(device, points)
    }
    fn check_spec(
        spec: &DeviceSpec,
        points: &BTreeMap<PointId, ModbusPoint>,
    ) -> Vec<DeviceProblem> {
        spec_problems(spec, points)
    }

    fn describe_connection(settings: &T, _id: &ConnectionId, _ctx: &BuildContext) -> String {
        settings.describe()
    }
    fn describe_device(d: &AdapterDevice<ModbusDevice, ModbusPoint>) -> Described {
        describe_device(d)
    }

    fn build(
        id: ConnectionId,
        settings: T,
        devices: Vec<AdapterDevice<ModbusDevice, ModbusPoint>>,
        _ctx: &BuildContext,
    ) -> Box<dyn Adapter> {
        Box::new(ModbusAdapter::new(id, settings.into_transport(), devices))
    }
}

/// A device's settings, and each point's width against the most one read
/// may fetch: a point wider than that could never be read.
fn device_problems(
    device: &ModbusDevice,
    points: &BTreeMap<PointId, ModbusPoint>,
) -> Vec<DeviceProblem> {
    if let Err(e) = device.check() {
        return vec![(None, e.to_string())];
    }
    points
        .iter()
        .filter_map(|(id, p)| {
            let limit = if p.location().table.is_bits() {
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
fn spec_problems(spec: &DeviceSpec, points: &BTreeMap<PointId, ModbusPoint>) -> Vec<DeviceProblem> {
    points
        .iter()
        .filter_map(|(id, p)| {
            let at = p.location();
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

/// A device's lines in `check`: its unit, word order and how many reads
/// one poll takes; each point's address and type.
fn describe_device(d: &AdapterDevice<ModbusDevice, ModbusPoint>) -> Described {
    let c = &d.config;
    let spans: Vec<Span> = d
        .points
        .values()
        .map(|p| Span {
            at: p.location(),
            width: p.width(),
        })
        .collect();
    let limits = Limits {
        max_registers: c.max_registers,
        max_bits: c.max_bits,
        max_gap: c.max_gap,
        max_bit_gap: c.max_bit_gap,
    };
    let reads = plan(&spans, limits).len();
    let extra = format!(
        ", unit {}, order {}, max_gap {}, {reads} read(s) per poll",
        c.unit,
        c.order.name(),
        c.max_gap
    );
    let points = d
        .points
        .iter()
        .map(|(id, p)| {
            let mut line = String::new();
            let at = p.location();
            let _ = write!(line, ", {} {}", at.table, at.address);
            if !at.table.is_bits() {
                let _ = write!(line, " {}", p.data_type().name());
            }
            if let Some(c) = p.count() {
                let _ = write!(line, "[{c}]");
            }
            if let Some(b) = p.bit() {
                let _ = write!(line, " bit {b}");
            }
            if let Some(o) = p.order() {
                let _ = write!(line, " {}", o.name());
            }
            if let Some(names) = p.names() {
                let list: Vec<String> = names.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let _ = write!(line, " enum {{{}}}", list.join(", "));
            }
            (id.clone(), line)
        })
        .collect();
    (extra, points)
}
