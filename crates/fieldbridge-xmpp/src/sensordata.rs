//! Readings as XEP-0323 `fields`: the payload of every pubsub item (a
//! device's whole state), of readouts and of historical readouts, so that
//! IoT software that speaks sensor-data can read the gateway's nodes.
//!
//! Written straight to text, once per item: the hot path (one item to many
//! subscribers) never builds an element tree. The few places that need an
//! element (a reply carrying stored items) parse this text back.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use fieldbridge_core::alarm::Severity;
use fieldbridge_core::{PointId, Quality, Sample, Value};

use crate::xml::NS_SENSORDATA;

/// What the values are, as XEP-0323 field types say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// Read now (items, momentary readouts).
    Momentary,
    /// Read from the history (historical readouts).
    Historical,
}

/// `<fields xmlns='urn:xmpp:iot:sensordata' seqnr=…>` with one `<node>`,
/// the samples grouped under the `<timestamp>` they were read at, oldest
/// first, so that a reader sees each value and how fresh it is.
///
/// Attributes whose default says the same are left out (a subscriber pays
/// for every byte on every item): `automaticReadout` (every value here is
/// read automatically; the attribute tells a reader nothing it can use)
/// and the unit of a value without one.
pub fn fields<'a>(
    seqnr: &str,
    device: &str,
    samples: impl IntoIterator<Item = &'a Sample>,
    kind: FieldType,
    done: bool,
) -> String {
    fields_flagged(seqnr, device, samples, kind, done, |_| None)
}

/// [`fields`], with the points in alarm marked by XEP-0323's field
/// quality flags: `warning='true'` while an info or warning alarm of the
/// point is raised, `error='true'` while a critical one is (`alarm`
/// says which, by point). Offline and connection alarms mark no field.
/// Items sent live carry the flags as they are when sent; items read back
/// from the history carry none (the history keeps values, not alarms).
pub fn fields_flagged<'a>(
    seqnr: &str,
    device: &str,
    samples: impl IntoIterator<Item = &'a Sample>,
    kind: FieldType,
    done: bool,
    alarm: impl Fn(&PointId) -> Option<Severity>,
) -> String {
    let mut samples: Vec<&Sample> = samples.into_iter().collect();
    // Stable: samples read together keep their point order.
    samples.sort_by_key(|s| millis(s.at));
    let mut out = String::with_capacity(160 + 64 * samples.len());
    out.push_str("<fields xmlns='");
    out.push_str(NS_SENSORDATA);
    out.push_str("' seqnr='");
    escape_into(&mut out, seqnr);
    out.push('\'');
    if done {
        out.push_str(" done='true'");
    }
    out.push_str("><node nodeId='");
    escape_into(&mut out, device);
    out.push_str("'>");
    let mut open: Option<u64> = None;
    for s in samples {
        let ms = millis(s.at);
        if open != Some(ms) {
            if open.is_some() {
                out.push_str("</timestamp>");
            }
            out.push_str("<timestamp value='");
            out.push_str(&timestamp(s.at));
            out.push_str("'>");
            open = Some(ms);
        }
        field(&mut out, s, kind, alarm(&s.reading.point));
    }
    if open.is_some() {
        out.push_str("</timestamp>");
    }
    out.push_str("</node></fields>");
    out
}

fn field(out: &mut String, s: &Sample, kind: FieldType, alarm: Option<Severity>) {
    let r = &s.reading;
    let (name, value) = match &r.value {
        Value::Bool(b) => ("boolean", if *b { "true" } else { "false" }.to_owned()),
        Value::Int(_) | Value::Float(_) => ("numeric", r.value.to_string()),
        Value::Text(t) => ("string", t.clone()),
    };
    out.push('<');
    out.push_str(name);
    out.push_str(" name='");
    escape_into(out, r.point.as_str());
    out.push_str(match kind {
        FieldType::Momentary => "' momentary='true",
        FieldType::Historical => "' historicalOther='true",
    });
    out.push_str("' value='");
    escape_into(out, &value);
    out.push('\'');
    if let (Some(unit), "numeric") = (&r.unit, name) {
        out.push_str(" unit='");
        escape_into(out, &unit.0);
        out.push('\'');
    }
    match &r.quality {
        Quality::Good => {}
        Quality::Uncertain => out.push_str(" questionable='true'"),
        Quality::Bad { .. } => out.push_str(" invalid='true'"),
    }
    match alarm {
        None => {}
        Some(Severity::Critical) => out.push_str(" error='true'"),
        Some(Severity::Info | Severity::Warning) => out.push_str(" warning='true'"),
    }
    out.push_str("/>");
}

/// Appends `text` escaped for an attribute value in single quotes (or for
/// character data).
pub fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
}

fn millis(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// `2026-11-25T05:00:00.123Z`: UTC with milliseconds, as XEP-0082 allows.
pub fn timestamp(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let millis = since.subsec_millis();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    let mut out = String::with_capacity(24);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    );
    out
}

/// Days since 1970-01-01 to (year, month, day), after Howard Hinnant's
/// `civil_from_days`: exact for the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use fieldbridge_core::{PointId, Reading, Unit};

    use super::*;

    #[test]
    fn timestamps_are_utc_with_milliseconds() {
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        // 2026-11-25T05:00:00.123Z
        let at = UNIX_EPOCH + Duration::from_millis(1_795_582_800_123);
        assert_eq!(timestamp(at), "2026-11-25T05:00:00.123Z");
        // A leap day.
        let at = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(timestamp(at), "2000-02-29T00:00:00.000Z");
    }

    fn sample(
        point: &str,
        value: Value,
        unit: Option<&str>,
        quality: Quality,
        at_ms: u64,
    ) -> Sample {
        Sample {
            at: UNIX_EPOCH + Duration::from_millis(at_ms),
            reading: Reading {
                point: PointId::new(point).unwrap(),
                value,
                unit: unit.map(|u| Unit(u.into())),
                quality,
            },
        }
    }

    #[test]
    fn fields_follow_the_xep_0323_shape_grouped_by_read_time() {
        let state = [
            sample(
                "temperature",
                Value::Float(21.5),
                Some("°C"),
                Quality::Good,
                2000,
            ),
            sample(
                "pump",
                Value::Bool(true),
                None,
                Quality::Bad { reason: "x".into() },
                1000,
            ),
            sample(
                "label",
                Value::Text("it's <ok>".into()),
                Some("ignored"),
                Quality::Uncertain,
                2000,
            ),
        ];
        let xml = fields("7", "boiler", &state, FieldType::Momentary, true);
        assert_eq!(
            xml,
            "<fields xmlns='urn:xmpp:iot:sensordata' seqnr='7' done='true'><node nodeId='boiler'>\
<timestamp value='1970-01-01T00:00:01.000Z'>\
<boolean name='pump' momentary='true' value='true' invalid='true'/>\
</timestamp><timestamp value='1970-01-01T00:00:02.000Z'>\
<numeric name='temperature' momentary='true' value='21.5' unit='°C'/>\
<string name='label' momentary='true' value='it&apos;s &lt;ok&gt;' questionable='true'/>\
</timestamp></node></fields>"
        );
        // It is well-formed XML that a parser reads back.
        let el = crate::reader::parse_element(&xml).unwrap();
        assert_eq!(el.attr("seqnr"), Some("7"));
        let historical = fields("1", "boiler", &state[..1], FieldType::Historical, false);
        assert!(
            historical.contains("historicalOther='true'"),
            "{historical}"
        );
        assert!(!historical.contains("done="), "{historical}");
    }
}
