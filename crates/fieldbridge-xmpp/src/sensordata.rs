//! Readings as XEP-0323 `fields`, the payload of every pubsub item, so that
//! IoT software that speaks sensor-data can read the gateway's nodes.

use std::time::{SystemTime, UNIX_EPOCH};

use fieldbridge_core::{Quality, Reading, Value};
use minidom::Element;

use crate::xml::{NS_SENSORDATA, element, set, with};

/// `<fields xmlns='urn:xmpp:iot:sensordata' seqnr=… done='true'>` with one
/// `<node>` and one `<timestamp>` holding `readings`.
pub fn fields(seqnr: u64, device: &str, at: SystemTime, readings: &[&Reading]) -> Element {
    let mut timestamp = with(element("timestamp", NS_SENSORDATA), "value", timestamp(at));
    for r in readings {
        timestamp.append_child(field(r));
    }
    let mut node = with(element("node", NS_SENSORDATA), "nodeId", device);
    node.append_child(timestamp);
    let mut fields = element("fields", NS_SENSORDATA);
    set(&mut fields, "seqnr", seqnr.to_string());
    set(&mut fields, "done", "true");
    fields.append_child(node);
    fields
}

fn field(r: &Reading) -> Element {
    let (name, value) = match &r.value {
        Value::Bool(b) => ("boolean", b.to_string()),
        Value::Int(_) | Value::Float(_) => ("numeric", r.value.to_string()),
        Value::Text(t) => ("string", t.clone()),
    };
    let mut el = with(element(name, NS_SENSORDATA), "name", r.point.as_str());
    set(&mut el, "momentary", "true");
    set(&mut el, "automaticReadout", "true");
    set(&mut el, "value", value);
    if let (Some(unit), "numeric") = (&r.unit, name) {
        set(&mut el, "unit", unit.0.clone());
    }
    match &r.quality {
        Quality::Good => {}
        Quality::Uncertain => set(&mut el, "questionable", "true"),
        Quality::Bad { .. } => set(&mut el, "invalid", "true"),
    }
    el
}

/// `2026-11-25T05:00:00.123Z`: UTC with milliseconds, as XEP-0082 allows.
pub fn timestamp(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let millis = since.subsec_millis();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
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

    use fieldbridge_core::{PointId, Unit};

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

    #[test]
    fn fields_follow_the_xep_0323_shape() {
        let t = Reading {
            point: PointId::new("temperature").unwrap(),
            value: Value::Float(21.5),
            unit: Some(Unit("°C".into())),
            quality: Quality::Good,
        };
        let pump = Reading {
            point: PointId::new("pump").unwrap(),
            value: Value::Bool(true),
            unit: None,
            quality: Quality::Bad { reason: "x".into() },
        };
        let el = fields(7, "boiler", UNIX_EPOCH, &[&t, &pump]);
        let xml = String::from(&el);
        assert_eq!(
            xml,
            "<fields xmlns='urn:xmpp:iot:sensordata' done='true' seqnr='7'><node nodeId='boiler'>\
<timestamp value='1970-01-01T00:00:00.000Z'>\
<numeric automaticReadout='true' momentary='true' name='temperature' unit='°C' value='21.5'/>\
<boolean automaticReadout='true' invalid='true' momentary='true' name='pump' value='true'/>\
</timestamp></node></fields>"
        );
    }
}
