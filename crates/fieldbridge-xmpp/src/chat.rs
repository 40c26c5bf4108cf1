//! Commands in plain words, sent as chat messages to a device JID, so that
//! any client (a phone included) can ask a device how it is and, when
//! allowed, change a set-point: `help`, `status`, `get [point]`,
//! `history <point> [n]`, `set <point> <value>`, and for alarms (issue 14)
//! `alarms` and `ack <point>|offline|all`. Words in any case, points
//! by id or label (phones capitalize the first letter); values as
//! [`fieldbridge_core::display`] shows them to people.
//!
//! Parsing and the texts are here, free of stanzas; the
//! [`crate::gateway::Gateway`] decides who may do what and sends replies.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::SystemTime;

use fieldbridge_core::display;
use fieldbridge_core::{DeviceSpec, DeviceStatus, PointId, PointSpec, Quality, Sample};
use jiff::tz::TimeZone;

/// Longer bodies are not commands: answered with the help text, never
/// parsed or echoed.
pub const MAX_COMMAND_LEN: usize = 1024;

/// Values a `history` command shows unless told otherwise.
pub const HISTORY_DEFAULT: usize = 5;
/// Most values a `history` command shows: a phone screen, not a report.
pub const HISTORY_MAX: usize = 20;

/// What a chat message asks for. Points are as typed: a point's id or
/// label, in any case, resolved against the device by [`find_point`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatCommand<'a> {
    /// `help`, `?`, or a body too long to be a command.
    Help,
    /// `status`: the device's state and every point.
    Status,
    /// `get` alone: every point.
    GetAll,
    /// `get <point>`.
    Get(&'a str),
    /// `set <point> <value>`: the point and the value, as one text,
    /// split by [`point_and_value`] (a label may hold spaces).
    Set(&'a str),
    /// `history <point> [n]`: the last n published values.
    History {
        /// The point as typed.
        point: &'a str,
        /// How many (default [`HISTORY_DEFAULT`], at most [`HISTORY_MAX`]).
        count: usize,
    },
    /// `alarms`: the active alarms (of the device, or all on the
    /// gateway's own JID).
    Alarms,
    /// `ack <point>`, `ack offline`, `ack all`: what is acknowledged, as
    /// typed.
    Ack(&'a str),
    /// A command word with the wrong words after it; holds the command's
    /// usage.
    Usage(&'static str),
    /// A word that is no command.
    Unknown(&'a str),
}

/// Reads a message body. Command words in any case: phones often
/// capitalize the first letter.
pub fn parse(body: &str) -> ChatCommand<'_> {
    let body = body.trim();
    if body.len() > MAX_COMMAND_LEN {
        return ChatCommand::Help;
    }
    let (word, rest) = body
        .split_once(char::is_whitespace)
        .map_or((body, ""), |(w, r)| (w, r.trim()));
    match word.to_lowercase().as_str() {
        "help" | "?" if rest.is_empty() => ChatCommand::Help,
        "status" if rest.is_empty() => ChatCommand::Status,
        "status" => ChatCommand::Usage("status"),
        "get" if rest.is_empty() => ChatCommand::GetAll,
        "get" => ChatCommand::Get(rest),
        "history" => {
            let (point, last) = rest
                .rsplit_once(char::is_whitespace)
                .map_or((rest, ""), |(p, n)| (p.trim_end(), n));
            match last.parse::<usize>() {
                _ if rest.is_empty() => ChatCommand::Usage(HISTORY_USAGE),
                Ok(0) => ChatCommand::Usage(HISTORY_USAGE),
                Ok(n) => ChatCommand::History {
                    point,
                    count: n.min(HISTORY_MAX),
                },
                Err(_) => ChatCommand::History {
                    point: rest,
                    count: HISTORY_DEFAULT,
                },
            }
        }
        "alarms" | "alarm" if rest.is_empty() => ChatCommand::Alarms,
        "alarms" | "alarm" => ChatCommand::Usage("alarms"),
        "ack" if rest.is_empty() => ChatCommand::Usage(ACK_USAGE),
        "ack" => ChatCommand::Ack(rest),
        "set" if rest.contains(char::is_whitespace) => ChatCommand::Set(rest),
        "set" => ChatCommand::Usage(SET_USAGE),
        "" => ChatCommand::Help,
        _ => ChatCommand::Unknown(word),
    }
}

const HISTORY_USAGE: &str = "history <point> [n]";
const SET_USAGE: &str = "set <point> <value>";
/// How `ack` is used.
pub const ACK_USAGE: &str = "ack <point>|offline|all";

/// The point a person means by `typed`: its id, or else its label, in any
/// case; `None` when no point or more than one fits.
pub fn find_point<'a>(spec: &'a DeviceSpec, typed: &str) -> Option<&'a PointSpec> {
    if let Some(p) = spec.points.get(typed) {
        return Some(p);
    }
    let typed = typed.to_lowercase();
    let by_id = |p: &&PointSpec| p.id.as_str().to_lowercase() == typed;
    let by_label = |p: &&PointSpec| p.label().to_lowercase() == typed;
    only(spec.points.values().filter(by_id)).or_else(|| only(spec.points.values().filter(by_label)))
}

/// The one item, if there is exactly one.
fn only<T>(mut items: impl Iterator<Item = T>) -> Option<T> {
    let first = items.next()?;
    items.next().is_none().then_some(first)
}

/// `set`'s text split into the point and the value: the longest label of
/// several words (any case) the text starts with, or else the first word
/// as [`find_point`] reads it. `Err` holds the word that names no point.
pub fn point_and_value<'a, 's>(
    spec: &'s DeviceSpec,
    text: &'a str,
) -> Result<(&'s PointSpec, &'a str), &'a str> {
    let lower = text.to_lowercase();
    let by_label = spec
        .points
        .values()
        .filter(|p| p.label().contains(char::is_whitespace))
        .filter_map(|p| {
            let label = p.label().to_lowercase();
            let rest = lower.strip_prefix(&label)?;
            // The label ends at a space; the value follows.
            rest.starts_with(char::is_whitespace)
                .then_some((p, label.len()))
        })
        .max_by_key(|(_, len)| *len)
        // Lowercasing kept the length (else the split could be off): ASCII
        // and most scripts do.
        .filter(|_| lower.len() == text.len())
        .and_then(|(p, len)| Some((p, text.get(len..)?.trim())));
    if let Some(found) = by_label {
        return Ok(found);
    }
    let (first, value) = text
        .split_once(char::is_whitespace)
        .map_or((text, ""), |(p, v)| (p, v.trim()));
    find_point(spec, first).map(|p| (p, value)).ok_or(first)
}

/// The help text: what this sender can do with this device.
pub fn help(spec: &DeviceSpec, may_control: bool) -> String {
    let mut out = format!("{}: commands\n", spec.display_name());
    out.push_str("status: all readings\n");
    let points: Vec<&str> = spec.points.keys().map(PointId::as_str).collect();
    let _ = writeln!(
        out,
        "get [point]: one reading, or all ({})",
        points.join(", ")
    );
    let _ = writeln!(out, "{HISTORY_USAGE}: its last n values");
    let writable: Vec<&str> = spec
        .points
        .values()
        .filter(|p| p.settings.writable)
        .map(|p| p.id.as_str())
        .collect();
    if may_control && !writable.is_empty() {
        let _ = writeln!(out, "{SET_USAGE}: change {}", writable.join(", "));
    }
    out.push_str("alarms: its active alarms\n");
    if may_control {
        let _ = writeln!(out, "{ACK_USAGE}: acknowledge (stops reminders)");
    }
    out.push_str("help: this text");
    out
}

/// The answer to a word that is no command: the word, then the help.
pub fn unknown_command(word: &str, spec: &DeviceSpec, may_control: bool) -> String {
    // A word, not the whole body: at most one line, and short.
    let word: String = word.chars().take(40).collect();
    format!("unknown command `{word}`\n{}", help(spec, may_control))
}

/// The answer to a command with the wrong words after it.
pub fn usage(usage: &str, spec: &DeviceSpec, may_control: bool) -> String {
    format!("usage: {usage}\n{}", help(spec, may_control))
}

/// A short age: `4 s`, `3 min`, `2 h`, `5 d` (core's, which alert texts
/// use too).
pub use fieldbridge_core::display::age;

/// One point's line: `Temperature 21.50 °C (4 s ago)`, with the quality
/// when it is not good.
pub fn point_line(point: &PointSpec, sample: Option<&Sample>, now: SystemTime) -> String {
    let Some(s) = sample else {
        return format!("{}: no reading yet", point.label());
    };
    let ago = age(now.duration_since(s.at).unwrap_or_default());
    let mut line = format!(
        "{} {} ({ago} ago)",
        point.label(),
        display::with_unit(point, &s.reading.value)
    );
    match &s.reading.quality {
        Quality::Good => {}
        Quality::Uncertain => line.push_str(", uncertain"),
        Quality::Bad { reason } => {
            let _ = write!(line, ", bad: {reason}");
        }
    }
    line
}

/// Every point's line, in id order.
pub fn point_lines(
    spec: &DeviceSpec,
    latest: &BTreeMap<PointId, Sample>,
    now: SystemTime,
) -> String {
    spec.points
        .values()
        .map(|p| point_line(p, latest.get(&p.id), now))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The `status` reply: the device's state, then every point.
pub fn status(
    spec: &DeviceSpec,
    state: Option<&DeviceStatus>,
    latest: &BTreeMap<PointId, Sample>,
    now: SystemTime,
) -> String {
    let state = match state {
        None => "waiting for the first reading".to_owned(),
        Some(DeviceStatus::Online) => "online".to_owned(),
        Some(DeviceStatus::Stale) => "stale (no fresh readings)".to_owned(),
        Some(DeviceStatus::Offline { reason }) => format!("offline: {reason}"),
    };
    format!(
        "{}: {state}\n{}",
        spec.display_name(),
        point_lines(spec, latest, now)
    )
}

/// How many values a point's history held, of which `history` shows some.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryFound {
    /// Distinct values found.
    pub total: usize,
    /// The search stopped at its bound: there may be older ones.
    pub more: bool,
    /// How many were asked for.
    pub asked: usize,
}

/// The `history` reply: a header saying how many values of how many,
/// over which span, and how to see more; then the values, oldest first,
/// as `2026-11-25 15:03:07 +01:00  21.50 °C` lines in `zone`.
pub fn history(
    point: &PointSpec,
    values: &[Sample],
    found: HistoryFound,
    zone: &TimeZone,
) -> String {
    let (Some(first), Some(last)) = (values.first(), values.last()) else {
        return format!("{}: no history yet", point.label());
    };
    let shown = values.len();
    let of = if found.more {
        format!("at least {}", found.total)
    } else {
        found.total.to_string()
    };
    let which = if shown == 1 && found.total == 1 && !found.more {
        "its only value".to_owned()
    } else if shown >= found.total && !found.more {
        format!("all {shown} values")
    } else {
        format!("last {shown} of {of} values")
    };
    let mut out = format!(
        "{}: {which}, {}",
        point.label(),
        display::span(first.at, last.at, zone)
    );
    if shown < found.total || found.more {
        if found.asked < HISTORY_MAX {
            let _ = write!(
                out,
                "; `history {} {HISTORY_MAX}` shows up to {HISTORY_MAX}",
                point.id
            );
        } else {
            let _ = write!(out, "; {HISTORY_MAX} is the most shown");
        }
    }
    for s in values {
        let _ = write!(
            out,
            "\n{}  {}",
            display::time(s.at, zone),
            display::with_unit(point, &s.reading.value)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use fieldbridge_core::{
        ConnectionId, DeviceId, DeviceSettings, PointSettings, Reading, Value, ValueKind,
    };

    #[test]
    fn reads_commands_as_people_type_them() {
        let cases = [
            ("help", ChatCommand::Help),
            ("  Help ", ChatCommand::Help),
            ("?", ChatCommand::Help),
            ("", ChatCommand::Help),
            ("Status", ChatCommand::Status),
            ("STATUS", ChatCommand::Status),
            ("get", ChatCommand::GetAll),
            ("Get ", ChatCommand::GetAll),
            ("get temperature", ChatCommand::Get("temperature")),
            ("GET  TEMPERATURE ", ChatCommand::Get("TEMPERATURE")),
            (
                "get Target temperature",
                ChatCommand::Get("Target temperature"),
            ),
            ("set pump on", ChatCommand::Set("pump on")),
            (
                "SET label hello world",
                ChatCommand::Set("label hello world"),
            ),
            ("set pump", ChatCommand::Usage(SET_USAGE)),
            ("set", ChatCommand::Usage(SET_USAGE)),
            (
                "history temperature",
                ChatCommand::History {
                    point: "temperature",
                    count: HISTORY_DEFAULT,
                },
            ),
            (
                "History temperature 3",
                ChatCommand::History {
                    point: "temperature",
                    count: 3,
                },
            ),
            (
                "history Target temperature 3",
                ChatCommand::History {
                    point: "Target temperature",
                    count: 3,
                },
            ),
            (
                "history temperature 500",
                ChatCommand::History {
                    point: "temperature",
                    count: HISTORY_MAX,
                },
            ),
            ("history temperature 0", ChatCommand::Usage(HISTORY_USAGE)),
            (
                "history temperature x",
                ChatCommand::History {
                    point: "temperature x",
                    count: HISTORY_DEFAULT,
                },
            ),
            ("history", ChatCommand::Usage(HISTORY_USAGE)),
            ("status now", ChatCommand::Usage("status")),
            ("alarms", ChatCommand::Alarms),
            ("Alarms", ChatCommand::Alarms),
            ("alarms now", ChatCommand::Usage("alarms")),
            ("ack all", ChatCommand::Ack("all")),
            ("Ack Temperature", ChatCommand::Ack("Temperature")),
            ("ack", ChatCommand::Usage(ACK_USAGE)),
            ("hello", ChatCommand::Unknown("hello")),
            ("blorp the pump", ChatCommand::Unknown("blorp")),
        ];
        for (body, want) in cases {
            assert_eq!(parse(body), want, "{body:?}");
        }
        let long = format!("get {}", "x".repeat(MAX_COMMAND_LEN));
        assert_eq!(parse(&long), ChatCommand::Help);
    }

    fn point(id: &str, label: Option<&str>, decimals: Option<u8>) -> (PointId, PointSpec) {
        let id = PointId::new(id).unwrap();
        let spec = PointSpec {
            id: id.clone(),
            kind: ValueKind::Float,
            settings: PointSettings {
                label: label.map(str::to_owned),
                unit: Some(fieldbridge_core::Unit("°C".into())),
                decimals,
                writable: true,
                ..PointSettings::default()
            },
        };
        (id, spec)
    }

    fn device() -> DeviceSpec {
        DeviceSpec {
            id: DeviceId::new("boiler").unwrap(),
            settings: DeviceSettings {
                name: Some("Boiler".into()),
                ..DeviceSettings::on(ConnectionId::new("c").unwrap())
            },
            points: [
                point("temperature", None, None),
                point("setpoint", Some("Target temperature"), Some(1)),
                point("target", Some("Target"), None),
            ]
            .into_iter()
            .collect(),
        }
    }

    #[test]
    fn points_are_found_by_id_or_label_in_any_case() {
        let spec = device();
        let id = |typed: &str| find_point(&spec, typed).map(|p| p.id.as_str());
        assert_eq!(id("temperature"), Some("temperature"));
        assert_eq!(id("TEMPERATURE"), Some("temperature"));
        assert_eq!(id("Target temperature"), Some("setpoint"));
        assert_eq!(id("target TEMPERATURE"), Some("setpoint"));
        // An id wins over a label.
        assert_eq!(id("target"), Some("target"));
        assert_eq!(id("pressure"), None);

        let split = |text| point_and_value(&spec, text).map(|(p, v)| (p.id.as_str(), v));
        assert_eq!(split("Setpoint 21"), Ok(("setpoint", "21")));
        assert_eq!(split("target temperature 21.5"), Ok(("setpoint", "21.5")));
        assert_eq!(split("Target 3"), Ok(("target", "3")));
        assert_eq!(split("pressure 3"), Err("pressure"));
    }

    fn sample(secs: u64, value: f64) -> Sample {
        Sample {
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
            reading: Reading {
                point: PointId::new("temperature").unwrap(),
                value: Value::Float(value),
                unit: None,
                quality: Quality::Good,
            },
        }
    }

    #[test]
    fn history_says_how_many_of_how_many_when_and_how_to_see_more() {
        let spec = device();
        let p = &spec.points["temperature"];
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        // 2026-11-25 14:03:07 UTC
        let t = 1_795_615_387;
        let values = [sample(t, 62.79916), sample(t + 365, 1670.218989)];
        let found = HistoryFound {
            total: 132,
            more: false,
            asked: 2,
        };
        assert_eq!(
            history(p, &values, found, &berlin),
            "temperature: last 2 of 132 values, 15:03:07–15:09:12 +01:00; \
             `history temperature 20` shows up to 20\n\
             2026-11-25 15:03:07 +01:00  62.80 °C\n\
             2026-11-25 15:09:12 +01:00  1670 °C"
        );
        let all = HistoryFound {
            total: 2,
            more: false,
            asked: 5,
        };
        let text = history(p, &values, all, &TimeZone::UTC);
        assert!(
            text.starts_with("temperature: all 2 values, 14:03:07–14:09:12 +00:00\n"),
            "{text}"
        );
        let capped = HistoryFound {
            total: 20,
            more: true,
            asked: HISTORY_MAX,
        };
        let text = history(p, &values, capped, &TimeZone::UTC);
        assert!(
            text.starts_with("temperature: last 2 of at least 20 values, 14:03:07–14:09:12 +00:00; 20 is the most shown\n"),
            "{text}"
        );
        assert_eq!(
            history(p, &[], all, &TimeZone::UTC),
            "temperature: no history yet"
        );
    }

    #[test]
    fn lines_show_labels_and_readable_numbers() {
        let spec = device();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(10);
        let mut s = sample(6, 62.79916);
        assert_eq!(
            point_line(&spec.points["temperature"], Some(&s), now),
            "temperature 62.80 °C (4 s ago)"
        );
        s.reading.point = PointId::new("setpoint").unwrap();
        assert_eq!(
            point_line(&spec.points["setpoint"], Some(&s), now),
            "Target temperature 62.8 °C (4 s ago)"
        );
        let text = unknown_command("blorp", &spec, false);
        assert!(
            text.starts_with("unknown command `blorp`\nBoiler: commands\n"),
            "{text}"
        );
    }
}
