//! End-to-end: Modbus devices (a real tokio-modbus server in this process,
//! over TCP on loopback and over RTU on a socat pty pair) through the real
//! gateway binary and a real Prosody / ejabberd, checked by a real XMPP
//! client: pubsub readings, presence, chat and ad-hoc writes.
//!
//! The register words are computed here from the values' own bytes
//! (`f32::to_be_bytes` and friends) and arranged in each byte/word order by
//! a function of this file, not by the gateway's codec.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use fieldbridge_e2e::client::{
    XmppUser, control_set, el, error_condition, is_presence, status_text, with_child, xml,
};
use fieldbridge_e2e::gateway::{Gateway, Setup};
use fieldbridge_e2e::pubsub::{self, Field, next_fields, subscribe};
use fieldbridge_e2e::server::{Server, ServerKind};
use fieldbridge_modbus_testserver::{Bank, ModbusServer, Seen};
use minidom::Element;
use tokio::time::Instant;

const WAIT: Duration = Duration::from_secs(15);

/// Byte and word order, as a device's manual names them: the letters are
/// the value's bytes from the most significant (`A`) in the order they
/// travel. For 64-bit values the word swap reverses all four registers.
#[derive(Debug, Clone, Copy)]
#[allow(clippy::upper_case_acronyms)] // as the manuals and gateway.yaml spell them
enum Order {
    ABCD,
    CDAB,
    BADC,
    DCBA,
}

/// The registers that carry a value whose big-endian bytes are `be`.
fn regs(be: &[u8], order: Order) -> Vec<u16> {
    let mut words: Vec<[u8; 2]> = be.chunks(2).map(|c| [c[0], c[1]]).collect();
    if matches!(order, Order::BADC | Order::DCBA) {
        for w in &mut words {
            w.swap(0, 1);
        }
    }
    if matches!(order, Order::CDAB | Order::DCBA) {
        words.reverse();
    }
    words.into_iter().map(u16::from_be_bytes).collect()
}

#[test]
fn the_orders_of_this_file_are_the_manuals_orders() {
    let v = 0x1122_3344_u32.to_be_bytes();
    assert_eq!(regs(&v, Order::ABCD), [0x1122, 0x3344]);
    assert_eq!(regs(&v, Order::CDAB), [0x3344, 0x1122]);
    assert_eq!(regs(&v, Order::BADC), [0x2211, 0x4433]);
    assert_eq!(regs(&v, Order::DCBA), [0x4433, 0x2211]);
    let le: Vec<u16> = 1.5_f32
        .to_le_bytes()
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    assert_eq!(regs(&1.5_f32.to_be_bytes(), Order::DCBA), le);
    let v = 0x1122_3344_5566_7788_u64.to_be_bytes();
    assert_eq!(regs(&v, Order::CDAB), [0x7788, 0x5566, 0x3344, 0x1122]);
}

/// A string in `count` registers, two characters each, NUL-padded.
fn text_regs(s: &str, count: usize) -> Vec<u16> {
    let mut bytes = s.as_bytes().to_vec();
    assert!(bytes.len() <= count * 2);
    bytes.resize(count * 2, 0);
    regs(&bytes, Order::ABCD)
}

/// Where a value sits in the bank.
#[derive(Debug, Clone)]
enum Raw {
    Holding(u16, Vec<u16>),
    Input(u16, Vec<u16>),
    Coil(u16, bool),
    Discrete(u16, bool),
}

impl Raw {
    fn load(&self, bank: &Bank) {
        match self {
            Raw::Holding(a, w) => bank.set_holding(*a, w),
            Raw::Input(a, w) => bank.set_input(*a, w),
            Raw::Coil(a, on) => bank.set_coil(*a, *on),
            Raw::Discrete(a, on) => bank.set_discrete(*a, *on),
        }
    }
}

/// One point: its line in gateway.yaml, and two rounds of (what the bank
/// holds, what a subscriber must read).
struct Case {
    point: &'static str,
    yaml: &'static str,
    rounds: [(Raw, Field); 2],
}

fn numeric(point: &str, value: &str, unit: Option<&str>) -> Field {
    field("numeric", point, value, unit)
}

fn field(kind: &str, name: &str, value: &str, unit: Option<&str>) -> Field {
    Field {
        kind: kind.into(),
        name: name.into(),
        value: value.into(),
        unit: unit.map(str::to_owned),
        invalid: false,
    }
}

/// Every type and order on a TCP device, with values chosen to be exact
/// in binary so that the text a subscriber reads is known.
fn every_type() -> Vec<Case> {
    use Order::*;
    let h = Raw::Holding;
    let i = Raw::Input;
    let n = numeric;
    vec![
        Case {
            point: "h_i16",
            yaml: "{ holding: 0, type: i16 }",
            rounds: [
                (h(0, vec![(-1234_i16) as u16]), n("h_i16", "-1234", None)),
                (h(0, vec![(32767_i16) as u16]), n("h_i16", "32767", None)),
            ],
        },
        Case {
            point: "h_u16",
            yaml: "{ holding: 1, type: u16 }",
            rounds: [
                (h(1, vec![54321]), n("h_u16", "54321", None)),
                (h(1, vec![7]), n("h_u16", "7", None)),
            ],
        },
        Case {
            point: "h_u32_abcd",
            yaml: "{ holding: 2, type: u32, order: ABCD }",
            rounds: [
                (
                    h(2, regs(&3_000_000_000_u32.to_be_bytes(), ABCD)),
                    n("h_u32_abcd", "3000000000", None),
                ),
                (
                    h(2, regs(&65_537_u32.to_be_bytes(), ABCD)),
                    n("h_u32_abcd", "65537", None),
                ),
            ],
        },
        Case {
            point: "h_i32_cdab",
            yaml: "{ holding: 4, type: i32, order: CDAB }",
            rounds: [
                (
                    h(4, regs(&(-123_456_789_i32).to_be_bytes(), CDAB)),
                    n("h_i32_cdab", "-123456789", None),
                ),
                (
                    h(4, regs(&2_000_000_001_i32.to_be_bytes(), CDAB)),
                    n("h_i32_cdab", "2000000001", None),
                ),
            ],
        },
        Case {
            point: "i_u32_cdab",
            yaml: "{ input: 0, type: u32, order: CDAB }",
            rounds: [
                (
                    i(0, regs(&4_000_000_000_u32.to_be_bytes(), CDAB)),
                    n("i_u32_cdab", "4000000000", None),
                ),
                (
                    i(0, regs(&70_000_u32.to_be_bytes(), CDAB)),
                    n("i_u32_cdab", "70000", None),
                ),
            ],
        },
        Case {
            point: "i_i32_abcd",
            yaml: "{ input: 2, type: i32, order: ABCD }",
            rounds: [
                (
                    i(2, regs(&(-2_i32).to_be_bytes(), ABCD)),
                    n("i_i32_abcd", "-2", None),
                ),
                (
                    i(2, regs(&(-100_000_i32).to_be_bytes(), ABCD)),
                    n("i_i32_abcd", "-100000", None),
                ),
            ],
        },
        Case {
            point: "f32_abcd",
            yaml: "{ holding: 10, type: f32, order: ABCD }",
            rounds: [
                (
                    h(10, regs(&12.375_f32.to_be_bytes(), ABCD)),
                    n("f32_abcd", "12.375", None),
                ),
                (
                    h(10, regs(&(-0.5_f32).to_be_bytes(), ABCD)),
                    n("f32_abcd", "-0.5", None),
                ),
            ],
        },
        Case {
            point: "f32_cdab",
            yaml: "{ holding: 12, type: f32, order: CDAB }",
            rounds: [
                (
                    h(12, regs(&(-0.15625_f32).to_be_bytes(), CDAB)),
                    n("f32_cdab", "-0.15625", None),
                ),
                (
                    h(12, regs(&1e6_f32.to_be_bytes(), CDAB)),
                    n("f32_cdab", "1000000", None),
                ),
            ],
        },
        Case {
            point: "f32_badc",
            yaml: "{ holding: 14, type: f32, order: BADC }",
            rounds: [
                (
                    h(14, regs(&1234.5625_f32.to_be_bytes(), BADC)),
                    n("f32_badc", "1234.5625", None),
                ),
                (
                    h(14, regs(&0.75_f32.to_be_bytes(), BADC)),
                    n("f32_badc", "0.75", None),
                ),
            ],
        },
        Case {
            point: "f32_dcba",
            yaml: "{ input: 4, type: f32, order: DCBA }",
            rounds: [
                (
                    i(4, regs(&98_765.5_f32.to_be_bytes(), DCBA)),
                    n("f32_dcba", "98765.5", None),
                ),
                (
                    i(4, regs(&(-3.25_f32).to_be_bytes(), DCBA)),
                    n("f32_dcba", "-3.25", None),
                ),
            ],
        },
        Case {
            point: "f64_abcd",
            yaml: "{ holding: 20, type: f64 }",
            rounds: [
                (
                    h(20, regs(&123_456_789.015625_f64.to_be_bytes(), ABCD)),
                    n("f64_abcd", "123456789.015625", None),
                ),
                (
                    h(20, regs(&(-2.5e-3_f64).to_be_bytes(), ABCD)),
                    n("f64_abcd", "-0.0025", None),
                ),
            ],
        },
        Case {
            point: "f64_cdab",
            yaml: "{ input: 10, type: f64, order: CDAB }",
            rounds: [
                (
                    i(10, regs(&(-6_543.25_f64).to_be_bytes(), CDAB)),
                    n("f64_cdab", "-6543.25", None),
                ),
                (
                    i(10, regs(&1e12_f64.to_be_bytes(), CDAB)),
                    n("f64_cdab", "1000000000000", None),
                ),
            ],
        },
        Case {
            point: "label",
            yaml: "{ holding: 30, type: string, count: 4 }",
            rounds: [
                (
                    h(30, text_regs("PUMP-7", 4)),
                    field("string", "label", "PUMP-7", None),
                ),
                (
                    h(30, text_regs("ZONE B12", 4)),
                    field("string", "label", "ZONE B12", None),
                ),
            ],
        },
        Case {
            // Bit 3 of a word whose other bits are noise.
            point: "burner",
            yaml: "{ holding: 40, type: bool, bit: 3 }",
            rounds: [
                (
                    h(40, vec![0b1000_0000_1000]),
                    field("boolean", "burner", "true", None),
                ),
                (
                    h(40, vec![0b1111_1111_1111_0111]),
                    field("boolean", "burner", "false", None),
                ),
            ],
        },
        Case {
            point: "temperature",
            yaml: "{ holding: 41, type: i16, scale: 0.1, unit: \"°C\" }",
            rounds: [
                (
                    h(41, vec![(-123_i16) as u16]),
                    n("temperature", "-12.3", Some("°C")),
                ),
                (h(41, vec![215]), n("temperature", "21.5", Some("°C"))),
            ],
        },
        Case {
            point: "pump",
            yaml: "{ coil: 5 }",
            rounds: [
                (Raw::Coil(5, true), field("boolean", "pump", "true", None)),
                (Raw::Coil(5, false), field("boolean", "pump", "false", None)),
            ],
        },
        Case {
            point: "door",
            yaml: "{ discrete: 3 }",
            rounds: [
                (
                    Raw::Discrete(3, false),
                    field("boolean", "door", "false", None),
                ),
                (
                    Raw::Discrete(3, true),
                    field("boolean", "door", "true", None),
                ),
            ],
        },
    ]
}

/// A few types on an RTU bus.
fn rtu_types() -> Vec<Case> {
    use Order::*;
    let h = Raw::Holding;
    let i = Raw::Input;
    let n = numeric;
    vec![
        Case {
            point: "volts",
            yaml: "{ input: 0, type: u16, scale: 0.1, unit: V }",
            rounds: [
                (i(0, vec![2305]), n("volts", "230.5", Some("V"))),
                (i(0, vec![2298]), n("volts", "229.8", Some("V"))),
            ],
        },
        Case {
            point: "energy",
            yaml: "{ input: 2, type: i32, order: CDAB, unit: kWh }",
            rounds: [
                (
                    i(2, regs(&1_234_567_i32.to_be_bytes(), CDAB)),
                    n("energy", "1234567", Some("kWh")),
                ),
                (
                    i(2, regs(&1_234_600_i32.to_be_bytes(), CDAB)),
                    n("energy", "1234600", Some("kWh")),
                ),
            ],
        },
        Case {
            point: "power",
            yaml: "{ holding: 10, type: f32, order: BADC, unit: W }",
            rounds: [
                (
                    h(10, regs(&1_523.75_f32.to_be_bytes(), BADC)),
                    n("power", "1523.75", Some("W")),
                ),
                (
                    h(10, regs(&(-12.5_f32).to_be_bytes(), BADC)),
                    n("power", "-12.5", Some("W")),
                ),
            ],
        },
        Case {
            point: "serial_number",
            yaml: "{ holding: 20, type: string, count: 5 }",
            rounds: [
                (
                    h(20, text_regs("SN-0042", 5)),
                    field("string", "serial_number", "SN-0042", None),
                ),
                (
                    h(20, text_regs("SN-0043X", 5)),
                    field("string", "serial_number", "SN-0043X", None),
                ),
            ],
        },
        Case {
            point: "relay",
            yaml: "{ coil: 0 }",
            rounds: [
                (Raw::Coil(0, true), field("boolean", "relay", "true", None)),
                (
                    Raw::Coil(0, false),
                    field("boolean", "relay", "false", None),
                ),
            ],
        },
    ]
}

/// The `points:` of a device made of `cases`, indented for `devices:`.
fn points_yaml(cases: &[Case]) -> String {
    cases
        .iter()
        .map(|c| format!("      {}: {}\n", c.point, c.yaml))
        .collect()
}

/// A started XMPP server with users alice (may control) and bob (may
/// read), and the gateway.
async fn start(kind: ServerKind, connections: &str, devices: &str) -> (Server, Gateway) {
    let server = Server::start(kind).await.expect("the XMPP server starts");
    for u in ["alice", "bob"] {
        server.register(u, "pw").expect("user registered");
    }
    let gateway =
        Gateway::started(&server, &Setup::alice_controls(connections, devices), &[]).await;
    (server, gateway)
}

fn tcp_connection(id: &str, modbus: &ModbusServer) -> String {
    format!(
        "  {id}: {{ modbus_tcp: {{ address: \"{}\", timeout: 300ms }} }}\n",
        modbus.addr()
    )
}

/// Reads notifications of `node` until every point shows its value of
/// round `to`; each value seen meanwhile must be the one of round `to - 1`
/// or of round `to` (never anything else).
async fn wait_for_round(user: &mut XmppUser, node: &str, cases: &[Case], to: usize) {
    let deadline = Instant::now() + WAIT;
    let mut last: BTreeMap<String, Field> = BTreeMap::new();
    let done = |last: &BTreeMap<String, Field>| {
        cases
            .iter()
            .all(|c| last.get(c.point) == Some(&c.rounds[to].1))
    };
    while !done(&last) {
        let left = deadline.saturating_duration_since(Instant::now());
        let fields = next_fields(user, node, left)
            .await
            .unwrap_or_else(|e| panic!("{e}\nlatest values: {last:#?}"));
        for f in fields {
            let case = cases
                .iter()
                .find(|c| c.point == f.name)
                .unwrap_or_else(|| panic!("a point that is not configured: {f:?}"));
            assert!(
                case.rounds[to].1 == f || case.rounds[to - 1].1 == f,
                "{} read {f:?}; the bank held {:?} then {:?}",
                case.point,
                case.rounds[to - 1].0,
                case.rounds[to].0
            );
            last.insert(f.name.clone(), f);
        }
    }
}

/// Both rounds of `cases` from the bank to a subscriber of `node`.
async fn check_rounds(user: &mut XmppUser, bank: &Bank, node: &str, cases: &[Case]) {
    // The bank held round 0 before the gateway started. A client that
    // comes once the device has been polled learns the whole state from
    // the last item alone: with `max_items=1`, and on subscribing.
    let expected: BTreeMap<String, Field> = cases
        .iter()
        .map(|c| (c.point.to_owned(), c.rounds[0].1.clone()))
        .collect();
    let by_point = |fields: Vec<Field>| -> BTreeMap<String, Field> {
        fields.into_iter().map(|f| (f.name.clone(), f)).collect()
    };
    let last = pubsub::last_item(user, node, WAIT).await.unwrap();
    assert_eq!(by_point(last), expected, "max_items=1 is the whole state");
    subscribe(user, node).await.unwrap();
    let on_subscribe = next_fields(user, node, WAIT).await.unwrap();
    assert_eq!(
        by_point(on_subscribe),
        expected,
        "the item sent on subscribe is the whole state"
    );
    // The device's values change: every point follows.
    for c in cases {
        c.rounds[1].0.load(bank);
    }
    wait_for_round(user, node, cases, 1).await;
}

async fn every_type_and_order_reaches_a_subscriber_over_tcp(kind: ServerKind) {
    let cases = every_type();
    let bank = Bank::new(1);
    for c in &cases {
        c.rounds[0].0.load(&bank);
    }
    let modbus = ModbusServer::tcp(bank.clone()).await.unwrap();
    let devices = format!(
        "  meter:\n    connection: plc\n    unit: 1\n    poll: 200ms\n    points:\n{}",
        points_yaml(&cases)
    );
    let (server, _gateway) = start(kind, &tcp_connection("plc", &modbus), &devices).await;
    let mut bob = XmppUser::connect(server.c2s_port(), "bob", "pw")
        .await
        .unwrap();
    check_rounds(&mut bob, &bank, "meter", &cases).await;
    // Neighbouring registers are read together: four requests a cycle for
    // seventeen points (holding 0-41, input 0-13, one coil, one discrete
    // input), each the same every cycle.
    let log = bank.log();
    let asked: BTreeSet<(u8, u8, u16, u16)> = log
        .iter()
        .map(|s| (s.unit, s.function, s.address, s.count))
        .collect();
    assert_eq!(
        asked,
        BTreeSet::from([(1, 1, 5, 1), (1, 2, 3, 1), (1, 3, 0, 42), (1, 4, 0, 14)]),
        "{} requests",
        log.len()
    );
    bob.close().await;
}

async fn every_type_reaches_a_subscriber_over_rtu(kind: ServerKind) {
    let cases = rtu_types();
    let bank = Bank::new(7);
    for c in &cases {
        c.rounds[0].0.load(&bank);
    }
    let modbus = ModbusServer::rtu(bank.clone()).await.unwrap();
    let connections = format!(
        "  bus: {{ modbus_rtu: {{ port: \"{}\", baud: 19200, parity: even, timeout: 500ms }} }}\n",
        modbus.dev().display()
    );
    let devices = format!(
        "  meter:\n    connection: bus\n    unit: 7\n    poll: 200ms\n    points:\n{}",
        points_yaml(&cases)
    );
    let (server, _gateway) = start(kind, &connections, &devices).await;
    let mut bob = XmppUser::connect(server.c2s_port(), "bob", "pw")
        .await
        .unwrap();
    check_rounds(&mut bob, &bank, "meter", &cases).await;
    let log = bank.log();
    assert!(log.iter().all(|s| s.unit == 7), "{log:?}");
    bob.close().await;
}

const TANK: &str = "tank@gw.localhost";

/// A tank level sensor on a TCP server, reading 70 cm, and alice watching
/// its presence and its node; returns once she saw it online, with every
/// stanza received until then forgotten.
async fn watched_tank(kind: ServerKind) -> (ModbusServer, Server, Gateway, XmppUser) {
    let bank = Bank::new(1);
    bank.set_holding(0, &[70]);
    let modbus = ModbusServer::tcp(bank).await.unwrap();
    let devices = "  tank:\n    connection: plc\n    unit: 1\n    poll: 200ms\n    offline_after: 2\n    \
        points:\n      level: { holding: 0, unit: cm }\n";
    let (server, gateway) = start(kind, &tcp_connection("plc", &modbus), devices).await;
    let mut alice = XmppUser::connect(server.c2s_port(), "alice", "pw")
        .await
        .unwrap();
    alice.subscribe_presence(TANK).await.unwrap();
    subscribe(&mut alice, "tank").await.unwrap();
    let level = next_level(&mut alice).await;
    assert_eq!(level, numeric("level", "70", Some("cm")));
    alice
        .expect("available presence", WAIT, |e| is_presence(e, TANK, None))
        .await
        .unwrap();
    // Only presence sent from now on may count as "gone".
    alice.forget_unmatched();
    (modbus, server, gateway, alice)
}

/// Waits for the tank's unavailable presence; returns its reason.
async fn gone(alice: &mut XmppUser) -> String {
    let gone = alice
        .expect("unavailable presence", WAIT, |e| {
            is_presence(e, TANK, Some("unavailable"))
        })
        .await
        .unwrap();
    // Only presence sent from now on may count as "back".
    alice.forget_unmatched();
    status_text(&gone).unwrap_or_else(|| panic!("no reason given: {}", xml(&gone)))
}

/// Waits for the tank's available presence, then for `level` on its node
/// (70, the level before, may arrive first; nothing else may).
async fn back(alice: &mut XmppUser, level: &str) {
    alice
        .expect("available presence again", WAIT, |e| {
            is_presence(e, TANK, None)
        })
        .await
        .unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let f = next_level(alice).await;
        if f.value == level {
            assert!(!f.invalid, "{f:?}");
            return;
        }
        assert_eq!(f.value, "70", "{f:?}");
        assert!(Instant::now() < deadline, "level {level} never arrived");
    }
}

async fn a_device_that_stops_answering_goes_offline_and_comes_back(kind: ServerKind) {
    let (modbus, _server, _gateway, mut alice) = watched_tank(kind).await;
    let bank = &modbus.bank;

    bank.set_silent(true);
    let silent_from = bank.requests();
    let silent_at = Instant::now();
    let why = gone(&mut alice).await;
    // Two failed polls: two poll periods plus two timeouts, and slack
    // for a loaded machine.
    let took = silent_at.elapsed();
    assert!(took < Duration::from_secs(3), "offline after {took:?}");
    assert!(
        why.contains("unit 1 on plc: no answer within 300ms"),
        "reason: {why}"
    );
    // The gateway kept asking: it went offline because nothing answered,
    // not because it stopped polling.
    assert!(bank.requests() >= silent_from + 2, "{:?}", bank.log());

    bank.set_holding(0, &[71]);
    bank.set_silent(false);
    back(&mut alice, "71").await;
    alice.close().await;
}

async fn a_restarted_server_is_reconnected_and_read_again(kind: ServerKind) {
    let (mut modbus, _server, _gateway, mut alice) = watched_tank(kind).await;

    // The server goes away with its connections (a PLC rebooting).
    modbus.stop().await;
    let why = gone(&mut alice).await;
    assert!(why.starts_with("unit 1 on plc: "), "reason: {why}");

    modbus.bank.set_holding(0, &[72]);
    let before = modbus.bank.requests();
    modbus.restart().await.unwrap();
    back(&mut alice, "72").await;
    assert!(modbus.bank.requests() > before);
    alice.close().await;
}

async fn next_level(user: &mut XmppUser) -> Field {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let fields = next_fields(user, "tank", left).await.unwrap();
        if let Some(f) = fields.into_iter().find(|f| f.name == "level") {
            return f;
        }
    }
}

const BOILER: &str = "boiler@gw.localhost";
const NS_COMMANDS: &str = "http://jabber.org/protocol/commands";
const NS_DATA: &str = "jabber:x:data";

/// Chats with the boiler; returns its answer.
async fn ask(user: &mut XmppUser, text: &str) -> String {
    user.chat(BOILER, text).await.unwrap()
}

fn form_field(var: &str, value: &str) -> Element {
    let mut v = el("value", NS_DATA, &[]);
    v.append_text_node(value);
    with_child(el("field", NS_DATA, &[("var", var)]), v)
}

/// The ad-hoc "set" command, both stages: asks for the form, submits
/// `point` = `value`; returns the completed command.
async fn set_by_form(user: &mut XmppUser, point: &str, value: &str) -> Element {
    let answer = user
        .iq(
            BOILER,
            "set",
            el(
                "command",
                NS_COMMANDS,
                &[("node", "set"), ("action", "execute")],
            ),
        )
        .await
        .unwrap();
    let form = answer
        .get_child("command", NS_COMMANDS)
        .unwrap_or_else(|| panic!("no command: {}", xml(&answer)));
    assert_eq!(form.attr("status"), Some("executing"), "{}", xml(&answer));
    let session = form.attr("sessionid").unwrap().to_owned();
    let mut x = el("x", NS_DATA, &[("type", "submit")]);
    x.append_child(form_field("point", point));
    x.append_child(form_field("value", value));
    let submit = with_child(
        el(
            "command",
            NS_COMMANDS,
            &[
                ("node", "set"),
                ("sessionid", &session),
                ("action", "complete"),
            ],
        ),
        x,
    );
    let done = user.iq(BOILER, "set", submit).await.unwrap();
    assert_eq!(done.attr("type"), Some("result"), "{}", xml(&done));
    done.get_child("command", NS_COMMANDS).unwrap().clone()
}

/// True when the server saw a write with `function` at `address`.
fn wrote(log: &[Seen], function: u8, address: u16, count: u16) -> bool {
    log.iter()
        .any(|s| s.function == function && s.address == address && s.count == count)
}

async fn writes_from_xmpp_change_the_devices_registers(kind: ServerKind) {
    let bank = Bank::new(1);
    bank.set_holding(100, &[500]);
    bank.set_holding(110, &regs(&1.5_f32.to_be_bytes(), Order::CDAB));
    bank.set_holding(120, &[215]);
    bank.set_holding(130, &[0b1000_0000_0000_0001]);
    let modbus = ModbusServer::tcp(bank.clone()).await.unwrap();
    let devices = "  boiler:\n    name: Boiler room\n    connection: plc\n    unit: 1\n    poll: 200ms\n    \
        points:\n      \
        setpoint: { holding: 100, type: i16, scale: 0.1, unit: \"°C\", writable: true, min: 5, max: 90 }\n      \
        flow: { holding: 110, type: f32, order: CDAB, unit: \"m3/h\", writable: true }\n      \
        temperature: { holding: 120, type: i16, scale: 0.1, unit: \"°C\" }\n      \
        burner: { holding: 130, type: bool, bit: 4, writable: true }\n      \
        pump: { coil: 5, writable: true }\n";
    let (server, _gateway) = start(kind, &tcp_connection("plc", &modbus), devices).await;
    let mut alice = XmppUser::connect(server.c2s_port(), "alice", "pw")
        .await
        .unwrap();
    let mut bob = XmppUser::connect(server.c2s_port(), "bob", "pw")
        .await
        .unwrap();

    // Chat, from a user in access.control.
    assert_eq!(
        ask(&mut alice, "set setpoint 62.5").await,
        "setpoint set to 62.50 °C."
    );
    assert_eq!(bank.holding(100, 1), [625]);
    assert!(wrote(&bank.log(), 6, 100, 1), "{:?}", bank.log());
    assert_eq!(ask(&mut alice, "set pump on").await, "pump set to on.");
    assert!(bank.coil(5));
    assert!(wrote(&bank.log(), 5, 5, 1), "{:?}", bank.log());
    // A bit in a register: the other bits are kept.
    assert_eq!(ask(&mut alice, "set burner on").await, "burner set to on.");
    assert_eq!(bank.holding(130, 1), [0b1000_0000_0001_0001]);

    // Refused writes leave the registers alone.
    let before = bank.holding(100, 1);
    assert_eq!(
        ask(&mut bob, "set setpoint 70").await,
        "You may not change this device (not in access.control)."
    );
    let too_hot = ask(&mut alice, "set setpoint 95").await;
    assert!(too_hot.contains("above the maximum 90"), "{too_hot}");
    assert_eq!(
        ask(&mut alice, "set temperature 3").await,
        "temperature is read-only."
    );
    assert_eq!(bank.holding(100, 1), before);
    assert_eq!(bank.holding(120, 1), [215]);

    // XEP-0325 control: the device's refusal is answered by its cause
    // (`not-acceptable`: not like this), a write in range goes through.
    let refused = alice
        .iq(BOILER, "set", control_set("setpoint", "95"))
        .await
        .unwrap();
    assert_eq!(
        error_condition(&refused).as_deref(),
        Some("not-acceptable"),
        "{}",
        xml(&refused)
    );
    assert!(
        xml(&refused).contains("above the maximum 90"),
        "{}",
        xml(&refused)
    );
    assert_eq!(bank.holding(100, 1), before);
    let done = alice
        .iq(BOILER, "set", control_set("setpoint", "55"))
        .await
        .unwrap();
    assert_eq!(done.attr("type"), Some("result"), "{}", xml(&done));
    assert_eq!(bank.holding(100, 1), [550]);

    // The ad-hoc "Set a point" form.
    let done = set_by_form(&mut alice, "flow", "12.75").await;
    assert_eq!(done.attr("status"), Some("completed"), "{}", xml(&done));
    let note = done.get_child("note", NS_COMMANDS).map(Element::text);
    assert_eq!(
        note.as_deref(),
        Some("flow set to 12.75 m3/h."),
        "{}",
        xml(&done)
    );
    assert_eq!(
        bank.holding(110, 2),
        regs(&12.75_f32.to_be_bytes(), Order::CDAB)
    );
    assert!(wrote(&bank.log(), 16, 110, 2), "{:?}", bank.log());
    let done = set_by_form(&mut alice, "setpoint", "48.5").await;
    assert_eq!(done.attr("status"), Some("completed"), "{}", xml(&done));
    assert_eq!(bank.holding(100, 1), [485]);
    let done = set_by_form(&mut alice, "pump", "off").await;
    assert_eq!(done.attr("status"), Some("completed"), "{}", xml(&done));
    assert!(!bank.coil(5));

    // What the device holds is what readers see from now on.
    let deadline = Instant::now() + WAIT;
    loop {
        let line = ask(&mut bob, "get flow").await;
        if line.starts_with("flow 12.75 m3/h (") {
            break;
        }
        assert!(Instant::now() < deadline, "get flow: {line}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    alice.close().await;
    bob.close().await;
}

fieldbridge_e2e::on_every_server!(
    every_type_and_order_reaches_a_subscriber_over_tcp,
    every_type_reaches_a_subscriber_over_rtu,
    a_device_that_stops_answering_goes_offline_and_comes_back,
    a_restarted_server_is_reconnected_and_read_again,
    writes_from_xmpp_change_the_devices_registers,
);
