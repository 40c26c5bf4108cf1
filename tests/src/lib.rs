//! Fixtures for fieldbridge's end-to-end tests: a real Prosody, the real
//! `fieldbridge` binary, and a real XMPP client, all on free loopback ports
//! in temporary directories, stopped on drop even when a test panics.
//!
//! Every wait has a deadline and fails with what was seen meanwhile; waiting
//! polls for a condition (a port open, a stanza arrived), never sleeps for
//! a fixed time in place of one.

pub mod browser;
pub mod certs;
pub mod client;
pub mod component;
pub mod count;
pub mod ejabberd;
pub mod gateway;
pub mod http;
pub mod mosquitto;
pub mod muc;
pub mod procfs;
pub mod prosody;
pub mod proxy;
pub mod pty;
pub mod pubsub;
pub mod raw;
pub mod server;

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Waits until something accepts connections on 127.0.0.1:`port`.
pub async fn wait_for_port(port: u16, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            anyhow::bail!("nothing listens on 127.0.0.1:{port} after {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until nothing accepts connections on 127.0.0.1:`port`.
pub async fn wait_for_port_closed(port: u16, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            anyhow::bail!("127.0.0.1:{port} still open after {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The `fieldbridge` binary under test: `FIELDBRIDGE_BIN`, or the debug
/// build of the main workspace.
pub fn fieldbridge_bin() -> PathBuf {
    let bin = std::env::var_os("FIELDBRIDGE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/debug/fieldbridge"));
    assert!(
        bin.exists(),
        "{} not found: build it with `cargo build -p fieldbridge` in the repository root \
         (scripts/test does), or set FIELDBRIDGE_BIN",
        bin.display()
    );
    bin
}

/// Fails with the install command when a tool the tests need is missing.
pub fn require_tool(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|p| p.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{tool} not found: run scripts/test (or apt-get install -y {package})"
    );
}

/// Runs `cmd` to completion, as [`std::process::Command::output`] does,
/// but kills it and fails, saying what it printed, when it has not exited
/// within `within`.
pub fn output_within(
    cmd: &mut std::process::Command,
    within: Duration,
) -> anyhow::Result<std::process::Output> {
    use std::io::Read;
    use std::process::Stdio;
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot run {what}: {e}"))?;
    // Read both pipes on threads, so that a chatty command cannot block
    // on a full pipe while we wait for it.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            let _ = tx.send(buf);
        });
        rx
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = std::time::Instant::now() + within;
    let left = || deadline.saturating_duration_since(std::time::Instant::now());
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if left().is_zero() {
            let _ = child.kill();
            let _ = child.wait();
            let printed = |rx: std::sync::mpsc::Receiver<Vec<u8>>| {
                rx.recv_timeout(Duration::from_secs(1))
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default()
            };
            anyhow::bail!(
                "{what} did not finish within {within:?} (killed); it printed:\n{}{}",
                printed(stdout),
                printed(stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    // Once it has exited its pipes close, unless it left a child holding
    // them: wait for that only until the deadline too.
    let collect = |rx: std::sync::mpsc::Receiver<Vec<u8>>, name: &str| {
        rx.recv_timeout(left().max(Duration::from_millis(100)))
            .map_err(|_| anyhow::anyhow!("{what} exited but its {name} stayed open"))
    };
    Ok(std::process::Output {
        status,
        stdout: collect(stdout, "stdout")?,
        stderr: collect(stderr, "stderr")?,
    })
}

/// Sends SIGTERM to a process (the gateway's graceful stop).
pub fn terminate(pid: u32) {
    signal(pid, "TERM");
}

/// Sends signal `name` (`TERM`, `INT`, ...) to a process.
pub fn signal(pid: u32, name: &str) {
    let _ = output_within(
        std::process::Command::new("kill").args([&format!("-{name}"), &pid.to_string()]),
        Duration::from_secs(10),
    );
}

/// Waits for a child to exit, or kills it after `within`.
pub async fn wait_exit(
    child: &mut std::process::Child,
    within: Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs an `async fn(ServerKind)` test once against each XMPP server, as
/// `<name>::prosody` and `<name>::ejabberd`. A server kind added to
/// [`server::ServerKind`] stops every use of it from compiling until the
/// macro runs it too.
#[macro_export]
macro_rules! on_every_server {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                /// Exhaustive: a kind with no test below is a compile error.
                #[allow(dead_code)]
                fn every_kind_has_a_test(kind: $crate::server::ServerKind) {
                    match kind {
                        $crate::server::ServerKind::Prosody
                        | $crate::server::ServerKind::Ejabberd => {}
                    }
                }
                #[tokio::test]
                async fn prosody() {
                    super::$name($crate::server::ServerKind::Prosody).await;
                }
                #[tokio::test]
                async fn ejabberd() {
                    super::$name($crate::server::ServerKind::Ejabberd).await;
                }
            }
        )*
    };
}
