//! A real Mosquitto broker on a free loopback port in a temp dir, and real
//! MQTT clients (`mosquitto_pub`, `mosquitto_sub`) to play devices and
//! observers. The broker is killed on drop, even when a test panics.
//!
//! The broker logs everything (`log_type all`) to a file, so that a test can
//! wait for the broker to have acknowledged someone's subscription
//! ([`Mosquitto::wait_subscribed`]) instead of sleeping.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::ChildStdout;
use tokio::time::Instant;

use crate::{free_port, require_tool};

/// Longest wait for the broker and its clients.
const WAIT: Duration = Duration::from_secs(15);

/// A Mosquitto broker of the test's own.
pub struct Mosquitto {
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Mosquitto {
    /// Writes a config (loopback listener on a free port, anonymous access,
    /// persistence in the temp dir, everything logged to a file) and starts
    /// `mosquitto -c`; returns once the port accepts connections.
    pub async fn start() -> anyhow::Result<Self> {
        require_tool("mosquitto", "mosquitto");
        require_tool("mosquitto_pub", "mosquitto-clients");
        require_tool("mosquitto_sub", "mosquitto-clients");
        require_tool("stdbuf", "coreutils");
        let dir = tempfile::tempdir()?;
        let port = free_port();
        let d = dir.path().display();
        // `user root`: else, started as root, it drops to the `mosquitto`
        // user and cannot write its store in our temp dir.
        let conf = format!(
            "listener {port} 127.0.0.1\n\
             allow_anonymous true\n\
             user root\n\
             persistence true\n\
             persistence_location {d}/\n\
             log_dest file {d}/mosquitto.log\n\
             log_type all\n\
             log_timestamp true\n"
        );
        std::fs::write(dir.path().join("mosquitto.conf"), conf)?;
        let mut m = Self {
            port,
            dir,
            child: None,
        };
        m.spawn().await?;
        Ok(m)
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                anyhow::bail!("mosquitto exited with {status}:\n{}", self.log());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "mosquitto did not open 127.0.0.1:{} within {WAIT:?}:\n{}",
                self.port,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the broker (SIGTERM: it saves its store, as on a planned
    /// restart) and waits until its port is closed: an outage of the whole
    /// broker for everything connected to it.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            crate::terminate(child.id());
            crate::wait_exit(&mut child, WAIT).await;
        }
        crate::wait_for_port_closed(self.port, WAIT).await
    }

    /// Starts the broker again on the same port with the same store;
    /// returns once it accepts connections. What it logged before stays in
    /// [`Mosquitto::log`]; [`Mosquitto::wait_subscribed`] looks at this run
    /// only.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(self.child.is_none(), "mosquitto is still running");
        let earlier = self.dir.path().join("mosquitto.earlier.log");
        let mut all = std::fs::read_to_string(&earlier).unwrap_or_default();
        all.push_str(&std::fs::read_to_string(self.log_path()).unwrap_or_default());
        std::fs::write(&earlier, all)?;
        std::fs::write(self.log_path(), "")?;
        self.spawn().await
    }

    /// The `url` of an `mqtt:` connection in gateway.yaml.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// The broker's log so far (all runs).
    pub fn log(&self) -> String {
        let earlier = std::fs::read_to_string(self.dir.path().join("mosquitto.earlier.log"))
            .unwrap_or_default();
        earlier + &self.current_log()
    }

    /// What the broker logged since it was last (re)started.
    fn current_log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("mosquitto.log")
    }

    /// How many times the broker logged `needle` in this run.
    pub fn log_count(&self, needle: &str) -> usize {
        self.current_log().matches(needle).count()
    }

    /// Waits until the broker logged `needle` at least `times` times in
    /// this run (e.g. `Received PUBACK from <client>`: that client has
    /// taken a QoS 1 message).
    pub async fn wait_log(
        &self,
        needle: &str,
        times: usize,
        within: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        while self.log_count(needle) < times {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the broker logged {needle:?} fewer than {times} times within {within:?}:\n{}",
                self.current_log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Waits until the broker has subscribed client `client_id` to
    /// `filter` (its log line `<client> <qos> <filter>`, written before the
    /// SUBACK and before any retained message is sent).
    pub async fn wait_subscribed(
        &self,
        client_id: &str,
        filter: &str,
        within: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let log = self.current_log();
            let found = log.lines().any(|l| {
                // "1700000000: fieldbridge 1 tele/kitchen/SENSOR"
                let rest = l.split_once(": ").map_or(l, |(_, r)| r);
                let mut words = rest.split(' ');
                words.next() == Some(client_id)
                    && words.next().is_some_and(|q| q.parse::<u8>().is_ok())
                    && words.next() == Some(filter)
                    && words.next().is_none()
            });
            if found {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{client_id} did not subscribe to {filter} within {within:?}; broker log:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Publishes `payload` on `topic` with QoS 1 from a separate client
    /// (`mosquitto_pub`, payload on its stdin), retained if asked; returns
    /// once the broker acknowledged it and the client exited.
    pub async fn publish(&self, topic: &str, payload: &[u8], retain: bool) -> anyhow::Result<()> {
        let mut cmd = tokio::process::Command::new("mosquitto_pub");
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-t", topic, "-q", "1", "-s"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if retain {
            cmd.arg("-r");
        }
        let mut child = cmd.spawn()?;
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdin"))?;
        let out = tokio::time::timeout(WAIT, async move {
            stdin.write_all(payload).await?;
            drop(stdin);
            child.wait_with_output().await
        })
        .await
        .map_err(|_| {
            anyhow::anyhow!("mosquitto_pub on {topic} did not finish within {WAIT:?}")
        })??;
        anyhow::ensure!(
            out.status.success(),
            "mosquitto_pub on {topic} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    /// A `mosquitto_sub` on `filter` (QoS 1), returned once the broker
    /// acknowledged its subscription, so that nothing published from then
    /// on is missed.
    pub async fn subscribe(&self, filter: &str) -> anyhow::Result<Subscriber> {
        // Line-buffered: on a pipe, mosquitto_sub would hold its output
        // back. `-d` prints the protocol exchange (SUBACK); `-F` prints each
        // message as `msg <retained> <qos> <topic> <payload>`.
        let mut child = tokio::process::Command::new("stdbuf")
            .args(["-oL", "mosquitto_sub"])
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-t", filter, "-q", "1", "-d", "-F", "msg %r %q %t %p"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let mut sub = Subscriber {
            filter: filter.to_owned(),
            _child: child,
            lines: BufReader::new(stdout).lines(),
            seen: Vec::new(),
        };
        tokio::time::timeout(WAIT, async {
            while let Some(l) = sub.lines.next_line().await? {
                if l.contains("received SUBACK") {
                    return Ok(());
                }
                sub.seen.push(l);
            }
            anyhow::bail!(
                "mosquitto_sub on {filter} ended before subscribing:\n{}",
                sub.seen.join("\n")
            )
        })
        .await
        .map_err(|_| {
            anyhow::anyhow!("mosquitto_sub on {filter} not subscribed within {WAIT:?}")
        })??;
        Ok(sub)
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- mosquitto log ---\n{}", self.log());
        }
    }
}

/// One message as a subscriber received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The topic it was published on.
    pub topic: String,
    /// The payload, as text.
    pub payload: String,
    /// The QoS it was delivered with (the subscription asks for 1).
    pub qos: u8,
    /// Delivered as a retained message.
    pub retained: bool,
}

/// A running `mosquitto_sub`; killed on drop.
pub struct Subscriber {
    filter: String,
    _child: tokio::process::Child,
    lines: Lines<BufReader<ChildStdout>>,
    seen: Vec<String>,
}

impl Subscriber {
    /// The next message on the filter, within `within`.
    pub async fn next(&mut self, within: Duration) -> anyhow::Result<Message> {
        let filter = self.filter.clone();
        let found = tokio::time::timeout(within, async {
            while let Some(l) = self.lines.next_line().await? {
                if let Some(m) = parse_message(&l) {
                    return Ok(m);
                }
                self.seen.push(l);
            }
            anyhow::bail!("mosquitto_sub on {filter} ended")
        })
        .await;
        match found {
            Ok(m) => m,
            Err(_) => anyhow::bail!(
                "no message on {filter} within {within:?}; mosquitto_sub printed:\n{}",
                self.seen.join("\n")
            ),
        }
    }
}

/// `msg <retained 0|1> <qos> <topic> <payload>` (topics hold no spaces).
fn parse_message(line: &str) -> Option<Message> {
    let rest = line.strip_prefix("msg ")?;
    let (retained, rest) = rest.split_once(' ')?;
    let (qos, rest) = rest.split_once(' ')?;
    let (topic, payload) = rest.split_once(' ').unwrap_or((rest, ""));
    Some(Message {
        topic: topic.to_owned(),
        payload: payload.to_owned(),
        qos: qos.parse().ok()?,
        retained: match retained {
            "0" => false,
            "1" => true,
            _ => return None,
        },
    })
}
