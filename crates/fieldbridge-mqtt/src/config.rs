//! The MQTT adapter's part of `gateway.yaml`.
//!
//! Values with a grammar arrive parsed: the broker url ([`BrokerUrl`]),
//! topic filters ([`Filter`]), command topics ([`CommandTopic`]) and JSON
//! pointers ([`Pointer`]) each deserialize checked, so a bad one is refused
//! at load at its own position, and nothing later parses or drops them.
//! What involves several keys (a password needs a `username`, a template's
//! availability topic needs `{device}`) is checked by [`MqttConnection::check`],
//! [`MqttPoint::check`] and [`check_device`], which the loader runs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use fieldbridge_core::device::PointSource;
use fieldbridge_core::{PointId, ValueKind, duration};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::payload::Pointer;
use crate::topic::{CommandTopic, Filter};
use crate::url::BrokerUrl;

/// Default keep-alive interval.
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(30);
/// Default cap on the devices one template rule may create.
pub const DEFAULT_MAX_DEVICES: usize = 100;
/// Default largest payload read; larger ones make the points bad.
pub const DEFAULT_MAX_PAYLOAD: usize = 64 * 1024;

/// `connections.<id>.mqtt`: one broker, shared by the devices on it.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MqttConnection {
    /// `mqtt://host:port` (default port 1883) or `mqtts://host:port`
    /// (TLS, default port 8883).
    pub url: BrokerUrl,
    /// mqtts: a PEM file of the certificate authorities to trust instead of
    /// the system's roots (paths are relative to the configuration file).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// mqtts: a PEM client certificate (chain), with `client_key`.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// mqtts: the PEM private key of `client_cert`.
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// User name, if the broker wants one.
    #[serde(default)]
    pub username: Option<String>,
    /// Password (prefer `password_file`, or the environment variable
    /// `FIELDBRIDGE__CONNECTIONS__<ID>__MQTT__PASSWORD`).
    #[serde(default)]
    pub password: Option<String>,
    /// A file holding the password (trailing newline ignored), relative to
    /// the configuration file; read when the adapter starts.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// MQTT client id (default `fieldbridge-<gateway id>-<connection id>`).
    /// With a persistent session the broker keeps our subscriptions and
    /// queued QoS 1 messages under this id: keep it stable.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Keep-alive interval (default 30s, at least 5s).
    #[serde(default, deserialize_with = "duration::optional")]
    #[schemars(schema_with = "duration::optional_schema")]
    pub keep_alive: Option<Duration>,
    /// Start with a clean session (default false: a persistent session, so
    /// that QoS 1 messages published while the gateway is away are kept by
    /// the broker and delivered on reconnect).
    #[serde(default)]
    pub clean_session: bool,
    /// MQTT protocol version: `3.1.1` (the default) or `5`.
    #[serde(default)]
    pub protocol: Protocol,
    /// Largest payload read, in bytes (default 64 KiB); a larger message
    /// makes its points bad quality instead of being parsed.
    #[serde(default)]
    pub max_payload: Option<usize>,
    /// QoS 1 and 2 messages in flight at once, each way (default 100).
    #[serde(default)]
    pub max_inflight: Option<u16>,
}

impl MqttConnection {
    /// Why these settings cannot work, if they cannot.
    pub fn check(&self) -> Result<(), String> {
        if self.password.is_some() && self.password_file.is_some() {
            return Err("give either `password` or `password_file`, not both".into());
        }
        if (self.password.is_some() || self.password_file.is_some()) && self.username.is_none() {
            return Err("a password needs a `username`".into());
        }
        if self.client_cert.is_some() != self.client_key.is_some() {
            return Err("`client_cert` and `client_key` go together".into());
        }
        if !self.url.tls && (self.ca_file.is_some() || self.client_cert.is_some()) {
            return Err("`ca_file`, `client_cert` and `client_key` need an mqtts:// url".into());
        }
        if let Some(k) = self.keep_alive
            && k < Duration::from_secs(5)
        {
            return Err(format!(
                "keep_alive must be at least 5s, not {}",
                duration::format(k)
            ));
        }
        if self.max_payload == Some(0) || self.max_inflight == Some(0) {
            return Err("max_payload and max_inflight must be more than 0".into());
        }
        if let Some(id) = &self.client_id
            && (id.is_empty() || id.len() > 65535)
        {
            return Err("client_id must not be empty".into());
        }
        Ok(())
    }

    /// Makes relative file paths (password, CA, certificate, key) relative
    /// to `base`, the configuration file's directory.
    pub fn resolve_paths(&mut self, base: &std::path::Path) {
        for p in [
            &mut self.password_file,
            &mut self.ca_file,
            &mut self.client_cert,
            &mut self.client_key,
        ]
        .into_iter()
        .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }

    /// The protocol version.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The client id to use on connection `connection` of gateway `gateway`.
    pub fn client_id(&self, gateway: &str, connection: &str) -> String {
        self.client_id
            .clone()
            .unwrap_or_else(|| format!("fieldbridge-{gateway}-{connection}"))
    }
}

/// MQTT protocol version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "ProtocolText")]
pub enum Protocol {
    /// MQTT 3.1.1 (default).
    #[default]
    V311,
    /// MQTT 5.
    V5,
}

impl Protocol {
    /// As written in `gateway.yaml`.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::V311 => "3.1.1",
            Protocol::V5 => "5",
        }
    }
}

impl JsonSchema for Protocol {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Protocol".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "MQTT protocol version: \"3.1.1\" (default) or 5.",
            "anyOf": [
                { "type": "string", "pattern": r"^\s*(3\.1\.1|5|5\.0)\s*$" },
                { "type": "number", "const": 5 },
            ],
        })
    }
}

/// `protocol: 5` (a number) or `protocol: "3.1.1"` (text).
#[derive(Deserialize)]
#[serde(untagged)]
enum ProtocolText {
    Number(f64),
    Text(String),
}

/// A `protocol:` that names no version this adapter speaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown MQTT protocol {0:?}, expected \"3.1.1\" or 5")]
pub struct UnknownProtocol(pub String);

impl TryFrom<ProtocolText> for Protocol {
    type Error = UnknownProtocol;
    fn try_from(v: ProtocolText) -> Result<Self, UnknownProtocol> {
        let text = match v {
            ProtocolText::Number(n) => n.to_string(),
            ProtocolText::Text(t) => t,
        };
        match text.trim() {
            "3.1.1" => Ok(Protocol::V311),
            "5" | "5.0" => Ok(Protocol::V5),
            other => Err(UnknownProtocol(other.to_owned())),
        }
    }
}

/// Quality of service, 0 (at most once) or 1 (at least once).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "u8")]
pub enum Qos {
    /// At most once.
    AtMostOnce,
    /// At least once (default): survives a broker restart with a
    /// persistent session.
    #[default]
    AtLeastOnce,
}

impl JsonSchema for Qos {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Qos".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Quality of service: 0 (at most once) or 1 (at least once, default).",
            "type": "integer",
            "enum": [0, 1],
        })
    }
}

/// A `qos:` other than 0 or 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QosError {
    /// Exactly once: valid MQTT, but the adapter does not do it.
    #[error("QoS 2 is not supported; use 0 or 1")]
    Unsupported,
    /// No QoS level at all.
    #[error("QoS is 0 or 1, not {0}")]
    Invalid(u8),
}

impl TryFrom<u8> for Qos {
    type Error = QosError;
    fn try_from(v: u8) -> Result<Self, QosError> {
        match v {
            0 => Ok(Qos::AtMostOnce),
            1 => Ok(Qos::AtLeastOnce),
            2 => Err(QosError::Unsupported),
            n => Err(QosError::Invalid(n)),
        }
    }
}

impl From<Qos> for rumqttc::QoS {
    fn from(q: Qos) -> Self {
        match q {
            Qos::AtMostOnce => rumqttc::QoS::AtMostOnce,
            Qos::AtLeastOnce => rumqttc::QoS::AtLeastOnce,
        }
    }
}

/// An MQTT device's own keys under `devices.<id>`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MqttDevice {
    /// Where the device publishes: a topic (`tele/kitchen/SENSOR`), a filter
    /// (`home/kitchen/#`), a shared subscription (`$share/gw/tele/+/SENSOR`),
    /// or a template that makes one device per id found in the topic
    /// (`sensors/{device}/state`; the device key is then the rule's name).
    /// Optional when every point has its own `topic`.
    #[serde(default)]
    pub topic: Option<Filter>,
    /// Subscription QoS, 0 or 1 (default 1).
    #[serde(default)]
    pub qos: Qos,
    /// Templates: how many devices the rule may create (default 100); ids
    /// beyond it are counted and logged, not created.
    #[serde(default)]
    pub max_devices: Option<usize>,
    /// Where the device says whether it is online (a retained last will,
    /// as Tasmota and Zigbee2MQTT publish). With it, the device turns
    /// stale only after a `stale_after` it sets; without it, after 15
    /// minutes without a reading (default).
    #[serde(default)]
    pub availability: Option<Availability>,
    /// A JSON pointer to the payload's timestamp (`/Time`): RFC 3339 text
    /// (`2024-05-01T12:00:00Z`; without a zone it is UTC) or Unix seconds
    /// (or milliseconds, if larger than 10^12). Readings are stamped with it.
    #[serde(default)]
    pub timestamp: Option<Pointer>,
}

impl MqttDevice {
    /// True when `topic` is a template (`{device}`): a rule making devices.
    pub fn is_template(&self) -> bool {
        self.topic.as_ref().is_some_and(Filter::is_template)
    }
}

/// `availability:` — a topic and the payloads meaning online and offline.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Availability {
    /// The topic (`tele/kitchen/LWT`); in a template rule it may contain
    /// `{device}`.
    pub topic: Filter,
    /// The payload meaning online (default `online`, compared ignoring
    /// case; a JSON payload's `state` field is compared instead, as
    /// Zigbee2MQTT publishes `{"state":"online"}`).
    #[serde(default = "default_online")]
    pub online: String,
    /// The payload meaning offline (default `offline`, compared ignoring case).
    #[serde(default = "default_offline")]
    pub offline: String,
}

fn default_online() -> String {
    "online".into()
}
fn default_offline() -> String {
    "offline".into()
}

/// An MQTT point's own keys: where its value is, and how it is written.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MqttPoint {
    /// A JSON pointer into the payload (`/ENERGY/Power`); without it the
    /// whole payload is the value.
    #[serde(default)]
    pub json: Option<Pointer>,
    /// The value type (default float).
    #[serde(default, rename = "type")]
    pub kind: ValueKind,
    /// bool: payloads (or JSON strings) meaning on, compared ignoring case
    /// (default: on, true, 1, yes, open, online).
    #[serde(default)]
    pub true_values: Option<Vec<String>>,
    /// bool: payloads meaning off (default: off, false, 0, no, closed, offline).
    #[serde(default)]
    pub false_values: Option<Vec<String>>,
    /// The point's own topic, instead of the device's (`stat/plug/POWER`).
    #[serde(default)]
    pub topic: Option<Filter>,
    /// Writable points: where a write is published (`cmnd/plug/POWER`).
    #[serde(default)]
    pub command_topic: Option<CommandTopic>,
    /// What a write publishes; `{value}` is replaced by the value (a bool
    /// as the first of `true_values`/`false_values`, else `true`/`false`).
    /// Default `{value}`; JSON works too: `{"state": "{value}"}`.
    #[serde(default)]
    pub payload: Option<String>,
    /// QoS of the write, 0 or 1 (default 1: the write is done when the
    /// broker acknowledges it).
    #[serde(default)]
    pub qos: Qos,
    /// Publish writes retained (default false).
    #[serde(default)]
    pub retain: bool,
}

impl PointSource for MqttPoint {
    fn kind(&self) -> ValueKind {
        self.kind
    }
}

impl MqttPoint {
    /// Why this point cannot work, if it cannot.
    pub fn check(&self) -> Result<(), String> {
        if (self.true_values.is_some() || self.false_values.is_some())
            && self.kind != ValueKind::Bool
        {
            return Err("true_values and false_values are for `type: bool` points".into());
        }
        for v in [&self.true_values, &self.false_values]
            .into_iter()
            .flatten()
        {
            if v.is_empty() {
                return Err("true_values and false_values must not be empty lists".into());
            }
        }
        if self.payload.is_some() && self.command_topic.is_none() {
            return Err("`payload` is what a write publishes: it needs a `command_topic`".into());
        }
        Ok(())
    }
}

/// Checks a device and its points together; problems name their point.
pub fn check_device(
    device: &MqttDevice,
    points: &BTreeMap<PointId, MqttPoint>,
) -> Vec<(Option<PointId>, String)> {
    let mut out = Vec::new();
    let template = device.is_template();
    if device.max_devices.is_some() && !template {
        out.push((
            None,
            "max_devices is for template topics (with `{device}`)".into(),
        ));
    }
    if device.max_devices == Some(0) {
        out.push((None, "max_devices must be more than 0".into()));
    }
    if let Some(a) = &device.availability {
        if a.topic.is_template() && !template {
            out.push((
                None,
                "availability.topic has `{device}` but the device topic is not a template".into(),
            ));
        } else if template && !a.topic.is_template() {
            out.push((
                None,
                "availability.topic of a template rule needs `{device}`".into(),
            ));
        }
        if a.online.eq_ignore_ascii_case(&a.offline) {
            out.push((
                None,
                "availability: online and offline payloads must differ".into(),
            ));
        }
    }
    for (id, p) in points {
        let mut problem = |message: &str| out.push((Some(id.clone()), message.to_owned()));
        if p.topic.is_none() && device.topic.is_none() {
            problem("the point needs a `topic`, or its device one");
        }
        if template && p.topic.as_ref().is_some_and(|t| !t.is_template()) {
            problem("a point topic in a template rule needs `{device}`");
        }
        if p.command_topic
            .as_ref()
            .is_some_and(CommandTopic::is_template)
            && !template
        {
            problem("the command_topic has `{device}` but the device topic is not a template");
        }
        if p.topic.as_ref().is_some_and(Filter::is_template) && !template {
            problem("the point topic has `{device}` but the device topic is not a template");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The texts are what the config loader prints; they must not change
    /// with the types.
    #[test]
    fn protocol_and_qos_are_refused_by_cause() {
        assert_eq!(Qos::try_from(1), Ok(Qos::AtLeastOnce));
        let two = Qos::try_from(2).unwrap_err();
        assert_eq!(two, QosError::Unsupported);
        assert_eq!(two.to_string(), "QoS 2 is not supported; use 0 or 1");
        let seven = Qos::try_from(7).unwrap_err();
        assert_eq!(seven, QosError::Invalid(7));
        assert_eq!(seven.to_string(), "QoS is 0 or 1, not 7");

        assert_eq!(
            Protocol::try_from(ProtocolText::Number(5.0)),
            Ok(Protocol::V5)
        );
        let four = Protocol::try_from(ProtocolText::Text(" 4 ".into())).unwrap_err();
        assert_eq!(four, UnknownProtocol("4".into()));
        assert_eq!(
            four.to_string(),
            r#"unknown MQTT protocol "4", expected "3.1.1" or 5"#
        );
        let err = serde_json::from_value::<Qos>(serde_json::json!(2)).unwrap_err();
        assert_eq!(err.to_string(), "QoS 2 is not supported; use 0 or 1");
    }

    fn conn(extra: serde_json::Value) -> MqttConnection {
        let mut v = serde_json::json!({ "url": "mqtts://broker" });
        if let (Some(m), serde_json::Value::Object(e)) = (v.as_object_mut(), extra) {
            m.extend(e);
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn relative_files_are_relative_to_the_configuration() {
        let mut c = conn(serde_json::json!({
            "ca_file": "certs/ca.pem", "client_cert": "/etc/gw.pem", "client_key": "gw.key",
            "username": "u", "password_file": "pw",
        }));
        c.resolve_paths(std::path::Path::new("/etc/fieldbridge"));
        assert_eq!(
            c.ca_file.unwrap(),
            PathBuf::from("/etc/fieldbridge/certs/ca.pem")
        );
        assert_eq!(c.client_cert.unwrap(), PathBuf::from("/etc/gw.pem"));
        assert_eq!(
            c.client_key.unwrap(),
            PathBuf::from("/etc/fieldbridge/gw.key")
        );
        assert_eq!(
            c.password_file.unwrap(),
            PathBuf::from("/etc/fieldbridge/pw")
        );
    }

    #[test]
    fn connection_checks() {
        let cases = [
            (serde_json::json!({}), None),
            (
                serde_json::json!({ "password": "x" }),
                Some("needs a `username`"),
            ),
            (
                serde_json::json!({ "client_cert": "c" }),
                Some("go together"),
            ),
            (
                serde_json::json!({ "keep_alive": "1s" }),
                Some("at least 5s"),
            ),
            (
                serde_json::json!({ "max_inflight": 0 }),
                Some("more than 0"),
            ),
        ];
        for (extra, expected) in cases {
            let got = conn(extra.clone()).check();
            match expected {
                None => assert_eq!(got, Ok(()), "{extra}"),
                Some(part) => assert!(
                    got.as_ref().is_err_and(|e| e.contains(part)),
                    "{extra}: {got:?}"
                ),
            }
        }
        assert_eq!(
            conn(serde_json::json!({})).client_id("edge-01", "broker"),
            "fieldbridge-edge-01-broker"
        );
    }

    #[test]
    fn values_with_a_grammar_are_refused_when_read() {
        let bad_conn =
            serde_json::from_value::<MqttConnection>(serde_json::json!({ "url": "tcp://broker" }))
                .unwrap_err();
        assert!(
            bad_conn.to_string().contains("must start with mqtt://"),
            "{bad_conn}"
        );
        let point = |v: serde_json::Value| serde_json::from_value::<MqttPoint>(v);
        for (v, part) in [
            (
                serde_json::json!({ "json": "ENERGY" }),
                "is not a JSON pointer",
            ),
            (
                serde_json::json!({ "topic": "a/#/b" }),
                "`#` must be the whole last level",
            ),
            (
                serde_json::json!({ "command_topic": "a/+" }),
                "cannot contain `+` or `#`",
            ),
        ] {
            let err = point(v.clone()).unwrap_err().to_string();
            assert!(err.contains(part), "{v}: {err}");
        }
        let ok = point(serde_json::json!({
            "json": "/ENERGY/Power", "topic": "stat/{device}/POWER", "command_topic": "cmnd/{device}/POWER",
        }))
        .unwrap();
        assert_eq!(ok.json.unwrap().as_str(), "/ENERGY/Power");
        assert!(ok.topic.unwrap().is_template());
        assert_eq!(
            ok.command_topic.unwrap().for_device("plug"),
            "cmnd/plug/POWER"
        );
        let device = serde_json::from_value::<MqttDevice>(serde_json::json!({
            "topic": "z2m/{device}", "availability": { "topic": "z2m/{device}/#" },
        }))
        .unwrap_err();
        assert!(
            device.to_string().contains("cannot also use `#`"),
            "{device}"
        );
    }
}
