//! Polling throughput over Modbus TCP on loopback.
//!
//! The server (tokio-modbus, values changing on every request) runs in a
//! child process, so that the CPU time measured here is the gateway's
//! alone: adapter, decoding, core normalization, bus and a sink draining
//! it. A device with 1,000 u16 registers is polled as fast as it answers;
//! the bench prints readings/s, CPU time per reading and requests per
//! cycle, then the requests per cycle of a scattered 40-point meter map.
//! Run with `cargo bench -p fieldbridge-modbus --bench poll`.

use fieldbridge_core::process::cpu_time;
use std::collections::BTreeMap;
use std::future::{Ready, ready};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fieldbridge_core::adapter::{Adapter, AdapterContext};
use fieldbridge_core::bus::Bus;
use fieldbridge_core::device::{AdapterDevice, PointSource};
use fieldbridge_core::{
    CommandRoutes, ConnectionId, DeviceId, DeviceSettings, DeviceSpec, Directory, EventKind,
    PointId, PointSettings, PointSpec, normalize,
};
use fieldbridge_modbus::config::{
    DataType, ModbusDevice, ModbusPoint, ModbusTcpConnection, RawModbusPoint,
};
use fieldbridge_modbus::plan::{Limits, Span, plan};
use fieldbridge_modbus::{ModbusAdapter, Transport};
use serde::Deserialize;
use tokio_modbus::server::Service;
use tokio_modbus::{ExceptionCode, Request, Response};
use tokio_util::sync::CancellationToken;

const REGISTERS: u16 = 1000;
const MEASURE: Duration = Duration::from_secs(5);

/// Answers every register read with values that change on each request,
/// and counts requests.
#[derive(Clone)]
struct Changing(Arc<AtomicU64>);

impl Service for Changing {
    type Request = Request<'static>;
    type Response = Response;
    type Exception = ExceptionCode;
    type Future = Ready<Result<Response, ExceptionCode>>;

    fn call(&self, req: Request<'static>) -> Self::Future {
        let n = self.0.fetch_add(1, Ordering::Relaxed) as u16;
        ready(match req {
            Request::ReadHoldingRegisters(a, c) | Request::ReadInputRegisters(a, c) => {
                let words: Vec<u16> = (a..a.saturating_add(c))
                    .map(|x| x.wrapping_add(n))
                    .collect();
                Ok(match req {
                    Request::ReadHoldingRegisters(..) => Response::ReadHoldingRegisters(words),
                    _ => Response::ReadInputRegisters(words),
                })
            }
            Request::ReadCoils(a, c) => Ok(Response::ReadCoils(
                (a..a.saturating_add(c)).map(|x| (x ^ n) & 1 == 1).collect(),
            )),
            _ => Err(ExceptionCode::IllegalFunction),
        })
    }
}

/// The child process: serve on a free port, print it, run until killed.
fn server_main() {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    rt.block_on(async {
        let Ok(listener) = tokio::net::TcpListener::bind("127.0.0.1:0").await else {
            return;
        };
        let Ok(addr) = listener.local_addr() else {
            return;
        };
        println!("{addr}");
        let _ = std::io::stdout().flush();
        let count = Arc::new(AtomicU64::new(0));
        let server = tokio_modbus::server::tcp::Server::new(listener);
        let on_connected = |stream, addr| {
            let count = count.clone();
            async move {
                tokio_modbus::server::tcp::accept_tcp_connection(stream, addr, move |_| {
                    Ok(Some(Changing(count.clone())))
                })
            }
        };
        let _ = server.serve(&on_connected, |_| {}).await;
    });
}

fn holding(address: u16, t: DataType) -> RawModbusPoint {
    RawModbusPoint {
        holding: Some(address),
        data_type: Some(t),
        ..RawModbusPoint::default()
    }
}

/// The points, checked as the loader checks them.
fn checked(points: Vec<(String, RawModbusPoint)>) -> Vec<(String, ModbusPoint)> {
    points
        .into_iter()
        .map(|(id, raw)| {
            let p = ModbusPoint::try_from(raw).unwrap_or_else(|e| panic!("point {id}: {e}"));
            (id, p)
        })
        .collect()
}

fn dense() -> Vec<(String, ModbusPoint)> {
    checked(
        (0..REGISTERS)
            .map(|a| (format!("r{a}"), holding(a, DataType::U16)))
            .collect(),
    )
}

/// The scattered meter map of the planner test: 40 points over input and
/// holding registers and coils.
fn scattered() -> Vec<(String, ModbusPoint)> {
    let input = |a: u16, t| RawModbusPoint {
        input: Some(a),
        data_type: Some(t),
        ..RawModbusPoint::default()
    };
    let mut p = Vec::new();
    for i in 0..12 {
        p.push((format!("v{i}"), input(i * 2, DataType::F32)));
    }
    for i in 0..7 {
        p.push((format!("e{i}"), input(100 + i * 4, DataType::U64)));
    }
    p.push(("hz".into(), input(140, DataType::F32)));
    p.push(("pf".into(), input(142, DataType::F32)));
    for i in 0..10 {
        p.push((format!("s{i}"), holding(1000 + i * 3, DataType::U16)));
    }
    p.push((
        "serial".into(),
        RawModbusPoint {
            count: Some(8),
            ..holding(5000, DataType::String)
        },
    ));
    for i in 0..8 {
        p.push((
            format!("relay{i}"),
            RawModbusPoint {
                coil: Some(i),
                ..RawModbusPoint::default()
            },
        ));
    }
    checked(p)
}

fn requests_per_cycle(points: &[(String, ModbusPoint)]) -> usize {
    let spans: Vec<Span> = points
        .iter()
        .map(|(_, p)| Span {
            at: p.location(),
            width: p.width(),
        })
        .collect();
    plan(&spans, Limits::default()).len()
}

struct Figures {
    readings: u64,
    seconds: f64,
    cpu: Option<Duration>,
}

async fn run(addr: std::net::SocketAddr, points: Vec<(String, ModbusPoint)>) -> Figures {
    let connection = ConnectionId::new("bench").expect("valid id");
    let id = DeviceId::new("meter").expect("valid id");
    let specs: BTreeMap<PointId, PointSpec> = points
        .iter()
        .map(|(p, mp)| {
            let pid = PointId::new(p).expect("valid id");
            (
                pid.clone(),
                PointSpec {
                    id: pid,
                    kind: mp.kind(),
                    settings: PointSettings::default(),
                },
            )
        })
        .collect();
    let spec = Arc::new(DeviceSpec {
        id: id.clone(),
        // As fast as the device answers. Read from keys, as the loader does,
        // so that settings core adds later keep their defaults.
        settings: DeviceSettings::deserialize(serde_json::json!({
            "connection": "bench",
            "poll": "100us",
            "stale_after": "10m",
        }))
        .expect("valid device settings"),
        points: specs,
    });
    let directory = Arc::new(Directory::new([(*spec).clone()]));
    let bus = Bus::new(65_536);
    let mut sub = bus.subscribe("bench");
    let (events, engine) = normalize::spawn(directory, bus);
    let adapter = Box::new(ModbusAdapter::new(
        connection,
        Transport::Tcp(ModbusTcpConnection {
            address: addr,
            timeout: Some(Duration::from_secs(1)),
            max_in_flight: 1,
        }),
        vec![AdapterDevice {
            spec,
            config: ModbusDevice::default(),
            points: points
                .into_iter()
                .map(|(p, mp)| (PointId::new(&p).expect("valid id"), mp))
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
    let task = tokio::spawn(adapter.run(ctx));
    let counted = Arc::new(AtomicU64::new(0));
    let sink = {
        let counted = counted.clone();
        tokio::spawn(async move {
            while let Some(e) = sub.recv().await {
                if let EventKind::Readings(samples) = e.kind {
                    counted.fetch_add(samples.len() as u64, Ordering::Relaxed);
                }
            }
        })
    };
    // Warm up: connected and polling.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (n0, cpu0, t0) = (counted.load(Ordering::Relaxed), cpu_time(), Instant::now());
    tokio::time::sleep(MEASURE).await;
    let (n1, cpu1, seconds) = (
        counted.load(Ordering::Relaxed),
        cpu_time(),
        t0.elapsed().as_secs_f64(),
    );
    shutdown.cancel();
    let _ = task.await;
    let _ = engine.await;
    sink.abort();
    Figures {
        readings: n1 - n0,
        seconds,
        cpu: cpu1.zip(cpu0).map(|(a, b)| a.saturating_sub(b)),
    }
}

fn main() {
    if std::env::var_os("FIELDBRIDGE_BENCH_SERVER").is_some() {
        server_main();
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        eprintln!("cannot find the bench binary to start the server");
        return;
    };
    let Ok(mut child) = Command::new(exe)
        .env("FIELDBRIDGE_BENCH_SERVER", "1")
        .stdout(Stdio::piped())
        .spawn()
    else {
        eprintln!("cannot start the server process");
        return;
    };
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut line);
    }
    let Ok(addr) = line.trim().parse() else {
        eprintln!("the server did not say its address: {line:?}");
        let _ = child.kill();
        return;
    };
    let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    else {
        let _ = child.kill();
        return;
    };
    let dense_plan = requests_per_cycle(&dense());
    let scattered_plan = requests_per_cycle(&scattered());
    let f = rt.block_on(run(addr, dense()));
    let per_s = f.readings as f64 / f.seconds;
    let cycles = f.readings as f64 / f64::from(REGISTERS);
    println!("modbus tcp poll, loopback, {REGISTERS} u16 registers on one device:");
    println!("  readings/s:            {per_s:.0}");
    println!("  cycles/s:              {:.1}", cycles / f.seconds);
    println!(
        "  gateway CPU/reading:   {}",
        f.cpu.map_or("n/a".into(), |c| format!(
            "{:.2?}",
            c.div_f64(f.readings.max(1) as f64)
        ))
    );
    println!(
        "  gateway CPU use:       {}",
        f.cpu.map_or("n/a".into(), |c| format!(
            "{:.0}% of one core",
            100.0 * c.as_secs_f64() / f.seconds
        ))
    );
    println!("  requests per cycle:    {dense_plan} (125 registers each, the protocol limit)");
    let s = rt.block_on(run(addr, scattered()));
    println!("scattered meter map, 40 points (f32, u64, u16, string, coils):");
    println!("  requests per cycle:    {scattered_plan} (one per point without coalescing: 40)");
    println!(
        "  readings/s:            {:.0}",
        s.readings as f64 / s.seconds
    );
    let _ = child.kill();
    let _ = child.wait();
}
