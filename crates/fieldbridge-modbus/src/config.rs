//! The Modbus adapter's part of `gateway.yaml`.
//!
//! Addresses are **0-based protocol addresses**, as they travel on the wire:
//! `holding: 0` is the first holding register. Device manuals often use the
//! Modicon numbering instead (`40001` = first holding register): write those
//! under `register:` and the table is taken from the first digit and the
//! address is the rest minus one (`register: 40101` = `holding: 100`,
//! `register: 30001` = `input: 0`, `register: 10005` = `discrete: 4`,
//! `register: 00012` or `12` = `coil: 11`; six digits work the same way:
//! `register: 400101` = `holding: 100`).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use fieldbridge_core::device::PointSource;
use fieldbridge_core::{ValueKind, duration};
use schemars::JsonSchema;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

pub use fieldbridge_serialport::Parity;

/// Registers one read may return (the protocol's limit for FC 3 and 4).
pub const MAX_REGISTERS: u16 = 125;
/// Coils or discrete inputs one read may return (FC 1 and 2).
pub const MAX_BITS: u16 = 2000;
/// Default time a device has to answer one request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
/// Default poll period of a Modbus device.
pub const DEFAULT_POLL: Duration = Duration::from_secs(5);

/// `connections.<id>.modbus_tcp`: one TCP endpoint (a device, or a gateway
/// serving several unit ids), shared by the devices on it.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModbusTcpConnection {
    /// `host:port` of the server (IP address; the standard port is 502).
    pub address: SocketAddr,
    /// How long one request may take before it counts as failed and the
    /// connection is reopened (default 1s).
    #[serde(default, deserialize_with = "duration::optional")]
    #[schemars(schema_with = "duration::optional_schema")]
    pub timeout: Option<Duration>,
    /// Requests sent at the same time, each on its own TCP connection
    /// (default 1). Raise it only for gateways that serve several unit ids
    /// in parallel; devices are spread over the connections.
    #[serde(default = "one")]
    pub max_in_flight: u8,
}

fn one() -> u8 {
    1
}

impl ModbusTcpConnection {
    /// Why these settings cannot work, if they cannot.
    pub fn check(&self) -> Result<(), String> {
        check_timeout(self.timeout)?;
        if !(1..=16).contains(&self.max_in_flight) {
            return Err(format!(
                "max_in_flight must be 1 to 16, not {}",
                self.max_in_flight
            ));
        }
        Ok(())
    }
}

fn check_timeout(t: Option<Duration>) -> Result<(), String> {
    match t {
        Some(t) if t.is_zero() => Err("timeout must be longer than 0s".into()),
        Some(t) if t > Duration::from_secs(60) => {
            Err("timeout must be at most 60s (a device that slow is offline)".into())
        }
        _ => Ok(()),
    }
}

/// `connections.<id>.modbus_rtu`: one serial bus (RS-485/RS-232). It is
/// half-duplex: its devices share one scheduler, one request at a time.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModbusRtuConnection {
    /// The port; prefer a stable `/dev/serial/by-id/…` path.
    pub port: PathBuf,
    /// Line speed (default 9600).
    #[serde(default = "default_baud")]
    pub baud: u32,
    /// Data bits, 7 or 8 (default 8).
    #[serde(default = "default_data_bits")]
    pub data_bits: u8,
    /// `none` (default), `even` (the Modbus RTU standard's default) or `odd`.
    #[serde(default)]
    pub parity: Parity,
    /// Stop bits, 1 (default) or 2.
    #[serde(default = "default_stop_bits")]
    pub stop_bits: u8,
    /// How long a device has to answer one request (default 1s). After a
    /// timeout the port is closed, one more timeout is waited out (so that
    /// a late reply cannot be taken as the next answer), and the port is
    /// reopened with its input flushed.
    #[serde(default, deserialize_with = "duration::optional")]
    #[schemars(schema_with = "duration::optional_schema")]
    pub timeout: Option<Duration>,
    /// Silence kept on the bus between two requests (default 0s); slow
    /// devices and RS-485 converters may need 10–50ms.
    #[serde(default, deserialize_with = "duration::optional")]
    #[schemars(schema_with = "duration::optional_schema")]
    pub inter_request_delay: Option<Duration>,
}

fn default_baud() -> u32 {
    9600
}
fn default_data_bits() -> u8 {
    8
}
fn default_stop_bits() -> u8 {
    1
}

impl ModbusRtuConnection {
    /// Why these settings cannot work, if they cannot.
    pub fn check(&self) -> Result<(), String> {
        check_timeout(self.timeout)?;
        if !(7..=8).contains(&self.data_bits) {
            return Err(format!("data_bits must be 7 or 8, not {}", self.data_bits));
        }
        if !(1..=2).contains(&self.stop_bits) {
            return Err(format!("stop_bits must be 1 or 2, not {}", self.stop_bits));
        }
        if self.baud == 0 {
            return Err("baud must be more than 0".into());
        }
        if self
            .inter_request_delay
            .is_some_and(|d| d > Duration::from_secs(10))
        {
            return Err("inter_request_delay must be at most 10s".into());
        }
        Ok(())
    }
}

/// A Modbus device's own keys under `devices.<id>`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModbusDevice {
    /// The unit (slave) id (default 1): 1 to 247 on an RTU bus; TCP devices
    /// often ignore it or want 255, gateways route by it.
    #[serde(default = "default_unit")]
    pub unit: u8,
    /// Registers that may be read in vain to merge two reads into one
    /// (default 8). 0 reads only registers that belong to points.
    #[serde(default = "default_max_gap")]
    pub max_gap: u16,
    /// The same for coils and discrete inputs (default 64).
    #[serde(default = "default_max_bit_gap")]
    pub max_bit_gap: u16,
    /// Most registers per read, for devices that refuse long reads
    /// (default and maximum 125).
    #[serde(default = "default_max_registers")]
    pub max_registers: u16,
    /// Most coils or discrete inputs per read (default and maximum 2000).
    #[serde(default = "default_max_bits")]
    pub max_bits: u16,
    /// Word and byte order of this device's points that do not set their
    /// own (default `ABCD`, big-endian).
    #[serde(default)]
    pub order: Order,
    /// Poll cycles in a row that must fail before the device is reported
    /// offline (default 2, so that presence changes within about two poll
    /// periods plus the timeout).
    #[serde(default = "default_offline_after")]
    pub offline_after: u32,
}

fn default_unit() -> u8 {
    1
}
fn default_max_gap() -> u16 {
    8
}
fn default_max_bit_gap() -> u16 {
    64
}
fn default_max_registers() -> u16 {
    MAX_REGISTERS
}
fn default_max_bits() -> u16 {
    MAX_BITS
}
fn default_offline_after() -> u32 {
    2
}

impl Default for ModbusDevice {
    fn default() -> Self {
        Self {
            unit: default_unit(),
            max_gap: default_max_gap(),
            max_bit_gap: default_max_bit_gap(),
            max_registers: default_max_registers(),
            max_bits: default_max_bits(),
            order: Order::default(),
            offline_after: default_offline_after(),
        }
    }
}

impl ModbusDevice {
    /// Why these settings cannot work, if they cannot.
    pub fn check(&self) -> Result<(), String> {
        if !(1..=MAX_REGISTERS).contains(&self.max_registers) {
            return Err(format!(
                "max_registers must be 1 to {MAX_REGISTERS}, not {}",
                self.max_registers
            ));
        }
        if !(1..=MAX_BITS).contains(&self.max_bits) {
            return Err(format!(
                "max_bits must be 1 to {MAX_BITS}, not {}",
                self.max_bits
            ));
        }
        if self.offline_after == 0 {
            return Err("offline_after must be 1 or more".into());
        }
        Ok(())
    }
}

/// The four Modbus tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// Read/write bits (FC 1, 5, 15).
    Coil,
    /// Read-only bits (FC 2).
    Discrete,
    /// Read-only registers (FC 4).
    Input,
    /// Read/write registers (FC 3, 6, 16).
    Holding,
}

impl Table {
    /// The key as written in `gateway.yaml`.
    pub fn name(self) -> &'static str {
        match self {
            Table::Coil => "coil",
            Table::Discrete => "discrete",
            Table::Input => "input",
            Table::Holding => "holding",
        }
    }

    /// The table's entry in words, with its article: `a coil`,
    /// `a discrete input`, `an input register`, `a holding register`.
    pub fn describe(self) -> &'static str {
        match self {
            Table::Coil => "a coil",
            Table::Discrete => "a discrete input",
            Table::Input => "an input register",
            Table::Holding => "a holding register",
        }
    }

    /// True for the bit tables (coils, discrete inputs).
    pub fn is_bits(self) -> bool {
        matches!(self, Table::Coil | Table::Discrete)
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A point's data type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DataType {
    /// A coil or discrete input; or one bit of a register (with `bit`).
    Bool,
    /// One register, unsigned.
    U16,
    /// One register, two's complement.
    I16,
    /// Two registers, unsigned.
    U32,
    /// Two registers, two's complement.
    I32,
    /// Four registers, unsigned (values above 2^63-1 are reported bad).
    U64,
    /// Four registers, two's complement.
    I64,
    /// Two registers, IEEE 754 single precision.
    F32,
    /// Four registers, IEEE 754 double precision.
    F64,
    /// `count` registers of text, two bytes per register; trailing NULs
    /// and spaces are removed.
    String,
}

impl DataType {
    /// The type as written in `gateway.yaml`.
    pub fn name(self) -> &'static str {
        match self {
            DataType::Bool => "bool",
            DataType::U16 => "u16",
            DataType::I16 => "i16",
            DataType::U32 => "u32",
            DataType::I32 => "i32",
            DataType::U64 => "u64",
            DataType::I64 => "i64",
            DataType::F32 => "f32",
            DataType::F64 => "f64",
            DataType::String => "string",
        }
    }

    /// Registers a value of this type takes (strings: their `count`).
    pub fn registers(self, count: u16) -> u16 {
        match self {
            DataType::Bool | DataType::U16 | DataType::I16 => 1,
            DataType::U32 | DataType::I32 | DataType::F32 => 2,
            DataType::U64 | DataType::I64 | DataType::F64 => 4,
            DataType::String => count,
        }
    }
}

/// Byte order within the value, as the registers carry it. Letters name
/// the value's bytes from the most significant (`A`); the order lists them
/// as they arrive. For 64-bit values `CDAB` and `DCBA` reverse the order of
/// all four registers. 16-bit values only see the byte swap (`BADC`,
/// `DCBA`); strings keep their register order and swap bytes within each
/// register for `BADC` and `DCBA`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
pub enum Order {
    /// Big-endian: the Modbus standard.
    #[default]
    ABCD,
    /// Word-swapped (little-endian register order, big-endian registers).
    CDAB,
    /// Byte-swapped within each register.
    BADC,
    /// Little-endian.
    DCBA,
}

impl Order {
    /// The order as written in `gateway.yaml`.
    pub fn name(self) -> &'static str {
        match self {
            Order::ABCD => "ABCD",
            Order::CDAB => "CDAB",
            Order::BADC => "BADC",
            Order::DCBA => "DCBA",
        }
    }
    /// True when bytes are swapped within each register.
    pub fn byte_swap(self) -> bool {
        matches!(self, Order::BADC | Order::DCBA)
    }
    /// True when the register order is reversed.
    pub fn word_swap(self) -> bool {
        matches!(self, Order::CDAB | Order::DCBA)
    }
}

/// `enum: { 0: off, 1: on, 2: fault }`: names for the values of an integer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnumMap(pub BTreeMap<i64, String>);

impl<'de> Deserialize<'de> for EnumMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = EnumMap;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of whole numbers to names, e.g. { 0: off, 1: on }")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<EnumMap, A::Error> {
                let mut out: BTreeMap<i64, String> = BTreeMap::new();
                while let Some(key) = map.next_key::<String>()? {
                    let n: i64 = key.trim().parse().map_err(|_| {
                        de::Error::custom(format!("enum key `{key}` is not a whole number"))
                    })?;
                    let Name(name) = map.next_value()?;
                    // Writes match names ignoring case, so `on` and `ON`
                    // would be one name for two values.
                    if let Some(other) = out.values().find(|v| v.eq_ignore_ascii_case(&name)) {
                        return Err(de::Error::custom(if other == &name {
                            format!("enum name `{name}` is used twice")
                        } else {
                            format!(
                                "enum names `{other}` and `{name}` differ only in case; writes would not tell them apart"
                            )
                        }));
                    }
                    if out.insert(n, name).is_some() {
                        return Err(de::Error::custom(format!("enum key {n} is used twice")));
                    }
                }
                Ok(EnumMap(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl JsonSchema for EnumMap {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "EnumMap".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "object",
            "propertyNames": { "pattern": r"^\s*[+-]?[0-9]+\s*$" },
            "additionalProperties": { "type": ["string", "integer", "boolean"] },
        })
    }
}

/// An enum name. YAML reads unquoted `on`/`off` (and `yes`/`no`,
/// `true`/`false`) as booleans: they become `on` and `off`.
struct Name(String);

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Name;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Name, E> {
                Ok(Name(v.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Name, E> {
                Ok(Name(if v { "on" } else { "off" }.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Name, E> {
                Ok(Name(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Name, E> {
                Ok(Name(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A Modbus point's own keys: where its value is and how it is encoded.
/// Exactly one of `coil`, `discrete`, `input`, `holding` or `register`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModbusPoint {
    /// A coil, by 0-based address.
    #[serde(default)]
    pub coil: Option<u16>,
    /// A discrete input, by 0-based address.
    #[serde(default)]
    pub discrete: Option<u16>,
    /// An input register, by 0-based address (the first of a multi-register value).
    #[serde(default)]
    pub input: Option<u16>,
    /// A holding register, by 0-based address (the first of a multi-register value).
    #[serde(default)]
    pub holding: Option<u16>,
    /// Modicon numbering (`40001` = `holding: 0`, `30001` = `input: 0`,
    /// `10001` = `discrete: 0`, `1` = `coil: 0`; six digits likewise).
    #[serde(default)]
    pub register: Option<u32>,
    /// The data type (default `bool` for coils and discrete inputs, `u16`
    /// for registers).
    #[serde(default, rename = "type")]
    pub data_type: Option<DataType>,
    /// Byte and word order (default: the device's `order`).
    #[serde(default)]
    pub order: Option<Order>,
    /// For `type: bool` on a register: the bit, 0 (least significant) to 15.
    #[serde(default)]
    pub bit: Option<u8>,
    /// For `type: string`: how many registers the text takes (1 to 125).
    #[serde(default)]
    pub count: Option<u16>,
    /// Names for integer values (`{ 0: off, 1: on, 2: fault }`): the point
    /// reports the name, and writes take a name. Unquoted `on`/`off`/`yes`/
    /// `no`/`true`/`false` are YAML booleans and become `on` and `off`.
    #[serde(default, rename = "enum")]
    pub names: Option<EnumMap>,
    /// Lowest value a write may set (in the point's unit, after scaling).
    #[serde(default)]
    pub min: Option<f64>,
    /// Highest value a write may set (in the point's unit, after scaling).
    #[serde(default)]
    pub max: Option<f64>,
    /// Write with FC 15/16 even for one coil or register (for devices that
    /// do not implement FC 5/6).
    #[serde(default)]
    pub write_multiple: bool,
}

/// Where a point lives, once its config is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// The table.
    pub table: Table,
    /// The 0-based address of its first register or bit.
    pub address: u16,
}

/// Splits a Modicon-style number (`40101`) into table and 0-based address.
pub fn modicon(number: u32) -> Result<Location, String> {
    let (table_digit, rest) = match number {
        0..=99_999 => (number / 10_000, number % 10_000),
        100_000..=499_999 => (number / 100_000, number % 100_000),
        _ => {
            return Err(format!(
                "register {number} is not Modicon numbering (5 or 6 digits, first digit 0, 1, 3 or 4)"
            ));
        }
    };
    let table = match table_digit {
        0 => Table::Coil,
        1 => Table::Discrete,
        3 => Table::Input,
        4 => Table::Holding,
        d => {
            return Err(format!(
                "register {number}: first digit {d} names no table (0 coil, 1 discrete, 3 input, 4 holding)"
            ));
        }
    };
    if rest == 0 || rest > 65_536 {
        return Err(format!(
            "register {number}: Modicon numbers count from 1 (e.g. 40001 is holding register 0)"
        ));
    }
    Ok(Location {
        table,
        address: (rest - 1) as u16,
    })
}

impl ModbusPoint {
    /// The point's table and address.
    pub fn location(&self) -> Result<Location, String> {
        let given: Vec<Location> = [
            (Table::Coil, self.coil),
            (Table::Discrete, self.discrete),
            (Table::Input, self.input),
            (Table::Holding, self.holding),
        ]
        .into_iter()
        .filter_map(|(table, a)| a.map(|address| Location { table, address }))
        .collect();
        match (given.as_slice(), self.register) {
            ([one], None) => Ok(*one),
            ([], Some(n)) => modicon(n),
            ([], None) => Err(
                "a Modbus point needs one of `coil`, `discrete`, `input`, `holding` (0-based) or `register` (Modicon, e.g. 40001)"
                    .into(),
            ),
            _ => Err(
                "give only one of `coil`, `discrete`, `input`, `holding` or `register`".into(),
            ),
        }
    }

    /// The data type, with the table's default.
    pub fn data_type(&self) -> DataType {
        match (self.data_type, self.location()) {
            (Some(t), _) => t,
            (None, Ok(l)) if l.table.is_bits() => DataType::Bool,
            (None, _) => DataType::U16,
        }
    }

    /// Registers (or bits) the point takes.
    pub fn width(&self) -> u16 {
        match self.location() {
            Ok(l) if l.table.is_bits() => 1,
            _ => self.data_type().registers(self.count.unwrap_or(0)),
        }
    }

    /// Checks the point on its own.
    pub fn check(&self) -> Result<(), String> {
        let loc = self.location()?;
        let t = self.data_type();
        if loc.table.is_bits() && t != DataType::Bool {
            return Err(format!(
                "{} holds one bit: its type can only be bool, not {}",
                loc.table.describe(),
                t.name()
            ));
        }
        if loc.table.is_bits() && (self.bit.is_some() || self.order.is_some()) {
            return Err(format!(
                "`bit` and `order` apply to registers, not to {}",
                loc.table.describe()
            ));
        }
        if !loc.table.is_bits() && t == DataType::Bool {
            match self.bit {
                None => {
                    return Err(
                        "a bool in a register needs `bit` (0 = least significant, to 15)".into(),
                    );
                }
                Some(b) if b > 15 => return Err(format!("bit must be 0 to 15, not {b}")),
                _ => {}
            }
        } else if self.bit.is_some() {
            return Err(format!(
                "`bit` applies to `type: bool` on a register, not to {}",
                t.name()
            ));
        }
        match (t, self.count) {
            (DataType::String, None) => {
                return Err(
                    "a string needs `count`: how many registers it takes (2 characters each)"
                        .into(),
                );
            }
            (DataType::String, Some(c)) if !(1..=MAX_REGISTERS).contains(&c) => {
                return Err(format!("count must be 1 to {MAX_REGISTERS}, not {c}"));
            }
            (DataType::String, Some(_)) => {}
            (_, Some(_)) => return Err("`count` applies to `type: string` only".into()),
            _ => {}
        }
        let end = u32::from(loc.address) + u32::from(self.width());
        if end > 65_536 {
            return Err(format!(
                "{} {} with {} registers runs past the last address 65535",
                loc.table,
                loc.address,
                self.width()
            ));
        }
        if let Some(names) = &self.names {
            if !matches!(
                t,
                DataType::U16
                    | DataType::I16
                    | DataType::U32
                    | DataType::I32
                    | DataType::U64
                    | DataType::I64
            ) {
                return Err(format!(
                    "`enum` applies to integer types, not to {}",
                    t.name()
                ));
            }
            if names.0.is_empty() {
                return Err("`enum` needs at least one value".into());
            }
        }
        if (self.min.is_some() || self.max.is_some())
            && (self.names.is_some() || matches!(t, DataType::Bool | DataType::String))
        {
            return Err("`min` and `max` apply to numeric points only".into());
        }
        if let (Some(lo), Some(hi)) = (self.min, self.max)
            && lo > hi
        {
            return Err(format!("min ({lo}) is more than max ({hi})"));
        }
        if self.write_multiple && loc.table.is_bits() && loc.table != Table::Coil {
            return Err("`write_multiple` applies to coils and holding registers".into());
        }
        Ok(())
    }
}

impl PointSource for ModbusPoint {
    fn kind(&self) -> ValueKind {
        if self.names.is_some() {
            return ValueKind::Text;
        }
        match self.data_type() {
            DataType::Bool => ValueKind::Bool,
            DataType::String => ValueKind::Text,
            DataType::F32 | DataType::F64 => ValueKind::Float,
            _ => ValueKind::Int,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modicon_numbers_map_to_table_and_zero_based_address() {
        let l = |t, a| {
            Ok(Location {
                table: t,
                address: a,
            })
        };
        assert_eq!(modicon(40001), l(Table::Holding, 0));
        assert_eq!(modicon(40101), l(Table::Holding, 100));
        assert_eq!(modicon(400101), l(Table::Holding, 100));
        assert_eq!(modicon(465536), l(Table::Holding, 65535));
        assert_eq!(modicon(30001), l(Table::Input, 0));
        assert_eq!(modicon(10005), l(Table::Discrete, 4));
        assert_eq!(modicon(12), l(Table::Coil, 11));
        assert!(modicon(40000).is_err());
        assert!(modicon(20001).unwrap_err().contains("first digit 2"));
        assert!(modicon(500001).is_err());
    }

    #[test]
    fn enum_names_that_writes_could_confuse_are_refused() {
        let names = |json: &str| serde_json::from_str::<EnumMap>(json).map_err(|e| e.to_string());
        assert!(names(r#"{"0": "off", "1": "on"}"#).is_ok());
        let e = names(r#"{"0": "on", "1": "ON"}"#).unwrap_err();
        assert!(e.contains("`on` and `ON` differ only in case"), "{e}");
        let e = names(r#"{"0": "on", "1": "on"}"#).unwrap_err();
        assert!(e.contains("`on` is used twice"), "{e}");
    }

    #[test]
    fn a_point_is_checked_against_its_table_and_type() {
        let p = |f: fn(&mut ModbusPoint)| {
            let mut p = ModbusPoint::default();
            f(&mut p);
            p.check()
        };
        assert!(p(|p| p.holding = Some(3)).is_ok());
        assert!(p(|_| {}).unwrap_err().contains("needs one of"));
        assert!(
            p(|p| {
                p.holding = Some(3);
                p.coil = Some(1)
            })
            .unwrap_err()
            .contains("only one")
        );
        assert!(
            p(|p| {
                p.coil = Some(3);
                p.data_type = Some(DataType::U16)
            })
            .unwrap_err()
            .contains("only be bool")
        );
        assert!(
            p(|p| {
                p.holding = Some(3);
                p.data_type = Some(DataType::Bool)
            })
            .unwrap_err()
            .contains("needs `bit`")
        );
        assert!(
            p(|p| {
                p.holding = Some(65534);
                p.data_type = Some(DataType::F32)
            })
            .is_ok()
        );
        assert!(
            p(|p| {
                p.holding = Some(65535);
                p.data_type = Some(DataType::F32)
            })
            .unwrap_err()
            .contains("runs past")
        );
        assert!(
            p(|p| {
                p.input = Some(0);
                p.data_type = Some(DataType::String)
            })
            .unwrap_err()
            .contains("needs `count`")
        );
        assert!(
            p(|p| {
                p.holding = Some(0);
                p.min = Some(5.0);
                p.max = Some(1.0)
            })
            .unwrap_err()
            .contains("more than max")
        );
    }
}
