//! Topic filters as written in `gateway.yaml`, and matching them against
//! the topics of incoming messages.
//!
//! A filter is an MQTT filter (`+` one level, `#` the rest) that may also be
//! a shared subscription (`$share/<group>/<filter>`: subscribed as written,
//! matched without the prefix) and, in a template rule, contain one
//! `{device}` level that matches like `+` and names the device.
//!
//! Both kinds of topic in `gateway.yaml` deserialize checked: a [`Filter`]
//! (what devices publish on) and a [`CommandTopic`] (what writes publish
//! on), so an invalid one is refused at load with its position.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer};

/// Why a topic or filter is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// Empty.
    #[error("must not be empty")]
    Empty,
    /// Too long for MQTT.
    #[error("is longer than 65535 bytes")]
    TooLong,
    /// A NUL character.
    #[error("must not contain a NUL character")]
    Nul,
    /// `#` not alone in the last level.
    #[error("`#` must be the whole last level (`a/b/#`)")]
    Hash,
    /// `+` not alone in its level.
    #[error("`+` must be a whole level (`a/+/c`)")]
    Plus,
    /// `{device}` not alone in its level, or twice.
    #[error("`{{device}}` must be a whole level, at most once (`sensors/{{device}}/state`)")]
    Device,
    /// `{device}` together with `#`.
    #[error("a template with `{{device}}` cannot also use `#`")]
    DeviceAndHash,
    /// A bad `$share/` prefix.
    #[error("a shared subscription is `$share/<group>/<filter>`")]
    Share,
    /// A wildcard where a concrete topic is needed.
    #[error("a topic to publish on cannot contain `+` or `#`, nor be a `$share/` filter")]
    Wildcard,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    Exact(String),
    Plus,
    Hash,
    Device,
}

/// A parsed filter, possibly shared, possibly a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// As written (shown by `Display`).
    text: String,
    /// What is sent in SUBSCRIBE (`{device}` as `+`, `$share/…` kept).
    subscribe: String,
    levels: Vec<Level>,
}

impl Filter {
    /// Parses and checks a filter.
    pub fn parse(text: &str) -> Result<Self, TopicError> {
        if text.is_empty() {
            return Err(TopicError::Empty);
        }
        if text.len() > 65535 {
            return Err(TopicError::TooLong);
        }
        if text.contains('\0') {
            return Err(TopicError::Nul);
        }
        let matched = match text.strip_prefix("$share/") {
            Some(rest) => match rest.split_once('/') {
                Some((group, filter))
                    if !group.is_empty()
                        && !filter.is_empty()
                        && !group.contains(['+', '#', '{']) =>
                {
                    filter
                }
                _ => return Err(TopicError::Share),
            },
            None => text,
        };
        let parts: Vec<&str> = matched.split('/').collect();
        let mut levels = Vec::with_capacity(parts.len());
        let mut devices = 0;
        for (i, part) in parts.iter().enumerate() {
            let level = match *part {
                "#" if i + 1 == parts.len() => Level::Hash,
                "+" => Level::Plus,
                "{device}" => {
                    devices += 1;
                    Level::Device
                }
                p if p.contains('#') => return Err(TopicError::Hash),
                p if p.contains('+') => return Err(TopicError::Plus),
                p if p.contains("{device}") => return Err(TopicError::Device),
                p => Level::Exact(p.to_owned()),
            };
            levels.push(level);
        }
        if devices > 1 {
            return Err(TopicError::Device);
        }
        if devices == 1 && levels.contains(&Level::Hash) {
            return Err(TopicError::DeviceAndHash);
        }
        Ok(Self {
            text: text.to_owned(),
            subscribe: text.replace("{device}", "+"),
            levels,
        })
    }

    /// True when the filter has a `{device}` level.
    pub fn is_template(&self) -> bool {
        self.levels.contains(&Level::Device)
    }

    /// The filter to send in SUBSCRIBE.
    pub fn subscription(&self) -> &str {
        &self.subscribe
    }

    /// Whether `topic` matches; `Some(Some(id))` with the `{device}` level's
    /// text for a template, `Some(None)` for a plain filter, `None` when it
    /// does not match.
    pub fn capture<'t>(&self, topic: &'t str) -> Option<Option<&'t str>> {
        // Wildcards at the first level do not match `$SYS/…` topics.
        if topic.starts_with('$')
            && matches!(
                self.levels.first(),
                Some(Level::Plus | Level::Hash | Level::Device)
            )
        {
            return None;
        }
        let mut captured = None;
        let mut parts = topic.split('/');
        for level in &self.levels {
            match level {
                Level::Hash => return Some(captured),
                Level::Plus => {
                    parts.next()?;
                }
                Level::Device => captured = Some(parts.next()?),
                Level::Exact(e) => {
                    if parts.next()? != e {
                        return None;
                    }
                }
            }
        }
        match parts.next() {
            None => Some(captured),
            Some(_) => None,
        }
    }

    /// Whether `topic` matches (any captured id is ignored).
    pub fn matches(&self, topic: &str) -> bool {
        self.capture(topic).is_some()
    }

    /// The concrete filter for one device of a template (`{device}` → id).
    pub fn for_device(&self, id: &str) -> Filter {
        Filter {
            text: self.text.replace("{device}", id),
            subscribe: self.subscribe.clone(),
            levels: self
                .levels
                .iter()
                .map(|l| match l {
                    Level::Device => Level::Exact(id.to_owned()),
                    other => other.clone(),
                })
                .collect(),
        }
    }

    /// The filter as written in `gateway.yaml`.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

written_as_text!(Filter);

impl<'de> Deserialize<'de> for Filter {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Filter::parse(&text).map_err(de::Error::custom)
    }
}

/// A checked topic that writes are published on; `{device}` (in a template
/// rule) stands for the device's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandTopic(String);

impl CommandTopic {
    /// Checks `text` as a topic to publish on.
    pub fn parse(text: &str) -> Result<Self, TopicError> {
        check_publish_topic(text)?;
        Ok(Self(text.to_owned()))
    }

    /// True when it has `{device}`.
    pub fn is_template(&self) -> bool {
        self.0.contains("{device}")
    }

    /// The topic for `device`.
    pub fn for_device(&self, device: &str) -> String {
        self.0.replace("{device}", device)
    }

    /// The topic as written in `gateway.yaml`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CommandTopic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

written_as_text!(CommandTopic);

impl<'de> Deserialize<'de> for CommandTopic {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        CommandTopic::parse(&text).map_err(de::Error::custom)
    }
}

/// Checks a topic that writes are published on (`{device}` allowed, for
/// template rules).
pub fn check_publish_topic(topic: &str) -> Result<(), TopicError> {
    if topic.is_empty() {
        return Err(TopicError::Empty);
    }
    if topic.len() > 65535 {
        return Err(TopicError::TooLong);
    }
    if topic.contains('\0') {
        return Err(TopicError::Nul);
    }
    if topic.contains(['+', '#']) || topic.starts_with("$share/") {
        return Err(TopicError::Wildcard);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_as_mqtt_says() {
        // (filter, topic, expected capture)
        let cases: &[(&str, &str, Option<Option<&str>>)] = &[
            ("a/b", "a/b", Some(None)),
            ("a/b", "a/b/c", None),
            ("a/b", "a", None),
            ("a/+", "a/b", Some(None)),
            ("a/+", "a/b/c", None),
            ("a/+", "a/", Some(None)),
            ("a/#", "a", Some(None)),
            ("a/#", "a/b/c", Some(None)),
            ("#", "x/y", Some(None)),
            ("#", "$SYS/broker/load", None),
            ("+/b", "$SYS/b", None),
            ("$SYS/#", "$SYS/broker/load", Some(None)),
            ("+/+/c", "a/b/c", Some(None)),
            ("tele/+/SENSOR", "tele/kitchen/SENSOR", Some(None)),
            ("tele/+/SENSOR", "tele/kitchen/STATE", None),
            (
                "sensors/{device}/state",
                "sensors/th-1/state",
                Some(Some("th-1")),
            ),
            ("sensors/{device}/state", "sensors/th-1/other", None),
            ("sensors/{device}/state", "sensors/state", None),
            ("sensors/{device}", "sensors/", Some(Some(""))),
            ("$share/gw/tele/+/SENSOR", "tele/a/SENSOR", Some(None)),
            ("$share/gw/sensors/{device}", "sensors/x", Some(Some("x"))),
        ];
        for (filter, topic, expected) in cases {
            let f = Filter::parse(filter).unwrap();
            assert_eq!(f.capture(topic), *expected, "{filter} vs {topic}");
        }
    }

    #[test]
    fn subscriptions_are_sent_as_mqtt_filters() {
        let cases = [
            ("sensors/{device}/state", "sensors/+/state", true),
            ("$share/g/sensors/{device}", "$share/g/sensors/+", true),
            ("tele/+/SENSOR", "tele/+/SENSOR", false),
        ];
        for (written, sent, template) in cases {
            let f = Filter::parse(written).unwrap();
            assert_eq!(f.subscription(), sent);
            assert_eq!(f.is_template(), template, "{written}");
        }
    }

    #[test]
    fn bad_filters_are_refused_with_the_reason() {
        let cases = [
            ("", TopicError::Empty),
            ("a/#/b", TopicError::Hash),
            ("a/b#", TopicError::Hash),
            ("a/b+", TopicError::Plus),
            ("a/x{device}", TopicError::Device),
            ("{device}/{device}", TopicError::Device),
            ("{device}/#", TopicError::DeviceAndHash),
            ("$share/", TopicError::Share),
            ("$share/g", TopicError::Share),
            ("$share//a", TopicError::Share),
            ("a\0b", TopicError::Nul),
        ];
        for (text, err) in cases {
            assert_eq!(Filter::parse(text), Err(err), "{text:?}");
        }
        assert_eq!(
            check_publish_topic("cmnd/+/POWER"),
            Err(TopicError::Wildcard)
        );
        assert_eq!(check_publish_topic("cmnd/plug/POWER"), Ok(()));
    }

    #[test]
    fn topics_show_as_written_and_deserialize_checked() {
        let f: Filter = serde_json::from_value("s/{device}/state".into()).unwrap();
        assert_eq!(f.to_string(), "s/{device}/state");
        assert_eq!(f.subscription(), "s/+/state");
        let bad = serde_json::from_value::<Filter>("a/#/b".into()).unwrap_err();
        assert_eq!(bad.to_string(), TopicError::Hash.to_string());
        let c: CommandTopic = serde_json::from_value("cmnd/{device}/POWER".into()).unwrap();
        assert!(c.is_template());
        assert_eq!(c.for_device("plug"), "cmnd/plug/POWER");
        assert_eq!(c.to_string(), "cmnd/{device}/POWER");
        let bad = serde_json::from_value::<CommandTopic>("cmnd/+/POWER".into()).unwrap_err();
        assert_eq!(bad.to_string(), TopicError::Wildcard.to_string());
    }

    #[test]
    fn a_template_narrowed_to_one_device_matches_only_it() {
        let f = Filter::parse("z2m/{device}/availability").unwrap();
        let one = f.for_device("lamp");
        assert!(one.matches("z2m/lamp/availability"));
        assert!(!one.matches("z2m/door/availability"));
    }
}
