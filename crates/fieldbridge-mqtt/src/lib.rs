//! fieldbridge's MQTT adapter: devices that publish on an MQTT broker
//! (Tasmota, Shelly, ESPHome, Zigbee2MQTT, custom firmware).
//!
//! This crate owns the MQTT side of a connection: the broker session
//! ([`session`], on rumqttc, MQTT 3.1.1 or 5, with rustls for `mqtts://`),
//! the transport loop ([`adapter`]), which topics
//! belong to which device ([`topic`]: filters, shared subscriptions and
//! `{device}` templates), how a payload becomes a point's raw value
//! ([`payload`]: JSON pointers, whole payloads, on/off words, timestamps),
//! availability topics, and command topics for writes.
//!
//! Data flows: broker → rumqttc event loop → topic routing → payload
//! extraction per point → one event of raw readings per device and message
//! (each at the payload's timestamp, if it has one) and status on core's
//! [`fieldbridge_core::EventSender`] (core applies scale, offset and
//! deadband). Writes flow back: core's [`fieldbridge_core::Command`] →
//! a publish on the point's `command_topic` → answered when the broker
//! acknowledges it (QoS 1) or when it is sent (QoS 0).

pub mod adapter;
pub mod config;
pub mod kind;
pub mod payload;
pub mod session;
pub mod topic;
pub mod url;

pub use adapter::MqttAdapter;
pub use kind::Mqtt;
