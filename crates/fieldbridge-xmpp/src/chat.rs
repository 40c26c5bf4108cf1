//! Commands in plain words, sent as chat messages to a device JID, so that
//! any client (a phone included) can ask a device how it is and, when
//! allowed, change a set-point: `help`, `status`, `get <point>`,
//! `set <point> <value>`.
//!
//! Parsing and the texts are here, free of stanzas; the
//! [`crate::gateway::Gateway`] decides who may do what and sends replies.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use fieldbridge_core::{DeviceSpec, DeviceStatus, PointId, PointSpec, Quality, Sample, Value};

/// Longer bodies are not commands: answered with the help text, never
/// parsed or echoed.
pub const MAX_COMMAND_LEN: usize = 1024;

/// Values a `history` command shows unless told otherwise.
pub const HISTORY_DEFAULT: usize = 5;
/// Most values a `history` command shows: a phone screen, not a report.
pub const HISTORY_MAX: usize = 20;

/// What a chat message asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatCommand<'a> {
    /// `help`, `?`, or anything not understood.
    Help,
    /// `status`: every point.
    Status,
    /// `get <point>`.
    Get(&'a str),
    /// `set <point> <value>`; the value is the rest of the line.
    Set {
        /// The point id.
        point: &'a str,
        /// The value as typed.
        value: &'a str,
    },
    /// `history <point> [n]`: the last n published values.
    History {
        /// The point id.
        point: &'a str,
        /// How many (default [`HISTORY_DEFAULT`], at most [`HISTORY_MAX`]).
        count: usize,
    },
    /// Something else; answered with the help text.
    Unknown,
}

/// Reads a message body. Case-insensitive command words; point ids as
/// typed. Phones often capitalize the first letter, hence the
/// case-insensitivity.
pub fn parse(body: &str) -> ChatCommand<'_> {
    let body = body.trim();
    if body.len() > MAX_COMMAND_LEN {
        return ChatCommand::Unknown;
    }
    let (word, rest) = body
        .split_once(char::is_whitespace)
        .map_or((body, ""), |(w, r)| (w, r.trim()));
    match word.to_ascii_lowercase().as_str() {
        "help" | "?" if rest.is_empty() => ChatCommand::Help,
        "status" if rest.is_empty() => ChatCommand::Status,
        "get" if !rest.is_empty() && !rest.contains(char::is_whitespace) => ChatCommand::Get(rest),
        "history" => {
            let mut words = rest.split_whitespace();
            match (
                words.next(),
                words.next().map(str::parse::<usize>),
                words.next(),
            ) {
                (Some(point), None, None) => ChatCommand::History {
                    point,
                    count: HISTORY_DEFAULT,
                },
                (Some(point), Some(Ok(n)), None) if n > 0 => ChatCommand::History {
                    point,
                    count: n.min(HISTORY_MAX),
                },
                _ => ChatCommand::Unknown,
            }
        }
        "set" => match rest.split_once(char::is_whitespace) {
            Some((point, value)) if !value.trim().is_empty() => ChatCommand::Set {
                point,
                value: value.trim(),
            },
            _ => ChatCommand::Unknown,
        },
        _ => ChatCommand::Unknown,
    }
}

/// The help text: what this sender can do with this device.
pub fn help(spec: &DeviceSpec, may_control: bool) -> String {
    let mut out = format!("{}: commands\n", spec.display_name());
    out.push_str("status: all readings\n");
    let points: Vec<&str> = spec.points.keys().map(PointId::as_str).collect();
    let _ = writeln!(out, "get <point>: one reading ({})", points.join(", "));
    out.push_str("history <point> [n]: its last n values\n");
    let writable: Vec<&str> = spec
        .points
        .values()
        .filter(|p| p.settings.writable)
        .map(|p| p.id.as_str())
        .collect();
    if may_control && !writable.is_empty() {
        let _ = writeln!(out, "set <point> <value>: change {}", writable.join(", "));
    }
    out.push_str("help: this text");
    out
}

/// `value unit` as people read it.
pub fn value_with_unit(value: &Value, point: &PointSpec) -> String {
    match &point.settings.unit {
        Some(u) => format!("{value} {u}"),
        None => value.to_string(),
    }
}

/// A short age: `4 s`, `3 min`, `2 h`, `5 d`.
pub fn age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..120 => format!("{s} s"),
        120..7200 => format!("{} min", s / 60),
        7200..172_800 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    }
}

/// One point's line: `temperature 21.5 °C (4 s ago)`, with the quality
/// when it is not good.
pub fn point_line(point: &PointSpec, sample: Option<&Sample>, now: SystemTime) -> String {
    let Some(s) = sample else {
        return format!("{}: no reading yet", point.id);
    };
    let ago = age(now.duration_since(s.at).unwrap_or_default());
    let mut line = format!(
        "{} {} ({ago} ago)",
        point.id,
        value_with_unit(&s.reading.value, point)
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
    let mut out = format!("{}: {state}", spec.display_name());
    for p in spec.points.values() {
        out.push('\n');
        out.push_str(&point_line(p, latest.get(&p.id), now));
    }
    out
}

/// The `history` reply: samples, oldest first, as
/// `2026-11-25 14:03:07  21.5 °C` lines (UTC).
pub fn history(point: &PointSpec, values: &[Sample]) -> String {
    if values.is_empty() {
        return format!("{}: no history yet", point.id);
    }
    let mut out = format!("{} (UTC):", point.id);
    for s in values {
        // 2026-11-25T14:03:07.123Z → 2026-11-25 14:03:07
        let at = crate::sensordata::timestamp(s.at);
        let shown = at.get(..19).unwrap_or(&at).replace('T', " ");
        let unit = s
            .reading
            .unit
            .as_ref()
            .map(|u| format!(" {u}"))
            .unwrap_or_default();
        let _ = write!(out, "\n{shown}  {}{unit}", s.reading.value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_commands_as_people_type_them() {
        let cases = [
            ("help", ChatCommand::Help),
            ("  Help ", ChatCommand::Help),
            ("?", ChatCommand::Help),
            ("Status", ChatCommand::Status),
            ("get temperature", ChatCommand::Get("temperature")),
            ("GET  temperature ", ChatCommand::Get("temperature")),
            (
                "set pump on",
                ChatCommand::Set {
                    point: "pump",
                    value: "on",
                },
            ),
            (
                "set label hello world",
                ChatCommand::Set {
                    point: "label",
                    value: "hello world",
                },
            ),
            ("set pump", ChatCommand::Unknown),
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
                "history temperature 500",
                ChatCommand::History {
                    point: "temperature",
                    count: HISTORY_MAX,
                },
            ),
            ("history temperature 0", ChatCommand::Unknown),
            ("history temperature x", ChatCommand::Unknown),
            ("history", ChatCommand::Unknown),
            ("get", ChatCommand::Unknown),
            ("get a b", ChatCommand::Unknown),
            ("status now", ChatCommand::Unknown),
            ("hello", ChatCommand::Unknown),
            ("", ChatCommand::Unknown),
        ];
        for (body, want) in cases {
            assert_eq!(parse(body), want, "{body:?}");
        }
        let long = format!("get {}", "x".repeat(MAX_COMMAND_LEN));
        assert_eq!(parse(&long), ChatCommand::Unknown);
    }

    #[test]
    fn ages_are_short() {
        assert_eq!(age(Duration::from_secs(4)), "4 s");
        assert_eq!(age(Duration::from_secs(119)), "119 s");
        assert_eq!(age(Duration::from_secs(180)), "3 min");
        assert_eq!(age(Duration::from_secs(3 * 3600)), "3 h");
        assert_eq!(age(Duration::from_secs(5 * 86_400)), "5 d");
    }
}
