//! Registers to values and back: data types, word and byte order, bits in
//! registers, strings and enum names.
//!
//! Decoding gives the *raw* value (core applies `scale` and `offset`);
//! encoding takes the raw value (the adapter has already undone `scale`
//! and `offset` with [`unscale`]).

use fieldbridge_core::Value;

use crate::config::{DataType, EnumMap, ModbusPoint, Order};

/// Why registers could not become a value, or a value registers.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CodecError {
    /// The device sent fewer registers than the type needs.
    #[error("expected {expected} registers, got {got}")]
    Length {
        /// Registers the type needs.
        expected: usize,
        /// Registers received.
        got: usize,
    },
    /// A u64 above what a signed 64-bit value holds.
    #[error("u64 value {0} is above 9223372036854775807")]
    TooLarge(u64),
    /// A float register pair that is NaN or infinite.
    #[error("the registers hold {0}, not a number")]
    NotFinite(f64),
    /// An integer that the point's `enum` does not name.
    #[error("value {0} has no name in the point's `enum`")]
    UnknownEnum(i64),
    /// A value to write that the point cannot take.
    #[error("{0}")]
    Invalid(String),
}

/// How one point's registers are turned into a value and back.
#[derive(Debug, Clone, PartialEq)]
pub struct Codec {
    /// The data type.
    pub data_type: DataType,
    /// The word and byte order.
    pub order: Order,
    /// For a bool in a register: its bit.
    pub bit: Option<u8>,
    /// Registers the value takes.
    pub width: u16,
    /// Names of integer values.
    pub names: Option<EnumMap>,
}

impl Codec {
    /// The codec of a point, with the device's default order.
    pub fn of(point: &ModbusPoint, device_order: Order) -> Self {
        Self {
            data_type: point.data_type(),
            order: point.order().unwrap_or(device_order),
            bit: point.bit(),
            width: point.width(),
            names: point.names().cloned(),
        }
    }

    /// A codec for a type and order alone (as `modbus scan` uses).
    pub fn plain(data_type: DataType, order: Order, count: u16) -> Self {
        Self {
            data_type,
            order,
            bit: None,
            width: data_type.registers(count),
            names: None,
        }
    }

    /// Decodes the point's registers (exactly `width` of them).
    pub fn decode(&self, words: &[u16]) -> Result<Value, CodecError> {
        if words.len() != usize::from(self.width) {
            return Err(CodecError::Length {
                expected: usize::from(self.width),
                got: words.len(),
            });
        }
        let bytes = value_bytes(words, self.order, self.data_type);
        let int = |v: i64| match &self.names {
            Some(names) => names
                .0
                .get(&v)
                .map(|n| Value::Text(n.clone()))
                .ok_or(CodecError::UnknownEnum(v)),
            None => Ok(Value::Int(v)),
        };
        match self.data_type {
            DataType::Bool => {
                let bit = self.bit.unwrap_or(0) & 15;
                Ok(Value::Bool((words[0] >> bit) & 1 == 1))
            }
            DataType::U16 => int(i64::from(u16::from_be_bytes(arr(&bytes)))),
            DataType::I16 => int(i64::from(i16::from_be_bytes(arr(&bytes)))),
            DataType::U32 => int(i64::from(u32::from_be_bytes(arr(&bytes)))),
            DataType::I32 => int(i64::from(i32::from_be_bytes(arr(&bytes)))),
            DataType::U64 => {
                let v = u64::from_be_bytes(arr(&bytes));
                int(i64::try_from(v).map_err(|_| CodecError::TooLarge(v))?)
            }
            DataType::I64 => int(i64::from_be_bytes(arr(&bytes))),
            DataType::F32 => finite(f64::from(f32::from_be_bytes(arr(&bytes)))),
            DataType::F64 => finite(f64::from_be_bytes(arr(&bytes))),
            DataType::String => {
                // Text ends at the first NUL, as C strings in devices do;
                // then the padding spaces before it go.
                let text = bytes.split(|b| *b == 0).next().unwrap_or_default();
                let end = text.iter().rposition(|b| *b != b' ').map_or(0, |i| i + 1);
                Ok(Value::Text(
                    String::from_utf8_lossy(&text[..end]).into_owned(),
                ))
            }
        }
    }

    /// Encodes a raw value (after [`unscale`]) into the point's registers.
    /// A bool in a register is not handled here (it needs the register's
    /// other bits): see [`set_bit`].
    pub fn encode(&self, value: &Value) -> Result<Vec<u16>, CodecError> {
        let be: Vec<u8> = match self.data_type {
            DataType::Bool => {
                return Err(CodecError::Invalid(
                    "a bit in a register is written with set_bit".into(),
                ));
            }
            DataType::String => {
                let Value::Text(t) = value else {
                    return Err(CodecError::Invalid(format!("{value} is not text")));
                };
                let capacity = usize::from(self.width) * 2;
                if t.len() > capacity {
                    return Err(CodecError::Invalid(format!(
                        "{:?} is {} bytes long; the point holds {capacity}",
                        t,
                        t.len()
                    )));
                }
                let mut b = t.as_bytes().to_vec();
                b.resize(capacity, 0);
                b
            }
            DataType::F32 => {
                let f = number(value)?;
                if f.is_finite() && f.abs() > f64::from(f32::MAX) {
                    return Err(CodecError::Invalid(format!("{f} does not fit an f32")));
                }
                (f as f32).to_be_bytes().to_vec()
            }
            DataType::F64 => number(value)?.to_be_bytes().to_vec(),
            t => {
                let i = self.integer(value)?;
                let fits = |lo: i128, hi: i128| {
                    if (lo..=hi).contains(&i128::from(i)) {
                        Ok(())
                    } else {
                        Err(CodecError::Invalid(format!(
                            "{i} does not fit a {} ({lo} to {hi})",
                            t.name()
                        )))
                    }
                };
                match t {
                    DataType::U16 => fits(0, 0xFFFF).map(|_| (i as u16).to_be_bytes().to_vec())?,
                    DataType::I16 => {
                        fits(-0x8000, 0x7FFF).map(|_| (i as i16).to_be_bytes().to_vec())?
                    }
                    DataType::U32 => {
                        fits(0, 0xFFFF_FFFF).map(|_| (i as u32).to_be_bytes().to_vec())?
                    }
                    DataType::I32 => fits(i128::from(i32::MIN), i128::from(i32::MAX))
                        .map(|_| (i as i32).to_be_bytes().to_vec())?,
                    DataType::U64 => {
                        fits(0, i128::from(i64::MAX)).map(|_| (i as u64).to_be_bytes().to_vec())?
                    }
                    _ => i.to_be_bytes().to_vec(),
                }
            }
        };
        Ok(register_words(&be, self.order, self.data_type))
    }

    /// The integer to write: a number, or a name of the point's `enum`.
    fn integer(&self, value: &Value) -> Result<i64, CodecError> {
        if let (Some(names), Value::Text(t)) = (&self.names, value) {
            return names
                .0
                .iter()
                .find(|(_, n)| n.eq_ignore_ascii_case(t.trim()))
                .map(|(k, _)| *k)
                .ok_or_else(|| {
                    let known: Vec<&str> = names.0.values().map(String::as_str).collect();
                    CodecError::Invalid(format!("{t:?} is not one of: {}", known.join(", ")))
                });
        }
        match value {
            Value::Int(i) => Ok(*i),
            Value::Bool(b) => Ok(i64::from(*b)),
            Value::Float(f) if f.is_finite() && f.abs() < 9.2e18 => Ok(f.round() as i64),
            other => Err(CodecError::Invalid(format!(
                "{other} is not a whole number"
            ))),
        }
    }
}

/// Sets or clears `bit` of `word`.
pub fn set_bit(word: u16, bit: u8, on: bool) -> u16 {
    let mask = 1u16 << (bit & 15);
    if on { word | mask } else { word & !mask }
}

/// Undoes core's `value = raw * scale + offset` for a write.
pub fn unscale(value: &Value, scale: Option<f64>, offset: Option<f64>) -> Value {
    if scale.is_none() && offset.is_none() {
        return value.clone();
    }
    match value.as_f64() {
        Some(v) if !matches!(value, Value::Bool(_)) => {
            Value::Float((v - offset.unwrap_or(0.0)) / scale.unwrap_or(1.0))
        }
        _ => value.clone(),
    }
}

fn number(value: &Value) -> Result<f64, CodecError> {
    match value {
        Value::Int(i) => Ok(*i as f64),
        Value::Float(f) if f.is_finite() => Ok(*f),
        other => Err(CodecError::Invalid(format!("{other} is not a number"))),
    }
}

fn finite(f: f64) -> Result<Value, CodecError> {
    if f.is_finite() {
        Ok(Value::Float(f))
    } else {
        Err(CodecError::NotFinite(f))
    }
}

fn arr<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    let n = N.min(bytes.len());
    a[..n].copy_from_slice(&bytes[..n]);
    a
}

/// Registers as received → the value's bytes, most significant first.
fn value_bytes(words: &[u16], order: Order, t: DataType) -> Vec<u8> {
    let reverse = order.word_swap() && t != DataType::String;
    let mut out = Vec::with_capacity(words.len() * 2);
    let mut push = |w: u16| {
        let [hi, lo] = w.to_be_bytes();
        if order.byte_swap() {
            out.extend_from_slice(&[lo, hi]);
        } else {
            out.extend_from_slice(&[hi, lo]);
        }
    };
    if reverse {
        words.iter().rev().for_each(|w| push(*w));
    } else {
        words.iter().for_each(|w| push(*w));
    }
    out
}

/// The value's bytes, most significant first → registers to send.
fn register_words(be: &[u8], order: Order, t: DataType) -> Vec<u16> {
    let mut words: Vec<u16> = be
        .chunks(2)
        .map(|c| {
            let (hi, lo) = (c[0], c.get(1).copied().unwrap_or(0));
            if order.byte_swap() {
                u16::from_be_bytes([lo, hi])
            } else {
                u16::from_be_bytes([hi, lo])
            }
        })
        .collect();
    if order.word_swap() && t != DataType::String {
        words.reverse();
    }
    words
}

#[cfg(test)]
mod tests;
