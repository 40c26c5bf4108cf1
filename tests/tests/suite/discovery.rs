//! End-to-end: what a client learns about a device through a real Prosody
//! and a real ejabberd:
//! service discovery, entity capabilities, software version, last activity
//! and entity time.

use std::time::Duration;

use fieldbridge_e2e::client::{XmppUser, el, is_presence, xml};
use fieldbridge_e2e::gateway::Gateway;
use fieldbridge_e2e::server::{COMPONENT, Server, ServerKind};
use minidom::Element;

const BOILER: &str = "boiler@gw.localhost";
const WAIT: Duration = Duration::from_secs(15);
const DEVICES: &str = "  boiler:\n    name: Boiler room\n    connection: sim\n    poll: 200ms\n    points:\n      \
temperature: { signal: sine, range: [20, 30], unit: \"°C\" }\n      pump: { signal: toggle }\n";

async fn get(user: &mut XmppUser, to: &str, name: &str, ns: &str) -> Element {
    let answer = user.iq(to, "get", el(name, ns, &[])).await.unwrap();
    assert_eq!(answer.attr("type"), Some("result"), "{}", xml(&answer));
    answer
        .get_child(name, ns)
        .unwrap_or_else(|| panic!("no {name} in {}", xml(&answer)))
        .clone()
}

fn child_text(e: &Element, name: &str) -> String {
    let ns = e.ns();
    e.get_child(name, ns.as_str())
        .map(Element::text)
        .unwrap_or_default()
}

async fn a_client_discovers_what_a_device_is_and_can_do(kind: ServerKind) {
    let server = Server::start(kind).await.expect("the XMPP server starts");
    server.register("alice", "pw").unwrap();
    let _gateway = Gateway::start(&server, &["alice@localhost"], DEVICES)
        .await
        .unwrap();
    let mut alice = XmppUser::connect(server.c2s_port(), "alice", "pw")
        .await
        .unwrap();

    let info = get(
        &mut alice,
        BOILER,
        "query",
        "http://jabber.org/protocol/disco#info",
    )
    .await;
    let identity = info.children().find(|c| c.name() == "identity").unwrap();
    assert_eq!(identity.attr("name"), Some("Boiler room"));
    let features: Vec<&str> = info.children().filter_map(|f| f.attr("var")).collect();
    for f in [
        "jabber:iq:version",
        "jabber:iq:last",
        "urn:xmpp:time",
        "urn:xmpp:ping",
    ] {
        assert!(features.contains(&f), "{f} missing: {features:?}");
    }
    let items = get(
        &mut alice,
        BOILER,
        "query",
        "http://jabber.org/protocol/disco#items",
    )
    .await;
    let points: Vec<&str> = items.children().filter_map(|i| i.attr("node")).collect();
    assert_eq!(points, ["pump", "temperature"]);

    // The device's node describes itself, access model included.
    let meta = alice
        .iq(
            COMPONENT,
            "get",
            el(
                "query",
                "http://jabber.org/protocol/disco#info",
                &[("node", "boiler")],
            ),
        )
        .await
        .unwrap();
    let form = meta
        .get_child("query", "http://jabber.org/protocol/disco#info")
        .and_then(|q| q.get_child("x", "jabber:x:data"))
        .unwrap_or_else(|| panic!("no meta-data in {}", xml(&meta)));
    let access = form
        .children()
        .find(|f| f.attr("var") == Some("pubsub#access_model"))
        .and_then(|f| f.get_child("value", "jabber:x:data"))
        .map(Element::text);
    assert_eq!(access.as_deref(), Some("whitelist"));

    for to in [BOILER, COMPONENT] {
        let v = get(&mut alice, to, "query", "jabber:iq:version").await;
        assert_eq!(child_text(&v, "name"), "fieldbridge");
        let t = get(&mut alice, to, "time", "urn:xmpp:time").await;
        assert_eq!(child_text(&t, "tzo"), "+00:00");
    }

    // Subscribed, the device's presence carries caps; once it has read, its
    // last activity is a few seconds at most.
    alice.subscribe_presence(BOILER).await.unwrap();
    let online = alice
        .expect("available presence", WAIT, |e| is_presence(e, BOILER, None))
        .await
        .unwrap();
    let caps = online
        .get_child("c", "http://jabber.org/protocol/caps")
        .unwrap_or_else(|| panic!("no caps in {}", xml(&online)));
    assert_eq!(caps.attr("hash"), Some("sha-1"));
    assert!(caps.attr("ver").is_some_and(|v| !v.is_empty()));
    let last = get(&mut alice, BOILER, "query", "jabber:iq:last").await;
    let seconds: u64 = last.attr("seconds").unwrap().parse().unwrap();
    assert!(
        seconds < 5,
        "last reading {seconds} s ago, polled every 200 ms"
    );
    alice.close().await;
}

const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const TWO_DEVICES: &str = "  boiler:\n    connection: sim\n    poll: 200ms\n    points:\n      \
temperature: { signal: sine, range: [20, 30] }\n  \
kettle:\n    connection: sim\n    poll: 200ms\n    points:\n      \
water: { signal: sine, range: [20, 90] }\n";

/// A pubsub request to the service; its answer must be a result.
async fn pubsub(user: &mut XmppUser, kind: &str, request: Element) -> Element {
    let answer = user
        .iq(
            COMPONENT,
            kind,
            fieldbridge_e2e::client::with_child(el("pubsub", NS_PUBSUB, &[]), request),
        )
        .await
        .unwrap();
    assert_eq!(answer.attr("type"), Some("result"), "{}", xml(&answer));
    answer
}

/// (node, jid, subscription) of every entry of a subscriptions answer.
async fn subscriptions(user: &mut XmppUser, node: Option<&str>) -> Vec<(String, String, String)> {
    let attrs: Vec<(&str, &str)> = node.iter().map(|n| ("node", *n)).collect();
    let answer = pubsub(user, "get", el("subscriptions", NS_PUBSUB, &attrs)).await;
    let list = answer
        .get_child("pubsub", NS_PUBSUB)
        .and_then(|p| p.get_child("subscriptions", NS_PUBSUB))
        .unwrap_or_else(|| panic!("no subscriptions in {}", xml(&answer)));
    let mut entries: Vec<(String, String, String)> = list
        .children()
        .map(|s| {
            assert_eq!(s.name(), "subscription", "{}", xml(&answer));
            let attr = |a: &str| s.attr(a).unwrap_or_default().to_owned();
            (attr("node"), attr("jid"), attr("subscription"))
        })
        .collect();
    entries.sort();
    entries
}

async fn a_subscriber_lists_its_own_subscriptions_and_only_those(kind: ServerKind) {
    let server = Server::start(kind).await.expect("the XMPP server starts");
    for u in ["alice", "bob"] {
        server.register(u, "pw").unwrap();
    }
    let _gateway = Gateway::start(&server, &["localhost"], TWO_DEVICES)
        .await
        .unwrap();
    let mut alice = XmppUser::connect(server.c2s_port(), "alice", "pw")
        .await
        .unwrap();
    let mut bob = XmppUser::connect(server.c2s_port(), "bob", "pw")
        .await
        .unwrap();
    assert_eq!(subscriptions(&mut alice, None).await, []);
    // Alice: the boiler with her bare JID, the kettle with this session's
    // full JID; bob: the boiler.
    let full = alice.full_jid.clone();
    for (node, jid) in [("boiler", "alice@localhost"), ("kettle", full.as_str())] {
        pubsub(
            &mut alice,
            "set",
            el("subscribe", NS_PUBSUB, &[("node", node), ("jid", jid)]),
        )
        .await;
    }
    let bob_jid = bob.jid.clone();
    pubsub(
        &mut bob,
        "set",
        el(
            "subscribe",
            NS_PUBSUB,
            &[("node", "boiler"), ("jid", &bob_jid)],
        ),
    )
    .await;
    let entry = |node: &str, jid: &str| (node.to_owned(), jid.to_owned(), "subscribed".to_owned());
    assert_eq!(
        subscriptions(&mut alice, None).await,
        [entry("boiler", "alice@localhost"), entry("kettle", &full)]
    );
    assert_eq!(
        subscriptions(&mut alice, Some("kettle")).await,
        [entry("kettle", &full)]
    );
    assert_eq!(
        subscriptions(&mut bob, None).await,
        [entry("boiler", "bob@localhost")]
    );
    // Unsubscribed: gone from the list.
    pubsub(
        &mut alice,
        "set",
        el(
            "unsubscribe",
            NS_PUBSUB,
            &[("node", "boiler"), ("jid", "alice@localhost")],
        ),
    )
    .await;
    assert_eq!(
        subscriptions(&mut alice, None).await,
        [entry("kettle", &full)]
    );
    alice.close().await;
    bob.close().await;
}

fieldbridge_e2e::on_every_server!(
    a_client_discovers_what_a_device_is_and_can_do,
    a_subscriber_lists_its_own_subscriptions_and_only_those
);
