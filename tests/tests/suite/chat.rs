//! End-to-end: chat commands to a device JID, from real XMPP clients
//! through a real Prosody and a real ejabberd to the real gateway binary
//! and its simulator.

use std::time::Duration;

use fieldbridge_e2e::client::{XmppUser, is_presence, status_text};
use fieldbridge_e2e::gateway::{Gateway, SIMULATOR, Setup};
use fieldbridge_e2e::server::{Server, ServerKind};

const BOILER: &str = "boiler@gw.localhost";
const WAIT: Duration = Duration::from_secs(15);

const DEVICES: &str = "  boiler:\n    name: Boiler room\n    connection: sim\n    poll: 100ms\n    points:\n      \
temperature: { signal: constant, value: 21.5, unit: \"°C\" }\n      \
flow: { signal: constant, value: 62.79916, unit: \"°C\", label: Flow temperature }\n      \
setpoint: { signal: constant, value: 50.0, unit: \"°C\", writable: true, decimals: 1, min: 30, max: 85 }\n";

/// A zone with a half-hour offset, so that a time shown in UTC cannot pass.
const ZONE: &str = "Asia/Kolkata";

async fn setup(kind: ServerKind) -> (Server, Gateway) {
    let server = Server::start(kind).await.expect("the XMPP server starts");
    for u in ["alice", "bob"] {
        server.register(u, "pw").expect("user registered");
    }
    let gateway = Gateway::started(
        &server,
        &Setup::alice_controls(SIMULATOR, DEVICES),
        &[("FIELDBRIDGE__GATEWAY__TIMEZONE", ZONE)],
    )
    .await;
    (server, gateway)
}

/// Chats with the boiler; returns its answer.
async fn ask(user: &mut XmppUser, text: &str) -> String {
    user.chat(BOILER, text).await.unwrap()
}

async fn chat_commands_read_and_write_a_device(kind: ServerKind) {
    let (server, _gateway) = setup(kind).await;
    let mut alice = XmppUser::connect(server.c2s_port(), "alice", "pw")
        .await
        .unwrap();

    let help = ask(&mut alice, "help").await;
    assert!(help.starts_with("Boiler room: commands"), "{help}");
    assert!(
        help.contains("set <point> <value>: change setpoint"),
        "{help}"
    );
    let unknown = ask(&mut alice, "blorp").await;
    assert_eq!(unknown, format!("unknown command `blorp`\n{help}"));

    // The first reading arrives within a poll or two; words in any case.
    let temp = wait_for_line(&mut alice, "get TEMPERATURE", "temperature 21.50 °C (").await;
    assert!(temp.ends_with(" s ago)"), "{temp}");
    // A label, in any case; an unrounded float as people read it.
    let flow = wait_for_line(
        &mut alice,
        "Get flow Temperature",
        "Flow temperature 62.80 °C (",
    )
    .await;
    assert!(flow.ends_with(" s ago)"), "{flow}");
    let status = ask(&mut alice, "status").await;
    assert!(status.starts_with("Boiler room: online\n"), "{status}");
    assert!(status.contains("\nsetpoint 50.0 °C ("), "{status}");
    let all = ask(&mut alice, "get").await;
    let lines: Vec<&str> = all.lines().collect();
    assert_eq!(lines.len(), 3, "{all}");
    assert!(lines[0].starts_with("Flow temperature 62.80 °C ("), "{all}");

    let done = ask(&mut alice, "Set SETPOINT 62.5").await;
    assert_eq!(done, "setpoint set to 62.5 °C.");
    wait_for_line(&mut alice, "get setpoint", "setpoint 62.5 °C (").await;
    let history = ask(&mut alice, "history setpoint 3").await;
    let mut lines = history.lines();
    let header = lines.next().unwrap();
    // "setpoint: all 2 values, 19:31:02–19:31:03 +05:30"
    assert!(header.starts_with("setpoint: "), "{history}");
    assert!(
        header.contains(" values, ") || header.contains("its only value, "),
        "{history}"
    );
    assert!(header.ends_with(" +05:30"), "{history}");
    let values: Vec<&str> = lines.collect();
    assert!((1..=3).contains(&values.len()), "{history}");
    for line in &values {
        // 2026-11-25 19:33:07 +05:30  62.5 °C
        let (at, value) = line.split_once("  ").expect("time and value");
        assert_eq!(at.len(), 26, "{line}");
        assert!(at.ends_with(" +05:30"), "{line}");
        assert!(value == "50.0 °C" || value == "62.5 °C", "{line}");
    }
    assert!(values.last().unwrap().ends_with("  62.5 °C"), "{history}");

    let bad = ask(&mut alice, "set setpoint warm").await;
    assert_eq!(bad, "setpoint: \"warm\" is not a number");
    let ro = ask(&mut alice, "set temperature 3").await;
    assert_eq!(ro, "temperature is read-only.");
    alice.close().await;
}

/// The status text a subscriber receives: labels, readable numbers.
async fn the_status_text_shows_labels_and_readable_numbers(kind: ServerKind) {
    let (server, _gateway) = setup(kind).await;
    let mut bob = XmppUser::connect(server.c2s_port(), "bob", "pw")
        .await
        .unwrap();
    bob.subscribe_presence(BOILER).await.unwrap();
    let want = "Flow temperature 62.80 °C, setpoint 50.0 °C, temperature 21.50 °C";
    let p = bob
        .expect("presence with every reading", WAIT, |e| {
            is_presence(e, BOILER, None) && status_text(e).as_deref() == Some(want)
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.attr("type"), None);
    bob.close().await;
}

async fn a_reader_outside_access_control_cannot_write(kind: ServerKind) {
    let (server, _gateway) = setup(kind).await;
    let mut bob = XmppUser::connect(server.c2s_port(), "bob", "pw")
        .await
        .unwrap();
    let help = ask(&mut bob, "help").await;
    assert!(!help.contains("set <point>"), "{help}");
    let refused = ask(&mut bob, "set setpoint 70").await;
    assert_eq!(
        refused,
        "You may not change this device (not in access.control)."
    );
    // The value did not move.
    let line = wait_for_line(&mut bob, "get setpoint", "setpoint 50.0 °C (").await;
    assert!(line.ends_with("ago)"), "{line}");
    bob.close().await;
}

async fn writes_outside_a_points_limits_are_refused_with_them(kind: ServerKind) {
    let (server, _gateway) = setup(kind).await;
    let mut alice = XmppUser::connect(server.c2s_port(), "alice", "pw")
        .await
        .unwrap();
    wait_for_line(&mut alice, "get setpoint", "setpoint 50.0 °C (").await;

    let too_hot = ask(&mut alice, "set setpoint 1e6").await;
    assert_eq!(
        too_hot,
        "Could not set setpoint: 1000000 °C is above the maximum 85 °C"
    );
    let too_cold = ask(&mut alice, "set setpoint 29.9").await;
    assert_eq!(
        too_cold,
        "Could not set setpoint: 29.9 °C is below the minimum 30 °C"
    );
    let now = ask(&mut alice, "get setpoint").await;
    assert!(now.starts_with("setpoint 50.0 °C ("), "{now}");

    let done = ask(&mut alice, "set setpoint 85").await;
    assert_eq!(done, "setpoint set to 85.0 °C.");
    wait_for_line(&mut alice, "get setpoint", "setpoint 85.0 °C (").await;
    // The refused values never reached the simulator: it published 50,
    // then 85, and nothing between.
    let history = ask(&mut alice, "history setpoint 10").await;
    let values: Vec<&str> = history
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once("  ").map(|(_, v)| v))
        .collect();
    assert_eq!(values, ["50.0 °C", "85.0 °C"], "{history}");
    alice.close().await;
}

/// Asks `question` until the answer starts with `prefix`.
async fn wait_for_line(user: &mut XmppUser, question: &str, prefix: &str) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let line = ask(user, question).await;
        if line.starts_with(prefix) {
            return line;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{question:?} never answered {prefix:?}; last: {line}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fieldbridge_e2e::on_every_server!(
    chat_commands_read_and_write_a_device,
    the_status_text_shows_labels_and_readable_numbers,
    a_reader_outside_access_control_cannot_write,
    writes_outside_a_points_limits_are_refused_with_them
);
