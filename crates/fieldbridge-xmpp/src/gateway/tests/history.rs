use super::*;

#[test]
fn items_retrieval_serves_the_history_in_publication_order() {
    let mut r = rig();
    let now = Instant::now();
    let empty = ask(&mut r.gw, &pubsub(ALICE, "get", "<items node='boiler'/>"));
    assert_eq!(kind_of(&empty[0]), Some("result"));
    assert!(
        first_item(&empty[0], NS_PUBSUB).is_none(),
        "nothing published yet"
    );
    for v in [20.0, 21.0, 22.0] {
        feed(&mut r.gw, reading(v), now);
    }
    let get = |gw: &mut Gateway, request: &str| {
        let out = ask(gw, &pubsub(ALICE, "get", request));
        item_values(&out[0], NS_PUBSUB)
    };
    let all = get(&mut r.gw, "<items node='boiler'/>");
    assert_eq!(
        values(&all),
        ["20", "21", "22"],
        "not yet written, still served"
    );
    assert!(
        all.windows(2).all(|w| w[0].0 < w[1].0),
        "ids ordered: {all:?}"
    );
    assert_eq!(
        values(&get(&mut r.gw, "<items node='boiler' max_items='1'/>")),
        ["22"]
    );
    assert_eq!(
        values(&get(&mut r.gw, "<items node='boiler' max_items='2'/>")),
        ["21", "22"]
    );
    // Written to the database, then asked by id.
    r.gw.save_now();
    let by_id = format!(
        "<items node='boiler'><item id='{}'/><item id='{}'/></items>",
        all[0].0, all[2].0
    );
    assert_eq!(values(&get(&mut r.gw, &by_id)), ["20", "22"]);
    assert_eq!(
        get(&mut r.gw, "<items node='boiler'/>"),
        all,
        "the same ids after the write"
    );
    let out = ask(
        &mut r.gw,
        &pubsub(ALICE, "get", "<items node='boiler' max_items='0'/>"),
    );
    assert!(first_item(&out[0], NS_PUBSUB).is_none());
    let out = ask(
        &mut r.gw,
        &pubsub(
            ALICE,
            "get",
            "<items node='boiler'><item id='0000000000000001'/></items>",
        ),
    );
    assert!(first_item(&out[0], NS_PUBSUB).is_none(), "an old id");
    // Strangers learn nothing.
    let out = ask(&mut r.gw, &pubsub(MALLORY, "get", "<items node='boiler'/>"));
    assert_eq!(condition(&out[0]).as_deref(), Some("forbidden"));
    assert!(!crate::xml::to_string(&out[0]).contains("22"));
}

#[test]
fn the_history_keeps_the_defaults_or_what_the_device_says() {
    let minute = Duration::from_secs(60);
    let boiler = (**directory().device("boiler").unwrap()).clone();
    assert_eq!(crate::gateway::history::limits(&boiler), Limits::default());
    assert_eq!(
        Limits::default(),
        Limits {
            max_items: 10_000,
            max_age: 7 * 24 * 60 * minute
        },
        "documented in gateway.yaml"
    );
    // devices.boiler.history: { max_items: 3, max_age: 1h }
    let dir = tempfile::tempdir().unwrap();
    let mut spec = boiler;
    spec.settings.history = Some(fieldbridge_core::device::HistorySettings {
        max_items: Some(3),
        max_age: Some(60 * minute),
    });
    assert_eq!(
        crate::gateway::history::limits(&spec),
        Limits {
            max_items: 3,
            max_age: 60 * minute
        }
    );
    let access = Access::new(&AccessConfig {
        read: vec!["example.org".into()],
        control: vec![],
    });
    let mut gw = Gateway::new(
        DOMAIN,
        "test",
        Arc::new(Directory::new([spec])),
        access,
        dir.path(),
        Default::default(),
    )
    .unwrap();
    connect(&mut gw, Instant::now());
    assert_eq!(
        kept_after(&mut gw, &[1.0, 2.0, 3.0, 4.0, 5.0]),
        ["3", "4", "5"],
        "the newest three"
    );
}

#[test]
fn a_reconnect_resends_presence_and_the_last_items() {
    let mut r = rig();
    let now = Instant::now();
    ask(
        &mut r.gw,
        &presence(ALICE, "boiler@gw.example.org", "subscribe"),
    );
    ask(
        &mut r.gw,
        &pubsub(
            ALICE,
            "set",
            "<subscribe node='boiler' jid='alice@example.org/phone'/>",
        ),
    );
    // Read while the link was down: nothing can go out then.
    r.gw.on_disconnected();
    feed(&mut r.gw, status(DeviceStatus::Online), now);
    assert!(feed(&mut r.gw, reading(23.0), now).is_empty());
    let out = connect(&mut r.gw, now);
    let presence = out.iter().find(|e| e.name() == "presence").unwrap();
    assert_eq!(status_of(presence), "temperature 23.00 °C");
    let message = out.iter().find(|e| e.name() == "message").unwrap();
    assert_eq!(message.attr("to"), Some(ALICE));
    assert_eq!(values(&item_values(message, NS_PUBSUB_EVENT)), ["23"]);
}

#[test]
fn every_item_published_while_disconnected_is_sent_on_reconnect_in_order() {
    let mut r = rig();
    let now = Instant::now();
    ask(
        &mut r.gw,
        &pubsub(
            ALICE,
            "set",
            "<subscribe node='boiler' jid='alice@example.org/phone'/>",
        ),
    );
    let reading_at = |v: f64, ago: u64| {
        let mut e = reading(v);
        set_read_at(&mut e, SystemTime::now() - Duration::from_secs(ago));
        e
    };
    let before = feed(&mut r.gw, reading_at(1.0, 60), now);
    let sent_before = item_values(&before[0], NS_PUBSUB_EVENT);
    // Published just before the link died: perhaps lost in flight.
    feed(&mut r.gw, reading_at(1.5, 2), now);
    r.gw.on_disconnected();
    for i in 2..=40 {
        assert!(feed(&mut r.gw, reading_at(f64::from(i), 1), now).is_empty());
        if i == 20 {
            // Half of them reach the database before the link returns.
            r.gw.save_now();
        }
    }
    let out = connect(&mut r.gw, now);
    let sent: Vec<(String, String)> = out
        .iter()
        .filter(|e| e.name() == "message")
        .flat_map(|m| item_values(m, NS_PUBSUB_EVENT))
        .collect();
    // Both items before the outage were published within REPLAY_MARGIN
    // of it (just now): they may have been in flight, so they come again.
    let want: Vec<String> = ["1", "1.5"]
        .map(str::to_owned)
        .into_iter()
        .chain((2..=40).map(|i| i.to_string()))
        .collect();
    assert_eq!(
        values(&sent),
        want,
        "the last seconds before the outage again, then all missed items, in order"
    );
    assert_eq!(sent[0].0, sent_before[0].0, "the same item, by its id");
    assert!(sent.windows(2).all(|w| w[0].0 < w[1].0));
    assert!(
        connect(&mut r.gw, now)
            .iter()
            .all(|e| e.name() != "message"),
        "nothing twice once delivered"
    );
}

#[test]
fn the_history_and_item_sequence_survive_a_restart() {
    let mut r = rig();
    let now = Instant::now();
    for v in [1.0, 2.0] {
        feed(&mut r.gw, reading(v), now);
    }
    let before = ask(&mut r.gw, &pubsub(ALICE, "get", "<items node='boiler'/>"));
    r.gw.save_now();
    let mut r = restart(r);
    let after = ask(&mut r.gw, &pubsub(ALICE, "get", "<items node='boiler'/>"));
    assert_eq!(
        item_values(&after[0], NS_PUBSUB),
        item_values(&before[0], NS_PUBSUB)
    );
    ask(
        &mut r.gw,
        &pubsub(
            ALICE,
            "set",
            "<subscribe node='boiler' jid='alice@example.org/phone'/>",
        ),
    );
    let next = feed(&mut r.gw, reading(3.0), now);
    let seqnr = next[0]
        .get_child("event", NS_PUBSUB_EVENT)
        .and_then(|e| e.get_child("items", NS_PUBSUB_EVENT))
        .and_then(|i| i.get_child("item", NS_PUBSUB_EVENT))
        .and_then(|i| i.get_child("fields", crate::xml::NS_SENSORDATA))
        .and_then(|f| f.attr("seqnr"))
        .map(str::to_owned);
    // Past any number a crash could have left unsaved (see `resume`).
    let expected = (2 + crate::gateway::history::MAX_UNWRITTEN + 2).to_string();
    assert_eq!(
        seqnr.as_deref(),
        Some(expected.as_str()),
        "the sequence goes on, past what may have been lost"
    );
}

#[test]
fn a_crash_never_makes_the_sequence_repeat_a_number_already_sent() {
    let mut r = rig();
    ask(
        &mut r.gw,
        &pubsub(
            ALICE,
            "set",
            "<subscribe node='boiler' jid='alice@example.org/phone'/>",
        ),
    );
    let now = Instant::now();
    let seqnr_of = |out: &[Element]| -> u64 {
        out.iter()
            .find_map(|m| {
                m.get_child("event", NS_PUBSUB_EVENT)?
                    .get_child("items", NS_PUBSUB_EVENT)?
                    .get_child("item", NS_PUBSUB_EVENT)?
                    .get_child("fields", crate::xml::NS_SENSORDATA)?
                    .attr("seqnr")?
                    .parse()
                    .ok()
            })
            .expect("a notification")
    };
    feed(&mut r.gw, reading(1.0), now);
    r.gw.save_now();
    // A full batch is sent but never written: the process dies.
    let mut sent = 0;
    for i in 0..crate::gateway::history::MAX_UNWRITTEN {
        sent = seqnr_of(&feed(&mut r.gw, reading(i as f64), now));
    }
    r.gw.publish_all();
    // The process dies: nothing more is written.
    let Rig { gw, dir } = r;
    drop(gw);
    let mut r = Rig {
        gw: gateway_in(dir.path()),
        dir,
    };
    let next = seqnr_of(&feed(&mut r.gw, reading(9.0), now));
    assert!(next > sent, "{next} after {sent}");
}

#[test]
fn a_long_text_reading_is_read_back_from_the_history() {
    let mut r = rig();
    let mut event = reading(0.0);
    let long = "é".repeat(5 * 1024);
    if let EventKind::Readings(samples) = &mut event.kind {
        samples[0].reading.value = Value::Text(long.clone());
    }
    feed(&mut r.gw, event, Instant::now());
    r.gw.save_now();
    let r = restart(r);
    let mut r = r;
    let out = ask(&mut r.gw, &pubsub(ALICE, "get", "<items node='boiler'/>"));
    let values = item_values(&out[0], NS_PUBSUB);
    assert_eq!(values.len(), 1, "{values:?}");
    assert_eq!(values[0].1, long);
}

#[test]
fn the_state_of_the_previous_version_is_upgraded_with_its_subscribers_and_items() {
    // A state directory as the previous version (1d394b4) wrote it: see
    // crates/fieldbridge-store/tests/fixtures/v0-state/README.md.
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fieldbridge-store/tests/fixtures/v0-state");
    let dir = tempfile::tempdir().unwrap();
    for f in ["history.redb", "subscriptions.json"] {
        std::fs::copy(fixture.join(f), dir.path().join(f)).unwrap();
    }
    let spec = |id: &str, points: &[&str]| DeviceSpec {
        id: DeviceId::new(id).unwrap(),
        settings: DeviceSettings::on(ConnectionId::new("sim").unwrap()),
        points: points
            .iter()
            .map(|p| {
                let id = PointId::new(p).unwrap();
                (
                    id.clone(),
                    PointSpec {
                        id,
                        kind: ValueKind::Float,
                        settings: PointSettings::default(),
                    },
                )
            })
            .collect(),
    };
    let directory = Arc::new(Directory::new([
        spec("boiler", &["pressure", "pump", "temperature"]),
        spec("kitchen-plug", &["power", "state"]),
    ]));
    let access = Access::new(&AccessConfig {
        read: vec!["example.org".into(), "example.net".into()],
        control: vec![],
    });
    let mut gw = Gateway::new(
        DOMAIN,
        "test",
        directory,
        access,
        dir.path(),
        Default::default(),
    )
    .unwrap();
    connect(&mut gw, Instant::now());
    assert!(dir.path().join("subscriptions.json.imported").exists());
    // The items, each now the device's state after that reading.
    let out = ask(&mut gw, &pubsub(ALICE, "get", "<items node='boiler'/>"));
    let items = out[0]
        .get_child("pubsub", NS_PUBSUB)
        .and_then(|p| p.get_child("items", NS_PUBSUB))
        .unwrap();
    let all: Vec<Vec<(String, String)>> = items
        .children()
        .map(|i| {
            let wrapped = child(element("items", NS_PUBSUB), i.clone());
            let mut x = element("pubsub", NS_PUBSUB);
            x.append_child(wrapped);
            let mut iq = element("iq", NS_COMPONENT);
            iq.append_child(x);
            state_of(&iq).into_iter().map(|(p, v, _)| (p, v)).collect()
        })
        .collect();
    let pv = |p: &str, v: &str| (p.to_owned(), v.to_owned());
    assert_eq!(all.len(), 5, "{all:?}");
    assert_eq!(all[0], [pv("temperature", "21.5")]);
    // Oldest reading first: the pump was read before the last temperature
    // and the pressure.
    assert_eq!(
        all[4],
        [
            pv("pump", "true"),
            pv("temperature", "22"),
            pv("pressure", "3")
        ]
    );
    // Its presence subscribers are answered as such, and its node
    // subscribers get what is published next.
    let out = ask(
        &mut gw,
        &presence("bob@example.org/x", "boiler@gw.example.org", "probe"),
    );
    assert_eq!(
        kind_of(&out[0]),
        Some("unavailable"),
        "known, not unsubscribed"
    );
    assert_eq!(out[0].attr("from"), Some("boiler@gw.example.org/test"));
    let mut next = reading(23.0);
    if let EventKind::Readings(samples) = &mut next.kind {
        samples[0].reading.unit = None;
    }
    let out = feed(&mut gw, next, Instant::now());
    let to: BTreeSet<&str> = notifications(&out)
        .iter()
        .filter_map(|m| m.attr("to"))
        .collect();
    assert_eq!(
        to,
        BTreeSet::from(["alice@example.org/phone", "carol@example.net"])
    );
    // And the sequence goes on from the old one.
    let seqnr = seqnr_in(notifications(&out)[0]);
    assert!(seqnr > 5, "{seqnr}");
}

#[test]
fn items_published_while_catching_up_follow_the_missed_ones_in_order() {
    let mut r = rig();
    let now = Instant::now();
    subscribe_node(&mut r.gw, ALICE, "boiler");
    feed(&mut r.gw, reading(1.0), now);
    r.gw.on_disconnected();
    for v in 2..=4 {
        assert!(feed(&mut r.gw, reading(f64::from(v)), now).is_empty());
    }
    // The link is back; before the store has been read, a new reading:
    // held, for a subscriber would otherwise get it before older ones.
    r.gw.on_connected(now);
    let live = feed(&mut r.gw, reading(5.0), now);
    assert!(notifications(&live).is_empty(), "{live:?}");
    let caught: Vec<String> = reads(&mut r.gw)
        .iter()
        .filter(|e| e.name() == "message")
        .flat_map(|m| item_values(m, NS_PUBSUB_EVENT))
        .map(|(_, v)| v)
        .collect();
    // Item 1 was published within REPLAY_MARGIN of the outage: again.
    assert_eq!(
        caught,
        ["1", "2", "3", "4", "5"],
        "the missed ones, then the held one, once"
    );
    // Caught up: the next one goes at once.
    let next = feed(&mut r.gw, reading(6.0), now);
    let sent: Vec<String> = notifications(&next)
        .iter()
        .flat_map(|m| item_values(m, NS_PUBSUB_EVENT))
        .map(|(_, v)| v)
        .collect();
    assert_eq!(sent, ["6"]);
}
