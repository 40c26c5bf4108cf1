//! Test fixtures: a real Mosquitto on a free loopback port in a temp dir,
//! stopped even when a test panics; real MQTT clients (mosquitto_pub,
//! mosquitto_sub) to play devices and observers; and the adapter running
//! with core's normalization, bus and command router, as in the gateway.

#![allow(dead_code)] // each test binary uses part of it
#![allow(clippy::unwrap_used, clippy::expect_used)] // fixtures: fail loudly

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use fieldbridge_core::adapter::{Adapter, AdapterContext};
use fieldbridge_core::bus::{Bus, Subscription};
use fieldbridge_core::device::{AdapterDevice, PointSource};
use fieldbridge_core::{
    CommandRouter, CommandRoutes, ConnectionId, DeviceEvent, DeviceId, DeviceSettings, DeviceSpec,
    DeviceStatus, Directory, EventKind, PointId, PointSettings, PointSpec, Quality, Sample, Value,
    normalize,
};
use fieldbridge_mqtt::MqttAdapter;
use fieldbridge_mqtt::MqttStats;
use fieldbridge_mqtt::config::{MqttConnection, MqttDevice, MqttPoint};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Longest wait for anything in these tests.
pub const WAIT: Duration = Duration::from_secs(15);

const INSTALL: &str = "apt-get install -y mosquitto mosquitto-clients";

/// Fails (does not skip) when a tool is missing.
pub fn require(tool: &str) {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(found, "{tool} not found: run scripts/test, or {INSTALL}");
}

/// How the broker is set up.
#[derive(Debug, Clone, Default)]
pub struct BrokerOptions {
    /// Require this user and password.
    pub password: Option<(String, String)>,
    /// Serve TLS with a CA generated now.
    pub tls: bool,
    /// With `tls`: require a client certificate signed by that CA.
    pub client_certificates: bool,
}

/// PEM files of a test CA and the broker's certificate.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA certificate, for clients.
    pub ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    /// A client certificate signed by the CA.
    pub client_cert: PathBuf,
    /// Its key.
    pub client_key: PathBuf,
}

/// A Mosquitto broker of our own.
pub struct Mosquitto {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// TLS files, when it serves TLS.
    pub tls: Option<TlsFiles>,
    options: BrokerOptions,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn make_tls(dir: &Path) -> TlsFiles {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "fieldbridge test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let mut server =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    server
        .distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    let server_key = KeyPair::generate().unwrap();
    let server_cert = server.signed_by(&server_key, &ca_cert, &ca_key).unwrap();
    let client = CertificateParams::new(vec!["fieldbridge".to_owned()]).unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client_cert = client.signed_by(&client_key, &ca_cert, &ca_key).unwrap();
    let files = TlsFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client.key"),
    };
    std::fs::write(&files.client_cert, client_cert.pem()).unwrap();
    std::fs::write(&files.client_key, client_key.serialize_pem()).unwrap();
    std::fs::write(&files.ca, ca_cert.pem()).unwrap();
    std::fs::write(&files.cert, server_cert.pem()).unwrap();
    std::fs::write(&files.key, server_key.serialize_pem()).unwrap();
    files
}

impl Mosquitto {
    /// Starts a broker and waits until its port accepts connections.
    pub async fn start(options: BrokerOptions) -> Self {
        require("mosquitto");
        require("mosquitto_pub");
        require("mosquitto_sub");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let tls = options.tls.then(|| make_tls(dir.path()));
        let mut conf = format!(
            "listener {port} 127.0.0.1\nuser root\npersistence true\npersistence_location {}/\nlog_dest file {}/mosquitto.log\nmax_queued_messages 0\n",
            dir.path().display(),
            dir.path().display()
        );
        match &options.password {
            Some((user, password)) => {
                let file = dir.path().join("passwd");
                let ok = std::process::Command::new("mosquitto_passwd")
                    .args(["-b", "-c"])
                    .arg(&file)
                    .args([user, password])
                    .status()
                    .unwrap()
                    .success();
                assert!(ok, "mosquitto_passwd failed");
                conf.push_str(&format!(
                    "allow_anonymous false\npassword_file {}\n",
                    file.display()
                ));
            }
            None => conf.push_str("allow_anonymous true\n"),
        }
        if let Some(t) = &tls {
            conf.push_str(&format!(
                "cafile {}\ncertfile {}\nkeyfile {}\n",
                t.ca.display(),
                t.cert.display(),
                t.key.display()
            ));
            if options.client_certificates {
                conf.push_str("require_certificate true\n");
            }
        }
        std::fs::write(dir.path().join("mosquitto.conf"), conf).unwrap();
        let mut m = Self {
            port,
            tls,
            options,
            dir,
            child: None,
        };
        m.spawn().await;
        m
    }

    async fn spawn(&mut self) {
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("mosquitto starts");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("mosquitto exited with {status}: {}", self.log());
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "mosquitto did not open port {}: {}",
                self.port,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The broker's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }

    /// Stops the broker the orderly way (SIGTERM: it saves its sessions
    /// and queued messages) and waits until it is gone.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = child.id() {
            let kill = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
            let _ = tokio::time::timeout(WAIT, kill).await;
        }
        match tokio::time::timeout(WAIT, child.wait()).await {
            Ok(_) => {}
            Err(_) => {
                let _ = child.kill().await;
            }
        }
    }

    /// Stops and starts again on the same port, with the same store.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.spawn().await;
    }

    /// The `url` for the adapter.
    pub fn url(&self) -> String {
        match self.tls {
            Some(_) => format!("mqtts://127.0.0.1:{}", self.port),
            None => format!("mqtt://127.0.0.1:{}", self.port),
        }
    }

    /// Arguments for mosquitto_pub/sub to reach this broker.
    pub fn client_args(&self) -> Vec<String> {
        let mut a = vec![
            "-h".into(),
            "127.0.0.1".into(),
            "-p".into(),
            self.port.to_string(),
        ];
        if let Some((u, p)) = &self.options.password {
            a.extend(["-u".into(), u.clone(), "-P".into(), p.clone()]);
        }
        if let Some(t) = &self.tls {
            a.extend(["--cafile".into(), t.ca.display().to_string()]);
            if self.options.client_certificates {
                a.extend([
                    "--cert".into(),
                    t.client_cert.display().to_string(),
                    "--key".into(),
                    t.client_key.display().to_string(),
                ]);
            }
        }
        a
    }

    /// Publishes with mosquitto_pub (a real, separate client) and waits
    /// for it to finish.
    pub async fn publish(&self, topic: &str, payload: &[u8], qos: u8, retain: bool) {
        let file = self.dir.path().join(format!("payload-{}", rand_suffix()));
        std::fs::write(&file, payload).unwrap();
        let mut cmd = Command::new("mosquitto_pub");
        cmd.args(self.client_args())
            .args(["-t", topic, "-q", &qos.to_string(), "-f"])
            .arg(&file);
        if retain {
            cmd.arg("-r");
        }
        let out = tokio::time::timeout(WAIT, cmd.output())
            .await
            .expect("mosquitto_pub in time")
            .unwrap();
        assert!(
            out.status.success(),
            "mosquitto_pub failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = std::fs::remove_file(file);
    }

    /// A mosquitto_sub on `topic`, returned once the broker acknowledged
    /// its subscription; `extra` adds options (a will, a client id).
    pub async fn subscriber(&self, topic: &str, extra: &[&str]) -> Subscriber {
        // Line-buffered: piped, mosquitto_sub would hold its output back.
        let mut child = Command::new("stdbuf")
            .arg("-oL")
            .arg("mosquitto_sub")
            .args(self.client_args())
            .args(["-t", topic, "-v", "-d"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        tokio::time::timeout(WAIT, async {
            while let Some(l) = lines.next_line().await.unwrap() {
                if l.contains("SUBACK") {
                    return;
                }
            }
            panic!("mosquitto_sub ended before subscribing");
        })
        .await
        .expect("mosquitto_sub subscribed in time");
        Subscriber { child, lines }
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.start_kill();
        }
    }
}

/// A running mosquitto_sub.
pub struct Subscriber {
    child: Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Subscriber {
    /// The next message, as `topic payload`.
    pub async fn next(&mut self) -> String {
        tokio::time::timeout(WAIT, async {
            loop {
                let l = self
                    .lines
                    .next_line()
                    .await
                    .unwrap()
                    .expect("mosquitto_sub ended");
                if !(l.starts_with("Client ") || l.starts_with("Subscribed (mid")) {
                    return l;
                }
            }
        })
        .await
        .expect("a message in time")
    }

    /// Reads everything it prints until it exits (after `-C n` messages);
    /// returns how many messages it printed.
    pub async fn drain(mut self, limit: Duration) -> u64 {
        let mut n = 0;
        tokio::time::timeout(limit, async {
            while let Some(l) = self.lines.next_line().await.unwrap() {
                if !(l.starts_with("Client ") || l.starts_with("Subscribed (mid")) {
                    n += 1;
                }
            }
        })
        .await
        .expect("mosquitto_sub done in time");
        let _ = self.child.wait().await;
        n
    }

    /// Kills it without a DISCONNECT: the broker publishes its will.
    pub async fn crash(mut self) {
        let _ = tokio::time::timeout(WAIT, self.child.kill()).await;
    }
}

/// A device from JSON written like `gateway.yaml`; `writable` names the
/// writable points.
pub fn device(
    id: &str,
    config: serde_json::Value,
    points: &[(&str, serde_json::Value)],
    writable: &[&str],
) -> AdapterDevice<MqttDevice, MqttPoint> {
    let points: BTreeMap<PointId, MqttPoint> = points
        .iter()
        .map(|(p, v)| {
            (
                PointId::new(p).unwrap(),
                serde_json::from_value(v.clone()).unwrap(),
            )
        })
        .collect();
    device_with(id, config, points, |p| PointSettings {
        writable: writable.contains(&p),
        ..Default::default()
    })
}

/// Like [`device`], with core settings per point.
pub fn device_with(
    id: &str,
    config: serde_json::Value,
    points: BTreeMap<PointId, MqttPoint>,
    settings: impl Fn(&str) -> PointSettings,
) -> AdapterDevice<MqttDevice, MqttPoint> {
    let specs = points
        .iter()
        .map(|(p, cfg)| {
            (
                p.clone(),
                PointSpec {
                    id: p.clone(),
                    kind: cfg.kind(),
                    settings: settings(p.as_str()),
                },
            )
        })
        .collect();
    AdapterDevice {
        spec: Arc::new(DeviceSpec {
            id: DeviceId::new(id).unwrap(),
            settings: DeviceSettings {
                stale_after: Some(Duration::from_secs(600)),
                ..DeviceSettings::on(ConnectionId::new("broker").unwrap())
            },
            points: specs,
        }),
        config: serde_json::from_value(config).unwrap(),
        points,
    }
}

/// The connection settings for `broker`, with `extra` keys.
pub fn connection(url: &str, extra: serde_json::Value) -> MqttConnection {
    let mut v = serde_json::json!({ "url": url });
    if let (Some(m), serde_json::Value::Object(e)) = (v.as_object_mut(), extra) {
        m.extend(e);
    }
    serde_json::from_value(v).unwrap()
}

/// The adapter running with core, as the gateway runs it.
pub struct Rig {
    /// What sinks see.
    pub sub: Subscription,
    /// Where writes go in.
    pub router: CommandRouter,
    /// The adapter's counters.
    pub stats: MqttStats,
    /// Every device, including those created at run time.
    pub directory: Arc<Directory>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
    /// Samples of an event a reading wait took, not yet waited for: one
    /// message is one event, and a test may wait for its points one by one.
    unread: VecDeque<(DeviceId, Sample)>,
    /// Each device's newest status seen on the bus, whichever wait took it.
    statuses: HashMap<DeviceId, DeviceStatus>,
}

impl Rig {
    /// Starts the adapter for `devices` on `settings`.
    pub fn start(
        settings: MqttConnection,
        devices: Vec<AdapterDevice<MqttDevice, MqttPoint>>,
    ) -> Self {
        Self::start_with_queue(settings, devices, 1 << 16)
    }

    /// Like [`Rig::start`], with the test sink queueing `queue` events in
    /// order before the bus coalesces (a bench sizes it to never coalesce).
    pub fn start_with_queue(
        settings: MqttConnection,
        devices: Vec<AdapterDevice<MqttDevice, MqttPoint>>,
        queue: usize,
    ) -> Self {
        let configured: Vec<DeviceSpec> = devices
            .iter()
            .filter(|d| !d.config.is_template())
            .map(|d| (*d.spec).clone())
            .collect();
        let directory = Arc::new(Directory::new(configured));
        let bus = Bus::new(queue);
        let sub = bus.subscribe("test");
        let (events, _engine) = normalize::spawn(directory.clone(), bus);
        let adapter = MqttAdapter::new(
            "test",
            ConnectionId::new("broker").unwrap(),
            settings,
            devices,
        )
        .with_directory(Arc::clone(&directory));
        let stats = MqttStats::new(
            ConnectionId::new("broker").unwrap(),
            Arc::clone(events.telemetry()),
        );
        let adapter: Box<dyn Adapter> = Box::new(adapter);
        let mut routes = CommandRoutes::new();
        let shutdown = CancellationToken::new();
        let ctx = AdapterContext {
            events,
            commands: routes
                .register_connection(&ConnectionId::new("broker").unwrap(), adapter.devices()),
            shutdown: shutdown.clone(),
        };
        let task = tokio::spawn(adapter.run(ctx));
        Self {
            sub,
            router: routes.into_router(Arc::clone(&directory), Duration::from_secs(5)),
            stats,
            directory,
            shutdown,
            task: Some(task),
            unread: VecDeque::new(),
            statuses: HashMap::new(),
        }
    }

    /// Stops the adapter (it disconnects politely) and waits for it.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.task.take() {
            tokio::time::timeout(WAIT, t)
                .await
                .expect("adapter stops in time")
                .unwrap();
        }
    }

    /// The next event on the bus.
    pub async fn next(&mut self) -> DeviceEvent {
        let e = tokio::time::timeout(WAIT, self.sub.recv())
            .await
            .expect("an event in time")
            .expect("bus open");
        if let EventKind::Status(s) = &e.kind {
            self.statuses.insert(e.device.clone(), s.clone());
        }
        e
    }

    /// Waits until `device`'s newest status is `want`: it may have come
    /// already, before a reading another wait took (a device that comes
    /// back says so before or after its first reading).
    pub async fn until_status(&mut self, device: &str, want: DeviceStatus) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.statuses.get(device) != Some(&want) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{device} not {want:?} within {WAIT:?} (last: {:?})",
                self.statuses.get(device)
            );
            self.next().await;
        }
    }

    /// Waits for a reading of `device.point`; returns its value and quality.
    pub async fn reading(&mut self, device: &str, point: &str) -> (Value, Quality) {
        let (value, quality, _) = self.reading_at(device, point).await;
        (value, quality)
    }

    /// Like [`Rig::reading`], with the time the sample says it was read.
    pub async fn reading_at(
        &mut self,
        device: &str,
        point: &str,
    ) -> (Value, Quality, std::time::SystemTime) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            while let Some((d, s)) = self.unread.pop_front() {
                if d.as_str() == device && s.reading.point.as_str() == point {
                    return (s.reading.value, s.reading.quality, s.at);
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no reading of {device}.{point} within {WAIT:?}"
            );
            let e = self.next().await;
            if let EventKind::Readings(samples) = e.kind {
                self.unread
                    .extend(samples.into_iter().map(|s| (e.device.clone(), s)));
            }
        }
    }

    /// Waits for a status of `device` (samples not waited for yet came
    /// before it: they are passed over too).
    pub async fn status(&mut self, device: &str) -> DeviceStatus {
        self.unread.clear();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no status of {device} within {WAIT:?}"
            );
            let e = self.next().await;
            if let EventKind::Status(s) = e.kind
                && e.device.as_str() == device
            {
                return s;
            }
        }
    }

    /// Waits until `f` holds of the counters.
    pub async fn until(&self, what: &str, f: impl Fn(&MqttStats) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !f(&self.stats) {
            assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
