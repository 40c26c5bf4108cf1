//! From a message's payload to a point's raw value.
//!
//! A payload is parsed as JSON at most once, and only if some point reads a
//! JSON pointer (or the device a timestamp). A point reads either a field
//! (`json: /ENERGY/Power`) or the whole payload, as float, int, bool or
//! text. Anything that does not fit is a [`PayloadError`], counted by its
//! [`Cause`]: the caller keeps the point's last value and marks it bad with
//! the error's text.

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

/// The kind of a [`PayloadError`]: what the adapter counts per device and
/// logs once, where the error's text names the details.
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

/// Why a payload gave no value for a point, or no timestamp. The text is
/// the point's bad-quality reason, e.g. `no field /ENERGY/Power`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// Larger than `max_payload`: never parsed.
    #[error("payload of {0} bytes is over the limit")]
    TooLarge(usize),
    /// The point reads the whole payload and it is not UTF-8 text.
    #[error("payload is not UTF-8 text")]
    NotText,
    /// The point reads JSON and the payload is not JSON. serde_json's words
    /// (with line and column), as text: the failed parse is kept for every
    /// point of the message, and each gets its own copy.
    #[error("payload is not JSON: {0}")]
    NotJson(String),
    /// The JSON pointer leads nowhere (or to null).
    #[error("no field {0}")]
    MissingField(Pointer),
    /// The value is there but not of the point's type.
    #[error("{}{found} is not a {expected}", located(at))]
    WrongType {
        /// The point's `json` pointer, if it reads a field.
        at: Option<Pointer>,
        /// The value as the payload had it: quoted (and cut to 40
        /// characters) when it was text.
        found: String,
        /// What the point takes: `number`, `whole number`, `bool`, ….
        expected: &'static str,
    },
    /// A bool point's value is none of its on and off words.
    #[error("{}{word:?} is neither on nor off", located(at))]
    NotOnOff {
        /// The point's `json` pointer, if it reads a field.
        at: Option<Pointer>,
        /// The word, cut to 40 characters.
        word: String,
    },
    /// The timestamp field is neither a number nor text.
    #[error("{at}: {found} is not a time")]
    NotATime {
        /// The device's `timestamp` pointer.
        at: Pointer,
        /// The value as the payload had it: quoted when it was text.
        found: String,
    },
    /// The timestamp field is text, but neither a number nor RFC 3339.
    #[error("{at}: {text:?} is not an RFC 3339 time")]
    NotRfc3339 {
        /// The device's `timestamp` pointer.
        at: Pointer,
        /// The text.
        text: String,
    },
}

impl PayloadError {
    /// The kind of problem, as counted.
    pub fn cause(&self) -> Cause {
        match self {
            PayloadError::TooLarge(_) => Cause::TooLarge,
            PayloadError::NotText => Cause::NotText,
            PayloadError::NotJson(_) => Cause::NotJson,
            PayloadError::MissingField(_) => Cause::MissingField,
            PayloadError::WrongType { .. } | PayloadError::NotOnOff { .. } => Cause::WrongType,
            PayloadError::NotATime { .. } | PayloadError::NotRfc3339 { .. } => Cause::BadTimestamp,
        }
    }
}

/// `/ENERGY/Power: ` before a field's problem; nothing for a whole payload.
fn located(at: &Option<Pointer>) -> String {
    at.as_ref().map(|p| format!("{p}: ")).unwrap_or_default()
}

/// One message's payload, parsed on demand.
#[derive(Debug)]
pub struct Payload<'a> {
    raw: &'a [u8],
    too_large: bool,
    json: Option<Result<Json, PayloadError>>,
}

impl<'a> Payload<'a> {
    /// Wraps `raw`; if it is longer than `max` bytes every read fails with
    /// [`PayloadError::TooLarge`] and it is never parsed.
    pub fn new(raw: &'a [u8], max: usize) -> Self {
        Self {
            raw,
            too_large: raw.len() > max,
            json: None,
        }
    }

    fn text(&self) -> Result<&'a str, PayloadError> {
        if self.too_large {
            return Err(PayloadError::TooLarge(self.raw.len()));
        }
        std::str::from_utf8(self.raw).map_err(|_| PayloadError::NotText)
    }

    fn json(&mut self) -> Result<&Json, PayloadError> {
        if self.too_large {
            return Err(PayloadError::TooLarge(self.raw.len()));
        }
        let raw = self.raw;
        let parsed = self.json.get_or_insert_with(|| {
            serde_json::from_slice::<Json>(raw).map_err(|e| PayloadError::NotJson(e.to_string()))
        });
        parsed.as_ref().map_err(Clone::clone)
    }

    /// The value of `point` in this payload.
    pub fn value(&mut self, point: &MqttPoint) -> Result<Value, PayloadError> {
        match &point.json {
            Some(ptr) => {
                let doc = self.json()?;
                match doc.pointer(ptr.as_str()) {
                    None | Some(Json::Null) => Err(PayloadError::MissingField(ptr.clone())),
                    Some(v) => from_json(v, point),
                }
            }
            None => from_text(self.text()?, point),
        }
    }

    /// The timestamp at `ptr`: `Ok(None)` when the field is absent.
    pub fn timestamp(&mut self, ptr: &Pointer) -> Result<Option<SystemTime>, PayloadError> {
        let doc = self.json()?;
        let not_a_time = |found: String| PayloadError::NotATime {
            at: ptr.clone(),
            found,
        };
        match doc.pointer(ptr.as_str()) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::Number(n)) => n
                .as_f64()
                .and_then(unix)
                .map(Some)
                .ok_or_else(|| not_a_time(n.to_string())),
            Some(Json::String(s)) => {
                if let Ok(x) = s.trim().parse::<f64>() {
                    return unix(x)
                        .map(Some)
                        .ok_or_else(|| not_a_time(format!("{s:?}")));
                }
                humantime::parse_rfc3339_weak(s.trim())
                    .map(Some)
                    .map_err(|_| PayloadError::NotRfc3339 {
                        at: ptr.clone(),
                        text: s.clone(),
                    })
            }
            Some(other) => Err(not_a_time(other.to_string())),
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

fn bool_from_text(text: &str, point: &MqttPoint) -> Result<bool, PayloadError> {
    if in_list(text, point.true_values.as_ref(), DEFAULT_TRUE) {
        Ok(true)
    } else if in_list(text, point.false_values.as_ref(), DEFAULT_FALSE) {
        Ok(false)
    } else {
        Err(PayloadError::NotOnOff {
            at: point.json.clone(),
            word: shorten(text),
        })
    }
}

/// A value of `point` that is not of its type, e.g. `"warm"` for a float.
/// `at` is the point's own pointer: a whole payload is read only by points
/// without one.
fn wrong_type(point: &MqttPoint, found: String, expected: &'static str) -> PayloadError {
    PayloadError::WrongType {
        at: point.json.clone(),
        found,
        expected,
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

fn from_text(text: &str, point: &MqttPoint) -> Result<Value, PayloadError> {
    let t = text.trim();
    let quoted = || format!("{:?}", shorten(t));
    match point.kind {
        ValueKind::Float => match t.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Value::Float(f)),
            _ => Err(wrong_type(point, quoted(), "number")),
        },
        ValueKind::Int => match t.parse::<i64>() {
            Ok(i) => Ok(Value::Int(i)),
            Err(_) => match t.parse::<f64>() {
                Ok(f) if f.fract() == 0.0 && f.abs() < 9e15 => Ok(Value::Int(f as i64)),
                _ => Err(wrong_type(point, quoted(), "whole number")),
            },
        },
        ValueKind::Bool => bool_from_text(t, point).map(Value::Bool),
        ValueKind::Text => Ok(Value::Text(text.to_owned())),
    }
}

fn from_json(v: &Json, point: &MqttPoint) -> Result<Value, PayloadError> {
    match (point.kind, v) {
        (ValueKind::Text, Json::String(s)) => Ok(Value::Text(s.clone())),
        (ValueKind::Text, other) => Ok(Value::Text(other.to_string())),
        (_, Json::String(s)) => from_text(s, point),
        (ValueKind::Float, Json::Number(n)) => n
            .as_f64()
            .filter(|f| f.is_finite())
            .map(Value::Float)
            .ok_or_else(|| wrong_type(point, n.to_string(), "finite number")),
        (ValueKind::Int, Json::Number(n)) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Ok(Value::Int(i)),
            (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9e15 => Ok(Value::Int(f as i64)),
            _ => Err(wrong_type(point, n.to_string(), "whole number")),
        },
        (ValueKind::Bool, Json::Bool(b)) => Ok(Value::Bool(*b)),
        (ValueKind::Bool, Json::Number(n)) => {
            bool_from_text(&n.to_string(), point).map(Value::Bool)
        }
        (_, other) => Err(wrong_type(
            point,
            shorten(&other.to_string()),
            match point.kind {
                ValueKind::Float => "number",
                ValueKind::Int => "whole number",
                ValueKind::Bool => "bool",
                ValueKind::Text => "text",
            },
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
        assert_eq!(
            read("on"),
            Err(PayloadError::NotOnOff {
                at: None,
                word: "on".into()
            })
        );
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
                got.as_ref().map_err(PayloadError::cause),
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
            at(r#"{"t":"yesterday"}"#).map_err(|f| f.cause()),
            Err(Cause::BadTimestamp)
        );
        assert_eq!(
            at(r#"{"t":-5}"#).map_err(|f| f.cause()),
            Err(Cause::BadTimestamp)
        );
    }

    /// The texts are the points' bad-quality reasons and the log's; they
    /// must not change with the types.
    #[test]
    fn payload_errors_by_cause_with_their_texts() {
        use ValueKind::*;
        let ptr = |p: &str| Some(Pointer::parse(p).unwrap());
        let long = "x".repeat(50);
        // Payload, point pointer and type, the error, its text.
        type Case<'a> = (&'a [u8], Option<&'a str>, ValueKind, PayloadError, String);
        let cases: Vec<Case> = vec![
            (
                b"not json",
                Some("/a"),
                Float,
                PayloadError::NotJson("expected ident at line 1 column 2".into()),
                "payload is not JSON: expected ident at line 1 column 2".into(),
            ),
            (
                b"{\"b\":1}",
                Some("/a"),
                Float,
                PayloadError::MissingField(Pointer::parse("/a").unwrap()),
                "no field /a".into(),
            ),
            (
                b"{\"a\":\"warm\"}",
                Some("/a"),
                Float,
                PayloadError::WrongType {
                    at: ptr("/a"),
                    found: "\"warm\"".into(),
                    expected: "number",
                },
                r#"/a: "warm" is not a number"#.into(),
            ),
            (
                b"{\"a\":1.5}",
                Some("/a"),
                Int,
                PayloadError::WrongType {
                    at: ptr("/a"),
                    found: "1.5".into(),
                    expected: "whole number",
                },
                "/a: 1.5 is not a whole number".into(),
            ),
            (
                b"{\"a\":[1]}",
                Some("/a"),
                Bool,
                PayloadError::WrongType {
                    at: ptr("/a"),
                    found: "[1]".into(),
                    expected: "bool",
                },
                "/a: [1] is not a bool".into(),
            ),
            (
                b"2.5",
                None,
                Int,
                PayloadError::WrongType {
                    at: None,
                    found: "\"2.5\"".into(),
                    expected: "whole number",
                },
                r#""2.5" is not a whole number"#.into(),
            ),
            (
                b"{\"a\":2}",
                Some("/a"),
                Bool,
                PayloadError::NotOnOff {
                    at: ptr("/a"),
                    word: "2".into(),
                },
                r#"/a: "2" is neither on nor off"#.into(),
            ),
            (
                long.as_bytes(),
                None,
                Bool,
                PayloadError::NotOnOff {
                    at: None,
                    word: format!("{}…", "x".repeat(40)),
                },
                format!("{:?} is neither on nor off", format!("{}…", "x".repeat(40))),
            ),
            (
                b"\xff",
                None,
                Text,
                PayloadError::NotText,
                "payload is not UTF-8 text".into(),
            ),
            (
                b"12345",
                None,
                Text,
                PayloadError::TooLarge(5),
                "payload of 5 bytes is over the limit".into(),
            ),
        ];
        for (payload, p, kind, want, text) in cases {
            let max = if matches!(want, PayloadError::TooLarge(_)) {
                4
            } else {
                MAX
            };
            let got = Payload::new(payload, max).value(&point(p, kind));
            assert_eq!(got, Err(want.clone()));
            assert_eq!(want.to_string(), text);
        }

        let t = Pointer::parse("/t").unwrap();
        let at = |s: &str| Payload::new(s.as_bytes(), MAX).timestamp(&t);
        let cases = [
            (r#"{"t":-5}"#, r#"/t: -5 is not a time"#),
            (r#"{"t":"-5"}"#, r#"/t: "-5" is not a time"#),
            (r#"{"t":[1]}"#, r#"/t: [1] is not a time"#),
            (r#"{"t":"soon"}"#, r#"/t: "soon" is not an RFC 3339 time"#),
        ];
        for (payload, text) in cases {
            let err = at(payload).unwrap_err();
            assert_eq!(err.cause(), Cause::BadTimestamp);
            assert_eq!(err.to_string(), text);
        }
        assert!(matches!(
            at(r#"{"t":"soon"}"#),
            Err(PayloadError::NotRfc3339 { text, .. }) if text == "soon"
        ));
        assert!(matches!(
            at(r#"{"t":true}"#),
            Err(PayloadError::NotATime { found, .. }) if found == "true"
        ));
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
