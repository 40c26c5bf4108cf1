//! A point's own keys: where its value is and how it is encoded.
//!
//! `gateway.yaml` spells a point loosely ([`RawModbusPoint`]: one of five
//! address keys, most keys optional); the loader turns it into a
//! [`ModbusPoint`] through [`TryFrom`], so a loaded point always has one
//! valid location, a data type that fits its table, and a width that fits
//! the address space. Adapter code reads it without re-checking.

use fieldbridge_core::ValueKind;
use fieldbridge_core::device::PointSource;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{DataType, EnumMap, MAX_REGISTERS, Order, Table};

/// A Modbus point's own keys: where its value is and how it is encoded.
/// Exactly one of `coil`, `discrete`, `input`, `holding` or `register`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "ModbusPoint")]
pub struct RawModbusPoint {
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
    /// Write with FC 15/16 even for one coil or register (for devices that
    /// do not implement FC 5/6).
    #[serde(default)]
    pub write_multiple: bool,
}

impl RawModbusPoint {
    /// The one location the address keys name.
    pub fn location(&self) -> Result<Location, LocationError> {
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
            ([], None) => Err(LocationError::Missing),
            _ => Err(LocationError::Several),
        }
    }
}

/// Where a point lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// The table.
    pub table: Table,
    /// The 0-based address of its first register or bit.
    pub address: u16,
}

/// Why a point's address keys name no location.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    /// `register:` out of the 5- and 6-digit ranges.
    #[error("register {0} is not Modicon numbering (5 or 6 digits, first digit 0, 1, 3 or 4)")]
    NotModicon(u32),
    /// `register:` whose first digit is 2 or 5 to 9.
    #[error(
        "register {number}: first digit {digit} names no table (0 coil, 1 discrete, 3 input, 4 holding)"
    )]
    NoTable {
        /// The number as written.
        number: u32,
        /// Its first digit.
        digit: u32,
    },
    /// `register:` with address part 0 (or past 65536).
    #[error("register {0}: Modicon numbers count from 1 (e.g. 40001 is holding register 0)")]
    CountsFromOne(u32),
    /// No address key.
    #[error(
        "a Modbus point needs one of `coil`, `discrete`, `input`, `holding` (0-based) or `register` (Modicon, e.g. 40001)"
    )]
    Missing,
    /// More than one address key.
    #[error("give only one of `coil`, `discrete`, `input`, `holding` or `register`")]
    Several,
}

/// Splits a Modicon-style number (`40101`) into table and 0-based address.
pub fn modicon(number: u32) -> Result<Location, LocationError> {
    let (table_digit, rest) = match number {
        0..=99_999 => (number / 10_000, number % 10_000),
        100_000..=499_999 => (number / 100_000, number % 100_000),
        _ => return Err(LocationError::NotModicon(number)),
    };
    let table = match table_digit {
        0 => Table::Coil,
        1 => Table::Discrete,
        3 => Table::Input,
        4 => Table::Holding,
        digit => return Err(LocationError::NoTable { number, digit }),
    };
    let address = rest
        .checked_sub(1)
        .and_then(|a| u16::try_from(a).ok())
        .ok_or(LocationError::CountsFromOne(number))?;
    Ok(Location { table, address })
}

/// Why a point's keys do not fit together.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PointError {
    /// The address keys name no location.
    #[error(transparent)]
    Location(#[from] LocationError),
    /// A coil or discrete input with a type other than bool.
    #[error("{} holds one bit: its type can only be bool, not {}", .table.describe(), .data_type.name())]
    NotBool {
        /// The bit table.
        table: Table,
        /// The type given.
        data_type: DataType,
    },
    /// `bit` or `order` on a coil or discrete input.
    #[error("`bit` and `order` apply to registers, not to {}", .0.describe())]
    RegisterKeyOnBits(Table),
    /// A bool in a register without `bit`.
    #[error("a bool in a register needs `bit` (0 = least significant, to 15)")]
    NoBit,
    /// `bit` above 15.
    #[error("bit must be 0 to 15, not {0}")]
    BitOutOfRange(u8),
    /// `bit` on a type other than bool.
    #[error("`bit` applies to `type: bool` on a register, not to {}", .0.name())]
    BitOnType(DataType),
    /// A string without `count`.
    #[error("a string needs `count`: how many registers it takes (2 characters each)")]
    NoCount,
    /// `count` of 0 or more than one read may return.
    #[error("count must be 1 to {max}, not {0}", max = MAX_REGISTERS)]
    CountOutOfRange(u16),
    /// `count` on a type other than string.
    #[error("`count` applies to `type: string` only")]
    CountOnType,
    /// A value whose last register would be past address 65535.
    #[error("{} {} with {width} registers runs past the last address 65535", .at.table, .at.address)]
    PastTheEnd {
        /// Where it starts.
        at: Location,
        /// Registers it takes.
        width: u16,
    },
    /// `enum` on a type that is not an integer.
    #[error("`enum` applies to integer types, not to {}", .0.name())]
    EnumOnType(DataType),
    /// `enum: {}`.
    #[error("`enum` needs at least one value")]
    EmptyEnum,
    /// `write_multiple` on a discrete input.
    #[error("`write_multiple` applies to coils and holding registers")]
    WriteMultipleReadOnly,
}

/// A loaded Modbus point: its location, data type and width are valid
/// together (see the module docs). Built only from a [`RawModbusPoint`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawModbusPoint")]
pub struct ModbusPoint {
    at: Location,
    data_type: DataType,
    /// Registers (1 for bits); for strings, their `count`.
    width: u16,
    /// Only for a bool in a register: 0 to 15.
    bit: Option<u8>,
    /// Only for registers.
    order: Option<Order>,
    /// Only for integers; never empty.
    names: Option<EnumMap>,
    write_multiple: bool,
}

impl TryFrom<RawModbusPoint> for ModbusPoint {
    type Error = PointError;

    fn try_from(raw: RawModbusPoint) -> Result<Self, PointError> {
        let at = raw.location()?;
        let bits = at.table.is_bits();
        let t = match raw.data_type {
            Some(t) => t,
            None if bits => DataType::Bool,
            None => DataType::U16,
        };
        if bits && t != DataType::Bool {
            return Err(PointError::NotBool {
                table: at.table,
                data_type: t,
            });
        }
        if bits && (raw.bit.is_some() || raw.order.is_some()) {
            return Err(PointError::RegisterKeyOnBits(at.table));
        }
        if !bits && t == DataType::Bool {
            match raw.bit {
                None => return Err(PointError::NoBit),
                Some(b) if b > 15 => return Err(PointError::BitOutOfRange(b)),
                _ => {}
            }
        } else if raw.bit.is_some() {
            return Err(PointError::BitOnType(t));
        }
        let width = match (t, raw.count) {
            (DataType::String, None) => return Err(PointError::NoCount),
            (DataType::String, Some(c)) if !(1..=MAX_REGISTERS).contains(&c) => {
                return Err(PointError::CountOutOfRange(c));
            }
            (_, Some(_)) if t != DataType::String => return Err(PointError::CountOnType),
            _ if bits => 1,
            (_, count) => t.registers(count.unwrap_or(0)),
        };
        if u32::from(at.address) + u32::from(width) > 65_536 {
            return Err(PointError::PastTheEnd { at, width });
        }
        if let Some(names) = &raw.names {
            if !t.is_integer() {
                return Err(PointError::EnumOnType(t));
            }
            if names.0.is_empty() {
                return Err(PointError::EmptyEnum);
            }
        }
        if raw.write_multiple && at.table == Table::Discrete {
            return Err(PointError::WriteMultipleReadOnly);
        }
        Ok(Self {
            at,
            data_type: t,
            width,
            bit: raw.bit,
            order: raw.order,
            names: raw.names,
            write_multiple: raw.write_multiple,
        })
    }
}

/// The schema is the raw form's: it is what `gateway.yaml` holds.
impl JsonSchema for ModbusPoint {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        RawModbusPoint::schema_name()
    }
    fn inline_schema() -> bool {
        RawModbusPoint::inline_schema()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        RawModbusPoint::json_schema(generator)
    }
}

impl ModbusPoint {
    /// The point's table and address.
    pub fn location(&self) -> Location {
        self.at
    }

    /// The data type, with the table's default (`bool` for bits, `u16`
    /// for registers).
    pub fn data_type(&self) -> DataType {
        self.data_type
    }

    /// Registers (or bits) the point takes.
    pub fn width(&self) -> u16 {
        self.width
    }

    /// For a string: the registers it takes.
    pub fn count(&self) -> Option<u16> {
        (self.data_type == DataType::String).then_some(self.width)
    }

    /// For a bool in a register: its bit, 0 (least significant) to 15.
    pub fn bit(&self) -> Option<u8> {
        self.bit
    }

    /// Its own byte and word order, if it sets one (registers only).
    pub fn order(&self) -> Option<Order> {
        self.order
    }

    /// Names of its integer values, if it has them (never empty).
    pub fn names(&self) -> Option<&EnumMap> {
        self.names.as_ref()
    }

    /// Whether writes use FC 15/16 even for one coil or register.
    pub fn write_multiple(&self) -> bool {
        self.write_multiple
    }
}

impl PointSource for ModbusPoint {
    fn kind(&self) -> ValueKind {
        if self.names.is_some() {
            return ValueKind::Text;
        }
        match self.data_type {
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
        assert_eq!(modicon(40000), Err(LocationError::CountsFromOne(40000)));
        assert_eq!(modicon(465537), Err(LocationError::CountsFromOne(465537)));
        let e = modicon(20001).unwrap_err();
        assert_eq!(
            e,
            LocationError::NoTable {
                number: 20001,
                digit: 2
            }
        );
        assert!(e.to_string().contains("first digit 2"), "{e}");
        assert_eq!(modicon(500001), Err(LocationError::NotModicon(500001)));
    }

    fn point(f: fn(&mut RawModbusPoint)) -> Result<ModbusPoint, PointError> {
        let mut p = RawModbusPoint::default();
        f(&mut p);
        ModbusPoint::try_from(p)
    }

    #[test]
    fn a_point_is_checked_against_its_table_and_type() {
        let p = |f| point(f).map_err(|e| e.to_string());
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
        assert_eq!(
            p(|p| {
                p.holding = Some(65535);
                p.data_type = Some(DataType::F32)
            })
            .unwrap_err(),
            "holding 65535 with 2 registers runs past the last address 65535"
        );
        assert!(
            p(|p| {
                p.input = Some(0);
                p.data_type = Some(DataType::String)
            })
            .unwrap_err()
            .contains("needs `count`")
        );
        assert_eq!(
            point(|p| {
                p.discrete = Some(0);
                p.write_multiple = true
            }),
            Err(PointError::WriteMultipleReadOnly)
        );
    }

    #[test]
    fn a_loaded_point_carries_its_location_type_and_width() {
        let text = point(|p| {
            p.register = Some(40101);
            p.data_type = Some(DataType::String);
            p.count = Some(8)
        })
        .unwrap();
        assert_eq!(
            text.location(),
            Location {
                table: Table::Holding,
                address: 100
            }
        );
        assert_eq!(
            (text.data_type(), text.width(), text.count()),
            (DataType::String, 8, Some(8))
        );
        let coil = point(|p| p.coil = Some(7)).unwrap();
        assert_eq!(
            (coil.data_type(), coil.width(), coil.count()),
            (DataType::Bool, 1, None)
        );
        let flag = point(|p| {
            p.input = Some(2);
            p.data_type = Some(DataType::Bool);
            p.bit = Some(15)
        })
        .unwrap();
        assert_eq!((flag.width(), flag.bit()), (1, Some(15)));
        let energy = point(|p| {
            p.input = Some(0);
            p.data_type = Some(DataType::F64)
        })
        .unwrap();
        assert_eq!(energy.width(), 4);
    }

    #[test]
    fn serde_checks_the_point_as_it_loads() {
        let load =
            |json: &str| serde_json::from_str::<ModbusPoint>(json).map_err(|e| e.to_string());
        assert_eq!(load(r#"{"holding": 4, "type": "u32"}"#).unwrap().width(), 2);
        let e = load(r#"{"register": 20001}"#).unwrap_err();
        assert!(
            e.starts_with("register 20001: first digit 2 names no table"),
            "{e}"
        );
        let e = load(r#"{"holding": 1, "colour": 2}"#).unwrap_err();
        assert!(e.contains("unknown field `colour`"), "{e}");
    }
}
