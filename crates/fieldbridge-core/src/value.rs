//! Values, units, quality and readings: what every adapter produces.

use std::fmt;
use std::time::SystemTime;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::id::PointId;

/// A point's value, as normalized for every sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Value {
    /// On/off, open/closed, alarm/no alarm.
    Bool(bool),
    /// Counters, enumerations, raw registers.
    Int(i64),
    /// Measurements.
    Float(f64),
    /// Anything else a device reports.
    Text(String),
}

impl Value {
    /// The value as a number, if it is one (booleans count as 0 and 1).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Bool(b) => Some(f64::from(u8::from(*b))),
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            Value::Text(_) => None,
        }
    }

    /// The name of this value's kind, for error messages.
    pub fn kind(&self) -> ValueKind {
        match self {
            Value::Bool(_) => ValueKind::Bool,
            Value::Int(_) => ValueKind::Int,
            Value::Float(_) => ValueKind::Float,
            Value::Text(_) => ValueKind::Text,
        }
    }

    /// Parses text typed by a person (a chat `set`, a form field) as a value
    /// of `kind`.
    pub fn parse_as(text: &str, kind: ValueKind) -> Result<Value, ValueError> {
        let t = text.trim();
        match kind {
            ValueKind::Bool => match t.to_ascii_lowercase().as_str() {
                "1" | "true" | "on" | "yes" | "open" => Ok(Value::Bool(true)),
                "0" | "false" | "off" | "no" | "closed" => Ok(Value::Bool(false)),
                _ => Err(ValueError::NotOnOff(t.to_owned())),
            },
            ValueKind::Int => t
                .parse::<i64>()
                .map(Value::Int)
                .map_err(|_| ValueError::NotWhole(t.to_owned())),
            ValueKind::Float => match t.parse::<f64>() {
                Ok(f) if f.is_finite() => Ok(Value::Float(f)),
                _ => Err(ValueError::NotNumber(t.to_owned())),
            },
            ValueKind::Text => Ok(Value::Text(t.to_owned())),
        }
    }
}

/// Why a value does not fit a point, in words for the person who sent it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValueError {
    /// Not a word for on or off.
    #[error("{0:?} is not on/off (use on, off, true, false, 1 or 0)")]
    NotOnOff(String),
    /// Not a whole number.
    #[error("{0:?} is not a whole number")]
    NotWhole(String),
    /// Not a (finite) number.
    #[error("{0:?} is not a number")]
    NotNumber(String),
    /// A value of another kind than the point's.
    #[error("{value} is a {}, the point takes a {want}", .value.kind())]
    WrongKind {
        /// The value given.
        value: Value,
        /// The point's kind.
        want: ValueKind,
    },
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(true) => f.write_str("on"),
            Value::Bool(false) => f.write_str("off"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => {
                // Enough digits for any sensor, no float noise like 21.500000000000004.
                // `+ 0.0` turns a -0 (a tiny negative value, or IEEE -0
                // from a register) into 0: nobody wants to read "-0 °C".
                let rounded = (x * 1e6).round() / 1e6 + 0.0;
                write!(f, "{rounded}")
            }
            Value::Text(s) => f.write_str(s),
        }
    }
}

/// The kind of a [`Value`], as declared for a point.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ValueKind {
    /// A measurement ([`Value::Float`]); the default.
    #[default]
    Float,
    /// A whole number ([`Value::Int`]).
    Int,
    /// On/off ([`Value::Bool`]).
    Bool,
    /// Text as received ([`Value::Text`]).
    Text,
}

impl fmt::Display for ValueKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ValueKind::Bool => "bool",
            ValueKind::Int => "int",
            ValueKind::Float => "float",
            ValueKind::Text => "text",
        })
    }
}

/// A unit of measure as the user wrote it (`°C`, `kWh`, `%`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct Unit(pub String);

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How far a reading can be trusted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quality {
    /// Read from the device just now, without error.
    Good,
    /// The value is the last known one; the device could not confirm it.
    Uncertain,
    /// The device reported an error for this point; the value is the last known one.
    Bad {
        /// What went wrong, in words (e.g. "modbus exception: illegal data address").
        reason: String,
    },
}

impl Quality {
    /// True for [`Quality::Good`].
    pub fn is_good(&self) -> bool {
        matches!(self, Quality::Good)
    }
}

/// One value of one point at one time.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// The point within the device.
    pub point: PointId,
    /// The value, after normalization (scale, offset).
    pub value: Value,
    /// The point's unit, if it has one.
    pub unit: Option<Unit>,
    /// How far the value can be trusted.
    pub quality: Quality,
}

/// A timestamped reading as a sink keeps it (latest values, history).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// When the reading was taken.
    pub at: SystemTime,
    /// The reading.
    pub reading: Reading,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_without_float_noise() {
        assert_eq!(Value::Float(0.1 + 0.2).to_string(), "0.3");
        assert_eq!(Value::Float(21.5).to_string(), "21.5");
        assert_eq!(Value::Bool(true).to_string(), "on");
        assert_eq!(Value::Float(-0.0).to_string(), "0");
        assert_eq!(Value::Float(-1e-9).to_string(), "0");
        assert_eq!(Value::Float(-0.25).to_string(), "-0.25");
    }

    #[test]
    fn parses_typed_input() {
        assert_eq!(
            Value::parse_as(" On ", ValueKind::Bool),
            Ok(Value::Bool(true))
        );
        assert_eq!(Value::parse_as("42", ValueKind::Int), Ok(Value::Int(42)));
        assert_eq!(
            Value::parse_as("4.5", ValueKind::Float),
            Ok(Value::Float(4.5))
        );
        assert!(Value::parse_as("NaN", ValueKind::Float).is_err());
        assert!(Value::parse_as("maybe", ValueKind::Bool).is_err());
        assert!(Value::parse_as("4.5", ValueKind::Int).is_err());
    }
}
