//! Durations in configuration, written the way people write them: `500ms`,
//! `5s`, `2m`, `1h30m`.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Parses `5s`, `250ms`, `1m30s`. A bare number is refused: is `5` seconds
/// or milliseconds? The unit removes the doubt.
pub fn parse(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    humantime::parse_duration(t).map_err(|_| {
        format!("invalid duration {t:?}, expected a number with a unit such as 500ms, 5s, 2m or 1h")
    })
}

/// Formats a duration the way [`parse`] reads it.
pub fn format(d: Duration) -> String {
    humantime::format_duration(d).to_string()
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
}
