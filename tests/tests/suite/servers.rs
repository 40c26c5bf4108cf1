//! End-to-end against every server: the real gateway binary with a
//! simulated device, behind a real Prosody and a real ejabberd, checked by
//! a real XMPP client: presence, a pubsub notification, and a reconnect
//! after the server restarts.

use std::time::Duration;

use fieldbridge_e2e::client::{XmppUser, el, is_presence, show, status_text, with_child, xml};
use fieldbridge_e2e::gateway::Gateway;
use fieldbridge_e2e::prosody::COMPONENT;
use fieldbridge_e2e::pubsub;
use fieldbridge_e2e::server::{Server, ServerKind};
use minidom::Element;
use tokio::time::Instant;

const BOILER: &str = "boiler@gw.localhost";
const WAIT: Duration = Duration::from_secs(15);
const CONNECTED: &str = "connected to the XMPP server";

const DEVICES: &str = "  boiler:\n    name: Boiler room\n    connection: sim\n    poll: 200ms\n    points:\n      \
temperature: { signal: constant, value: 21.5, unit: \"°C\" }\n";

async fn subscribe_presence(user: &mut XmppUser) {
    user.subscribe_presence(BOILER).await.unwrap();
}

/// Waits for available presence from the boiler with its reading.
async fn expect_online_with_value(user: &mut XmppUser) -> Element {
    let p = user
        .expect("available presence with the temperature", WAIT, |e| {
            is_presence(e, BOILER, None)
                && show(e).is_none()
                && status_text(e).is_some_and(|s| s.starts_with("temperature "))
        })
        .await
        .unwrap();
    assert_eq!(
        status_text(&p).as_deref(),
        Some("temperature 21.50 °C"),
        "{}",
        xml(&p)
    );
    p
}

async fn expect_temperature_notification(user: &mut XmppUser) {
    let fields = pubsub::next_fields(user, "boiler", WAIT).await.unwrap();
    let t = fields
        .iter()
        .find(|f| f.name == "temperature")
        .unwrap_or_else(|| panic!("no temperature in {fields:?}"));
    assert_eq!(t.kind, "numeric");
    assert_eq!(t.value.parse::<f64>().ok(), Some(21.5), "{t:?}");
    assert_eq!(t.unit.as_deref(), Some("°C"));
    assert!(!t.invalid);
}

async fn presence_pubsub_and_reconnect(kind: ServerKind) {
    let started = Instant::now();
    let mut server = Server::start(kind)
        .await
        .unwrap_or_else(|e| panic!("{} starts: {e}", kind.name()));
    eprintln!("{} listening after {:?}", kind.name(), started.elapsed());
    assert_eq!(server.kind(), kind);
    let registering = Instant::now();
    server.register("alice", "pw").expect("alice registered");
    eprintln!(
        "{} registered alice in {:?}",
        kind.name(),
        registering.elapsed()
    );
    let mut gateway = Gateway::start(&server, &["alice@localhost"], DEVICES)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "gateway starts: {e}\n{} log:\n{}",
                kind.name(),
                server.log()
            )
        });

    let mut alice = XmppUser::connect(server.c2s_port(), "alice", "pw")
        .await
        .unwrap();
    subscribe_presence(&mut alice).await;
    expect_online_with_value(&mut alice).await;
    pubsub::subscribe(&mut alice, "boiler").await.unwrap();
    expect_temperature_notification(&mut alice).await;
    alice.close().await;

    let stopping = Instant::now();
    server.stop().await.unwrap();
    eprintln!("{} stopped in {:?}", kind.name(), stopping.elapsed());
    gateway.wait_disconnected(WAIT).await.unwrap();
    let restarted = Instant::now();
    server.restart().await.unwrap();
    eprintln!(
        "{} listening again after {:?}",
        kind.name(),
        restarted.elapsed()
    );
    gateway
        .wait_log(CONNECTED, 2, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{} log:\n{}", kind.name(), server.log()));

    // A new session: the server probes the device on alice's initial
    // presence (the subscription survived in the server's roster), and the
    // gateway kept alice's node subscription.
    let mut alice = XmppUser::connect(server.c2s_port(), "alice", "pw")
        .await
        .unwrap();
    expect_online_with_value(&mut alice).await;
    // The value did not change, so no new item: the node subscription is
    // still there, and the last item is the device's state.
    let subscriptions = alice
        .iq(
            COMPONENT,
            "get",
            with_child(
                el("pubsub", pubsub::NS_PUBSUB, &[]),
                el("subscriptions", pubsub::NS_PUBSUB, &[]),
            ),
        )
        .await
        .unwrap();
    assert!(
        xml(&subscriptions).contains("node='boiler'"),
        "{}",
        xml(&subscriptions)
    );
    let last = pubsub::get_items(&mut alice, "boiler", &[("max_items", "1")])
        .await
        .unwrap();
    let items = pubsub::items_of(&last);
    assert_eq!(items.len(), 1, "{}", xml(&last));
    assert!(
        xml(&items[0]).contains("name='temperature'"),
        "{}",
        xml(&last)
    );
    alice.close().await;
    gateway.stop().await.unwrap();
    server.stop().await.unwrap();
}

// One test per server kind: the macro's expansion names every kind, and a
// new one does not compile until it has its test.
fieldbridge_e2e::on_every_server!(presence_pubsub_and_reconnect);
