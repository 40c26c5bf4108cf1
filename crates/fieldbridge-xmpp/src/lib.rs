//! fieldbridge's XMPP side: a XEP-0114 external component that gives every
//! device a JID (`<device>@<component>`) with presence, chat commands,
//! ad-hoc commands and the IoT XEPs, and a pubsub node at the component
//! domain whose items are kept in a history.
//!
//! [`run`] owns the connection: it logs in ([`connection`]), moves elements
//! between the server and the I/O-free [`gateway::Gateway`], reconnects
//! with capped, jittered exponential backoff, and keeps draining the event
//! bus while disconnected so that field polling never waits on the network.
//!
//! Data flow:
//!
//! ```text
//!  bus (DeviceEvent) ──▶ Gateway::on_event ──▶ device state, presence ────────┐
//!  item window       ──▶ Gateway::publish_due ─▶ one item per device update ────┤
//!                          (serialized once) ─▶ notifications to subscribers ───┼─▶ server
//!  server (Element)  ──▶ Gateway::on_stanza ─▶ replies ─────────────────────────┤
//!  1 s tick          ──▶ Gateway::tick ──────▶ rate-limited status texts, ping ─┤
//!  chat, ad-hoc ──▶ Gateway::take_jobs ──▶ CommandRouter ──▶ adapter ──▶ reply ─┤
//!  item requests ──▶ Gateway::take_reads ──▶ store (blocking pool) ──▶ reply ───┘
//!  250 ms flush  ──▶ Gateway::take_writes ─▶ store (blocking pool): items, subscriptions
//! ```
//!
//! While the link is down, nothing is sent but everything is kept: after a
//! reconnect, each node subscriber gets the items it missed from the
//! history, and presence is sent again.
//!
//! Alarms (`EventKind::Alert` on the bus) go to people as chat messages
//! from the device (`alerts.to`) and in a multi-user chat room the gateway
//! joins (`alerts.room`), and to software as items of the `alerts` node;
//! those raised while the link was down follow with a XEP-0203 delay
//! ([`gateway::alerts`]).
//!
//! The stream is read by the gateway's own [`reader`], within limits of
//! depth and size that no remote sender can get past, and yields plain
//! `minidom` elements: tokio-xmpp's `Component` ends the stream on one
//! unparsable stanza (which any remote user can send), its reader cannot
//! be bounded, it never reconnects, and it reports a wrong secret and a
//! second gateway alike. Here a stanza the gateway does not understand is
//! counted, answered with an error when it is a request, and otherwise
//! dropped.
//!
//! Who may do what is [`access`]; subscriptions and items survive restarts
//! in `fieldbridge_store`; pubsub items carry XEP-0323 [`sensordata`];
//! messages to a device are commands in words ([`chat`]).

pub mod access;
pub mod chat;
pub mod config;
pub mod connection;
pub mod flood;
pub mod gateway;
pub mod reader;
pub mod sensordata;
pub mod xml;

mod component;
mod error;
mod link;

pub use component::{ComponentOptions, Reloader, Reloads, reloader, run};
pub use config::{AccessConfig, AlertsConfig, TlsConfig, XmppConfig};
pub use error::XmppError;
