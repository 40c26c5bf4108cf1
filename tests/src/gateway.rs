//! The real `fieldbridge` binary, run with a generated gateway.yaml.

use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use tokio::time::Instant;

use crate::prosody::COMPONENT;
use crate::server::ComponentServer;
use crate::{fieldbridge_bin, wait_exit};

/// What goes in a test's gateway.yaml besides the XMPP connection.
pub struct Setup<'a> {
    /// `xmpp.access.read`
    pub read: &'a [&'a str],
    /// `xmpp.access.control`
    pub control: &'a [&'a str],
    /// The `connections:` section, indented by two spaces.
    pub connections: &'a str,
    /// The `devices:` section, indented by two spaces.
    pub devices: &'a str,
}

/// The simulator connection most tests use.
pub const SIMULATOR: &str = "  sim: { simulator: {} }\n";

impl<'a> Setup<'a> {
    /// The usual site: anyone on localhost reads, alice controls.
    pub fn alice_controls(connections: &'a str, devices: &'a str) -> Self {
        Self {
            read: &["localhost"],
            control: &["alice@localhost"],
            connections,
            devices,
        }
    }
}

/// A gateway process and its files (config, secret, state, log).
pub struct Gateway {
    dir: tempfile::TempDir,
    child: Option<Child>,
    env: Vec<(String, String)>,
}

impl Gateway {
    /// Writes a gateway.yaml connecting to `server` with `access_read`
    /// (who may also control) and the `devices:` section `devices` on a
    /// simulator connection `sim`, and starts the gateway; returns once it
    /// logged in to the server.
    pub async fn start(
        server: &impl ComponentServer,
        access_read: &[&str],
        devices: &str,
    ) -> anyhow::Result<Self> {
        Self::start_with(
            server,
            &Setup {
                read: access_read,
                control: access_read,
                connections: "  sim: { simulator: {} }\n",
                devices,
            },
        )
        .await
    }

    /// [`Gateway::start`] with every part of the config given.
    pub async fn start_with(
        server: &impl ComponentServer,
        setup: &Setup<'_>,
    ) -> anyhow::Result<Self> {
        Self::start_with_env(server, setup, &[]).await
    }

    /// [`Gateway::start_with`], with these environment variables set for
    /// the gateway (`RUST_LOG` is otherwise removed).
    pub async fn start_with_env(
        server: &impl ComponentServer,
        setup: &Setup<'_>,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let gw = Self::launch(server, setup, env)?;
        gw.wait_connected(0).await?;
        Ok(gw)
    }

    /// [`Gateway::start_with_env`], or the test fails with the server's
    /// log (for a gateway that must start).
    pub async fn started(
        server: &impl ComponentServer,
        setup: &Setup<'_>,
        env: &[(&str, &str)],
    ) -> Self {
        Self::start_with_env(server, setup, env)
            .await
            .unwrap_or_else(|e| panic!("gateway starts: {e}\nserver log:\n{}", server.server_log()))
    }

    /// [`Gateway::started`] with more top-level sections of gateway.yaml
    /// (e.g. `alerts:`), written after the others as given.
    pub async fn started_with_sections(
        server: &impl ComponentServer,
        setup: &Setup<'_>,
        sections: &str,
        env: &[(&str, &str)],
    ) -> Self {
        let started = async {
            let gw = Self::launch_with_sections(server, setup, sections, env)?;
            gw.wait_connected(0).await?;
            anyhow::Ok(gw)
        };
        started
            .await
            .unwrap_or_else(|e| panic!("gateway starts: {e}\nserver log:\n{}", server.server_log()))
    }

    /// [`Gateway::start_with_env`] without waiting for the login: for a
    /// gateway that must not log in.
    pub fn launch(
        server: &impl ComponentServer,
        setup: &Setup<'_>,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        Self::launch_with_sections(server, setup, "", env)
    }

    fn launch_with_sections(
        server: &impl ComponentServer,
        setup: &Setup<'_>,
        sections: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        std::fs::write(
            dir.path().join("component.secret"),
            format!("{}\n", server.secret()),
        )?;
        let list = |jids: &[&str]| {
            jids.iter()
                .map(|j| format!("\"{j}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let yaml = format!(
            "gateway: {{ id: e2e, state_dir: state }}\n\
             xmpp:\n  component: {COMPONENT}\n  server: 127.0.0.1:{port}\n  secret_file: component.secret\n  \
             access: {{ read: [{read}], control: [{control}] }}\n\
             connections:\n{connections}\
             devices:\n{devices}{sections}",
            port = server.component_port(),
            read = list(setup.read),
            control = list(setup.control),
            connections = setup.connections,
            devices = setup.devices,
        );
        std::fs::write(dir.path().join("gateway.yaml"), yaml)?;
        let mut gw = Self {
            dir,
            child: None,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        gw.spawn_process()?;
        Ok(gw)
    }

    /// The gateway's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Rewrites gateway.yaml with `edit`, for the next [`Gateway::restart`]
    /// or reload (the state stays).
    pub fn edit_config(&self, edit: impl FnOnce(&str) -> String) -> anyhow::Result<()> {
        let path = self.config_file();
        let yaml = std::fs::read_to_string(&path)?;
        std::fs::write(&path, edit(&yaml))?;
        Ok(())
    }

    /// The gateway's gateway.yaml.
    pub fn config_file(&self) -> PathBuf {
        self.dir.path().join("gateway.yaml")
    }

    /// Where the gateway keeps its state.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Everything the gateway logged so far (all runs).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gateway.log")).unwrap_or_default()
    }

    /// How many times the log contains `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log().matches(needle).count()
    }

    /// Waits until the log contains `needle` at least `times` times.
    pub async fn wait_log(
        &self,
        needle: &str,
        times: usize,
        within: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        while self.log_count(needle) < times {
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "gateway log has {needle:?} fewer than {times} times after {within:?}:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// The server is down for `down` (the scenario, not a wait for
    /// anything), then back; returns once the gateway has logged in again.
    pub async fn through_outage(
        &self,
        server: &mut crate::server::Server,
        down: Duration,
    ) -> anyhow::Result<()> {
        let logins = self.log_count("connected to the XMPP server");
        server.stop().await?;
        tokio::time::sleep(down).await;
        server.restart().await?;
        // The gateway retries at least every 30 s (its backoff cap), and
        // the server takes a moment to listen again.
        self.wait_log(
            "connected to the XMPP server",
            logins + 1,
            Duration::from_secs(45),
        )
        .await
    }

    /// Waits until the gateway noticed that its server went away.
    pub async fn wait_disconnected(&self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let log = self.log();
            if log.contains("the XMPP server closed the connection")
                || log.contains("connection to the XMPP server lost")
            {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the gateway did not notice the server going away within {within:?}:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let connected_before = self.log_count("connected to the XMPP server");
        self.spawn_process()?;
        self.wait_connected(connected_before).await
    }

    /// Waits for the login after `before` earlier ones.
    async fn wait_connected(&self, before: usize) -> anyhow::Result<()> {
        self.wait_log(
            "connected to the XMPP server",
            before + 1,
            Duration::from_secs(20),
        )
        .await
    }

    fn spawn_process(&mut self) -> anyhow::Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("gateway.log"))?;
        let child = Command::new(fieldbridge_bin())
            .current_dir(self.dir.path())
            .args(["run", "-c", "gateway.yaml", "--log-format", "json", "-v"])
            .env_remove("RUST_LOG")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        Ok(())
    }

    /// Stops the gateway with SIGTERM, as systemd would.
    pub async fn stop(&mut self) -> anyhow::Result<ExitStatus> {
        self.stop_with("TERM").await
    }

    /// Stops the gateway with SIGINT, as Ctrl-C in a terminal would.
    pub async fn interrupt(&mut self) -> anyhow::Result<ExitStatus> {
        self.stop_with("INT").await
    }

    async fn stop_with(&mut self, signal: &str) -> anyhow::Result<ExitStatus> {
        let mut child = self
            .child
            .take()
            .ok_or_else(|| anyhow::anyhow!("not running"))?;
        crate::signal(child.id(), signal);
        wait_exit(&mut child, Duration::from_secs(20))
            .await
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "the gateway did not stop on SIG{signal} within 20s:\n{}",
                    self.log()
                )
            })
    }

    /// Starts the gateway again with the same config and state.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(self.child.is_none(), "still running");
        self.spawn().await
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- gateway log ---\n{}", self.log());
        }
    }
}
