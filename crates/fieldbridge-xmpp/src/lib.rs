//! fieldbridge's XMPP side: a XEP-0114 component that gives every device a
//! JID with presence and a pubsub node.

pub mod config;

pub use config::{AccessConfig, XmppConfig};
