//! `fieldbridge modbus scan` against a real Modbus TCP server and a real
//! Modbus RTU server on a socat pseudo-terminal: the binary reads the range
//! and prints each register decoded several ways.

#![allow(clippy::unwrap_used)] // test fixtures: a failure should stop the test loudly

use std::future::{Ready, ready};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio_modbus::server::Service;
use tokio_modbus::{ExceptionCode, Request, Response, SlaveRequest};

/// Two units behind one address, with different registers, so that a scan
/// shows which unit it asked; any other unit does not answer (a dead
/// device).
#[derive(Clone)]
struct Meter;

impl Service for Meter {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = Ready<Result<Option<Response>, ExceptionCode>>;

    fn call(&self, req: SlaveRequest<'static>) -> Self::Future {
        // Unit 1: 123.456f32 = 0x42F6E979 at holding 100, "OK" at 102.
        // Unit 3: 2.5f32 = 0x40200000 at holding 100, "U3" at 102.
        let bank = match req.slave {
            1 => |a: u16| match a {
                100 => 0x42F6,
                101 => 0xE979,
                102 => 0x4F4B,
                _ => 0,
            },
            3 => |a: u16| match a {
                100 => 0x4020,
                101 => 0x0000,
                102 => 0x5533,
                _ => 0,
            },
            _ => return ready(Ok(None)),
        };
        ready(match req.request {
            Request::ReadHoldingRegisters(a, n) => Ok(Some(Response::ReadHoldingRegisters(
                (a..a + n).map(bank).collect(),
            ))),
            _ => Err(ExceptionCode::IllegalFunction),
        })
    }
}

/// Runs the binary with `args` to its end, within 30 s.
async fn run(args: &[&str]) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_fieldbridge"))
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("fieldbridge {args:?} did not finish within 30 s"))
        .unwrap()
}

fn stdout_of(out: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread")]
async fn scan_prints_the_registers_decoded() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let server = tokio_modbus::server::tcp::Server::new(listener);
        let on_connected = |stream, addr| async move {
            tokio_modbus::server::tcp::accept_tcp_connection(stream, addr, |_| Ok(Some(Meter)))
        };
        let _ = server.serve(&on_connected, |_| {}).await;
    });
    let out = run(&["modbus", "scan", "--tcp", &addr, "-a", "100", "-n", "3"]).await;
    let stdout = stdout_of(&out);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert!(lines[1].starts_with("   100  0x42F6  17142"), "{stdout}");
    assert!(lines[1].contains("123.456"), "{stdout}");
    assert!(lines[3].contains(" OK "), "{stdout}");
    // Another unit behind the same address: -u asks it.
    let out = run(&[
        "modbus", "scan", "--tcp", &addr, "-u", "3", "-a", "100", "-n", "3",
    ])
    .await;
    let stdout = stdout_of(&out);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[1].starts_with("   100  0x4020  16416"), "{stdout}");
    assert!(lines[3].contains(" U3 "), "{stdout}");
    // Input registers: the server refuses; the exception is named.
    let out = run(&["modbus", "scan", "--tcp", &addr, "-t", "input"]).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Illegal function"), "{stderr}");
    // A device of a configuration: its connection and its unit (3) are
    // used.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            "gateway: {{ id: t }}\n\
             xmpp: {{ component: gw.localhost, secret: s, access: {{ read: [localhost] }} }}\n\
             connections:\n  plc: {{ modbus_tcp: {{ address: \"{addr}\" }} }}\n\
             devices:\n  meter: {{ connection: plc, unit: 3, points: {{ a: {{ holding: 100 }} }} }}\n"
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    let out = run(&[
        "modbus", "scan", "-c", &config, "--device", "meter", "-a", "100", "-n", "3",
    ])
    .await;
    let stdout = stdout_of(&out);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[1].starts_with("   100  0x4020  16416"),
        "unit 3's registers expected: {stdout}"
    );
    assert!(lines[3].contains(" U3 "), "{stdout}");
    let out = run(&["modbus", "scan", "-c", &config, "--device", "boiler"]).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no Modbus device `boiler`"), "{stderr}");
}

/// A socat pty pair; the Modbus RTU server listens on `peer`, the scan
/// opens `dev`. Killed on drop.
struct Line {
    dir: tempfile::TempDir,
    socat: std::process::Child,
}

impl Line {
    async fn start() -> Self {
        let found = Command::new("socat")
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        assert!(
            matches!(found, Ok(s) if s.success()),
            "socat not found: install it with `apt-get install -y socat` (scripts/test does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let link = |p: &Path| format!("pty,raw,echo=0,link={}", p.display());
        let socat = Command::new("socat")
            .args([
                link(&dir.path().join("dev")),
                link(&dir.path().join("peer")),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let line = Self { dir, socat };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !(line.dev().exists() && line.peer().exists()) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "socat made no ptys in 10 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        line
    }

    fn dev(&self) -> std::path::PathBuf {
        self.dir.path().join("dev")
    }

    fn peer(&self) -> std::path::PathBuf {
        self.dir.path().join("peer")
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        let _ = self.socat.kill();
        let _ = self.socat.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn scan_reads_an_rtu_device_on_a_serial_line() {
    let line = Line::start().await;
    use tokio_serial::SerialPortBuilderExt;
    let port = tokio_serial::new(line.peer().to_string_lossy(), 19200)
        .parity(tokio_serial::Parity::Even)
        .open_native_async()
        .unwrap();
    let server = tokio::spawn(async move {
        let _ = tokio_modbus::server::rtu::Server::new(port)
            .serve_forever(Meter)
            .await;
    });
    let dev = line.dev().display().to_string();
    let rtu = [
        "modbus", "scan", "--rtu", &dev, "--baud", "19200", "--parity", "even",
    ];
    let out = run(&[&rtu[..], &["-u", "3", "-a", "100", "-n", "3"]].concat()).await;
    let stdout = stdout_of(&out);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert!(lines[1].starts_with("   100  0x4020  16416"), "{stdout}");
    assert!(lines[1].contains(" 2.5 "), "{stdout}");
    assert!(lines[3].contains(" U3 "), "{stdout}");
    // A unit nobody answers for: the scan gives up after its timeout and
    // says so.
    let out = run(&[&rtu[..], &["-u", "9", "-a", "100", "-n", "1"]].concat()).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    server.abort();
}
