//! Durations in configuration, written the way people write them: `500ms`,
//! `5s`, `2m`, `1h30m`.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A duration that is not one, as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {0:?}, expected a number with a unit such as 500ms, 5s, 2m or 1h")]
pub struct DurationError(pub String);

/// Parses `5s`, `250ms`, `1m30s`. A bare number is refused: is `5` seconds
/// or milliseconds? The unit removes the doubt.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let t = text.trim();
    humantime::parse_duration(t).map_err(|_| DurationError(t.to_owned()))
}

/// Formats a duration the way [`parse`] reads it.
pub fn format(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// What [`parse`] accepts, as a JSON Schema pattern: one or more numbers,
/// each with a unit (`500ms`, `5s`, `1h 30m`).
pub const PATTERN: &str = r"^\s*([0-9]+\s*[a-zA-Zµ]+\s*)+$";

/// JSON Schema of a required duration (`#[schemars(schema_with = ...)]`).
pub fn schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "pattern": PATTERN,
        "examples": ["500ms", "5s", "2m", "1h30m"],
    })
}

/// JSON Schema of an optional duration: a duration or nothing.
pub fn optional_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": ["string", "null"],
        "pattern": PATTERN,
        "examples": ["500ms", "5s", "2m", "1h30m"],
    })
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Raw {
    Text(String),
    Number(f64),
}

fn from_raw<E: serde::de::Error>(raw: Raw) -> Result<Duration, E> {
    match raw {
        Raw::Text(s) => parse(&s).map_err(E::custom),
        Raw::Number(n) => Err(E::custom(format!(
            "invalid duration {n}, add a unit: {n}s or {n}ms"
        ))),
    }
}

/// `#[serde(deserialize_with = "duration::required")]`
pub fn required<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    from_raw(Raw::deserialize(d)?)
}

/// `#[serde(default, deserialize_with = "duration::optional")]`
pub fn optional<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    match Option::<Raw>::deserialize(d)? {
        None => Ok(None),
        Some(raw) => from_raw(raw).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_human_durations() {
        assert_eq!(parse("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("1m 30s"), Ok(Duration::from_secs(90)));
        assert!(parse("5").is_err());
        assert!(parse("five seconds").is_err());
    }

    #[test]
    fn the_schema_pattern_matches_what_parse_accepts() {
        let re = regex::Regex::new(PATTERN).expect("pattern");
        for ok in ["5s", "250ms", "1m 30s", "1h30m", " 2 minutes "] {
            assert!(parse(ok).is_ok() && re.is_match(ok), "{ok}");
        }
        for bad in ["5", "five seconds", ""] {
            assert!(!re.is_match(bad), "{bad}");
        }
    }
}
