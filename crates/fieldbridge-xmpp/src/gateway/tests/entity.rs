use super::*;

#[test]
fn discovery_lists_one_node_per_device() {
    let mut r = rig();
    let out = ask(
        &mut r.gw,
        &iq(
            ALICE,
            DOMAIN,
            "get",
            "<query xmlns='http://jabber.org/protocol/disco#items'/>",
        ),
    );
    let items: Vec<_> = out[0]
        .get_child("query", NS_DISCO_ITEMS)
        .unwrap()
        .children()
        .collect();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].attr("node"), Some("boiler"));
    assert_eq!(items[0].attr("name"), Some("Boiler room"));
    // Alarm transitions (issue 14).
    assert_eq!(items[1].attr("node"), Some("alerts"));
    let out = ask(
        &mut r.gw,
        &iq(
            ALICE,
            DOMAIN,
            "get",
            "<query xmlns='http://jabber.org/protocol/disco#info'/>",
        ),
    );
    let identities: Vec<(Option<&str>, Option<&str>)> = out[0]
        .get_child("query", NS_DISCO_INFO)
        .unwrap()
        .children()
        .filter(|c| c.name() == "identity")
        .map(|i| (i.attr("category"), i.attr("type")))
        .collect();
    assert_eq!(
        identities,
        [(Some("pubsub"), Some("service"))],
        "{}",
        crate::xml::to_string(&out[0])
    );
}

#[test]
fn the_service_and_nodes_are_discoverable() {
    let mut r = rig();
    let out = ask(
        &mut r.gw,
        &iq(
            ALICE,
            DOMAIN,
            "get",
            "<query xmlns='http://jabber.org/protocol/disco#info'/>",
        ),
    );
    let query = out[0].get_child("query", NS_DISCO_INFO).unwrap();
    let features: Vec<&str> = query
        .children()
        .filter(|c| c.name() == "feature")
        .filter_map(|c| c.attr("var"))
        .collect();
    for f in [NS_PUBSUB, NS_DISCO_INFO, NS_DISCO_ITEMS] {
        assert!(features.contains(&f), "{f} in {features:?}");
    }
    let out = ask(
        &mut r.gw,
        &iq(
            ALICE,
            DOMAIN,
            "get",
            "<query xmlns='http://jabber.org/protocol/disco#info' node='boiler'/>",
        ),
    );
    let identity = out[0]
        .get_child("query", NS_DISCO_INFO)
        .and_then(|q| q.get_child("identity", NS_DISCO_INFO))
        .unwrap();
    assert_eq!(identity.attr("type"), Some("leaf"));
    let out = ask(
        &mut r.gw,
        &iq(
            ALICE,
            DOMAIN,
            "get",
            "<query xmlns='http://jabber.org/protocol/disco#info' node='kettle'/>",
        ),
    );
    assert_eq!(condition(&out[0]).as_deref(), Some("item-not-found"));
}

#[test]
fn devices_and_the_service_answer_version_time_last_activity_and_ping() {
    let mut r = rig();
    for to in ["boiler@gw.example.org", DOMAIN] {
        let v = answer(&mut r.gw, to, "<query xmlns='jabber:iq:version'/>");
        let q = v
            .get_child("query", crate::gateway::entity::NS_VERSION)
            .unwrap();
        assert_eq!(
            q.get_child("name", crate::gateway::entity::NS_VERSION)
                .unwrap()
                .text(),
            "fieldbridge"
        );
        assert_eq!(
            q.get_child("version", crate::gateway::entity::NS_VERSION)
                .unwrap()
                .text(),
            env!("CARGO_PKG_VERSION")
        );
        let t = answer(&mut r.gw, to, "<time xmlns='urn:xmpp:time'/>");
        let t = t
            .get_child("time", crate::gateway::entity::NS_TIME)
            .unwrap();
        assert_eq!(
            t.get_child("tzo", crate::gateway::entity::NS_TIME)
                .unwrap()
                .text(),
            "+00:00"
        );
        let utc = t
            .get_child("utc", crate::gateway::entity::NS_TIME)
            .unwrap()
            .text();
        assert!(utc.ends_with('Z') && utc.len() == 24, "{utc}");
        answer(&mut r.gw, to, "<ping xmlns='urn:xmpp:ping'/>");
    }
    // Last activity: seconds since the device's last reading.
    let mut ev = reading(20.0);
    set_read_at(&mut ev, SystemTime::now() - Duration::from_secs(42));
    feed(&mut r.gw, ev, Instant::now());
    let last = answer(
        &mut r.gw,
        "boiler@gw.example.org",
        "<query xmlns='jabber:iq:last'/>",
    );
    let seconds: u64 = last
        .get_child("query", crate::gateway::entity::NS_LAST)
        .and_then(|q| q.attr("seconds"))
        .unwrap()
        .parse()
        .unwrap();
    assert!((42..45).contains(&seconds), "{seconds}");
}

#[test]
fn a_device_describes_itself_and_lists_its_points() {
    let mut r = rig();
    let info = answer(
        &mut r.gw,
        "boiler@gw.example.org",
        "<query xmlns='http://jabber.org/protocol/disco#info'/>",
    );
    let q = info.get_child("query", NS_DISCO_INFO).unwrap();
    let identity = q.get_child("identity", NS_DISCO_INFO).unwrap();
    assert_eq!(identity.attr("category"), Some("client"));
    assert_eq!(identity.attr("type"), Some("bot"));
    assert_eq!(identity.attr("name"), Some("Boiler room"));
    let features: Vec<&str> = q.children().filter_map(|f| f.attr("var")).collect();
    for f in [
        "jabber:iq:version",
        "jabber:iq:last",
        "urn:xmpp:time",
        "urn:xmpp:ping",
    ] {
        assert!(features.contains(&f), "{f} missing from {features:?}");
    }
    let items = answer(
        &mut r.gw,
        "boiler@gw.example.org",
        "<query xmlns='http://jabber.org/protocol/disco#items'/>",
    );
    let item = items
        .get_child("query", NS_DISCO_ITEMS)
        .and_then(|q| q.get_child("item", NS_DISCO_ITEMS))
        .unwrap();
    assert_eq!(item.attr("node"), Some("temperature"));
    assert_eq!(item.attr("name"), Some("temperature (°C)"));
    assert_eq!(item.attr("jid"), Some("boiler@gw.example.org"));
}

#[test]
fn every_presence_carries_caps_matching_the_disco_answer() {
    let mut r = rig();
    let out = ask(
        &mut r.gw,
        &presence(ALICE, "boiler@gw.example.org", "subscribe"),
    );
    let c = out[1]
        .get_child("c", crate::gateway::entity::NS_CAPS)
        .expect("caps in presence");
    assert_eq!(c.attr("hash"), Some("sha-1"));
    assert_eq!(c.attr("node"), Some(crate::gateway::entity::CAPS_NODE));
    let info = answer(
        &mut r.gw,
        "boiler@gw.example.org",
        "<query xmlns='http://jabber.org/protocol/disco#info'/>",
    );
    let q = info.get_child("query", NS_DISCO_INFO).unwrap();
    assert_eq!(c.attr("ver"), Some(caps_ver_by_hand(q).as_str()));
}

#[test]
fn the_hand_made_caps_hash_gives_the_xep_0115_example() {
    // XEP-0115 §5.2: Exodus' disco#info and its ver.
    let s = "client/pc//Exodus 0.9.1<http://jabber.org/protocol/caps<\
             http://jabber.org/protocol/disco#info<http://jabber.org/protocol/disco#items<\
             http://jabber.org/protocol/muc<";
    assert_eq!(base64(&sha1(s.as_bytes())), "QgayPKawpkPSDYmwT/WM94uAlu0=");
    assert_eq!(
        sha1(b"abc"),
        [
            0xa9, 0x99, 0x3e, 0x36, 0x47, 0x06, 0x81, 0x6a, 0xba, 0x3e, 0x25, 0x71, 0x78, 0x50,
            0xc2, 0x6c, 0x9c, 0xd0, 0xd8, 0x9d
        ]
    );
}

#[test]
fn node_meta_data_tells_the_access_model_honestly() {
    let mut r = rig();
    let meta = meta_data(&mut r.gw);
    let get = |k: &str| meta.iter().find(|(v, _)| v == k).map(|(_, x)| x.clone());
    assert_eq!(
        get("FORM_TYPE").as_deref(),
        Some("http://jabber.org/protocol/pubsub#meta-data")
    );
    assert_eq!(get("pubsub#title").as_deref(), Some("Boiler room"));
    assert_eq!(
        get("pubsub#description").as_deref(),
        Some("Readings of Boiler room: temperature (°C)")
    );
    assert_eq!(get("pubsub#access_model").as_deref(), Some("whitelist"));
    assert_eq!(get("pubsub#max_items").as_deref(), Some("10000"));

    let dir = tempfile::tempdir().unwrap();
    let access = Access::new(&AccessConfig {
        read: vec!["*".into()],
        control: vec![],
    });
    let mut open = Gateway::new(
        DOMAIN,
        "t",
        directory(),
        access,
        dir.path(),
        Default::default(),
    )
    .unwrap();
    let meta = meta_data(&mut open);
    assert!(meta.contains(&("pubsub#access_model".to_owned(), "open".to_owned())));
}

#[test]
fn the_caps_node_answers_the_disco_whose_hash_the_presence_carries() {
    let mut r = rig();
    let out = ask(
        &mut r.gw,
        &presence(ALICE, "boiler@gw.example.org", "subscribe"),
    );
    let c = out[1]
        .get_child("c", crate::gateway::entity::NS_CAPS)
        .expect("caps in presence");
    let node = format!("{}#{}", c.attr("node").unwrap(), c.attr("ver").unwrap());
    let answer = answer(
        &mut r.gw,
        "boiler@gw.example.org",
        &format!("<query xmlns='{NS_DISCO_INFO}' node='{node}'/>"),
    );
    assert_eq!(kind_of(&answer), Some("result"));
    let q = answer.get_child("query", NS_DISCO_INFO).unwrap();
    assert_eq!(
        q.attr("node"),
        Some(node.as_str()),
        "the node is named in the answer"
    );
    assert_eq!(Some(caps_ver_by_hand(q).as_str()), c.attr("ver"));
    // Another ver is not ours.
    let other = answer_of(
        &mut r.gw,
        &format!(
            "<query xmlns='{NS_DISCO_INFO}' node='{}#x'/>",
            crate::gateway::entity::CAPS_NODE
        ),
    );
    assert_eq!(condition(&other).as_deref(), Some("item-not-found"));
}

#[test]
fn a_point_node_describes_the_point_for_programs() {
    let mut r = rig();
    let info = answer(
        &mut r.gw,
        "boiler@gw.example.org",
        "<query xmlns='http://jabber.org/protocol/disco#info' node='temperature'/>",
    );
    let q = info.get_child("query", NS_DISCO_INFO).unwrap();
    assert_eq!(q.attr("node"), Some("temperature"));
    let identity = q.get_child("identity", NS_DISCO_INFO).unwrap();
    assert_eq!(identity.attr("name"), Some("temperature (°C)"));
    let form = q.get_child("x", "jabber:x:data").unwrap();
    let fields: Vec<(String, String)> = form
        .children()
        .filter(|f| f.name() == "field")
        .map(|f| {
            let value = f
                .children()
                .find(|v| v.name() == "value")
                .map(Element::text);
            (
                f.attr("var").unwrap_or("").to_owned(),
                value.unwrap_or_default(),
            )
        })
        .collect();
    let field = |var: &str| {
        fields
            .iter()
            .find(|(v, _)| v == var)
            .map(|(_, value)| value.as_str())
    };
    assert_eq!(
        field("FORM_TYPE"),
        Some("urn:fieldbridge:point:0"),
        "{fields:?}"
    );
    assert_eq!(field("label"), Some("temperature"));
    assert_eq!(field("type"), Some("float"));
    assert_eq!(field("unit"), Some("°C"));
    assert_eq!(field("writable"), Some("false"));
    // Not set on this point: left out, not empty.
    assert_eq!(field("decimals"), None);
    assert_eq!(field("min"), None);

    let out = ask(
        &mut r.gw,
        &iq(
            ALICE,
            "boiler@gw.example.org",
            "get",
            "<query xmlns='http://jabber.org/protocol/disco#info' node='pressure'/>",
        ),
    );
    assert_eq!(condition(&out[0]).as_deref(), Some("item-not-found"));
    let out = ask(
        &mut r.gw,
        &iq(
            "mallory@evil.example",
            "boiler@gw.example.org",
            "get",
            "<query xmlns='http://jabber.org/protocol/disco#info' node='temperature'/>",
        ),
    );
    assert_eq!(condition(&out[0]).as_deref(), Some("forbidden"));
}
