//! The items an older version left (one reading per item, as XEP-0323
//! XML) read back as snapshots, once, when the store upgrades its files.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fieldbridge_core::{PointId, Quality, Reading, Sample, Unit, Value};
use fieldbridge_store::Snapshot;
use minidom::Element;

use crate::xml::NS_SENSORDATA;

/// The items of an older version (one reading per item, as XEP-0323 XML)
/// as snapshots: each item becomes the device's whole state as it stood
/// after that reading, so that a subscriber that asks for old items gets
/// what a new one would have shown. Unreadable items are skipped (logged).
pub(super) fn upgrade(node: &str, items: Vec<(u64, String)>) -> Vec<Snapshot> {
    let mut state: BTreeMap<PointId, Sample> = BTreeMap::new();
    let mut out = Vec::with_capacity(items.len());
    let mut skipped = 0usize;
    for (id, payload) in items {
        let Some(fields) =
            crate::reader::parse_element(&payload).filter(|e| e.ns() == NS_SENSORDATA)
        else {
            skipped += 1;
            continue;
        };
        let seqnr = fields
            .attr("seqnr")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let samples = legacy_samples(&fields, UNIX_EPOCH + Duration::from_micros(id));
        if samples.is_empty() {
            skipped += 1;
            continue;
        }
        for s in samples {
            state.insert(s.reading.point.clone(), s);
        }
        out.push(Snapshot {
            id,
            seqnr,
            samples: state.values().cloned().collect(),
        });
    }
    if skipped > 0 {
        tracing::warn!(
            device = node,
            skipped,
            "items of the previous version that could not be read were left out"
        );
    }
    out
}

/// The readings in an old item's `<fields>`, read at its timestamp (or,
/// without a readable one, at the item's own time).
fn legacy_samples(fields: &Element, item_time: SystemTime) -> Vec<Sample> {
    let mut out = Vec::new();
    for node in fields.children().filter(|c| c.name() == "node") {
        for ts in node.children().filter(|c| c.name() == "timestamp") {
            let at = ts
                .attr("value")
                .and_then(parse_timestamp)
                .unwrap_or(item_time);
            for f in ts.children() {
                let (Some(name), Some(text)) = (f.attr("name"), f.attr("value")) else {
                    continue;
                };
                let Ok(point) = PointId::new(name) else {
                    continue;
                };
                let value = match f.name() {
                    "boolean" => Value::Bool(text == "true"),
                    "numeric" => match text.parse::<i64>() {
                        Ok(i) => Value::Int(i),
                        Err(_) => match text.parse::<f64>() {
                            Ok(x) if x.is_finite() => Value::Float(x),
                            _ => continue,
                        },
                    },
                    _ => Value::Text(text.to_owned()),
                };
                let quality = if f.attr("invalid") == Some("true") {
                    Quality::Bad {
                        reason: "marked invalid".to_owned(),
                    }
                } else if f.attr("questionable") == Some("true") {
                    Quality::Uncertain
                } else {
                    Quality::Good
                };
                out.push(Sample {
                    at,
                    reading: Reading {
                        point,
                        value,
                        unit: f.attr("unit").map(|u| Unit(u.to_owned())),
                        quality,
                    },
                });
            }
        }
    }
    out
}

/// `2026-11-25T05:00:00.123Z` (what [`crate::sensordata::timestamp`]
/// writes) back to a time; `None` for anything else.
fn parse_timestamp(t: &str) -> Option<SystemTime> {
    let b = t.as_bytes();
    if b.len() != 24 || b[4] != b'-' || b[10] != b'T' || b[23] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| t.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss, ms) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let millis = ((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1000 + ms).max(0);
    Some(UNIX_EPOCH + Duration::from_millis(u64::try_from(millis).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_read_back_what_was_written() {
        for ms in [0u64, 951_782_400_000, 1_795_582_800_123, 4_102_444_800_999] {
            let t = UNIX_EPOCH + Duration::from_millis(ms);
            assert_eq!(
                parse_timestamp(&crate::sensordata::timestamp(t)),
                Some(t),
                "{ms}"
            );
        }
        assert_eq!(parse_timestamp("yesterday"), None);
        assert_eq!(parse_timestamp("2026-11-25 05:00:00.123Z"), None);
    }

    #[test]
    fn old_items_become_the_state_after_each_reading() {
        let item = |seqnr: u32, point: &str, field: &str| {
            format!(
                "<fields xmlns='urn:xmpp:iot:sensordata' done='true' seqnr='{seqnr}'><node nodeId='boiler'>\
<timestamp value='2026-11-25T05:00:0{seqnr}.000Z'>{field}</timestamp></node></fields>"
            )
            .replace("POINT", point)
        };
        let items = vec![
            (
                1,
                item(
                    1,
                    "temperature",
                    "<numeric automaticReadout='true' momentary='true' name='POINT' unit='°C' value='21.5'/>",
                ),
            ),
            (2, "not xml".to_owned()),
            (
                3,
                item(
                    3,
                    "pump",
                    "<boolean automaticReadout='true' invalid='true' momentary='true' name='POINT' value='true'/>",
                ),
            ),
            (
                4,
                item(
                    4,
                    "temperature",
                    "<numeric automaticReadout='true' momentary='true' name='POINT' unit='°C' value='22'/>",
                ),
            ),
        ];
        let snapshots = upgrade("boiler", items);
        type View = (u64, u64, Vec<(String, String)>);
        let view: Vec<View> = snapshots
            .iter()
            .map(|s| {
                (
                    s.id,
                    s.seqnr,
                    s.samples
                        .iter()
                        .map(|x| (x.reading.point.to_string(), x.reading.value.to_string()))
                        .collect(),
                )
            })
            .collect();
        let pair = |p: &str, v: &str| (p.to_owned(), v.to_owned());
        assert_eq!(
            view,
            vec![
                (1, 1, vec![pair("temperature", "21.5")]),
                (3, 3, vec![pair("pump", "on"), pair("temperature", "21.5")]),
                (4, 4, vec![pair("pump", "on"), pair("temperature", "22")]),
            ]
        );
        let pump = &snapshots[1].samples[0];
        assert!(!pump.reading.quality.is_good());
        assert_eq!(
            crate::sensordata::timestamp(pump.at),
            "2026-11-25T05:00:03.000Z"
        );
        assert_eq!(
            snapshots[2].samples[1].reading.unit,
            Some(Unit("°C".into()))
        );
    }
}
