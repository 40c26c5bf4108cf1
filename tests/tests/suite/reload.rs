//! End-to-end: SIGHUP reloads gateway.yaml on the running gateway without
//! dropping its XMPP link (issue 13, point 4). Through a real Prosody and
//! a real client: an added device appears in disco and pubsub, a removed
//! one goes unavailable saying why and comes back with its subscribers, a
//! device left alone says nothing, and a broken file changes nothing.

use std::time::Duration;

use fieldbridge_e2e::client::{XmppUser, el, error_condition, is_presence, status_text, xml};
use fieldbridge_e2e::gateway::Gateway;
use fieldbridge_e2e::pubsub;
use fieldbridge_e2e::server::{COMPONENT, Server, ServerKind};
use fieldbridge_e2e::signal;

const A: &str = "a@gw.localhost";
const C: &str = "c@gw.localhost";
const WAIT: Duration = Duration::from_secs(15);

/// Constant values: once online, a device left alone has nothing new to
/// say, so any presence from it after the reload would be the reload's.
const A_AND_C: &str = "  a: { connection: sim, poll: 200ms, points: { level: { signal: constant, value: 3 } } }\n  \
c: { connection: sim, poll: 200ms, points: { flow: { signal: constant, value: 7 } } }\n";
const B: &str =
    "  b: { connection: sim, poll: 200ms, points: { speed: { signal: ramp, range: [0, 100] } } }\n";

/// The component's answer to a disco#items request.
async fn disco_items(user: &mut XmppUser) -> minidom::Element {
    user.iq(
        COMPONENT,
        "get",
        el("query", "http://jabber.org/protocol/disco#items", &[]),
    )
    .await
    .unwrap()
}

/// The device nodes disco#items lists at the component.
async fn nodes(user: &mut XmppUser) -> Vec<String> {
    let answer = disco_items(user).await;
    answer
        .get_child("query", "http://jabber.org/protocol/disco#items")
        .unwrap_or_else(|| panic!("no items: {}", xml(&answer)))
        .children()
        .filter_map(|i| i.attr("node").map(str::to_owned))
        // The gateway's own alerts node is always there.
        .filter(|n| n != "alerts")
        .collect()
}

/// Sends SIGHUP and waits for the reload's line (the `n`th of its kind).
async fn reload(gw: &Gateway, line: &str, n: usize) {
    signal(gw.pid().expect("running"), "HUP");
    gw.wait_log(line, n, WAIT).await.unwrap();
}

#[tokio::test]
async fn a_sighup_adds_and_removes_devices_on_the_same_link_and_a_broken_file_changes_nothing() {
    let server = Server::start(ServerKind::Prosody).await.unwrap();
    server.register("alice", "pw").unwrap();
    server.register("bob", "pw").unwrap();
    let gw = Gateway::start(&server, &["alice@localhost"], A_AND_C)
        .await
        .unwrap();
    let mut alice = XmppUser::connect(server.c2s_port(), "alice", "pw")
        .await
        .unwrap();
    for device in [A, C] {
        alice.subscribe_presence(device).await.unwrap();
        alice
            .expect(&format!("{device} online"), WAIT, |e| {
                is_presence(e, device, None) && status_text(e).is_some_and(|t| t != "online")
            })
            .await
            .unwrap();
    }
    assert_eq!(nodes(&mut alice).await, ["a", "c"]);
    let mut bob = XmppUser::connect(server.c2s_port(), "bob", "pw")
        .await
        .unwrap();
    let refused = disco_items(&mut bob).await;
    assert_eq!(error_condition(&refused).as_deref(), Some("forbidden"));
    // From here on, anything from a would be news.
    alice.forget_unmatched();

    // b added, c removed, a left as it was (on the same connection, which
    // restarts), bob let in.
    gw.edit_config(|yaml| {
        yaml.replace(
            "  c: { connection: sim, poll: 200ms, points: { flow: { signal: constant, value: 7 } } }\n",
            B,
        )
        .replace("read: [\"alice@localhost\"]", "read: [\"alice@localhost\", \"bob@localhost\"]")
    })
    .unwrap();
    reload(
        &gw,
        "reloaded gateway.yaml: +1 device (b), -1 device (c), ~1 connection (sim), access changed",
        1,
    )
    .await;
    assert_eq!(nodes(&mut bob).await, ["a", "b"], "access applies at once");
    let gone = alice
        .expect("c unavailable", WAIT, |e| {
            is_presence(e, C, Some("unavailable"))
        })
        .await
        .unwrap();
    assert_eq!(
        status_text(&gone).as_deref(),
        Some("removed from the configuration")
    );
    assert_eq!(nodes(&mut alice).await, ["a", "b"]);
    pubsub::subscribe(&mut alice, "b").await.unwrap();
    let fields = pubsub::next_fields(&mut alice, "b", WAIT).await.unwrap();
    assert_eq!(fields[0].name, "speed");
    // A round trip with a after b's item: whatever a had sent since the
    // reload has arrived by now. It sent no presence.
    assert!(!alice.chat(A, "status").await.unwrap().is_empty());
    let from_a: Vec<String> = alice
        .unmatched()
        .iter()
        .filter(|e| e.name() == "presence" && e.attr("from").is_some_and(|f| f.starts_with(A)))
        .map(xml)
        .collect();
    assert!(from_a.is_empty(), "a spoke after the reload: {from_a:?}");
    assert_eq!(gw.log_count("connected to the XMPP server"), 1, "same link");

    // A broken file: every problem logged with where it is, nothing changes.
    let broken = "  bad: { connection: sim, points: { p: { signal: sinus } } }\n";
    let before = std::fs::read_to_string(gw.config_file()).unwrap();
    let line = before.lines().count() + 1;
    let column = broken.find("sinus").unwrap() + 1;
    gw.edit_config(|yaml| format!("{yaml}{broken}")).unwrap();
    reload(
        &gw,
        "not reloaded (1 problem): the running configuration stays",
        1,
    )
    .await;
    let expected =
        format!("gateway.yaml:{line}:{column}: devices.bad.points.p.signal: unknown value");
    assert_eq!(gw.log_count(&expected), 1, "{expected:?} in:\n{}", gw.log());
    assert_eq!(nodes(&mut alice).await, ["a", "b"]);
    assert!(!alice.chat(A, "status").await.unwrap().is_empty());

    // c back: its subscriber, kept, sees it again.
    gw.edit_config(|_| format!("{before}{}", A_AND_C.lines().nth(1).unwrap()) + "\n")
        .unwrap();
    reload(
        &gw,
        "reloaded gateway.yaml: +1 device (c), ~1 connection (sim)",
        1,
    )
    .await;
    alice
        .expect("c online again", WAIT, |e| {
            is_presence(e, C, None) && status_text(e).is_some_and(|t| t.contains('7'))
        })
        .await
        .unwrap();
    assert_eq!(nodes(&mut alice).await, ["a", "b", "c"]);
    assert_eq!(gw.log_count("connected to the XMPP server"), 1, "same link");
}
