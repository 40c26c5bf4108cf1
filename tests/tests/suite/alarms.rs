//! End-to-end: alarms (issue 14). A boiler on a real Mosquitto, whose
//! readings the test publishes, so that a value crosses a limit exactly
//! when the test says; the real gateway binary; a real Prosody and a real
//! ejabberd with their MUC service; real clients in chat and in the room.
//!
//! Who is who: alice reads and controls and is in `alerts.to`; bob only
//! reads; carol is on the server but not in `access.read` (an outsider).
//! The room `plant-alerts@conference.localhost` is made by alice before the
//! gateway starts (open and persistent), except in the test of the gateway
//! creating it.
//!
//! What arrives is waited for; what must NOT arrive is checked against a
//! later message that must (a fence): messages from one sender arrive in
//! order, so anything wrong would have come before the fence.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fieldbridge_e2e::client::{NS_CLIENT, XmppUser, el, error_condition, xml};
use fieldbridge_e2e::gateway::{Gateway, Setup};
use fieldbridge_e2e::mosquitto::Mosquitto;
use fieldbridge_e2e::muc::{self, body, delay};
use fieldbridge_e2e::proxy::ComponentProxy;
use fieldbridge_e2e::pubsub::{NS_EVENT, NS_PUBSUB, subscribe};
use fieldbridge_e2e::server::{COMPONENT, Options, Server, ServerKind};
use minidom::Element;

const WAIT: Duration = Duration::from_secs(15);
/// The gateway's MQTT client id, as the broker logs it.
const CLIENT_ID: &str = "fieldbridge-e2e";
const BOILER: &str = "boiler@gw.localhost";
const ROOM: &str = "plant-alerts@conference.localhost";
const NICK: &str = "fieldbridge";
/// The hold of the temperature alarm (`for: 2s`).
const HOLD: Duration = Duration::from_secs(2);

const CRITICAL: &str = "🔴 CRITICAL ";
const WARNING: &str = "🟠 WARNING ";
const INFO: &str = "🔵 INFO ";
const CLEARED: &str = "✅ CLEARED ";

/// The boiler: temperature and pressure in one JSON message on
/// `plant/boiler`, a `fence` point on a topic of its own (an info alarm
/// the tests raise and clear to mark a point in the message order), and
/// an availability topic (readings while it says offline are uncertain).
const BOILER_DEVICE: &str = "  boiler:\n    name: Boiler room\n    connection: broker\n    \
topic: plant/boiler\n    \
availability: { topic: plant/boiler/status, online: online, offline: offline }\n    points:\n      \
temperature: { json: /temperature, unit: \"°C\", decimals: 1, label: Temperature, \
alarm: { above: 85, hysteresis: 1, for: 2s, severity: critical } }\n      \
pressure: { json: /pressure, unit: bar, decimals: 1, label: Pressure, \
alarm: { above: 3, severity: critical } }\n      \
fence: { topic: plant/boiler/fence, label: Fence, alarm: { above: 0, severity: info } }\n";

/// The topics the gateway subscribes to for [`BOILER_DEVICE`].
const BOILER_TOPICS: &[&str] = &["plant/boiler", "plant/boiler/fence", "plant/boiler/status"];

/// The `alerts:` section every test starts with (plus `extra` lines).
fn alerts(extra: &str) -> String {
    format!("alerts:\n  to: [\"alice@localhost\"]\n  room: {ROOM}\n  nick: {NICK}\n{extra}")
}

/// Everything a test runs; dropped (killed) in this order.
struct Rig {
    alice: XmppUser,
    bob: XmppUser,
    carol: XmppUser,
    gateway: Gateway,
    link: Option<ComponentProxy>,
    server: Server,
    broker: Mosquitto,
}

/// How a rig is set up.
#[derive(Default)]
struct Plan<'a> {
    /// The `devices:` section (default [`BOILER_DEVICE`]).
    devices: Option<&'a str>,
    /// Topics to wait for the gateway's subscription of (default
    /// [`BOILER_TOPICS`]).
    topics: Option<&'a [&'a str]>,
    /// More lines under `alerts:`, indented by two spaces.
    alerts: &'a str,
    /// The gateway connects through a [`ComponentProxy`] (`Rig::link`).
    proxy: bool,
    /// Leave the room to the gateway to create.
    no_room: bool,
}

async fn start(kind: ServerKind, plan: Plan<'_>) -> Rig {
    let broker = Mosquitto::start().await.expect("mosquitto starts");
    let server = Server::start_with(
        kind,
        &Options {
            muc: true,
            ..Options::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{} starts: {e}", kind.name()));
    for u in ["alice", "bob", "carol"] {
        server.register(u, "pw").expect("user registered");
    }
    let connect = |u: &'static str| XmppUser::connect(server.c2s_port(), u, "pw");
    let mut alice = connect("alice").await.unwrap();
    let bob = connect("bob").await.unwrap();
    let carol = connect("carol").await.unwrap();
    if !plan.no_room {
        let joined = muc::join(&mut alice, ROOM, "alice").await.unwrap();
        assert!(joined.created, "a fresh room: {}", xml(&joined.presence));
        // Kept across a server restart.
        muc::configure(&mut alice, ROOM, &[("muc#roomconfig_persistentroom", "1")])
            .await
            .unwrap();
    }
    let link = if plan.proxy {
        Some(ComponentProxy::start(&server).await.unwrap())
    } else {
        None
    };
    let connections = format!(
        "  broker: {{ mqtt: {{ url: \"{}\", client_id: {CLIENT_ID} }} }}\n",
        broker.url()
    );
    let setup = Setup {
        read: &["alice@localhost", "bob@localhost"],
        control: &["alice@localhost"],
        connections: &connections,
        devices: plan.devices.unwrap_or(BOILER_DEVICE),
    };
    let sections = alerts(plan.alerts);
    let gateway = match &link {
        Some(link) => Gateway::started_with_sections(link, &setup, &sections, &[]).await,
        None => Gateway::started_with_sections(&server, &setup, &sections, &[]).await,
    };
    for topic in plan.topics.unwrap_or(BOILER_TOPICS) {
        broker
            .wait_subscribed(CLIENT_ID, topic, WAIT)
            .await
            .unwrap_or_else(|e| panic!("{e}\ngateway log:\n{}", gateway.log()));
    }
    if !plan.no_room {
        muc::expect_occupant(&mut alice, ROOM, NICK, None)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "the gateway joins its room: {e}\ngateway log:\n{}",
                    gateway.log()
                )
            });
    }
    Rig {
        alice,
        bob,
        carol,
        gateway,
        link,
        server,
        broker,
    }
}

impl Rig {
    async fn publish(&self, topic: &str, payload: &str) {
        self.broker
            .publish(topic, payload.as_bytes(), false)
            .await
            .unwrap();
    }

    /// [`Rig::publish`], returning once the gateway has taken the message
    /// (the broker logged its PUBACK: the gateway subscribes with QoS 1).
    async fn publish_taken(&self, topic: &str, payload: &str, retain: bool) {
        let needle = format!("Received PUBACK from {CLIENT_ID}");
        let before = self.broker.log_count(&needle);
        self.broker
            .publish(topic, payload.as_bytes(), retain)
            .await
            .unwrap();
        self.broker
            .wait_log(&needle, before + 1, WAIT)
            .await
            .unwrap_or_else(|e| panic!("{e}\ngateway log:\n{}", self.gateway.log()));
    }

    /// The boiler's availability, retained (as a device's will is).
    async fn availability(&self, state: &str) {
        self.broker
            .publish("plant/boiler/status", state.as_bytes(), true)
            .await
            .unwrap();
    }
}

/// An alert as people read it: a severity marker or `Reminder:` first.
fn is_alert_text(body: &str) -> bool {
    [CRITICAL, WARNING, INFO, CLEARED, "Reminder:"]
        .iter()
        .any(|m| body.starts_with(m))
}

/// True for an alert chat message (type `chat`) from `from` (a bare JID).
fn is_alert_chat(e: &Element, from: &str) -> bool {
    e.name() == "message"
        && e.attr("type") == Some("chat")
        && e.attr("from")
            .is_some_and(|f| f.split('/').next() == Some(from))
        && body(e).is_some_and(|b| is_alert_text(&b))
}

/// Waits for an alert chat from `from` whose body starts with `prefix`.
async fn chat_alert(user: &mut XmppUser, from: &str, prefix: &str, gateway: &Gateway) -> Element {
    user.expect(
        &format!("a chat alert from {from} starting {prefix:?}"),
        WAIT,
        |e| is_alert_chat(e, from) && body(e).is_some_and(|b| b.starts_with(prefix)),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\ngateway log:\n{}", gateway.log()))
}

/// Waits for the gateway's groupchat in the room whose body starts with
/// `prefix`.
async fn room_alert(user: &mut XmppUser, prefix: &str, gateway: &Gateway) -> Element {
    muc::expect_groupchat(
        user,
        ROOM,
        Some(NICK),
        &format!("the gateway's groupchat starting {prefix:?}"),
        WAIT,
        |b| b.starts_with(prefix),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\ngateway log:\n{}", gateway.log()))
}

/// The alert bodies among what `user` received and no wait matched.
fn unmatched_alerts(user: &mut XmppUser) -> Vec<String> {
    user.unmatched()
        .iter()
        .filter(|e| {
            e.name() == "message"
                && matches!(e.attr("type"), Some("chat" | "groupchat"))
                && body(e).is_some_and(|b| is_alert_text(&b))
        })
        .map(xml)
        .collect()
}

/// Seconds since the epoch of an RFC 3339 UTC stamp
/// (`2026-12-02T14:03:12Z`, `…12.345Z`, `…12+00:00`), as XEP-0082 writes
/// them; None for anything else.
fn epoch_seconds(stamp: &str) -> Option<i64> {
    let (date, time) = stamp.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let time = time
        .strip_suffix('Z')
        .or_else(|| time.strip_suffix("+00:00"))?;
    let time = time.split('.').next()?;
    let mut t = time.split(':').map(|p| p.parse::<i64>().ok());
    let (h, min, s) = (t.next()??, t.next()??, t.next()??);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + min * 60 + s)
}

fn now_seconds() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

// ----- 1. a limit crossed: one alert, in chat and in the room ---------

async fn a_value_beyond_its_limit_raises_one_alert_in_chat_and_in_the_room_and_clears_by_the_hysteresis(
    kind: ServerKind,
) {
    let mut r = start(kind, Plan::default()).await;
    r.availability("online").await;
    r.publish("plant/boiler", r#"{"temperature":70.0,"pressure":1.5}"#)
        .await;

    let crossed = tokio::time::Instant::now();
    r.publish("plant/boiler", r#"{"temperature":95.3,"pressure":1.5}"#)
        .await;
    let raised = chat_alert(&mut r.alice, BOILER, CRITICAL, &r.gateway).await;
    let held = crossed.elapsed();
    let text = body(&raised).unwrap();
    assert!(
        text.starts_with("🔴 CRITICAL Boiler room: Temperature is 95.3 °C, above 85 °C for 2 s · "),
        "{text}"
    );
    assert!(
        held >= HOLD,
        "raised after {held:?}, before the hold of {HOLD:?}"
    );
    let in_room = room_alert(&mut r.alice, CRITICAL, &r.gateway).await;
    assert_eq!(
        body(&in_room).as_deref(),
        Some(text.as_str()),
        "the same words in the room"
    );
    assert_eq!(delay(&raised), None, "sent live: {}", xml(&raised));

    // Jitter inside the hysteresis (84 to 85 and back above) clears nothing
    // and raises nothing again.
    for t in [84.6, 85.4, 84.2, 86.0, 84.1] {
        r.publish(
            "plant/boiler",
            &format!(r#"{{"temperature":{t},"pressure":1.5}}"#),
        )
        .await;
    }
    // Back inside by the hysteresis: cleared, once.
    r.publish("plant/boiler", r#"{"temperature":83.5,"pressure":1.5}"#)
        .await;
    let cleared = chat_alert(&mut r.alice, BOILER, CLEARED, &r.gateway).await;
    let text = body(&cleared).unwrap();
    assert!(
        text.starts_with(
            "✅ CLEARED Boiler room: Temperature is back at 83.5 °C (was above 85 °C for "
        ),
        "{text}"
    );
    room_alert(&mut r.alice, CLEARED, &r.gateway).await;
    let extra = unmatched_alerts(&mut r.alice);
    assert!(
        extra.is_empty(),
        "one raise and one clear only, also got:\n{}",
        extra.join("\n")
    );
    // Bob reads but is not in alerts.to; carol is an outsider.
    for user in [&mut r.bob, &mut r.carol] {
        let got = unmatched_alerts(user);
        assert!(
            got.is_empty(),
            "{} got alerts:\n{}",
            user.jid,
            got.join("\n")
        );
    }
    r.alice.close().await;
}

// ----- 2. the alerts node and the state item ---------------------------

const NS_ALERT: &str = "urn:fieldbridge:alert:0";
const NS_SENSORDATA: &str = "urn:xmpp:iot:sensordata";

/// The `<alert>` of an `alerts` node notification, if `e` is one.
fn alert_of(e: &Element) -> Option<Element> {
    let items = e
        .get_child("event", NS_EVENT)?
        .get_child("items", NS_EVENT)?;
    (items.attr("node") == Some("alerts")).then_some(())?;
    items
        .children()
        .find_map(|i| i.get_child("alert", NS_ALERT).cloned())
}

/// The attributes of the state item's field `point`, in a notification of
/// the `boiler` node.
fn field_of(e: &Element, point: &str) -> Option<Element> {
    let items = e
        .get_child("event", NS_EVENT)?
        .get_child("items", NS_EVENT)?;
    (items.attr("node") == Some("boiler")).then_some(())?;
    let fields = items
        .children()
        .find_map(|i| i.get_child("fields", NS_SENSORDATA))?;
    let mut found = None;
    for node in fields.children() {
        for ts in node.children() {
            for f in ts.children() {
                if f.attr("name") == Some(point) {
                    found = Some(f.clone());
                }
            }
        }
    }
    found
}

async fn the_alerts_node_and_the_state_item_carry_the_alarm(kind: ServerKind) {
    let mut r = start(kind, Plan::default()).await;
    r.availability("online").await;
    subscribe(&mut r.bob, "alerts").await.unwrap();
    subscribe(&mut r.bob, "boiler").await.unwrap();
    // Listed among the component's nodes.
    let items = r
        .bob
        .iq(
            COMPONENT,
            "get",
            el("query", "http://jabber.org/protocol/disco#items", &[]),
        )
        .await
        .unwrap();
    assert!(
        items
            .get_child("query", "http://jabber.org/protocol/disco#items")
            .is_some_and(|q| q.children().any(|i| i.attr("node") == Some("alerts"))),
        "the alerts node in disco#items: {}",
        xml(&items)
    );

    r.publish("plant/boiler", r#"{"temperature":70.0,"pressure":4.2}"#)
        .await;
    let note = r
        .bob
        .expect("an alerts item", WAIT, |e| alert_of(e).is_some())
        .await
        .unwrap_or_else(|e| panic!("{e}\ngateway log:\n{}", r.gateway.log()));
    let alert = alert_of(&note).unwrap();
    assert_eq!(
        alert.attr("key"),
        Some("boiler/pressure"),
        "{}",
        xml(&alert)
    );
    assert_eq!(
        alert.attr("value").and_then(|v| v.parse::<f64>().ok()),
        Some(4.2),
        "the value that raised it: {}",
        xml(&alert)
    );
    assert_eq!(alert.attr("severity"), Some("critical"), "{}", xml(&alert));
    assert_eq!(alert.attr("change"), Some("raised"), "{}", xml(&alert));
    for stamp in ["at", "since"] {
        let v = alert.attr(stamp).unwrap_or_default();
        assert!(epoch_seconds(v).is_some(), "{stamp}={v:?}: {}", xml(&alert));
    }
    let device = alert
        .get_child("device", NS_ALERT)
        .unwrap_or_else(|| panic!("no <device>: {}", xml(&alert)));
    assert_eq!(
        (device.attr("id"), device.attr("name")),
        (Some("boiler"), Some("Boiler room"))
    );
    let text = alert.get_child("text", NS_ALERT).map(Element::text);
    assert!(
        text.as_deref()
            .is_some_and(|t| t.starts_with("Boiler room: Pressure is 4.2 bar, above 3 bar")),
        "{text:?}"
    );
    // The state item marks the point: error for a critical alarm.
    let state = r
        .bob
        .expect("a state item with pressure marked error", WAIT, |e| {
            field_of(e, "pressure").is_some_and(|f| f.attr("error") == Some("true"))
        })
        .await
        .unwrap();
    let temperature = field_of(&state, "temperature").unwrap();
    assert_eq!(temperature.attr("error"), None, "{}", xml(&temperature));
    assert_eq!(temperature.attr("warning"), None, "{}", xml(&temperature));

    r.bob.forget_unmatched();
    r.publish("plant/boiler", r#"{"temperature":70.0,"pressure":2.0}"#)
        .await;
    let note = r
        .bob
        .expect("the cleared alerts item", WAIT, |e| {
            alert_of(e).is_some_and(|a| a.attr("change") == Some("cleared"))
        })
        .await
        .unwrap();
    let alert = alert_of(&note).unwrap();
    assert_eq!(
        alert.attr("key"),
        Some("boiler/pressure"),
        "{}",
        xml(&alert)
    );
    r.bob
        .expect("a state item with pressure unmarked", WAIT, |e| {
            field_of(e, "pressure").is_some_and(|f| f.attr("error").is_none())
        })
        .await
        .unwrap();
    // Carol may not read the node.
    let refused = r
        .carol
        .iq(
            COMPONENT,
            "get",
            fieldbridge_e2e::client::with_child(
                el("pubsub", NS_PUBSUB, &[]),
                el("items", NS_PUBSUB, &[("node", "alerts")]),
            ),
        )
        .await
        .unwrap();
    assert_eq!(
        error_condition(&refused).as_deref(),
        Some("forbidden"),
        "{}",
        xml(&refused)
    );
    r.bob.close().await;
}

// ----- 3. no storms: a broker outage is one alert ----------------------

const THREE_DEVICES: &str = "  boiler:\n    name: Boiler room\n    connection: broker\n    \
topic: plant/boiler\n    offline_alert: 1s\n    points:\n      \
temperature: { json: /temperature, unit: \"°C\" }\n  \
heatpump:\n    name: Heat pump\n    connection: broker\n    \
topic: plant/heatpump\n    offline_alert: 1s\n    points:\n      \
temperature: { json: /temperature, unit: \"°C\" }\n  \
tank:\n    name: Water tank\n    connection: broker\n    \
topic: plant/tank\n    offline_alert: 1s\n    points:\n      \
level: { json: /level, unit: \"%\" }\n";

async fn an_outage_of_the_whole_broker_is_one_connection_alert(kind: ServerKind) {
    let topics = ["plant/boiler", "plant/heatpump", "plant/tank"];
    let mut r = start(
        kind,
        Plan {
            devices: Some(THREE_DEVICES),
            topics: Some(&topics),
            ..Plan::default()
        },
    )
    .await;
    let readings = [
        ("plant/boiler", r#"{"temperature":60}"#),
        ("plant/heatpump", r#"{"temperature":35}"#),
        ("plant/tank", r#"{"level":80}"#),
    ];
    for (topic, payload) in readings {
        r.publish_taken(topic, payload, false).await;
    }
    r.broker.stop().await.unwrap();
    let down = chat_alert(&mut r.alice, COMPONENT, WARNING, &r.gateway).await;
    let text = body(&down).unwrap();
    assert!(
        text.starts_with("🟠 WARNING Connection broker is down: "),
        "{text}"
    );
    for name in ["Boiler room", "Heat pump", "Water tank"] {
        assert!(text.contains(name), "{name} listed: {text}");
    }
    room_alert(
        &mut r.alice,
        "🟠 WARNING Connection broker is down: ",
        &r.gateway,
    )
    .await;

    // Back: the readings the devices left on the broker bring them online.
    r.broker.restart().await.unwrap();
    for (topic, payload) in readings {
        r.broker
            .publish(topic, payload.as_bytes(), true)
            .await
            .unwrap();
    }
    let back = chat_alert(&mut r.alice, COMPONENT, CLEARED, &r.gateway).await;
    let text = body(&back).unwrap();
    assert!(
        text.starts_with("✅ CLEARED Connection broker is back: "),
        "{text}"
    );
    room_alert(
        &mut r.alice,
        "✅ CLEARED Connection broker is back: ",
        &r.gateway,
    )
    .await;
    // Not one per device: nothing else, from any device JID.
    let extra = unmatched_alerts(&mut r.alice);
    assert!(
        extra.is_empty(),
        "one alert for the connection only, also got:\n{}",
        extra.join("\n")
    );
    r.alice.close().await;
}

// ----- 4. raised while the XMPP link was down --------------------------

async fn alerts_raised_while_the_link_was_down_arrive_after_it_is_back_with_their_time(
    kind: ServerKind,
) {
    let mut r = start(
        kind,
        Plan {
            proxy: true,
            ..Plan::default()
        },
    )
    .await;
    r.publish_taken("plant/boiler/status", "online", true).await;
    let link = r.link.take().expect("a proxy");
    link.cut().await.unwrap();
    r.gateway.wait_disconnected(WAIT).await.unwrap();
    let down_from = now_seconds();
    // The gateway takes it while the link is down.
    r.publish_taken(
        "plant/boiler",
        r#"{"temperature":70.0,"pressure":5.1}"#,
        false,
    )
    .await;
    // Any alert the gateway had sent before the cut is in by now; none of
    // this one can be (the link is down).
    assert!(unmatched_alerts(&mut r.alice).is_empty());
    // The scenario: the link stays down a moment longer (the pressure
    // alarm has no hold, so it is raised at once).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let up_at = now_seconds();
    link.restore().await.unwrap();
    r.gateway
        .wait_log("connected to the XMPP server", 2, Duration::from_secs(45))
        .await
        .unwrap();

    let late = chat_alert(&mut r.alice, BOILER, CRITICAL, &r.gateway).await;
    let text = body(&late).unwrap();
    assert!(
        text.starts_with("🔴 CRITICAL Boiler room: Pressure is 5.1 bar, above 3 bar"),
        "{text}"
    );
    for (what, m) in [
        ("chat", &late),
        (
            "groupchat",
            &room_alert(&mut r.alice, CRITICAL, &r.gateway).await,
        ),
    ] {
        let (stamp, from) =
            delay(m).unwrap_or_else(|| panic!("the {what} without a delay: {}", xml(m)));
        let at = epoch_seconds(&stamp).unwrap_or_else(|| panic!("stamp {stamp:?}"));
        assert!(
            (down_from - 1..=up_at).contains(&at),
            "the {what} stamped {stamp}, not while the link was down ({down_from}..{up_at}): {}",
            xml(m)
        );
        assert_eq!(from.as_deref(), Some(COMPONENT), "{}", xml(m));
    }
    r.alice.close().await;
}

// ----- 5. the room after a server restart, and after a kick ------------

async fn the_gateway_rejoins_its_room_after_a_server_restart(kind: ServerKind) {
    let mut r = start(kind, Plan::default()).await;
    r.availability("online").await;
    r.gateway
        .through_outage(&mut r.server, Duration::from_secs(1))
        .await
        .unwrap();
    // alice's session went with the server: she logs in and joins again.
    let mut alice = XmppUser::connect(r.server.c2s_port(), "alice", "pw")
        .await
        .unwrap();
    muc::join(&mut alice, ROOM, "alice").await.unwrap();
    muc::expect_occupant(&mut alice, ROOM, NICK, None)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the gateway rejoins: {e}\ngateway log:\n{}",
                r.gateway.log()
            )
        });
    r.publish("plant/boiler", r#"{"temperature":70.0,"pressure":3.6}"#)
        .await;
    let seen = room_alert(
        &mut alice,
        "🔴 CRITICAL Boiler room: Pressure is 3.6 bar",
        &r.gateway,
    )
    .await;
    assert_eq!(delay(&seen), None, "{}", xml(&seen));
    alice.close().await;
}

async fn the_gateway_rejoins_its_room_after_a_kick(kind: ServerKind) {
    let mut r = start(kind, Plan::default()).await;
    r.availability("online").await;
    let answer = muc::kick(&mut r.alice, ROOM, NICK, "testing")
        .await
        .unwrap();
    assert_eq!(
        answer.attr("type"),
        Some("result"),
        "alice owns the room: {}",
        xml(&answer)
    );
    muc::expect_occupant(&mut r.alice, ROOM, NICK, Some("unavailable"))
        .await
        .unwrap();
    // Back by itself (the capped backoff: within 30 s).
    r.alice
        .expect(
            "the gateway back in the room",
            Duration::from_secs(45),
            |e| muc::is_occupant_presence(e, ROOM, NICK, None),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\ngateway log:\n{}", r.gateway.log()));
    r.publish("plant/boiler", r#"{"temperature":70.0,"pressure":3.7}"#)
        .await;
    room_alert(
        &mut r.alice,
        "🔴 CRITICAL Boiler room: Pressure is 3.7 bar",
        &r.gateway,
    )
    .await;
    r.alice.close().await;
}

/// No room yet: the gateway creates it members-only and persistent, with
/// the readers as members; an outsider cannot join.
async fn the_gateway_creates_its_room_members_only_with_the_readers(kind: ServerKind) {
    let mut r = start(
        kind,
        Plan {
            no_room: true,
            ..Plan::default()
        },
    )
    .await;
    // The room appears when the gateway has made it (a condition polled,
    // with a deadline).
    let deadline = tokio::time::Instant::now() + WAIT;
    let features = loop {
        let f = muc::features(&mut r.alice, ROOM).await.unwrap();
        if let Ok(f) = &f
            && f.iter().any(|x| x == "muc_membersonly")
        {
            break f.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no members-only {ROOM} within {WAIT:?} (last: {f:?})\ngateway log:\n{}",
            r.gateway.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        features.iter().any(|f| f == "muc_persistent"),
        "{features:?}"
    );
    for user in [&mut r.alice, &mut r.bob] {
        let nick = user.jid.split('@').next().unwrap().to_owned();
        muc::join(user, ROOM, &nick)
            .await
            .unwrap_or_else(|e| panic!("a reader is a member: {e}"));
        muc::expect_occupant(user, ROOM, NICK, None).await.unwrap();
    }
    assert_eq!(
        muc::join_refused(&mut r.carol, ROOM, "carol")
            .await
            .unwrap(),
        "registration-required"
    );
    r.alice.close().await;
}

// ----- 6. people act: alarms, ack, reminders ---------------------------

async fn ack_from_a_control_user_stops_reminders_a_reader_is_refused_an_outsider_learns_nothing(
    kind: ServerKind,
) {
    let mut r = start(
        kind,
        Plan {
            alerts: "  remind: 2s\n",
            ..Plan::default()
        },
    )
    .await;
    r.availability("online").await;
    // Two critical alarms: pressure (acknowledged below) and temperature
    // (not: its reminders go on, and mark time).
    r.publish("plant/boiler", r#"{"temperature":99.0,"pressure":4.0}"#)
        .await;
    chat_alert(
        &mut r.alice,
        BOILER,
        "🔴 CRITICAL Boiler room: Pressure",
        &r.gateway,
    )
    .await;
    chat_alert(
        &mut r.alice,
        BOILER,
        "🔴 CRITICAL Boiler room: Temperature",
        &r.gateway,
    )
    .await;
    let reminder = |what: &'static str| {
        move |e: &Element| {
            is_alert_chat(e, BOILER)
                && body(e).is_some_and(|b| b.starts_with("Reminder:") && b.contains(what))
        }
    };
    r.alice
        .expect("a reminder of the pressure", WAIT, reminder("Pressure"))
        .await
        .unwrap_or_else(|e| panic!("{e}\ngateway log:\n{}", r.gateway.log()));

    // `alarms` lists both, to readers; on the gateway's own JID too.
    let listed = r.bob.chat(BOILER, "alarms").await.unwrap();
    for point in ["Pressure", "Temperature"] {
        assert!(listed.contains(point), "{listed}");
    }
    let all = r.alice.chat(COMPONENT, "alarms").await.unwrap();
    assert!(all.contains("Boiler room"), "{all}");

    // Bob reads only: refused, and said why.
    let refused = r.bob.chat(BOILER, "ack pressure").await.unwrap();
    assert!(
        refused.starts_with("Only users in access.control may acknowledge"),
        "{refused}"
    );
    // Carol: the answer an unknown device gets too; she learns nothing.
    let mut answers = Vec::new();
    for to in [BOILER, "nosuch@gw.localhost"] {
        let mut b = el("body", NS_CLIENT, &[]);
        b.append_text_node("ack pressure");
        let mut m = el("message", NS_CLIENT, &[("to", to), ("type", "chat")]);
        m.append_child(b);
        r.carol.send(m).await.unwrap();
        let answer = r
            .carol
            .expect(&format!("an answer from {to}"), WAIT, |e| {
                e.name() == "message" && e.attr("from").is_some_and(|f| f.starts_with(to))
            })
            .await
            .unwrap();
        assert_eq!(answer.attr("type"), Some("error"), "{}", xml(&answer));
        answers.push(error_condition(&answer));
    }
    assert_eq!(
        answers,
        [Some("forbidden".to_owned()), Some("forbidden".to_owned())]
    );

    // Alice acknowledges the pressure alarm.
    let acked = r.alice.chat(BOILER, "ack pressure").await.unwrap();
    assert!(
        acked.contains("Pressure") || acked.contains("pressure"),
        "{acked}"
    );
    r.alice.forget_unmatched();
    // Two more reminders of the temperature; none of the pressure since.
    for n in 1..=2 {
        r.alice
            .expect(
                &format!("temperature reminder {n} after the ack"),
                WAIT,
                reminder("Temperature"),
            )
            .await
            .unwrap();
    }
    let after: Vec<String> = unmatched_alerts(&mut r.alice)
        .into_iter()
        .filter(|m| m.contains("Pressure"))
        .collect();
    assert!(
        after.is_empty(),
        "reminded after the ack:\n{}",
        after.join("\n")
    );
    // Logged, and in the audit file (written off the event loop: polled,
    // with a deadline).
    assert!(
        r.gateway.log().contains("alarm acknowledged"),
        "the ack logged:\n{}",
        r.gateway.log()
    );
    let file = r.gateway.state_dir().join("audit.jsonl");
    let deadline = tokio::time::Instant::now() + WAIT;
    let (audit, acks) = loop {
        let audit = std::fs::read_to_string(&file).unwrap_or_default();
        let acks: Vec<serde_json::Value> = audit
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .filter(|e: &serde_json::Value| e["action"] == "ack")
            .collect();
        if !acks.is_empty() {
            break (audit, acks);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no ack in {} within {WAIT:?}:\n{audit}",
            file.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(acks.len(), 1, "one ack, the refused one not:\n{audit}");
    assert_eq!(acks[0]["who"], "alice@localhost", "{audit}");
    assert_eq!(acks[0]["alarm"], "boiler/pressure", "{audit}");
    assert_eq!(acks[0]["via"], "chat", "{audit}");

    // In the room, addressed to the nick: the same list; the gateway's own
    // lines get no answer (else it would go on talking).
    muc::say(&mut r.alice, ROOM, &format!("{NICK}: alarms"))
        .await
        .unwrap();
    let answer = muc::expect_groupchat(
        &mut r.alice,
        ROOM,
        Some(NICK),
        "the room's alarms answer",
        WAIT,
        // Not a reminder, which names the temperature too.
        |b| !is_alert_text(b) && b.contains("Temperature"),
    )
    .await
    .unwrap();
    assert!(
        body(&answer).is_some_and(|b| b.contains("active alarm")),
        "{}",
        xml(&answer)
    );
    r.alice.close().await;
    r.carol.close().await;
}

// ----- 7. bad quality neither raises nor clears ------------------------

async fn a_bad_or_uncertain_reading_neither_raises_nor_clears(kind: ServerKind) {
    let mut r = start(kind, Plan::default()).await;
    r.availability("online").await;
    r.publish("plant/boiler", r#"{"temperature":50.0,"pressure":1.0}"#)
        .await;

    // Uncertain (the device said it is offline) and bad (not JSON)
    // readings beyond the limit: no alarm.
    r.availability("offline").await;
    r.publish("plant/boiler", r#"{"temperature":50.0,"pressure":9.9}"#)
        .await;
    r.availability("online").await;
    r.publish("plant/boiler", "pressure: very high").await;
    r.publish("plant/boiler", r#"{"temperature":50.0,"pressure":"lots"}"#)
        .await;
    r.publish("plant/boiler/fence", "1").await;
    chat_alert(
        &mut r.alice,
        BOILER,
        "🔵 INFO Boiler room: Fence",
        &r.gateway,
    )
    .await;
    room_alert(&mut r.alice, "🔵 INFO Boiler room: Fence", &r.gateway).await;
    let early = unmatched_alerts(&mut r.alice);
    assert!(
        early.is_empty(),
        "raised by a bad or uncertain reading:\n{}",
        early.join("\n")
    );

    // Raised by a good one.
    r.publish("plant/boiler", r#"{"temperature":50.0,"pressure":4.4}"#)
        .await;
    chat_alert(
        &mut r.alice,
        BOILER,
        "🔴 CRITICAL Boiler room: Pressure is 4.4 bar",
        &r.gateway,
    )
    .await;
    room_alert(
        &mut r.alice,
        "🔴 CRITICAL Boiler room: Pressure is 4.4 bar",
        &r.gateway,
    )
    .await;
    // Uncertain and bad readings back inside: no clear.
    r.availability("offline").await;
    r.publish("plant/boiler", r#"{"temperature":50.0,"pressure":1.0}"#)
        .await;
    r.availability("online").await;
    r.publish("plant/boiler", "{\"pressure\":").await;
    r.publish("plant/boiler/fence", "-1").await;
    chat_alert(
        &mut r.alice,
        BOILER,
        "✅ CLEARED Boiler room: Fence",
        &r.gateway,
    )
    .await;
    room_alert(&mut r.alice, "✅ CLEARED Boiler room: Fence", &r.gateway).await;
    let cleared = unmatched_alerts(&mut r.alice);
    assert!(
        cleared.is_empty(),
        "cleared by a bad or uncertain reading:\n{}",
        cleared.join("\n")
    );
    // A good reading inside clears it.
    r.publish("plant/boiler", r#"{"temperature":50.0,"pressure":1.0}"#)
        .await;
    chat_alert(
        &mut r.alice,
        BOILER,
        "✅ CLEARED Boiler room: Pressure is back at 1.0 bar",
        &r.gateway,
    )
    .await;
    room_alert(
        &mut r.alice,
        "✅ CLEARED Boiler room: Pressure is back at 1.0 bar",
        &r.gateway,
    )
    .await;
    r.alice.close().await;
}

fieldbridge_e2e::on_every_server!(
    a_value_beyond_its_limit_raises_one_alert_in_chat_and_in_the_room_and_clears_by_the_hysteresis,
    the_alerts_node_and_the_state_item_carry_the_alarm,
    an_outage_of_the_whole_broker_is_one_connection_alert,
    alerts_raised_while_the_link_was_down_arrive_after_it_is_back_with_their_time,
    the_gateway_rejoins_its_room_after_a_server_restart,
    the_gateway_rejoins_its_room_after_a_kick,
    the_gateway_creates_its_room_members_only_with_the_readers,
    ack_from_a_control_user_stops_reminders_a_reader_is_refused_an_outsider_learns_nothing,
    a_bad_or_uncertain_reading_neither_raises_nor_clears,
);

#[test]
fn stamps_are_read_as_xep_0082_writes_them() {
    assert_eq!(epoch_seconds("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(epoch_seconds("2026-12-02T14:03:12Z"), Some(1_796_220_192));
    assert_eq!(
        epoch_seconds("2026-12-02T14:03:12.345Z"),
        Some(1_796_220_192)
    );
    assert_eq!(
        epoch_seconds("2026-12-02T14:03:12+00:00"),
        Some(1_796_220_192)
    );
    assert_eq!(epoch_seconds("2024-02-29T00:00:00Z"), Some(1_709_164_800));
    assert_eq!(epoch_seconds("2026-12-02 14:03:12"), None);
    assert_eq!(epoch_seconds("2026-12-02T14:03:12+01:00"), None);
}
