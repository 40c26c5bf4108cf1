//! fieldbridge's MQTT adapter: devices that publish on an MQTT broker
//! (Tasmota, Shelly, ESPHome, Zigbee2MQTT, custom firmware).
//!
//! This crate owns the MQTT side of a connection: the broker session
//! ([`session`], on rumqttc, MQTT 3.1.1 or 5, with rustls for `mqtts://`
//! set up by [`tls`]), the transport loop ([`adapter`]), routing messages
//! to devices and commands to publishes ([`router`]), which topics belong
//! to which device ([`topic`]: filters, shared subscriptions and
//! `{device}` templates), how a payload becomes a point's raw value
//! ([`payload`]: JSON pointers, whole payloads, on/off words, timestamps),
//! availability topics, and command topics for writes, whose
//! acknowledgements are matched to them by packet id ([`writes`]).
//!
//! Data flows: broker → rumqttc event loop → topic routing → payload
//! extraction per point → one event of raw readings per device and message
//! (each at the payload's timestamp, if it has one) and status on core's
//! [`fieldbridge_core::EventSender`] (core applies scale, offset and
//! deadband). Writes flow back: core's [`fieldbridge_core::Command`] →
//! a publish on the point's `command_topic` → answered when the broker
//! acknowledges it (QoS 1) or when it is sent (QoS 0).

/// A checked value that `gateway.yaml` writes as text: serialized as
/// written, and described in the JSON schema as the text it is.
macro_rules! written_as_text {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl schemars::JsonSchema for $t {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                <String as schemars::JsonSchema>::schema_name()
            }
            fn inline_schema() -> bool {
                true
            }
            fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
                <String as schemars::JsonSchema>::json_schema(g)
            }
        }
    };
}

pub mod adapter;
pub mod config;
pub mod error;
pub mod kind;
pub mod payload;
pub mod router;
pub mod session;
pub mod stats;
pub mod tls;
pub mod topic;
pub mod url;
pub mod writes;

pub use adapter::MqttAdapter;
pub use error::MqttError;
pub use kind::Mqtt;
pub use stats::MqttStats;
