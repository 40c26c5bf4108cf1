//! End-to-end: the gateway's Prometheus `/metrics` and `/healthz`, scraped
//! from the real binary against a real Prosody while a real XMPP client
//! chats and subscribes: the text passes `promtool check metrics`, the
//! counters move by what the test did, and health follows the XMPP link.

use std::time::Duration;

use fieldbridge_e2e::client::XmppUser;
use fieldbridge_e2e::gateway::{Gateway, SIMULATOR, Setup};
use fieldbridge_e2e::http::{Answer, get, get_until, sample};
use fieldbridge_e2e::pubsub::{next_fields, subscribe};
use fieldbridge_e2e::server::{Server, ServerKind};
use fieldbridge_e2e::{free_port, output_within, require_tool};

const BOILER: &str = "boiler@gw.localhost";
const WAIT: Duration = Duration::from_secs(15);

const DEVICES: &str = "  boiler:\n    connection: sim\n    poll: 100ms\n    points:\n      \
temperature: { signal: sine, range: [20, 80], unit: \"°C\" }\n";

/// Prosody with alice, and the gateway serving metrics on a free port.
async fn setup() -> (Server, Gateway, u16) {
    let server = Server::start(ServerKind::Prosody)
        .await
        .expect("Prosody starts");
    server.register("alice", "pw").expect("alice registered");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let gateway = Gateway::started(
        &server,
        &Setup::alice_controls(SIMULATOR, DEVICES),
        &[("FIELDBRIDGE__METRICS__LISTEN", &listen)],
    )
    .await;
    (server, gateway, port)
}

/// Lints a scrape with promtool; fails with what it said.
fn promtool_check(body: &str) {
    use std::io::Write;
    let mut file = tempfile::NamedTempFile::new().expect("a temp file");
    file.write_all(body.as_bytes()).expect("written");
    let out = output_within(
        std::process::Command::new("sh")
            .arg("-c")
            .arg("promtool check metrics < \"$1\"")
            .arg("sh")
            .arg(file.path()),
        Duration::from_secs(30),
    )
    .expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool check metrics failed: {}{}\n{body}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn scrape(port: u16) -> String {
    let answer = get(port, "/metrics").await.expect("GET /metrics");
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.body
}

#[tokio::test]
async fn metrics_are_linted_and_count_what_the_test_did() {
    require_tool("promtool", "prometheus");
    let (server, gateway, port) = setup().await;
    // The device is online once its first readings went through.
    let online =
        |a: &Answer| sample(&a.body, "fieldbridge_devices", &[("status", "online")]) == 1.0;
    get_until(port, "/metrics", WAIT, online)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", gateway.log()));

    let before = scrape(port).await;
    promtool_check(&before);
    assert_eq!(sample(&before, "fieldbridge_xmpp_link_up", &[]), 1.0);
    assert_eq!(sample(&before, "fieldbridge_adapters_running", &[]), 1.0);
    assert_eq!(sample(&before, "fieldbridge_xmpp_connects_total", &[]), 1.0);
    let boiler = [("device", "boiler")];
    assert!(sample(&before, "fieldbridge_readings_received_total", &boiler) >= 1.0);

    // What the test does: three chat commands, one pubsub subscription,
    // and three notifications received.
    let mut alice = XmppUser::connect(server.c2s_port(), "alice", "pw")
        .await
        .unwrap();
    for command in ["help", "status", "get temperature"] {
        let answer = alice.chat(BOILER, command).await.unwrap();
        assert!(!answer.is_empty());
    }
    subscribe(&mut alice, "boiler").await.unwrap();
    for _ in 0..3 {
        next_fields(&mut alice, "boiler", WAIT).await.unwrap();
    }

    let after = scrape(port).await;
    promtool_check(&after);
    let moved = |name: &str, labels: &[(&str, &str)]| {
        sample(&after, name, labels) - sample(&before, name, labels)
    };
    // Exactly what the test did, where nothing else does it.
    assert_eq!(moved("fieldbridge_chat_commands_total", &[]), 3.0);
    let pubsub_added = [("kind", "pubsub"), ("change", "added")];
    assert_eq!(moved("fieldbridge_subscriptions_total", &pubsub_added), 1.0);
    assert_eq!(
        sample(&after, "fieldbridge_subscribers", &[("kind", "pubsub")]),
        1.0
    );
    // At least what the test saw, where the gateway goes on meanwhile.
    assert!(moved("fieldbridge_notifications_sent_total", &[]) >= 3.0);
    assert!(moved("fieldbridge_items_published_total", &boiler) >= 3.0);
    assert!(moved("fieldbridge_readings_received_total", &boiler) >= 3.0);
    // The first notification is the last item, sent on subscribe: its
    // reading is old by design and not a delay; the others are.
    assert!(moved("fieldbridge_publish_delay_seconds_count", &[]) >= 2.0);
    // Nothing was refused.
    assert_eq!(
        sample(&after, "fieldbridge_stanzas_refused_total", &[]),
        0.0
    );
    alice.close().await;
}

#[tokio::test]
async fn healthz_follows_the_xmpp_link() {
    let (mut server, gateway, port) = setup().await;
    let up = get_until(port, "/healthz", WAIT, |a| a.status == 200)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", gateway.log()));
    let body: serde_json::Value = serde_json::from_str(&up.body).expect("JSON");
    assert_eq!(body["status"], "ok", "{body}");
    assert_eq!(body["link"], "up", "{body}");
    assert_eq!(body["adapters"]["running"], 1, "{body}");
    assert_eq!(body["adapters"]["configured"], 1, "{body}");

    server.stop().await.unwrap();
    let down = get_until(port, "/healthz", WAIT, |a| a.status == 503)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", gateway.log()));
    let body: serde_json::Value = serde_json::from_str(&down.body).expect("JSON");
    assert_eq!(body["status"], "unhealthy", "{body}");
    assert_eq!(body["reason"], "the XMPP link is down", "{body}");

    server.restart().await.unwrap();
    // The gateway's reconnect backoff is capped at 30 s.
    let back = get_until(port, "/healthz", Duration::from_secs(45), |a| {
        a.status == 200
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", gateway.log()));
    assert!(back.body.contains("\"link\":\"up\""), "{}", back.body);
}
