//! What a loaded configuration is: the types `load` produces.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use fieldbridge_core::kind::BuildContext;
use fieldbridge_core::{ConnectionId, DeviceId, Directory};
use fieldbridge_xmpp::{AlertsConfig, XmppConfig};
use jiff::tz::TimeZone;
use schemars::JsonSchema;
use serde::Deserialize;

use super::kinds::LoadedConnection;

/// `gateway:` — this gateway's identity and where it keeps state.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GatewaySection {
    /// Names this gateway in logs and client ids (default `fieldbridge`).
    #[serde(default = "default_gateway_id")]
    #[schemars(with = "DeviceId")]
    pub id: String,
    /// Where subscriptions, history and the write audit (`audit.jsonl`,
    /// read by `fieldbridge audit`) survive restarts; relative to the
    /// config file (default: `state` beside it).
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// The IANA time zone (`Europe/Berlin`, `UTC`) of every time shown to
    /// people, in chat and forms (default: the system's, from `TZ` or
    /// `/etc/localtime`; UTC when it has none).
    #[serde(default)]
    pub timezone: Option<String>,
}

pub(super) fn default_gateway_id() -> String {
    "fieldbridge".to_owned()
}

/// `gateway:` resolved (the state directory found from the configuration's
/// directory). Named apart from the XMPP side's `Gateway` state machine.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// The gateway id.
    pub id: String,
    /// The state directory, absolute or relative to the working directory.
    pub state_dir: PathBuf,
    /// The zone of times shown to people: `gateway.timezone`, or the system's.
    pub time_zone: TimeZone,
}

/// An HTTP listener of the gateway (`metrics:`):
/// on loopback unless the operator says otherwise, since what it serves
/// (device names, counts, health) is for the machine's own scraper or a
/// reverse proxy in front of it.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpListenSection {
    /// The address and port to listen on, e.g. `127.0.0.1:9464` or
    /// `[::1]:9464`.
    pub listen: String,
    /// Allow an address that is not loopback (default false). Nothing on
    /// the listener asks for a password: put it behind a firewall or a
    /// proxy that does.
    #[serde(default)]
    pub allow_remote: bool,
}

/// An HTTP listener, checked: [`HttpListenSection`] with its address parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpListen {
    /// Where to listen.
    pub listen: SocketAddr,
}

/// A listener's `listen:` parsed, or what is wrong with it (`example` is
/// the address the message suggests). One place for every HTTP listener.
pub fn parse_listen(text: &str, example: &str) -> Result<SocketAddr, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("`{text}` is not an address and port such as {example}"))
}

/// Whether only this machine reaches `addr` (an IPv4-mapped 127.0.0.1
/// included).
pub fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().to_canonical().is_loopback()
}

impl HttpListenSection {
    /// The checked listener, or why not (for `<section>.listen`).
    pub fn check(&self) -> Result<HttpListen, String> {
        let listen = parse_listen(&self.listen, "127.0.0.1:9464")?;
        if !is_loopback(&listen) && !self.allow_remote {
            return Err(format!(
                "{listen} is not a loopback address: anyone who reaches it could read \
                 it; use 127.0.0.1 or [::1], or set `allow_remote: true` beside it"
            ));
        }
        Ok(HttpListen { listen })
    }
}

/// A loaded, checked configuration.
#[derive(Debug)]
pub struct GatewayConfig {
    /// The file it came from.
    pub source: PathBuf,
    /// `gateway:`
    pub gateway: GatewaySettings,
    /// `xmpp:`
    pub xmpp: XmppConfig,
    /// `alerts:` (empty when absent: nobody is messaged).
    pub alerts: AlertsConfig,
    /// The component secret (empty only in `check`, when the secret file is
    /// not readable by the user checking).
    pub secret: String,
    /// Every device and point.
    pub directory: Arc<Directory>,
    /// Connections with their devices, one adapter each.
    pub connections: Vec<Connection>,
    /// `dashboard:`, if the gateway serves the web dashboard.
    pub dashboard: Option<crate::dashboard::DashboardSettings>,
    /// `metrics:` where `/metrics` and `/healthz` are served, if anywhere.
    pub metrics: Option<HttpListen>,
    /// Things worth knowing that do not stop the gateway.
    pub notes: Vec<String>,
}

impl GatewayConfig {
    /// What adapters are built with (and `check` describes them with).
    pub fn build_context(&self) -> BuildContext {
        BuildContext {
            gateway_id: self.gateway.id.clone(),
            directory: Arc::clone(&self.directory),
        }
    }
}

/// One connection and what it serves.
#[derive(Debug)]
pub struct Connection {
    /// The key under `connections:`.
    pub id: ConnectionId,
    /// The transport, of one of the kinds in `kinds::KINDS`, with its devices.
    pub kind: Box<dyn LoadedConnection>,
}
