//! End-to-end: serial devices on real pseudo-terminals (socat), through the
//! real gateway binary and a real Prosody, checked by a real XMPP client.

use std::time::Duration;

use fieldbridge_e2e::client::{NS_CLIENT, XmppUser, el, is_presence, status_text, xml};
use fieldbridge_e2e::gateway::{Gateway, Setup};
use fieldbridge_e2e::prosody::Prosody;
use fieldbridge_e2e::pty::PtyPair;
use fieldbridge_e2e::pubsub::{Field, next_fields, subscribe};
use minidom::Element;
use tokio::time::Instant;

const WAIT: Duration = Duration::from_secs(15);

async fn start(ptys: &[(&str, &PtyPair)], devices: &str) -> (Prosody, Gateway, XmppUser) {
    let prosody = Prosody::start().await.expect("prosody starts");
    prosody.register("alice", "pw").expect("user registered");
    let connections: String = ptys
        .iter()
        .map(|(id, p)| {
            format!(
                "  {id}: {{ serial: {{ port: \"{}\", baud: 9600, max_frame: 100 }} }}\n",
                p.dev().display()
            )
        })
        .collect();
    let gateway =
        Gateway::started(&prosody, &Setup::alice_controls(&connections, devices), &[]).await;
    let alice = XmppUser::connect(prosody.c2s_port, "alice", "pw")
        .await
        .unwrap();
    (prosody, gateway, alice)
}

/// `$<body>*<checksum>\r\n`, the checksum computed here independently.
fn nmea(body: &str) -> String {
    let sum = body.bytes().fold(0u8, |acc, b| acc ^ b);
    format!("${body}*{sum:02X}\r\n")
}

/// Waits until the gateway has opened connection `id`'s port `times`
/// times, so that what the test writes next is read.
async fn port_open(gateway: &Gateway, id: &str, times: usize) {
    gateway
        .wait_log(
            &format!("\"serial port open\",\"connection\":\"{id}\""),
            times,
            WAIT,
        )
        .await
        .unwrap();
}

/// Reads notifications of `node` until each of `points` has been seen,
/// within [`WAIT`] in all; returns the first field of each, in the order
/// asked.
async fn next_values(alice: &mut XmppUser, node: &str, points: &[&str]) -> Vec<Field> {
    let deadline = Instant::now() + WAIT;
    let mut seen = std::collections::HashMap::new();
    while seen.len() < points.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let fields = next_fields(alice, node, left).await.unwrap_or_else(|e| {
            let missing: Vec<_> = points.iter().filter(|p| !seen.contains_key(**p)).collect();
            panic!("no {missing:?} from {node} within {WAIT:?}: {e}")
        });
        for f in fields {
            if points.contains(&f.name.as_str()) {
                seen.entry(f.name.clone()).or_insert(f);
            }
        }
    }
    points.iter().map(|p| seen[*p].clone()).collect()
}

/// Reads notifications of `point` on `node` until one satisfies `want`,
/// within [`WAIT`] in all.
async fn value_where(
    alice: &mut XmppUser,
    node: &str,
    point: &str,
    what: &str,
    want: impl Fn(&Field) -> bool,
) -> Field {
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let fields = next_fields(alice, node, left).await.unwrap_or_else(|e| {
            panic!("no {what} of {node}.{point} within {WAIT:?}; saw {seen:?}: {e}")
        });
        for f in fields.into_iter().filter(|f| f.name == point) {
            if want(&f) {
                return f;
            }
            seen.push(f);
        }
    }
}

/// The next field of `point` from `node`.
async fn next_value(alice: &mut XmppUser, node: &str, point: &str) -> Field {
    next_values(alice, node, &[point]).await.remove(0)
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

#[tokio::test]
async fn every_line_format_reaches_a_node_subscriber() {
    let ptys = [
        PtyPair::start().await.unwrap(),
        PtyPair::start().await.unwrap(),
        PtyPair::start().await.unwrap(),
        PtyPair::start().await.unwrap(),
        PtyPair::start().await.unwrap(),
    ];
    let [kv, json, csv, rx, gps] = &ptys;
    let devices = "  \
  weather:\n    connection: l-kv\n    format: key_value\n    points:\n      \
    temperature: { key: T, unit: \"°C\" }\n      raining: { key: R, type: bool }\n  \
  node:\n    connection: l-json\n    format: json\n    points:\n      \
    temperature: { pointer: /env/temp, unit: \"°C\" }\n      label: { pointer: /name, type: text }\n  \
  meter:\n    connection: l-csv\n    format: csv\n    prefix: \"M1,\"\n    points:\n      \
    energy: { column: 1, unit: kWh }\n      pulses: { column: 2, type: int }\n  \
  meter2:\n    connection: l-csv\n    format: csv\n    prefix: \"M2,\"\n    points:\n      \
    energy: { column: 1, unit: kWh }\n  \
  wind:\n    connection: l-rx\n    format: regex\n    pattern: \"^W (?P<speed>[0-9.]+) m/s\"\n    points:\n      \
    speed: { capture: speed, unit: m/s }\n  \
  gps:\n    connection: l-gps\n    format: nmea\n    points:\n      \
    latitude: { nmea: GGA.latitude }\n      water: { nmea: MTW.temperature, unit: \"°C\" }\n";
    let (_prosody, gateway, mut alice) = start(
        &[
            ("l-kv", kv),
            ("l-json", json),
            ("l-csv", csv),
            ("l-rx", rx),
            ("l-gps", gps),
        ],
        devices,
    )
    .await;
    for (node, line) in [
        ("weather", "l-kv"),
        ("node", "l-json"),
        ("meter", "l-csv"),
        ("meter2", "l-csv"),
        ("wind", "l-rx"),
        ("gps", "l-gps"),
    ] {
        subscribe(&mut alice, node).await.unwrap();
        port_open(&gateway, line, 1).await;
    }

    // key_value: two points per line, in one item.
    kv.write(b"T=21.5;R=1\n").unwrap();
    assert_eq!(
        next_values(&mut alice, "weather", &["temperature", "raining"]).await,
        [
            field("numeric", "temperature", "21.5", Some("°C")),
            field("boolean", "raining", "true", None),
        ]
    );

    json.write(b"{\"env\":{\"temp\":19.25},\"name\":\"attic\"}\n")
        .unwrap();
    assert_eq!(
        next_values(&mut alice, "node", &["temperature", "label"]).await,
        [
            field("numeric", "temperature", "19.25", Some("°C")),
            field("string", "label", "attic", None),
        ]
    );

    // Two meters share the line, told apart by their prefix.
    csv.write(b"M2,99.5,1\nM1,1234.5,77\n").unwrap();
    assert_eq!(
        next_value(&mut alice, "meter2", "energy").await,
        field("numeric", "energy", "99.5", Some("kWh"))
    );
    assert_eq!(
        next_values(&mut alice, "meter", &["energy", "pulses"]).await,
        [
            field("numeric", "energy", "1234.5", Some("kWh")),
            field("numeric", "pulses", "77", None),
        ]
    );

    rx.write(b"W 7.5 m/s gusting\n").unwrap();
    assert_eq!(
        next_value(&mut alice, "wind", "speed").await,
        field("numeric", "speed", "7.5", Some("m/s"))
    );

    // NMEA: a sentence with a wrong checksum is dropped, the next good one
    // arrives.
    let good = nmea("GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,");
    let mut forged = nmea("GPGGA,123519,1000.000,S,01131.000,E,1,08,0.9,545.4,M,46.9,M,,");
    forged.replace_range(forged.len() - 4..forged.len() - 2, "00");
    gps.write(forged.as_bytes()).unwrap();
    gps.write(good.as_bytes()).unwrap();
    gps.write(nmea("YXMTW,17.75,C").as_bytes()).unwrap();
    // Two sentences of one device in a row: one item may hold both.
    let got = next_values(&mut alice, "gps", &["latitude", "water"]).await;
    let degrees: f64 = got[0].value.parse().unwrap();
    assert!(
        (degrees - (48.0 + 7.038 / 60.0)).abs() < 1e-6,
        "the forged sentence (south) must not arrive: {got:?}"
    );
    assert_eq!(got[1], field("numeric", "water", "17.75", Some("°C")));
    alice.close().await;
}

#[tokio::test]
async fn every_good_line_arrives_through_noise_invalid_text_and_split_writes() {
    let pty = PtyPair::start().await.unwrap();
    let devices = "  weather:\n    connection: line\n    format: key_value\n    points:\n      \
        temperature: { key: T }\n";
    let (_prosody, gateway, mut alice) = start(&[("line", &pty)], devices).await;
    subscribe(&mut alice, "weather").await.unwrap();
    port_open(&gateway, "line", 1).await;

    let long = vec![b'x'; 500];
    let chunks: Vec<&[u8]> = vec![
        b"T=1\n",
        b"\xff\xfe\x00\x80garbage\n",
        b"T=2\n",
        &long,
        b"\nT=3\n",
        b"T=",
        b"4\n\x01\x02\x03 line noise without an end",
        b"\nT=5\n",
        b"T=not a number\n",
        b"T=6\n",
    ];
    for c in chunks {
        pty.write(c).unwrap();
    }
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    while seen.len() < 6 {
        assert!(
            Instant::now() < deadline,
            "not six good values within {WAIT:?}: {seen:?}"
        );
        let f = next_value(&mut alice, "weather", "temperature").await;
        if f.invalid {
            // "not a number": the point keeps its value with bad quality.
            continue;
        }
        seen.push(f.value);
    }
    assert_eq!(seen, ["1", "2", "3", "4", "5", "6"]);
    gateway
        .wait_log("frame is not valid UTF-8", 1, WAIT)
        .await
        .expect("the bad frame is logged");
    alice.close().await;
}

#[tokio::test]
async fn a_polled_device_answers_goes_bad_when_silent_and_takes_writes_from_chat() {
    let pty = PtyPair::start().await.unwrap();
    let devices = "  meter:\n    connection: line\n    format: key_value\n    poll: 300ms\n    \
        request: { send: \"READ\\r\\n\", timeout: 500ms }\n    \
        write: { template: \"SET {point} {value}\\n\", ack: \"^OK\" }\n    points:\n      \
        volts: { key: V, unit: V }\n      limit: { key: L, unit: V, writable: true }\n";
    let mut lines = pty.lines().await.unwrap();
    let (_prosody, _gateway, mut alice) = start(&[("line", &pty)], devices).await;
    subscribe(&mut alice, "meter").await.unwrap();

    // The device answers each READ.
    let next_line = async |lines: &mut tokio::sync::mpsc::Receiver<String>| {
        tokio::time::timeout(WAIT, lines.recv())
            .await
            .expect("a line from the gateway in time")
            .expect("line reader alive")
    };
    assert_eq!(next_line(&mut lines).await, "READ");
    pty.write(b"V=230.5;L=240\n").unwrap();
    assert_eq!(
        next_value(&mut alice, "meter", "volts").await,
        field("numeric", "volts", "230.5", Some("V"))
    );

    // Silence: the next requests time out into bad quality.
    let bad = value_where(&mut alice, "meter", "volts", "bad quality", |f| f.invalid).await;
    assert_eq!(bad.value, "230.5", "the last value, marked invalid");

    // A chat `set` from alice is written on the line; the device acks.
    let mut msg = el(
        "message",
        NS_CLIENT,
        &[("to", "meter@gw.localhost"), ("type", "chat")],
    );
    let mut body = el("body", NS_CLIENT, &[]);
    body.append_text_node("set limit 245");
    msg.append_child(body);
    alice.send(msg).await.unwrap();
    // The gateway keeps asking READ every 300 ms meanwhile: skip those,
    // for WAIT at most.
    let deadline = Instant::now() + WAIT;
    let set = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let l = tokio::time::timeout(left, lines.recv())
            .await
            .unwrap_or_else(|_| panic!("no SET line within {WAIT:?}, only READ"))
            .expect("line reader alive");
        if l != "READ" {
            break l;
        }
    };
    assert_eq!(set, "SET limit 245");
    pty.write(b"OK\n").unwrap();
    let reply = alice
        .expect("the chat reply", WAIT, |e| {
            e.name() == "message" && e.get_child("body", NS_CLIENT).is_some()
        })
        .await
        .unwrap();
    assert_eq!(
        reply
            .get_child("body", NS_CLIENT)
            .map(Element::text)
            .as_deref(),
        Some("limit set to 245.0 V."),
        "{}",
        xml(&reply)
    );
    alice.close().await;
}

#[tokio::test]
async fn an_unplugged_line_takes_the_device_offline_and_it_returns_by_itself() {
    let mut pty = PtyPair::start().await.unwrap();
    let devices = "  weather:\n    connection: line\n    format: key_value\n    points:\n      \
        temperature: { key: T }\n";
    let (_prosody, gateway, mut alice) = start(&[("line", &pty)], devices).await;
    alice
        .subscribe_presence("weather@gw.localhost")
        .await
        .unwrap();
    subscribe(&mut alice, "weather").await.unwrap();
    port_open(&gateway, "line", 1).await;
    pty.write(b"T=1\n").unwrap();
    next_value(&mut alice, "weather", "temperature").await;
    alice
        .expect("available presence", WAIT, |e| {
            is_presence(e, "weather@gw.localhost", None)
        })
        .await
        .unwrap();
    // Only presence sent after the unplug may count as "gone".
    alice.forget_unmatched();

    pty.unplug().await.unwrap();
    let gone = alice
        .expect("unavailable presence", WAIT, |e| {
            is_presence(e, "weather@gw.localhost", Some("unavailable"))
        })
        .await
        .unwrap();
    let why = status_text(&gone).unwrap_or_default();
    assert!(why.starts_with("serial port"), "reason: {}", xml(&gone));
    // Only presence sent after the unplug may count as "back".
    alice.forget_unmatched();

    pty.plug().await.unwrap();
    port_open(&gateway, "line", 2).await;
    pty.write(b"T=2\n").unwrap();
    assert_eq!(
        next_value(&mut alice, "weather", "temperature").await.value,
        "2"
    );
    alice
        .expect("available presence again", WAIT, |e| {
            is_presence(e, "weather@gw.localhost", None)
        })
        .await
        .unwrap();
    alice.close().await;
}
