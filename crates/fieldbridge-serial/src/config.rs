//! The serial adapter's part of `gateway.yaml`.

use std::path::PathBuf;
use std::time::Duration;

use fieldbridge_core::device::PointSource;
use fieldbridge_core::{ValueKind, duration};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::framing::Framing;

pub use fieldbridge_serialport::{FlowControl, Parity};

/// `connections.<id>.serial`: one port, shared by the devices on it.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SerialConnection {
    /// The port; prefer a stable `/dev/serial/by-id/…` path to `/dev/ttyUSB0`,
    /// which may change when adapters are plugged in another order.
    pub port: PathBuf,
    /// Line speed (default 9600).
    #[serde(default = "fieldbridge_serialport::default_baud")]
    pub baud: u32,
    /// Data bits, 5 to 8 (default 8).
    #[serde(default = "fieldbridge_serialport::default_data_bits")]
    pub data_bits: u8,
    /// `none` (default), `even` or `odd`.
    #[serde(default)]
    pub parity: Parity,
    /// Stop bits, 1 (default) or 2.
    #[serde(default = "fieldbridge_serialport::default_stop_bits")]
    pub stop_bits: u8,
    /// `none` (default), `software` (XON/XOFF) or `hardware` (RTS/CTS).
    #[serde(default)]
    pub flow_control: FlowControl,
    /// How frames are cut: lines by default.
    #[serde(default)]
    pub framing: FramingConfig,
    /// Longest frame accepted, in bytes (default 512); longer ones are
    /// counted and dropped.
    #[serde(default = "default_max_frame")]
    pub max_frame: usize,
}

fn default_max_frame() -> usize {
    512
}

/// `framing:` — nothing for lines (LF, CR or CRLF); `delimiter` for a
/// custom end of frame; `start` and `end` for framed protocols (STX/ETX).
/// YAML double-quoted strings take escapes: `"\x02"`, `"\r\n"`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FramingConfig {
    /// Ends every frame.
    #[serde(default)]
    pub delimiter: Option<String>,
    /// Opens every frame (with `end`).
    #[serde(default)]
    pub start: Option<String>,
    /// Closes every frame (with `start`).
    #[serde(default)]
    pub end: Option<String>,
}

impl FramingConfig {
    /// The framing, or why the combination makes no sense.
    pub fn framing(&self) -> Result<Framing, SettingsError> {
        let bytes = |s: &String| s.as_bytes().to_vec();
        match (&self.delimiter, &self.start, &self.end) {
            (None, None, None) => Ok(Framing::Lines),
            (Some(d), None, None) if !d.is_empty() => Ok(Framing::Delimiter(bytes(d))),
            (None, Some(s), Some(e)) if !s.is_empty() && !e.is_empty() => Ok(Framing::StartEnd {
                start: bytes(s),
                end: bytes(e),
            }),
            _ => Err(SettingsError::Framing),
        }
    }
}

impl SerialConnection {
    /// Why these settings cannot work, if they cannot.
    pub fn check(&self) -> Result<(), SettingsError> {
        self.framing.framing()?;
        if !(5..=8).contains(&self.data_bits) {
            return Err(SettingsError::DataBits(self.data_bits));
        }
        if !(1..=2).contains(&self.stop_bits) {
            return Err(SettingsError::StopBits(self.stop_bits));
        }
        if self.baud == 0 {
            return Err(SettingsError::ZeroBaud);
        }
        if self.max_frame == 0 {
            return Err(SettingsError::ZeroMaxFrame);
        }
        Ok(())
    }
}

/// Why a serial connection's settings cannot work, by the setting at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// `framing:` with an empty `delimiter`, or a `start` without an `end`
    /// (or the other way round), or a `delimiter` with them.
    #[error("use either `delimiter` (not empty), or both `start` and `end`")]
    Framing,
    /// `data_bits` outside 5 to 8.
    #[error("data_bits must be 5 to 8, not {0}")]
    DataBits(u8),
    /// `stop_bits` other than 1 or 2.
    #[error("stop_bits must be 1 or 2, not {0}")]
    StopBits(u8),
    /// `baud: 0`. The text names `max_frame` too, as it always has: one
    /// rule for both.
    #[error("baud and max_frame must be more than 0")]
    ZeroBaud,
    /// `max_frame: 0`.
    #[error("baud and max_frame must be more than 0")]
    ZeroMaxFrame,
}

/// How a device's frames are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FormatKind {
    /// `T=21.5;H=40`: points by `key`.
    KeyValue,
    /// One JSON object per frame: points by JSON `pointer` (`/env/temp`).
    Json,
    /// `21.5,40,OK`: points by `column` (from 0).
    Csv,
    /// A regular expression (`pattern`) with named captures: points by `capture`.
    Regex,
    /// NMEA 0183 sentences: points by `nmea: GGA.latitude`.
    Nmea,
}

impl FormatKind {
    /// The format as written in `gateway.yaml`.
    pub fn name(self) -> &'static str {
        match self {
            FormatKind::KeyValue => "key_value",
            FormatKind::Json => "json",
            FormatKind::Csv => "csv",
            FormatKind::Regex => "regex",
            FormatKind::Nmea => "nmea",
        }
    }
}

/// A serial device's own keys under `devices.<id>`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SerialDevice {
    /// How its frames are written.
    pub format: FormatKind,
    /// Only frames starting with this text belong to the device, so that
    /// several devices can share one port (`prefix: "W1,"`).
    #[serde(default)]
    pub prefix: Option<String>,
    /// key_value: characters separating pairs (default `;`, `,`, tab or space);
    /// csv: the column separator (default `,`).
    #[serde(default)]
    pub separator: Option<String>,
    /// key_value: between key and value (default `=`; `:` is common too).
    #[serde(default)]
    pub assign: Option<String>,
    /// regex: the pattern, with named captures `(?P<temp>[0-9.]+)`.
    #[serde(default)]
    pub pattern: Option<String>,
    /// For devices that answer only when asked: what to send every `poll`
    /// period, and how long to wait for the answer.
    #[serde(default)]
    pub request: Option<Request>,
    /// How writable points are written.
    #[serde(default)]
    pub write: Option<WriteConfig>,
}

/// `request:` — a line sent every poll period.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// Sent as is (`"READ\r\n"`).
    pub send: String,
    /// Without an answer in this time the points turn bad quality (default 1s).
    #[serde(default, deserialize_with = "duration::optional")]
    #[schemars(schema_with = "duration::optional_schema")]
    pub timeout: Option<Duration>,
}

/// `write:` — how a write is sent, and whether it is acknowledged.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteConfig {
    /// The line to send; `{point}` and `{value}` are replaced
    /// (`"SET {point} {value}\n"`).
    pub template: String,
    /// A regular expression an answer frame must match for the write to
    /// count as done (`"^OK"`); without it, sending is enough.
    #[serde(default)]
    pub ack: Option<String>,
    /// How long to wait for the acknowledgement (default 2s).
    #[serde(default, deserialize_with = "duration::optional")]
    #[schemars(schema_with = "duration::optional_schema")]
    pub timeout: Option<Duration>,
}

/// A serial point's own keys: where its value is in a frame.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SerialPoint {
    /// key_value: the key (`T` in `T=21.5`).
    #[serde(default)]
    pub key: Option<String>,
    /// json: a JSON pointer (`/sensor/temp`).
    #[serde(default)]
    pub pointer: Option<String>,
    /// csv: the column, counted from 0.
    #[serde(default)]
    pub column: Option<usize>,
    /// regex: the named capture.
    #[serde(default)]
    pub capture: Option<String>,
    /// nmea: `SENTENCE.field`, e.g. `GGA.latitude`, `MTW.temperature`.
    #[serde(default)]
    pub nmea: Option<String>,
    /// The value type (default float).
    #[serde(default, rename = "type")]
    pub kind: ValueKind,
}

impl PointSource for SerialPoint {
    fn kind(&self) -> ValueKind {
        self.kind
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(extra: serde_json::Value) -> SerialConnection {
        let mut v = serde_json::json!({ "port": "/dev/ttyUSB0" });
        if let (Some(v), serde_json::Value::Object(extra)) = (v.as_object_mut(), extra) {
            v.extend(extra);
        }
        serde_json::from_value(v).unwrap()
    }

    /// The texts are what `fieldbridge check` prints; they must not change
    /// with the types.
    #[test]
    fn settings_errors_by_cause_with_their_texts() {
        use serde_json::json;
        assert_eq!(connection(json!({})).check(), Ok(()));
        let framing = "use either `delimiter` (not empty), or both `start` and `end`";
        let zero = "baud and max_frame must be more than 0";
        let cases = [
            (
                json!({"framing": {"delimiter": ""}}),
                SettingsError::Framing,
                framing,
            ),
            (
                json!({"framing": {"start": "\u{2}"}}),
                SettingsError::Framing,
                framing,
            ),
            (
                json!({"framing": {"delimiter": ";", "start": "<", "end": ">"}}),
                SettingsError::Framing,
                framing,
            ),
            (
                json!({"data_bits": 9}),
                SettingsError::DataBits(9),
                "data_bits must be 5 to 8, not 9",
            ),
            (
                json!({"stop_bits": 0}),
                SettingsError::StopBits(0),
                "stop_bits must be 1 or 2, not 0",
            ),
            (json!({"baud": 0}), SettingsError::ZeroBaud, zero),
            (json!({"max_frame": 0}), SettingsError::ZeroMaxFrame, zero),
        ];
        for (extra, want, text) in cases {
            let got = connection(extra.clone()).check();
            assert_eq!(got, Err(want.clone()), "{extra}");
            assert_eq!(want.to_string(), text);
        }
    }
}
