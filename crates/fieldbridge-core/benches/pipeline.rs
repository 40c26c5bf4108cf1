//! Throughput of the core pipeline: adapter → normalization → bus → sink.
//!
//! Each device is polled as one event of all its points, every point
//! changing. Prints readings per second and CPU time per reading for a fast
//! sink, and how many readings a sink that cannot keep up had coalesced
//! (newest sample per point of a device's pending update wins) without
//! slowing the producer; then, in the same run, what evaluating an alarm on
//! every point costs (a limit never reached), as a ratio. Run with
//! `cargo bench -p fieldbridge-core --bench pipeline`.

use fieldbridge_core::process::cpu_time;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fieldbridge_core::adapter::sample;
use fieldbridge_core::alarm::{AlarmSettings, Severity};
use fieldbridge_core::bus::{Bus, Subscription};
use fieldbridge_core::device::{DeviceSettings, DeviceSpec, Directory, PointSettings, PointSpec};
use fieldbridge_core::telemetry::Telemetry;
use fieldbridge_core::{ConnectionId, DeviceId, PointId, Quality, Value, ValueKind, normalize};

const DEVICES: usize = 100;
const POINTS: usize = 10;
const READINGS: usize = 1_000_000;

fn directory(alarms: bool) -> Arc<Directory> {
    Arc::new(Directory::new((0..DEVICES).map(|d| {
        DeviceSpec {
            id: DeviceId::new(&format!("dev{d}")).expect("valid id"),
            settings: DeviceSettings {
                poll: Some(Duration::from_secs(1)),
                ..DeviceSettings::on(ConnectionId::new("bench").expect("valid id"))
            },
            points: (0..POINTS)
                .map(|p| {
                    let id = PointId::new(&format!("p{p}")).expect("valid id");
                    let spec = PointSpec {
                        id: id.clone(),
                        kind: ValueKind::Float,
                        settings: PointSettings {
                            scale: Some(0.1),
                            alarm: alarms.then(|| AlarmSettings {
                                above: Some(1e12),
                                below: None,
                                equals: None,
                                hysteresis: Some(1.0),
                                hold: Some(Duration::from_secs(30)),
                                severity: Severity::Critical,
                                text: None,
                            }),
                            ..Default::default()
                        },
                    };
                    (id, spec)
                })
                .collect::<BTreeMap<_, _>>(),
        }
    })))
}

async fn drain(mut sub: Subscription, delay_every: Option<usize>) -> (u64, Subscription) {
    let mut n = 0u64;
    loop {
        match sub.recv().await {
            Some(_) => {
                n += 1;
                if let Some(k) = delay_every
                    && n.is_multiple_of(k as u64)
                {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            None => return (n, sub),
        }
    }
}

/// One run; returns the CPU time per reading, when the platform tells it.
async fn run(slow_sink: bool, alarms: bool) -> Option<Duration> {
    let dir = directory(alarms);
    let devices: Vec<(DeviceId, Vec<PointId>)> = dir
        .devices()
        .map(|d| (d.id.clone(), d.points.keys().cloned().collect()))
        .collect();
    let bus = Bus::new(4096);
    let fast = tokio::spawn(drain(bus.subscribe("fast"), None));
    let slow = slow_sink.then(|| tokio::spawn(drain(bus.subscribe("slow"), Some(64))));
    let telemetry = Arc::clone(bus.telemetry());
    let (events, engine) = normalize::spawn(dir, bus);
    let cpu0 = cpu_time();
    let t0 = Instant::now();
    for poll in 0..READINGS / POINTS {
        let (device, points) = &devices[poll % devices.len()];
        let samples = points
            .iter()
            .map(|p| sample(p, Value::Int(poll as i64), Quality::Good))
            .collect();
        events.readings(device, samples).await;
    }
    drop(events);
    engine.await.expect("engine");
    let (received, _) = fast.await.expect("fast sink");
    let elapsed = t0.elapsed();
    let cpu = cpu_time().zip(cpu0).map(|(a, b)| a.saturating_sub(b));
    println!(
        "{} sink(s){}: {READINGS} readings over {} points in {:.2?}: {:.0} readings/s, {} CPU per reading; fast sink got {received} events",
        if slow_sink { "fast + slow" } else { "one fast" },
        if alarms {
            ", an alarm on every point"
        } else {
            ""
        },
        DEVICES * POINTS,
        elapsed,
        READINGS as f64 / elapsed.as_secs_f64(),
        cpu.map_or("n/a".into(), |c| format!("{:.2?}", c / READINGS as u32)),
    );
    let published = telemetry.sum("readings_published_total", []) as usize;
    let updates = telemetry.sum("updates_published_total", []) as usize;
    assert_eq!(published, READINGS);
    assert_eq!(updates, READINGS / POINTS);
    if let Some(slow) = slow {
        let (got, sub) = slow.await.expect("slow sink");
        drop(sub);
        let sink = [("sink", "slow")];
        println!(
            "  slow sink: received {got} events, coalesced {} readings (newest per point kept), dropped {}",
            Telemetry::count(&telemetry.readings_coalesced, sink),
            Telemetry::count(&telemetry.readings_dropped, sink),
        );
    }
    cpu.map(|c| c / READINGS as u32)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let plain = rt.block_on(run(false, false));
    rt.block_on(run(true, false));
    let alarmed = rt.block_on(run(false, true));
    if let (Some(plain), Some(alarmed)) = (plain, alarmed) {
        println!(
            "alarms on every point: {:.2}x the CPU per reading of none",
            alarmed.as_secs_f64() / plain.as_secs_f64()
        );
    }
}
