use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use fieldbridge_core::{
    ConnectionId, DeviceSettings, DeviceSpec, PointSettings, PointSpec, Quality, Reading, Unit,
    Value, ValueKind,
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
            connection: ConnectionId::new("sim").unwrap(),
            poll: None,
            stale_after: None,
            history: None,
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

fn gateway_in(dir: &std::path::Path) -> Gateway {
    let access = Access::new(&AccessConfig {
        read: vec!["example.org".into()],
        control: vec![],
    });
    let mut gw = Gateway::new(DOMAIN, "test", directory(), access, dir).unwrap();
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
    gw.publish_due(now + items::ITEM_WINDOW);
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

#[test]
fn an_allowed_subscriber_gets_subscribed_and_the_current_presence_and_is_remembered() {
    let mut r = rig();
    let now = Instant::now();
    feed(&mut r.gw, status(DeviceStatus::Online), now);
    feed(&mut r.gw, reading(21.456), now);
    let out = ask(
        &mut r.gw,
        &presence(ALICE, "boiler@gw.example.org", "subscribe"),
    );
    assert_eq!(out.len(), 2);
    assert_eq!(kind_of(&out[0]), Some("subscribed"));
    assert_eq!(out[0].attr("to"), Some("alice@example.org"));
    assert_eq!(out[0].attr("from"), Some("boiler@gw.example.org"));
    assert_eq!(kind_of(&out[1]), None, "available");
    assert_eq!(status_of(&out[1]), "temperature 21.456 °C");

    // A new gateway on the same state dir still knows alice.
    let mut again = restart(r).gw;
    let out = again.all_presences(Instant::now());
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].attr("to"), Some("alice@example.org"));
    assert_eq!(status_of(&out[0]), "waiting for the first reading");
    assert_eq!(kind_of(&out[0]), Some("unavailable"));
}

#[test]
fn a_stranger_is_refused_and_learns_nothing() {
    let mut r = rig();
    feed(&mut r.gw, reading(21.0), Instant::now());
    let out = ask(
        &mut r.gw,
        &presence(MALLORY, "boiler@gw.example.org", "subscribe"),
    );
    assert_eq!(out.len(), 1);
    assert_eq!(kind_of(&out[0]), Some("unsubscribed"));
    assert!(!crate::xml::to_string(&out[0]).contains("21"));
    let out = ask(
        &mut r.gw,
        &presence(MALLORY, "boiler@gw.example.org", "probe"),
    );
    assert_eq!(kind_of(&out[0]), Some("unsubscribed"));
    let out = ask(
        &mut r.gw,
        &iq(
            MALLORY,
            DOMAIN,
            "get",
            "<query xmlns='http://jabber.org/protocol/disco#items'/>",
        ),
    );
    assert_eq!(condition(&out[0]).as_deref(), Some("forbidden"));
    assert!(out[0].get_child("query", NS_DISCO_ITEMS).is_none());
    assert!(
        r.gw.all_presences(Instant::now()).is_empty(),
        "not remembered"
    );
    assert_eq!(r.gw.stats().forbidden, 3);
}

#[test]
fn presence_tells_online_stale_and_offline_apart() {
    let mut r = rig();
    let now = Instant::now();
    ask(
        &mut r.gw,
        &presence(ALICE, "boiler@gw.example.org", "subscribe"),
    );
    feed(&mut r.gw, reading(20.0), now);
    let online = feed(&mut r.gw, status(DeviceStatus::Online), now);
    assert_eq!(
        (kind_of(&online[0]), status_of(&online[0]).as_str()),
        (None, "temperature 20 °C")
    );
    let stale = feed(&mut r.gw, status(DeviceStatus::Stale), now);
    assert_eq!(
        stale[0]
            .get_child("show", NS_COMPONENT)
            .map(|s| s.text())
            .as_deref(),
        Some("xa")
    );
    let offline = feed(
        &mut r.gw,
        status(DeviceStatus::Offline {
            reason: "connection refused".into(),
        }),
        now,
    );
    assert_eq!(kind_of(&offline[0]), Some("unavailable"));
    assert_eq!(status_of(&offline[0]), "connection refused");
    let bye = r.gw.goodbye();
    assert_eq!(
        (kind_of(&bye[0]), status_of(&bye[0]).as_str()),
        (Some("unavailable"), "gateway stopped")
    );
}

#[test]
fn status_text_refreshes_at_most_every_ten_seconds() {
    let mut r = rig();
    let t0 = Instant::now();
    let ms = Duration::from_millis;
    ask(
        &mut r.gw,
        &presence(ALICE, "boiler@gw.example.org", "subscribe"),
    );
    feed(&mut r.gw, reading(20.0), t0);
    let online = feed(&mut r.gw, status(DeviceStatus::Online), t0);
    assert_eq!(status_of(&online[0]), "temperature 20 °C");
    // The rest of the message that brought the device online: shown once it
    // settled, not ten seconds later.
    let out = feed(&mut r.gw, reading(21.0), t0 + ms(10));
    assert!(out.iter().all(|e| e.name() != "presence"), "too soon");
    assert!(r.gw.tick(t0 + ms(500)).is_empty());
    let out = r.gw.tick(t0 + STATUS_SETTLE);
    assert_eq!(out.len(), 1);
    assert_eq!(status_of(&out[0]), "temperature 21 °C");
    // From then on, at most every STATUS_INTERVAL.
    let t1 = t0 + STATUS_SETTLE;
    feed(&mut r.gw, reading(22.0), t1 + ms(100));
    assert!(r.gw.tick(t1 + Duration::from_secs(5)).is_empty());
    let out = r.gw.tick(t1 + STATUS_INTERVAL);
    assert_eq!(out.len(), 1);
    assert_eq!(status_of(&out[0]), "temperature 22 °C");
    assert!(
        r.gw.tick(t1 + STATUS_INTERVAL * 3).is_empty(),
        "nothing changed since"
    );
}

#[test]
fn node_subscribers_get_headline_notifications_with_increasing_ids() {
    let mut r = rig();
    let out = ask(
        &mut r.gw,
        &iq(
            ALICE,
            DOMAIN,
            "set",
            "<pubsub xmlns='http://jabber.org/protocol/pubsub'><subscribe node='boiler' jid='alice@example.org'/></pubsub>",
        ),
    );
    assert_eq!(kind_of(&out[0]), Some("result"));
    assert_eq!(out.len(), 1, "no item yet to send");
    let now = Instant::now();
    let first = feed(&mut r.gw, reading(20.0), now);
    let second = feed(&mut r.gw, reading(21.0), now);
    let id = |m: &Element| {
        assert_eq!(m.attr("type"), Some("headline"));
        m.get_child("event", NS_PUBSUB_EVENT)
            .and_then(|e| e.get_child("items", NS_PUBSUB_EVENT))
            .and_then(|i| i.get_child("item", NS_PUBSUB_EVENT))
            .and_then(|i| i.attr("id"))
            .unwrap()
            .to_owned()
    };
    assert_eq!(first[0].attr("to"), Some("alice@example.org"));
    // The id is the publication time in microseconds since the epoch, 16
    // digits, strictly increasing even within one microsecond.
    let published = |m: &Element| -> u64 { id(m).parse().unwrap() };
    let now_micros = fieldbridge_store::micros(SystemTime::now());
    assert_eq!(id(&first[0]).len(), 16);
    assert!(
        now_micros.abs_diff(published(&first[0])) < 60_000_000,
        "{}",
        id(&first[0])
    );
    assert!(published(&second[0]) > published(&first[0]));
    // A later subscriber gets the last item right away.
    let out = ask(
        &mut r.gw,
        &iq(
            "bob@example.org/laptop",
            DOMAIN,
            "set",
            "<pubsub xmlns='http://jabber.org/protocol/pubsub'><subscribe node='boiler' jid='bob@example.org/laptop'/></pubsub>",
        ),
    );
    assert_eq!(out.len(), 2);
    assert_eq!(out[1].attr("to"), Some("bob@example.org/laptop"));
    assert_eq!(id(&out[1]), id(&second[0]));
    assert_eq!(
        item_values(&out[1], NS_PUBSUB_EVENT),
        [(id(&second[0]), "21".to_owned())]
    );
}

#[test]
fn pubsub_refuses_subscribing_someone_else_and_unknown_nodes() {
    let mut r = rig();
    let out = ask(
        &mut r.gw,
        &iq(
            ALICE,
            DOMAIN,
            "set",
            "<pubsub xmlns='http://jabber.org/protocol/pubsub'><subscribe node='boiler' jid='bob@example.org'/></pubsub>",
        ),
    );
    assert_eq!(condition(&out[0]).as_deref(), Some("bad-request"));
    let error = out[0].get_child("error", NS_COMPONENT).unwrap();
    assert!(
        error
            .get_child("invalid-jid", crate::xml::NS_PUBSUB_ERRORS)
            .is_some(),
        "{}",
        crate::xml::to_string(&out[0])
    );
    let out = ask(
        &mut r.gw,
        &iq(
            ALICE,
            DOMAIN,
            "get",
            "<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='kettle'/></pubsub>",
        ),
    );
    assert_eq!(condition(&out[0]).as_deref(), Some("item-not-found"));
}

#[test]
fn discovery_lists_one_node_per_device() {
    let mut r = rig();
    let out = ask(
        &mut r.gw,
        &iq(
            ALICE,
            DOMAIN,
            "get",
            "<query xmlns='http://jabber.org/protocol/disco#items'/>",
        ),
    );
    let items: Vec<_> = out[0]
        .get_child("query", NS_DISCO_ITEMS)
        .unwrap()
        .children()
        .collect();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].attr("node"), Some("boiler"));
    assert_eq!(items[0].attr("name"), Some("Boiler room"));
    let out = ask(
        &mut r.gw,
        &iq(
            ALICE,
            DOMAIN,
            "get",
            "<query xmlns='http://jabber.org/protocol/disco#info'/>",
        ),
    );
    let identities: Vec<(Option<&str>, Option<&str>)> = out[0]
        .get_child("query", NS_DISCO_INFO)
        .unwrap()
        .children()
        .filter(|c| c.name() == "identity")
        .map(|i| (i.attr("category"), i.attr("type")))
        .collect();
    assert_eq!(
        identities,
        [(Some("pubsub"), Some("service"))],
        "{}",
        crate::xml::to_string(&out[0])
    );
}

#[test]
fn unknown_and_malformed_stanzas_get_an_error_or_nothing_never_a_crash() {
    let mut r = rig();
    // An IQ we do not handle: service-unavailable.
    let out = ask(
        &mut r.gw,
        &iq(ALICE, DOMAIN, "get", "<query xmlns='jabber:iq:oob'/>"),
    );
    assert_eq!(condition(&out[0]).as_deref(), Some("service-unavailable"));
    let out = ask(
        &mut r.gw,
        &iq(
            ALICE,
            "boiler@gw.example.org",
            "set",
            "<x xmlns='urn:unknown'/>",
        ),
    );
    assert_eq!(condition(&out[0]).as_deref(), Some("service-unavailable"));
    // No payload: bad-request.
    let out = ask(&mut r.gw, &iq(ALICE, DOMAIN, "get", ""));
    assert_eq!(condition(&out[0]).as_deref(), Some("bad-request"));
    // Replies and errors are never answered (no loops).
    assert!(ask(&mut r.gw, &iq(ALICE, DOMAIN, "result", "")).is_empty());
    assert!(ask(&mut r.gw, &iq(ALICE, DOMAIN, "error", "<error/>")).is_empty());
    // Nonsense types, missing or broken senders: dropped and counted.
    assert!(
        ask(
            &mut r.gw,
            &iq(ALICE, DOMAIN, "bogus", "<ping xmlns='urn:xmpp:ping'/>")
        )
        .is_empty()
    );
    assert!(ask(&mut r.gw, &parse("<iq xmlns='jabber:component:accept' type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>")).is_empty());
    assert!(ask(&mut r.gw, &stanza_from("not a jid@@", "<presence xmlns='jabber:component:accept' to='boiler@gw.example.org' type='subscribe'/>")).is_empty());
    assert!(
        ask(
            &mut r.gw,
            &presence(ALICE, "boiler@gw.example.org", "sleepy")
        )
        .is_empty()
    );
    assert!(ask(&mut r.gw, &stanza_from(ALICE, "<message xmlns='jabber:component:accept' to='boiler@gw.example.org' type='bogus'><body>hi</body></message>")).is_empty());
    assert!(ask(&mut r.gw, &stanza_from(ALICE, "<nonsense xmlns='urn:x'/>")).is_empty());
    assert_eq!(r.gw.stats().malformed, 4);
    // And the gateway still works.
    let out = ask(
        &mut r.gw,
        &iq(ALICE, DOMAIN, "get", "<ping xmlns='urn:xmpp:ping'/>"),
    );
    assert_eq!(kind_of(&out[0]), Some("result"));
}

#[test]
fn unsubscribing_forgets_the_subscriber() {
    let mut r = rig();
    ask(
        &mut r.gw,
        &presence(ALICE, "boiler@gw.example.org", "subscribe"),
    );
    let out = ask(
        &mut r.gw,
        &presence(ALICE, "boiler@gw.example.org", "unsubscribe"),
    );
    assert_eq!(kind_of(&out[0]), Some("unsubscribed"));
    assert!(r.gw.all_presences(Instant::now()).is_empty());
    assert!(restart(r).gw.all_presences(Instant::now()).is_empty());
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

#[test]
fn a_probe_from_a_reader_gets_the_current_presence() {
    let mut r = rig();
    let now = Instant::now();
    feed(&mut r.gw, status(DeviceStatus::Online), now);
    feed(&mut r.gw, reading(21.5), now);
    let out = ask(
        &mut r.gw,
        &presence(ALICE, "boiler@gw.example.org", "probe"),
    );
    assert_eq!(out.len(), 1);
    assert_eq!(kind_of(&out[0]), None, "available");
    assert_eq!(out[0].attr("to"), Some(ALICE));
    assert_eq!(status_of(&out[0]), "temperature 21.5 °C");
}

#[test]
fn notifications_carry_the_reading_in_the_sensordata_shape() {
    let mut r = rig();
    ask(
        &mut r.gw,
        &pubsub(
            ALICE,
            "set",
            "<subscribe node='boiler' jid='alice@example.org/phone'/>",
        ),
    );
    let mut event = reading(21.5);
    set_read_at(
        &mut event,
        SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_582_800_123),
    );
    let out = feed(&mut r.gw, event, Instant::now());
    let message = out
        .iter()
        .find(|e| e.name() == "message")
        .expect("a notification");
    assert_eq!(message.attr("type"), Some("headline"));
    assert_eq!(message.attr("from"), Some(DOMAIN));
    assert_eq!(message.attr("to"), Some(ALICE));
    let items = message
        .get_child("event", NS_PUBSUB_EVENT)
        .and_then(|e| e.get_child("items", NS_PUBSUB_EVENT))
        .unwrap();
    assert_eq!(items.attr("node"), Some("boiler"));
    let item = items.get_child("item", NS_PUBSUB_EVENT).unwrap();
    assert_eq!(item.attr("id").map(str::len), Some(16), "{item:?}");
    let fields = item.get_child("fields", crate::xml::NS_SENSORDATA).unwrap();
    assert_eq!(
        crate::xml::to_string(fields),
        "<fields xmlns='urn:xmpp:iot:sensordata' done='true' seqnr='1'><node nodeId='boiler'>\
<timestamp value='2026-11-25T05:00:00.123Z'>\
<numeric momentary='true' name='temperature' unit='°C' value='21.5'/>\
</timestamp></node></fields>"
    );
    assert_eq!(r.gw.stats().notifications, 1);
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

#[test]
fn items_retrieval_serves_the_history_in_publication_order() {
    let mut r = rig();
    let now = Instant::now();
    let empty = ask(&mut r.gw, &pubsub(ALICE, "get", "<items node='boiler'/>"));
    assert_eq!(kind_of(&empty[0]), Some("result"));
    assert!(
        first_item(&empty[0], NS_PUBSUB).is_none(),
        "nothing published yet"
    );
    for v in [20.0, 21.0, 22.0] {
        feed(&mut r.gw, reading(v), now);
    }
    let get = |gw: &mut Gateway, request: &str| {
        let out = ask(gw, &pubsub(ALICE, "get", request));
        item_values(&out[0], NS_PUBSUB)
    };
    let all = get(&mut r.gw, "<items node='boiler'/>");
    assert_eq!(
        values(&all),
        ["20", "21", "22"],
        "not yet written, still served"
    );
    assert!(
        all.windows(2).all(|w| w[0].0 < w[1].0),
        "ids ordered: {all:?}"
    );
    assert_eq!(
        values(&get(&mut r.gw, "<items node='boiler' max_items='1'/>")),
        ["22"]
    );
    assert_eq!(
        values(&get(&mut r.gw, "<items node='boiler' max_items='2'/>")),
        ["21", "22"]
    );
    // Written to the database, then asked by id.
    r.gw.save_now();
    let by_id = format!(
        "<items node='boiler'><item id='{}'/><item id='{}'/></items>",
        all[0].0, all[2].0
    );
    assert_eq!(values(&get(&mut r.gw, &by_id)), ["20", "22"]);
    assert_eq!(
        get(&mut r.gw, "<items node='boiler'/>"),
        all,
        "the same ids after the write"
    );
    let out = ask(
        &mut r.gw,
        &pubsub(ALICE, "get", "<items node='boiler' max_items='0'/>"),
    );
    assert!(first_item(&out[0], NS_PUBSUB).is_none());
    let out = ask(
        &mut r.gw,
        &pubsub(
            ALICE,
            "get",
            "<items node='boiler'><item id='0000000000000001'/></items>",
        ),
    );
    assert!(first_item(&out[0], NS_PUBSUB).is_none(), "an old id");
    // Strangers learn nothing.
    let out = ask(&mut r.gw, &pubsub(MALLORY, "get", "<items node='boiler'/>"));
    assert_eq!(condition(&out[0]).as_deref(), Some("forbidden"));
    assert!(!crate::xml::to_string(&out[0]).contains("22"));
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

#[test]
fn the_history_keeps_the_defaults_or_what_the_device_says() {
    let minute = Duration::from_secs(60);
    let boiler = (**directory().device("boiler").unwrap()).clone();
    assert_eq!(history::limits(&boiler), Limits::default());
    assert_eq!(
        Limits::default(),
        Limits {
            max_items: 10_000,
            max_age: 7 * 24 * 60 * minute
        },
        "documented in gateway.yaml"
    );
    // devices.boiler.history: { max_items: 3, max_age: 1h }
    let dir = tempfile::tempdir().unwrap();
    let mut spec = boiler;
    spec.settings.history = Some(fieldbridge_core::device::HistorySettings {
        max_items: Some(3),
        max_age: Some(60 * minute),
    });
    assert_eq!(
        history::limits(&spec),
        Limits {
            max_items: 3,
            max_age: 60 * minute
        }
    );
    let access = Access::new(&AccessConfig {
        read: vec!["example.org".into()],
        control: vec![],
    });
    let mut gw = Gateway::new(
        DOMAIN,
        "test",
        Arc::new(Directory::new([spec])),
        access,
        dir.path(),
    )
    .unwrap();
    connect(&mut gw, Instant::now());
    assert_eq!(
        kept_after(&mut gw, &[1.0, 2.0, 3.0, 4.0, 5.0]),
        ["3", "4", "5"],
        "the newest three"
    );
}

#[test]
fn pubsub_subscriptions_survive_a_restart_and_only_the_owner_unsubscribes() {
    let mut r = rig();
    let out = ask(
        &mut r.gw,
        &pubsub(
            ALICE,
            "set",
            "<subscribe node='boiler' jid='alice@example.org/phone'/>",
        ),
    );
    let sub = out[0]
        .get_child("pubsub", NS_PUBSUB)
        .and_then(|p| p.get_child("subscription", NS_PUBSUB))
        .unwrap();
    assert_eq!(sub.attr("subscription"), Some("subscribed"));
    assert_eq!(sub.attr("node"), Some("boiler"));

    let mut r = restart(r);
    let again = &mut r.gw;
    let out = feed(again, reading(20.0), Instant::now());
    assert_eq!(
        out.iter()
            .filter(|e| e.name() == "message" && e.attr("to") == Some(ALICE))
            .count(),
        1,
        "the subscription was loaded"
    );
    let out = ask(
        again,
        &pubsub(
            "bob@example.org/x",
            "set",
            "<unsubscribe node='boiler' jid='alice@example.org/phone'/>",
        ),
    );
    assert_eq!(condition(&out[0]).as_deref(), Some("bad-request"));
    let out = ask(
        again,
        &pubsub(
            ALICE,
            "set",
            "<unsubscribe node='boiler' jid='alice@example.org/phone'/>",
        ),
    );
    assert_eq!(kind_of(&out[0]), Some("result"));
    assert!(
        feed(again, reading(21.0), Instant::now())
            .iter()
            .all(|e| e.name() != "message")
    );
    let mut restarted = restart(r);
    assert!(feed(&mut restarted.gw, reading(21.0), Instant::now()).is_empty());
}

#[test]
fn nothing_is_ever_sent_back_to_our_own_domain_or_without_an_id() {
    let mut r = rig();
    // A bounce of our own keepalive, or a spoof: no reply, no loop.
    for from in [DOMAIN, "boiler@gw.example.org"] {
        assert!(
            ask(
                &mut r.gw,
                &iq(from, DOMAIN, "get", "<ping xmlns='urn:xmpp:ping'/>")
            )
            .is_empty(),
            "{from}"
        );
        assert!(
            ask(
                &mut r.gw,
                &presence(from, "boiler@gw.example.org", "subscribe")
            )
            .is_empty()
        );
    }
    let no_id = stanza_from(
        ALICE,
        "<iq xmlns='jabber:component:accept' to='gw.example.org' type='get'><ping xmlns='urn:xmpp:ping'/></iq>",
    );
    assert!(ask(&mut r.gw, &no_id).is_empty());
    assert_eq!(r.gw.stats().malformed, 5);
}

#[test]
fn the_service_and_nodes_are_discoverable() {
    let mut r = rig();
    let out = ask(
        &mut r.gw,
        &iq(
            ALICE,
            DOMAIN,
            "get",
            "<query xmlns='http://jabber.org/protocol/disco#info'/>",
        ),
    );
    let query = out[0].get_child("query", NS_DISCO_INFO).unwrap();
    let features: Vec<&str> = query
        .children()
        .filter(|c| c.name() == "feature")
        .filter_map(|c| c.attr("var"))
        .collect();
    for f in [NS_PUBSUB, NS_DISCO_INFO, NS_DISCO_ITEMS] {
        assert!(features.contains(&f), "{f} in {features:?}");
    }
    let out = ask(
        &mut r.gw,
        &iq(
            ALICE,
            DOMAIN,
            "get",
            "<query xmlns='http://jabber.org/protocol/disco#info' node='boiler'/>",
        ),
    );
    let identity = out[0]
        .get_child("query", NS_DISCO_INFO)
        .and_then(|q| q.get_child("identity", NS_DISCO_INFO))
        .unwrap();
    assert_eq!(identity.attr("type"), Some("leaf"));
    let out = ask(
        &mut r.gw,
        &iq(
            ALICE,
            DOMAIN,
            "get",
            "<query xmlns='http://jabber.org/protocol/disco#info' node='kettle'/>",
        ),
    );
    assert_eq!(condition(&out[0]).as_deref(), Some("item-not-found"));
}

#[test]
fn a_reconnect_resends_presence_and_the_last_items() {
    let mut r = rig();
    let now = Instant::now();
    ask(
        &mut r.gw,
        &presence(ALICE, "boiler@gw.example.org", "subscribe"),
    );
    ask(
        &mut r.gw,
        &pubsub(
            ALICE,
            "set",
            "<subscribe node='boiler' jid='alice@example.org/phone'/>",
        ),
    );
    // Read while the link was down: nothing can go out then.
    r.gw.on_disconnected();
    feed(&mut r.gw, status(DeviceStatus::Online), now);
    assert!(feed(&mut r.gw, reading(23.0), now).is_empty());
    let out = connect(&mut r.gw, now);
    let presence = out.iter().find(|e| e.name() == "presence").unwrap();
    assert_eq!(status_of(presence), "temperature 23 °C");
    let message = out.iter().find(|e| e.name() == "message").unwrap();
    assert_eq!(message.attr("to"), Some(ALICE));
    assert_eq!(values(&item_values(message, NS_PUBSUB_EVENT)), ["23"]);
}

#[test]
fn publishing_to_a_device_node_is_not_offered() {
    let mut r = rig();
    let out = ask(
        &mut r.gw,
        &pubsub(
            ALICE,
            "set",
            "<publish node='boiler'><item><x xmlns='urn:x'/></item></publish>",
        ),
    );
    assert_eq!(
        condition(&out[0]).as_deref(),
        Some("feature-not-implemented")
    );
    let unsupported = out[0]
        .get_child("error", NS_COMPONENT)
        .and_then(|e| e.get_child("unsupported", crate::xml::NS_PUBSUB_ERRORS))
        .unwrap_or_else(|| panic!("{}", crate::xml::to_string(&out[0])));
    assert_eq!(unsupported.attr("feature"), Some("publish"));
    assert_eq!(r.gw.stats().unsupported, 1);
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
            unit: Some(Unit("°C".into())),
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

#[test]
fn chat_replies_come_from_the_device_in_the_same_type_and_thread() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = chat_gateway(dir.path());
    for kind in ["chat", "normal"] {
        let out = ask(&mut gw, &chat(ALICE, "boiler@gw.example.org", kind, "help"));
        assert_eq!(out.len(), 1);
        let r = &out[0];
        assert_eq!(r.name(), "message");
        assert_eq!(r.attr("type"), Some(kind));
        assert_eq!(
            r.attr("from"),
            Some("boiler@gw.example.org/test"),
            "from the device's resource, as its presence"
        );
        assert_eq!(r.attr("to"), Some(ALICE), "to the full JID that asked");
        assert_eq!(
            r.get_child("thread", NS_COMPONENT).map(|t| t.text()),
            Some("t-42".to_owned())
        );
    }
}

#[test]
fn help_lists_set_only_for_controllers_and_unknown_words_get_help() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = chat_gateway(dir.path());
    let alice = body_of(&one_reply(&mut gw, ALICE, "help"));
    assert!(
        alice.contains("set <point> <value>: change setpoint"),
        "{alice}"
    );
    assert!(
        alice.contains("get <point>: one reading (setpoint, temperature)"),
        "{alice}"
    );
    let bob = body_of(&one_reply(&mut gw, BOB, "help"));
    assert!(!bob.contains("set <point>"), "{bob}");
    assert_eq!(body_of(&one_reply(&mut gw, BOB, "what is this")), bob);
}

#[test]
fn status_and_get_show_values_units_age_and_quality() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = chat_gateway(dir.path());
    let now = Instant::now();
    feed(&mut gw, status(DeviceStatus::Online), now);
    let mut ev = reading(21.5);
    set_read_at(&mut ev, SystemTime::now() - Duration::from_secs(3));
    feed(&mut gw, ev, now);

    let s = body_of(&one_reply(&mut gw, BOB, "status"));
    let mut lines = s.lines();
    assert_eq!(lines.next(), Some("Boiler room: online"));
    assert_eq!(lines.next(), Some("setpoint: no reading yet"));
    let t = lines.next().unwrap();
    assert!(t.starts_with("temperature 21.5 °C ("), "{t}");
    assert!(t.ends_with(" s ago)"), "{t}");

    let g = body_of(&one_reply(&mut gw, BOB, "get temperature"));
    assert!(g.starts_with("temperature 21.5 °C ("), "{g}");

    let mut bad = reading(0.0);
    if let EventKind::Readings(samples) = &mut bad.kind {
        samples[0].reading.quality = Quality::Bad {
            reason: "no answer".into(),
        };
    }
    feed(&mut gw, bad, now);
    let g = body_of(&one_reply(&mut gw, BOB, "get temperature"));
    assert!(g.ends_with("ago), bad: no answer"), "{g}");

    let unknown = body_of(&one_reply(&mut gw, BOB, "get pressure"));
    assert_eq!(
        unknown,
        "Boiler room has no point \"pressure\"; its points: setpoint, temperature."
    );
}

#[test]
fn set_is_queued_only_for_controllers_on_writable_points_with_valid_values() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = chat_gateway(dir.path());

    let refused = body_of(&one_reply(&mut gw, BOB, "set setpoint 55"));
    assert_eq!(
        refused,
        "You may not change this device (not in access.control)."
    );
    let ro = body_of(&one_reply(&mut gw, ALICE, "set temperature 5"));
    assert_eq!(ro, "temperature is read-only.");
    let bad = body_of(&one_reply(&mut gw, ALICE, "set setpoint warm"));
    assert_eq!(bad, "setpoint: \"warm\" is not a number");
    assert!(
        gw.take_jobs(usize::MAX).is_empty(),
        "nothing reached the adapter"
    );

    let out = ask(
        &mut gw,
        &chat(ALICE, "boiler@gw.example.org", "chat", "set setpoint 55.5"),
    );
    assert!(out.is_empty(), "the answer waits for the adapter");
    let mut jobs = gw.take_jobs(usize::MAX);
    assert_eq!(jobs.len(), 1);
    let w = jobs.pop().unwrap();
    assert_eq!(w.device.as_str(), "boiler");
    assert_eq!(
        w.action,
        JobAction::Write {
            point: PointId::new("setpoint").unwrap(),
            value: Value::Float(55.5)
        }
    );
    assert!(gw.take_jobs(usize::MAX).is_empty(), "taken once");

    let ok = gw
        .job_done(w.clone(), JobOutcome::Written(Ok(Value::Float(55.5))))
        .remove(0);
    assert_eq!(body_of(&ok), "setpoint set to 55.5 °C.");
    assert_eq!(ok.attr("to"), Some(ALICE));
    assert_eq!(ok.attr("type"), Some("chat"));
    let failed = gw
        .job_done(
            w,
            JobOutcome::Written(Err(fieldbridge_core::CommandError::Failed(
                "device answered NAK".into(),
            ))),
        )
        .remove(0);
    assert_eq!(
        body_of(&failed),
        "Could not set setpoint: device answered NAK"
    );
}

#[test]
fn chat_from_outsiders_or_to_unknown_devices_is_forbidden_alike() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = chat_gateway(dir.path());
    for (from, to) in [
        (MALLORY, "boiler@gw.example.org"),
        (MALLORY, "ghost@gw.example.org"),
        (ALICE, "ghost@gw.example.org"),
    ] {
        let out = ask(&mut gw, &chat(from, to, "chat", "status"));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].attr("type"), Some("error"));
        assert_eq!(condition(&out[0]).as_deref(), Some("forbidden"));
        assert_eq!(body_of(&out[0]), "", "no device details");
        assert_eq!(out[0].attr("id"), Some("m1"));
    }
    assert_eq!(gw.stats().forbidden, 3);
}

#[test]
fn messages_that_are_not_commands_get_no_reply() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = chat_gateway(dir.path());
    for kind in ["headline", "groupchat", "error", "bogus"] {
        let out = ask(
            &mut gw,
            &chat(ALICE, "boiler@gw.example.org", kind, "status"),
        );
        assert!(out.is_empty(), "{kind}: {out:?}");
    }
    let no_body = stanza_from(
        ALICE,
        "<message xmlns='jabber:component:accept' to='boiler@gw.example.org' type='chat'>\
         <active xmlns='http://jabber.org/protocol/chatstates'/></message>",
    );
    assert!(ask(&mut gw, &no_body).is_empty());
    let to_service = chat(ALICE, DOMAIN, "chat", "status");
    assert!(ask(&mut gw, &to_service).is_empty());
    assert_eq!(gw.stats().chat_commands, 0);
}

#[test]
fn every_item_published_while_disconnected_is_sent_on_reconnect_in_order() {
    let mut r = rig();
    let now = Instant::now();
    ask(
        &mut r.gw,
        &pubsub(
            ALICE,
            "set",
            "<subscribe node='boiler' jid='alice@example.org/phone'/>",
        ),
    );
    let reading_at = |v: f64, ago: u64| {
        let mut e = reading(v);
        set_read_at(&mut e, SystemTime::now() - Duration::from_secs(ago));
        e
    };
    let before = feed(&mut r.gw, reading_at(1.0, 60), now);
    let sent_before = item_values(&before[0], NS_PUBSUB_EVENT);
    // Published just before the link died: perhaps lost in flight.
    feed(&mut r.gw, reading_at(1.5, 2), now);
    r.gw.on_disconnected();
    for i in 2..=40 {
        assert!(feed(&mut r.gw, reading_at(f64::from(i), 1), now).is_empty());
        if i == 20 {
            // Half of them reach the database before the link returns.
            r.gw.save_now();
        }
    }
    let out = connect(&mut r.gw, now);
    let sent: Vec<(String, String)> = out
        .iter()
        .filter(|e| e.name() == "message")
        .flat_map(|m| item_values(m, NS_PUBSUB_EVENT))
        .collect();
    // Both items before the outage were published within REPLAY_MARGIN
    // of it (just now): they may have been in flight, so they come again.
    let want: Vec<String> = ["1", "1.5"]
        .map(str::to_owned)
        .into_iter()
        .chain((2..=40).map(|i| i.to_string()))
        .collect();
    assert_eq!(
        values(&sent),
        want,
        "the last seconds before the outage again, then all missed items, in order"
    );
    assert_eq!(sent[0].0, sent_before[0].0, "the same item, by its id");
    assert!(sent.windows(2).all(|w| w[0].0 < w[1].0));
    assert!(
        connect(&mut r.gw, now)
            .iter()
            .all(|e| e.name() != "message"),
        "nothing twice once delivered"
    );
}

#[test]
fn the_history_and_item_sequence_survive_a_restart() {
    let mut r = rig();
    let now = Instant::now();
    for v in [1.0, 2.0] {
        feed(&mut r.gw, reading(v), now);
    }
    let before = ask(&mut r.gw, &pubsub(ALICE, "get", "<items node='boiler'/>"));
    r.gw.save_now();
    let mut r = restart(r);
    let after = ask(&mut r.gw, &pubsub(ALICE, "get", "<items node='boiler'/>"));
    assert_eq!(
        item_values(&after[0], NS_PUBSUB),
        item_values(&before[0], NS_PUBSUB)
    );
    ask(
        &mut r.gw,
        &pubsub(
            ALICE,
            "set",
            "<subscribe node='boiler' jid='alice@example.org/phone'/>",
        ),
    );
    let next = feed(&mut r.gw, reading(3.0), now);
    let seqnr = next[0]
        .get_child("event", NS_PUBSUB_EVENT)
        .and_then(|e| e.get_child("items", NS_PUBSUB_EVENT))
        .and_then(|i| i.get_child("item", NS_PUBSUB_EVENT))
        .and_then(|i| i.get_child("fields", crate::xml::NS_SENSORDATA))
        .and_then(|f| f.attr("seqnr"))
        .map(str::to_owned);
    // Past any number a crash could have left unsaved (see `resume`).
    let expected = (2 + history::MAX_UNWRITTEN + 2).to_string();
    assert_eq!(
        seqnr.as_deref(),
        Some(expected.as_str()),
        "the sequence goes on, past what may have been lost"
    );
}

#[test]
fn a_crash_never_makes_the_sequence_repeat_a_number_already_sent() {
    let mut r = rig();
    ask(
        &mut r.gw,
        &pubsub(
            ALICE,
            "set",
            "<subscribe node='boiler' jid='alice@example.org/phone'/>",
        ),
    );
    let now = Instant::now();
    let seqnr_of = |out: &[Element]| -> u64 {
        out.iter()
            .find_map(|m| {
                m.get_child("event", NS_PUBSUB_EVENT)?
                    .get_child("items", NS_PUBSUB_EVENT)?
                    .get_child("item", NS_PUBSUB_EVENT)?
                    .get_child("fields", crate::xml::NS_SENSORDATA)?
                    .attr("seqnr")?
                    .parse()
                    .ok()
            })
            .expect("a notification")
    };
    feed(&mut r.gw, reading(1.0), now);
    r.gw.save_now();
    // A full batch is sent but never written: the process dies.
    let mut sent = 0;
    for i in 0..history::MAX_UNWRITTEN {
        sent = seqnr_of(&feed(&mut r.gw, reading(i as f64), now));
    }
    r.gw.publish_all();
    // The process dies: nothing more is written.
    let Rig { gw, dir } = r;
    drop(gw);
    let mut r = Rig {
        gw: gateway_in(dir.path()),
        dir,
    };
    let next = seqnr_of(&feed(&mut r.gw, reading(9.0), now));
    assert!(next > sent, "{next} after {sent}");
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

#[test]
fn devices_and_the_service_answer_version_time_last_activity_and_ping() {
    let mut r = rig();
    for to in ["boiler@gw.example.org", DOMAIN] {
        let v = answer(&mut r.gw, to, "<query xmlns='jabber:iq:version'/>");
        let q = v.get_child("query", entity::NS_VERSION).unwrap();
        assert_eq!(
            q.get_child("name", entity::NS_VERSION).unwrap().text(),
            "fieldbridge"
        );
        assert_eq!(
            q.get_child("version", entity::NS_VERSION).unwrap().text(),
            env!("CARGO_PKG_VERSION")
        );
        let t = answer(&mut r.gw, to, "<time xmlns='urn:xmpp:time'/>");
        let t = t.get_child("time", entity::NS_TIME).unwrap();
        assert_eq!(
            t.get_child("tzo", entity::NS_TIME).unwrap().text(),
            "+00:00"
        );
        let utc = t.get_child("utc", entity::NS_TIME).unwrap().text();
        assert!(utc.ends_with('Z') && utc.len() == 24, "{utc}");
        answer(&mut r.gw, to, "<ping xmlns='urn:xmpp:ping'/>");
    }
    // Last activity: seconds since the device's last reading.
    let mut ev = reading(20.0);
    set_read_at(&mut ev, SystemTime::now() - Duration::from_secs(42));
    feed(&mut r.gw, ev, Instant::now());
    let last = answer(
        &mut r.gw,
        "boiler@gw.example.org",
        "<query xmlns='jabber:iq:last'/>",
    );
    let seconds: u64 = last
        .get_child("query", entity::NS_LAST)
        .and_then(|q| q.attr("seconds"))
        .unwrap()
        .parse()
        .unwrap();
    assert!((42..45).contains(&seconds), "{seconds}");
}

#[test]
fn a_device_describes_itself_and_lists_its_points() {
    let mut r = rig();
    let info = answer(
        &mut r.gw,
        "boiler@gw.example.org",
        "<query xmlns='http://jabber.org/protocol/disco#info'/>",
    );
    let q = info.get_child("query", NS_DISCO_INFO).unwrap();
    let identity = q.get_child("identity", NS_DISCO_INFO).unwrap();
    assert_eq!(identity.attr("category"), Some("client"));
    assert_eq!(identity.attr("type"), Some("bot"));
    assert_eq!(identity.attr("name"), Some("Boiler room"));
    let features: Vec<&str> = q.children().filter_map(|f| f.attr("var")).collect();
    for f in [
        "jabber:iq:version",
        "jabber:iq:last",
        "urn:xmpp:time",
        "urn:xmpp:ping",
    ] {
        assert!(features.contains(&f), "{f} missing from {features:?}");
    }
    let items = answer(
        &mut r.gw,
        "boiler@gw.example.org",
        "<query xmlns='http://jabber.org/protocol/disco#items'/>",
    );
    let item = items
        .get_child("query", NS_DISCO_ITEMS)
        .and_then(|q| q.get_child("item", NS_DISCO_ITEMS))
        .unwrap();
    assert_eq!(item.attr("node"), Some("temperature"));
    assert_eq!(item.attr("name"), Some("temperature (°C)"));
    assert_eq!(item.attr("jid"), Some("boiler@gw.example.org"));
}

#[test]
fn every_presence_carries_caps_matching_the_disco_answer() {
    let mut r = rig();
    let out = ask(
        &mut r.gw,
        &presence(ALICE, "boiler@gw.example.org", "subscribe"),
    );
    let c = out[1]
        .get_child("c", entity::NS_CAPS)
        .expect("caps in presence");
    assert_eq!(c.attr("hash"), Some("sha-1"));
    assert_eq!(c.attr("node"), Some(entity::CAPS_NODE));
    let info = answer(
        &mut r.gw,
        "boiler@gw.example.org",
        "<query xmlns='http://jabber.org/protocol/disco#info'/>",
    );
    let q = info.get_child("query", NS_DISCO_INFO).unwrap();
    assert_eq!(c.attr("ver"), Some(caps_ver_by_hand(q).as_str()));
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

#[test]
fn the_hand_made_caps_hash_gives_the_xep_0115_example() {
    // XEP-0115 §5.2: Exodus' disco#info and its ver.
    let s = "client/pc//Exodus 0.9.1<http://jabber.org/protocol/caps<\
             http://jabber.org/protocol/disco#info<http://jabber.org/protocol/disco#items<\
             http://jabber.org/protocol/muc<";
    assert_eq!(base64(&sha1(s.as_bytes())), "QgayPKawpkPSDYmwT/WM94uAlu0=");
    assert_eq!(
        sha1(b"abc"),
        [
            0xa9, 0x99, 0x3e, 0x36, 0x47, 0x06, 0x81, 0x6a, 0xba, 0x3e, 0x25, 0x71, 0x78, 0x50,
            0xc2, 0x6c, 0x9c, 0xd0, 0xd8, 0x9d
        ]
    );
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

#[test]
fn the_command_list_holds_only_what_the_sender_may_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = chat_gateway(dir.path());
    let boiler = "boiler@gw.example.org";
    assert_eq!(
        command_nodes(&mut gw, ALICE, boiler),
        ["read", "set", "info"]
    );
    assert_eq!(command_nodes(&mut gw, BOB, boiler), ["read", "info"]);
    assert_eq!(command_nodes(&mut gw, ALICE, DOMAIN), ["list"]);
    let out = ask(
        &mut gw,
        &iq(
            MALLORY,
            boiler,
            "get",
            &format!("<query xmlns='{NS_DISCO_ITEMS}' node='{NS_COMMANDS}'/>"),
        ),
    );
    assert_eq!(condition(&out[0]).as_deref(), Some("forbidden"));
    // A reader running Set, at its first step or by submitting the form
    // directly, is refused as a chat `set` is: forbidden (XEP-0050 §4.4).
    for command in [
        format!("<command xmlns='{NS_COMMANDS}' node='set' action='execute'/>"),
        format!(
            "<command xmlns='{NS_COMMANDS}' node='set' sessionid='fb-1' action='complete'>\
             <x xmlns='{NS_DATA}' type='submit'><field var='point'><value>setpoint</value></field>\
             <field var='value'><value>60</value></field></x></command>"
        ),
    ] {
        let out = execute(&mut gw, BOB, boiler, &command);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(
            condition(&out[0]).as_deref(),
            Some("forbidden"),
            "{command}"
        );
    }
    // A command that does not exist is not found.
    let out = execute(
        &mut gw,
        BOB,
        boiler,
        &format!("<command xmlns='{NS_COMMANDS}' node='reboot' action='execute'/>"),
    );
    assert_eq!(condition(&out[0]).as_deref(), Some("item-not-found"));
}

#[test]
fn set_a_point_is_a_two_stage_form_that_ends_as_a_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = chat_gateway(dir.path());
    let boiler = "boiler@gw.example.org";
    let out = execute(
        &mut gw,
        ALICE,
        boiler,
        &format!("<command xmlns='{NS_COMMANDS}' node='set' action='execute'/>"),
    );
    let cmd = command_of(&out[0]);
    assert_eq!(cmd.attr("status"), Some("executing"));
    let session = cmd.attr("sessionid").unwrap().to_owned();
    let x = cmd.get_child("x", NS_DATA).unwrap();
    assert_eq!(x.attr("type"), Some("form"));
    let options: Vec<String> = x
        .children()
        .find(|f| f.attr("var") == Some("point"))
        .unwrap()
        .children()
        .filter_map(|o| o.get_child("value", NS_DATA).map(|v| v.text()))
        .collect();
    assert_eq!(options, ["setpoint"], "only writable points");

    let submit = |value: &str| {
        format!(
            "<command xmlns='{NS_COMMANDS}' node='set' sessionid='{session}' action='complete'>\
             <x xmlns='{NS_DATA}' type='submit'>\
             <field var='point'><value>setpoint</value></field>\
             <field var='value'><value>{value}</value></field></x></command>"
        )
    };
    let bad = execute(&mut gw, ALICE, boiler, &submit("hot"));
    assert_eq!(condition(&bad[0]).as_deref(), Some("bad-request"));
    assert!(gw.take_jobs(usize::MAX).is_empty());

    assert!(
        execute(&mut gw, ALICE, boiler, &submit("60")).is_empty(),
        "waits for the adapter"
    );
    let job = gw.take_jobs(usize::MAX).pop().unwrap();
    assert_eq!(
        job.action,
        JobAction::Write {
            point: PointId::new("setpoint").unwrap(),
            value: Value::Float(60.0)
        }
    );
    let done = gw
        .job_done(job, JobOutcome::Written(Ok(Value::Float(60.0))))
        .remove(0);
    assert_eq!(kind_of(&done), Some("result"));
    assert_eq!(done.attr("id"), Some("q1"));
    let cmd = command_of(&done);
    assert_eq!(cmd.attr("status"), Some("completed"));
    assert_eq!(cmd.attr("sessionid"), Some(session.as_str()));
    let note = cmd.get_child("note", NS_COMMANDS).unwrap();
    assert_eq!(note.attr("type"), Some("info"));
    assert_eq!(note.text(), "setpoint set to 60 °C.");

    let canceled = execute(
        &mut gw,
        ALICE,
        boiler,
        &format!(
            "<command xmlns='{NS_COMMANDS}' node='set' sessionid='{session}' action='cancel'/>"
        ),
    );
    assert_eq!(command_of(&canceled[0]).attr("status"), Some("canceled"));
}

#[test]
fn read_now_info_and_list_report_the_device() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = chat_gateway(dir.path());
    let boiler = "boiler@gw.example.org";
    feed(&mut gw, status(DeviceStatus::Online), Instant::now());
    feed(&mut gw, reading(21.5), Instant::now());

    assert!(
        execute(
            &mut gw,
            BOB,
            boiler,
            &format!("<command xmlns='{NS_COMMANDS}' node='read'/>")
        )
        .is_empty()
    );
    let job = gw.take_jobs(usize::MAX).pop().unwrap();
    let JobAction::Read(points) = &job.action else {
        panic!("a read")
    };
    assert_eq!(points.len(), 2);
    let outcome = JobOutcome::Values(vec![
        (PointId::new("setpoint").unwrap(), Ok(Value::Float(50.0))),
        (
            PointId::new("temperature").unwrap(),
            Err(fieldbridge_core::CommandError::Failed(
                "sensor unplugged".into(),
            )),
        ),
    ]);
    let done = gw.job_done(job, outcome).remove(0);
    assert_eq!(
        form_values(command_of(&done)),
        [
            ("setpoint".to_owned(), "50 °C".to_owned()),
            (
                "temperature".to_owned(),
                "error: sensor unplugged".to_owned()
            )
        ]
    );

    let info = execute(
        &mut gw,
        BOB,
        boiler,
        &format!("<command xmlns='{NS_COMMANDS}' node='info'/>"),
    );
    let values = form_values(command_of(&info[0]));
    assert_eq!(values[0], ("jid".to_owned(), boiler.to_owned()));
    assert_eq!(values[1], ("status".to_owned(), "online".to_owned()));
    assert_eq!(
        values[2],
        (
            "point.setpoint".to_owned(),
            "setpoint: no reading yet".to_owned()
        )
    );
    assert!(
        values[3].1.starts_with("temperature 21.5 °C ("),
        "{values:?}"
    );

    let list = execute(
        &mut gw,
        BOB,
        DOMAIN,
        &format!("<command xmlns='{NS_COMMANDS}' node='list'/>"),
    );
    assert_eq!(
        form_values(command_of(&list[0])),
        [(
            "boiler".to_owned(),
            "online: temperature 21.5 °C".to_owned()
        )]
    );
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

#[test]
fn a_momentary_readout_is_accepted_then_answered_with_fresh_fields() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = chat_gateway(dir.path());
    let boiler = "boiler@gw.example.org";
    // XEP-0323 §3.1, with our JIDs.
    let out = ask(
        &mut gw,
        &iq(
            BOB,
            boiler,
            "get",
            "<req xmlns='urn:xmpp:iot:sensordata' seqnr='1' momentary='true'/>",
        ),
    );
    assert_eq!(out.len(), 1);
    assert_eq!(kind_of(&out[0]), Some("result"));
    let accepted = out[0]
        .get_child("accepted", crate::xml::NS_SENSORDATA)
        .unwrap();
    assert_eq!(accepted.attr("seqnr"), Some("1"));
    let job = gw.take_jobs(usize::MAX).pop().unwrap();
    assert_eq!(
        job.action,
        JobAction::Read(vec![
            PointId::new("setpoint").unwrap(),
            PointId::new("temperature").unwrap()
        ])
    );
    let outcome = JobOutcome::Values(vec![
        (PointId::new("setpoint").unwrap(), Ok(Value::Float(50.0))),
        (PointId::new("temperature").unwrap(), Ok(Value::Float(23.4))),
    ]);
    let done = gw.job_done(job, outcome);
    assert_eq!(done.len(), 1);
    let m = &done[0];
    assert_eq!(m.name(), "message");
    assert_eq!(m.attr("to"), Some(BOB));
    assert_eq!(m.attr("from"), Some(boiler));
    let fields = m.get_child("fields", crate::xml::NS_SENSORDATA).unwrap();
    assert_eq!(fields.attr("seqnr"), Some("1"));
    assert_eq!(fields.attr("done"), Some("true"));
    assert_eq!(
        sensordata_fields(m),
        [
            ("setpoint".into(), "50".into(), Some("°C".into())),
            ("temperature".into(), "23.4".into(), Some("°C".into()))
        ]
    );
}

#[test]
fn a_readout_of_named_fields_reads_only_those_and_reports_failures() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = chat_gateway(dir.path());
    // XEP-0323 §3.6: read-out of specific fields.
    ask(
        &mut gw,
        &iq(
            BOB,
            "boiler@gw.example.org",
            "get",
            "<req xmlns='urn:xmpp:iot:sensordata' seqnr='4' momentary='true'>\
         <field name='temperature'/></req>",
        ),
    );
    let job = gw.take_jobs(usize::MAX).pop().unwrap();
    assert_eq!(
        job.action,
        JobAction::Read(vec![PointId::new("temperature").unwrap()])
    );
    let outcome = JobOutcome::Values(vec![(
        PointId::new("temperature").unwrap(),
        Err(fieldbridge_core::CommandError::Failed("timeout".into())),
    )]);
    let done = gw.job_done(job, outcome);
    assert_eq!(done.len(), 1, "nothing read: only the failure");
    let failure = done[0]
        .get_child("failure", crate::xml::NS_SENSORDATA)
        .unwrap();
    assert_eq!(failure.attr("seqnr"), Some("4"));
    assert_eq!(failure.attr("done"), Some("true"));
    let error = failure
        .get_child("error", crate::xml::NS_SENSORDATA)
        .unwrap();
    assert_eq!(error.attr("nodeId"), Some("boiler"));
    assert_eq!(error.text(), "temperature: timeout");
}

#[test]
fn a_historical_readout_is_served_from_the_history() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = chat_gateway(dir.path());
    for v in [20.0, 21.0] {
        feed(&mut gw, reading(v), Instant::now());
    }
    let out = ask(
        &mut gw,
        &iq(
            BOB,
            "boiler@gw.example.org",
            "get",
            "<req xmlns='urn:xmpp:iot:sensordata' seqnr='7' historicalOther='true'/>",
        ),
    );
    assert_eq!(out.len(), 2, "accepted, then the values: {out:?}");
    assert!(
        gw.take_jobs(usize::MAX).is_empty(),
        "nothing asked of the adapter"
    );
    let fields = out[1]
        .get_child("fields", crate::xml::NS_SENSORDATA)
        .unwrap();
    assert_eq!(fields.attr("done"), Some("true"));
    assert_eq!(
        sensordata_fields(&out[1]),
        [
            ("temperature".into(), "20".into(), Some("°C".into())),
            ("temperature".into(), "21".into(), Some("°C".into()))
        ]
    );
    let first = fields
        .get_child("node", crate::xml::NS_SENSORDATA)
        .and_then(|n| n.get_child("timestamp", crate::xml::NS_SENSORDATA))
        .and_then(|t| t.children().next())
        .unwrap();
    assert_eq!(first.attr("historicalOther"), Some("true"));
    assert_eq!(first.attr("momentary"), None);
}

#[test]
fn control_sets_writable_points_for_controllers_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = chat_gateway(dir.path());
    let boiler = "boiler@gw.example.org";
    let set = |value: &str, name: &str| {
        format!("<set xmlns='{NS_CONTROL}'><double name='{name}' value='{value}'/></set>")
    };
    let out = ask(&mut gw, &iq(BOB, boiler, "set", &set("55", "setpoint")));
    assert_eq!(condition(&out[0]).as_deref(), Some("forbidden"));
    let out = ask(&mut gw, &iq(ALICE, boiler, "set", &set("5", "temperature")));
    assert_eq!(
        condition(&out[0]).as_deref(),
        Some("bad-request"),
        "read-only"
    );
    let out = ask(&mut gw, &iq(ALICE, boiler, "set", &set("warm", "setpoint")));
    assert_eq!(
        condition(&out[0]).as_deref(),
        Some("bad-request"),
        "not a number"
    );
    assert!(gw.take_jobs(usize::MAX).is_empty());

    // XEP-0325 §3.3-style: one parameter, then the result once written.
    let out = ask(&mut gw, &iq(ALICE, boiler, "set", &set("55.5", "setpoint")));
    assert!(out.is_empty(), "waits for the adapter");
    let job = gw.take_jobs(usize::MAX).pop().unwrap();
    assert_eq!(
        job.action,
        JobAction::WriteMany(vec![(
            PointId::new("setpoint").unwrap(),
            Value::Float(55.5)
        )])
    );
    let ok = gw.job_done(
        job.clone(),
        JobOutcome::Values(vec![(
            PointId::new("setpoint").unwrap(),
            Ok(Value::Float(55.5)),
        )]),
    );
    assert_eq!(kind_of(&ok[0]), Some("result"));
    assert_eq!(ok[0].attr("id"), Some("q1"));
    let failed = gw.job_done(
        job,
        JobOutcome::Values(vec![(
            PointId::new("setpoint").unwrap(),
            Err(fieldbridge_core::CommandError::Failed("NAK".into())),
        )]),
    );
    assert_eq!(kind_of(&failed[0]), Some("error"));
    assert_eq!(failed[0].attr("id"), Some("q1"));
    let text = failed[0]
        .get_child("error", NS_COMPONENT)
        .and_then(|e| e.get_child("text", crate::xml::NS_STANZAS))
        .map(Element::text);
    assert_eq!(text.as_deref(), Some("setpoint: NAK"), "{failed:?}");
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

#[test]
fn node_meta_data_tells_the_access_model_honestly() {
    let mut r = rig();
    let meta = meta_data(&mut r.gw);
    let get = |k: &str| meta.iter().find(|(v, _)| v == k).map(|(_, x)| x.clone());
    assert_eq!(
        get("FORM_TYPE").as_deref(),
        Some("http://jabber.org/protocol/pubsub#meta-data")
    );
    assert_eq!(get("pubsub#title").as_deref(), Some("Boiler room"));
    assert_eq!(
        get("pubsub#description").as_deref(),
        Some("Readings of Boiler room: temperature (°C)")
    );
    assert_eq!(get("pubsub#access_model").as_deref(), Some("whitelist"));
    assert_eq!(get("pubsub#max_items").as_deref(), Some("10000"));

    let dir = tempfile::tempdir().unwrap();
    let access = Access::new(&AccessConfig {
        read: vec!["*".into()],
        control: vec![],
    });
    let mut open = Gateway::new(DOMAIN, "t", directory(), access, dir.path()).unwrap();
    let meta = meta_data(&mut open);
    assert!(meta.contains(&("pubsub#access_model".to_owned(), "open".to_owned())));
}

#[test]
fn affiliations_list_every_readable_node_as_member() {
    let mut r = rig();
    let out = ask(&mut r.gw, &pubsub(ALICE, "get", "<affiliations/>"));
    let list = out[0]
        .get_child("pubsub", NS_PUBSUB)
        .and_then(|p| p.get_child("affiliations", NS_PUBSUB))
        .unwrap();
    let affs: Vec<(&str, &str)> = list
        .children()
        .map(|a| (a.attr("node").unwrap(), a.attr("affiliation").unwrap()))
        .collect();
    assert_eq!(affs, [("boiler", "member")]);
    let out = ask(&mut r.gw, &pubsub(MALLORY, "get", "<affiliations/>"));
    assert_eq!(condition(&out[0]).as_deref(), Some("forbidden"));
}

#[test]
fn a_subscriber_asks_what_it_missed_after_the_last_id_it_has() {
    let mut r = rig();
    for v in 1..=5 {
        feed(&mut r.gw, reading(f64::from(v)), Instant::now());
    }
    let all = item_values(
        &ask(&mut r.gw, &pubsub(ALICE, "get", "<items node='boiler'/>"))[0],
        NS_PUBSUB,
    );
    r.gw.save_now();
    let request = |after: &str, max: &str| {
        let mut el = pubsub(ALICE, "get", "<items node='boiler'/>");
        let p = el.get_child_mut("pubsub", NS_PUBSUB).unwrap();
        p.append_child(
            format!(
                "<set xmlns='http://jabber.org/protocol/rsm'><after>{after}</after><max>{max}</max></set>"
            )
            .parse::<Element>()
            .unwrap(),
        );
        el
    };
    let out = ask(&mut r.gw, &request(&all[1].0, "2"));
    assert_eq!(values(&item_values(&out[0], NS_PUBSUB)), ["3", "4"]);
    let set = out[0]
        .get_child("pubsub", NS_PUBSUB)
        .and_then(|p| p.get_child("set", NS_RSM))
        .unwrap();
    assert_eq!(set.get_child("first", NS_RSM).unwrap().text(), all[2].0);
    assert_eq!(set.get_child("last", NS_RSM).unwrap().text(), all[3].0);
    let out = ask(&mut r.gw, &request(&all[4].0, "10"));
    assert!(item_values(&out[0], NS_PUBSUB).is_empty(), "nothing newer");
    let out = ask(&mut r.gw, &request("yesterday", "10"));
    assert_eq!(condition(&out[0]).as_deref(), Some("bad-request"));
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
        settings: DeviceSettings {
            name: None,
            connection: ConnectionId::new("broker").unwrap(),
            poll: None,
            stale_after: None,
            history: None,
        },
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

#[test]
fn a_device_made_at_run_time_is_served_and_keeps_its_subscribers_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let access = || {
        Access::new(&AccessConfig {
            read: vec!["example.org".into()],
            control: vec![],
        })
    };
    let start = |directory: Arc<Directory>| {
        let mut gw = Gateway::new(DOMAIN, "t", directory, access(), dir.path()).unwrap();
        connect(&mut gw, Instant::now());
        gw
    };
    let directory = directory();
    let mut gw = start(directory.clone());
    // The adapter creates the device when its first message comes.
    directory.insert(plug()).unwrap();
    ask(
        &mut gw,
        &presence(ALICE, "plug@gw.example.org", "subscribe"),
    );
    ask(
        &mut gw,
        &pubsub(
            ALICE,
            "set",
            "<subscribe node='plug' jid='alice@example.org/phone'/>",
        ),
    );
    let out = feed(&mut gw, power(100.0), Instant::now());
    assert!(
        out.iter().any(|e| e.name() == "message"),
        "notified: {out:?}"
    );
    // Stopping writes what waited.
    gw.save_now();
    drop(gw);

    // After a restart the device is unknown until its next message...
    let directory = self::directory();
    let mut gw = start(directory.clone());
    let out = ask(&mut gw, &presence(ALICE, "plug@gw.example.org", "probe"));
    assert_eq!(kind_of(&out[0]), Some("unavailable"), "not unsubscribed");
    assert_eq!(status_of(&out[0]), "not seen since the gateway started");
    let out = ask(&mut gw, &presence(MALLORY, "plug@gw.example.org", "probe"));
    assert_eq!(
        kind_of(&out[0]),
        Some("unsubscribed"),
        "strangers learn nothing"
    );
    // ...and then its subscribers are served again.
    directory.insert(plug()).unwrap();
    let mut online = power(120.0);
    online.kind = EventKind::Status(DeviceStatus::Online);
    let out = feed(&mut gw, online, Instant::now());
    assert!(
        out.iter()
            .any(|e| e.name() == "presence" && e.attr("to") == Some("alice@example.org")),
        "{out:?}"
    );
    let out = feed(&mut gw, power(120.0), Instant::now());
    let message = out.iter().find(|e| e.name() == "message").unwrap();
    assert_eq!(message.attr("to"), Some(ALICE));
}

#[test]
fn adapter_work_is_bounded_queued_then_refused_as_busy() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = chat_gateway(dir.path());
    for i in 0..MAX_QUEUED_JOBS {
        let out = ask(
            &mut gw,
            &chat(
                ALICE,
                "boiler@gw.example.org",
                "chat",
                &format!("set setpoint {i}"),
            ),
        );
        assert!(out.is_empty(), "queued");
    }
    let busy = body_of(&one_reply(&mut gw, ALICE, "set setpoint 99"));
    assert_eq!(busy, "Too many requests at once; try again in a moment.");
    let first = gw.take_jobs(4);
    assert_eq!(first.len(), 4);
    assert_eq!(
        first[0].action,
        JobAction::Write {
            point: PointId::new("setpoint").unwrap(),
            value: Value::Float(0.0)
        },
        "oldest first"
    );
    assert_eq!(gw.take_jobs(usize::MAX).len(), MAX_QUEUED_JOBS - 4);
}

/// XEP-0323 §3.1 and XEP-0325 §3.1, as the XEP texts write them (their
/// JIDs and node replaced by ours, whitespace between elements removed):
/// what we send must be those stanzas, to the attribute.
#[test]
fn the_iot_xep_examples_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = chat_gateway(dir.path());
    let client = "alice@example.org/amr";
    let device = "boiler@gw.example.org";
    let request: Element = format!(
        "<iq xmlns='jabber:component:accept' type='get' from='{client}' to='{device}' id='S0001'>\
         <req xmlns='urn:xmpp:iot:sensordata' seqnr='1' momentary='true'/></iq>"
    )
    .parse()
    .unwrap();
    let accepted: Element = format!(
        "<iq xmlns='jabber:component:accept' type='result' from='{device}' to='{client}' id='S0001'>\
         <accepted xmlns='urn:xmpp:iot:sensordata' seqnr='1'/></iq>"
    )
    .parse()
    .unwrap();
    assert_eq!(ask(&mut gw, &request), vec![accepted]);
    let job = gw.take_jobs(usize::MAX).pop().unwrap();
    let done = gw
        .job_done(
            job,
            JobOutcome::Values(vec![(
                PointId::new("temperature").unwrap(),
                Ok(Value::Float(23.4)),
            )]),
        )
        .remove(0);
    let ts = done
        .get_child("fields", crate::xml::NS_SENSORDATA)
        .and_then(|f| f.get_child("node", crate::xml::NS_SENSORDATA))
        .and_then(|n| n.get_child("timestamp", crate::xml::NS_SENSORDATA))
        .and_then(|t| t.attr("value"))
        .unwrap()
        .to_owned();
    let fields: Element = format!(
        "<message xmlns='jabber:component:accept' from='{device}' to='{client}'>\
         <fields xmlns='urn:xmpp:iot:sensordata' seqnr='1' done='true'>\
         <node nodeId='boiler'><timestamp value='{ts}'>\
         <numeric name='temperature' momentary='true' value='23.4' unit='°C'/>\
         </timestamp></node></fields></message>"
    )
    .parse()
    .unwrap();
    assert_eq!(done, fields);

    let set: Element = format!(
        "<iq xmlns='jabber:component:accept' type='set' from='{client}' to='{device}' id='1'>\
         <set xmlns='urn:xmpp:iot:control'><double name='setpoint' value='61.5'/></set></iq>"
    )
    .parse()
    .unwrap();
    assert!(ask(&mut gw, &set).is_empty());
    let job = gw.take_jobs(usize::MAX).pop().unwrap();
    let result: Element = format!(
        "<iq xmlns='jabber:component:accept' type='result' from='{device}' to='{client}' id='1'/>"
    )
    .parse()
    .unwrap();
    assert_eq!(
        gw.job_done(
            job,
            JobOutcome::Values(vec![(
                PointId::new("setpoint").unwrap(),
                Ok(Value::Float(61.5))
            )])
        ),
        vec![result]
    );
}

// ----- hostile input: limits -------------------------------------------

#[test]
fn a_stanza_the_reader_refused_gets_policy_violation_only_when_it_is_a_request() {
    let mut r = rig();
    let head = iq(ALICE, DOMAIN, "get", "");
    let out = r.gw.refused(&head, Refusal::TooDeep);
    assert_eq!(out.len(), 1);
    assert_eq!(kind_of(&out[0]), Some("error"));
    assert_eq!(condition(&out[0]).as_deref(), Some("policy-violation"));
    assert_eq!(out[0].attr("id"), Some("q1"));
    let message = chat(MALLORY, "boiler@gw.example.org", "chat", "x");
    assert!(r.gw.refused(&message, Refusal::TooLarge).is_empty());
    assert_eq!(r.gw.stats().malformed, 2);
}

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

#[test]
fn one_user_subscribes_a_few_resources_to_a_node_and_no_more() {
    let mut r = rig();
    let results: Vec<Result<(), String>> = (0..10)
        .map(|i| subscribe_as(&mut r.gw, &format!("alice@example.org/r{i}")))
        .collect();
    let accepted = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(accepted, MAX_RESOURCES_PER_USER, "{results:?}");
    let refused = results[MAX_RESOURCES_PER_USER].as_ref().unwrap_err();
    assert!(
        refused.starts_with("policy-violation / at most 4 resources"),
        "{refused}"
    );
    // Subscribing again with a resource already subscribed is fine, and
    // another user is not affected.
    assert_eq!(subscribe_as(&mut r.gw, "alice@example.org/r0"), Ok(()));
    assert_eq!(subscribe_as(&mut r.gw, "bob@example.org/laptop"), Ok(()));
    assert_eq!(r.gw.stats().subscriptions_refused, 6);
    // The refused ones are not notified.
    let out = feed(&mut r.gw, reading(1.0), Instant::now());
    let notified: BTreeSet<&str> = out
        .iter()
        .filter(|m| m.name() == "message")
        .filter_map(|m| m.attr("to"))
        .collect();
    assert_eq!(notified.len(), MAX_RESOURCES_PER_USER + 1, "{notified:?}");
}

#[test]
fn a_device_takes_a_bounded_number_of_subscribers() {
    let mut r = rig();
    for i in 0..MAX_SUBSCRIBERS_PER_DEVICE {
        let jid = format!("u{i}@example.org");
        for kind in [SubscriptionKind::Pubsub, SubscriptionKind::Presence] {
            r.gw.subscribers.subscribe(kind, "boiler", &jid);
        }
    }
    let refused = subscribe_as(&mut r.gw, "carol@example.org/x").unwrap_err();
    assert!(refused.contains("limit of 1000 subscribers"), "{refused}");
    let out = ask(
        &mut r.gw,
        &presence("carol@example.org/x", "boiler@gw.example.org", "subscribe"),
    );
    assert_eq!(kind_of(&out[0]), Some("error"));
    assert_eq!(condition(&out[0]).as_deref(), Some("policy-violation"));
}

#[tokio::test(start_paused = true)]
async fn a_flood_from_one_sender_is_refused_while_others_are_still_answered() {
    let mut r = rig();
    let ping = |from: &str| iq(from, DOMAIN, "get", "<ping xmlns='urn:xmpp:ping'/>");
    let answers: Vec<Option<String>> = (0..1000)
        .map(|_| {
            let out = ask(&mut r.gw, &ping(ALICE));
            condition(&out[0])
        })
        .collect();
    let answered = answers.iter().filter(|c| c.is_none()).count();
    assert_eq!(answered, crate::flood::BURST as usize);
    assert!(
        answers[answered..]
            .iter()
            .all(|c| c.as_deref() == Some("resource-constraint")),
        "the rest are told to wait"
    );
    assert_eq!(r.gw.stats().rate_limited, 1000 - answered as u64);
    // Presence floods are dropped without an answer.
    assert!(
        ask(
            &mut r.gw,
            &presence(ALICE, "nobody@gw.example.org", "subscribe")
        )
        .is_empty()
    );
    let out = ask(&mut r.gw, &ping(BOB));
    assert_eq!(
        kind_of(&out[0]),
        Some("result"),
        "another reader is answered"
    );
}

#[test]
fn paging_returns_exactly_the_items_after_or_before_an_id_saved_or_not() {
    let mut r = rig();
    let now = Instant::now();
    for v in 1..=20 {
        feed(&mut r.gw, reading(f64::from(v)), now);
    }
    r.gw.save_now();
    for v in 21..=30 {
        feed(&mut r.gw, reading(f64::from(v)), now);
    }
    assert_eq!(r.gw.unsaved(), 10, "the last ten are not written yet");
    let all = item_values(
        &ask(&mut r.gw, &pubsub(ALICE, "get", "<items node='boiler'/>"))[0],
        NS_PUBSUB,
    );
    let id_of = |v: usize| all[v - 1].0.clone();
    let page = |gw: &mut Gateway, rsm: &str| -> (Vec<String>, Element) {
        let out = ask(
            gw,
            &pubsub(
                ALICE,
                "get",
                &format!(
                    "<items node='boiler'/><set xmlns='http://jabber.org/protocol/rsm'>{rsm}</set>"
                ),
            ),
        );
        let values = values(&item_values(&out[0], NS_PUBSUB))
            .into_iter()
            .map(str::to_owned)
            .collect();
        let set = out[0]
            .get_child("pubsub", NS_PUBSUB)
            .and_then(|p| p.get_child("set", NS_RSM))
            .cloned()
            .expect("a result set");
        (values, set)
    };
    let numbers = |a: usize, b: usize| (a..=b).map(|v| v.to_string()).collect::<Vec<_>>();
    // Walking forward with <after> meets every item once, across the
    // saved and the unsaved.
    let mut seen = Vec::new();
    let mut after = id_of(5);
    loop {
        let (values, set) = page(&mut r.gw, &format!("<after>{after}</after><max>7</max>"));
        assert_eq!(
            set.get_child("count", NS_RSM).map(|c| c.text()).as_deref(),
            Some("30")
        );
        if values.is_empty() {
            assert!(set.get_child("first", NS_RSM).is_none());
            break;
        }
        let last = set.get_child("last", NS_RSM).unwrap().text();
        let first = set.get_child("first", NS_RSM).unwrap().text();
        assert_eq!(first, id_of(values[0].parse().unwrap()));
        assert_eq!(last, id_of(values.last().unwrap().parse().unwrap()));
        seen.extend(values);
        assert!(seen.len() <= 30, "paging does not end: {seen:?}");
        after = last;
    }
    assert_eq!(seen, numbers(6, 30));
    // Backwards: before an id, and the last page.
    assert_eq!(
        page(
            &mut r.gw,
            &format!("<before>{}</before><max>3</max>", id_of(10))
        )
        .0,
        numbers(7, 9)
    );
    assert_eq!(
        page(
            &mut r.gw,
            &format!("<before>{}</before><max>3</max>", id_of(23))
        )
        .0,
        numbers(20, 22)
    );
    assert_eq!(page(&mut r.gw, "<before/><max>3</max>").0, numbers(28, 30));
    // Between two ids.
    assert_eq!(
        page(
            &mut r.gw,
            &format!("<after>{}</after><before>{}</before>", id_of(18), id_of(23))
        )
        .0,
        numbers(19, 22)
    );
    let out = ask(
        &mut r.gw,
        &pubsub(
            ALICE,
            "get",
            "<items node='boiler'/><set xmlns='http://jabber.org/protocol/rsm'><after>x</after></set>",
        ),
    );
    assert_eq!(condition(&out[0]).as_deref(), Some("bad-request"));
}

#[test]
fn a_long_text_reading_is_read_back_from_the_history() {
    let mut r = rig();
    let mut event = reading(0.0);
    let long = "é".repeat(5 * 1024);
    if let EventKind::Readings(samples) = &mut event.kind {
        samples[0].reading.value = Value::Text(long.clone());
    }
    feed(&mut r.gw, event, Instant::now());
    r.gw.save_now();
    let r = restart(r);
    let mut r = r;
    let out = ask(&mut r.gw, &pubsub(ALICE, "get", "<items node='boiler'/>"));
    let values = item_values(&out[0], NS_PUBSUB);
    assert_eq!(values.len(), 1, "{values:?}");
    assert_eq!(values[0].1, long);
}

// ----- what clients see: resources and caps ------------------------------

#[test]
fn presence_comes_from_the_devices_resource_and_subscription_answers_from_its_bare_jid() {
    let mut r = rig();
    let out = ask(
        &mut r.gw,
        &presence(ALICE, "boiler@gw.example.org", "subscribe"),
    );
    assert_eq!(kind_of(&out[0]), Some("subscribed"));
    assert_eq!(out[0].attr("from"), Some("boiler@gw.example.org"));
    assert_eq!(out[1].name(), "presence");
    assert_eq!(out[1].attr("from"), Some("boiler@gw.example.org/test"));
    let probe = ask(
        &mut r.gw,
        &presence(ALICE, "boiler@gw.example.org", "probe"),
    );
    assert_eq!(probe[0].attr("from"), Some("boiler@gw.example.org/test"));
    let bye = r.gw.goodbye();
    assert_eq!(
        bye[0].attr("from"),
        Some("boiler@gw.example.org/test"),
        "unavailable from the same resource"
    );
    assert_eq!(kind_of(&bye[0]), Some("unavailable"));
}

#[test]
fn the_caps_node_answers_the_disco_whose_hash_the_presence_carries() {
    let mut r = rig();
    let out = ask(
        &mut r.gw,
        &presence(ALICE, "boiler@gw.example.org", "subscribe"),
    );
    let c = out[1]
        .get_child("c", entity::NS_CAPS)
        .expect("caps in presence");
    let node = format!("{}#{}", c.attr("node").unwrap(), c.attr("ver").unwrap());
    let answer = answer(
        &mut r.gw,
        "boiler@gw.example.org",
        &format!("<query xmlns='{NS_DISCO_INFO}' node='{node}'/>"),
    );
    assert_eq!(kind_of(&answer), Some("result"));
    let q = answer.get_child("query", NS_DISCO_INFO).unwrap();
    assert_eq!(
        q.attr("node"),
        Some(node.as_str()),
        "the node is named in the answer"
    );
    assert_eq!(Some(caps_ver_by_hand(q).as_str()), c.attr("ver"));
    // Another ver is not ours.
    let other = answer_of(
        &mut r.gw,
        &format!(
            "<query xmlns='{NS_DISCO_INFO}' node='{}#x'/>",
            entity::CAPS_NODE
        ),
    );
    assert_eq!(condition(&other).as_deref(), Some("item-not-found"));
}

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
        settings: DeviceSettings {
            name: None,
            connection: ConnectionId::new("sim").unwrap(),
            poll: None,
            stale_after: None,
            history: None,
        },
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
    let mut gw = Gateway::new(DOMAIN, "test", meter(), access, dir).unwrap();
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

#[test]
fn readings_that_arrive_together_make_one_item_with_the_whole_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = meter_gateway(dir.path());
    let t0 = Instant::now();
    let read = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_582_800_000);
    // One poll: every point at once.
    gw.on_event(
        meter_readings(
            &[("current", 0.5), ("power", 115.0), ("voltage", 230.0)],
            read,
        ),
        t0,
    );
    // Another message of the same device a moment later, another point.
    let later = read + Duration::from_millis(20);
    gw.on_event(meter_readings(&[("power", 116.0)], later), t0);
    // That was a second reading of `power` before its item: the first
    // item went out at once, with the first poll whole.
    let first = sent(&mut gw);
    assert_eq!(first.len(), 1, "{first:?}");
    let t = |ms: u64| crate::sensordata::timestamp(read + Duration::from_millis(ms));
    let row = |p: &str, v: &str, ms: u64| (p.to_owned(), v.to_owned(), t(ms));
    assert_eq!(
        state_of(&first[0]),
        [
            row("current", "0.5", 0),
            row("power", "115", 0),
            row("voltage", "230", 0)
        ]
    );
    // Within the window, a reading of another point joins the pending item.
    gw.on_event(meter_readings(&[("current", 0.6)], later), t0);
    gw.publish_due(t0 + items::ITEM_WINDOW / 2);
    assert!(sent(&mut gw).is_empty(), "the window is not over");
    assert_eq!(gw.next_publish(), Some(t0 + items::ITEM_WINDOW));
    gw.publish_due(t0 + items::ITEM_WINDOW);
    let second = sent(&mut gw);
    assert_eq!(second.len(), 1, "one item for both");
    // The whole state, each value under the time it was read at.
    assert_eq!(
        state_of(&second[0]),
        [
            row("voltage", "230", 0),
            row("current", "0.6", 20),
            row("power", "116", 20)
        ]
    );
    assert_eq!(gw.stats().items, 2);

    // A late subscriber gets the state at once, stamped with when it was
    // published; and `max_items=1` is the same state.
    let out = subscribe_node(&mut gw, "bob@example.org/laptop", "meter");
    let last = notifications(&out);
    assert_eq!(last.len(), 1, "{out:?}");
    assert_eq!(state_of(last[0]), state_of(&second[0]));
    let delay = last[0]
        .get_child("delay", items::NS_DELAY)
        .expect("a delay stamp");
    assert_eq!(delay.attr("from"), Some(DOMAIN));
    let stamp = delay.attr("stamp").unwrap();
    assert_eq!(stamp.len(), 24, "{stamp}");
    let out = ask(
        &mut gw,
        &pubsub(ALICE, "get", "<items node='meter' max_items='1'/>"),
    );
    assert_eq!(state_of(&out[0]), state_of(&second[0]));
}

#[test]
fn subscriptions_are_written_in_batches_and_survive_a_restart() {
    let mut r = rig();
    for i in 0..1000 {
        let out = subscribe_node(&mut r.gw, &format!("user{i}@example.org/r"), "boiler");
        assert_eq!(kind_of(&out[0]), Some("result"), "{out:?}");
    }
    assert!(r.gw.subscriptions_changed());
    assert_eq!(r.gw.unsaved(), 1000, "nothing written on the event loop");
    // One write takes them all.
    let write = r.gw.take_writes().unwrap();
    assert!(r.gw.take_writes().is_none(), "one write at a time");
    let written = write.write();
    assert!(written.is_ok(), "{written:?}");
    r.gw.written(written);
    assert!(!r.gw.subscriptions_changed());
    let mut r = restart(r);
    let out = feed(&mut r.gw, reading(30.0), Instant::now());
    assert_eq!(notifications(&out).len(), 1000, "every subscriber kept");
}

#[test]
fn the_state_of_the_previous_version_is_upgraded_with_its_subscribers_and_items() {
    // A state directory as the previous version (1d394b4) wrote it: see
    // crates/fieldbridge-store/tests/fixtures/v0-state/README.md.
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fieldbridge-store/tests/fixtures/v0-state");
    let dir = tempfile::tempdir().unwrap();
    for f in ["history.redb", "subscriptions.json"] {
        std::fs::copy(fixture.join(f), dir.path().join(f)).unwrap();
    }
    let spec = |id: &str, points: &[&str]| DeviceSpec {
        id: DeviceId::new(id).unwrap(),
        settings: DeviceSettings {
            name: None,
            connection: ConnectionId::new("sim").unwrap(),
            poll: None,
            stale_after: None,
            history: None,
        },
        points: points
            .iter()
            .map(|p| {
                let id = PointId::new(p).unwrap();
                (
                    id.clone(),
                    PointSpec {
                        id,
                        kind: ValueKind::Float,
                        settings: PointSettings::default(),
                    },
                )
            })
            .collect(),
    };
    let directory = Arc::new(Directory::new([
        spec("boiler", &["pressure", "pump", "temperature"]),
        spec("kitchen-plug", &["power", "state"]),
    ]));
    let access = Access::new(&AccessConfig {
        read: vec!["example.org".into(), "example.net".into()],
        control: vec![],
    });
    let mut gw = Gateway::new(DOMAIN, "test", directory, access, dir.path()).unwrap();
    connect(&mut gw, Instant::now());
    assert!(dir.path().join("subscriptions.json.imported").exists());
    // The items, each now the device's state after that reading.
    let out = ask(&mut gw, &pubsub(ALICE, "get", "<items node='boiler'/>"));
    let items = out[0]
        .get_child("pubsub", NS_PUBSUB)
        .and_then(|p| p.get_child("items", NS_PUBSUB))
        .unwrap();
    let all: Vec<Vec<(String, String)>> = items
        .children()
        .map(|i| {
            let wrapped = child(element("items", NS_PUBSUB), i.clone());
            let mut x = element("pubsub", NS_PUBSUB);
            x.append_child(wrapped);
            let mut iq = element("iq", NS_COMPONENT);
            iq.append_child(x);
            state_of(&iq).into_iter().map(|(p, v, _)| (p, v)).collect()
        })
        .collect();
    let pv = |p: &str, v: &str| (p.to_owned(), v.to_owned());
    assert_eq!(all.len(), 5, "{all:?}");
    assert_eq!(all[0], [pv("temperature", "21.5")]);
    // Oldest reading first: the pump was read before the last temperature
    // and the pressure.
    assert_eq!(
        all[4],
        [
            pv("pump", "true"),
            pv("temperature", "22"),
            pv("pressure", "3")
        ]
    );
    // Its presence subscribers are answered as such, and its node
    // subscribers get what is published next.
    let out = ask(
        &mut gw,
        &presence("bob@example.org/x", "boiler@gw.example.org", "probe"),
    );
    assert_eq!(
        kind_of(&out[0]),
        Some("unavailable"),
        "known, not unsubscribed"
    );
    assert_eq!(out[0].attr("from"), Some("boiler@gw.example.org/test"));
    let mut next = reading(23.0);
    if let EventKind::Readings(samples) = &mut next.kind {
        samples[0].reading.unit = None;
    }
    let out = feed(&mut gw, next, Instant::now());
    let to: BTreeSet<&str> = notifications(&out)
        .iter()
        .filter_map(|m| m.attr("to"))
        .collect();
    assert_eq!(
        to,
        BTreeSet::from(["alice@example.org/phone", "carol@example.net"])
    );
    // And the sequence goes on from the old one.
    let seqnr = seqnr_in(notifications(&out)[0]);
    assert!(seqnr > 5, "{seqnr}");
}

#[test]
fn items_published_while_catching_up_go_out_at_once_and_the_missed_ones_still_come() {
    let mut r = rig();
    let now = Instant::now();
    subscribe_node(&mut r.gw, ALICE, "boiler");
    feed(&mut r.gw, reading(1.0), now);
    r.gw.on_disconnected();
    for v in 2..=4 {
        assert!(feed(&mut r.gw, reading(f64::from(v)), now).is_empty());
    }
    // The link is back; before the store has been read, a new reading.
    r.gw.on_connected(now);
    let live = feed(&mut r.gw, reading(5.0), now);
    let sent_live: Vec<String> = notifications(&live)
        .iter()
        .flat_map(|m| item_values(m, NS_PUBSUB_EVENT))
        .map(|(_, v)| v)
        .collect();
    assert_eq!(sent_live, ["5"]);
    let caught: Vec<String> = reads(&mut r.gw)
        .iter()
        .filter(|e| e.name() == "message")
        .flat_map(|m| item_values(m, NS_PUBSUB_EVENT))
        .map(|(_, v)| v)
        .collect();
    // Item 1 was published within REPLAY_MARGIN of the outage: again.
    assert_eq!(caught, ["1", "2", "3", "4"], "the missed ones, not 5 twice");
}

#[test]
fn chat_history_shows_each_change_once_with_when_it_began() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = chat_gateway(dir.path());
    let now = Instant::now();
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_582_800);
    // Read every poll; an item carries the value each time.
    for (s, v) in [
        (0, 20.0),
        (2, 20.0),
        (4, 20.0),
        (6, 21.5),
        (8, 21.5),
        (10, 20.0),
    ] {
        let mut e = reading(v);
        set_read_at(&mut e, t0 + Duration::from_secs(s));
        feed(&mut gw, e, now);
    }
    let body = body_of(&one_reply(&mut gw, ALICE, "history temperature 5"));
    assert_eq!(
        body,
        "temperature (UTC):\n\
         2026-11-25 05:00:00  20 °C\n\
         2026-11-25 05:00:06  21.5 °C\n\
         2026-11-25 05:00:10  20 °C"
    );
    let body = body_of(&one_reply(&mut gw, ALICE, "history temperature 2"));
    assert!(
        body.ends_with("05:00:06  21.5 °C\n2026-11-25 05:00:10  20 °C"),
        "{body}"
    );
}
