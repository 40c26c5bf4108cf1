//! End-to-end: `scripts/demo`, the one-command demo, with the binary under
//! test (`FIELDBRIDGE_BIN`) and a demo directory of its own (`DEMO_DIR`). It
//! stops with the cause when a port is taken, says "running" only when a
//! real client can log in and see the devices, and on Ctrl-C stops the
//! gateway before Prosody, so that contacts see "gateway stopped".

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fieldbridge_e2e::client::{XmppUser, is_presence, status_text};
use fieldbridge_e2e::{
    fieldbridge_bin, free_port, output_within, repo_root, require_tool, signal, wait_exit,
    wait_for_port_closed,
};

const BOILER: &str = "boiler@gw.localhost";
const WAIT: Duration = Duration::from_secs(15);

/// The demo's ports: client, component, Prosody's HTTP (WebSocket), the
/// gateway's dashboard.
#[derive(Clone, Copy)]
struct Ports {
    c2s: u16,
    component: u16,
    http: u16,
    dashboard: u16,
}

impl Ports {
    fn free() -> Self {
        Self {
            c2s: free_port(),
            component: free_port(),
            http: free_port(),
            dashboard: free_port(),
        }
    }
}

/// `scripts/demo` with its ports, directory and binary set.
fn demo_command(dir: &Path, ports: Ports) -> Command {
    require_tool("prosody", "prosody");
    let mut cmd = Command::new(repo_root().join("scripts/demo"));
    cmd.env("DEMO_DIR", dir)
        .env("FIELDBRIDGE_BIN", fieldbridge_bin())
        .env("DEMO_C2S_PORT", ports.c2s.to_string())
        .env("DEMO_COMPONENT_PORT", ports.component.to_string())
        .env("DEMO_HTTP_PORT", ports.http.to_string())
        .env("DEMO_DASHBOARD_PORT", ports.dashboard.to_string())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    cmd
}

/// Processes the demo of `dir` started and left running: they carry its
/// `DEMO_DIR` in their environment (Prosody runs in a session of its own,
/// out of reach of the demo's process group).
fn left_running(dir: &Path) -> Vec<u32> {
    let marker = format!("DEMO_DIR={}", dir.display());
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|var| var == marker.as_bytes()))
        })
        .collect()
}

/// A running demo: its output as it comes; on drop, it and everything it
/// started are killed (a failed test leaves nothing behind).
struct Demo {
    child: Child,
    dir: tempfile::TempDir,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Demo {
    fn start(ports: Ports) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut child = demo_command(dir.path(), ports)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, as in a terminal, where Ctrl-C
            // reaches the whole group.
            .process_group(0)
            .spawn()
            .expect("scripts/demo starts");
        let collect = |pipe: Box<dyn Read + Send>| {
            let text = Arc::new(Mutex::new(String::new()));
            let sink = Arc::clone(&text);
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    let mut t = sink.lock().unwrap();
                    t.push_str(&line);
                    t.push('\n');
                }
            });
            text
        };
        let stdout = collect(Box::new(child.stdout.take().expect("stdout")));
        let stderr = collect(Box::new(child.stderr.take().expect("stderr")));
        Self {
            child,
            dir,
            stdout,
            stderr,
        }
    }

    fn output(&self) -> String {
        format!(
            "stdout:\n{}\nstderr:\n{}",
            self.stdout.lock().unwrap(),
            self.stderr.lock().unwrap()
        )
    }

    /// Waits until stdout holds `text`, failing early if the demo exits.
    async fn wait_for_stdout(&mut self, text: &str, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if self.stdout.lock().unwrap().contains(text) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the demo exited ({status}) before {text:?}\n{}",
                    self.output()
                );
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {text:?} within {within:?}\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        signal(self.child.id(), "KILL");
        let _ = self.child.wait();
        for pid in left_running(self.dir.path()) {
            signal(pid, "KILL");
        }
    }
}

#[tokio::test]
async fn a_busy_port_stops_the_demo_naming_its_holder_and_free_ports() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    let c2s = taken.local_addr().unwrap().port();
    let ports = Ports {
        c2s,
        ..Ports::free()
    };
    let component = ports.component;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let out = output_within(
        &mut demo_command(dir.path(), ports),
        Duration::from_secs(60),
    )
    .expect("the demo finishes");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    let me = std::process::id();
    let line = stderr
        .lines()
        .find(|l| l.starts_with(&format!("port {c2s} is in use by ")))
        .unwrap_or_else(|| panic!("port {c2s} not named:\n{stderr}"));
    assert!(line.ends_with(&format!(" (pid {me})")), "{line}");
    assert!(
        !stderr.contains(&format!("port {component} is in use")),
        "{stderr}"
    );
    assert!(!stdout.contains("is running"), "{stdout}");
    // The command to use instead names ports that are free now.
    let hint = stderr
        .lines()
        .find_map(|l| l.trim().strip_suffix(" scripts/demo"))
        .unwrap_or_else(|| panic!("no other-ports command:\n{stderr}"));
    let ports: Vec<u16> = ["DEMO_C2S_PORT=", "DEMO_COMPONENT_PORT="]
        .iter()
        .map(|key| {
            hint.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("no {key} in {hint:?}"))
        })
        .collect();
    assert_ne!(ports[0], ports[1], "{hint}");
    for port in ports {
        assert_ne!(port, c2s, "{hint}");
        TcpListener::bind(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("suggested port {port} is not free: {e}"));
    }
    assert_eq!(left_running(dir.path()), Vec::<u32>::new());
    assert!(!dir.path().join("prosody.pid").exists(), "Prosody started");
    drop(taken);
}

#[tokio::test]
async fn the_demo_is_running_when_a_client_can_use_it_and_ctrl_c_says_goodbye() {
    let ports = Ports::free();
    let (c2s, component) = (ports.c2s, ports.component);
    let mut demo = Demo::start(ports);
    demo.wait_for_stdout("fieldbridge demo is running", Duration::from_secs(90))
        .await;
    let password = std::fs::read_to_string(demo.dir.path().join("demo.password"))
        .expect("the demo wrote its password");
    let password = password.trim();
    let shown = demo.stdout.lock().unwrap().clone();
    assert!(
        shown.contains(&format!("password  {password}\n")),
        "{shown}"
    );
    assert!(shown.contains(&format!("port {c2s}, no TLS")), "{shown}");
    // The web dashboard's URL beside the account, and the page behind it
    // (scripts/test builds the dashboard before the end-to-end tests).
    let url = format!("http://127.0.0.1:{}/", ports.dashboard);
    assert!(shown.contains(&format!("      {url}\n")), "{shown}");
    let page = fieldbridge_e2e::http::get(ports.dashboard, "/")
        .await
        .unwrap_or_else(|e| panic!("the dashboard answers: {e}"));
    assert_eq!(page.status, 200, "{page:?}");
    assert!(page.body.contains("fieldbridge dashboard"), "{page:?}");

    let mut user = XmppUser::connect(c2s, "demo", password)
        .await
        .unwrap_or_else(|e| panic!("demo@localhost logs in: {e}\n{}", demo.output()));
    user.subscribe_presence(BOILER).await.unwrap();
    user.expect("the boiler's presence", WAIT, |e| {
        is_presence(e, BOILER, None)
    })
    .await
    .unwrap();

    // Ctrl-C in a terminal: SIGINT to the demo's whole process group.
    let pgid = format!("-{}", demo.child.id());
    let _ = output_within(
        Command::new("kill").args(["-INT", "--", &pgid]),
        Duration::from_secs(10),
    );
    let bye = user
        .expect("the boiler's unavailable presence", WAIT, |e| {
            is_presence(e, BOILER, Some("unavailable"))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", demo.output()));
    assert_eq!(status_text(&bye).as_deref(), Some("gateway stopped"));
    let status = wait_exit(&mut demo.child, Duration::from_secs(30)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "the demo exited with {status:?}\n{}",
        demo.output()
    );
    assert!(
        demo.stdout
            .lock()
            .unwrap()
            .trim_end()
            .ends_with("demo stopped"),
        "{}",
        demo.output()
    );
    user.close().await;
    for port in [c2s, component, ports.http, ports.dashboard] {
        wait_for_port_closed(port, Duration::from_secs(10))
            .await
            .unwrap();
    }
    assert_eq!(left_running(demo.dir.path()), Vec::<u32>::new());
}
