//! Values as a person reads them, in chat, status texts and forms: one
//! place, so that every text shows a reading the same way.
//!
//! Only for people: pubsub items and XEP-0323/0325 data carry the value at
//! full (normalized) precision.

use std::time::{Duration, SystemTime};

use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

use crate::device::{MAX_DECIMALS, PointSpec};
use crate::value::{Unit, Value};

/// Significant digits a float shows when its point sets no `decimals`:
/// enough to read a trend, few enough for a phone's status line.
pub const SIGNIFICANT_DIGITS: i32 = 4;

/// A point's value with its unit: `62.80 °C`, `pump on`'s `on`.
pub fn with_unit(point: &PointSpec, value: &Value) -> String {
    unit_after(point, value_text(value, point.settings.decimals))
}

/// A number from the configuration (an alarm's limit) with the point's
/// unit, as it was written: `85 °C`, `0.5 bar` (not rounded to the
/// point's digits, which could make `85.04` read as the `85.0` it is not).
pub fn setting_with_unit(point: &PointSpec, x: f64) -> String {
    unit_after(point, format!("{x}"))
}

fn unit_after(point: &PointSpec, shown: String) -> String {
    match &point.settings.unit {
        Some(Unit(u)) if !u.is_empty() => format!("{shown} {u}"),
        _ => shown,
    }
}

/// A duration in words, as short as a phone's line wants it: `4 s`,
/// `3 min`, `2 h`, `5 d` (rounded down).
pub fn age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..120 => format!("{s} s"),
        120..7200 => format!("{} min", s / 60),
        7200..172_800 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    }
}

/// A value without unit: floats by [`number`], booleans `on`/`off`, ints
/// and text as they are.
pub fn value_text(value: &Value, decimals: Option<u8>) -> String {
    match value {
        Value::Float(x) => number(*x, decimals),
        other => other.to_string(),
    }
}

/// A float for people: exactly `decimals` places when the point sets them;
/// otherwise [`SIGNIFICANT_DIGITS`] significant digits, never exponent
/// notation and never fewer than all integer digits (`1670.218989` →
/// `1670`, `62.79916` → `62.80`, `123456.7` → `123457`). A value that
/// rounds to zero shows no sign.
pub fn number(x: f64, decimals: Option<u8>) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    let places = match decimals {
        Some(d) => usize::from(d.min(MAX_DECIMALS)),
        None => {
            let places = default_places(x);
            // 9.99996 rounds to 10.000: one integer digit more, one place less.
            let rounded: f64 = format!("{x:.places$}").parse().unwrap_or(x);
            default_places(rounded).min(places)
        }
    };
    let text = format!("{x:.places$}");
    match text.strip_prefix('-') {
        Some(rest) if rest.bytes().all(|b| b == b'0' || b == b'.') => rest.to_owned(),
        _ => text,
    }
}

/// Decimal places that give [`SIGNIFICANT_DIGITS`] for `x`, at most
/// [`MAX_DECIMALS`]; none for 0.
fn default_places(x: f64) -> usize {
    if x == 0.0 {
        return 0;
    }
    // Finite and non-zero: log10 is finite, within ±324.
    let magnitude = x.abs().log10().floor() as i32;
    let places = (SIGNIFICANT_DIGITS - 1 - magnitude).clamp(0, i32::from(MAX_DECIMALS));
    usize::try_from(places).unwrap_or(0)
}

/// A time as people read it, in `zone` with its offset:
/// `2026-11-25 15:03:07 +01:00`.
pub fn time(at: SystemTime, zone: &TimeZone) -> String {
    match zoned(at, zone) {
        Some(z) => z.strftime("%Y-%m-%d %H:%M:%S %:z").to_string(),
        None => "(a time out of range)".to_owned(),
    }
}

/// A time of day in `zone` with its offset, `14:03:12 +01:00`, where the
/// day goes without saying (an alert: its message has a date, a delay
/// stamp carries it in full).
pub fn clock(at: SystemTime, zone: &TimeZone) -> String {
    match zoned(at, zone) {
        Some(z) => z.strftime("%H:%M:%S %:z").to_string(),
        None => "(a time out of range)".to_owned(),
    }
}

/// From one time to another: `14:03:07–14:09:12 +01:00` within one day
/// and offset, both times in full otherwise.
pub fn span(from: SystemTime, to: SystemTime, zone: &TimeZone) -> String {
    match (zoned(from, zone), zoned(to, zone)) {
        (Some(a), Some(b)) if a.date() == b.date() && a.offset() == b.offset() => {
            format!("{}–{}", a.strftime("%H:%M:%S"), b.strftime("%H:%M:%S %:z"))
        }
        _ => format!("{} – {}", time(from, zone), time(to, zone)),
    }
}

fn zoned(at: SystemTime, zone: &TimeZone) -> Option<Zoned> {
    Some(Timestamp::try_from(at).ok()?.to_zoned(zone.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_short() {
        assert_eq!(age(Duration::from_secs(4)), "4 s");
        assert_eq!(age(Duration::from_secs(119)), "119 s");
        assert_eq!(age(Duration::from_secs(180)), "3 min");
        assert_eq!(age(Duration::from_secs(3 * 3600)), "3 h");
        assert_eq!(age(Duration::from_secs(5 * 86_400)), "5 d");
    }

    #[test]
    fn times_show_in_the_zone_with_their_offset() {
        // 2026-11-25 14:03:07 UTC
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_615_387);
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        assert_eq!(time(at, &berlin), "2026-11-25 15:03:07 +01:00");
        assert_eq!(time(at, &TimeZone::UTC), "2026-11-25 14:03:07 +00:00");
        let later = at + Duration::from_secs(365);
        assert_eq!(span(at, later, &berlin), "15:03:07–15:09:12 +01:00");
        let next_day = at + Duration::from_secs(86_400);
        assert_eq!(
            span(at, next_day, &berlin),
            "2026-11-25 15:03:07 +01:00 – 2026-11-26 15:03:07 +01:00"
        );
    }

    #[test]
    fn floats_show_four_significant_digits_without_losing_integer_digits() {
        let cases = [
            (1670.218989, "1670"),
            (62.79916, "62.80"),
            (0.0012345, "0.001234"),
            (123456.7, "123457"),
            (21.5, "21.50"),
            (-4.56789, "-4.568"),
            (9.99996, "10.00"),
            (999.96, "1000"),
            (0.0, "0"),
            (-0.0, "0"),
            (-0.00000000001, "0"),
            (1e20, "100000000000000000000"),
            (1e-12, "0"),
        ];
        for (x, want) in cases {
            assert_eq!(number(x, None), want, "{x}");
        }
    }

    #[test]
    fn decimals_give_exactly_that_many_places() {
        assert_eq!(number(62.79916, Some(1)), "62.8");
        assert_eq!(number(21.0, Some(2)), "21.00");
        assert_eq!(number(1670.218989, Some(0)), "1670");
        assert_eq!(number(-0.04, Some(1)), "0.0");
        assert_eq!(number(0.5, Some(200)), "0.500000000");
    }

    #[test]
    fn other_values_show_as_they_are() {
        assert_eq!(value_text(&Value::Int(123_456_789), None), "123456789");
        assert_eq!(value_text(&Value::Bool(true), None), "on");
        assert_eq!(value_text(&Value::Bool(false), Some(2)), "off");
        assert_eq!(value_text(&Value::Text("1.23456".into()), None), "1.23456");
        assert_eq!(value_text(&Value::Float(f64::NAN), None), "NaN");
    }
}
