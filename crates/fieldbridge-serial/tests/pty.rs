//! The serial adapter on real pseudo-terminals made by socat: the adapter
//! opens one end as it would open /dev/ttyUSB0, the test plays the device
//! on the other. Readings are checked after core's normalization, on the bus.

#![allow(clippy::unwrap_used)] // test fixtures: a failure should stop the test loudly

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fieldbridge_core::adapter::{Adapter, AdapterContext};
use fieldbridge_core::bus::{Bus, Subscription};
use fieldbridge_core::device::{AdapterDevice, PointSource};
use fieldbridge_core::{
    CommandRouter, CommandRoutes, ConnectionId, DeviceId, DeviceSettings, DeviceSpec, DeviceStatus,
    Directory, EventKind, PointId, PointSettings, PointSpec, Quality, Value, normalize,
};
use fieldbridge_serial::SerialAdapter;
use fieldbridge_serial::config::{
    FlowControl, FormatKind, FramingConfig, Parity, Request, SerialConnection, SerialDevice,
    SerialPoint, WriteConfig,
};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(10);

/// A socat pty pair: `dev` for the adapter, `peer` for the test.
struct PtyPair {
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl PtyPair {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Self { dir, child: None };
        p.spawn().await;
        p
    }

    fn dev(&self) -> PathBuf {
        self.dir.path().join("dev")
    }

    fn peer(&self) -> PathBuf {
        self.dir.path().join("peer")
    }

    async fn spawn(&mut self) {
        let which = Command::new("which")
            .arg("socat")
            .output()
            .map(|o| o.status.success());
        assert!(
            matches!(which, Ok(true)),
            "socat not found: run scripts/test (or apt-get install -y socat)"
        );
        let link = |p: &Path| format!("pty,raw,echo=0,link={}", p.display());
        let child = Command::new("socat")
            .args([link(&self.dev()), link(&self.peer())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + WAIT;
        while !(self.dev().exists() && self.peer().exists()) {
            assert!(tokio::time::Instant::now() < deadline, "socat made no ptys");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until this process (the adapter under test) has the
    /// adapter's end open, so that what the test writes next is read.
    async fn wait_open(&self) {
        let pts = std::fs::canonicalize(self.dev()).unwrap();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let open = std::fs::read_dir("/proc/self/fd")
                .unwrap()
                .filter_map(Result::ok)
                .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == pts));
            if open {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the adapter did not open {} ({}) within {WAIT:?}",
                self.dev().display(),
                pts.display()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Unplugs: socat exits and both ends disappear.
    async fn unplug(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.dev().exists() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "pty link not removed"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The device side: writes raw bytes.
    fn write(&self, bytes: &[u8]) {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(self.peer())
            .unwrap();
        f.write_all(bytes).unwrap();
        f.flush().unwrap();
    }

    /// The device side: lines the adapter sends.
    async fn lines(&self) -> tokio::sync::mpsc::Receiver<String> {
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .open(self.peer())
            .await
            .unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            let mut lines = BufReader::new(file).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                if tx.send(l.trim().to_owned()).await.is_err() {
                    return;
                }
            }
        });
        rx
    }
}

impl Drop for PtyPair {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn connection(port: PathBuf) -> SerialConnection {
    SerialConnection {
        port,
        baud: 9600,
        data_bits: 8,
        parity: Parity::None,
        stop_bits: 1,
        flow_control: FlowControl::None,
        framing: FramingConfig::default(),
        max_frame: 100,
    }
}

fn device(format: FormatKind) -> SerialDevice {
    SerialDevice {
        format,
        prefix: None,
        separator: None,
        assign: None,
        pattern: None,
        request: None,
        write: None,
    }
}

struct Rig {
    sub: Subscription,
    router: CommandRouter,
    shutdown: CancellationToken,
}

fn start(
    port: PathBuf,
    config: SerialDevice,
    points: Vec<(&str, SerialPoint, bool)>,
    poll: Duration,
) -> Rig {
    let id = DeviceId::new("dev").unwrap();
    let specs: BTreeMap<PointId, PointSpec> = points
        .iter()
        .map(|(p, sp, writable)| {
            let pid = PointId::new(p).unwrap();
            (
                pid.clone(),
                PointSpec {
                    id: pid,
                    kind: sp.kind(),
                    settings: PointSettings {
                        writable: *writable,
                        ..Default::default()
                    },
                },
            )
        })
        .collect();
    let spec = Arc::new(DeviceSpec {
        id: id.clone(),
        settings: DeviceSettings {
            poll: Some(poll),
            stale_after: Some(Duration::from_secs(600)),
            ..DeviceSettings::on(ConnectionId::new("line").unwrap())
        },
        points: specs,
    });
    let directory = Arc::new(Directory::new([(*spec).clone()]));
    let bus = Bus::new(1024);
    let sub = bus.subscribe("test");
    let (events, _engine) = normalize::spawn(directory.clone(), bus);
    let adapter = Box::new(SerialAdapter::new(
        ConnectionId::new("line").unwrap(),
        connection(port),
        vec![AdapterDevice {
            spec,
            config,
            points: points
                .into_iter()
                .map(|(p, sp, _)| (PointId::new(p).unwrap(), sp))
                .collect(),
        }],
    ));
    let mut routes = CommandRoutes::new();
    let shutdown = CancellationToken::new();
    let ctx = AdapterContext {
        events,
        commands: routes.register(adapter.devices()),
        shutdown: shutdown.clone(),
    };
    tokio::spawn(adapter.run(ctx));
    Rig {
        sub,
        router: routes.into_router(directory, Duration::from_secs(5)),
        shutdown,
    }
}

impl Rig {
    async fn next(&mut self) -> EventKind {
        tokio::time::timeout(WAIT, self.sub.recv())
            .await
            .expect("an event in time")
            .expect("bus open")
            .kind
    }

    /// The samples of the next readings event: (point, value, quality, read at).
    async fn next_readings(&mut self) -> Vec<(String, Value, Quality, SystemTime)> {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut seen = Vec::new();
        loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no reading within {WAIT:?}, only {seen:?}"
            );
            match self.next().await {
                EventKind::Readings(samples) => {
                    return samples
                        .into_iter()
                        .map(|s| {
                            let r = s.reading;
                            (r.point.to_string(), r.value, r.quality, s.at)
                        })
                        .collect();
                }
                other => seen.push(other),
            }
        }
    }

    /// The only sample of the next readings event of a one-point device.
    async fn next_reading(&mut self) -> (Value, Quality) {
        let mut samples = self.next_readings().await;
        assert_eq!(samples.len(), 1, "one point, one sample: {samples:?}");
        let (_, value, quality, _) = samples.remove(0);
        (value, quality)
    }

    async fn next_status(&mut self) -> DeviceStatus {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut seen = Vec::new();
        loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no status within {WAIT:?}, only {seen:?}"
            );
            match self.next().await {
                EventKind::Status(s) => return s,
                other => seen.push(other),
            }
        }
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn key(k: &str) -> SerialPoint {
    SerialPoint {
        key: Some(k.into()),
        ..Default::default()
    }
}

#[tokio::test]
async fn every_good_line_arrives_through_garbage_noise_and_split_writes() {
    let pty = PtyPair::start().await;
    let mut rig = start(
        pty.dev(),
        device(FormatKind::KeyValue),
        vec![("t", key("T"), false)],
        Duration::from_secs(1),
    );
    // The adapter opens the port before the device talks.
    pty.wait_open().await;
    pty.write(b"T=0\n");
    assert_eq!(rig.next_reading().await.0, Value::Float(0.0));
    pty.write(b"T=1\n\xff\xfe\x00\x01\x02 binary noise\n");
    pty.write(&[b'x'; 300]);
    pty.write(b"still the same overlong line\nT=");
    pty.write(b"2\r\n");
    pty.write(b"no pairs here\nT=banana\nT=3\n");
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(rig.next_reading().await);
    }
    assert_eq!(
        got,
        vec![
            (Value::Float(1.0), Quality::Good),
            (Value::Float(2.0), Quality::Good),
            // T=banana: the last value with bad quality, then the good one.
            (
                Value::Float(2.0),
                Quality::Bad {
                    reason: "Text(\"banana\") is not a number".into()
                }
            ),
        ]
    );
    assert_eq!(rig.next_reading().await, (Value::Float(3.0), Quality::Good));
    // Every problem was counted by cause (and logged once each).
    let t = rig.sub.telemetry();
    let bad = |cause| {
        t.sum(
            "bad_input_total",
            [("connection", "line"), ("cause", cause)],
        )
    };
    assert!(bad("bad_frame") >= 1.0, "not text, too long");
    assert!(bad("unreadable_frame") >= 1.0, "no pairs here");
    assert_eq!(bad("bad_value"), 1.0, "T=banana");
}

#[tokio::test]
async fn one_line_is_one_event_with_all_its_values() {
    let pty = PtyPair::start().await;
    let mut rig = start(
        pty.dev(),
        device(FormatKind::KeyValue),
        vec![
            ("t", key("T"), false),
            ("h", key("H"), false),
            ("r", key("R"), false),
        ],
        Duration::from_secs(1),
    );
    pty.wait_open().await;
    pty.write(b"T=21.5;H=40;R=banana\n");
    let first = rig.next_readings().await;
    let got: Vec<(&str, &Value, &Quality)> = first
        .iter()
        .map(|(p, v, q, _)| (p.as_str(), v, q))
        .collect();
    // R has no value yet to report as bad: only the good ones.
    assert_eq!(
        got,
        [
            ("h", &Value::Float(40.0), &Quality::Good),
            ("t", &Value::Float(21.5), &Quality::Good),
        ]
    );
    assert_eq!(first[0].3, first[1].3, "read together, at one time");
    pty.write(b"T=22;H=40;R=0\n");
    let second: Vec<(String, Value)> = rig
        .next_readings()
        .await
        .into_iter()
        .map(|(p, v, _, _)| (p, v))
        .collect();
    // H did not change, but was read with T and R: it comes along.
    assert_eq!(
        second,
        [
            ("h".to_owned(), Value::Float(40.0)),
            ("r".to_owned(), Value::Float(0.0)),
            ("t".to_owned(), Value::Float(22.0)),
        ]
    );
}

#[tokio::test]
async fn nmea_sentences_with_bad_checksums_are_dropped() {
    let pty = PtyPair::start().await;
    let lat = SerialPoint {
        nmea: Some("GGA.latitude".into()),
        ..Default::default()
    };
    let mut rig = start(
        pty.dev(),
        device(FormatKind::Nmea),
        vec![("lat", lat, false)],
        Duration::from_secs(1),
    );
    pty.wait_open().await;
    pty.write(b"$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47\r\n");
    pty.write(b"$GPGGA,123519,5000.000,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47\r\n");
    let body = "GPGGA,123520,4807.100,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,";
    let sum = body.bytes().fold(0u8, |a, b| a ^ b);
    pty.write(format!("${body}*{sum:02X}\r\n").as_bytes());
    let (first, _) = rig.next_reading().await;
    let (second, _) = rig.next_reading().await;
    let degrees = |v: Value| match v {
        Value::Float(f) => f,
        other => panic!("{other:?}"),
    };
    assert!((degrees(first) - 48.1173).abs() < 1e-3);
    assert!(
        (degrees(second) - 48.1183).abs() < 1e-3,
        "the 50° sentence has a wrong checksum"
    );
}

#[tokio::test]
async fn a_polled_device_is_asked_and_its_silence_turns_into_bad_quality() {
    polled_device_goes_bad_when_silent(Duration::from_millis(500), Duration::from_millis(300))
        .await;
}

#[tokio::test]
async fn a_poll_shorter_than_the_timeout_still_times_out() {
    // One request at a time: a new poll must not restart the wait for the
    // answer to the last one.
    polled_device_goes_bad_when_silent(Duration::from_millis(100), Duration::from_millis(300))
        .await;
}

async fn polled_device_goes_bad_when_silent(poll: Duration, timeout: Duration) {
    let pty = PtyPair::start().await;
    let mut lines = pty.lines().await;
    let mut d = device(FormatKind::KeyValue);
    d.request = Some(Request {
        send: "READ\r\n".into(),
        timeout: Some(timeout),
    });
    let mut rig = start(pty.dev(), d, vec![("t", key("T"), false)], poll);
    let asked = tokio::time::timeout(WAIT, lines.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(asked, "READ");
    pty.write(b"T=5\n");
    assert_eq!(rig.next_reading().await, (Value::Float(5.0), Quality::Good));
    // The next requests go unanswered.
    let (value, quality) = rig.next_reading().await;
    assert_eq!(value, Value::Float(5.0));
    assert!(
        matches!(quality, Quality::Bad { ref reason } if reason.contains("no answer")),
        "{quality:?}"
    );
    // One request answered and one timed out, both timed.
    let t = rig.sub.telemetry();
    let requests = |outcome| {
        t.sum(
            "requests_total",
            [("connection", "line"), ("outcome", outcome)],
        )
    };
    assert!(requests("ok") >= 1.0);
    assert!(requests("timeout") >= 1.0);
    assert!(t.sum("request_duration_seconds_count", [("connection", "line")]) >= 2.0);
}

#[tokio::test]
async fn a_write_goes_out_on_the_line_and_waits_for_the_acknowledgement() {
    let pty = PtyPair::start().await;
    let mut lines = pty.lines().await;
    let mut d = device(FormatKind::KeyValue);
    d.write = Some(WriteConfig {
        template: "SET {point} {value}\n".into(),
        ack: Some("^OK".into()),
        timeout: Some(Duration::from_secs(3)),
    });
    let rig = start(
        pty.dev(),
        d,
        vec![("sp", key("SP"), true)],
        Duration::from_secs(1),
    );
    let router = rig.router.clone();
    let write = tokio::spawn(async move { router.write_text("dev", "sp", "70.5").await });
    let line = tokio::time::timeout(WAIT, lines.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(line, "SET sp 70.5");
    pty.write(b"OK\n");
    let result = tokio::time::timeout(WAIT, write).await.unwrap().unwrap();
    assert_eq!(result, Ok(Value::Float(70.5)));

    // Without an acknowledgement the sender hears so.
    let router = rig.router.clone();
    let write = tokio::spawn(async move { router.write_text("dev", "sp", "71").await });
    assert_eq!(
        tokio::time::timeout(WAIT, lines.recv())
            .await
            .unwrap()
            .unwrap(),
        "SET sp 71"
    );
    let result = tokio::time::timeout(WAIT, write).await.unwrap().unwrap();
    assert!(
        result
            .unwrap_err()
            .to_string()
            .contains("did not acknowledge")
    );
}

#[tokio::test]
async fn a_boolean_is_written_as_1_or_0() {
    let pty = PtyPair::start().await;
    let mut lines = pty.lines().await;
    let mut d = device(FormatKind::KeyValue);
    d.write = Some(WriteConfig {
        template: "SET {point} {value}\n".into(),
        ack: Some("^OK".into()),
        timeout: Some(Duration::from_secs(3)),
    });
    let relay = SerialPoint {
        key: Some("R".into()),
        kind: fieldbridge_core::ValueKind::Bool,
        ..Default::default()
    };
    let rig = start(
        pty.dev(),
        d,
        vec![("relay", relay, true)],
        Duration::from_secs(1),
    );
    for (text, line, value) in [
        ("on", "SET relay 1", true),
        ("false", "SET relay 0", false),
        ("true", "SET relay 1", true),
    ] {
        let router = rig.router.clone();
        let write = tokio::spawn(async move { router.write_text("dev", "relay", text).await });
        let sent = tokio::time::timeout(WAIT, lines.recv())
            .await
            .unwrap_or_else(|_| panic!("nothing written for {text:?} within {WAIT:?}"))
            .unwrap();
        assert_eq!(sent, line, "{text:?}");
        pty.write(b"OK\n");
        let result = tokio::time::timeout(WAIT, write).await.unwrap().unwrap();
        assert_eq!(result, Ok(Value::Bool(value)), "{text:?}");
    }
}

#[tokio::test]
async fn an_unplugged_port_takes_the_device_offline_and_it_returns_by_itself() {
    let mut pty = PtyPair::start().await;
    let mut rig = start(
        pty.dev(),
        device(FormatKind::KeyValue),
        vec![("t", key("T"), false)],
        Duration::from_secs(1),
    );
    pty.wait_open().await;
    pty.write(b"T=1\n");
    assert_eq!(rig.next_reading().await.0, Value::Float(1.0));
    assert_eq!(rig.next_status().await, DeviceStatus::Online);
    pty.unplug().await;
    let DeviceStatus::Offline { reason } = rig.next_status().await else {
        panic!("offline expected")
    };
    assert!(reason.contains("serial port"), "{reason}");
    pty.spawn().await;
    // The adapter retries with backoff; keep talking until it listens.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        pty.write(b"T=2\n");
        match tokio::time::timeout(Duration::from_millis(500), rig.sub.recv()).await {
            Ok(Some(e))
                if matches!(&e.kind, EventKind::Readings(samples)
                    if samples.iter().any(|s| s.reading.value == Value::Float(2.0))) =>
            {
                break;
            }
            _ => assert!(
                tokio::time::Instant::now() < deadline,
                "no reading after replugging"
            ),
        }
    }
    assert_eq!(rig.next_status().await, DeviceStatus::Online);
}
