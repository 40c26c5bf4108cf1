//! End-to-end: what desktop and mobile clients rely on to show a device,
//! through a real Prosody and a real ejabberd: presence from a resource
//! (Gajim shows a contact online only when a resource of it is), and
//! entity capabilities whose node answers and whose hash verifies.

use std::time::Duration;

use fieldbridge_e2e::client::{XmppUser, el, is_presence, xml};
use fieldbridge_e2e::gateway::Gateway;
use fieldbridge_e2e::server::{Server, ServerKind};
use minidom::Element;
use xmpp_parsers::caps::{Caps, hash_caps};
use xmpp_parsers::hashes::Algo;

const BOILER: &str = "boiler@gw.localhost";
const NS_CAPS: &str = "http://jabber.org/protocol/caps";
const NS_DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
const WAIT: Duration = Duration::from_secs(15);
const DEVICES: &str = "  boiler:\n    name: Boiler room\n    connection: sim\n    poll: 200ms\n    points:\n      \
temperature: { signal: sine, range: [20, 30], unit: \"°C\" }\n";

/// XEP-0115 §5.1 over a disco#info answer as received: identities, then
/// features, each sorted and ended by '<'.
fn caps_ver(query: &Element) -> String {
    let mut identities: Vec<String> = query
        .children()
        .filter(|c| c.name() == "identity")
        .map(|i| {
            format!(
                "{}/{}/{}/{}<",
                i.attr("category").unwrap_or_default(),
                i.attr("type").unwrap_or_default(),
                i.attr_ns(minidom::rxml::Namespace::xml(), "lang")
                    .unwrap_or_default(),
                i.attr("name").unwrap_or_default()
            )
        })
        .collect();
    identities.sort();
    let mut features: Vec<String> = query
        .children()
        .filter(|c| c.name() == "feature")
        .filter_map(|f| f.attr("var").map(|v| format!("{v}<")))
        .collect();
    features.sort();
    let s = format!("{}{}", identities.concat(), features.concat());
    let hash = hash_caps(s.as_bytes(), Algo::Sha_1).expect("sha-1");
    Element::from(Caps::new("x", hash))
        .attr("ver")
        .expect("a ver")
        .to_owned()
}

async fn a_device_is_online_from_a_resource_and_its_caps_verify(kind: ServerKind) {
    let server = Server::start(kind).await.expect("the XMPP server starts");
    server.register("alice", "pw").unwrap();
    let mut gateway = Gateway::start(&server, &["alice@localhost"], DEVICES)
        .await
        .unwrap();
    let mut alice = XmppUser::connect(server.c2s_port(), "alice", "pw")
        .await
        .unwrap();
    let subscribed = alice.subscribe_presence(BOILER).await.unwrap();
    assert_eq!(
        subscribed.attr("from"),
        Some(BOILER),
        "answered from the bare JID"
    );
    let online = alice
        .expect("the device's presence", WAIT, |e| {
            is_presence(e, BOILER, None)
        })
        .await
        .unwrap();
    assert_eq!(
        online.attr("from"),
        Some("boiler@gw.localhost/e2e"),
        "from the device's resource (the gateway id): {}",
        xml(&online)
    );

    // The caps node answers, and what it answers hashes to the ver.
    let c = online
        .get_child("c", NS_CAPS)
        .unwrap_or_else(|| panic!("no caps in {}", xml(&online)));
    assert_eq!(c.attr("hash"), Some("sha-1"));
    let node = format!("{}#{}", c.attr("node").unwrap(), c.attr("ver").unwrap());
    let answer = alice
        .iq(
            online.attr("from").unwrap(),
            "get",
            el("query", NS_DISCO_INFO, &[("node", &node)]),
        )
        .await
        .unwrap();
    assert_eq!(answer.attr("type"), Some("result"), "{}", xml(&answer));
    let query = answer.get_child("query", NS_DISCO_INFO).unwrap();
    assert_eq!(query.attr("node"), Some(node.as_str()));
    assert_eq!(
        Some(caps_ver(query).as_str()),
        c.attr("ver"),
        "{}",
        xml(query)
    );

    // Stopping: unavailable from the same resource.
    let stopped = gateway.stop().await.unwrap();
    assert!(stopped.success(), "{stopped:?}");
    let bye = alice
        .expect("unavailable presence", WAIT, |e| {
            is_presence(e, BOILER, Some("unavailable"))
        })
        .await
        .unwrap();
    assert_eq!(
        bye.attr("from"),
        Some("boiler@gw.localhost/e2e"),
        "{}",
        xml(&bye)
    );
    alice.close().await;
}

fieldbridge_e2e::on_every_server!(a_device_is_online_from_a_resource_and_its_caps_verify);
