//! End-to-end: a pubsub item is the device's whole state. The real gateway
//! binary with simulated devices, a real Prosody and ejabberd, and real
//! XMPP clients: one item per poll when values change, none but the
//! heartbeat when they do not, a thousand subscriptions made live and kept
//! across a restart, and a state directory of the previous version taken
//! over with its items (served by id and as a XEP-0323 historical readout).

use std::collections::BTreeSet;
use std::time::Duration;

use fieldbridge_e2e::client::{NS_CLIENT, XmppUser, el, with_child, xml};
use fieldbridge_e2e::gateway::Gateway;
use fieldbridge_e2e::pubsub::{self, NS_EVENT, NS_PUBSUB, NS_SENSORDATA, subscribe};
use fieldbridge_e2e::server::{COMPONENT, Server, ServerKind};
use minidom::Element;
use tokio::time::Instant;

const WAIT: Duration = Duration::from_secs(15);

/// The item of a notification.
fn item_of(m: &Element) -> Element {
    m.get_child("event", NS_EVENT)
        .and_then(|e| e.get_child("items", NS_EVENT))
        .and_then(|i| i.get_child("item", NS_EVENT))
        .cloned()
        .unwrap_or_else(|| panic!("no item in {}", xml(m)))
}

/// The next notification of `node`.
async fn next_item(user: &mut XmppUser, node: &str) -> Element {
    let m = user
        .expect(&format!("a notification of {node}"), WAIT, |e| {
            e.get_child("event", NS_EVENT)
                .and_then(|ev| ev.get_child("items", NS_EVENT))
                .is_some_and(|i| i.attr("node") == Some(node))
        })
        .await
        .unwrap();
    item_of(&m)
}

/// An item's `<timestamp>` values, each with its field count.
fn timestamps(item: &Element) -> Vec<(String, usize)> {
    item.get_child("fields", NS_SENSORDATA)
        .and_then(|f| f.get_child("node", NS_SENSORDATA))
        .map(|n| {
            n.children()
                .map(|ts| {
                    (
                        ts.attr("value").unwrap_or_default().to_owned(),
                        ts.children().count(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn item_id(item: &Element) -> u64 {
    item.attr("id")
        .and_then(|i| i.parse().ok())
        .unwrap_or_else(|| panic!("no numeric id in {}", xml(item)))
}

/// A device `id` with ten points `a`..`j`, each configured as `point(i)`.
fn ten_points(id: &str, poll: &str, point: impl Fn(usize) -> String) -> String {
    let points: String = ('a'..='j')
        .enumerate()
        .map(|(i, name)| format!("      {name}: {}\n", point(i)))
        .collect();
    format!("  {id}:\n    connection: sim\n    poll: {poll}\n    period: 1h\n    points:\n{points}")
}

/// Ten points read every 500 ms, each changing at every reading.
fn changing() -> String {
    ten_points("changing", "500ms", |i| {
        format!("{{ signal: ramp, range: [0, {}] }}", (i + 1) * 3_600_000)
    })
}

/// Ten points read every 200 ms that never change; a heartbeat every 2 s.
fn steady() -> String {
    ten_points("steady", "200ms", |i| {
        let heartbeat = if i == 0 { ", max_interval: 2s" } else { "" };
        format!("{{ signal: constant, value: {}{heartbeat} }}", i + 1)
    })
}

async fn one_item_per_poll_when_values_change_and_only_the_heartbeat_when_not(kind: ServerKind) {
    let server = Server::start(kind).await.expect("the XMPP server starts");
    server.register("alice", "pw").unwrap();
    let devices = format!("{}{}", changing(), steady());
    let _gateway = Gateway::start(&server, &["alice@localhost"], &devices)
        .await
        .unwrap();
    let mut alice = XmppUser::connect(server.c2s_port(), "alice", "pw")
        .await
        .unwrap();

    // Changing values: every item is one whole poll (ten values read at
    // one time), each poll one item, in order, with no gap.
    subscribe(&mut alice, "changing").await.unwrap();
    let mut last: Option<(String, u64)> = None;
    for _ in 0..5 {
        let item = next_item(&mut alice, "changing").await;
        let ts = timestamps(&item);
        assert_eq!(ts.len(), 1, "one poll, one read time: {}", xml(&item));
        assert_eq!(ts[0].1, 10, "every point: {}", xml(&item));
        let seqnr = pubsub::seqnr(&item);
        if let Some((read_at, prev)) = &last {
            assert!(ts[0].0 > *read_at, "a new poll in each item");
            assert_eq!(seqnr, prev + 1, "no item between two polls");
        }
        last = Some((ts[0].0.clone(), seqnr));
    }

    // Values that never change: the item sent on subscribe, then nothing
    // until the heartbeat, though the device is read ten times meanwhile.
    subscribe(&mut alice, "steady").await.unwrap();
    let first = next_item(&mut alice, "steady").await;
    let heartbeat = next_item(&mut alice, "steady").await;
    assert_eq!(
        pubsub::seqnr(&heartbeat),
        pubsub::seqnr(&first) + 1,
        "nothing in between"
    );
    let apart = item_id(&heartbeat).saturating_sub(item_id(&first));
    assert!(
        apart >= 1_900_000,
        "the heartbeat comes max_interval (2s) after the item before it, not {apart} µs"
    );
    let values: BTreeSet<String> = pubsub::fields_of(&heartbeat)
        .into_iter()
        .map(|f| format!("{}={}", f.name, f.value))
        .collect();
    assert_eq!(values.len(), 10, "the whole state: {values:?}");
    assert!(values.contains("j=10"), "{values:?}");
    alice.close().await;
}

const USERS: usize = 20;
const NODES: usize = 50;

/// `NODES` simulated devices whose value does not change (each subscriber
/// gets the last item once; nothing else loads the server).
fn many_devices() -> String {
    (0..NODES)
        .map(|n| {
            format!(
                "  dev-{n:02}:\n    connection: sim\n    poll: 1s\n    points:\n      \
                 t: {{ signal: constant, value: {n} }}\n"
            )
        })
        .collect()
}

fn subscribe_iq(node: &str, jid: &str, id: &str) -> Element {
    let sub = el("subscribe", NS_PUBSUB, &[("node", node), ("jid", jid)]);
    with_child(
        el(
            "iq",
            NS_CLIENT,
            &[("to", COMPONENT), ("type", "set"), ("id", id)],
        ),
        with_child(el("pubsub", NS_PUBSUB, &[]), sub),
    )
}

/// The nodes `user` is subscribed to, as the gateway lists them.
async fn subscribed_nodes(user: &mut XmppUser) -> BTreeSet<String> {
    let answer = user
        .iq(
            COMPONENT,
            "get",
            with_child(
                el("pubsub", NS_PUBSUB, &[]),
                el("subscriptions", NS_PUBSUB, &[]),
            ),
        )
        .await
        .unwrap();
    answer
        .get_child("pubsub", NS_PUBSUB)
        .and_then(|p| p.get_child("subscriptions", NS_PUBSUB))
        .map(|s| {
            s.children()
                .filter_map(|c| c.attr("node").map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

async fn a_thousand_subscriptions_are_made_live_and_kept_across_a_restart(kind: ServerKind) {
    let server = Server::start(kind).await.expect("the XMPP server starts");
    let names: Vec<String> = (0..USERS).map(|u| format!("user{u:02}")).collect();
    for n in &names {
        server.register(n, "pw").unwrap();
    }
    let mut gateway = Gateway::start(&server, &["localhost"], &many_devices())
        .await
        .unwrap();
    let mut users = Vec::new();
    for n in &names {
        users.push(XmppUser::connect(server.c2s_port(), n, "pw").await.unwrap());
    }
    let nodes: Vec<String> = (0..NODES).map(|n| format!("dev-{n:02}")).collect();
    // Every user asks for all its subscriptions at once (50 each: within
    // the gateway's per-sender burst), then collects the answers.
    let started = Instant::now();
    for u in &mut users {
        let jid = u.jid.clone();
        for (i, node) in nodes.iter().enumerate() {
            u.send(subscribe_iq(node, &jid, &format!("sub-{i}")))
                .await
                .unwrap();
        }
    }
    for u in &mut users {
        for i in 0..NODES {
            let id = format!("sub-{i}");
            let answer = u
                .expect(&format!("the answer to {id}"), WAIT, |e| {
                    e.name() == "iq" && e.attr("id") == Some(id.as_str())
                })
                .await
                .unwrap();
            assert_eq!(answer.attr("type"), Some("result"), "{}", xml(&answer));
        }
    }
    eprintln!(
        "{}: {} subscriptions made live in {:?}",
        kind.name(),
        USERS * NODES,
        started.elapsed()
    );
    for u in users.drain(..) {
        u.close().await;
    }
    let status = gateway.stop().await.unwrap();
    assert!(status.success(), "{status:?}");
    gateway.restart().await.unwrap();
    let all: BTreeSet<String> = nodes.iter().cloned().collect();
    for n in &names {
        let mut u = XmppUser::connect(server.c2s_port(), n, "pw").await.unwrap();
        assert_eq!(subscribed_nodes(&mut u).await, all, "{n} after the restart");
        u.close().await;
    }
    let log = gateway.log();
    assert!(!log.contains("\"level\":\"ERROR\""), "{log}");
}

/// The devices of the previous version's state directory (see
/// crates/fieldbridge-store/tests/fixtures/v0-state).
const V0_DEVICES: &str = "  boiler:\n    connection: sim\n    poll: 1s\n    points:\n      \
temperature: { signal: constant, value: 22.5, unit: \"°C\" }\n      pump: { signal: toggle }\n      \
pressure: { signal: constant, value: 3, unit: bar }\n";

async fn a_state_directory_of_the_previous_version_is_taken_over(kind: ServerKind) {
    let server = Server::start(kind).await.expect("the XMPP server starts");
    server.register("alice", "pw").unwrap();
    let mut gateway = Gateway::start(&server, &["localhost"], V0_DEVICES)
        .await
        .unwrap();
    let status = gateway.stop().await.unwrap();
    assert!(status.success(), "{status:?}");
    // What the previous version left: its history and subscriptions files.
    let state = gateway.state_dir();
    std::fs::remove_file(state.join("state.redb")).unwrap();
    let fixture =
        fieldbridge_e2e::repo_root().join("crates/fieldbridge-store/tests/fixtures/v0-state");
    for f in ["history.redb", "subscriptions.json"] {
        std::fs::copy(fixture.join(f), state.join(f)).unwrap();
    }
    gateway.restart().await.unwrap();
    assert!(state.join("subscriptions.json.imported").exists());
    assert!(
        !state.join("history.redb").exists(),
        "renamed to state.redb"
    );

    let mut alice = XmppUser::connect(server.c2s_port(), "alice", "pw")
        .await
        .unwrap();
    let answer = pubsub::get_items(&mut alice, "boiler", &[]).await.unwrap();
    let items = pubsub::items_of(&answer);
    assert!(items.len() >= 5, "{}", xml(&answer));
    // The five old items first, oldest first, each the state after its
    // reading; then what the gateway read since.
    assert_eq!(item_id(&items[0]), 1_795_582_800_123_000);
    let first: Vec<(String, String)> = pubsub::fields_of(&items[0])
        .into_iter()
        .map(|f| (f.name, f.value))
        .collect();
    assert_eq!(first, [("temperature".to_owned(), "21.5".to_owned())]);
    let fifth: BTreeSet<String> = pubsub::fields_of(&items[4])
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(
        fifth,
        BTreeSet::from(["pressure", "pump", "temperature"].map(str::to_owned))
    );
    let seqnrs: Vec<u64> = items.iter().map(pubsub::seqnr).collect();
    assert!(
        seqnrs.windows(2).all(|w| w[0] < w[1]),
        "the sequence goes on: {seqnrs:?}"
    );
    // One item by its id, from the typed store.
    let by_id = alice
        .iq(
            COMPONENT,
            "get",
            with_child(
                el("pubsub", NS_PUBSUB, &[]),
                with_child(
                    el("items", NS_PUBSUB, &[("node", "boiler")]),
                    el("item", NS_PUBSUB, &[("id", "1795582800123000")]),
                ),
            ),
        )
        .await
        .unwrap();
    let one = pubsub::items_of(&by_id);
    assert_eq!(one.len(), 1, "{}", xml(&by_id));
    assert_eq!(xml(&one[0]), xml(&items[0]));
    // A XEP-0323 historical readout of the temperature: each stored
    // reading once, the old ones first.
    let req = el(
        "req",
        NS_SENSORDATA,
        &[("seqnr", "9"), ("historicalOther", "true")],
    );
    let req = with_child(req, el("field", NS_SENSORDATA, &[("name", "temperature")]));
    let accepted = alice.iq("boiler@gw.localhost", "get", req).await.unwrap();
    assert_eq!(accepted.attr("type"), Some("result"), "{}", xml(&accepted));
    let readout = alice
        .expect("the historical values", WAIT, |e| {
            e.name() == "message" && e.get_child("fields", NS_SENSORDATA).is_some()
        })
        .await
        .unwrap();
    let values: Vec<String> = readout
        .get_child("fields", NS_SENSORDATA)
        .and_then(|f| f.get_child("node", NS_SENSORDATA))
        .map(|n| {
            n.children()
                .flat_map(|ts| ts.children())
                .filter(|f| f.attr("historicalOther") == Some("true"))
                .filter_map(|f| f.attr("value").map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        values.starts_with(&["21.5", "21.7", "22"].map(str::to_owned)),
        "{}",
        xml(&readout)
    );
    alice.close().await;
    let log = gateway.log();
    assert!(
        log.contains("history of the previous version upgraded"),
        "{log}"
    );
}

fieldbridge_e2e::on_every_server!(
    one_item_per_poll_when_values_change_and_only_the_heartbeat_when_not,
    a_thousand_subscriptions_are_made_live_and_kept_across_a_restart,
    a_state_directory_of_the_previous_version_is_taken_over,
);
