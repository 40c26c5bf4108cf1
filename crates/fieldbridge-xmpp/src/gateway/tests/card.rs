use super::*;
use crate::gateway::card::{Avatar, NS_VCARD};
use xmpp_parsers::sha1::{Digest, Sha1};
use xmpp_parsers::vcard::VCard;

const NS_NICK: &str = "http://jabber.org/protocol/nick";
const NS_UPDATE: &str = "vcard-temp:x:update";
const VCARD_GET: &str = "<vCard xmlns='vcard-temp'/>";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn card_field(card: &Element, name: &str) -> Option<String> {
    card.get_child(name, NS_VCARD).map(Element::text)
}

/// The vCard in a result, parsed as clients parse it (photo decoded).
fn vcard_of(reply: &Element) -> (Element, VCard) {
    assert_eq!(
        kind_of(reply),
        Some("result"),
        "{}",
        crate::xml::to_string(reply)
    );
    let card = reply
        .get_child("vCard", NS_VCARD)
        .unwrap_or_else(|| panic!("no vCard in {}", crate::xml::to_string(reply)))
        .clone();
    let parsed = VCard::try_from(card.clone()).unwrap();
    (card, parsed)
}

fn photo_hash(presence: &Element) -> Option<String> {
    presence
        .get_child("x", NS_UPDATE)?
        .get_child("photo", NS_UPDATE)
        .map(Element::text)
}

#[test]
fn the_nickname_comes_with_subscribed_and_not_in_presence_broadcasts() {
    let mut r = rig();
    let now = Instant::now();
    feed(&mut r.gw, status(DeviceStatus::Online), now);
    let out = ask(
        &mut r.gw,
        &presence(ALICE, "boiler@gw.example.org", "subscribe"),
    );
    assert_eq!(kind_of(&out[0]), Some("subscribed"));
    assert_eq!(
        out[0]
            .get_child("nick", NS_NICK)
            .map(Element::text)
            .as_deref(),
        Some("Boiler room")
    );
    // XEP-0172 §4.1: never in available or unavailable presence.
    assert_eq!(out[1].name(), "presence");
    assert!(out[1].get_child("nick", NS_NICK).is_none());
    let offline = feed(
        &mut r.gw,
        status(DeviceStatus::Offline {
            reason: "unplugged".into(),
        }),
        now,
    );
    assert_eq!(kind_of(&offline[0]), Some("unavailable"));
    assert!(offline[0].get_child("nick", NS_NICK).is_none());
}

/// The nickname in a PEP notification, as Gajim and Conversations read it.
fn nick_event(message: &Element) -> Option<String> {
    let items = message
        .get_child("event", crate::xml::NS_PUBSUB_EVENT)?
        .get_child("items", crate::xml::NS_PUBSUB_EVENT)?;
    if items.attr("node") != Some(NS_NICK) {
        return None;
    }
    let item = items.get_child("item", crate::xml::NS_PUBSUB_EVENT)?;
    Some(item.get_child("nick", NS_NICK)?.text())
}

#[test]
fn the_nickname_is_also_announced_as_a_pep_event_on_subscribe_and_probe() {
    let mut r = rig();
    feed(&mut r.gw, status(DeviceStatus::Online), Instant::now());
    for kind in ["subscribe", "probe"] {
        let out = ask(&mut r.gw, &presence(ALICE, "boiler@gw.example.org", kind));
        let events: Vec<&Element> = out.iter().filter(|e| e.name() == "message").collect();
        assert_eq!(events.len(), 1, "{kind}: one nickname event");
        let m = events[0];
        assert_eq!(m.attr("type"), Some("headline"), "{kind}");
        // From the device's bare JID, as a PEP service would send it.
        assert_eq!(m.attr("from"), Some("boiler@gw.example.org"), "{kind}");
        assert_eq!(m.attr("to"), Some("alice@example.org"), "{kind}");
        assert_eq!(nick_event(m).as_deref(), Some("Boiler room"), "{kind}");
    }
    // An outsider's probe learns nothing, not even a name.
    let out = ask(
        &mut r.gw,
        &presence(MALLORY, "boiler@gw.example.org", "probe"),
    );
    assert!(out.iter().all(|e| e.name() != "message"));
}

#[test]
fn a_devices_vcard_names_it_says_what_it_is_and_carries_its_avatar() {
    let mut r = rig();
    for to in ["boiler@gw.example.org", "boiler@gw.example.org/test"] {
        let out = ask(&mut r.gw, &iq(ALICE, to, "get", VCARD_GET));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].attr("from"), Some(to));
        let (card, parsed) = vcard_of(&out[0]);
        assert_eq!(card_field(&card, "FN").as_deref(), Some("Boiler room"));
        assert_eq!(
            card_field(&card, "NICKNAME").as_deref(),
            Some("Boiler room")
        );
        assert_eq!(
            card_field(&card, "DESC").as_deref(),
            Some(
                "A field device on connection sim, bridged by fieldbridge; points: temperature (°C)."
            )
        );
        let photo = parsed.photo.expect("a photo");
        assert_eq!(photo.type_.data, "image/png");
        assert_eq!(photo.binval.data, Avatar::Thermometer.png());
    }
}

#[test]
fn the_photo_hash_in_presence_is_the_sha1_of_the_vcards_photo() {
    let mut r = rig();
    let out = ask(
        &mut r.gw,
        &presence(ALICE, "boiler@gw.example.org", "subscribe"),
    );
    let hash = photo_hash(&out[1]).expect("a photo hash in presence");
    let card = ask(
        &mut r.gw,
        &iq(ALICE, "boiler@gw.example.org", "get", VCARD_GET),
    );
    let photo = vcard_of(&card[0]).1.photo.unwrap();
    assert_eq!(hash, hex(&Sha1::digest(&photo.binval.data)));
    // Every presence the device sends carries it, online or not.
    let online = feed(&mut r.gw, status(DeviceStatus::Online), Instant::now());
    assert_eq!(photo_hash(&online[0]).as_deref(), Some(hash.as_str()));
    let probe = ask(
        &mut r.gw,
        &presence(ALICE, "boiler@gw.example.org", "probe"),
    );
    assert_eq!(photo_hash(&probe[0]).as_deref(), Some(hash.as_str()));
}

#[test]
fn the_component_answers_with_the_gateways_vcard() {
    let mut r = rig();
    let out = ask(&mut r.gw, &iq(ALICE, DOMAIN, "get", VCARD_GET));
    let (card, parsed) = vcard_of(&out[0]);
    assert_eq!(card_field(&card, "FN").as_deref(), Some("fieldbridge test"));
    assert!(
        card_field(&card, "DESC").is_some_and(|d| d.contains("1 field device ")),
        "{card:?}"
    );
    assert_eq!(parsed.photo.unwrap().binval.data, Avatar::Gateway.png());
}

#[test]
fn an_outsider_gets_no_vcard_and_cannot_tell_which_devices_exist() {
    let mut r = rig();
    let mut answers = Vec::new();
    for to in ["boiler@gw.example.org", "nosuch@gw.example.org", DOMAIN] {
        let out = ask(&mut r.gw, &iq(MALLORY, to, "get", VCARD_GET));
        assert_eq!(out.len(), 1);
        assert_eq!(condition(&out[0]).as_deref(), Some("forbidden"));
        assert!(out[0].get_child("vCard", NS_VCARD).is_none());
        let mut answer = out[0].clone();
        set(&mut answer, "from", "");
        answers.push(crate::xml::to_string(&answer));
    }
    assert_eq!(answers[0], answers[1], "a device and no device look alike");
    assert_eq!(stats(&r.gw).forbidden, 3);
}

#[test]
fn a_vcard_set_is_not_allowed() {
    let mut r = rig();
    for to in ["boiler@gw.example.org", DOMAIN] {
        let out = ask(
            &mut r.gw,
            &iq(
                ALICE,
                to,
                "set",
                "<vCard xmlns='vcard-temp'><FN>Hacked</FN></vCard>",
            ),
        );
        assert_eq!(kind_of(&out[0]), Some("error"));
        assert_eq!(condition(&out[0]).as_deref(), Some("not-allowed"));
    }
    let out = ask(
        &mut r.gw,
        &iq(ALICE, "boiler@gw.example.org", "get", VCARD_GET),
    );
    let (card, _) = vcard_of(&out[0]);
    assert_eq!(card_field(&card, "FN").as_deref(), Some("Boiler room"));
}

#[test]
fn devices_advertise_vcard_temp_in_disco_info() {
    let mut r = rig();
    let out = ask(
        &mut r.gw,
        &iq(
            ALICE,
            "boiler@gw.example.org",
            "get",
            "<query xmlns='http://jabber.org/protocol/disco#info'/>",
        ),
    );
    let features: Vec<String> = out[0]
        .get_child("query", NS_DISCO_INFO)
        .unwrap()
        .children()
        .filter(|c| c.name() == "feature")
        .filter_map(|f| f.attr("var").map(str::to_owned))
        .collect();
    assert!(features.iter().any(|f| f == NS_VCARD), "{features:?}");
}

/// A point's kind and unit.
type Point<'a> = (ValueKind, Option<&'a str>);

/// A device of `points`.
fn device_of(points: &[Point<'_>]) -> DeviceSpec {
    let mut spec = (**directory().device("boiler").unwrap()).clone();
    spec.points = points
        .iter()
        .enumerate()
        .map(|(i, (kind, unit))| {
            let p = PointSpec {
                id: PointId::new(&format!("p{i}")).unwrap(),
                kind: *kind,
                settings: PointSettings {
                    unit: unit.map(|u| Unit(u.into())),
                    ..Default::default()
                },
            };
            (p.id.clone(), p)
        })
        .collect();
    spec
}

#[test]
fn the_avatar_follows_what_the_device_measures() {
    use ValueKind::{Bool, Float, Int, Text};
    let cases: &[(&[Point<'_>], Avatar)] = &[
        (&[(Float, Some("°C"))], Avatar::Thermometer),
        // A temperature wins over anything else it reports.
        (
            &[(Bool, None), (Float, Some("kWh")), (Float, Some("°F"))],
            Avatar::Thermometer,
        ),
        (&[(Float, Some("W"))], Avatar::Meter),
        (&[(Float, Some("V")), (Bool, None)], Avatar::Meter),
        (&[(Bool, None)], Avatar::Switch),
        (&[(Bool, None), (Bool, None)], Avatar::Switch),
        (&[(Bool, None), (Int, None)], Avatar::Sensor),
        (&[(Float, Some("%"))], Avatar::Sensor),
        (&[(Text, None)], Avatar::Sensor),
        (&[], Avatar::Sensor),
    ];
    for (points, avatar) in cases {
        assert_eq!(Avatar::of(&device_of(points)), *avatar, "{points:?}");
    }
}

#[test]
fn each_avatar_is_a_small_png_with_its_own_hash() {
    let all = [
        Avatar::Thermometer,
        Avatar::Meter,
        Avatar::Switch,
        Avatar::Sensor,
        Avatar::Gateway,
    ];
    let mut hashes = BTreeSet::new();
    for a in all {
        let png = a.png();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{a:?}");
        assert!(png.len() < 8 * 1024, "{a:?}: {} bytes", png.len());
        assert_eq!(a.sha1(), <[u8; 20]>::from(Sha1::digest(png)), "{a:?}");
        hashes.insert(a.sha1());
    }
    assert_eq!(hashes.len(), all.len());
}
