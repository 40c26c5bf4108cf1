//! End-to-end: the real gateway binary with simulated devices, a real
//! Prosody, and real XMPP clients checking what users would see.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fieldbridge_e2e::client::{
    NS_CLIENT, XmppUser, el, error_condition, is_presence, show, status_text, with_child, xml,
};
use fieldbridge_e2e::gateway::Gateway;
use fieldbridge_e2e::prosody::{COMPONENT, Prosody};
use minidom::Element;

const BOILER: &str = "boiler@gw.localhost";
const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const NS_EVENT: &str = "http://jabber.org/protocol/pubsub#event";
const NS_SENSORDATA: &str = "urn:xmpp:iot:sensordata";
const NS_DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
const WAIT: Duration = Duration::from_secs(15);

/// A boiler whose temperature follows a 20 s sine over [20, 30], read every
/// 200 ms; with an outage it is offline 2 s out of every 6 s.
fn boiler(outage: bool) -> String {
    let outage = if outage {
        "    outage: { every: 6s, duration: 2s }\n"
    } else {
        ""
    };
    format!(
        "  boiler:\n    name: Boiler room\n    connection: sim\n    poll: 200ms\n    period: 20s\n{outage}    points:\n      temperature: {{ signal: sine, range: [20, 30], unit: \"°C\" }}\n"
    )
}

/// The simulator's sine, as documented: anchored to the Unix epoch.
fn expected_temperature(at: f64) -> f64 {
    let phase = (at % 20.0) / 20.0;
    20.0 + 10.0 * (0.5 + 0.5 * (std::f64::consts::TAU * phase).sin())
}

async fn setup(outage: bool, users: &[&str]) -> (Prosody, Gateway) {
    let prosody = Prosody::start().await.expect("prosody starts");
    for u in users {
        prosody.register(u, "pw").expect("user registered");
    }
    let gateway = Gateway::start(&prosody, &["alice@localhost"], &boiler(outage))
        .await
        .unwrap_or_else(|e| panic!("gateway starts: {e}\nprosody log:\n{}", prosody.log()));
    (prosody, gateway)
}

async fn subscribe_presence(user: &mut XmppUser) -> Element {
    user.subscribe_presence(BOILER).await.unwrap()
}

async fn fetch_roster(user: &mut XmppUser) {
    let own = user.jid.clone();
    let roster = user
        .iq(&own, "get", el("query", "jabber:iq:roster", &[]))
        .await
        .unwrap();
    assert_eq!(roster.attr("type"), Some("result"), "{}", xml(&roster));
}

/// Waits for available presence from the boiler carrying a temperature.
async fn expect_online_with_value(user: &mut XmppUser) -> f64 {
    let p = user
        .expect("available presence with a temperature", WAIT, |e| {
            is_presence(e, BOILER, None)
                && show(e).is_none()
                && status_text(e).is_some_and(|s| s.starts_with("temperature "))
        })
        .await
        .unwrap();
    let text = status_text(&p).unwrap();
    // "temperature 25.3 °C"
    let value: f64 = text
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no number in {text:?}"));
    assert!(text.ends_with(" °C"), "unit missing in {text:?}");
    value
}

/// Asks to subscribe the user's bare JID to the boiler's node; returns the answer.
async fn request_node_subscription(user: &mut XmppUser) -> Element {
    let jid = user.jid.clone();
    let subscribe = el("subscribe", NS_PUBSUB, &[("node", "boiler"), ("jid", &jid)]);
    user.iq(
        COMPONENT,
        "set",
        with_child(el("pubsub", NS_PUBSUB, &[]), subscribe),
    )
    .await
    .unwrap()
}

async fn subscribe_node(user: &mut XmppUser) {
    let answer = request_node_subscription(user).await;
    assert_eq!(answer.attr("type"), Some("result"), "{}", xml(&answer));
    let sub = answer
        .get_child("pubsub", NS_PUBSUB)
        .and_then(|p| p.get_child("subscription", NS_PUBSUB))
        .unwrap_or_else(|| panic!("no subscription in {}", xml(&answer)));
    assert_eq!(sub.attr("subscription"), Some("subscribed"));
    assert_eq!(sub.attr("node"), Some("boiler"));
}

struct Notification {
    item_id: String,
    at: f64,
    value: f64,
}

fn parse_timestamp(ts: &str) -> f64 {
    // 2026-11-25T05:00:00.123Z
    let (date, time) = ts
        .trim_end_matches('Z')
        .split_once('T')
        .expect("date and time");
    let d: Vec<i64> = date.split('-').map(|x| x.parse().unwrap()).collect();
    let (y, m, day) = (d[0], d[1], d[2]);
    // days_from_civil (Howard Hinnant)
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let t: Vec<f64> = time.split(':').map(|x| x.parse().unwrap()).collect();
    days as f64 * 86_400.0 + t[0] * 3600.0 + t[1] * 60.0 + t[2]
}

async fn expect_notification(user: &mut XmppUser) -> Notification {
    let m = user
        .expect("a pubsub notification", WAIT, |e| {
            e.name() == "message"
                && e.attr("from") == Some(COMPONENT)
                && e.get_child("event", NS_EVENT).is_some()
        })
        .await
        .unwrap();
    assert_eq!(m.attr("type"), Some("headline"), "{}", xml(&m));
    let items = m
        .get_child("event", NS_EVENT)
        .and_then(|e| e.get_child("items", NS_EVENT))
        .unwrap();
    assert_eq!(items.attr("node"), Some("boiler"));
    let item = items.get_child("item", NS_EVENT).unwrap();
    let fields = item
        .get_child("fields", NS_SENSORDATA)
        .unwrap_or_else(|| panic!("no fields in {}", xml(&m)));
    assert_eq!(fields.attr("done"), Some("true"));
    let node = fields.get_child("node", NS_SENSORDATA).unwrap();
    assert_eq!(node.attr("nodeId"), Some("boiler"));
    let ts = node.get_child("timestamp", NS_SENSORDATA).unwrap();
    let numeric = ts
        .get_child("numeric", NS_SENSORDATA)
        .unwrap_or_else(|| panic!("no numeric in {}", xml(&m)));
    assert_eq!(numeric.attr("name"), Some("temperature"));
    assert_eq!(numeric.attr("unit"), Some("°C"));
    assert_eq!(numeric.attr("momentary"), Some("true"));
    Notification {
        item_id: item.attr("id").unwrap().to_owned(),
        at: parse_timestamp(ts.attr("value").unwrap()),
        value: numeric.attr("value").unwrap().parse().unwrap(),
    }
}

#[tokio::test]
async fn presence_follows_the_device_through_a_scheduled_outage() {
    let (prosody, _gateway) = setup(true, &["alice"]).await;
    let mut alice = XmppUser::connect(prosody.c2s_port, "alice", "pw")
        .await
        .unwrap();
    subscribe_presence(&mut alice).await;
    let value = expect_online_with_value(&mut alice).await;
    assert!(
        (20.0..=30.0).contains(&value),
        "{value} outside the sine's range"
    );
    // Online 4 s, offline 2 s: the outage arrives within one cycle, as
    // unavailable presence with its reason (the simulator says offline
    // at once; a merely stale device would be `xa`, which is not this).
    let down = alice
        .expect("unavailable presence during the outage", WAIT, |e| {
            is_presence(e, BOILER, Some("unavailable"))
        })
        .await
        .unwrap();
    assert_eq!(
        status_text(&down).as_deref(),
        Some("scheduled outage (simulated) for 2s"),
        "{}",
        xml(&down)
    );
    let stale: Vec<String> = alice
        .unmatched()
        .iter()
        .filter(|e| is_presence(e, BOILER, None) && show(e).as_deref() == Some("xa"))
        .map(xml)
        .collect();
    assert!(stale.is_empty(), "stale before the outage: {stale:?}");
    let value = expect_online_with_value(&mut alice).await;
    assert!((20.0..=30.0).contains(&value));
    alice.close().await;
}

#[tokio::test]
async fn a_node_subscriber_receives_readings_that_match_the_simulated_wave() {
    let (prosody, _gateway) = setup(false, &["alice"]).await;
    let mut alice = XmppUser::connect(prosody.c2s_port, "alice", "pw")
        .await
        .unwrap();
    subscribe_node(&mut alice).await;
    let mut last_id = String::new();
    for _ in 0..6 {
        let n = expect_notification(&mut alice).await;
        let want = expected_temperature(n.at);
        // The timestamp has millisecond resolution; the wave moves at most
        // 10·π/20 ≈ 1.6 °C/s, so 0.05 °C leaves ample room.
        assert!(
            (n.value - want).abs() < 0.05,
            "value {} at {} but the sine gives {want}",
            n.value,
            n.at
        );
        assert!(
            n.item_id > last_id,
            "item ids must increase: {} after {last_id}",
            n.item_id
        );
        // The item id is its publication time in microseconds since the
        // epoch: just after the reading (the timestamp shows milliseconds
        // of its time).
        let micros: u64 = n
            .item_id
            .parse()
            .unwrap_or_else(|_| panic!("item id {} is not a number", n.item_id));
        let seconds = micros as f64 / 1e6;
        assert!(
            seconds >= n.at - 0.001 && seconds - n.at < 1.0,
            "item id {} is not the publication time of a reading read at {}",
            n.item_id,
            n.at
        );
        last_id = n.item_id;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - parse_timestamp_of(&mut alice).await).abs() < 60.0);
    alice.close().await;
}

/// Items retrieval returns the last item with a plausible timestamp.
async fn parse_timestamp_of(user: &mut XmppUser) -> f64 {
    let answer = user
        .iq(
            COMPONENT,
            "get",
            with_child(
                el("pubsub", NS_PUBSUB, &[]),
                el(
                    "items",
                    NS_PUBSUB,
                    &[("node", "boiler"), ("max_items", "1")],
                ),
            ),
        )
        .await
        .unwrap();
    assert_eq!(answer.attr("type"), Some("result"), "{}", xml(&answer));
    let ts = answer
        .get_child("pubsub", NS_PUBSUB)
        .and_then(|p| p.get_child("items", NS_PUBSUB))
        .and_then(|i| i.get_child("item", NS_PUBSUB))
        .and_then(|i| i.get_child("fields", NS_SENSORDATA))
        .and_then(|f| f.get_child("node", NS_SENSORDATA))
        .and_then(|n| n.get_child("timestamp", NS_SENSORDATA))
        .unwrap_or_else(|| panic!("no item in {}", xml(&answer)));
    parse_timestamp(ts.attr("value").unwrap())
}

#[tokio::test]
async fn the_gateway_reconnects_by_itself_after_the_server_restarts() {
    let (mut prosody, gateway) = setup(false, &["alice"]).await;
    let mut alice = XmppUser::connect(prosody.c2s_port, "alice", "pw")
        .await
        .unwrap();
    subscribe_presence(&mut alice).await;
    subscribe_node(&mut alice).await;
    expect_online_with_value(&mut alice).await;
    expect_notification(&mut alice).await;
    alice.close().await;

    prosody.stop().await.unwrap();
    gateway.wait_disconnected(WAIT).await.unwrap();
    prosody.restart().await.unwrap();
    gateway
        .wait_log("connected to the XMPP server", 2, Duration::from_secs(30))
        .await
        .unwrap();

    // A new session: the server probes the device on our initial presence.
    let mut alice = XmppUser::connect(prosody.c2s_port, "alice", "pw")
        .await
        .unwrap();
    expect_online_with_value(&mut alice).await;
    let n = expect_notification(&mut alice).await;
    assert!((n.value - expected_temperature(n.at)).abs() < 0.05);
    alice.close().await;
}

#[tokio::test]
async fn a_user_outside_access_read_is_refused_and_learns_nothing() {
    let (prosody, _gateway) = setup(false, &["mallory"]).await;
    let mut mallory = XmppUser::connect(prosody.c2s_port, "mallory", "pw")
        .await
        .unwrap();
    fetch_roster(&mut mallory).await;

    mallory
        .send(el(
            "presence",
            NS_CLIENT,
            &[("to", BOILER), ("type", "subscribe")],
        ))
        .await
        .unwrap();
    mallory
        .expect("unsubscribed", WAIT, |e| {
            is_presence(e, BOILER, Some("unsubscribed"))
        })
        .await
        .unwrap();

    let sub = request_node_subscription(&mut mallory).await;
    assert_eq!(
        error_condition(&sub).as_deref(),
        Some("forbidden"),
        "{}",
        xml(&sub)
    );

    let items = mallory
        .iq(
            COMPONENT,
            "get",
            with_child(
                el("pubsub", NS_PUBSUB, &[]),
                el("items", NS_PUBSUB, &[("node", "boiler")]),
            ),
        )
        .await
        .unwrap();
    assert_eq!(
        error_condition(&items).as_deref(),
        Some("forbidden"),
        "{}",
        xml(&items)
    );

    let disco = mallory
        .iq(COMPONENT, "get", el("query", NS_DISCO_ITEMS, &[]))
        .await
        .unwrap();
    assert_eq!(
        error_condition(&disco).as_deref(),
        Some("forbidden"),
        "{}",
        xml(&disco)
    );

    // The answers above are a barrier: anything the gateway sent mallory
    // came before them. None of it may carry device details.
    for stanza in mallory.unmatched() {
        let text = xml(stanza);
        assert!(
            !text.contains("temperature") && !text.contains("Boiler"),
            "leaked: {text}"
        );
        assert!(
            stanza.get_child("query", NS_DISCO_ITEMS).is_none(),
            "leaked: {text}"
        );
    }
    mallory.close().await;
}

#[tokio::test]
async fn a_restarted_gateway_still_knows_its_subscribers() {
    let (prosody, mut gateway) = setup(false, &["alice"]).await;
    let mut alice = XmppUser::connect(prosody.c2s_port, "alice", "pw")
        .await
        .unwrap();
    subscribe_presence(&mut alice).await;
    subscribe_node(&mut alice).await;
    expect_online_with_value(&mut alice).await;
    expect_notification(&mut alice).await;

    let status = gateway.stop().await.unwrap();
    assert!(
        status.success(),
        "graceful stop exits 0, got {status:?}\n{}",
        gateway.log()
    );
    let bye = alice
        .expect("the last presence", WAIT, |e| {
            is_presence(e, BOILER, Some("unavailable"))
        })
        .await
        .unwrap();
    assert_eq!(status_text(&bye).as_deref(), Some("gateway stopped"));
    assert!(gateway.state_dir().join("state.redb").exists());

    gateway.restart().await.unwrap();
    // No new subscription: the gateway remembers alice.
    expect_online_with_value(&mut alice).await;
    let n = expect_notification(&mut alice).await;
    assert!((n.value - expected_temperature(n.at)).abs() < 0.05);
    alice.close().await;
}

#[tokio::test]
async fn malformed_stanzas_from_a_user_never_disconnect_the_gateway() {
    let (prosody, gateway) = setup(false, &["alice"]).await;
    let mut raw = fieldbridge_e2e::raw::RawClient::login(prosody.c2s_port, "alice", "pw")
        .await
        .unwrap();
    // Each of these broke a typed stanza parser in the past.
    for stanza in [
        "<message to='boiler@gw.localhost' type='bogus'><body>x</body></message>",
        "<presence to='boiler@gw.localhost'><show>sleepy</show></presence>",
        "<presence to='boiler@gw.localhost' type='subscribe'><priority>many</priority></presence>",
        "<message to='gw.localhost' type='chat'><body>help</body><x xmlns='urn:example:x'><deep a='1'/></x></message>",
        "<iq to='boiler@gw.localhost' type='set' id='two'><a xmlns='urn:example:a'/><b xmlns='urn:example:b'/></iq>",
        "<iq to='gw.localhost' type='get' id='unknown'><query xmlns='urn:example:unknown'/></iq>",
        "<iq to='gw.localhost' type='set' id='empty-pubsub'><pubsub xmlns='http://jabber.org/protocol/pubsub'/></iq>",
    ] {
        raw.send(stanza).await.unwrap();
    }
    let unknown = raw.reply("unknown").await.unwrap();
    assert_eq!(unknown.attr("type"), Some("error"), "{}", xml(&unknown));
    assert_eq!(unknown.attr("from"), Some(COMPONENT), "{}", xml(&unknown));
    assert_eq!(
        error_condition(&unknown).as_deref(),
        Some("service-unavailable"),
        "{}",
        xml(&unknown)
    );
    raw.send("<iq to='gw.localhost' type='get' id='after'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await
        .unwrap();
    let pong = raw.reply("after").await.unwrap();
    assert_eq!(pong.attr("type"), Some("result"), "{}", xml(&pong));
    assert_eq!(pong.attr("from"), Some(COMPONENT), "{}", xml(&pong));
    assert_eq!(
        gateway.log_count("connected to the XMPP server"),
        1,
        "{}",
        gateway.log()
    );
    assert_eq!(
        gateway.log_count("closed the connection"),
        0,
        "{}",
        gateway.log()
    );
}
