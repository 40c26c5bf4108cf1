//! End-to-end: nothing published while the XMPP server is down is lost.
//! The real gateway binary, a real Prosody or ejabberd stopped for ten
//! seconds, and a real subscriber who fetches what it missed; and a
//! subscriber who stays connected while only the gateway's link is down,
//! who gets what it missed pushed once the link is back.

use std::time::Duration;

use fieldbridge_e2e::client::{XmppUser, el, with_child, xml};
use fieldbridge_e2e::gateway::Gateway;
use fieldbridge_e2e::proxy::ComponentProxy;
use fieldbridge_e2e::pubsub::{NS_EVENT, NS_PUBSUB, seqnr, subscribe};
use fieldbridge_e2e::server::{COMPONENT, Server, ServerKind};
use minidom::Element;

const WAIT: Duration = Duration::from_secs(15);
/// How long the server stays down: the scenario, not a wait for
/// anything.
const OUTAGE: Duration = Duration::from_secs(10);

/// A counter read 5 times a second; a ramp changes at every reading, so
/// every reading is published. Slow enough that all published from before
/// the outage until the gateway is back (the outage, the server's start
/// and the gateway's reconnect backoff, up to its 30 s cap) fit in one
/// items reply (500 items at most).
const DEVICES: &str = "  counter:\n    connection: sim\n    poll: 200ms\n    period: 1h\n    points:\n      \
n: { signal: ramp, range: [0, 3600000] }\n";

/// (item id, seqnr) of an item element.
fn id_and_seqnr(item: &Element) -> (String, u64) {
    (item.attr("id").expect("item id").to_owned(), seqnr(item))
}

async fn items_published_while_the_server_was_down_can_all_be_fetched_in_order(kind: ServerKind) {
    let mut server = Server::start(kind).await.expect("the XMPP server starts");
    server.register("alice", "pw").unwrap();
    let gateway = Gateway::start(&server, &["alice@localhost"], DEVICES)
        .await
        .unwrap();
    let mut alice = XmppUser::connect(server.c2s_port(), "alice", "pw")
        .await
        .unwrap();
    subscribe(&mut alice, "counter").await.unwrap();
    let m = alice
        .expect("a notification before the outage", WAIT, |e| {
            e.get_child("event", NS_EVENT).is_some()
        })
        .await
        .unwrap();
    let item = m
        .get_child("event", NS_EVENT)
        .and_then(|e| e.get_child("items", NS_EVENT))
        .and_then(|i| i.get_child("item", NS_EVENT))
        .unwrap();
    let (_, seqnr_before) = id_and_seqnr(item);
    alice.close().await;

    gateway.through_outage(&mut server, OUTAGE).await.unwrap();

    let mut alice = XmppUser::connect(server.c2s_port(), "alice", "pw")
        .await
        .unwrap();
    let items = el(
        "items",
        NS_PUBSUB,
        &[("node", "counter"), ("max_items", "500")],
    );
    let answer = alice
        .iq(
            COMPONENT,
            "get",
            with_child(el("pubsub", NS_PUBSUB, &[]), items),
        )
        .await
        .unwrap();
    assert_eq!(answer.attr("type"), Some("result"), "{}", xml(&answer));
    let fetched: Vec<(String, u64)> = answer
        .get_child("pubsub", NS_PUBSUB)
        .and_then(|p| p.get_child("items", NS_PUBSUB))
        .unwrap()
        .children()
        .map(id_and_seqnr)
        .collect();

    // Everything from the last item seen before the outage on: no gap
    // (consecutive seqnr), in order (increasing ids), no duplicate.
    let since: Vec<&(String, u64)> = fetched.iter().filter(|(_, s)| *s >= seqnr_before).collect();
    assert_eq!(
        since.first().map(|(_, s)| *s),
        Some(seqnr_before),
        "the history reaches back to before the outage"
    );
    for pair in since.windows(2) {
        assert_eq!(pair[1].1, pair[0].1 + 1, "a gap between {pair:?}");
        assert!(pair[1].0 > pair[0].0, "ids out of order: {pair:?}");
    }
    // 5 readings a second for the ten seconds of the outage alone.
    assert!(
        since.len() >= 40,
        "only {} items since the outage began",
        since.len()
    );
    alice.close().await;
}

/// A counter read ten times a second, published at every reading.
const COUNTER: &str = "  counter:\n    connection: sim\n    poll: 100ms\n    period: 1h\n    points:\n      \
n: { signal: ramp, range: [0, 3600000] }\n";

/// How long the gateway's link stays down: the scenario, not a wait for
/// anything.
const LINK_DOWN: Duration = Duration::from_secs(3);

/// A notification of the counter node.
fn is_counter_item(e: &Element) -> bool {
    e.get_child("event", NS_EVENT)
        .and_then(|ev| ev.get_child("items", NS_EVENT))
        .is_some_and(|i| i.attr("node") == Some("counter"))
}

/// A counter notification's (item id, seqnr).
fn item_of(m: &Element) -> (u64, u64) {
    let item = m
        .get_child("event", NS_EVENT)
        .and_then(|e| e.get_child("items", NS_EVENT))
        .and_then(|i| i.get_child("item", NS_EVENT))
        .unwrap_or_else(|| panic!("no item in {}", xml(m)));
    let (id, seqnr) = id_and_seqnr(item);
    (id.parse().expect("a numeric item id"), seqnr)
}

/// The next notification of the counter node: (item id, seqnr).
async fn next_item(user: &mut XmppUser, within: Duration) -> (u64, u64) {
    let m = user
        .expect("a notification of the counter", within, is_counter_item)
        .await
        .unwrap();
    item_of(&m)
}

/// Microseconds since the epoch, as item ids count.
fn micros_now() -> u64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    u64::try_from(since.as_micros()).unwrap()
}

async fn a_subscriber_who_stays_online_gets_what_the_gateway_missed_pushed_once_it_is_back(
    kind: ServerKind,
) {
    let server = Server::start(kind).await.expect("the XMPP server starts");
    server.register("alice", "pw").unwrap();
    let link = ComponentProxy::start(&server).await.unwrap();
    let gateway = Gateway::start(&link, &["alice@localhost"], COUNTER)
        .await
        .unwrap();
    let mut alice = XmppUser::connect(server.c2s_port(), "alice", "pw")
        .await
        .unwrap();
    subscribe(&mut alice, "counter").await.unwrap();
    let mut received = vec![next_item(&mut alice, WAIT).await];

    // Only the gateway's link goes down; alice stays connected.
    link.cut().await.unwrap();
    gateway.wait_disconnected(WAIT).await.unwrap();
    let down_from = micros_now();
    tokio::time::sleep(LINK_DOWN).await;
    let up_at = micros_now();
    // Notifications sent before the cut that alice has not read yet belong
    // before the link came back: read what is there (nothing new can come
    // while the link is down), so that none is taken for a late resend.
    while let Ok(m) = alice
        .expect(
            "a notification from before the cut",
            Duration::ZERO,
            is_counter_item,
        )
        .await
    {
        received.push(item_of(&m));
    }
    link.restore().await.unwrap();
    gateway
        .wait_log("connected to the XMPP server", 2, Duration::from_secs(30))
        .await
        .unwrap();
    let restored = received.len();
    // Everything alice has, up to the first item read after the link came
    // back: the missed ones are sent before any new one.
    let reconnected = micros_now();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let item = next_item(&mut alice, left).await;
        received.push(item);
        if item.0 > reconnected {
            break;
        }
    }
    gateway
        .wait_log("sent items published while disconnected", 1, WAIT)
        .await
        .unwrap();

    // No gap: every seqnr from the first to the last (the seconds before
    // the cut are sent again: they may have been lost in flight).
    let mut seqnrs: Vec<u64> = received.iter().map(|(_, s)| *s).collect();
    seqnrs.sort_unstable();
    seqnrs.dedup();
    for pair in seqnrs.windows(2) {
        assert_eq!(pair[1], pair[0] + 1, "a gap: {received:?}");
    }
    // What came once the link was back came in order.
    for pair in received[restored..].windows(2) {
        assert!(pair[1].1 > pair[0].1, "out of order: {received:?}");
    }
    // What was read while the link was down reached alice, after it was
    // back: about ten a second.
    let missed: Vec<usize> = received
        .iter()
        .enumerate()
        .filter(|(_, (id, _))| (down_from..=up_at).contains(id))
        .map(|(i, _)| i)
        .collect();
    let expected = LINK_DOWN.as_millis() / 100;
    assert!(
        missed.len() as u128 >= expected / 2,
        "{} items from the {LINK_DOWN:?} the link was down (about {expected} read): {received:?}",
        missed.len()
    );
    assert!(
        missed.iter().all(|i| *i >= restored),
        "an item read while the link was down arrived before it was back"
    );
    alice.close().await;
}

fieldbridge_e2e::on_every_server!(
    items_published_while_the_server_was_down_can_all_be_fetched_in_order,
    a_subscriber_who_stays_online_gets_what_the_gateway_missed_pushed_once_it_is_back
);
