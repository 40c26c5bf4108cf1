//! End-to-end: MQTT devices through a real Mosquitto, the real gateway
//! binary and a real XMPP server (Prosody and ejabberd), checked by a real
//! XMPP client on one side and real MQTT clients (mosquitto_pub,
//! mosquitto_sub) on the other.
//!
//! Nothing is published before the broker has subscribed the gateway (its
//! own log says so), so no test depends on timing.

use std::time::Duration;

use fieldbridge_e2e::client::{NS_CLIENT, XmppUser, el, is_presence, show, status_text, xml};
use fieldbridge_e2e::gateway::{Gateway, Setup};
use fieldbridge_e2e::mosquitto::{Message, Mosquitto};
use fieldbridge_e2e::pubsub::{self, Field, next_fields, subscribe};
use fieldbridge_e2e::server::{COMPONENT, Server, ServerKind};
use minidom::Element;
use tokio::time::Instant;

const WAIT: Duration = Duration::from_secs(15);
/// The gateway's MQTT client id, as the broker logs it.
const CLIENT_ID: &str = "fieldbridge-e2e";
const PLUG: &str = "kitchen-plug@gw.localhost";
const NS_DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";

/// A Tasmota plug: readings in JSON on `tele/kitchen/SENSOR`.
const PLUG_DEVICE: &str = "  kitchen-plug:\n    name: Kitchen plug\n    connection: broker\n    \
topic: tele/kitchen/SENSOR\n    points:\n      \
power: { json: /ENERGY/Power, unit: W }\n      voltage: { json: /ENERGY/Voltage, unit: V }\n";

/// Everything a test runs: dropped (killed) in this order.
struct Rig {
    alice: XmppUser,
    gateway: Gateway,
    server: Server,
    broker: Mosquitto,
}

/// Starts `kind` with users alice (may control) and bob (may read), and
/// the gateway with `devices` on `broker`; returns once the broker has
/// subscribed the gateway to each of `filters` and alice is online.
async fn start(kind: ServerKind, broker: Mosquitto, devices: &str, filters: &[&str]) -> Rig {
    let server = Server::start(kind).await.expect("the XMPP server starts");
    for u in ["alice", "bob"] {
        server.register(u, "pw").expect("user registered");
    }
    let connections = format!(
        "  broker: {{ mqtt: {{ url: \"{}\", client_id: {CLIENT_ID} }} }}\n",
        broker.url()
    );
    let gateway =
        Gateway::started(&server, &Setup::alice_controls(&connections, devices), &[]).await;
    for f in filters {
        broker
            .wait_subscribed(CLIENT_ID, f, WAIT)
            .await
            .unwrap_or_else(|e| panic!("{e}\ngateway log:\n{}", gateway.log()));
    }
    let alice = XmppUser::connect(server.c2s_port(), "alice", "pw")
        .await
        .unwrap();
    Rig {
        alice,
        gateway,
        server,
        broker,
    }
}

async fn publish(broker: &Mosquitto, topic: &str, payload: &str) {
    broker
        .publish(topic, payload.as_bytes(), false)
        .await
        .unwrap();
}

async fn publish_retained(broker: &Mosquitto, topic: &str, payload: &str) {
    broker
        .publish(topic, payload.as_bytes(), true)
        .await
        .unwrap();
}

/// Reads notifications of `node` until one carries `point`; returns its
/// fields (the device's whole state).
async fn next_state(user: &mut XmppUser, node: &str, point: &str) -> Vec<Field> {
    let deadline = Instant::now() + WAIT;
    loop {
        let within = deadline.saturating_duration_since(Instant::now());
        let fields = next_fields(user, node, within)
            .await
            .unwrap_or_else(|e| panic!("no {node}.{point}: {e}"));
        if fields.iter().any(|f| f.name == point) {
            return fields;
        }
    }
}

/// Reads notifications of `node` until one carries `point`; returns it.
async fn next_value(user: &mut XmppUser, node: &str, point: &str) -> Field {
    let state = next_state(user, node, point).await;
    state
        .into_iter()
        .find(|f| f.name == point)
        .expect("carried")
}

fn numeric(name: &str, value: &str, unit: &str) -> Field {
    Field {
        kind: "numeric".into(),
        name: name.into(),
        value: value.into(),
        unit: Some(unit.into()),
        invalid: false,
    }
}

fn invalid(mut f: Field) -> Field {
    f.invalid = true;
    f
}

/// Subscribes to a device's presence as a client does (roster first, so
/// that the server forwards the answer to this session); returns once the
/// device said `subscribed`.
async fn subscribe_presence(user: &mut XmppUser, device: &str) {
    let own = user.jid.clone();
    let roster = user
        .iq(&own, "get", el("query", "jabber:iq:roster", &[]))
        .await
        .unwrap();
    assert_eq!(roster.attr("type"), Some("result"), "{}", xml(&roster));
    user.send(el(
        "presence",
        NS_CLIENT,
        &[("to", device), ("type", "subscribe")],
    ))
    .await
    .unwrap();
    user.expect("subscribed", WAIT, |e| {
        is_presence(e, device, Some("subscribed"))
    })
    .await
    .unwrap();
}

/// Waits for presence from `device` of type `kind` whose status text
/// contains every one of `parts`.
async fn expect_presence(
    user: &mut XmppUser,
    device: &str,
    kind: Option<&str>,
    parts: &[&str],
) -> Element {
    let what = format!("presence {kind:?} from {device} saying {parts:?}");
    user.expect(&what, WAIT, |e| {
        is_presence(e, device, kind)
            && status_text(e).is_some_and(|s| parts.iter().all(|p| s.contains(p)))
    })
    .await
    .unwrap()
}

/// The device nodes the component lists in disco#items, with their names
/// (not the gateway's own alerts node, which is always there).
async fn listed_nodes(user: &mut XmppUser) -> Vec<(String, String)> {
    let answer = user
        .iq(COMPONENT, "get", el("query", NS_DISCO_ITEMS, &[]))
        .await
        .unwrap();
    assert_eq!(answer.attr("type"), Some("result"), "{}", xml(&answer));
    answer
        .get_child("query", NS_DISCO_ITEMS)
        .unwrap_or_else(|| panic!("no query in {}", xml(&answer)))
        .children()
        .map(|i| {
            assert_eq!(i.attr("jid"), Some(COMPONENT), "{}", xml(&answer));
            (
                i.attr("node").unwrap_or_default().to_owned(),
                i.attr("name").unwrap_or_default().to_owned(),
            )
        })
        .filter(|(node, _)| node != "alerts")
        .collect()
}

/// Chats with `device`; returns its answer.
async fn ask(user: &mut XmppUser, device: &str, text: &str) -> String {
    user.chat(device, text).await.unwrap()
}

// ----- 1. fixed, wildcard and template devices ------------------------

async fn fixed_wildcard_and_template_devices_reach_an_xmpp_subscriber(kind: ServerKind) {
    let devices = format!(
        "{PLUG_DEVICE}  \
  weather:\n    connection: broker\n    topic: \"weather/+/report\"\n    points:\n      \
    wind: {{ json: /wind, unit: m/s }}\n  \
  sensors:\n    name: Sensor\n    connection: broker\n    topic: \"sensors/{{device}}/state\"\n    \
    max_devices: 5\n    points:\n      temperature: {{ json: /temperature, unit: \"°C\" }}\n"
    );
    let broker = Mosquitto::start().await.unwrap();
    let mut r = start(
        kind,
        broker,
        &devices,
        &["tele/kitchen/SENSOR", "weather/+/report", "sensors/+/state"],
    )
    .await;

    // The fixed device: its node and its presence.
    subscribe_presence(&mut r.alice, PLUG).await;
    subscribe(&mut r.alice, "kitchen-plug").await.unwrap();
    subscribe(&mut r.alice, "weather").await.unwrap();
    publish(
        &r.broker,
        "tele/kitchen/SENSOR",
        r#"{"Time":"2026-11-25T12:00:00","ENERGY":{"Power":42.5,"Voltage":229.5,"Today":0.5},"POWER":"ON"}"#,
    )
    .await;
    // One message, one item: every value it carried, together.
    let state = next_state(&mut r.alice, "kitchen-plug", "power").await;
    assert!(state.contains(&numeric("power", "42.5", "W")), "{state:?}");
    assert!(
        state.contains(&numeric("voltage", "229.5", "V")),
        "{state:?}"
    );
    // Available, its status text made of this message's readings.
    let readings = ["power 42.50 W", "voltage 229.5 V"];
    let online = r
        .alice
        .expect("available presence with the readings", WAIT, |e| {
            is_presence(e, PLUG, None)
                && status_text(e).is_some_and(|s| s.split(", ").all(|p| readings.contains(&p)))
        })
        .await
        .unwrap();
    assert_eq!(show(&online), None, "{}", xml(&online));

    // The wildcard device reads every topic its filter matches.
    publish(&r.broker, "weather/roof/report", r#"{"wind":7.5}"#).await;
    assert_eq!(
        next_value(&mut r.alice, "weather", "wind").await,
        numeric("wind", "7.5", "m/s")
    );
    publish(&r.broker, "weather/garden/report", r#"{"wind":3.25}"#).await;
    assert_eq!(
        next_value(&mut r.alice, "weather", "wind").await,
        numeric("wind", "3.25", "m/s")
    );

    // The template rule: no device until its first message; then a node
    // in disco#items, named after the rule.
    let mut before = listed_nodes(&mut r.alice).await;
    before.sort();
    let names: Vec<&str> = before.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["kitchen-plug", "weather"], "{before:?}");
    publish(&r.broker, "sensors/attic/state", r#"{"temperature":19.5}"#).await;
    let deadline = Instant::now() + WAIT;
    let listed = loop {
        let mut nodes = listed_nodes(&mut r.alice).await;
        nodes.sort();
        if nodes.iter().any(|(n, _)| n == "attic") {
            break nodes;
        }
        assert!(
            Instant::now() < deadline,
            "attic never listed in disco#items: {nodes:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        listed,
        [
            ("attic".to_owned(), "Sensor attic".to_owned()),
            ("kitchen-plug".to_owned(), "Kitchen plug".to_owned()),
            ("weather".to_owned(), "weather".to_owned()),
        ]
    );
    // Subscribed, the node's last item (the reading that made the device)
    // comes right away; then every new one.
    subscribe(&mut r.alice, "attic").await.unwrap();
    assert_eq!(
        next_value(&mut r.alice, "attic", "temperature").await,
        numeric("temperature", "19.5", "°C")
    );
    publish(&r.broker, "sensors/attic/state", r#"{"temperature":20.25}"#).await;
    assert_eq!(
        next_value(&mut r.alice, "attic", "temperature").await,
        numeric("temperature", "20.25", "°C")
    );
    // The new device is a JID too, with presence like any configured one.
    subscribe_presence(&mut r.alice, "attic@gw.localhost").await;
    expect_presence(
        &mut r.alice,
        "attic@gw.localhost",
        None,
        &["temperature 20.25 °C"],
    )
    .await;
    r.alice.close().await;
}

// ----- 2. availability (LWT) drives presence --------------------------

async fn a_retained_last_will_drives_presence(kind: ServerKind) {
    let devices = PLUG_DEVICE.replace(
        "    points:\n",
        "    availability: { topic: tele/kitchen/LWT, online: Online, offline: Offline }\n    points:\n",
    );
    let broker = Mosquitto::start().await.unwrap();
    // The plug went away before the gateway started: its retained will
    // is all there is to know.
    publish_retained(&broker, "tele/kitchen/LWT", "Offline").await;
    let mut r = start(
        kind,
        broker,
        &devices,
        &["tele/kitchen/SENSOR", "tele/kitchen/LWT"],
    )
    .await;
    subscribe_presence(&mut r.alice, PLUG).await;
    let reason = "the device reported \"Offline\" on tele/kitchen/LWT";
    expect_presence(&mut r.alice, PLUG, Some("unavailable"), &[reason]).await;
    r.alice.forget_unmatched();

    // Tasmota connects: it replaces its will with a retained "Online".
    publish_retained(&r.broker, "tele/kitchen/LWT", "Online").await;
    let online = expect_presence(&mut r.alice, PLUG, None, &[]).await;
    assert_eq!(show(&online), None, "{}", xml(&online));
    assert_eq!(status_text(&online).as_deref(), Some("online"));
    // And reports (its presence text is refreshed at most every 10 s, so
    // the reading is checked on the node).
    subscribe(&mut r.alice, "kitchen-plug").await.unwrap();
    publish(
        &r.broker,
        "tele/kitchen/SENSOR",
        r#"{"ENERGY":{"Power":12}}"#,
    )
    .await;
    assert_eq!(
        next_value(&mut r.alice, "kitchen-plug", "power").await,
        numeric("power", "12", "W")
    );
    r.alice.forget_unmatched();

    // It drops off: the broker publishes its retained will.
    publish_retained(&r.broker, "tele/kitchen/LWT", "Offline").await;
    expect_presence(&mut r.alice, PLUG, Some("unavailable"), &[reason]).await;
    r.alice.forget_unmatched();

    // And comes back, with its last readings in the status.
    publish_retained(&r.broker, "tele/kitchen/LWT", "Online").await;
    let back = expect_presence(&mut r.alice, PLUG, None, &["power 12.00 W"]).await;
    assert_eq!(show(&back), None, "{}", xml(&back));
    assert_eq!(status_text(&back).as_deref(), Some("power 12.00 W"));
    r.alice.close().await;
}

// ----- 3. bad payloads ------------------------------------------------

async fn bad_payloads_keep_the_last_value_marked_invalid(kind: ServerKind) {
    let broker = Mosquitto::start().await.unwrap();
    let mut r = start(kind, broker, PLUG_DEVICE, &["tele/kitchen/SENSOR"]).await;
    subscribe(&mut r.alice, "kitchen-plug").await.unwrap();

    let huge = format!(
        r#"{{"ENERGY":{{"Power":99}},"pad":"{}"}}"#,
        "x".repeat(1 << 20)
    );
    let bad: [(&str, &str); 4] = [
        ("not JSON", "Power: lots, honestly"),
        ("the field missing", r#"{"ENERGY":{"Voltage":230}}"#),
        ("a wrong type", r#"{"ENERGY":{"Power":"lots"}}"#),
        ("1 MiB, over max_payload", &huge),
    ];
    let mut last = "42.5".to_owned();
    publish(
        &r.broker,
        "tele/kitchen/SENSOR",
        r#"{"ENERGY":{"Power":42.5}}"#,
    )
    .await;
    assert_eq!(
        next_value(&mut r.alice, "kitchen-plug", "power").await,
        numeric("power", &last, "W")
    );
    for (i, (what, payload)) in bad.into_iter().enumerate() {
        publish(&r.broker, "tele/kitchen/SENSOR", payload).await;
        assert_eq!(
            next_value(&mut r.alice, "kitchen-plug", "power").await,
            invalid(numeric("power", &last, "W")),
            "after {what}, the last value marked invalid"
        );
        // The gateway reads on: the next good payload arrives, valid.
        last = format!("{}.5", 43 + i);
        publish(
            &r.broker,
            "tele/kitchen/SENSOR",
            &format!(r#"{{"ENERGY":{{"Power":{last}}}}}"#),
        )
        .await;
        assert_eq!(
            next_value(&mut r.alice, "kitchen-plug", "power").await,
            numeric("power", &last, "W"),
            "after {what}"
        );
    }
    // Once as a warning; repeats go to the debug level only.
    for cause in ["not_json", "missing_field", "wrong_type", "too_large"] {
        let needle = format!("\"cause\":\"{cause}\"");
        let log = r.gateway.log();
        let warnings = log
            .lines()
            .filter(|l| l.contains("\"level\":\"WARN\"") && l.contains(&needle))
            .count();
        assert_eq!(warnings, 1, "{cause} logged once:\n{log}");
    }
    r.alice.close().await;
}

// ----- 4. writes from XMPP are published ------------------------------

async fn a_chat_write_is_published_on_the_command_topic(kind: ServerKind) {
    let devices = PLUG_DEVICE.to_owned()
        + "      relay:\n        topic: stat/kitchen/POWER\n        type: bool\n        \
true_values: [\"ON\"]\n        false_values: [\"OFF\"]\n        writable: true\n        \
command_topic: cmnd/kitchen/POWER\n      \
limit:\n        json: /limit\n        unit: W\n        writable: true\n        \
command_topic: cmnd/kitchen/LIMIT\n        payload: '{\"PowerLimit\": {value}}'\n";
    let broker = Mosquitto::start().await.unwrap();
    let mut r = start(
        kind,
        broker,
        &devices,
        &["tele/kitchen/SENSOR", "stat/kitchen/POWER"],
    )
    .await;
    let mut commands = r.broker.subscribe("cmnd/kitchen/#").await.unwrap();
    let command = |topic: &str, payload: &str| Message {
        topic: topic.into(),
        payload: payload.into(),
        qos: 1,
        retained: false,
    };

    // bob may read, not write: refused, and nothing is published (alice's
    // write below is the first message the observer sees).
    let mut bob = XmppUser::connect(r.server.c2s_port(), "bob", "pw")
        .await
        .unwrap();
    assert_eq!(
        ask(&mut bob, PLUG, "set relay on").await,
        "You may not change this device (not in access.control)."
    );
    bob.close().await;

    assert_eq!(
        ask(&mut r.alice, PLUG, "set relay on").await,
        "relay set to on."
    );
    assert_eq!(
        commands.next(WAIT).await.unwrap(),
        command("cmnd/kitchen/POWER", "ON")
    );
    assert_eq!(
        ask(&mut r.alice, PLUG, "set relay off").await,
        "relay set to off."
    );
    assert_eq!(
        commands.next(WAIT).await.unwrap(),
        command("cmnd/kitchen/POWER", "OFF")
    );
    // A payload template.
    assert_eq!(
        ask(&mut r.alice, PLUG, "set limit 2500").await,
        "limit set to 2500 W."
    );
    assert_eq!(
        commands.next(WAIT).await.unwrap(),
        command("cmnd/kitchen/LIMIT", r#"{"PowerLimit": 2500}"#)
    );
    // Refused before anything is published.
    assert_eq!(
        ask(&mut r.alice, PLUG, "set power 3").await,
        "power is read-only."
    );
    assert_eq!(
        ask(&mut r.alice, PLUG, "set relay maybe").await,
        "relay: \"maybe\" is not on/off (use on, off, true, false, 1 or 0)"
    );

    // The plug confirms the state on its stat topic; a subscriber sees it.
    subscribe(&mut r.alice, "kitchen-plug").await.unwrap();
    publish(&r.broker, "stat/kitchen/POWER", "ON").await;
    let relay = next_value(&mut r.alice, "kitchen-plug", "relay").await;
    assert_eq!(
        (relay.kind.as_str(), relay.value.as_str(), relay.invalid),
        ("boolean", "true", false),
        "{relay:?}"
    );
    // Nothing else went out on the command topics meanwhile: the next
    // command is the one asked now.
    assert_eq!(
        ask(&mut r.alice, PLUG, "set relay 0").await,
        "relay set to off."
    );
    assert_eq!(
        commands.next(WAIT).await.unwrap(),
        command("cmnd/kitchen/POWER", "OFF")
    );
    r.alice.close().await;
}

/// A Tasmota plug with three values in one message.
const PLUG3_DEVICE: &str = "  kitchen-plug:\n    name: Kitchen plug\n    connection: broker\n    \
topic: tele/kitchen/SENSOR\n    points:\n      \
power: { json: /ENERGY/Power, unit: W }\n      voltage: { json: /ENERGY/Voltage, unit: V }\n      \
current: { json: /ENERGY/Current, unit: A }\n";

async fn a_late_subscriber_learns_every_value_of_a_message_from_the_last_item(kind: ServerKind) {
    let broker = Mosquitto::start().await.unwrap();
    let mut r = start(kind, broker, PLUG3_DEVICE, &["tele/kitchen/SENSOR"]).await;
    publish(
        &r.broker,
        "tele/kitchen/SENSOR",
        r#"{"Time":"2026-11-25T12:00:00","ENERGY":{"Power":42.5,"Voltage":229.5,"Current":0.19}}"#,
    )
    .await;
    let want = [
        numeric("current", "0.19", "A"),
        numeric("power", "42.5", "W"),
        numeric("voltage", "229.5", "V"),
    ];
    let sorted = |mut f: Vec<Field>| {
        f.sort_by(|a, b| a.name.cmp(&b.name));
        f
    };
    // Asked for afterwards, the last item holds all three...
    let last = pubsub::last_item(&mut r.alice, "kitchen-plug", WAIT)
        .await
        .unwrap();
    assert_eq!(sorted(last), want, "max_items=1");
    // ... and so does the item a new subscriber gets at once.
    subscribe(&mut r.alice, "kitchen-plug").await.unwrap();
    let on_subscribe = next_fields(&mut r.alice, "kitchen-plug", WAIT)
        .await
        .unwrap();
    assert_eq!(sorted(on_subscribe), want, "the item sent on subscribe");
    r.alice.close().await;
}

fieldbridge_e2e::on_every_server!(
    a_late_subscriber_learns_every_value_of_a_message_from_the_last_item,
    fixed_wildcard_and_template_devices_reach_an_xmpp_subscriber,
    a_retained_last_will_drives_presence,
    bad_payloads_keep_the_last_value_marked_invalid,
    a_chat_write_is_published_on_the_command_topic,
);
