//! End-to-end: what an operator relies on, against a real Prosody and a
//! real ejabberd: SIGINT (Ctrl-C) stops the gateway as SIGTERM does, the
//! JSON log carries stable `device`, `point` and `jid` fields, and
//! `RUST_LOG` overrides `-v`.

use std::time::Duration;

use fieldbridge_e2e::client::{XmppUser, is_presence, status_text, xml};
use fieldbridge_e2e::gateway::{Gateway, SIMULATOR, Setup};
use fieldbridge_e2e::pubsub::{next_fields, subscribe};
use fieldbridge_e2e::server::{Server, ServerKind};
use serde_json::Value;

const BOILER: &str = "boiler@gw.localhost";
const WAIT: Duration = Duration::from_secs(15);

/// Two identical ramps read every 100 ms (they read the same at each poll,
/// 100 apart from one poll to the next); `level` is published at most once
/// an hour, so after its first reading core holds the newest one back
/// until the gateway stops; `tick` is published at every poll.
const DEVICES: &str = "  boiler:\n    name: Boiler room\n    connection: sim\n    poll: 100ms\n    period: 1h\n    points:\n      \
level: { signal: ramp, range: [0, 3600000], min_interval: 1h }\n      \
tick: { signal: ramp, range: [0, 3600000] }\n      \
setpoint: { signal: constant, value: 50.0, unit: \"°C\", writable: true }\n";

/// The value of the next notification of `point`, within [`WAIT`].
async fn next_of(alice: &mut XmppUser, point: &str) -> f64 {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let fields = next_fields(alice, "boiler", left)
            .await
            .unwrap_or_else(|e| panic!("no {point} within {WAIT:?}: {e}"));
        if let Some(f) = fields.iter().find(|f| f.name == point) {
            return f.value.parse().unwrap();
        }
    }
}

async fn setup(kind: ServerKind, env: &[(&str, &str)]) -> (Server, Gateway) {
    let server = Server::start(kind).await.expect("the XMPP server starts");
    server.register("alice", "pw").expect("user registered");
    let gateway = Gateway::started(&server, &Setup::alice_controls(SIMULATOR, DEVICES), env).await;
    (server, gateway)
}

async fn sigint_stops_the_gateway_as_sigterm_does(kind: ServerKind) {
    let (server, mut gateway) = setup(kind, &[]).await;
    let mut alice = XmppUser::connect(server.c2s_port(), "alice", "pw")
        .await
        .unwrap();
    alice.subscribe_presence(BOILER).await.unwrap();
    subscribe(&mut alice, "boiler").await.unwrap();
    // The level published (at the first poll, before alice subscribed).
    let deadline = tokio::time::Instant::now() + WAIT;
    let first: f64 = loop {
        let answer = alice.chat(BOILER, "get level").await.unwrap();
        // "level 1865074.736118 (2 s ago)"
        if let Some(v) = answer
            .strip_prefix("level ")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
        {
            break v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no level published within {WAIT:?}: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // A later poll: its `tick` is published, its `level` (read just
    // before, the same value) is held back.
    let deadline = tokio::time::Instant::now() + WAIT;
    let later = loop {
        let tick = next_of(&mut alice, "tick").await;
        if tick > first {
            break tick;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no poll after the first level within {WAIT:?}"
        );
    };
    alice.forget_unmatched();

    let status = gateway.interrupt().await.unwrap();
    assert_eq!(status.code(), Some(0), "SIGINT exits 0\n{}", gateway.log());
    // What min_interval held back is published on the way out...
    let held = next_of(&mut alice, "level").await;
    assert!(
        held >= later,
        "the held level {held} is older than the poll of tick {later}"
    );
    // ...then every device's last presence, and the state is saved.
    let bye = alice
        .expect("the last presence", WAIT, |e| {
            is_presence(e, BOILER, Some("unavailable"))
        })
        .await
        .unwrap();
    assert_eq!(
        status_text(&bye).as_deref(),
        Some("gateway stopped"),
        "{}",
        xml(&bye)
    );
    assert!(gateway.state_dir().join("state.redb").exists());
    alice.close().await;
}

/// Every line of the gateway's log, each a JSON object.
fn json_lines(gateway: &Gateway) -> Vec<serde_json::Map<String, Value>> {
    gateway
        .log()
        .lines()
        .map(|l| match serde_json::from_str(l) {
            Ok(Value::Object(o)) => o,
            _ => panic!("not a JSON object: {l}"),
        })
        .collect()
}

/// The first log line whose `message` is `message`.
fn line<'a>(
    lines: &'a [serde_json::Map<String, Value>],
    message: &str,
) -> &'a serde_json::Map<String, Value> {
    lines
        .iter()
        .find(|l| l.get("message").and_then(Value::as_str) == Some(message))
        .unwrap_or_else(|| panic!("no {message:?} in the log: {lines:#?}"))
}

fn field<'a>(line: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a str> {
    line.get(name).and_then(Value::as_str)
}

async fn the_json_log_names_the_device_point_and_jid(kind: ServerKind) {
    let (server, gateway) = setup(kind, &[]).await;
    let mut alice = XmppUser::connect(server.c2s_port(), "alice", "pw")
        .await
        .unwrap();
    alice.subscribe_presence(BOILER).await.unwrap();
    let answer = alice.chat(BOILER, "set setpoint 55").await.unwrap();
    assert_eq!(answer, "setpoint set to 55.00 °C.");
    gateway
        .wait_log("write asked by chat", 1, WAIT)
        .await
        .unwrap();
    let lines = json_lines(&gateway);
    for l in &lines {
        for key in ["timestamp", "level", "message"] {
            assert!(l.contains_key(key), "no {key} in {l:?}");
        }
    }
    let write = line(&lines, "write asked by chat");
    assert_eq!(field(write, "jid"), Some("alice@localhost"), "{write:?}");
    assert_eq!(field(write, "device"), Some("boiler"), "{write:?}");
    assert_eq!(field(write, "point"), Some("setpoint"), "{write:?}");
    let subscription = line(&lines, "presence subscription");
    assert_eq!(
        field(subscription, "jid"),
        Some("alice@localhost"),
        "{subscription:?}"
    );
    assert_eq!(field(subscription, "device"), Some("boiler"));
    let online = line(&lines, "device status changed");
    assert_eq!(field(online, "device"), Some("boiler"), "{online:?}");
    alice.close().await;
}

fn debug_lines(gateway: &Gateway) -> Vec<serde_json::Map<String, Value>> {
    json_lines(gateway)
        .into_iter()
        .filter(|l| field(l, "level") == Some("DEBUG"))
        .collect()
}

async fn rust_log_overrides_the_verbosity_flag(kind: ServerKind) {
    // The fixture runs `fieldbridge run -v`: debug lines, such as each
    // adapter starting.
    let (_server, gateway) = setup(kind, &[]).await;
    gateway
        .wait_log("device status changed", 1, WAIT)
        .await
        .unwrap();
    let debug = debug_lines(&gateway);
    assert!(
        debug
            .iter()
            .any(|l| field(l, "message") == Some("starting adapter")),
        "-v logs debug lines: {debug:?}"
    );
    drop(gateway);

    // The same with RUST_LOG=info: none, though -v asks for them.
    let (_server, gateway) = setup(kind, &[("RUST_LOG", "info")]).await;
    gateway
        .wait_log("device status changed", 1, WAIT)
        .await
        .unwrap();
    let debug = debug_lines(&gateway);
    assert!(debug.is_empty(), "RUST_LOG=info, yet: {debug:?}");
}

fieldbridge_e2e::on_every_server!(
    sigint_stops_the_gateway_as_sigterm_does,
    the_json_log_names_the_device_point_and_jid,
    rust_log_overrides_the_verbosity_flag,
);
