//! The Modbus adapter against a real tokio-modbus server (a register bank
//! the test controls), over TCP on a free loopback port and over RTU on a
//! socat pty pair. Outcomes are checked on core's bus, after
//! normalization, and in the server's registers and request log.

#![allow(clippy::unwrap_used)] // test fixtures: a failure should stop the test loudly

mod common;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use common::*;
use fieldbridge_core::{CommandError, DeviceStatus, EventKind, PointSettings, Quality, Value};
use fieldbridge_modbus::Transport;
use fieldbridge_modbus::config::{
    DataType, EnumMap, ModbusDevice, ModbusRtuConnection, ModbusTcpConnection, Order, Parity, Table,
};
use tokio::time::Instant;

const ORDERS: [Order; 4] = [Order::ABCD, Order::CDAB, Order::BADC, Order::DCBA];

/// Registers as a device with this order sends them, written from the
/// value's big-endian bytes independently of the adapter's codec:
/// ABCD keeps them, DCBA reverses every byte, CDAB reverses the 16-bit
/// words, BADC swaps the two bytes of each word.
fn wire(be: &[u8], order: Order) -> Vec<u16> {
    let bytes: Vec<u8> = match order {
        Order::ABCD => be.to_vec(),
        Order::DCBA => be.iter().rev().copied().collect(),
        Order::CDAB => be.chunks(2).rev().flatten().copied().collect(),
        Order::BADC => be.chunks(2).flat_map(|c| [c[1], c[0]]).collect(),
    };
    bytes
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect()
}

fn typed(
    table: Table,
    address: u16,
    t: DataType,
    order: Option<Order>,
) -> fieldbridge_modbus::config::RawModbusPoint {
    let mut p = at(table, address);
    p.data_type = Some(t);
    p.order = order;
    p
}

fn tcp(server: &ModbusServer, timeout: Duration) -> Transport {
    Transport::Tcp(ModbusTcpConnection {
        address: server.addr(),
        timeout: Some(timeout),
        max_in_flight: 1,
    })
}

fn rtu(server: &ModbusServer, timeout: Duration) -> Transport {
    Transport::Rtu(ModbusRtuConnection {
        port: server.dev(),
        baud: 19200,
        data_bits: 8,
        parity: Parity::None,
        stop_bits: 1,
        timeout: Some(timeout),
        inter_request_delay: Some(Duration::from_millis(2)),
    })
}

/// Every type in every order, plus strings, bits, coils, discrete inputs,
/// enums and a scaled register, seeded into the bank and expected on the bus.
fn types_case(bank: &Bank) -> (TestDevice, HashMap<String, Value>) {
    let mut points = Vec::new();
    let mut want = HashMap::new();
    let mut next = 0u16;
    let mut seed = |bank: &Bank, table: Table, words: Vec<u16>| {
        let at = next;
        bank.regs(1, |r| match table {
            Table::Input => r.put_input(at, &words),
            _ => r.put_holding(at, &words),
        });
        next += 4;
        at
    };
    for order in ORDERS {
        let o = order.name().to_ascii_lowercase();
        let cases: Vec<(&str, DataType, Vec<u8>, Value)> = vec![
            (
                "u16",
                DataType::U16,
                0xBEEFu16.to_be_bytes().to_vec(),
                Value::Int(0xBEEF),
            ),
            (
                "i16",
                DataType::I16,
                (-1234i16).to_be_bytes().to_vec(),
                Value::Int(-1234),
            ),
            (
                "u32",
                DataType::U32,
                3_000_000_123u32.to_be_bytes().to_vec(),
                Value::Int(3_000_000_123),
            ),
            (
                "i32",
                DataType::I32,
                (-123_456_789i32).to_be_bytes().to_vec(),
                Value::Int(-123_456_789),
            ),
            (
                "u64",
                DataType::U64,
                ((1u64 << 40) + 7).to_be_bytes().to_vec(),
                Value::Int((1 << 40) + 7),
            ),
            (
                "i64",
                DataType::I64,
                (-9_000_000_000_000i64).to_be_bytes().to_vec(),
                Value::Int(-9_000_000_000_000),
            ),
            (
                "f32",
                DataType::F32,
                (-273.15f32).to_be_bytes().to_vec(),
                Value::Float(f64::from(-273.15f32)),
            ),
            (
                "f64",
                DataType::F64,
                6.022_140_76e23f64.to_be_bytes().to_vec(),
                Value::Float(6.022_140_76e23),
            ),
        ];
        for (name, t, be, value) in cases {
            let table = if name.starts_with('f') {
                Table::Input
            } else {
                Table::Holding
            };
            let address = seed(bank, table, wire(&be, order));
            let id = format!("{name}_{o}");
            points.push(point(&id, typed(table, address, t, Some(order)), plain()));
            want.insert(id, value);
        }
    }
    // "Modbus" in 4 registers, NUL padded.
    let s = seed(bank, Table::Holding, vec![0x4D6F, 0x6462, 0x7573, 0x0000]);
    let mut text = typed(Table::Holding, s, DataType::String, None);
    text.count = Some(4);
    points.push(point("text", text, plain()));
    want.insert("text".into(), Value::Text("Modbus".into()));
    // Bits 0 and 13 of one register.
    let b = seed(bank, Table::Holding, vec![0b0010_0000_0000_0001]);
    for (id, bit, on) in [("bit0", 0, true), ("bit13", 13, true), ("bit7", 7, false)] {
        let mut p = typed(Table::Holding, b, DataType::Bool, None);
        p.bit = Some(bit);
        points.push(point(id, p, plain()));
        want.insert(id.into(), Value::Bool(on));
    }
    // An enum and a scaled temperature.
    let e = seed(bank, Table::Holding, vec![2]);
    let mut mode = typed(Table::Holding, e, DataType::U16, None);
    mode.names = Some(EnumMap(
        [
            (0, "off".to_owned()),
            (1, "heat".to_owned()),
            (2, "fault".to_owned()),
        ]
        .into(),
    ));
    points.push(point("mode", mode, plain()));
    want.insert("mode".into(), Value::Text("fault".into()));
    let t = seed(bank, Table::Holding, vec![(-215i16) as u16]);
    points.push(point(
        "temperature",
        typed(Table::Holding, t, DataType::I16, None),
        PointSettings {
            scale: Some(0.1),
            offset: Some(1.0),
            ..plain()
        },
    ));
    want.insert("temperature".into(), Value::Float(-215.0 * 0.1 + 1.0));
    // Coils and discrete inputs.
    bank.regs(1, |r| {
        r.coils.insert(3, true);
        r.discrete.insert(9, true);
    });
    points.push(point("coil3", at(Table::Coil, 3), plain()));
    points.push(point("coil4", at(Table::Coil, 4), plain()));
    points.push(point("discrete9", at(Table::Discrete, 9), plain()));
    want.insert("coil3".into(), Value::Bool(true));
    want.insert("coil4".into(), Value::Bool(false));
    want.insert("discrete9".into(), Value::Bool(true));
    // A counter the "device" changes over time.
    points.push(point("counter", at(Table::Input, 1000), plain()));
    let device = TestDevice {
        id: "meter",
        config: ModbusDevice::default(),
        poll: Duration::from_millis(100),
        points,
    };
    (device, want)
}

async fn every_type_and_order_arrives(transport: impl FnOnce(&Bank) -> Transport, bank: Bank) {
    let (device, want) = types_case(&bank);
    let mut rig = Rig::start(transport(&bank), vec![device]);
    let names: Vec<&str> = want.keys().map(String::as_str).collect();
    let got = rig.latest_good("meter", &names).await;
    for (k, v) in &want {
        assert_eq!(got.get(k), Some(v), "point {k}");
    }
    // Values that change on the device change on the bus.
    let ticker = {
        let bank = bank.clone();
        tokio::spawn(async move {
            for i in 1..u16::MAX {
                bank.regs(1, |r| r.input.insert(1000, i));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let (first, _) = rig
        .reading_where("meter", "counter", |v, q| {
            q.is_good() && v != &Value::Int(0)
        })
        .await;
    let Value::Int(first) = first else {
        panic!("{first:?}")
    };
    rig.reading_where(
        "meter",
        "counter",
        |v, _| matches!(v, Value::Int(i) if *i > first),
    )
    .await;
    ticker.abort();
}

#[tokio::test]
async fn tcp_every_type_and_order_reaches_the_bus() {
    let bank = Bank::with_units(&[1]);
    let server = ModbusServer::tcp(bank.clone()).await.unwrap();
    every_type_and_order_arrives(|_| tcp(&server, Duration::from_secs(1)), bank).await;
}

#[tokio::test]
async fn rtu_every_type_and_order_reaches_the_bus() {
    let bank = Bank::with_units(&[1]);
    let server = ModbusServer::rtu(bank.clone()).await.unwrap();
    every_type_and_order_arrives(|_| rtu(&server, Duration::from_secs(1)), bank).await;
}

#[tokio::test]
async fn tcp_a_scattered_40_point_map_costs_six_requests_per_cycle() {
    let bank = Bank::with_units(&[1]);
    let server = ModbusServer::tcp(bank.clone()).await.unwrap();
    let mut points = Vec::new();
    for i in 0..12 {
        points.push(point(
            &format!("v{i}"),
            typed(Table::Input, i * 2, DataType::F32, None),
            plain(),
        ));
    }
    for i in 0..7 {
        points.push(point(
            &format!("e{i}"),
            typed(Table::Input, 100 + i * 4, DataType::U64, None),
            plain(),
        ));
    }
    points.push(point(
        "hz",
        typed(Table::Input, 140, DataType::F32, None),
        plain(),
    ));
    points.push(point(
        "pf",
        typed(Table::Input, 142, DataType::F32, None),
        plain(),
    ));
    for i in 0..10 {
        points.push(point(
            &format!("s{i}"),
            at(Table::Holding, 1000 + i * 3),
            plain(),
        ));
    }
    let mut serial = typed(Table::Holding, 5000, DataType::String, None);
    serial.count = Some(8);
    points.push(point("serial", serial, plain()));
    for i in 0..8 {
        points.push(point(&format!("relay{i}"), at(Table::Coil, i), plain()));
    }
    assert_eq!(points.len(), 40);
    let mut rig = Rig::start(
        tcp(&server, Duration::from_secs(1)),
        vec![TestDevice {
            id: "meter",
            config: ModbusDevice::default(),
            poll: Duration::from_millis(50),
            points,
        }],
    );
    rig.status_where("meter", |s| *s == DeviceStatus::Online)
        .await;
    let start = bank.log().len();
    let log = bank
        .wait_log("ten cycles", WAIT, |l| l.len() >= start + 60)
        .await;
    let mut count: HashMap<(u8, u16, u16), usize> = HashMap::new();
    for s in &log[start..start + 60] {
        *count.entry((s.function, s.address, s.count)).or_default() += 1;
    }
    let expected: BTreeSet<(u8, u16, u16)> = [
        (1, 0, 8),
        (4, 0, 24),
        (4, 100, 28),
        (4, 140, 4),
        (3, 1000, 28),
        (3, 5000, 8),
    ]
    .into();
    assert_eq!(
        count.keys().copied().collect::<BTreeSet<_>>(),
        expected,
        "{count:?}"
    );
    for (k, n) in &count {
        assert!((9..=11).contains(n), "{k:?} sent {n} times in 60 requests");
    }
}

#[tokio::test]
async fn tcp_one_poll_cycle_is_one_event_with_every_point() {
    let bank = Bank::with_units(&[1]);
    bank.regs(1, |r| {
        r.put_holding(0, &[7]);
        r.put_input(100, &[8]);
        r.coils.insert(5, true);
    });
    let server = ModbusServer::tcp(bank.clone()).await.unwrap();
    let mut rig = Rig::start(
        tcp(&server, Duration::from_secs(1)),
        vec![TestDevice {
            id: "plc",
            config: ModbusDevice::default(),
            // One cycle only, then none for an hour.
            poll: Duration::from_secs(3600),
            // Three tables: three requests in one cycle.
            points: vec![
                point("h", at(Table::Holding, 0), plain()),
                point("i", at(Table::Input, 100), plain()),
                point("c", at(Table::Coil, 5), plain()),
            ],
        }],
    );
    let (device, kind) = rig.next().await;
    assert_eq!(device, "plc");
    let mut got: Vec<(String, Value)> = readings(kind)
        .into_iter()
        .map(|r| (r.point.to_string(), r.value))
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        [
            ("c".to_owned(), Value::Bool(true)),
            ("h".to_owned(), Value::Int(7)),
            ("i".to_owned(), Value::Int(8)),
        ]
    );
    assert_eq!(
        bank.log().len(),
        3,
        "one cycle: the event came after its three requests"
    );
    // Each request counted as answered, with its latency, before the event.
    let t = rig.sub.telemetry();
    let ok = [("connection", "field"), ("outcome", "ok")];
    assert_eq!(t.sum("requests_total", ok), 3.0);
    let timed = [("connection", "field")];
    assert_eq!(t.sum("request_duration_seconds_count", timed), 3.0);
}

#[tokio::test]
async fn tcp_an_exception_marks_only_the_refused_point_bad() {
    let bank = Bank::with_units(&[1]);
    bank.regs(1, |r| r.put_holding(0, &[10, 11, 12]));
    let server = ModbusServer::tcp(bank.clone()).await.unwrap();
    let points = vec![
        point("a", at(Table::Holding, 0), plain()),
        point("b", at(Table::Holding, 1), plain()),
        point("c", at(Table::Holding, 2), plain()),
    ];
    let mut rig = Rig::start(
        tcp(&server, Duration::from_secs(1)),
        vec![TestDevice {
            id: "plc",
            config: ModbusDevice::default(),
            poll: Duration::from_millis(50),
            points,
        }],
    );
    let got = rig.latest_good("plc", &["a", "b", "c"]).await;
    assert_eq!(got["b"], Value::Int(11));
    // Online follows the first readings; from then on it must not change.
    rig.status_where("plc", |s| *s == DeviceStatus::Online)
        .await;
    // Register 1 fails; its neighbours change value.
    bank.with(|s| {
        s.faulty
            .insert((1, fieldbridge_modbus_testserver::Table::Holding, 1))
    });
    bank.regs(1, |r| r.put_holding(0, &[20, 21, 22]));
    let mut bad = None;
    let mut fresh = HashMap::new();
    let deadline = Instant::now() + WAIT;
    while bad.is_none() || fresh.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "within {WAIT:?}: b bad {bad:?}, fresh neighbours {fresh:?}"
        );
        let readings = match rig.next().await {
            (_, EventKind::Readings(samples)) => samples,
            (_, other) => panic!("expected readings, got {other:?}"),
        };
        let points: Vec<&str> = readings.iter().map(|s| s.reading.point.as_str()).collect();
        for r in readings.iter().map(|s| &s.reading) {
            match (r.point.as_str(), &r.quality) {
                ("b", Quality::Bad { reason }) => {
                    // Reported with what else the same cycle read.
                    assert_eq!(points, ["a", "b", "c"]);
                    bad = Some(reason.clone());
                }
                ("b", Quality::Good) => {}
                (p, Quality::Good) if r.value != Value::Int(10) && r.value != Value::Int(12) => {
                    fresh.insert(p.to_owned(), r.value.clone());
                }
                _ => {}
            }
        }
    }
    let bad = bad.unwrap();
    assert!(bad.to_lowercase().contains("illegal data address"), "{bad}");
    assert_eq!(fresh["a"], Value::Int(20));
    assert_eq!(fresh["c"], Value::Int(22));
    // The merged read was split: a and c are now read on their own.
    let log = bank.log();
    assert!(
        log.iter()
            .any(|s| (s.function, s.address, s.count) == (3, 2, 1))
    );
    // The merged read's refusal and b's own are counted as exceptions.
    let exceptions = [("connection", "field"), ("outcome", "exception")];
    assert!(rig.sub.telemetry().sum("requests_total", exceptions) >= 2.0);
}

#[tokio::test]
async fn tcp_a_silent_server_takes_the_device_offline_and_it_comes_back() {
    let bank = Bank::with_units(&[1]);
    let server = ModbusServer::tcp(bank.clone()).await.unwrap();
    let mut rig = Rig::start(
        tcp(&server, Duration::from_millis(100)),
        vec![TestDevice {
            id: "plc",
            config: ModbusDevice::default(),
            poll: Duration::from_millis(50),
            points: vec![point("a", at(Table::Holding, 0), plain())],
        }],
    );
    rig.status_where("plc", |s| *s == DeviceStatus::Online)
        .await;
    bank.with(|s| s.silent = true);
    let offline = rig
        .status_where("plc", |s| matches!(s, DeviceStatus::Offline { .. }))
        .await;
    assert!(
        offline.to_string().contains("no answer within 100ms"),
        "{offline}"
    );
    let timeouts = [("connection", "field"), ("outcome", "timeout")];
    assert!(rig.sub.telemetry().sum("requests_total", timeouts) >= 1.0);
    bank.with(|s| s.silent = false);
    bank.regs(1, |r| r.put_holding(0, &[77]));
    rig.status_where("plc", |s| *s == DeviceStatus::Online)
        .await;
    rig.reading_where("plc", "a", |v, q| q.is_good() && *v == Value::Int(77))
        .await;
}

#[tokio::test]
async fn tcp_a_server_restart_is_survived() {
    let bank = Bank::with_units(&[1]);
    let mut server = ModbusServer::tcp(bank.clone()).await.unwrap();
    let mut rig = Rig::start(
        tcp(&server, Duration::from_millis(200)),
        vec![TestDevice {
            id: "plc",
            config: ModbusDevice::default(),
            poll: Duration::from_millis(50),
            points: vec![point("a", at(Table::Holding, 0), plain())],
        }],
    );
    rig.status_where("plc", |s| *s == DeviceStatus::Online)
        .await;
    server.stop().await;
    let offline = rig
        .status_where("plc", |s| matches!(s, DeviceStatus::Offline { .. }))
        .await;
    assert!(offline.to_string().contains("unit 1 on field"), "{offline}");
    let field = [("connection", "field")];
    assert!(rig.sub.telemetry().sum("reconnects_total", field) >= 1.0);
    bank.regs(1, |r| r.put_holding(0, &[5]));
    server.restart().await.unwrap();
    rig.status_where("plc", |s| *s == DeviceStatus::Online)
        .await;
    rig.reading_where("plc", "a", |v, q| q.is_good() && *v == Value::Int(5))
        .await;
}

/// A reply later than the timeout (but within the wait that follows it)
/// must never be taken as the answer to the next request.
async fn a_late_reply_is_never_the_next_answer(transport: Transport, bank: Bank) {
    bank.regs(1, |r| r.put_holding(0, &[1234]));
    let mut rig = Rig::start(
        transport,
        vec![TestDevice {
            id: "plc",
            config: ModbusDevice::default(),
            poll: Duration::from_millis(20),
            points: vec![point("a", at(Table::Holding, 0), plain())],
        }],
    );
    rig.reading_where("plc", "a", |v, _| *v == Value::Int(1234))
        .await;
    let before = bank.log().len();
    bank.with(|s| s.late = Some((1, Duration::from_millis(300), 0xDEAD)));
    // The value changes ten times from now on: each new value must arrive
    // as itself (core publishes only changes), never as the late reply.
    for want in 1..=10u16 {
        bank.regs(1, |r| r.put_holding(0, &[want]));
        let deadline = Instant::now() + WAIT;
        loop {
            assert!(
                Instant::now() < deadline,
                "{want} was not read within {WAIT:?} after the late reply"
            );
            let (_, kind) = rig.next().await;
            let a = readings(kind).into_iter().find(|r| r.point.as_str() == "a");
            let Some(a) = a else { continue };
            assert_ne!(
                a.value,
                Value::Int(0xDEAD),
                "the late reply was taken as an answer"
            );
            if a.quality.is_good() && a.value == Value::Int(i64::from(want)) {
                break;
            }
        }
    }
    assert!(bank.log().len() > before + 10);
}

#[tokio::test]
async fn tcp_a_late_reply_is_never_the_next_answer() {
    let bank = Bank::with_units(&[1]);
    let server = ModbusServer::tcp(bank.clone()).await.unwrap();
    a_late_reply_is_never_the_next_answer(tcp(&server, Duration::from_millis(200)), bank).await;
}

#[tokio::test]
async fn rtu_a_late_reply_is_never_the_next_answer() {
    let bank = Bank::with_units(&[1]);
    let server = ModbusServer::rtu(bank.clone()).await.unwrap();
    a_late_reply_is_never_the_next_answer(rtu(&server, Duration::from_millis(200)), bank).await;
}

#[tokio::test]
async fn rtu_a_dead_device_does_not_starve_its_neighbour_on_the_bus() {
    // Unit 2 never answers.
    let bank = Bank::with_units(&[1]);
    let server = ModbusServer::rtu(bank.clone()).await.unwrap();
    let poll = Duration::from_millis(200);
    let device = |id: &'static str, unit: u8| TestDevice {
        id,
        config: ModbusDevice {
            unit,
            ..ModbusDevice::default()
        },
        poll,
        points: vec![
            point("a", at(Table::Holding, 0), plain()),
            point("b", typed(Table::Input, 10, DataType::F32, None), plain()),
        ],
    };
    let start = Instant::now();
    let mut rig = Rig::start(
        rtu(&server, Duration::from_millis(100)),
        vec![device("alive", 1), device("dead", 2)],
    );
    let polls = 15;
    let log = bank
        .wait_log("15 polls of unit 1", WAIT, |l| {
            l.iter().filter(|s| s.unit == 1 && s.function == 3).count() >= polls
        })
        .await;
    let elapsed = start.elapsed();
    assert!(
        elapsed <= poll * 2 * polls as u32,
        "{polls} polls of the live device took {elapsed:?} (poll {poll:?})"
    );
    assert!(log.iter().any(|s| s.unit == 2), "the dead device was tried");
    let offline = rig
        .status_where("dead", |s| matches!(s, DeviceStatus::Offline { .. }))
        .await;
    assert!(offline.to_string().contains("unit 2"), "{offline}");
    // Meanwhile the live one is online.
    rig.reading_where("alive", "a", |_, q| q.is_good()).await;
}

#[tokio::test]
async fn rtu_devices_on_one_bus_each_keep_their_own_poll_period() {
    let bank = Bank::with_units(&[1, 2]);
    let server = ModbusServer::rtu(bank.clone()).await.unwrap();
    let device = |id: &'static str, unit: u8, poll: u64| TestDevice {
        id,
        config: ModbusDevice {
            unit,
            ..ModbusDevice::default()
        },
        poll: Duration::from_millis(poll),
        points: vec![point("a", at(Table::Holding, 0), plain())],
    };
    let _rig = Rig::start(
        rtu(&server, Duration::from_millis(300)),
        vec![device("fast", 1, 100), device("slow", 2, 400)],
    );
    let log = bank
        .wait_log("24 polls of the fast device", WAIT, |l| {
            l.iter().filter(|s| s.unit == 1).count() >= 24
        })
        .await;
    let slow = log.iter().filter(|s| s.unit == 2).count();
    // 24 fast polls take about 2.3s: 6 or 7 slow ones.
    assert!(
        (5..=8).contains(&slow),
        "the slow device was polled {slow} times"
    );
    // And the fast device is not polled faster than its own period.
    let first = log[0].at;
    let span = log.last().unwrap().at.duration_since(first);
    assert!(
        span >= Duration::from_millis(2200),
        "24 polls at 100ms in {span:?}"
    );
}

#[tokio::test]
async fn rtu_keeps_the_inter_request_delay_between_requests() {
    let bank = Bank::with_units(&[1, 2]);
    let server = ModbusServer::rtu(bank.clone()).await.unwrap();
    let device = |id: &'static str, unit: u8| TestDevice {
        id,
        config: ModbusDevice {
            unit,
            ..ModbusDevice::default()
        },
        // Both always due: only the bus paces them.
        poll: Duration::from_millis(1),
        points: vec![point("a", at(Table::Holding, 0), plain())],
    };
    let mut transport = rtu(&server, Duration::from_millis(500));
    if let Transport::Rtu(r) = &mut transport {
        r.inter_request_delay = Some(Duration::from_millis(40));
    }
    let _rig = Rig::start(transport, vec![device("one", 1), device("two", 2)]);
    let log = bank.wait_log("12 requests", WAIT, |l| l.len() >= 12).await;
    for w in log.windows(2) {
        let gap = w[1].at.duration_since(w[0].at);
        assert!(gap >= Duration::from_millis(38), "requests {gap:?} apart");
    }
    // Fair: both units were served.
    assert!(log.iter().filter(|s| s.unit == 1).count() >= 5);
    assert!(log.iter().filter(|s| s.unit == 2).count() >= 5);
}

#[tokio::test]
async fn tcp_writes_change_the_servers_registers_and_are_published_at_once() {
    let bank = Bank::with_units(&[1]);
    bank.regs(1, |r| r.put_holding(30, &[0b1000_0001]));
    let server = ModbusServer::tcp(bank.clone()).await.unwrap();
    let writable = || PointSettings {
        writable: true,
        ..plain()
    };
    let setpoint = typed(Table::Holding, 10, DataType::U16, None);
    let mut flag = typed(Table::Holding, 30, DataType::Bool, None);
    flag.bit = Some(2);
    let mut mode = typed(Table::Holding, 31, DataType::U16, None);
    mode.names = Some(EnumMap(
        [
            (0, "off".to_owned()),
            (1, "heat".to_owned()),
            (2, "fault".to_owned()),
        ]
        .into(),
    ));
    let mut single = typed(Table::Holding, 40, DataType::I16, None);
    single.write_multiple = true;
    let points = vec![
        point(
            "setpoint",
            setpoint,
            PointSettings {
                scale: Some(0.1),
                min: Some(5.0),
                max: Some(80.0),
                ..writable()
            },
        ),
        point(
            "limit",
            typed(Table::Holding, 20, DataType::F32, Some(Order::CDAB)),
            writable(),
        ),
        point("pump", at(Table::Coil, 3), writable()),
        point("flag", flag, writable()),
        point("mode", mode, writable()),
        point("single", single, writable()),
        point("readonly", at(Table::Holding, 50), plain()),
    ];
    let mut rig = Rig::start(
        tcp(&server, Duration::from_secs(1)),
        vec![TestDevice {
            id: "boiler",
            config: ModbusDevice::default(),
            // Slow polls: a published value after a write comes from the write.
            poll: Duration::from_secs(3600),
            points,
        }],
    );
    rig.status_where("boiler", |s| *s == DeviceStatus::Online)
        .await;
    let fc = |bank: &Bank, address: u16| -> Vec<u8> {
        bank.log()
            .iter()
            .filter(|s| s.address == address && s.function >= 5)
            .map(|s| s.function)
            .collect()
    };

    let r = &rig.router;
    assert_eq!(
        r.write_text("boiler", "setpoint", "21.5").await,
        Ok(Value::Float(21.5))
    );
    assert_eq!(bank.regs(1, |r| r.holding[&10]), 215);
    assert_eq!(fc(&bank, 10), vec![6]);

    assert_eq!(
        r.write_text("boiler", "limit", "-12.25").await,
        Ok(Value::Float(-12.25))
    );
    let want = wire(&(-12.25f32).to_be_bytes(), Order::CDAB);
    assert_eq!(bank.regs(1, |r| vec![r.holding[&20], r.holding[&21]]), want);
    assert_eq!(fc(&bank, 20), vec![16]);

    assert_eq!(
        r.write_text("boiler", "pump", "on").await,
        Ok(Value::Bool(true))
    );
    assert!(bank.regs(1, |r| r.coils[&3]));
    assert_eq!(fc(&bank, 3), vec![5]);

    assert_eq!(
        r.write_text("boiler", "flag", "on").await,
        Ok(Value::Bool(true))
    );
    assert_eq!(
        bank.regs(1, |r| r.holding[&30]),
        0b1000_0101,
        "other bits kept"
    );

    assert_eq!(
        r.write_text("boiler", "mode", "fault").await,
        Ok(Value::Text("fault".into()))
    );
    assert_eq!(bank.regs(1, |r| r.holding[&31]), 2);
    assert!(r.write_text("boiler", "mode", "warm").await.is_err());

    assert_eq!(
        r.write_text("boiler", "single", "-3").await,
        Ok(Value::Int(-3))
    );
    assert_eq!(bank.regs(1, |r| r.holding[&40]), 0xFFFD);
    assert_eq!(fc(&bank, 40), vec![16]);

    // Out of range and read-only writes never reach the device.
    let err = r.write_text("boiler", "setpoint", "95").await.unwrap_err();
    assert!(err.to_string().contains("above the maximum 80"), "{err}");
    assert_eq!(bank.regs(1, |r| r.holding[&10]), 215);
    assert!(matches!(
        r.write_text("boiler", "readonly", "1").await,
        Err(CommandError::NotWritable { .. })
    ));
    assert_eq!(fc(&bank, 50), Vec::<u8>::new());

    // Each write was published at once (the poll period is an hour).
    for (p, v) in [
        ("setpoint", Value::Float(21.5)),
        ("limit", Value::Float(-12.25)),
        ("pump", Value::Bool(true)),
        ("flag", Value::Bool(true)),
        ("mode", Value::Text("fault".into())),
        ("single", Value::Int(-3)),
    ] {
        let want = v.clone();
        rig.reading_where("boiler", p, move |got, q| q.is_good() && *got == want)
            .await;
    }

    // A device that keeps another value than the one written: the write
    // is reported as failed, and what the device holds is published.
    bank.with(|s| s.clamp = Some((10, 500)));
    let err = rig
        .router
        .write_text("boiler", "setpoint", "75")
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("wrote 75, but the device reads back 50"),
        "{err}"
    );
    rig.reading_where("boiler", "setpoint", |v, q| {
        q.is_good() && *v == Value::Float(50.0)
    })
    .await;
}

#[tokio::test]
async fn rtu_writes_change_the_servers_registers() {
    let bank = Bank::with_units(&[4]);
    let server = ModbusServer::rtu(bank.clone()).await.unwrap();
    let writable = PointSettings {
        writable: true,
        ..plain()
    };
    let mut rig = Rig::start(
        rtu(&server, Duration::from_millis(500)),
        vec![TestDevice {
            id: "drive",
            config: ModbusDevice {
                unit: 4,
                ..ModbusDevice::default()
            },
            poll: Duration::from_millis(200),
            points: vec![
                point(
                    "speed",
                    typed(Table::Holding, 7, DataType::U32, Some(Order::DCBA)),
                    writable.clone(),
                ),
                point("run", at(Table::Coil, 0), writable.clone()),
                point(
                    "brake",
                    {
                        let mut p = at(Table::Coil, 1);
                        p.write_multiple = true;
                        p
                    },
                    writable,
                ),
            ],
        }],
    );
    rig.status_where("drive", |s| *s == DeviceStatus::Online)
        .await;
    assert_eq!(
        rig.router.write_text("drive", "speed", "1500").await,
        Ok(Value::Int(1500))
    );
    assert_eq!(
        bank.regs(4, |r| vec![r.holding[&7], r.holding[&8]]),
        wire(&1500u32.to_be_bytes(), Order::DCBA)
    );
    assert_eq!(
        rig.router.write_text("drive", "run", "on").await,
        Ok(Value::Bool(true))
    );
    assert!(bank.regs(4, |r| r.coils[&0]));
    assert_eq!(
        rig.router.write_text("drive", "brake", "on").await,
        Ok(Value::Bool(true))
    );
    assert!(bank.regs(4, |r| r.coils[&1]));
    let functions: Vec<u8> = bank
        .log()
        .iter()
        .filter(|s| s.function >= 5)
        .map(|s| s.function)
        .collect();
    assert_eq!(functions, vec![16, 5, 15]);
}

/// A TCP gateway serving two unit ids, each answer taking 150ms: with
/// `max_in_flight: 2` both are asked at once, on two connections.
#[tokio::test]
async fn tcp_max_in_flight_asks_two_units_at_once() {
    let bank = Bank::with_units(&[1, 2]);
    bank.with(|s| s.delay = Duration::from_millis(150));
    let server = ModbusServer::tcp(bank.clone()).await.unwrap();
    let device = |id: &'static str, unit: u8| TestDevice {
        id,
        config: ModbusDevice {
            unit,
            ..ModbusDevice::default()
        },
        poll: Duration::from_millis(50),
        points: vec![point("a", at(Table::Holding, 0), plain())],
    };
    let _rig = Rig::start(
        Transport::Tcp(ModbusTcpConnection {
            address: server.addr(),
            timeout: Some(Duration::from_secs(1)),
            max_in_flight: 2,
        }),
        vec![device("one", 1), device("two", 2)],
    );
    let log = bank.wait_log("ten requests", WAIT, |l| l.len() >= 10).await;
    // Requests to the two units arrive in pairs, well within one answer's time.
    let close_pairs = log
        .windows(2)
        .filter(|w| {
            w[0].unit != w[1].unit && w[1].at.duration_since(w[0].at) < Duration::from_millis(75)
        })
        .count();
    assert!(close_pairs >= 3, "requests were not concurrent: {log:?}");
}

#[tokio::test]
async fn an_unreachable_endpoint_or_missing_port_is_offline_with_the_reason() {
    // A port nobody listens on: bind one, note it, close it.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let device = || TestDevice {
        id: "plc",
        config: ModbusDevice::default(),
        poll: Duration::from_millis(50),
        points: vec![point("a", at(Table::Holding, 0), plain())],
    };
    let mut rig = Rig::start(
        Transport::Tcp(ModbusTcpConnection {
            address: addr,
            timeout: Some(Duration::from_millis(200)),
            max_in_flight: 1,
        }),
        vec![device()],
    );
    let s = rig
        .status_where("plc", |s| matches!(s, DeviceStatus::Offline { .. }))
        .await;
    assert!(s.to_string().contains(&addr.to_string()), "{s}");
    assert!(s.to_string().to_lowercase().contains("refused"), "{s}");
    let missing = tempfile::tempdir().unwrap().path().join("ttyUSB9");
    let mut rig = Rig::start(
        Transport::Rtu(ModbusRtuConnection {
            port: missing.clone(),
            baud: 9600,
            data_bits: 8,
            parity: Parity::Even,
            stop_bits: 1,
            timeout: Some(Duration::from_millis(200)),
            inter_request_delay: None,
        }),
        vec![device()],
    );
    let s = rig
        .status_where("plc", |s| matches!(s, DeviceStatus::Offline { .. }))
        .await;
    assert!(s.to_string().contains("ttyUSB9"), "{s}");
}

#[tokio::test]
async fn scan_reads_a_long_range_in_chunks_and_shows_every_register() {
    use fieldbridge_modbus::scan::{Scanned, read_range, render};
    use fieldbridge_modbus::transport::{Link, TcpLink};
    let bank = Bank::with_units(&[9]);
    let words: Vec<u16> = (0..300).map(|i| 1000 + i).collect();
    bank.regs(9, |r| r.put_input(50, &words));
    let server = ModbusServer::tcp(bank.clone()).await.unwrap();
    let mut link = Link::Tcp(TcpLink::new(&ModbusTcpConnection {
        address: server.addr(),
        timeout: Some(Duration::from_secs(1)),
        max_in_flight: 1,
    }));
    let scanned = tokio::time::timeout(WAIT, read_range(&mut link, 9, Table::Input, 50, 300))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(scanned, Scanned::Words(words));
    let reads: Vec<(u16, u16)> = bank.log().iter().map(|s| (s.address, s.count)).collect();
    assert_eq!(reads, vec![(50, 125), (175, 125), (300, 50)]);
    let out = render(Table::Input, 50, &scanned);
    assert_eq!(out.lines().count(), 301);
    assert!(
        out.lines()
            .nth(1)
            .unwrap()
            .starts_with("    50  0x03E8   1000")
    );
    // A unit that does not answer is reported, not waited for forever.
    let err = tokio::time::timeout(WAIT, read_range(&mut link, 3, Table::Holding, 0, 1))
        .await
        .unwrap()
        .unwrap_err();
    assert!(err.to_string().contains("no answer"), "{err}");
}

/// A TCP "device" that answers every request with the wrong transaction
/// id: tokio-modbus reports a header mismatch, and the adapter must drop
/// the connection (it would stay off by one otherwise) and reconnect.
#[tokio::test]
async fn tcp_a_header_mismatch_reopens_the_connection() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let server = {
        let accepted = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    // FC 3 requests: 7 bytes of MBAP header, 5 of PDU.
                    let mut req = [0u8; 12];
                    while s.read_exact(&mut req).await.is_ok() {
                        let tid = u16::from_be_bytes([req[0], req[1]]).wrapping_add(1);
                        let [t0, t1] = tid.to_be_bytes();
                        let answer = [t0, t1, 0, 0, 0, 5, req[6], 3, 2, 0, 42];
                        if s.write_all(&answer).await.is_err() {
                            return;
                        }
                    }
                });
            }
        })
    };
    let mut rig = Rig::start(
        Transport::Tcp(ModbusTcpConnection {
            address: addr,
            timeout: Some(Duration::from_millis(500)),
            max_in_flight: 1,
        }),
        vec![TestDevice {
            id: "plc",
            config: ModbusDevice::default(),
            poll: Duration::from_millis(50),
            points: vec![point("a", at(Table::Holding, 0), plain())],
        }],
    );
    let s = rig
        .status_where("plc", |s| matches!(s, DeviceStatus::Offline { .. }))
        .await;
    assert!(s.to_string().contains("protocol error"), "{s}");
    let deadline = Instant::now() + WAIT;
    while accepted.load(Ordering::SeqCst) < 3 {
        assert!(Instant::now() < deadline, "the connection was not reopened");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.abort();
}

/// A dead unit (nothing answers it) is offline after two failed polls,
/// then asked again after a delay that doubles (±25%) up to 30 s and stays
/// there. Time is tokio's paused clock: minutes pass in milliseconds.
#[tokio::test(start_paused = true)]
async fn a_dead_device_is_retried_ever_later_up_to_30_s() {
    let bank = Bank::with_units(&[]);
    let server = ModbusServer::tcp(bank.clone()).await.unwrap();
    let timeout = Duration::from_millis(100);
    let mut rig = Rig::start(
        Transport::Tcp(ModbusTcpConnection {
            address: server.addr(),
            timeout: Some(timeout),
            max_in_flight: 1,
        }),
        vec![TestDevice {
            id: "plc",
            config: ModbusDevice::default(),
            poll: Duration::from_millis(100),
            points: vec![point("a", at(Table::Holding, 0), plain())],
        }],
    );
    rig.status_where("plc", |s| matches!(s, DeviceStatus::Offline { .. }))
        .await;
    let offline_at = Instant::now();
    // Ten minutes of the paused clock, or 30 s of real time.
    let wall = std::time::Instant::now();
    while Instant::now() < offline_at + Duration::from_secs(600) {
        assert!(
            wall.elapsed() < Duration::from_secs(30),
            "the paused clock did not reach ten minutes; requests: {:?}",
            bank.log().len()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let asked: Vec<Instant> = bank
        .log()
        .iter()
        .map(|s| s.at)
        .filter(|at| *at >= offline_at)
        .collect();
    // Request to request: the delay, then the request's own timeout.
    let delays: Vec<f64> = asked
        .windows(2)
        .map(|w| (w[1] - w[0]).saturating_sub(timeout).as_secs_f64())
        .collect();
    let shown = format!("{delays:.2?}");
    const CAP_FLOOR: f64 = 22.3;
    assert!(delays.len() >= 10, "too few retries: {shown}");
    // Growing: doubling with ±25% jitter, each one is longer than the
    // last until they reach the cap...
    // At the cap a delay is 30 s less its jitter, at least 22.5 s; as
    // measured here a little less (22.40 s was seen), as below.
    let capped = delays
        .iter()
        .position(|d| *d >= CAP_FLOOR)
        .unwrap_or_else(|| panic!("never near 30 s: {shown}"));
    assert!(capped >= 5, "too fast to the cap: {shown}");
    for w in delays[..=capped].windows(2) {
        assert!(w[1] > w[0] * 1.1, "not growing: {shown}");
    }
    // ...and never longer than 30 s, however long the device stays dead.
    for d in &delays[capped..] {
        assert!(
            (CAP_FLOOR..=30.05).contains(d),
            "{d:.2} s, beyond the cap: {shown}"
        );
    }
    assert!(
        delays.len() - capped >= 10,
        "not enough retries at the cap: {shown}"
    );
}
