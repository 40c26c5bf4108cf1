//! A private Prosody: generated config, free loopback ports, temp dir.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::server::{MUC, Options};
use crate::{
    free_port, output_within, require_tool, terminate, wait_exit, wait_for_port,
    wait_for_port_closed,
};

/// The component domain every test uses.
pub const COMPONENT: &str = "gw.localhost";

/// A running (or stopped) Prosody with a `localhost` host and the
/// `gw.localhost` component.
pub struct Prosody {
    dir: tempfile::TempDir,
    /// Client port.
    pub c2s_port: u16,
    /// Component port.
    pub component_port: u16,
    /// The TLS component port (Direct TLS), with [`Options::tls`].
    pub tls_port: Option<u16>,
    /// The HTTP port of WebSocket and BOSH, with [`Options::web`].
    pub http_port: Option<u16>,
    /// The component secret.
    pub secret: String,
    options: Options,
    child: Option<Child>,
}

impl Prosody {
    /// Writes the config and starts Prosody; returns when both ports listen.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(&Options::default()).await
    }

    /// [`Prosody::start`] with `options`.
    pub async fn start_with(options: &Options) -> anyhow::Result<Self> {
        require_tool("prosody", "prosody");
        let dir = tempfile::tempdir()?;
        let mut p = Self {
            dir,
            c2s_port: free_port(),
            component_port: free_port(),
            tls_port: options.tls.as_ref().map(|_| free_port()),
            http_port: options.web.then(free_port),
            secret: format!("secret-{}", std::process::id()),
            options: options.clone(),
            child: None,
        };
        std::fs::create_dir_all(p.dir.path().join("data"))?;
        std::fs::create_dir_all(p.dir.path().join("certs"))?;
        if let Some(ca) = &options.tls {
            // Found by name for SNI: certs/<host>.crt and .key.
            let certs = p.dir.path().join("certs");
            std::fs::copy(&ca.cert, certs.join(format!("{COMPONENT}.crt")))?;
            std::fs::copy(&ca.key, certs.join(format!("{COMPONENT}.key")))?;
        }
        std::fs::write(p.config_path(), p.config())?;
        p.spawn().await?;
        Ok(p)
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("prosody.cfg.lua")
    }

    /// Prosody's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prosody.log")).unwrap_or_default()
    }

    /// `ws://127.0.0.1:PORT/xmpp-websocket`, with [`Options::web`].
    pub fn websocket_url(&self) -> Option<String> {
        self.http_port
            .map(|p| format!("ws://127.0.0.1:{p}/xmpp-websocket"))
    }

    /// `http://127.0.0.1:PORT/http-bind`, with [`Options::web`].
    pub fn bosh_url(&self) -> Option<String> {
        self.http_port
            .map(|p| format!("http://127.0.0.1:{p}/http-bind"))
    }

    fn config(&self) -> String {
        let d = self.dir.path().display();
        // In-band registration (XEP-0077) from loopback, which Prosody's
        // registration limits allow by default.
        let (register, allow_registration) = if self.options.in_band_registration {
            ("; \"register\"", "allow_registration = true\n")
        } else {
            ("", "")
        };
        let level = if self.options.info_log {
            "info"
        } else {
            "debug"
        };
        // Direct TLS for the component: `net_multiplex` on its own port
        // (bound to loopback only: it binds every interface otherwise),
        // routing a `jabber:component:accept` stream to the component.
        let (multiplex, tls) = match self.tls_port {
            Some(port) => (
                "; \"net_multiplex\"",
                format!("ssl_ports = {{ {port} }}\nssl_interfaces = {{ \"127.0.0.1\" }}\n"),
            ),
            None => ("", String::new()),
        };
        // WebSocket and BOSH on plain HTTP, loopback only; "secure" so that
        // PLAIN logins are allowed as on c2s here. Prosody 0.12 checks no
        // Origin, so a page from another port connects.
        let files = match &self.options.web_files {
            Some(dir) => format!(
                // The page comes from 127.0.0.1, which names no host.
                "http_files_dir = \"{}\"\nhttp_paths = {{ files = \"/dashboard\" }}\nhttp_default_host = \"localhost\"\n",
                dir.display()
            ),
            None => String::new(),
        };
        let (web_modules, http) = match self.http_port {
            Some(port) => (
                if files.is_empty() {
                    "; \"websocket\"; \"bosh\""
                } else {
                    "; \"websocket\"; \"bosh\"; \"http_files\""
                },
                format!(
                    "http_ports = {{ {port} }}\nhttp_interfaces = {{ \"127.0.0.1\" }}\n\
                     consider_websocket_secure = true\nconsider_bosh_secure = true\n{files}"
                ),
            ),
            None => ("", "http_ports = {}\n".to_owned()),
        };
        // Rooms created by anyone on this loopback-only server: local users
        // and the gateway's component (deploy/prosody/alerts-room.cfg.lua
        // explains what a real site restricts, and what that means for the
        // gateway).
        let muc = if self.options.muc {
            format!("Component \"{MUC}\" \"muc\"\n")
        } else {
            String::new()
        };
        format!(
            r#"daemonize = false
run_as_root = true
pidfile = "{d}/prosody.pid"
data_path = "{d}/data"
certificates = "{d}/certs"
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {c2s} }}
component_ports = {{ {comp} }}
component_interfaces = {{ "127.0.0.1" }}
s2s_ports = {{}}
{http}https_ports = {{}}
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_plain"
network_settings = {{ nagle = false }}
log = {{ {level} = "{d}/prosody.log" }}
modules_enabled = {{ "roster"; "saslauth"; "disco"; "ping"; "presence"{register}{multiplex}{web_modules} }}
{tls}{allow_registration}VirtualHost "localhost"
Component "{COMPONENT}"
    component_secret = "{secret}"
{muc}"#,
            c2s = self.c2s_port,
            comp = self.component_port,
            secret = self.secret,
        )
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let child = Command::new("prosody")
            .args(["-F", "--config"])
            .arg(self.config_path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        let ready = async {
            wait_for_port(self.c2s_port, Duration::from_secs(20)).await?;
            for port in [self.tls_port, self.http_port].into_iter().flatten() {
                wait_for_port(port, Duration::from_secs(20)).await?;
            }
            wait_for_port(self.component_port, Duration::from_secs(20)).await
        };
        ready
            .await
            .map_err(|e| anyhow::anyhow!("{e}; prosody log:\n{}", self.log()))
    }

    /// The Prosody process's id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Registers `user@localhost` with `password`.
    pub fn register(&self, user: &str, password: &str) -> anyhow::Result<()> {
        let out = output_within(
            Command::new("prosodyctl")
                .arg("--config")
                .arg(self.config_path())
                .args(["register", user, "localhost", password]),
            Duration::from_secs(30),
        )?;
        anyhow::ensure!(
            out.status.success(),
            "prosodyctl register {user} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    /// Stops Prosody (SIGTERM) and waits until its ports are closed.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            terminate(child.id());
            wait_exit(&mut child, Duration::from_secs(10)).await;
        }
        wait_for_port_closed(self.c2s_port, Duration::from_secs(10)).await?;
        wait_for_port_closed(self.component_port, Duration::from_secs(10)).await
    }

    /// Starts Prosody again on the same ports, with the same data.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(self.child.is_none(), "prosody is still running");
        self.spawn().await
    }
}

impl Drop for Prosody {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
