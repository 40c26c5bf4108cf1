//! From a message's payload to a point's raw value.
//!
//! A payload is parsed as JSON at most once, and only if some point reads a
//! JSON pointer (or the device a timestamp). A point reads either a field
//! (`json: /ENERGY/Power`) or the whole payload, as float, int, bool or
//! text. Anything that does not fit is a [`Failure`] with its [`Cause`]:
//! the caller keeps the point's last value and marks it bad.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fieldbridge_core::Value;
use serde_json::Value as Json;

use crate::config::MqttPoint;
use fieldbridge_core::ValueKind;

/// Words meaning on when a bool point has no `true_values`.
pub const DEFAULT_TRUE: &[&str] = &["on", "true", "1", "yes", "open", "online"];
/// Words meaning off when a bool point has no `false_values`.
pub const DEFAULT_FALSE: &[&str] = &["off", "false", "0", "no", "closed", "offline"];

/// Why text is not a JSON pointer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PointerError {
    /// Not empty, and not starting with `/`.
    #[error("{0:?} is not a JSON pointer: it starts with `/`, as in `/ENERGY/Power`")]
    NoSlash(String),
    /// `~` not followed by `0` or `1`.
    #[error("{0:?} is not a JSON pointer: `~` must be written `~0` (and `/` in a key `~1`)")]
    Tilde(String),
}

/// A checked JSON pointer (RFC 6901): empty, or `/`-separated tokens.
/// Deserializes checked, so a bad `json:` or `timestamp:` is refused at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer(String);

impl Pointer {
    /// Checks `text` as a JSON pointer.
    pub fn parse(text: &str) -> Result<Self, PointerError> {
        if !text.is_empty() && !text.starts_with('/') {
            return Err(PointerError::NoSlash(text.to_owned()));
        }
        // `~` must be followed by 0 or 1.
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
                return Err(PointerError::Tilde(text.to_owned()));
            }
        }
        Ok(Self(text.to_owned()))
    }

    /// The pointer as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Pointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

written_as_text!(Pointer);

impl<'de> serde::Deserialize<'de> for Pointer {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Pointer::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Why a payload gave no value for a point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cause {
    /// Larger than `max_payload`.
    TooLarge,
    /// The point reads JSON and the payload is not JSON.
    NotJson,
    /// The payload is not UTF-8 text.
    NotText,
    /// The JSON pointer leads nowhere (or to null).
    MissingField,
    /// The value is there but not of the point's type.
    WrongType,
    /// The timestamp field is present but unreadable.
    BadTimestamp,
}

impl Cause {
    /// A stable name for logs and counters.
    pub fn name(self) -> &'static str {
        match self {
            Cause::TooLarge => "too_large",
            Cause::NotJson => "not_json",
            Cause::NotText => "not_text",
            Cause::MissingField => "missing_field",
            Cause::WrongType => "wrong_type",
            Cause::BadTimestamp => "bad_timestamp",
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A cause with the words for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What kind of problem (counted and logged once per device).
    pub cause: Cause,
    /// What exactly, e.g. `no field /ENERGY/Power`.
    pub message: String,
}

impl Failure {
    fn new(cause: Cause, message: impl Into<String>) -> Self {
        Self {
            cause,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// One message's payload, parsed on demand.
#[derive(Debug)]
pub struct Payload<'a> {
    raw: &'a [u8],
    too_large: bool,
    json: Option<Result<Json, String>>,
}

impl<'a> Payload<'a> {
    /// Wraps `raw`; if it is longer than `max` bytes every read fails with
    /// [`Cause::TooLarge`] and it is never parsed.
    pub fn new(raw: &'a [u8], max: usize) -> Self {
        Self {
            raw,
            too_large: raw.len() > max,
            json: None,
        }
    }

    fn too_large(&self) -> Failure {
        Failure::new(
            Cause::TooLarge,
            format!("payload of {} bytes is over the limit", self.raw.len()),
        )
    }

    fn text(&self) -> Result<&'a str, Failure> {
        if self.too_large {
            return Err(self.too_large());
        }
        std::str::from_utf8(self.raw)
            .map_err(|_| Failure::new(Cause::NotText, "payload is not UTF-8 text"))
    }

    fn json(&mut self) -> Result<&Json, Failure> {
        if self.too_large {
            return Err(self.too_large());
        }
        let raw = self.raw;
        let parsed = self.json.get_or_insert_with(|| {
            serde_json::from_slice::<Json>(raw).map_err(|e| format!("payload is not JSON: {e}"))
        });
        parsed
            .as_ref()
            .map_err(|e| Failure::new(Cause::NotJson, e.clone()))
    }

    /// The value of `point` in this payload.
    pub fn value(&mut self, point: &MqttPoint) -> Result<Value, Failure> {
        match &point.json {
            Some(ptr) => {
                let doc = self.json()?;
                match doc.pointer(ptr.as_str()) {
                    None | Some(Json::Null) => {
                        Err(Failure::new(Cause::MissingField, format!("no field {ptr}")))
                    }
                    Some(v) => from_json(v, point)
                        .map_err(|m| Failure::new(Cause::WrongType, format!("{ptr}: {m}"))),
                }
            }
            None => {
                let text = self.text()?;
                from_text(text, point).map_err(|m| Failure::new(Cause::WrongType, m))
            }
        }
    }

    /// The timestamp at `ptr`: `Ok(None)` when the field is absent.
    pub fn timestamp(&mut self, ptr: &Pointer) -> Result<Option<SystemTime>, Failure> {
        let doc = self.json()?;
        let bad = |m: String| Failure::new(Cause::BadTimestamp, format!("{ptr}: {m}"));
        match doc.pointer(ptr.as_str()) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::Number(n)) => match n.as_f64() {
                Some(x) => unix(x)
                    .map(Some)
                    .ok_or_else(|| bad(format!("{n} is not a time"))),
                None => Err(bad(format!("{n} is not a time"))),
            },
            Some(Json::String(s)) => {
                if let Ok(x) = s.trim().parse::<f64>() {
                    return unix(x)
                        .map(Some)
                        .ok_or_else(|| bad(format!("{s:?} is not a time")));
                }
                humantime::parse_rfc3339_weak(s.trim())
                    .map(Some)
                    .map_err(|_| bad(format!("{s:?} is not an RFC 3339 time")))
            }
            Some(other) => Err(bad(format!("{other} is not a time"))),
        }
    }
}

/// Unix seconds, or milliseconds when larger than 10^12.
fn unix(x: f64) -> Option<SystemTime> {
    if !x.is_finite() || x < 0.0 {
        return None;
    }
    let secs = if x > 1e12 { x / 1000.0 } else { x };
    if secs > 1e11 {
        return None;
    }
    UNIX_EPOCH.checked_add(Duration::from_secs_f64(secs))
}

fn in_list(text: &str, list: Option<&Vec<String>>, default: &[&str]) -> bool {
    let t = text.trim();
    match list {
        Some(l) => l.iter().any(|v| v.eq_ignore_ascii_case(t)),
        None => default.iter().any(|v| v.eq_ignore_ascii_case(t)),
    }
}

fn bool_from_text(text: &str, point: &MqttPoint) -> Result<bool, String> {
    if in_list(text, point.true_values.as_ref(), DEFAULT_TRUE) {
        Ok(true)
    } else if in_list(text, point.false_values.as_ref(), DEFAULT_FALSE) {
        Ok(false)
    } else {
        Err(format!("{:?} is neither on nor off", shorten(text)))
    }
}

fn shorten(text: &str) -> String {
    let t = text.trim();
    if t.chars().count() <= 40 {
        t.to_owned()
    } else {
        format!("{}…", t.chars().take(40).collect::<String>())
    }
}

fn from_text(text: &str, point: &MqttPoint) -> Result<Value, String> {
    let t = text.trim();
    match point.kind {
        ValueKind::Float => match t.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Value::Float(f)),
            _ => Err(format!("{:?} is not a number", shorten(t))),
        },
        ValueKind::Int => match t.parse::<i64>() {
            Ok(i) => Ok(Value::Int(i)),
            Err(_) => match t.parse::<f64>() {
                Ok(f) if f.fract() == 0.0 && f.abs() < 9e15 => Ok(Value::Int(f as i64)),
                _ => Err(format!("{:?} is not a whole number", shorten(t))),
            },
        },
        ValueKind::Bool => bool_from_text(t, point).map(Value::Bool),
        ValueKind::Text => Ok(Value::Text(text.to_owned())),
    }
}

fn from_json(v: &Json, point: &MqttPoint) -> Result<Value, String> {
    match (point.kind, v) {
        (ValueKind::Text, Json::String(s)) => Ok(Value::Text(s.clone())),
        (ValueKind::Text, other) => Ok(Value::Text(other.to_string())),
        (_, Json::String(s)) => from_text(s, point),
        (ValueKind::Float, Json::Number(n)) => n
            .as_f64()
            .filter(|f| f.is_finite())
            .map(Value::Float)
            .ok_or_else(|| format!("{n} is not a finite number")),
        (ValueKind::Int, Json::Number(n)) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Ok(Value::Int(i)),
            (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9e15 => Ok(Value::Int(f as i64)),
            _ => Err(format!("{n} is not a whole number")),
        },
        (ValueKind::Bool, Json::Bool(b)) => Ok(Value::Bool(*b)),
        (ValueKind::Bool, Json::Number(n)) => {
            bool_from_text(&n.to_string(), point).map(Value::Bool)
        }
        (_, other) => Err(format!(
            "{} is not a {}",
            shorten(&other.to_string()),
            match point.kind {
                ValueKind::Float => "number",
                ValueKind::Int => "whole number",
                ValueKind::Bool => "bool",
                ValueKind::Text => "text",
            }
        )),
    }
}

/// The text a write publishes for `value` (bools as the point's first
/// on/off word, else `true`/`false`).
pub fn value_text(value: &Value, point: &MqttPoint) -> String {
    match value {
        Value::Bool(b) => {
            let list = if *b {
                &point.true_values
            } else {
                &point.false_values
            };
            match list.as_ref().and_then(|l| l.first()) {
                Some(word) => word.clone(),
                None => b.to_string(),
            }
        }
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Text(t) => t.clone(),
    }
}

/// The payload a write publishes: the point's template with `{value}`
/// replaced.
pub fn command_payload(value: &Value, point: &MqttPoint) -> String {
    let text = value_text(value, point);
    match &point.payload {
        Some(template) => template.replace("{value}", &text),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(json: Option<&str>, kind: ValueKind) -> MqttPoint {
        MqttPoint {
            json: json.map(|j| Pointer::parse(j).unwrap()),
            kind,
            ..Default::default()
        }
    }

    const MAX: usize = 64 * 1024;

    #[test]
    fn values_come_from_pointers_and_whole_payloads() {
        use ValueKind::*;
        let tasmota = r#"{"Time":"2024-05-01T12:00:00","ENERGY":{"Power":42,"Voltage":229.5,"Today":0.5},"POWER":"ON","Name":"plug"}"#;
        let cases: &[(&str, Option<&str>, ValueKind, Value)] = &[
            (tasmota, Some("/ENERGY/Power"), Float, Value::Float(42.0)),
            (tasmota, Some("/ENERGY/Power"), Int, Value::Int(42)),
            (tasmota, Some("/ENERGY/Voltage"), Float, Value::Float(229.5)),
            (tasmota, Some("/POWER"), Bool, Value::Bool(true)),
            (tasmota, Some("/Name"), Text, Value::Text("plug".into())),
            (
                tasmota,
                Some("/ENERGY/Power"),
                Text,
                Value::Text("42".into()),
            ),
            (r#"{"a":{"b/c":1}}"#, Some("/a/b~1c"), Int, Value::Int(1)),
            (r#"{"t":"21.5"}"#, Some("/t"), Float, Value::Float(21.5)),
            (r#"{"on":true}"#, Some("/on"), Bool, Value::Bool(true)),
            (r#"{"on":0}"#, Some("/on"), Bool, Value::Bool(false)),
            (r#"{"n":3.0}"#, Some("/n"), Int, Value::Int(3)),
            ("21.5", None, Float, Value::Float(21.5)),
            (" 21.5\n", None, Float, Value::Float(21.5)),
            ("7", None, Int, Value::Int(7)),
            ("ON", None, Bool, Value::Bool(true)),
            ("off", None, Bool, Value::Bool(false)),
            ("hello world", None, Text, Value::Text("hello world".into())),
            ("21.5", Some(""), Float, Value::Float(21.5)),
        ];
        for (payload, ptr, kind, expected) in cases {
            let mut p = Payload::new(payload.as_bytes(), MAX);
            assert_eq!(
                p.value(&point(*ptr, *kind)).as_ref(),
                Ok(expected),
                "{payload} {ptr:?} {kind:?}"
            );
        }
    }

    #[test]
    fn true_and_false_values_replace_the_defaults() {
        let p = MqttPoint {
            kind: ValueKind::Bool,
            true_values: Some(vec!["OPEN_DOOR".into()]),
            false_values: Some(vec!["closed_door".into()]),
            ..Default::default()
        };
        let read = |s: &str| Payload::new(s.as_bytes(), MAX).value(&p);
        assert_eq!(read("open_door"), Ok(Value::Bool(true)));
        assert_eq!(read("CLOSED_DOOR"), Ok(Value::Bool(false)));
        assert_eq!(read("on").unwrap_err().cause, Cause::WrongType);
        assert_eq!(command_payload(&Value::Bool(true), &p), "OPEN_DOOR");
    }

    #[test]
    fn bad_payloads_fail_with_their_cause() {
        use ValueKind::*;
        let big = format!("{{\"v\":{}}}", "1".repeat(1024 * 1024));
        let cases: &[(&[u8], Option<&str>, ValueKind, Cause)] = &[
            (b"not json", Some("/a"), Float, Cause::NotJson),
            (b"{\"a\":1", Some("/a"), Float, Cause::NotJson),
            (b"{\"b\":1}", Some("/a"), Float, Cause::MissingField),
            (b"{\"a\":null}", Some("/a"), Float, Cause::MissingField),
            (b"[1,2]", Some("/a"), Float, Cause::MissingField),
            (b"{\"a\":\"warm\"}", Some("/a"), Float, Cause::WrongType),
            (b"{\"a\":{\"x\":1}}", Some("/a"), Float, Cause::WrongType),
            (b"{\"a\":true}", Some("/a"), Float, Cause::WrongType),
            (b"{\"a\":1.5}", Some("/a"), Int, Cause::WrongType),
            (b"{\"a\":\"maybe\"}", Some("/a"), Bool, Cause::WrongType),
            (b"warm", None, Float, Cause::WrongType),
            (b"NaN", None, Float, Cause::WrongType),
            (b"inf", None, Float, Cause::WrongType),
            (b"\xff\xfe", None, Float, Cause::NotText),
            (b"\xff\xfe", None, Text, Cause::NotText),
            (big.as_bytes(), Some("/v"), Float, Cause::TooLarge),
            (big.as_bytes(), None, Text, Cause::TooLarge),
        ];
        for (payload, ptr, kind, cause) in cases {
            let mut p = Payload::new(payload, MAX);
            let got = p.value(&point(*ptr, *kind));
            assert_eq!(
                got.as_ref().map_err(|f| f.cause),
                Err(*cause),
                "{:?} {ptr:?} {kind:?}: {got:?}",
                String::from_utf8_lossy(&payload[..payload.len().min(40)])
            );
        }
    }

    #[test]
    fn timestamps_in_text_seconds_and_milliseconds() {
        let at =
            |s: &str| Payload::new(s.as_bytes(), MAX).timestamp(&Pointer::parse("/t").unwrap());
        let expected = UNIX_EPOCH + Duration::from_secs(1_714_564_800);
        assert_eq!(at(r#"{"t":"2024-05-01T12:00:00Z"}"#), Ok(Some(expected)));
        assert_eq!(at(r#"{"t":"2024-05-01T12:00:00"}"#), Ok(Some(expected)));
        assert_eq!(at(r#"{"t":1714564800}"#), Ok(Some(expected)));
        assert_eq!(at(r#"{"t":1714564800000}"#), Ok(Some(expected)));
        assert_eq!(at(r#"{"x":1}"#), Ok(None));
        assert_eq!(
            at(r#"{"t":"yesterday"}"#).map_err(|f| f.cause),
            Err(Cause::BadTimestamp)
        );
        assert_eq!(
            at(r#"{"t":-5}"#).map_err(|f| f.cause),
            Err(Cause::BadTimestamp)
        );
    }

    #[test]
    fn pointers_are_checked() {
        assert!(Pointer::parse("/ENERGY/Power").is_ok());
        assert!(Pointer::parse("").is_ok());
        assert!(Pointer::parse("/a~1b").is_ok());
        assert!(Pointer::parse("ENERGY/Power").is_err());
        assert!(Pointer::parse("/a~b").is_err());
    }

    #[test]
    fn write_payloads_fill_the_template() {
        let p = MqttPoint {
            kind: ValueKind::Float,
            command_topic: Some(crate::topic::CommandTopic::parse("x").unwrap()),
            payload: Some(r#"{"setpoint": {value}}"#.into()),
            ..Default::default()
        };
        assert_eq!(
            command_payload(&Value::Float(21.5), &p),
            r#"{"setpoint": 21.5}"#
        );
        let plain = MqttPoint::default();
        assert_eq!(command_payload(&Value::Bool(false), &plain), "false");
        assert_eq!(command_payload(&Value::Int(3), &plain), "3");
    }
}
