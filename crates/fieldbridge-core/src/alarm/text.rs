//! The sentences of [`Alert::text`](super::Alert::text), in one place: the
//! device by its name, the point by its label, values with their unit
//! ([`display`]), durations in words ([`display::age`]). No time and no
//! severity: the sink adds those in its own way.

use std::time::Duration;

use super::{AlarmSettings, Limit};
use crate::device::{DeviceSpec, PointSpec};
use crate::display;
use crate::id::ConnectionId;
use crate::value::Value;

/// ` for 30 s`, or nothing for less than a second (an alarm without `for`).
fn lasting(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        String::new()
    } else {
        format!(" for {}", display::age(d))
    }
}

/// `above 85 °C`, `below 5 °C`, or the value an `equals` alarm watches for
/// (`off`).
fn limit_text(point: &PointSpec, limit: &Limit) -> String {
    match limit {
        Limit::Above(x) => format!("above {}", display::setting_with_unit(point, *x)),
        Limit::Below(x) => format!("below {}", display::setting_with_unit(point, *x)),
        Limit::Equals(e) => display::with_unit(point, &e.value()),
    }
}

/// `Boiler room: ` + `inner`, or with the alarm's own `text`:
/// `Boiler room: pump stopped (inner)`.
fn framed(device: &DeviceSpec, settings: &AlarmSettings, plain: String, inner: String) -> String {
    match &settings.text {
        Some(text) => format!("{}: {text} ({inner})", device.display_name()),
        None => format!("{}: {plain}", device.display_name()),
    }
}

/// `Boiler room: Temperature is 95.3 °C, above 85 °C for 30 s`;
/// `Boiler room: Pump is off for 10 s`; with `text`: `Boiler room: pump
/// stopped (Pump is off for 10 s)`. `beyond` is how long the value has been
/// beyond the limit.
pub fn point_raised(
    device: &DeviceSpec,
    point: &PointSpec,
    settings: &AlarmSettings,
    limit: &Limit,
    value: &Value,
    beyond: Duration,
) -> String {
    let shown = display::with_unit(point, value);
    let sentence = match limit {
        Limit::Equals(_) => format!("{} is {shown}{}", point.label(), lasting(beyond)),
        _ => format!(
            "{} is {shown}, {}{}",
            point.label(),
            limit_text(point, limit),
            lasting(beyond)
        ),
    };
    framed(device, settings, sentence.clone(), sentence)
}

/// `Boiler room: Temperature is back at 83.9 °C (was above 85 °C for 5
/// min)`; `Boiler room: Pump is on (was off for 2 min)`; with `text`:
/// `Boiler room: pump stopped (Pump is on, was off for 2 min)`. `lasted`
/// is how long the value was beyond the limit.
pub fn point_cleared(
    device: &DeviceSpec,
    point: &PointSpec,
    settings: &AlarmSettings,
    limit: &Limit,
    value: &Value,
    lasted: Duration,
) -> String {
    let shown = display::with_unit(point, value);
    let now = match limit {
        Limit::Equals(_) => format!("{} is {shown}", point.label()),
        _ => format!("{} is back at {shown}", point.label()),
    };
    let was = format!("was {}{}", limit_text(point, limit), lasting(lasted));
    framed(
        device,
        settings,
        format!("{now} ({was})"),
        format!("{now}, {was}"),
    )
}

/// Why a raised point alarm ended without its value coming back: a reload
/// changed or removed it (or its device).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Its settings changed: the new ones are evaluated afresh.
    Changed,
    /// It (or its device) is no longer configured.
    Removed,
}

/// `Boiler room: Temperature alarm was changed by a reload (was above
/// 85 °C for 5 min)`; `… alarm is no longer configured (…)`.
pub fn point_ended(
    device: &DeviceSpec,
    point: &PointSpec,
    limit: &Limit,
    lasted: Duration,
    why: Ended,
) -> String {
    let what = match why {
        Ended::Changed => "was changed by a reload",
        Ended::Removed => "is no longer configured",
    };
    format!(
        "{}: {} alarm {what} (was {}{})",
        device.display_name(),
        point.label(),
        limit_text(point, limit),
        lasting(lasted)
    )
}

/// `Boiler room is offline for 2 min: connection refused`.
pub fn offline_raised(device: &DeviceSpec, down: Duration, reason: &str) -> String {
    format!(
        "{} is offline{}: {reason}",
        device.display_name(),
        lasting(down)
    )
}

/// `Boiler room is back online (was offline for 7 min)`; `lasted` is how
/// long it was offline. `removed`: a reload took its `offline_alert` (or
/// the device) away while it was raised.
pub fn offline_cleared(device: &DeviceSpec, lasted: Duration, removed: bool) -> String {
    if removed {
        format!(
            "{}: offline alert is no longer configured (offline{})",
            device.display_name(),
            lasting(lasted)
        )
    } else {
        format!(
            "{} is back online (was offline{})",
            device.display_name(),
            lasting(lasted)
        )
    }
}

/// `Connection plc is down: Boiler room, Heat pump offline for 2 min
/// (connection refused)`; `down` counts from the first device going
/// offline, whose reason it quotes.
pub fn connection_down(
    connection: &ConnectionId,
    names: &[&str],
    down: Duration,
    reason: &str,
) -> String {
    format!(
        "Connection {connection} is down: {} offline{} ({reason})",
        names.join(", "),
        lasting(down)
    )
}

/// `Connection plc is back: Boiler room, Heat pump online (was down for 12
/// min)`.
pub fn connection_back(connection: &ConnectionId, names: &[&str], lasted: Duration) -> String {
    format!(
        "Connection {connection} is back: {} online (was down{})",
        names.join(", "),
        lasting(lasted)
    )
}

/// What a flapping summary names: `Boiler room: Temperature alarm`,
/// `Boiler room: offline alarm`, `Connection plc: alarm`.
pub fn subject_point(device: &DeviceSpec, point: &PointSpec) -> String {
    format!("{}: {} alarm", device.display_name(), point.label())
}

/// See [`subject_point`].
pub fn subject_offline(device: &DeviceSpec) -> String {
    format!("{}: offline alarm", device.display_name())
}

/// See [`subject_point`].
pub fn subject_connection(connection: &ConnectionId) -> String {
    format!("Connection {connection}: alarm")
}

/// `Boiler room: Temperature alarm went on and off 5 times in the last
/// minute; now raised`.
pub fn flapping(subject: &str, times: u32, raised: bool) -> String {
    let now = if raised { "raised" } else { "cleared" };
    format!("{subject} went on and off {times} times in the last minute; now {now}")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::alarm::{Expected, Severity};
    use crate::device::{DeviceSettings, PointSettings};
    use crate::id::{DeviceId, PointId};
    use crate::value::{Unit, ValueKind};

    fn boiler() -> (DeviceSpec, PointSpec, PointSpec) {
        let temperature = PointSpec {
            id: PointId::new("temperature").unwrap(),
            kind: ValueKind::Float,
            settings: PointSettings {
                label: Some("Temperature".into()),
                unit: Some(Unit("°C".into())),
                decimals: Some(1),
                ..PointSettings::default()
            },
        };
        let pump = PointSpec {
            id: PointId::new("pump").unwrap(),
            kind: ValueKind::Bool,
            settings: PointSettings {
                label: Some("Pump".into()),
                ..PointSettings::default()
            },
        };
        let device = DeviceSpec {
            id: DeviceId::new("boiler").unwrap(),
            settings: DeviceSettings {
                name: Some("Boiler room".into()),
                ..DeviceSettings::on(ConnectionId::new("plc").unwrap())
            },
            points: BTreeMap::new(),
        };
        (device, temperature, pump)
    }

    fn settings(text: Option<&str>) -> AlarmSettings {
        AlarmSettings {
            above: Some(85.0),
            below: Some(5.0),
            equals: None,
            hysteresis: Some(1.0),
            hold: Some(Duration::from_secs(30)),
            severity: Severity::Critical,
            text: text.map(str::to_owned),
        }
    }

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn point_alarms_name_device_point_value_limit_and_how_long() {
        let (d, t, pump) = boiler();
        let s = settings(None);
        assert_eq!(
            point_raised(&d, &t, &s, &Limit::Above(85.0), &Value::Float(95.3), S(30)),
            "Boiler room: Temperature is 95.3 °C, above 85 °C for 30 s"
        );
        assert_eq!(
            point_cleared(&d, &t, &s, &Limit::Above(85.0), &Value::Float(83.9), S(300)),
            "Boiler room: Temperature is back at 83.9 °C (was above 85 °C for 5 min)"
        );
        assert_eq!(
            point_raised(&d, &t, &s, &Limit::Below(4.5), &Value::Float(2.0), S(0)),
            "Boiler room: Temperature is 2.0 °C, below 4.5 °C",
            "no hold: no duration"
        );
        let stopped = AlarmSettings {
            equals: Some(Expected::Bool(false)),
            ..settings(Some("pump stopped"))
        };
        let off = Limit::Equals(Expected::Bool(false));
        assert_eq!(
            point_raised(&d, &pump, &stopped, &off, &Value::Bool(false), S(10)),
            "Boiler room: pump stopped (Pump is off for 10 s)"
        );
        assert_eq!(
            point_cleared(&d, &pump, &stopped, &off, &Value::Bool(true), S(150)),
            "Boiler room: pump stopped (Pump is on, was off for 2 min)"
        );
        let plain = AlarmSettings {
            text: None,
            ..stopped
        };
        assert_eq!(
            point_cleared(&d, &pump, &plain, &off, &Value::Bool(true), S(150)),
            "Boiler room: Pump is on (was off for 2 min)"
        );
        assert_eq!(
            point_ended(&d, &t, &Limit::Above(85.0), S(60), Ended::Removed),
            "Boiler room: Temperature alarm is no longer configured (was above 85 °C for 60 s)"
        );
    }

    #[test]
    fn offline_connection_and_flapping_sentences() {
        let (d, t, _) = boiler();
        assert_eq!(
            offline_raised(&d, S(120), "connection refused"),
            "Boiler room is offline for 2 min: connection refused"
        );
        assert_eq!(
            offline_cleared(&d, S(7 * 60 + 5), false),
            "Boiler room is back online (was offline for 7 min)"
        );
        let plc = ConnectionId::new("plc").unwrap();
        assert_eq!(
            connection_down(&plc, &["Boiler room", "Heat pump"], S(120), "timeout"),
            "Connection plc is down: Boiler room, Heat pump offline for 2 min (timeout)"
        );
        assert_eq!(
            connection_back(&plc, &["Boiler room", "Heat pump"], S(720)),
            "Connection plc is back: Boiler room, Heat pump online (was down for 12 min)"
        );
        assert_eq!(
            flapping(&subject_point(&d, &t), 5, true),
            "Boiler room: Temperature alarm went on and off 5 times in the last minute; now raised"
        );
        assert_eq!(
            flapping(&subject_connection(&plc), 3, false),
            "Connection plc: alarm went on and off 3 times in the last minute; now cleared"
        );
    }
}
