//! Either XMPP server, behind one surface, so that a test can run against
//! Prosody and ejabberd alike.

use crate::ejabberd::Ejabberd;
use crate::prosody::Prosody;

pub use crate::prosody::COMPONENT;

/// How a server is set up, beyond what every test needs.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Lets clients create accounts in-band (XEP-0077, see
    /// [`crate::raw::register`]): thousands of users in seconds, where one
    /// `prosodyctl`/`ejabberdctl register` takes about a second each.
    pub in_band_registration: bool,
    /// Logs at `info` instead of `debug`: the tests read the stanza traces
    /// of a debug log, which costs the server most of its CPU under load.
    pub info_log: bool,
    /// Also listens for the component on a TLS port (ejabberd's
    /// `ejabberd_service` with `tls: true`, Prosody's Direct-TLS port with
    /// `net_multiplex`), with this certificate; see `tls_port`.
    pub tls: Option<crate::certs::TestCa>,
    /// Also serves XMPP over WebSocket and BOSH (XEP-0206) on a free
    /// loopback HTTP port, for browsers (the dashboard); see
    /// [`Server::websocket_url`].
    pub web: bool,
    /// With [`Options::web`], also serves this directory at `/dashboard/`
    /// (Prosody's `http_files`, ejabberd's `mod_http_fileserver`), as
    /// `deploy/*/dashboard.*` set it up.
    pub web_files: Option<std::path::PathBuf>,
    /// Also serves Multi-User Chat (XEP-0045) at [`MUC`] (Prosody's `muc`
    /// component, ejabberd's `mod_muc`), where local users and the
    /// [`COMPONENT`] may create rooms (see `deploy/*/alerts-room.*`).
    pub muc: bool,
}

/// The MUC service with [`Options::muc`].
pub const MUC: &str = "conference.localhost";

/// Which server to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// [`Prosody`].
    Prosody,
    /// [`Ejabberd`].
    Ejabberd,
}

impl ServerKind {
    /// Lower-case name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            ServerKind::Prosody => "prosody",
            ServerKind::Ejabberd => "ejabberd",
        }
    }
}

/// What the gateway needs from a server to connect as its component.
pub trait ComponentServer {
    /// The component port on 127.0.0.1.
    fn component_port(&self) -> u16;
    /// The component secret.
    fn secret(&self) -> &str;
    /// What the server logged, for failure messages.
    fn server_log(&self) -> String;
}

impl ComponentServer for Prosody {
    fn component_port(&self) -> u16 {
        self.component_port
    }
    fn secret(&self) -> &str {
        &self.secret
    }
    fn server_log(&self) -> String {
        self.log()
    }
}

impl ComponentServer for Ejabberd {
    fn component_port(&self) -> u16 {
        self.component_port
    }
    fn server_log(&self) -> String {
        self.log()
    }
    fn secret(&self) -> &str {
        &self.secret
    }
}

/// A running (or stopped) Prosody or ejabberd with a `localhost` host and
/// the [`COMPONENT`] component.
pub enum Server {
    /// A [`Prosody`].
    Prosody(Prosody),
    /// An [`Ejabberd`].
    Ejabberd(Ejabberd),
}

impl Server {
    /// Starts a server of `kind`; returns when its ports listen.
    pub async fn start(kind: ServerKind) -> anyhow::Result<Self> {
        Self::start_with(kind, &Options::default()).await
    }

    /// [`Server::start`] with `options`.
    pub async fn start_with(kind: ServerKind, options: &Options) -> anyhow::Result<Self> {
        Ok(match kind {
            ServerKind::Prosody => Server::Prosody(Prosody::start_with(options).await?),
            ServerKind::Ejabberd => Server::Ejabberd(Ejabberd::start_with(options).await?),
        })
    }

    /// The id of the process that does the server's work (Prosody's Lua
    /// process, ejabberd's Erlang VM), while it runs: for its CPU time.
    pub fn pid(&self) -> Option<u32> {
        match self {
            Server::Prosody(s) => s.pid(),
            Server::Ejabberd(s) => s.pid(),
        }
    }

    /// Which server this is.
    pub fn kind(&self) -> ServerKind {
        match self {
            Server::Prosody(_) => ServerKind::Prosody,
            Server::Ejabberd(_) => ServerKind::Ejabberd,
        }
    }

    /// Registers `user@localhost` with `password`.
    pub fn register(&self, user: &str, password: &str) -> anyhow::Result<()> {
        match self {
            Server::Prosody(s) => s.register(user, password),
            Server::Ejabberd(s) => s.register(user, password),
        }
    }

    /// Stops the server and waits until its ports are closed.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        match self {
            Server::Prosody(s) => s.stop().await,
            Server::Ejabberd(s) => s.stop().await,
        }
    }

    /// Starts the server again on the same ports, with the same data.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        match self {
            Server::Prosody(s) => s.restart().await,
            Server::Ejabberd(s) => s.restart().await,
        }
    }

    /// The server's log, for failure messages.
    pub fn log(&self) -> String {
        match self {
            Server::Prosody(s) => s.log(),
            Server::Ejabberd(s) => s.log(),
        }
    }

    /// The client port on 127.0.0.1.
    pub fn c2s_port(&self) -> u16 {
        match self {
            Server::Prosody(s) => s.c2s_port,
            Server::Ejabberd(s) => s.c2s_port,
        }
    }

    /// The component port on 127.0.0.1.
    pub fn component_port(&self) -> u16 {
        ComponentServer::component_port(self)
    }

    /// The component secret.
    pub fn secret(&self) -> &str {
        ComponentServer::secret(self)
    }

    /// The HTTP port of WebSocket and BOSH on 127.0.0.1, when started with
    /// [`Options::web`].
    pub fn http_port(&self) -> Option<u16> {
        match self {
            Server::Prosody(s) => s.http_port,
            Server::Ejabberd(s) => s.http_port,
        }
    }

    /// The WebSocket endpoint (`ws://127.0.0.1:PORT/...`), when started
    /// with [`Options::web`].
    pub fn websocket_url(&self) -> Option<String> {
        match self {
            Server::Prosody(s) => s.websocket_url(),
            Server::Ejabberd(s) => s.websocket_url(),
        }
    }

    /// The BOSH endpoint (`http://127.0.0.1:PORT/...`), when started with
    /// [`Options::web`].
    pub fn bosh_url(&self) -> Option<String> {
        match self {
            Server::Prosody(s) => s.bosh_url(),
            Server::Ejabberd(s) => s.bosh_url(),
        }
    }

    /// The TLS component port on 127.0.0.1, when started with
    /// [`Options::tls`].
    pub fn tls_port(&self) -> Option<u16> {
        match self {
            Server::Prosody(s) => s.tls_port,
            Server::Ejabberd(s) => s.tls_port,
        }
    }
}

impl ComponentServer for Server {
    fn component_port(&self) -> u16 {
        match self {
            Server::Prosody(s) => s.component_port,
            Server::Ejabberd(s) => s.component_port,
        }
    }
    fn secret(&self) -> &str {
        match self {
            Server::Prosody(s) => &s.secret,
            Server::Ejabberd(s) => &s.secret,
        }
    }
    fn server_log(&self) -> String {
        self.log()
    }
}
