//! A point's alarm (`devices.<id>.points.<id>.alarm`): when a value has
//! been beyond a limit for a while it is raised, when it is back inside by
//! the hysteresis it is cleared; one transition each, never a flap.
//!
//! Pure state, no clock of its own: the caller hands in each good or bad
//! reading and, between readings, the time (so that a `for` hold ends
//! without waiting for the next value).

use std::fmt;
use std::time::{Duration, Instant, SystemTime};

use schemars::JsonSchema;
use serde::Deserialize;

use crate::id::{ConnectionId, DeviceId, PointId};
use crate::value::{Quality, Value};

pub(crate) mod engine;
pub mod text;

/// How urgent an alarm is (the text people read, and whether reminders
/// repeat it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Someone should look (the default).
    #[default]
    Warning,
    /// Someone must act now.
    Critical,
}

impl Severity {
    /// Every severity, least urgent first.
    pub const ALL: [Severity; 3] = [Severity::Info, Severity::Warning, Severity::Critical];

    /// The word people read.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// The value an `equals` alarm watches for (bool, enumeration or text
/// points).
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(
    untagged,
    expecting = "expected true/false, a whole number (an enumeration) or a text"
)]
pub enum Expected {
    /// On/off.
    Bool(bool),
    /// An enumeration's number.
    Int(i64),
    /// A text.
    Text(String),
}

impl Expected {
    /// As a value of the point.
    pub fn value(&self) -> Value {
        match self {
            Expected::Bool(b) => Value::Bool(*b),
            Expected::Int(i) => Value::Int(*i),
            Expected::Text(t) => Value::Text(t.clone()),
        }
    }

    fn matches(&self, v: &Value) -> bool {
        match (self, v) {
            (Expected::Bool(a), Value::Bool(b)) => a == b,
            (Expected::Int(a), Value::Int(b)) => a == b,
            (Expected::Text(a), Value::Text(b)) => a == b,
            _ => false,
        }
    }
}

/// `alarm:` of a point, as written.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlarmSettings {
    /// Raised when the value is above this (numeric points).
    #[serde(default)]
    pub above: Option<f64>,
    /// Raised when the value is below this (numeric points).
    #[serde(default)]
    pub below: Option<f64>,
    /// Raised when the value equals this (bool, enumeration and text
    /// points).
    #[serde(default)]
    pub equals: Option<Expected>,
    /// How far back inside a limit the value must come before the alarm
    /// clears (default 0), so that noise around a limit does not flap.
    #[serde(default)]
    pub hysteresis: Option<f64>,
    /// How long the value must stay beyond the limit before the alarm is
    /// raised (default 0: at once).
    #[serde(
        default,
        rename = "for",
        deserialize_with = "crate::duration::optional"
    )]
    #[schemars(schema_with = "crate::duration::optional_schema")]
    pub hold: Option<Duration>,
    /// `info`, `warning` (default) or `critical`.
    #[serde(default)]
    pub severity: Severity,
    /// What the alert says instead of the limit (e.g. "pump stopped").
    #[serde(default)]
    pub text: Option<String>,
}

/// The limit a value went beyond.
#[derive(Debug, Clone, PartialEq)]
pub enum Limit {
    /// Above `above`.
    Above(f64),
    /// Below `below`.
    Below(f64),
    /// Equal to `equals`.
    Equals(Expected),
}

/// What changed.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// Beyond `limit` since `since` (for at least `for`); `value` is the
    /// reading that made it so.
    Raised {
        /// Which limit.
        limit: Limit,
        /// The value beyond it.
        value: Value,
        /// When the value first went beyond it.
        since: Instant,
    },
    /// Back inside by the hysteresis; the alarm lasted `lasted`.
    Cleared {
        /// The value back inside.
        value: Value,
        /// From raising to clearing.
        lasted: Duration,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    Inside,
    /// Beyond `limit` since `since`, not yet for long enough.
    Pending {
        limit: Limit,
        value: Value,
        since: Instant,
    },
    Raised {
        limit: Limit,
        at: Instant,
    },
}

/// One point's alarm and where it stands.
#[derive(Debug, Clone)]
pub struct PointAlarm {
    settings: AlarmSettings,
    state: State,
}

impl PointAlarm {
    /// A point's alarm, not raised.
    pub fn new(settings: AlarmSettings) -> Self {
        Self {
            settings,
            state: State::Inside,
        }
    }

    /// The settings it was made with.
    pub fn settings(&self) -> &AlarmSettings {
        &self.settings
    }

    /// Whether it is raised now (and by which limit).
    pub fn raised(&self) -> Option<&Limit> {
        match &self.state {
            State::Raised { limit, .. } => Some(limit),
            _ => None,
        }
    }

    /// A reading at `now`. Values of bad or uncertain quality neither
    /// raise nor clear: the device could not vouch for them.
    pub fn observe(
        &mut self,
        value: &Value,
        quality: &Quality,
        now: Instant,
    ) -> Option<Transition> {
        if *quality != Quality::Good {
            return None;
        }
        match &self.state {
            State::Raised { limit, at } => {
                if self.back_inside(limit, value) {
                    let lasted = now.saturating_duration_since(*at);
                    self.state = State::Inside;
                    return Some(Transition::Cleared {
                        value: value.clone(),
                        lasted,
                    });
                }
                None
            }
            State::Pending { since, .. } => match self.beyond(value) {
                Some(limit) => {
                    let since = *since;
                    self.state = State::Pending {
                        limit,
                        value: value.clone(),
                        since,
                    };
                    self.tick(now)
                }
                None => {
                    self.state = State::Inside;
                    None
                }
            },
            State::Inside => {
                let limit = self.beyond(value)?;
                self.state = State::Pending {
                    limit,
                    value: value.clone(),
                    since: now,
                };
                self.tick(now)
            }
        }
    }

    /// The time passing without a reading: a value beyond the limit for
    /// `for` raises the alarm now.
    pub fn tick(&mut self, now: Instant) -> Option<Transition> {
        let State::Pending {
            limit,
            value,
            since,
        } = &self.state
        else {
            return None;
        };
        let hold = self.settings.hold.unwrap_or_default();
        if now.saturating_duration_since(*since) < hold {
            return None;
        }
        let raised = Transition::Raised {
            limit: limit.clone(),
            value: value.clone(),
            since: *since,
        };
        self.state = State::Raised {
            limit: limit.clone(),
            at: now,
        };
        Some(raised)
    }

    /// The limit `value` is beyond, if any.
    fn beyond(&self, value: &Value) -> Option<Limit> {
        let s = &self.settings;
        if let Some(expected) = &s.equals
            && expected.matches(value)
        {
            return Some(Limit::Equals(expected.clone()));
        }
        let v = value.as_f64()?;
        if let Some(above) = s.above
            && v > above
        {
            return Some(Limit::Above(above));
        }
        if let Some(below) = s.below
            && v < below
        {
            return Some(Limit::Below(below));
        }
        None
    }

    /// Whether `value` is back inside `limit` by the hysteresis.
    fn back_inside(&self, limit: &Limit, value: &Value) -> bool {
        let h = self.settings.hysteresis.unwrap_or(0.0).abs();
        match limit {
            Limit::Equals(expected) => !expected.matches(value),
            Limit::Above(above) => value.as_f64().is_some_and(|v| v <= above - h),
            Limit::Below(below) => value.as_f64().is_some_and(|v| v >= below + h),
        }
    }
}

// ---------------------------------------------------------------------
// What sinks receive: alerts on the bus (`EventKind::Alert`).
// ---------------------------------------------------------------------

/// What is (or was) in alarm; the key of the active alarms a sink keeps,
/// and what `ack` names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AlarmKey {
    /// A point's `alarm:` limits.
    Point {
        /// The device.
        device: DeviceId,
        /// Its point.
        point: PointId,
    },
    /// A device offline for longer than its `offline_alert`.
    Offline(DeviceId),
    /// Every alerting device of one connection offline at once: one alert
    /// instead of one per device (the per-device ones are not sent).
    Connection(ConnectionId),
}

impl fmt::Display for AlarmKey {
    /// `boiler/temperature`, `boiler/offline`, `connection/plc`: the id the
    /// `alerts` pubsub node's items carry.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AlarmKey::Point { device, point } => write!(f, "{device}/{point}"),
            AlarmKey::Offline(device) => write!(f, "{device}/offline"),
            AlarmKey::Connection(c) => write!(f, "connection/{c}"),
        }
    }
}

/// What happened to an alarm.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// It is raised now.
    Raised,
    /// It is cleared now.
    Cleared,
    /// It was raised and cleared `times` times within the last minute:
    /// the individual transitions of that minute went out with `notify:
    /// false`, this one summary is what people get. `raised` says where it
    /// stands now.
    Flapping {
        /// Raises within the minute.
        times: u32,
        /// Whether it is raised at the end of it.
        raised: bool,
    },
}

/// One alarm transition, as the engine puts it on the bus. Every
/// transition is sent (so that a sink's view of the active alarms is
/// always right); `notify` says whether people should be told of this one.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// What is in alarm.
    pub key: AlarmKey,
    /// How urgent.
    pub severity: Severity,
    /// Raised, cleared, or a flapping summary.
    pub change: Change,
    /// False for transitions a flapping summary stands for.
    pub notify: bool,
    /// The devices concerned: the one device, or a connection's alerting
    /// devices, by id. Whoever may read them may see the alert.
    pub devices: Vec<DeviceId>,
    /// When the transition happened (wall clock).
    pub at: SystemTime,
    /// When the condition began: raised, when the value first went beyond
    /// the limit (or the device went offline); cleared, when it was raised.
    pub since: SystemTime,
    /// The value that raised or cleared it (point alarms).
    pub value: Option<Value>,
    /// The sentence people read, without time or severity, which the sink
    /// adds in its own way: `Boiler room: Temperature is 95.3 °C, above
    /// 85 °C for 30 s`; `Boiler room: Temperature is back at 83.9 °C (was
    /// above 85 °C for 5 min)`; `Connection plc is down: Boiler room, Heat
    /// pump offline for 2 min (connection refused)`.
    pub text: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temperature() -> AlarmSettings {
        AlarmSettings {
            above: Some(85.0),
            below: Some(5.0),
            equals: None,
            hysteresis: Some(1.0),
            hold: Some(Duration::from_secs(30)),
            severity: Severity::Critical,
            text: None,
        }
    }

    fn good(v: f64) -> (Value, Quality) {
        (Value::Float(v), Quality::Good)
    }

    /// Feeds `(seconds after start, value)` and returns what each did.
    fn run(alarm: &mut PointAlarm, t0: Instant, feed: &[(u64, f64)]) -> Vec<Option<Transition>> {
        feed.iter()
            .map(|&(s, v)| {
                let (value, quality) = good(v);
                alarm.observe(&value, &quality, t0 + Duration::from_secs(s))
            })
            .collect()
    }

    #[test]
    fn beyond_a_limit_for_long_enough_raises_once_and_back_inside_clears_once() {
        let mut a = PointAlarm::new(temperature());
        let t0 = Instant::now();
        let out = run(
            &mut a,
            t0,
            &[
                (0, 80.0),
                (10, 86.0),
                (20, 87.0),
                (39, 88.0),
                (40, 90.0),
                (50, 91.0),
            ],
        );
        let raised: Vec<_> = out.iter().flatten().collect();
        assert_eq!(
            raised,
            [&Transition::Raised {
                limit: Limit::Above(85.0),
                value: Value::Float(90.0),
                since: t0 + Duration::from_secs(10),
            }]
        );
        assert_eq!(
            out.iter().position(Option::is_some),
            Some(4),
            "at 40 s: 30 s after 10 s"
        );
        // Inside the limit but not by the hysteresis: still raised.
        assert_eq!(run(&mut a, t0, &[(60, 84.5)]), [None]);
        assert!(a.raised().is_some());
        // Back by the hysteresis: cleared, once.
        assert_eq!(
            run(&mut a, t0, &[(70, 84.0), (80, 70.0)]),
            [
                Some(Transition::Cleared {
                    value: Value::Float(84.0),
                    lasted: Duration::from_secs(30),
                }),
                None
            ]
        );
        assert_eq!(a.raised(), None);
    }

    #[test]
    fn jitter_around_the_limit_neither_raises_nor_flaps() {
        let mut a = PointAlarm::new(temperature());
        let t0 = Instant::now();
        // Back and forth across 85 every 10 s: never 30 s beyond.
        let feed: Vec<(u64, f64)> = (0..20)
            .map(|i| (i * 10, if i % 2 == 0 { 85.5 } else { 84.5 }))
            .collect();
        assert!(run(&mut a, t0, &feed).iter().all(Option::is_none));
        // Raised, then noise within the hysteresis band: no clear, no raise.
        let mut b = PointAlarm::new(AlarmSettings {
            hold: None,
            ..temperature()
        });
        let out = run(
            &mut b,
            t0,
            &[(0, 86.0), (1, 84.5), (2, 85.5), (3, 84.2), (4, 86.0)],
        );
        assert_eq!(out.iter().flatten().count(), 1, "{out:?}");
    }

    #[test]
    fn the_hold_ends_on_the_clock_without_another_reading() {
        let mut a = PointAlarm::new(temperature());
        let t0 = Instant::now();
        assert_eq!(run(&mut a, t0, &[(0, 2.0)]), [None]);
        assert_eq!(a.tick(t0 + Duration::from_secs(29)), None);
        assert!(matches!(
            a.tick(t0 + Duration::from_secs(30)),
            Some(Transition::Raised {
                limit: Limit::Below(5.0),
                ..
            })
        ));
        assert_eq!(a.tick(t0 + Duration::from_secs(31)), None, "once");
    }

    #[test]
    fn readings_of_bad_quality_neither_raise_nor_clear() {
        let mut a = PointAlarm::new(AlarmSettings {
            hold: None,
            ..temperature()
        });
        let t0 = Instant::now();
        let bad = Quality::Bad {
            reason: "modbus exception".into(),
        };
        assert_eq!(a.observe(&Value::Float(99.0), &bad, t0), None);
        assert_eq!(
            a.observe(&Value::Float(99.0), &Quality::Uncertain, t0),
            None
        );
        assert_eq!(a.raised(), None);
        assert!(a.observe(&Value::Float(99.0), &Quality::Good, t0).is_some());
        assert_eq!(a.observe(&Value::Float(20.0), &bad, t0), None);
        assert!(a.raised().is_some(), "a bad 20 does not clear it");
    }

    #[test]
    fn equals_watches_a_state_and_clears_when_it_changes() {
        let mut a = PointAlarm::new(AlarmSettings {
            above: None,
            below: None,
            equals: Some(Expected::Bool(false)),
            hysteresis: None,
            hold: Some(Duration::from_secs(10)),
            severity: Severity::Warning,
            text: Some("pump stopped".into()),
        });
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        assert_eq!(a.observe(&Value::Bool(true), &Quality::Good, at(0)), None);
        assert_eq!(a.observe(&Value::Bool(false), &Quality::Good, at(1)), None);
        assert!(a.tick(at(11)).is_some());
        assert!(matches!(
            a.observe(&Value::Bool(true), &Quality::Good, at(20)),
            Some(Transition::Cleared { .. })
        ));
        // A value of another kind never matches.
        assert_eq!(a.observe(&Value::Int(0), &Quality::Good, at(30)), None);
    }

    #[test]
    fn settings_read_with_for_and_severity() {
        let s: AlarmSettings = serde_json::from_str(
            r#"{ "above": 85, "below": 5, "hysteresis": 1, "for": "30s", "severity": "critical" }"#,
        )
        .unwrap();
        assert_eq!(s, temperature());
        let s: AlarmSettings =
            serde_json::from_str(r#"{ "equals": false, "for": "10s", "text": "pump stopped" }"#)
                .unwrap();
        assert_eq!(s.equals, Some(Expected::Bool(false)));
        assert_eq!(s.severity, Severity::Warning);
        assert!(
            serde_json::from_str::<AlarmSettings>(r#"{ "above": 1, "sevrity": "info" }"#).is_err()
        );
    }
}
