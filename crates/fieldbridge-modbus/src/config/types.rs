//! What a point's value is: its table, data type and byte order.

use std::fmt;

use schemars::JsonSchema;
use serde::Deserialize;

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

    /// True for the integer types (the ones `enum` may name).
    pub fn is_integer(self) -> bool {
        matches!(
            self,
            DataType::U16
                | DataType::I16
                | DataType::U32
                | DataType::I32
                | DataType::U64
                | DataType::I64
        )
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
