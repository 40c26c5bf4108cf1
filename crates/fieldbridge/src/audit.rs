//! `fieldbridge audit`: the write audit the running gateway appends to its
//! state directory, for people (times in `gateway.timezone`, values with
//! their units) or as the raw JSON lines.

use std::fmt::Write as _;

use fieldbridge_core::audit::{Action, Entry, Outcome};
use fieldbridge_core::{Directory, Value, display};
use jiff::tz::TimeZone;

/// One entry as a line for people: `2026-11-25 15:03:07 +01:00
/// alice@example.org via chat: write boiler.setpoint = 65.0 °C: ok, now
/// 65.0 °C` (two spaces after the time).
pub fn render(entry: &Entry, directory: &Directory, zone: &TimeZone) -> String {
    let mut line = format!(
        "{}  {} via {}: ",
        display::time(entry.at, zone),
        entry.who,
        entry.via.as_str()
    );
    let (device, point, asked) = match &entry.action {
        Action::Write {
            device,
            point,
            asked,
        } => (device, point, asked),
        Action::Ack { device, alarm } => {
            let _ = write!(line, "ack {alarm} (device {device})");
            return line;
        }
    };
    let shown = |v: &Value| {
        // With the point's unit and decimals when the value is of its kind
        // (text that did not parse is shown as it was sent).
        match directory
            .device(device)
            .and_then(|d| d.points.get(point.as_str()))
        {
            Some(p) if p.kind == v.kind() => display::with_unit(p, v),
            _ => v.to_string(),
        }
    };
    let _ = write!(line, "write {device}.{point} = {}: ", shown(asked));
    match &entry.result {
        Outcome::Ok { value: Some(v) } => {
            let _ = write!(line, "ok, now {}", shown(v));
        }
        Outcome::Ok { value: None } => line.push_str("ok"),
        Outcome::Error { error } => {
            let _ = write!(line, "error: {error}");
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use fieldbridge_core::audit::Via;
    use fieldbridge_core::{
        ConnectionId, DeviceId, DeviceSettings, DeviceSpec, PointId, PointSettings, PointSpec,
        Unit, ValueKind,
    };

    use super::*;

    fn directory() -> Arc<Directory> {
        let setpoint = PointSpec {
            id: PointId::new("setpoint").unwrap(),
            kind: ValueKind::Float,
            settings: PointSettings {
                unit: Some(Unit("°C".into())),
                decimals: Some(1),
                writable: true,
                ..Default::default()
            },
        };
        Arc::new(Directory::new([DeviceSpec {
            id: DeviceId::new("boiler").unwrap(),
            settings: DeviceSettings::on(ConnectionId::new("plc").unwrap()),
            points: BTreeMap::from([(setpoint.id.clone(), setpoint)]),
        }]))
    }

    fn at(mut e: Entry) -> Entry {
        // 2026-11-25 14:03:07 UTC
        e.at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_615_387);
        e
    }

    #[test]
    fn an_ack_reads_as_the_alarm_it_stopped() {
        let ack = at(Entry::ack(
            "alice@example.org",
            Via::Room,
            "boiler",
            "boiler/temperature",
        ));
        assert_eq!(
            render(&ack, &directory(), &TimeZone::UTC),
            "2026-11-25 14:03:07 +00:00  alice@example.org via room: ack boiler/temperature (device boiler)"
        );
    }

    #[test]
    fn entries_read_in_the_zone_with_units() {
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        let done = at(Entry::write(
            "alice@example.org",
            Via::Chat,
            "boiler",
            "setpoint",
            Value::Float(65.0),
            Ok(Value::Float(64.96)),
        ));
        assert_eq!(
            render(&done, &directory(), &berlin),
            "2026-11-25 15:03:07 +01:00  alice@example.org via chat: write boiler.setpoint = 65.0 °C: ok, now 65.0 °C"
        );
        let refused = at(Entry::write(
            "bob@example.org",
            Via::Adhoc,
            "boiler",
            "setpoint",
            Value::Text("warm".into()),
            Err("Target temperature: \"warm\" is not a number".into()),
        ));
        assert_eq!(
            render(&refused, &directory(), &TimeZone::UTC),
            "2026-11-25 14:03:07 +00:00  bob@example.org via adhoc: write boiler.setpoint = warm: error: Target temperature: \"warm\" is not a number"
        );
        // A device no longer configured: the values as they are.
        let gone = at(Entry::write(
            "alice@example.org",
            Via::Xep0325,
            "old-boiler",
            "setpoint",
            Value::Float(65.0),
            Ok(Value::Float(65.0)),
        ));
        assert_eq!(
            render(&gone, &directory(), &TimeZone::UTC),
            "2026-11-25 14:03:07 +00:00  alice@example.org via xep0325: write old-boiler.setpoint = 65: ok, now 65"
        );
    }
}
