//! End-to-end, on Prosody and ejabberd: devices introduce themselves to a
//! real client (nickname with `subscribed`, a vCard with their name and
//! avatar, the avatar's hash in presence), and a device whose readings do
//! not change sends no further presence.

use std::time::Duration;

use fieldbridge_e2e::client::{XmppUser, el, error_condition, is_presence, status_text, xml};
use fieldbridge_e2e::gateway::{Gateway, SIMULATOR, Setup};
use fieldbridge_e2e::prosody::COMPONENT;
use fieldbridge_e2e::server::{Server, ServerKind};
use minidom::Element;
use sha1::{Digest, Sha1};
use xmpp_parsers::vcard::VCard;

const BOILER: &str = "boiler@gw.localhost";
const METER: &str = "meter@gw.localhost";
const NS_NICK: &str = "http://jabber.org/protocol/nick";
const NS_VCARD: &str = "vcard-temp";
const NS_UPDATE: &str = "vcard-temp:x:update";
const WAIT: Duration = Duration::from_secs(15);

/// A boiler that always reads 21.5 °C, and a meter whose power ramps (so
/// its status text changes with every reading).
const DEVICES: &str = "  boiler:\n    name: Boiler room\n    connection: sim\n    poll: 200ms\n    points:\n      \
temperature: { signal: constant, value: 21.5, unit: \"°C\" }\n  \
meter:\n    name: Main meter\n    connection: sim\n    poll: 200ms\n    period: 60s\n    points:\n      \
power: { signal: ramp, range: [0, 3000], unit: W }\n";

/// How often a status text may change: short, so that the test sees
/// several intervals pass.
const STATUS_INTERVAL: &str = "1s";

async fn start(kind: ServerKind, users: &[&str]) -> (Server, Gateway) {
    let server = Server::start(kind)
        .await
        .unwrap_or_else(|e| panic!("{} starts: {e}", kind.name()));
    for u in users {
        server.register(u, "pw").expect("user registered");
    }
    let setup = Setup {
        read: &["alice@localhost"],
        control: &["alice@localhost"],
        connections: SIMULATOR,
        devices: DEVICES,
    };
    let gateway = Gateway::started(
        &server,
        &setup,
        &[("FIELDBRIDGE__XMPP__STATUS_INTERVAL", STATUS_INTERVAL)],
    )
    .await;
    (server, gateway)
}

fn nick(stanza: &Element) -> Option<String> {
    stanza.get_child("nick", NS_NICK).map(Element::text)
}

/// The XEP-0153 photo hash a presence carries.
/// The nickname of a PEP notification on the nick node.
fn pep_nick(message: &Element) -> Option<String> {
    const NS_EVENT: &str = "http://jabber.org/protocol/pubsub#event";
    let items = message
        .get_child("event", NS_EVENT)?
        .get_child("items", NS_EVENT)?;
    if items.attr("node") != Some(NS_NICK) {
        return None;
    }
    nick(items.get_child("item", NS_EVENT)?)
}

fn photo_hash(presence: &Element) -> Option<String> {
    presence
        .get_child("x", NS_UPDATE)?
        .get_child("photo", NS_UPDATE)
        .map(Element::text)
}

fn sha1_hex(bytes: &[u8]) -> String {
    Sha1::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Asks `to` for its vCard; returns the card element and it parsed (the
/// photo decoded from base64, as clients decode it).
async fn vcard(user: &mut XmppUser, to: &str) -> (Element, VCard) {
    let answer = user
        .iq(to, "get", el("vCard", NS_VCARD, &[]))
        .await
        .unwrap();
    assert_eq!(answer.attr("type"), Some("result"), "{}", xml(&answer));
    assert_eq!(
        answer.attr("from"),
        Some(to),
        "answered by the gateway, not the server"
    );
    let card = answer
        .get_child("vCard", NS_VCARD)
        .unwrap_or_else(|| panic!("no vCard in {}", xml(&answer)))
        .clone();
    let parsed = VCard::try_from(card.clone()).unwrap_or_else(|e| panic!("{e}: {}", xml(&card)));
    (card, parsed)
}

fn field(card: &Element, name: &str) -> Option<String> {
    card.get_child(name, NS_VCARD).map(Element::text)
}

/// Waits for the boiler's available presence with its reading.
async fn boiler_online(user: &mut XmppUser) -> Element {
    user.expect("the boiler's presence with its reading", WAIT, |e| {
        is_presence(e, BOILER, None) && status_text(e).as_deref() == Some("temperature 21.50 °C")
    })
    .await
    .unwrap()
}

async fn devices_introduce_themselves(kind: ServerKind) {
    let (mut server, mut gateway) = start(kind, &["alice", "mallory"]).await;
    let mut alice = XmppUser::connect(server.c2s_port(), "alice", "pw")
        .await
        .unwrap();

    // The nickname comes with the subscription answer, through the server.
    let subscribed = alice.subscribe_presence(BOILER).await.unwrap();
    assert_eq!(
        nick(&subscribed).as_deref(),
        Some("Boiler room"),
        "{}",
        xml(&subscribed)
    );
    // XEP-0172 §4.1: never in a presence broadcast; the avatar hash is.
    let online = boiler_online(&mut alice).await;
    assert_eq!(nick(&online), None, "{}", xml(&online));
    let hash = photo_hash(&online).unwrap_or_else(|| panic!("no photo hash in {}", xml(&online)));
    // Where Gajim and Conversations read a contact's name: a PEP nickname
    // notification from the device's bare JID (XEP-0172 §4.5).
    let event = alice
        .expect("the boiler's nickname event", WAIT, |e| {
            e.name() == "message" && e.attr("from") == Some(BOILER) && pep_nick(e).is_some()
        })
        .await
        .unwrap();
    assert_eq!(
        pep_nick(&event).as_deref(),
        Some("Boiler room"),
        "{}",
        xml(&event)
    );

    // The vCard, from the bare and the full JID, with the configured name
    // and the photo whose hash the presence carries.
    let full = online.attr("from").unwrap().to_owned();
    assert_ne!(full, BOILER, "presence comes from a resource");
    for to in [BOILER, full.as_str()] {
        let (card, parsed) = vcard(&mut alice, to).await;
        assert_eq!(
            field(&card, "FN").as_deref(),
            Some("Boiler room"),
            "{}",
            xml(&card)
        );
        assert_eq!(field(&card, "NICKNAME").as_deref(), Some("Boiler room"));
        assert!(
            field(&card, "DESC").is_some_and(|d| d.contains("temperature (°C)")),
            "{}",
            xml(&card)
        );
        let photo = parsed
            .photo
            .unwrap_or_else(|| panic!("no PHOTO in {}", xml(&card)));
        assert_eq!(photo.type_.data, "image/png");
        assert!(photo.binval.data.starts_with(b"\x89PNG"), "a PNG");
        assert_eq!(
            sha1_hex(&photo.binval.data),
            hash,
            "the hash in presence is the photo's"
        );
    }

    // A meter has an avatar of its own.
    alice.subscribe_presence(METER).await.unwrap();
    let meter = alice
        .expect("the meter's presence", WAIT, |e| {
            is_presence(e, METER, None) && photo_hash(e).is_some()
        })
        .await
        .unwrap();
    let meter_hash = photo_hash(&meter).unwrap();
    assert_ne!(meter_hash, hash, "a meter is not shown as a thermometer");
    let (_, parsed) = vcard(&mut alice, METER).await;
    assert_eq!(sha1_hex(&parsed.photo.unwrap().binval.data), meter_hash);

    // The component's own card; a set is refused.
    let (card, parsed) = vcard(&mut alice, COMPONENT).await;
    assert_eq!(
        field(&card, "FN").as_deref(),
        Some("fieldbridge e2e"),
        "{}",
        xml(&card)
    );
    assert!(parsed.photo.is_some());
    let mut set = el("vCard", NS_VCARD, &[]);
    let mut fn_ = el("FN", NS_VCARD, &[]);
    fn_.append_text_node("renamed");
    set.append_child(fn_);
    let refused = alice.iq(BOILER, "set", set).await.unwrap();
    assert_eq!(
        error_condition(&refused).as_deref(),
        Some("not-allowed"),
        "{}",
        xml(&refused)
    );

    // An outsider learns nothing, not even which devices exist.
    let mut mallory = XmppUser::connect(server.c2s_port(), "mallory", "pw")
        .await
        .unwrap();
    for to in [BOILER, "nosuch@gw.localhost", COMPONENT] {
        let answer = mallory
            .iq(to, "get", el("vCard", NS_VCARD, &[]))
            .await
            .unwrap();
        assert_eq!(
            error_condition(&answer).as_deref(),
            Some("forbidden"),
            "{to}: {}",
            xml(&answer)
        );
        assert!(
            answer.get_child("vCard", NS_VCARD).is_none(),
            "{}",
            xml(&answer)
        );
    }

    mallory.close().await;
    alice.close().await;
    gateway.stop().await.unwrap();
    server.stop().await.unwrap();
}

/// A device whose readings do not change sends no presence after its
/// first, however many status intervals pass. The meter in the same
/// gateway is the clock: its text changes with every reading, so each of
/// its presences marks one status interval that passed, and as everything
/// reaches the client over one component stream and one session in
/// order, any presence the boiler sent before the meter's last one has
/// arrived by then.
async fn unchanged_readings_send_no_presence(kind: ServerKind) {
    let (mut server, mut gateway) = start(kind, &["alice"]).await;
    let mut alice = XmppUser::connect(server.c2s_port(), "alice", "pw")
        .await
        .unwrap();
    alice.subscribe_presence(BOILER).await.unwrap();
    boiler_online(&mut alice).await;
    // From here on, the boiler has nothing new to say. Whatever came
    // before (its "online" before the first reading) is forgotten; the
    // gateway sends no status text twice within an interval, so nothing
    // of the boiler's can be in flight now.
    alice.forget_unmatched();

    alice.subscribe_presence(METER).await.unwrap();
    let is_meter_text = |e: &Element| {
        is_presence(e, METER, None) && status_text(e).is_some_and(|s| s.starts_with("power "))
    };
    // Four different texts: three status intervals at least (a server
    // may pass one presence twice, e.g. the answer to its own probe).
    let mut texts: Vec<String> = Vec::new();
    while texts.len() < 4 {
        let p = alice
            .expect("the meter's next presence", WAIT, is_meter_text)
            .await
            .unwrap();
        let text = status_text(&p).unwrap();
        if texts.last() != Some(&text) {
            texts.push(text);
        }
    }

    let from_boiler: Vec<String> = alice
        .unmatched()
        .iter()
        .filter(|e| {
            e.name() == "presence"
                && e.attr("from").and_then(|f| f.split('/').next()) == Some(BOILER)
        })
        .map(xml)
        .collect();
    assert!(
        from_boiler.is_empty(),
        "the boiler's readings did not change, yet it sent:\n{}",
        from_boiler.join("\n")
    );
    alice.close().await;
    gateway.stop().await.unwrap();
    server.stop().await.unwrap();
}

fieldbridge_e2e::on_every_server!(
    devices_introduce_themselves,
    unchanged_readings_send_no_presence
);
