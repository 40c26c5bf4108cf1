//! The gateway tested without a server: stanzas and bus events in, what
//! it sends out checked. Helpers here; tests beside, one file per part.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use fieldbridge_core::{
    AdapterError, ConnectionId, DeviceSettings, DeviceSpec, PointSettings, PointSpec, Quality,
    Reading, Unit, Value, ValueKind,
};

use super::jobs::JobAction;
use super::*;
use crate::AccessConfig;
use crate::xml::{NS_COMPONENT, NS_DISCO_INFO, NS_PUBSUB_EVENT, child, element, set};
use fieldbridge_store::{Limits, SubscriptionKind};

const DOMAIN: &str = "gw.example.org";
const ALICE: &str = "alice@example.org/phone";
const MALLORY: &str = "mallory@evil.example/x";

fn directory() -> Arc<Directory> {
    let point = PointSpec {
        id: PointId::new("temperature").unwrap(),
        kind: ValueKind::Float,
        settings: PointSettings {
            unit: Some(Unit("°C".into())),
            ..Default::default()
        },
    };
    Arc::new(Directory::new([DeviceSpec {
        id: DeviceId::new("boiler").unwrap(),
        settings: DeviceSettings {
            name: Some("Boiler room".into()),
            ..DeviceSettings::on(ConnectionId::new("sim").unwrap())
        },
        points: BTreeMap::from([(point.id.clone(), point)]),
    }]))
}

struct Rig {
    gw: Gateway,
    dir: tempfile::TempDir,
}

fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    Rig {
        gw: gateway_in(dir.path()),
        dir,
    }
}

/// What the gateway counted, read from its telemetry.
#[derive(Debug, Default)]
struct Stats {
    malformed: u64,
    forbidden: u64,
    unsupported: u64,
    items: u64,
    notifications: u64,
    chat_commands: u64,
    rate_limited: u64,
    subscriptions_refused: u64,
}

fn stats(gw: &Gateway) -> Stats {
    let t = gw.telemetry();
    let refused = |cause| t.sum("stanzas_refused_total", [("cause", cause)]) as u64;
    Stats {
        malformed: refused("malformed"),
        forbidden: refused("forbidden"),
        unsupported: refused("unsupported"),
        items: t.sum("items_published_total", []) as u64,
        notifications: t.sum("notifications_sent_total", []) as u64,
        chat_commands: t.sum("chat_commands_total", []) as u64,
        rate_limited: refused("rate_limited"),
        subscriptions_refused: refused("subscription_limit"),
    }
}

fn gateway_in(dir: &std::path::Path) -> Gateway {
    let access = Access::new(&AccessConfig {
        read: vec!["example.org".into()],
        control: vec![],
    });
    let mut gw =
        Gateway::new(DOMAIN, "test", directory(), access, dir, Default::default()).unwrap();
    connect(&mut gw, Instant::now());
    gw
}

/// The gateway stopped (writing what waited, as the connection loop does)
/// and started again on the same state directory.
fn restart(r: Rig) -> Rig {
    let Rig { mut gw, dir } = r;
    gw.publish_all();
    gw.save_now();
    drop(gw);
    Rig {
        gw: gateway_in(dir.path()),
        dir,
    }
}

/// A bus event, and the item it makes once its window has passed:
/// notifications first (as elements), then whatever else was sent.
fn feed(gw: &mut Gateway, event: DeviceEvent, now: Instant) -> Vec<Element> {
    let other = gw.on_event(event, now);
    gw.publish_due(now + super::items::ITEM_WINDOW);
    let mut out = sent(gw);
    out.extend(other);
    out
}

/// The notifications ready to send, as elements.
fn sent(gw: &mut Gateway) -> Vec<Element> {
    gw.take_notifications()
        .iter()
        .flat_map(Notification::elements)
        .collect()
}

/// Runs the store reads the gateway asked for, as the connection loop
/// does: their answers.
fn reads(gw: &mut Gateway) -> Vec<Element> {
    let mut out = Vec::new();
    for read in gw.take_reads() {
        let found = read.run();
        out.extend(gw.read_done(read, found));
    }
    out.extend(sent(gw));
    out
}

/// An inbound stanza and everything sent for it, store reads included.
fn ask(gw: &mut Gateway, el: &Element) -> Vec<Element> {
    let mut out = gw.on_stanza(el);
    out.extend(reads(gw));
    out
}

/// The link comes up: presence, then the items missed meanwhile.
fn connect(gw: &mut Gateway, now: Instant) -> Vec<Element> {
    let mut out = gw.on_connected(now);
    out.extend(reads(gw));
    out
}

impl Gateway {
    /// Writes what waits for the store, as the connection loop does.
    fn save_now(&mut self) {
        if let Some(w) = self.take_writes() {
            let r = w.write();
            assert!(r.is_ok(), "{r:?}");
            self.written(r);
        }
    }
}

fn parse(xml: &str) -> Element {
    xml.parse().unwrap()
}

fn stanza_from(from: &str, xml: &str) -> Element {
    let mut el = parse(xml);
    set(&mut el, "from", from);
    el
}

fn presence(from: &str, to: &str, kind: &str) -> Element {
    stanza_from(
        from,
        &format!("<presence xmlns='jabber:component:accept' to='{to}' type='{kind}'/>"),
    )
}

fn iq(from: &str, to: &str, kind: &str, payload: &str) -> Element {
    stanza_from(
        from,
        &format!(
            "<iq xmlns='jabber:component:accept' to='{to}' type='{kind}' id='q1'>{payload}</iq>"
        ),
    )
}

/// A temperature read now (each reading at its own time, as real ones).
fn reading(v: f64) -> DeviceEvent {
    let at = SystemTime::now();
    DeviceEvent {
        device: DeviceId::new("boiler").unwrap(),
        at,
        kind: EventKind::Readings(vec![Sample {
            at,
            reading: Reading {
                point: PointId::new("temperature").unwrap(),
                value: Value::Float(v),
                unit: Some(Unit("°C".into())),
                quality: Quality::Good,
            },
        }]),
    }
}

/// Sets when the event's readings were read.
fn set_read_at(event: &mut DeviceEvent, at: SystemTime) {
    event.at = at;
    if let EventKind::Readings(samples) = &mut event.kind {
        for s in samples {
            s.at = at;
        }
    }
}

fn status(s: DeviceStatus) -> DeviceEvent {
    DeviceEvent {
        device: DeviceId::new("boiler").unwrap(),
        at: SystemTime::UNIX_EPOCH,
        kind: EventKind::Status(s),
    }
}

fn kind_of(el: &Element) -> Option<&str> {
    el.attr("type")
}

fn status_of(el: &Element) -> String {
    el.get_child("status", NS_COMPONENT)
        .map(|s| s.text())
        .unwrap_or_default()
}

fn condition(el: &Element) -> Option<String> {
    el.get_child("error", NS_COMPONENT)?
        .children()
        .find(|c| c.ns() == crate::xml::NS_STANZAS)
        .map(|c| c.name().to_owned())
}

fn pubsub(from: &str, kind: &str, inner: &str) -> Element {
    iq(
        from,
        DOMAIN,
        kind,
        &format!("<pubsub xmlns='http://jabber.org/protocol/pubsub'>{inner}</pubsub>"),
    )
}

fn first_item(el: &Element, ns: &str) -> Option<Element> {
    el.children()
        .find(|c| c.name() == "items" || c.name() == "event" || c.name() == "pubsub")
        .and_then(|c| {
            if c.name() == "items" {
                Some(c)
            } else {
                c.get_child("items", ns)
            }
        })
        .and_then(|items| items.get_child("item", ns))
        .cloned()
}

/// The (id, value) of every item in an items result or notification.
fn item_values(el: &Element, ns: &str) -> Vec<(String, String)> {
    let xml = crate::xml::to_string(el);
    let Some(items) = el
        .get_child("pubsub", NS_PUBSUB)
        .and_then(|p| p.get_child("items", NS_PUBSUB))
        .or_else(|| {
            el.get_child("event", NS_PUBSUB_EVENT)
                .and_then(|e| e.get_child("items", NS_PUBSUB_EVENT))
        })
    else {
        panic!("no items in {xml}")
    };
    items
        .children()
        .filter(|i| i.name() == "item" && i.ns() == ns)
        .map(|i| {
            let numeric = i
                .get_child("fields", crate::xml::NS_SENSORDATA)
                .and_then(|f| f.get_child("node", crate::xml::NS_SENSORDATA))
                .and_then(|n| n.get_child("timestamp", crate::xml::NS_SENSORDATA))
                .and_then(|t| t.children().find(|f| f.attr("value").is_some()))
                .unwrap_or_else(|| panic!("no value in {xml}"));
            (
                i.attr("id").unwrap().to_owned(),
                numeric.attr("value").unwrap().to_owned(),
            )
        })
        .collect()
}

fn values(items: &[(String, String)]) -> Vec<&str> {
    items.iter().map(|(_, v)| v.as_str()).collect()
}

/// The values the history serves, once written.
fn kept_after(gw: &mut Gateway, readings: &[f64]) -> Vec<String> {
    let now = Instant::now();
    for v in readings {
        feed(gw, reading(*v), now);
    }
    gw.save_now();
    let out = ask(gw, &pubsub(ALICE, "get", "<items node='boiler'/>"));
    values(&item_values(&out[0], NS_PUBSUB))
        .into_iter()
        .map(str::to_owned)
        .collect()
}

// ----- chat commands --------------------------------------------------

const BOB: &str = "bob@example.org/laptop";

/// A boiler with a read-only temperature and a writable set-point; alice
/// may control, bob may only read.
fn chat_gateway(dir: &std::path::Path) -> Gateway {
    let mut spec = (**directory().device("boiler").unwrap()).clone();
    let setpoint = PointSpec {
        id: PointId::new("setpoint").unwrap(),
        kind: ValueKind::Float,
        settings: PointSettings {
            label: Some("Target temperature".into()),
            unit: Some(Unit("°C".into())),
            decimals: Some(1),
            writable: true,
            ..Default::default()
        },
    };
    spec.points.insert(setpoint.id.clone(), setpoint);
    let access = Access::new(&AccessConfig {
        read: vec!["example.org".into()],
        control: vec!["alice@example.org".into()],
    });
    Gateway::new(
        DOMAIN,
        "test",
        Arc::new(Directory::new([spec])),
        access,
        dir,
        Default::default(),
    )
    .unwrap()
}

fn chat(from: &str, to: &str, kind: &str, body: &str) -> Element {
    stanza_from(
        from,
        &format!(
            "<message xmlns='jabber:component:accept' to='{to}' type='{kind}' id='m1'>\
             <thread>t-42</thread><body>{body}</body></message>"
        ),
    )
}

fn body_of(el: &Element) -> String {
    el.get_child("body", NS_COMPONENT)
        .map(|b| b.text())
        .unwrap_or_default()
}

fn one_reply(gw: &mut Gateway, from: &str, body: &str) -> Element {
    let out = ask(gw, &chat(from, "boiler@gw.example.org", "chat", body));
    assert_eq!(out.len(), 1, "{out:?}");
    out.into_iter().next().unwrap()
}

// ----- the small XEPs --------------------------------------------------

fn answer(gw: &mut Gateway, to: &str, payload: &str) -> Element {
    let out = ask(gw, &iq(ALICE, to, "get", payload));
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(
        kind_of(&out[0]),
        Some("result"),
        "{}",
        crate::xml::to_string(&out[0])
    );
    out.into_iter().next().unwrap()
}

/// The caps `ver` of a disco#info answer as a client receives it, hashed
/// by hand as XEP-0115 §5.1 says: identities sorted, each
/// category/type/lang/name, then the sorted features, each followed by
/// '<'; SHA-1, base64.
fn caps_ver_by_hand(q: &Element) -> String {
    let mut identities: Vec<String> = q
        .children()
        .filter(|c| c.name() == "identity")
        .map(|i| {
            let lang = i
                .attr_ns(minidom::rxml::Namespace::xml(), "lang")
                .unwrap_or_default();
            format!(
                "{}/{}/{lang}/{}",
                i.attr("category").unwrap_or_default(),
                i.attr("type").unwrap_or_default(),
                i.attr("name").unwrap_or_default()
            )
        })
        .collect();
    identities.sort();
    let mut features: Vec<&str> = q
        .children()
        .filter(|c| c.name() == "feature")
        .filter_map(|f| f.attr("var"))
        .collect();
    features.sort_unstable();
    assert!(!features.is_empty(), "{}", crate::xml::to_string(q));
    let mut s = String::new();
    for i in &identities {
        s.push_str(i);
        s.push('<');
    }
    for f in &features {
        s.push_str(f);
        s.push('<');
    }
    base64(&sha1(s.as_bytes()))
}

/// SHA-1 (FIPS 180-4), written out here so that the caps test does not
/// hash with the code it checks.
fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    let mut msg = data.to_vec();
    let bits = (data.len() as u64) * 8;
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bits.to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (chunk, word) in out.chunks_mut(4).zip(h) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// Base64 (RFC 4648, with padding).
fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(T[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

// ----- ad-hoc commands -------------------------------------------------

const NS_COMMANDS: &str = "http://jabber.org/protocol/commands";
const NS_DATA: &str = "jabber:x:data";

fn command_nodes(gw: &mut Gateway, from: &str, to: &str) -> Vec<String> {
    let out = ask(
        gw,
        &iq(
            from,
            to,
            "get",
            &format!("<query xmlns='{NS_DISCO_ITEMS}' node='{NS_COMMANDS}'/>"),
        ),
    );
    out[0]
        .get_child("query", NS_DISCO_ITEMS)
        .map(|q| {
            q.children()
                .filter_map(|i| i.attr("node").map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn execute(gw: &mut Gateway, from: &str, to: &str, inner: &str) -> Vec<Element> {
    ask(gw, &iq(from, to, "set", inner))
}

fn command_of(el: &Element) -> &Element {
    el.get_child("command", NS_COMMANDS)
        .unwrap_or_else(|| panic!("no command in {}", crate::xml::to_string(el)))
}

fn form_values(cmd: &Element) -> Vec<(String, String)> {
    cmd.get_child("x", NS_DATA)
        .unwrap()
        .children()
        .filter(|f| f.name() == "field")
        .map(|f| {
            (
                f.attr("var").unwrap().to_owned(),
                f.get_child("value", NS_DATA)
                    .map(|v| v.text())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

// ----- XEP-0323 readout and XEP-0325 control ---------------------------

const NS_CONTROL: &str = "urn:xmpp:iot:control";

fn sensordata_fields(el: &Element) -> Vec<(String, String, Option<String>)> {
    el.get_child("fields", crate::xml::NS_SENSORDATA)
        .and_then(|f| f.get_child("node", crate::xml::NS_SENSORDATA))
        .map(|n| {
            n.children()
                .flat_map(|ts| ts.children())
                .map(|f| {
                    (
                        f.attr("name").unwrap().to_owned(),
                        f.attr("value").unwrap().to_owned(),
                        f.attr("unit").map(str::to_owned),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

// ----- pubsub details ----------------------------------------------------

fn meta_data(gw: &mut Gateway) -> Vec<(String, String)> {
    let out = ask(
        gw,
        &iq(
            ALICE,
            DOMAIN,
            "get",
            "<query xmlns='http://jabber.org/protocol/disco#info' node='boiler'/>",
        ),
    );
    out[0]
        .get_child("query", NS_DISCO_INFO)
        .and_then(|q| q.get_child("x", "jabber:x:data"))
        .unwrap()
        .children()
        .map(|f| {
            (
                f.attr("var").unwrap().to_owned(),
                f.get_child("value", "jabber:x:data").unwrap().text(),
            )
        })
        .collect()
}

// ----- devices made at run time ----------------------------------------

fn plug() -> DeviceSpec {
    let point = PointSpec {
        id: PointId::new("power").unwrap(),
        kind: ValueKind::Float,
        settings: PointSettings {
            unit: Some(Unit("W".into())),
            ..Default::default()
        },
    };
    DeviceSpec {
        id: DeviceId::new("plug").unwrap(),
        settings: DeviceSettings::on(ConnectionId::new("broker").unwrap()),
        points: BTreeMap::from([(point.id.clone(), point)]),
    }
}

fn power(v: f64) -> DeviceEvent {
    DeviceEvent {
        device: DeviceId::new("plug").unwrap(),
        at: SystemTime::now(),
        kind: EventKind::Readings(vec![Sample {
            at: SystemTime::now(),
            reading: Reading {
                point: PointId::new("power").unwrap(),
                value: Value::Float(v),
                unit: Some(Unit("W".into())),
                quality: Quality::Good,
            },
        }]),
    }
}

// ----- hostile input: limits -------------------------------------------

/// The subscription elements of a subscribe answer, or its error text.
fn subscribe_as(gw: &mut Gateway, jid: &str) -> Result<(), String> {
    let out = ask(
        gw,
        &pubsub(
            jid,
            "set",
            &format!("<subscribe node='boiler' jid='{jid}'/>"),
        ),
    );
    match kind_of(&out[0]) {
        Some("result") => Ok(()),
        _ => Err(format!(
            "{} / {}",
            condition(&out[0]).unwrap_or_default(),
            out[0]
                .get_child("error", NS_COMPONENT)
                .and_then(|e| e.get_child("text", crate::xml::NS_STANZAS))
                .map(|t| t.text())
                .unwrap_or_default()
        )),
    }
}

// ----- what clients see: resources and caps ------------------------------

fn answer_of(gw: &mut Gateway, payload: &str) -> Element {
    let out = ask(gw, &iq(ALICE, "boiler@gw.example.org", "get", payload));
    out.into_iter().next().expect("an answer")
}

// ----- an item is the device's whole state ------------------------------

/// A device with three points, as a Modbus meter or a Tasmota plug.
fn meter() -> Arc<Directory> {
    let point = |id: &str, unit: Option<&str>| {
        let id = PointId::new(id).unwrap();
        let spec = PointSpec {
            id: id.clone(),
            kind: ValueKind::Float,
            settings: PointSettings {
                unit: unit.map(|u| Unit(u.into())),
                ..Default::default()
            },
        };
        (id, spec)
    };
    Arc::new(Directory::new([DeviceSpec {
        id: DeviceId::new("meter").unwrap(),
        settings: DeviceSettings::on(ConnectionId::new("sim").unwrap()),
        points: BTreeMap::from([
            point("current", Some("A")),
            point("power", Some("W")),
            point("voltage", Some("V")),
        ]),
    }]))
}

fn meter_gateway(dir: &std::path::Path) -> Gateway {
    let access = Access::new(&AccessConfig {
        read: vec!["example.org".into()],
        control: vec![],
    });
    let mut gw = Gateway::new(DOMAIN, "test", meter(), access, dir, Default::default()).unwrap();
    connect(&mut gw, Instant::now());
    subscribe_node(&mut gw, ALICE, "meter");
    gw
}

fn meter_readings(values: &[(&str, f64)], at: SystemTime) -> DeviceEvent {
    let unit = |p: &str| match p {
        "current" => "A",
        "power" => "W",
        _ => "V",
    };
    DeviceEvent {
        device: DeviceId::new("meter").unwrap(),
        at,
        kind: EventKind::Readings(
            values
                .iter()
                .map(|(p, v)| Sample {
                    at,
                    reading: Reading {
                        point: PointId::new(p).unwrap(),
                        value: Value::Float(*v),
                        unit: Some(Unit(unit(p).into())),
                        quality: Quality::Good,
                    },
                })
                .collect(),
        ),
    }
}

/// Every (point, value) of a notification or items answer's first item,
/// with the timestamp each is under.
fn state_of(el: &Element) -> Vec<(String, String, String)> {
    let item = first_item(el, NS_PUBSUB_EVENT)
        .or_else(|| first_item(el, NS_PUBSUB))
        .unwrap_or_else(|| panic!("no item in {}", crate::xml::to_string(el)));
    let node = item
        .get_child("fields", NS_SENSORDATA)
        .and_then(|f| f.get_child("node", NS_SENSORDATA))
        .unwrap();
    node.children()
        .flat_map(|ts| {
            let at = ts.attr("value").unwrap_or_default().to_owned();
            ts.children().map(move |f| {
                (
                    f.attr("name").unwrap_or_default().to_owned(),
                    f.attr("value").unwrap_or_default().to_owned(),
                    at.clone(),
                )
            })
        })
        .collect()
}

/// `jid` subscribes itself to `node`; the answers.
fn subscribe_node(gw: &mut Gateway, jid: &str, node: &str) -> Vec<Element> {
    ask(
        gw,
        &pubsub(
            jid,
            "set",
            &format!("<subscribe node='{node}' jid='{jid}'/>"),
        ),
    )
}

/// The XEP-0323 `seqnr` of a notification's item.
fn seqnr_in(m: &Element) -> u64 {
    first_item(m, NS_PUBSUB_EVENT)
        .and_then(|i| i.get_child("fields", NS_SENSORDATA).cloned())
        .and_then(|f| f.attr("seqnr").and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("no seqnr in {}", crate::xml::to_string(m)))
}

fn notifications(out: &[Element]) -> Vec<&Element> {
    out.iter()
        .filter(|e| e.name() == "message" && e.get_child("event", NS_PUBSUB_EVENT).is_some())
        .collect()
}

mod alerts;
mod audit;
mod card;
mod commands;
mod entity;
mod guard;
mod history;
mod iot;
mod items;
mod messages;
mod presence;
mod pubsub;
mod reload;
