//! A point's own keys: where its value is and how it is encoded.

use fieldbridge_core::ValueKind;
use fieldbridge_core::device::PointSource;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{DataType, EnumMap, MAX_REGISTERS, Order, Table};

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
