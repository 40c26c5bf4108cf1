use super::*;

/// The nodes disco#items lists, as `alice` sees them.
fn nodes(gw: &mut Gateway) -> Vec<String> {
    let out = ask(
        gw,
        &iq(
            ALICE,
            DOMAIN,
            "get",
            "<query xmlns='http://jabber.org/protocol/disco#items'/>",
        ),
    );
    out[0]
        .get_child("query", NS_DISCO_ITEMS)
        .unwrap()
        .children()
        .filter_map(|i| i.attr("node").map(str::to_owned))
        // The alarm transitions' node is always there.
        .filter(|n| n != "alerts")
        .collect()
}

/// The rig's boiler beside a `fan` with the same points.
fn with_fan(old: &Directory) -> Arc<Directory> {
    let boiler = (**old.device("boiler").unwrap()).clone();
    let mut fan = boiler.clone();
    fan.id = DeviceId::new("fan").unwrap();
    let c = boiler.settings.connection.clone();
    Arc::new(old.reconfigured([boiler, fan], [c]))
}

fn access(read: &str) -> Access {
    Access::new(&AccessConfig {
        read: vec![read.into()],
        control: vec![],
    })
}

#[test]
fn a_reload_adds_and_removes_devices_and_leaves_the_others_alone() {
    let mut r = rig();
    let now = Instant::now();
    ask(
        &mut r.gw,
        &presence(ALICE, "boiler@gw.example.org", "subscribe"),
    );
    feed(&mut r.gw, status(DeviceStatus::Online), now);
    feed(&mut r.gw, reading(21.0), now);
    let dir = with_fan(&directory());

    let (out, what) = r.gw.reconfigure(Arc::clone(&dir), access("example.org"));
    // Nothing is said for the unchanged boiler.
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(what.added, [DeviceId::new("fan").unwrap()]);
    assert!(what.removed.is_empty() && what.changed.is_empty());
    assert_eq!(nodes(&mut r.gw), ["boiler", "fan"]);
    // The fan speaks once its adapter reports.
    ask(
        &mut r.gw,
        &presence(ALICE, "fan@gw.example.org", "subscribe"),
    );
    let mut online = status(DeviceStatus::Online);
    online.device = DeviceId::new("fan").unwrap();
    let out = feed(&mut r.gw, online, now);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].attr("from"), Some("fan@gw.example.org/test"));

    // Removing the boiler: its subscriber is told, disco forgets it, its
    // events are ignored.
    let only_fan = Arc::new(dir.reconfigured(
        [(**dir.device("fan").unwrap()).clone()],
        [ConnectionId::new("sim").unwrap()],
    ));
    let (out, what) = r.gw.reconfigure(only_fan, access("example.org"));
    assert_eq!(what.removed, [DeviceId::new("boiler").unwrap()]);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].attr("from"), Some("boiler@gw.example.org/test"));
    assert_eq!(kind_of(&out[0]), Some("unavailable"));
    assert_eq!(status_of(&out[0]), "removed from the configuration");
    assert_eq!(nodes(&mut r.gw), ["fan"]);
    assert!(feed(&mut r.gw, reading(22.0), now).is_empty());
    // A probe from its subscriber is answered, not refused.
    let out = ask(
        &mut r.gw,
        &presence(ALICE, "boiler@gw.example.org", "probe"),
    );
    assert_eq!(status_of(&out[0]), "removed from the configuration");
    // After a reconnect, it says so again (the link may have been down).
    r.gw.on_disconnected();
    let out = connect(&mut r.gw, now);
    let boiler: Vec<_> = out
        .iter()
        .filter(|e| e.attr("from") == Some("boiler@gw.example.org/test"))
        .collect();
    assert_eq!(boiler.len(), 1);
    assert_eq!(status_of(boiler[0]), "removed from the configuration");

    // Back: its subscriber and its last state are there again.
    let (_, what) =
        r.gw.reconfigure(with_fan(&directory()), access("example.org"));
    assert_eq!(what.added, [DeviceId::new("boiler").unwrap()]);
    let out = feed(&mut r.gw, status(DeviceStatus::Online), now);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].attr("to"), Some("alice@example.org"));
    assert_eq!(status_of(&out[0]), "temperature 21.00 °C");
}

#[test]
fn a_reload_applies_the_access_lists_at_once_and_pauses_who_they_refuse() {
    let mut r = rig();
    let now = Instant::now();
    ask(
        &mut r.gw,
        &presence(ALICE, "boiler@gw.example.org", "subscribe"),
    );
    subscribe_node(&mut r.gw, ALICE, "boiler");
    assert_eq!(nodes(&mut r.gw), ["boiler"]);
    r.gw.reconfigure(directory(), access("other.example"));
    let out = ask(
        &mut r.gw,
        &iq(
            ALICE,
            DOMAIN,
            "get",
            "<query xmlns='http://jabber.org/protocol/disco#items'/>",
        ),
    );
    assert_eq!(condition(&out[0]).as_deref(), Some("forbidden"));
    // Alice's subscriptions are kept but get nothing: no presence, no item.
    assert!(feed(&mut r.gw, status(DeviceStatus::Online), now).is_empty());
    assert!(feed(&mut r.gw, reading(21.0), now).is_empty());
    assert_eq!(stats(&r.gw).items, 1, "published all the same");
    // Allowed again: she hears from the device at its next change.
    r.gw.reconfigure(directory(), access("example.org"));
    let out = feed(&mut r.gw, reading(22.0), now);
    assert_eq!(notifications(&out).len(), 1);
    assert_eq!(notifications(&out)[0].attr("to"), Some(ALICE));
    let out = feed(&mut r.gw, status(DeviceStatus::Stale), now);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].attr("to"), Some("alice@example.org"));
}

#[test]
fn a_changed_device_keeps_its_state_and_shows_its_new_name() {
    let mut r = rig();
    let now = Instant::now();
    ask(
        &mut r.gw,
        &presence(ALICE, "boiler@gw.example.org", "subscribe"),
    );
    feed(&mut r.gw, status(DeviceStatus::Online), now);
    feed(&mut r.gw, reading(21.0), now);
    let mut boiler = (**directory().device("boiler").unwrap()).clone();
    boiler.settings.name = Some("Boiler".into());
    let dir = Arc::new(Directory::new([boiler]));
    let (out, what) = r.gw.reconfigure(dir, access("example.org"));
    assert!(out.is_empty());
    assert_eq!(what.changed, [DeviceId::new("boiler").unwrap()]);
    let disco = ask(
        &mut r.gw,
        &iq(
            ALICE,
            DOMAIN,
            "get",
            "<query xmlns='http://jabber.org/protocol/disco#items'/>",
        ),
    );
    let item = disco[0]
        .get_child("query", NS_DISCO_ITEMS)
        .unwrap()
        .children()
        .next()
        .unwrap();
    assert_eq!(item.attr("name"), Some("Boiler"));
    let out = ask(
        &mut r.gw,
        &presence(ALICE, "boiler@gw.example.org", "probe"),
    );
    assert_eq!(status_of(&out[0]), "temperature 21.00 °C");
}
