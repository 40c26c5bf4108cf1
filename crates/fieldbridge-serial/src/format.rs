//! Frames to fields: key=value, JSON, CSV, regex and NMEA, and fields to
//! values of each point's type.

use fieldbridge_core::Value;
use regex::Regex;

use crate::config::{FormatKind, SerialDevice, SerialPoint};
use crate::nmea::{self, Field, Sentence};
use fieldbridge_core::ValueKind;

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
    pub fn new(device: &SerialDevice) -> Result<Self, String> {
        let separators: Vec<char> = match (&device.separator, device.format) {
            (Some(s), _) if !s.is_empty() => s.chars().collect(),
            (Some(_), _) => return Err("separator must not be empty".into()),
            (None, FormatKind::Csv) => vec![','],
            (None, _) => vec![';', ',', '\t', ' '],
        };
        let pattern = match (&device.pattern, device.format) {
            (Some(p), FormatKind::Regex) => {
                let re = Regex::new(p)
                    .map_err(|e| format!("pattern is not a valid regular expression: {e}"))?;
                if re.capture_names().flatten().next().is_none() {
                    return Err("pattern needs named captures, like (?P<temp>[0-9.]+)".into());
                }
                Some(re)
            }
            (None, FormatKind::Regex) => return Err("format regex needs a `pattern`".into()),
            (Some(_), _) => return Err("pattern applies only to format regex".into()),
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
    pub fn check_point(&self, point: &SerialPoint) -> Result<(), String> {
        let (wanted, present) = match self.kind {
            FormatKind::KeyValue => ("key", point.key.is_some()),
            FormatKind::Json => ("pointer", point.pointer.is_some()),
            FormatKind::Csv => ("column", point.column.is_some()),
            FormatKind::Regex => ("capture", point.capture.is_some()),
            FormatKind::Nmea => ("nmea", point.nmea.is_some()),
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
            return Err(format!(
                "a point of a {} device is located by `{wanted}` (and nothing else)",
                self.kind.name()
            ));
        }
        if let (Some(c), Some(re)) = (&point.capture, &self.pattern)
            && !re.capture_names().flatten().any(|n| n == c)
        {
            return Err(format!("the pattern has no capture named {c:?}"));
        }
        if let Some(n) = &point.nmea
            && !nmea::known_field(n)
        {
            let known: Vec<String> = nmea::FIELDS
                .iter()
                .flat_map(|(k, fs)| fs.iter().map(move |f| format!("{k}.{f}")))
                .collect();
            return Err(format!(
                "unknown NMEA field {n:?}; known: {}",
                known.join(", ")
            ));
        }
        if let Some(p) = &point.pointer
            && !(p.is_empty() || p.starts_with('/'))
        {
            return Err(format!("a JSON pointer starts with '/', e.g. /{p}"));
        }
        Ok(())
    }

    /// Parses one frame.
    pub fn parse(&self, frame: &str) -> Result<Record, String> {
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
                    return Err(format!("no key{}value pair", self.assign));
                }
                Ok(Record::Pairs(pairs))
            }
            FormatKind::Json => serde_json::from_str(frame)
                .map(Record::Json)
                .map_err(|e| format!("not JSON: {e}")),
            FormatKind::Csv => Ok(Record::Columns(
                frame
                    .split(|c| self.separators.contains(&c))
                    .map(|c| c.trim().trim_matches('"').to_owned())
                    .collect(),
            )),
            FormatKind::Regex => {
                let re = self.pattern.as_ref().ok_or("no pattern")?;
                let caps = re.captures(frame).ok_or("the pattern does not match")?;
                Ok(Record::Captures(
                    re.capture_names()
                        .flatten()
                        .filter_map(|n| caps.name(n).map(|m| (n.to_owned(), m.as_str().to_owned())))
                        .collect(),
                ))
            }
            FormatKind::Nmea => nmea::parse(frame)
                .map(Record::Nmea)
                .map_err(|e| e.to_string()),
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
pub fn convert(raw: Raw, kind: ValueKind) -> Result<Value, String> {
    let bad = |what: &str, raw: &Raw| Err(format!("{raw:?} is not {what}"));
    match (kind, raw) {
        (ValueKind::Float, Raw::Number(n)) => Ok(Value::Float(n)),
        (ValueKind::Float, Raw::Int(i)) => Ok(Value::Float(i as f64)),
        (ValueKind::Float, Raw::Text(t)) => match t.trim().parse::<f64>() {
            Ok(n) if n.is_finite() => Ok(Value::Float(n)),
            _ => bad("a number", &Raw::Text(t)),
        },
        (ValueKind::Int, Raw::Int(i)) => Ok(Value::Int(i)),
        (ValueKind::Int, Raw::Number(n)) if n.fract() == 0.0 && n.abs() < 9e15 => {
            Ok(Value::Int(n as i64))
        }
        (ValueKind::Int, Raw::Text(t)) => match t.trim().parse::<i64>() {
            Ok(i) => Ok(Value::Int(i)),
            Err(_) => bad("a whole number", &Raw::Text(t)),
        },
        (ValueKind::Bool, Raw::Bool(b)) => Ok(Value::Bool(b)),
        (ValueKind::Bool, Raw::Int(i @ (0 | 1))) => Ok(Value::Bool(i == 1)),
        (ValueKind::Bool, Raw::Text(t)) => {
            Value::parse_as(&t, fieldbridge_core::ValueKind::Bool).map_err(|e| e.to_string())
        }
        (ValueKind::Text, Raw::Text(t)) => Ok(Value::Text(t)),
        (ValueKind::Text, Raw::Number(n)) => Ok(Value::Text(n.to_string())),
        (ValueKind::Text, Raw::Int(i)) => Ok(Value::Text(i.to_string())),
        (ValueKind::Text, Raw::Bool(b)) => Ok(Value::Text(b.to_string())),
        (kind, raw) => Err(format!("{raw:?} does not fit a {kind:?} point")),
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
        assert!(err.contains("GGA.latitude"), "{err}");
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
}
