//! Frames to fields: key=value, JSON, CSV, regex and NMEA, and fields to
//! values of each point's type.
//!
//! Each step fails with its own error type, so that a caller can tell a
//! config mistake ([`FormatError`], found at load) from a frame the device
//! garbled ([`ParseError`]) and from a field that does not fit its point
//! ([`ConvertError`]). Their texts are what the config check and the logs
//! print.

use fieldbridge_core::Value;
use regex::Regex;

use crate::config::{FormatKind, SerialDevice, SerialPoint};
use crate::nmea::{self, Field, NmeaError, Sentence};
use fieldbridge_core::ValueKind;

/// Why a device's format settings, or a point's location in its frames,
/// cannot work: a config mistake, reported by `fieldbridge check`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FormatError {
    /// `separator: ""`.
    #[error("separator must not be empty")]
    EmptySeparator,
    /// `pattern` does not compile.
    #[error("pattern is not a valid regular expression: {0}")]
    BadPattern(regex::Error),
    /// `pattern` without a named capture: no point could read from it.
    #[error("pattern needs named captures, like (?P<temp>[0-9.]+)")]
    NoNamedCapture,
    /// `format: regex` without a `pattern`.
    #[error("format regex needs a `pattern`")]
    NoPattern,
    /// A `pattern` on a device of another format.
    #[error("pattern applies only to format regex")]
    PatternNotRegex,
    /// A point without the one key its device's format locates it by, or
    /// with another one as well.
    #[error("a point of a {} device is located by `{}` (and nothing else)", .0.name(), locator(*.0))]
    Location(FormatKind),
    /// `capture` names no capture of the pattern.
    #[error("the pattern has no capture named {0:?}")]
    NoSuchCapture(String),
    /// `nmea` names no field of a supported sentence.
    #[error("unknown NMEA field {0:?}; known: {known}", known = known_nmea_fields())]
    UnknownNmeaField(String),
    /// `pointer` is neither empty nor starts with `/`.
    #[error("a JSON pointer starts with '/', e.g. /{0}")]
    PointerWithoutSlash(String),
}

/// The point key a format locates fields by.
fn locator(kind: FormatKind) -> &'static str {
    match kind {
        FormatKind::KeyValue => "key",
        FormatKind::Json => "pointer",
        FormatKind::Csv => "column",
        FormatKind::Regex => "capture",
        FormatKind::Nmea => "nmea",
    }
}

/// `GGA.latitude, GGA.longitude, …`, for a point naming an unknown one.
fn known_nmea_fields() -> String {
    let known: Vec<String> = nmea::FIELDS
        .iter()
        .flat_map(|(k, fs)| fs.iter().map(move |f| format!("{k}.{f}")))
        .collect();
    known.join(", ")
}

/// Why a frame cannot be read in its device's format: the device (or the
/// line) garbled it, or another device on the port sent it.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// key_value: not one `key=value` pair (with the device's `assign`).
    #[error("no key{assign}value pair")]
    NoPair {
        /// The device's `assign` text.
        assign: String,
    },
    /// json: the frame is not a JSON document.
    #[error("not JSON: {0}")]
    NotJson(serde_json::Error),
    /// regex: the pattern does not match the frame.
    #[error("the pattern does not match")]
    NoMatch,
    /// nmea: not a verified sentence of a supported type.
    #[error(transparent)]
    Nmea(#[from] NmeaError),
}

impl ParseError {
    /// The cause in a few words, the same for every frame with it: a key to
    /// count bad frames by, where the text names the frame's details.
    pub fn cause(&self) -> &'static str {
        match self {
            ParseError::NoPair { .. } => "no key-value pair",
            ParseError::NotJson(_) => "not JSON",
            ParseError::NoMatch => "no pattern match",
            ParseError::Nmea(NmeaError::NotNmea) => "not NMEA",
            ParseError::Nmea(NmeaError::BadChecksum) => "bad NMEA checksum",
            ParseError::Nmea(NmeaError::Unsupported(_)) => "unsupported NMEA sentence",
            ParseError::Nmea(NmeaError::BadField { .. }) => "malformed NMEA field",
        }
    }
}

/// Why a field found in a frame is not a value of its point's type; the
/// point keeps its last value, marked bad with this text.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConvertError {
    /// A float point's text is not a finite number (`21,5`, `NaN`).
    #[error("{0:?} is not a number")]
    NotANumber(Raw),
    /// An int point's text is not a whole number.
    #[error("{0:?} is not a whole number")]
    NotAWholeNumber(Raw),
    /// A bool point's text is not an on/off word (core's error, which
    /// lists the words it takes).
    #[error("{0}")]
    NotOnOff(fieldbridge_core::ValueError),
    /// A field of a kind the point's type cannot take (`1.5` for an int,
    /// `2` for a bool).
    #[error("{raw:?} does not fit a {kind:?} point")]
    DoesNotFit {
        /// The field.
        raw: Raw,
        /// The point's type.
        kind: ValueKind,
    },
}

/// A device's frame parser, built once from its settings.
#[derive(Debug, Clone)]
pub struct Parser {
    kind: FormatKind,
    separators: Vec<char>,
    assign: String,
    pattern: Option<Regex>,
}

/// One parsed frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// key_value pairs, in order.
    Pairs(Vec<(String, String)>),
    /// A JSON document.
    Json(serde_json::Value),
    /// CSV columns.
    Columns(Vec<String>),
    /// Named regex captures.
    Captures(Vec<(String, String)>),
    /// An NMEA sentence.
    Nmea(Sentence),
}

/// A field as found in a frame, before conversion to the point's type.
#[derive(Debug, Clone, PartialEq)]
pub enum Raw {
    /// Text (to be parsed).
    Text(String),
    /// A number.
    Number(f64),
    /// A whole number.
    Int(i64),
    /// A boolean.
    Bool(bool),
}

impl Parser {
    /// The parser for `device`, or why its settings cannot work.
    pub fn new(device: &SerialDevice) -> Result<Self, FormatError> {
        let separators: Vec<char> = match (&device.separator, device.format) {
            (Some(s), _) if !s.is_empty() => s.chars().collect(),
            (Some(_), _) => return Err(FormatError::EmptySeparator),
            (None, FormatKind::Csv) => vec![','],
            (None, _) => vec![';', ',', '\t', ' '],
        };
        let pattern = match (&device.pattern, device.format) {
            (Some(p), FormatKind::Regex) => {
                let re = Regex::new(p).map_err(FormatError::BadPattern)?;
                if re.capture_names().flatten().next().is_none() {
                    return Err(FormatError::NoNamedCapture);
                }
                Some(re)
            }
            (None, FormatKind::Regex) => return Err(FormatError::NoPattern),
            (Some(_), _) => return Err(FormatError::PatternNotRegex),
            (None, _) => None,
        };
        Ok(Self {
            kind: device.format,
            separators,
            assign: device.assign.clone().unwrap_or_else(|| "=".to_owned()),
            pattern,
        })
    }

    /// Why `point` cannot be read with this format, if it cannot.
    pub fn check_point(&self, point: &SerialPoint) -> Result<(), FormatError> {
        let present = match self.kind {
            FormatKind::KeyValue => point.key.is_some(),
            FormatKind::Json => point.pointer.is_some(),
            FormatKind::Csv => point.column.is_some(),
            FormatKind::Regex => point.capture.is_some(),
            FormatKind::Nmea => point.nmea.is_some(),
        };
        let given = [
            point.key.is_some(),
            point.pointer.is_some(),
            point.column.is_some(),
            point.capture.is_some(),
            point.nmea.is_some(),
        ]
        .iter()
        .filter(|g| **g)
        .count();
        if !present || given != 1 {
            return Err(FormatError::Location(self.kind));
        }
        if let (Some(c), Some(re)) = (&point.capture, &self.pattern)
            && !re.capture_names().flatten().any(|n| n == c)
        {
            return Err(FormatError::NoSuchCapture(c.clone()));
        }
        if let Some(n) = &point.nmea
            && !nmea::known_field(n)
        {
            return Err(FormatError::UnknownNmeaField(n.clone()));
        }
        if let Some(p) = &point.pointer
            && !(p.is_empty() || p.starts_with('/'))
        {
            return Err(FormatError::PointerWithoutSlash(p.clone()));
        }
        Ok(())
    }

    /// Parses one frame.
    pub fn parse(&self, frame: &str) -> Result<Record, ParseError> {
        match self.kind {
            FormatKind::KeyValue => {
                let pairs: Vec<(String, String)> = frame
                    .split(|c| self.separators.contains(&c))
                    .filter_map(|part| {
                        let (k, v) = part.split_once(self.assign.as_str())?;
                        Some((k.trim().to_owned(), v.trim().to_owned()))
                    })
                    .collect();
                if pairs.is_empty() {
                    return Err(ParseError::NoPair {
                        assign: self.assign.clone(),
                    });
                }
                Ok(Record::Pairs(pairs))
            }
            FormatKind::Json => serde_json::from_str(frame)
                .map(Record::Json)
                .map_err(ParseError::NotJson),
            FormatKind::Csv => Ok(Record::Columns(
                frame
                    .split(|c| self.separators.contains(&c))
                    .map(|c| c.trim().trim_matches('"').to_owned())
                    .collect(),
            )),
            FormatKind::Regex => {
                // `new` gives every regex device a pattern.
                let Some((re, caps)) = self
                    .pattern
                    .as_ref()
                    .and_then(|re| Some((re, re.captures(frame)?)))
                else {
                    return Err(ParseError::NoMatch);
                };
                Ok(Record::Captures(
                    re.capture_names()
                        .flatten()
                        .filter_map(|n| caps.name(n).map(|m| (n.to_owned(), m.as_str().to_owned())))
                        .collect(),
                ))
            }
            FormatKind::Nmea => Ok(Record::Nmea(nmea::parse(frame)?)),
        }
    }
}

impl Record {
    /// The point's field in this frame, if the frame carries it.
    pub fn field(&self, point: &SerialPoint) -> Option<Raw> {
        let text = |s: &str| Raw::Text(s.to_owned());
        match self {
            Record::Pairs(pairs) => {
                let key = point.key.as_deref()?;
                pairs
                    .iter()
                    .rev()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| text(v))
            }
            Record::Json(doc) => match doc.pointer(point.pointer.as_deref()?)? {
                serde_json::Value::Bool(b) => Some(Raw::Bool(*b)),
                serde_json::Value::Number(n) => match n.as_i64() {
                    Some(i) => Some(Raw::Int(i)),
                    None => n.as_f64().map(Raw::Number),
                },
                serde_json::Value::String(s) => Some(text(s)),
                serde_json::Value::Null => None,
                other => Some(text(&other.to_string())),
            },
            Record::Columns(cols) => cols.get(point.column?).map(|c| text(c)),
            Record::Captures(caps) => {
                let name = point.capture.as_deref()?;
                caps.iter().find(|(n, _)| n == name).map(|(_, v)| text(v))
            }
            Record::Nmea(sentence) => {
                let (kind, field) = point.nmea.as_deref()?.split_once('.')?;
                if sentence.kind != kind {
                    return None;
                }
                Some(match sentence.get(field)? {
                    Field::Number(n) => Raw::Number(*n),
                    Field::Int(i) => Raw::Int(*i),
                    Field::Bool(b) => Raw::Bool(*b),
                    Field::Text(t) => text(t),
                })
            }
        }
    }
}

/// Converts a field to the point's type.
pub fn convert(raw: Raw, kind: ValueKind) -> Result<Value, ConvertError> {
    match (kind, raw) {
        (ValueKind::Float, Raw::Number(n)) => Ok(Value::Float(n)),
        (ValueKind::Float, Raw::Int(i)) => Ok(Value::Float(i as f64)),
        (ValueKind::Float, Raw::Text(t)) => match t.trim().parse::<f64>() {
            Ok(n) if n.is_finite() => Ok(Value::Float(n)),
            _ => Err(ConvertError::NotANumber(Raw::Text(t))),
        },
        (ValueKind::Int, Raw::Int(i)) => Ok(Value::Int(i)),
        (ValueKind::Int, Raw::Number(n)) if n.fract() == 0.0 && n.abs() < 9e15 => {
            Ok(Value::Int(n as i64))
        }
        (ValueKind::Int, Raw::Text(t)) => match t.trim().parse::<i64>() {
            Ok(i) => Ok(Value::Int(i)),
            Err(_) => Err(ConvertError::NotAWholeNumber(Raw::Text(t))),
        },
        (ValueKind::Bool, Raw::Bool(b)) => Ok(Value::Bool(b)),
        (ValueKind::Bool, Raw::Int(i @ (0 | 1))) => Ok(Value::Bool(i == 1)),
        (ValueKind::Bool, Raw::Text(t)) => {
            Value::parse_as(&t, ValueKind::Bool).map_err(ConvertError::NotOnOff)
        }
        (ValueKind::Text, Raw::Text(t)) => Ok(Value::Text(t)),
        (ValueKind::Text, Raw::Number(n)) => Ok(Value::Text(n.to_string())),
        (ValueKind::Text, Raw::Int(i)) => Ok(Value::Text(i.to_string())),
        (ValueKind::Text, Raw::Bool(b)) => Ok(Value::Text(b.to_string())),
        (kind, raw) => Err(ConvertError::DoesNotFit { raw, kind }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(format: FormatKind) -> SerialDevice {
        SerialDevice {
            format,
            prefix: None,
            separator: None,
            assign: None,
            pattern: None,
            request: None,
            write: None,
        }
    }

    fn point() -> SerialPoint {
        SerialPoint::default()
    }

    fn read(parser: &Parser, frame: &str, p: &SerialPoint) -> Option<Value> {
        let raw = parser.parse(frame).ok()?.field(p)?;
        convert(raw, p.kind).ok()
    }

    #[test]
    fn key_value_with_default_and_custom_separators() {
        let parser = Parser::new(&device(FormatKind::KeyValue)).unwrap();
        let t = SerialPoint {
            key: Some("T".into()),
            ..point()
        };
        let h = SerialPoint {
            key: Some("H".into()),
            kind: ValueKind::Int,
            ..point()
        };
        assert_eq!(read(&parser, "T=21.5;H=40", &t), Some(Value::Float(21.5)));
        assert_eq!(read(&parser, "T=21.5 H=40", &h), Some(Value::Int(40)));
        let mut d = device(FormatKind::KeyValue);
        d.separator = Some("|".into());
        d.assign = Some(":".into());
        let parser = Parser::new(&d).unwrap();
        assert_eq!(read(&parser, "T: 19.0|H: 55", &t), Some(Value::Float(19.0)));
        assert!(parser.parse("garbage").is_err());
    }

    #[test]
    fn json_pointers_and_types() {
        let parser = Parser::new(&device(FormatKind::Json)).unwrap();
        let temp = SerialPoint {
            pointer: Some("/env/temp".into()),
            ..point()
        };
        let on = SerialPoint {
            pointer: Some("/relay".into()),
            kind: ValueKind::Bool,
            ..point()
        };
        let frame = r#"{"env":{"temp":21},"relay":true}"#;
        assert_eq!(read(&parser, frame, &temp), Some(Value::Float(21.0)));
        assert_eq!(read(&parser, frame, &on), Some(Value::Bool(true)));
        assert_eq!(read(&parser, r#"{"env":{}}"#, &temp), None, "missing field");
        assert!(parser.parse("{not json").is_err());
    }

    #[test]
    fn csv_columns_and_regex_captures() {
        let parser = Parser::new(&device(FormatKind::Csv)).unwrap();
        let c1 = SerialPoint {
            column: Some(1),
            ..point()
        };
        assert_eq!(read(&parser, "W1, 3.25 ,OK", &c1), Some(Value::Float(3.25)));
        assert_eq!(read(&parser, "W1", &c1), None);

        let mut d = device(FormatKind::Regex);
        d.pattern = Some(r"^P=(?P<pressure>[0-9.]+)hPa S=(?P<state>\w+)$".into());
        let parser = Parser::new(&d).unwrap();
        let p = SerialPoint {
            capture: Some("pressure".into()),
            ..point()
        };
        let s = SerialPoint {
            capture: Some("state".into()),
            kind: ValueKind::Text,
            ..point()
        };
        assert_eq!(
            read(&parser, "P=1013.2hPa S=ok", &p),
            Some(Value::Float(1013.2))
        );
        assert_eq!(
            read(&parser, "P=1013.2hPa S=ok", &s),
            Some(Value::Text("ok".into()))
        );
        assert!(parser.parse("nothing like it").is_err());
        assert!(
            parser
                .check_point(&SerialPoint {
                    capture: Some("x".into()),
                    ..point()
                })
                .is_err()
        );
    }

    #[test]
    fn nmea_points_read_only_their_sentence() {
        let parser = Parser::new(&device(FormatKind::Nmea)).unwrap();
        let lat = SerialPoint {
            nmea: Some("GGA.latitude".into()),
            ..point()
        };
        let sats = SerialPoint {
            nmea: Some("GGA.satellites".into()),
            kind: ValueKind::Int,
            ..point()
        };
        let gga = "$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47";
        assert!(
            matches!(read(&parser, gga, &lat), Some(Value::Float(x)) if (x - 48.1173).abs() < 1e-4)
        );
        assert_eq!(read(&parser, gga, &sats), Some(Value::Int(8)));
        let rmc = "$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A";
        assert_eq!(read(&parser, rmc, &sats), None, "RMC has no satellites");
    }

    #[test]
    fn points_must_be_located_the_way_the_format_reads() {
        let parser = Parser::new(&device(FormatKind::Csv)).unwrap();
        assert!(
            parser
                .check_point(&SerialPoint {
                    key: Some("T".into()),
                    ..point()
                })
                .is_err()
        );
        assert!(
            parser
                .check_point(&SerialPoint {
                    column: Some(0),
                    ..point()
                })
                .is_ok()
        );
        let parser = Parser::new(&device(FormatKind::Nmea)).unwrap();
        let err = parser
            .check_point(&SerialPoint {
                nmea: Some("GGA.lat".into()),
                ..point()
            })
            .unwrap_err();
        assert_eq!(err, FormatError::UnknownNmeaField("GGA.lat".into()));
        assert!(err.to_string().contains("GGA.latitude"), "{err}");
        assert!(
            Parser::new(&device(FormatKind::Regex)).is_err(),
            "regex needs a pattern"
        );
    }

    #[test]
    fn values_that_do_not_fit_are_errors_not_zeros() {
        assert!(convert(Raw::Text("21,5".into()), ValueKind::Float).is_err());
        assert!(convert(Raw::Text("NaN".into()), ValueKind::Float).is_err());
        assert!(convert(Raw::Number(1.5), ValueKind::Int).is_err());
        assert_eq!(
            convert(Raw::Text("on".into()), ValueKind::Bool),
            Ok(Value::Bool(true))
        );
        assert!(convert(Raw::Text("maybe".into()), ValueKind::Bool).is_err());
    }

    /// The texts are what `fieldbridge check` prints; they must not change
    /// with the types.
    #[test]
    fn setup_errors_by_cause_with_their_texts() {
        let with = |f: &dyn Fn(&mut SerialDevice), format| {
            let mut d = device(format);
            f(&mut d);
            Parser::new(&d).unwrap_err()
        };
        let cases = [
            (
                with(&|d| d.separator = Some(String::new()), FormatKind::Csv),
                "separator must not be empty",
            ),
            (
                with(&|d| d.pattern = Some("(?P<t>".into()), FormatKind::Regex),
                "pattern is not a valid regular expression: ",
            ),
            (
                with(&|d| d.pattern = Some("[0-9]+".into()), FormatKind::Regex),
                "pattern needs named captures, like (?P<temp>[0-9.]+)",
            ),
            (
                with(&|_| {}, FormatKind::Regex),
                "format regex needs a `pattern`",
            ),
            (
                with(&|d| d.pattern = Some("(?P<t>x)".into()), FormatKind::Json),
                "pattern applies only to format regex",
            ),
        ];
        for (err, text) in &cases {
            assert!(err.to_string().starts_with(text), "{err} / {text}");
        }
        assert!(matches!(cases[0].0, FormatError::EmptySeparator));
        assert!(matches!(cases[1].0, FormatError::BadPattern(_)));
        assert!(matches!(cases[2].0, FormatError::NoNamedCapture));
        assert!(matches!(cases[3].0, FormatError::NoPattern));
        assert!(matches!(cases[4].0, FormatError::PatternNotRegex));

        let json = Parser::new(&device(FormatKind::Json)).unwrap();
        let err = json
            .check_point(&SerialPoint {
                pointer: Some("/a".into()),
                column: Some(1),
                ..point()
            })
            .unwrap_err();
        assert_eq!(err, FormatError::Location(FormatKind::Json));
        assert_eq!(
            err.to_string(),
            "a point of a json device is located by `pointer` (and nothing else)"
        );
        let err = json
            .check_point(&SerialPoint {
                pointer: Some("env/temp".into()),
                ..point()
            })
            .unwrap_err();
        assert_eq!(err, FormatError::PointerWithoutSlash("env/temp".into()));
        assert_eq!(
            err.to_string(),
            "a JSON pointer starts with '/', e.g. /env/temp"
        );
        let mut d = device(FormatKind::Regex);
        d.pattern = Some("(?P<t>[0-9]+)".into());
        let err = Parser::new(&d)
            .unwrap()
            .check_point(&SerialPoint {
                capture: Some("x".into()),
                ..point()
            })
            .unwrap_err();
        assert_eq!(err, FormatError::NoSuchCapture("x".into()));
        assert_eq!(err.to_string(), r#"the pattern has no capture named "x""#);
        let err = FormatError::UnknownNmeaField("GGA.lat".into()).to_string();
        assert!(
            err.starts_with(r#"unknown NMEA field "GGA.lat"; known: GGA."#),
            "{err}"
        );
    }

    #[test]
    fn unreadable_frames_by_cause_with_their_texts() {
        let mut d = device(FormatKind::KeyValue);
        d.assign = Some(":".into());
        let err = Parser::new(&d).unwrap().parse("garbage").unwrap_err();
        assert!(matches!(&err, ParseError::NoPair { assign } if assign == ":"));
        assert_eq!(
            (err.to_string().as_str(), err.cause()),
            ("no key:value pair", "no key-value pair")
        );

        let err = Parser::new(&device(FormatKind::Json))
            .unwrap()
            .parse("{not json")
            .unwrap_err();
        assert!(matches!(err, ParseError::NotJson(_)));
        assert!(
            err.to_string()
                .starts_with("not JSON: key must be a string"),
            "{err}"
        );
        assert_eq!(err.cause(), "not JSON");

        let mut d = device(FormatKind::Regex);
        d.pattern = Some("^T=(?P<t>[0-9]+)$".into());
        let err = Parser::new(&d).unwrap().parse("H=1").unwrap_err();
        assert!(matches!(err, ParseError::NoMatch));
        assert_eq!(
            (err.to_string().as_str(), err.cause()),
            ("the pattern does not match", "no pattern match")
        );

        let nmea = Parser::new(&device(FormatKind::Nmea)).unwrap();
        let gga = "$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*48";
        let cases = [
            ("T=21.5", NmeaError::NotNmea, "not NMEA"),
            (gga, NmeaError::BadChecksum, "bad NMEA checksum"),
        ];
        for (frame, want, cause) in cases {
            let err = nmea.parse(frame).unwrap_err();
            assert_eq!(err.to_string(), want.to_string());
            assert!(matches!(&err, ParseError::Nmea(e) if *e == want), "{err:?}");
            assert_eq!(err.cause(), cause);
        }
        let unsupported = ParseError::Nmea(NmeaError::Unsupported("GPXYZ".into()));
        assert_eq!(unsupported.cause(), "unsupported NMEA sentence");
        let malformed = ParseError::Nmea(NmeaError::BadField {
            kind: "GGA".into(),
            field: "latitude",
        });
        assert_eq!(malformed.to_string(), "malformed GGA field latitude");
        assert_eq!(malformed.cause(), "malformed NMEA field");
    }

    #[test]
    fn conversion_errors_by_cause_with_their_texts() {
        let cases = [
            (
                convert(Raw::Text("21,5".into()), ValueKind::Float),
                ConvertError::NotANumber(Raw::Text("21,5".into())),
                r#"Text("21,5") is not a number"#,
            ),
            (
                convert(Raw::Text("4.5".into()), ValueKind::Int),
                ConvertError::NotAWholeNumber(Raw::Text("4.5".into())),
                r#"Text("4.5") is not a whole number"#,
            ),
            (
                convert(Raw::Text("maybe".into()), ValueKind::Bool),
                ConvertError::NotOnOff(fieldbridge_core::ValueError::NotOnOff("maybe".into())),
                r#""maybe" is not on/off (use on, off, true, false, 1 or 0)"#,
            ),
            (
                convert(Raw::Number(1.5), ValueKind::Int),
                ConvertError::DoesNotFit {
                    raw: Raw::Number(1.5),
                    kind: ValueKind::Int,
                },
                "Number(1.5) does not fit a Int point",
            ),
            (
                convert(Raw::Int(2), ValueKind::Bool),
                ConvertError::DoesNotFit {
                    raw: Raw::Int(2),
                    kind: ValueKind::Bool,
                },
                "Int(2) does not fit a Bool point",
            ),
        ];
        for (got, want, text) in cases {
            assert_eq!(got.as_ref(), Err(&want));
            assert_eq!(want.to_string(), text);
        }
    }
}
