//! Ingest bench: N messages published by a separate process through a real
//! Mosquitto, measured twice in one run:
//!
//! 1. the broker's own limit: the same publisher to a plain subscriber
//!    (`mosquitto_sub -q 1`);
//! 2. the gateway: the same publisher to the MQTT adapter, through core's
//!    normalization to the bus, where a sink counts the readings.
//!
//! It prints messages/s and readings/s for both, the ratio gateway/broker,
//! and the gateway's CPU time per reading (user + system time of this
//! process, which runs the adapter and core but not the publisher).
//!
//! `cargo bench -p fieldbridge-mqtt --bench ingest` (N from
//! `BENCH_MESSAGES`, default 100000; each message carries 2 readings;
//! `BENCH_PROTOCOL=5` for the gateway on MQTT 5).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench: fail loudly

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{BrokerOptions, Mosquitto, Rig, connection, device};
use fieldbridge_core::EventKind;
use serde_json::json;

const PUBLISH_ENV: &str = "FIELDBRIDGE_BENCH_PUBLISH";
const TOPIC: &str = "bench/meter/SENSOR";

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if let Ok(spec) = std::env::var(PUBLISH_ENV) {
        rt.block_on(publisher(&spec));
        return;
    }
    // `cargo bench` passes `--bench`; anything else asking to list or
    // filter (cargo test --benches) gets a quick no-op.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    rt.block_on(bench());
}

fn payload(i: u64) -> Vec<u8> {
    format!(
        r#"{{"Time":"2024-05-01T12:00:00","ENERGY":{{"Power":{i},"Voltage":{},"Today":1.5}}}}"#,
        200 + i % 50
    )
    .into_bytes()
}

/// The publisher process: N QoS 1 messages, as fast as the broker acks.
async fn publisher(spec: &str) {
    let mut parts = spec.split(',');
    let port: u16 = parts.next().unwrap().parse().unwrap();
    let n: u64 = parts.next().unwrap().parse().unwrap();
    let mut o = rumqttc::MqttOptions::new(
        format!("bench-pub-{}", std::process::id()),
        "127.0.0.1",
        port,
    );
    o.set_inflight(100);
    o.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = rumqttc::AsyncClient::new(o, 1000);
    tokio::spawn(async move {
        for i in 0..n {
            client
                .publish(TOPIC, rumqttc::QoS::AtLeastOnce, false, payload(i))
                .await
                .unwrap();
        }
    });
    let mut acked = 0;
    while acked < n {
        match eventloop.poll().await {
            Ok(rumqttc::Event::Incoming(rumqttc::Incoming::PubAck(_))) => acked += 1,
            Ok(_) => {}
            Err(e) => panic!("publisher: {e}"),
        }
    }
}

fn spawn_publisher(port: u16, n: u64) -> tokio::process::Child {
    tokio::process::Command::new(std::env::current_exe().unwrap())
        .env(PUBLISH_ENV, format!("{port},{n}"))
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// CPU time (user + system) of this process so far.
fn cpu_time() -> Duration {
    fieldbridge_core::process::cpu_time().unwrap_or_default()
}

async fn bench() {
    let n: u64 = std::env::var("BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let broker = Mosquitto::start(BrokerOptions::default()).await;
    let limit = Duration::from_secs(600);

    // 1. The broker's own rate to a plain subscriber. Its persistent
    // session is made first (`-E`: exit once subscribed), so that it is
    // subscribed before the publisher starts, with no output to wait on.
    let session = ["-c", "-i", "bench-plain-sub", "-q", "1", "-t", TOPIC];
    let made = tokio::process::Command::new("mosquitto_sub")
        .args(broker.client_args())
        .args(session)
        .arg("-E")
        .status()
        .await
        .unwrap();
    assert!(made.success(), "mosquitto_sub -E failed");
    let mut sub = tokio::process::Command::new("mosquitto_sub")
        .args(broker.client_args())
        .args(session)
        .args(["-C", &n.to_string()])
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let start = Instant::now();
    let mut publisher = spawn_publisher(broker.port, n);
    let status = tokio::time::timeout(limit, sub.wait())
        .await
        .expect("broker phase in time")
        .unwrap();
    let broker_time = start.elapsed();
    assert!(status.success(), "mosquitto_sub failed");
    publisher.wait().await.unwrap();

    // 2. The gateway.
    let meter = device(
        "meter",
        json!({ "topic": TOPIC, "timestamp": "/Time" }),
        &[
            ("power", json!({ "json": "/ENERGY/Power" })),
            (
                "voltage",
                json!({ "json": "/ENERGY/Voltage", "type": "int" }),
            ),
        ],
        &[],
    );
    let protocol = std::env::var("BENCH_PROTOCOL").unwrap_or_else(|_| "3.1.1".into());
    let mut rig = Rig::start_with_queue(
        connection(
            &broker.url(),
            json!({ "clean_session": true, "protocol": protocol }),
        ),
        vec![meter],
        // Room for every reading: the sink counts them all, none coalesced.
        2 * n as usize + 16,
    );
    rig.until("subscribed", |s| s.subacks() >= 1).await;
    let expected = 2 * n;
    let cpu0 = cpu_time();
    let start = Instant::now();
    let mut publisher = spawn_publisher(broker.port, n);
    let mut readings = 0u64;
    tokio::time::timeout(limit, async {
        while readings < expected {
            match rig.sub.recv().await {
                Some(e) => {
                    if let EventKind::Readings(samples) = e.kind {
                        // Power changes in every message: both points ride.
                        readings += samples.len() as u64;
                    }
                }
                None => panic!("bus closed"),
            }
        }
    })
    .await
    .expect("gateway phase in time");
    let gateway_time = start.elapsed();
    let cpu = cpu_time() - cpu0;
    publisher.wait().await.unwrap();
    let received = rig.sub.telemetry().sum("readings_received_total", []) as u64;
    assert_eq!(received, expected, "every reading extracted");
    rig.stop().await;

    let broker_rate = n as f64 / broker_time.as_secs_f64();
    let gateway_rate = n as f64 / gateway_time.as_secs_f64();
    println!(
        "mqtt ingest bench: {n} messages (2 readings each), QoS 1, one publisher process, Mosquitto on loopback, gateway on MQTT {protocol}"
    );
    println!(
        "broker -> mosquitto_sub:   {:>9.0} messages/s ({:.2} s)",
        broker_rate,
        broker_time.as_secs_f64()
    );
    println!(
        "broker -> gateway adapter: {:>9.0} messages/s, {:.0} readings/s ({:.2} s)",
        gateway_rate,
        2.0 * gateway_rate,
        gateway_time.as_secs_f64()
    );
    println!(
        "ratio gateway/broker:      {:>9.2}",
        gateway_rate / broker_rate
    );
    println!(
        "gateway CPU per reading:   {:>9.2} µs ({:.2} s CPU for {expected} readings, adapter + normalization + bus)",
        cpu.as_secs_f64() * 1e6 / expected as f64,
        cpu.as_secs_f64()
    );
}
