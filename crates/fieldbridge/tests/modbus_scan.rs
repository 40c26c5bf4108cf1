//! `fieldbridge modbus scan` against a real Modbus TCP server: the binary
//! reads the range and prints each register decoded several ways.

#![allow(clippy::unwrap_used)] // test fixtures: a failure should stop the test loudly

use std::future::{Ready, ready};
use std::process::Command;
use std::time::Duration;

use tokio_modbus::server::Service;
use tokio_modbus::{ExceptionCode, Request, Response};

#[derive(Clone)]
struct Meter;

impl Service for Meter {
    type Request = Request<'static>;
    type Response = Response;
    type Exception = ExceptionCode;
    type Future = Ready<Result<Response, ExceptionCode>>;

    fn call(&self, req: Request<'static>) -> Self::Future {
        // 123.456f32 = 0x42F6E979 at holding 100, "OK" at 102.
        let bank = |a: u16| match a {
            100 => 0x42F6,
            101 => 0xE979,
            102 => 0x4F4B,
            _ => 0,
        };
        ready(match req {
            Request::ReadHoldingRegisters(a, n) => Ok(Response::ReadHoldingRegisters(
                (a..a + n).map(bank).collect(),
            )),
            _ => Err(ExceptionCode::IllegalFunction),
        })
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn scan_prints_the_registers_decoded() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let server = tokio_modbus::server::tcp::Server::new(listener);
        let on_connected = |stream, addr| async move {
            tokio_modbus::server::tcp::accept_tcp_connection(stream, addr, |_| Ok(Some(Meter)))
        };
        let _ = server.serve(&on_connected, |_| {}).await;
    });
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_fieldbridge"))
                .args(args)
                .output()
                .unwrap()
        })
    };
    let args: Vec<String> = [
        "modbus",
        "scan",
        "--tcp",
        &addr.to_string(),
        "-a",
        "100",
        "-n",
        "3",
    ]
    .map(String::from)
    .to_vec();
    let out = tokio::time::timeout(Duration::from_secs(30), run(args))
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert!(lines[1].starts_with("   100  0x42F6  17142"), "{stdout}");
    assert!(lines[1].contains("123.456"), "{stdout}");
    assert!(lines[3].contains(" OK "), "{stdout}");
    // Input registers: the server refuses; the exception is named.
    let args: Vec<String> = ["modbus", "scan", "--tcp", &addr.to_string(), "-t", "input"]
        .map(String::from)
        .to_vec();
    let out = tokio::time::timeout(Duration::from_secs(30), run(args))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Illegal function"), "{stderr}");
    // A device of a configuration: its connection and unit are used.
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
    let args: Vec<String> = [
        "modbus", "scan", "-c", &config, "--device", "meter", "-a", "100", "-n", "2",
    ]
    .map(String::from)
    .to_vec();
    let out = tokio::time::timeout(Duration::from_secs(30), run(args))
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("123.456"), "{stdout}");
    let args: Vec<String> = ["modbus", "scan", "-c", &config, "--device", "boiler"]
        .map(String::from)
        .to_vec();
    let out = tokio::time::timeout(Duration::from_secs(30), run(args))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no Modbus device `boiler`"), "{stderr}");
}
