use super::*;

#[test]
fn an_allowed_subscriber_gets_subscribed_and_the_current_presence_and_is_remembered() {
    let mut r = rig();
    let now = Instant::now();
    feed(&mut r.gw, status(DeviceStatus::Online), now);
    feed(&mut r.gw, reading(21.456), now);
    let out = ask(
        &mut r.gw,
        &presence(ALICE, "boiler@gw.example.org", "subscribe"),
    );
    // Subscribed, the presence, and the nickname event (tests/card.rs).
    assert_eq!(out.len(), 3);
    assert_eq!(kind_of(&out[0]), Some("subscribed"));
    assert_eq!(out[0].attr("to"), Some("alice@example.org"));
    assert_eq!(out[0].attr("from"), Some("boiler@gw.example.org"));
    assert_eq!(kind_of(&out[1]), None, "available");
    assert_eq!(status_of(&out[1]), "temperature 21.46 °C");

    // A new gateway on the same state dir still knows alice.
    let mut again = restart(r).gw;
    let out = again.all_presences(Instant::now());
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].attr("to"), Some("alice@example.org"));
    assert_eq!(status_of(&out[0]), "waiting for the first reading");
    assert_eq!(kind_of(&out[0]), Some("unavailable"));
}

#[test]
fn a_stranger_is_refused_and_learns_nothing() {
    let mut r = rig();
    feed(&mut r.gw, reading(21.0), Instant::now());
    let out = ask(
        &mut r.gw,
        &presence(MALLORY, "boiler@gw.example.org", "subscribe"),
    );
    assert_eq!(out.len(), 1);
    assert_eq!(kind_of(&out[0]), Some("unsubscribed"));
    assert!(!crate::xml::to_string(&out[0]).contains("21"));
    let out = ask(
        &mut r.gw,
        &presence(MALLORY, "boiler@gw.example.org", "probe"),
    );
    assert_eq!(kind_of(&out[0]), Some("unsubscribed"));
    let out = ask(
        &mut r.gw,
        &iq(
            MALLORY,
            DOMAIN,
            "get",
            "<query xmlns='http://jabber.org/protocol/disco#items'/>",
        ),
    );
    assert_eq!(condition(&out[0]).as_deref(), Some("forbidden"));
    assert!(out[0].get_child("query", NS_DISCO_ITEMS).is_none());
    assert!(
        r.gw.all_presences(Instant::now()).is_empty(),
        "not remembered"
    );
    assert_eq!(stats(&r.gw).forbidden, 3);
}

#[test]
fn presence_tells_online_stale_and_offline_apart() {
    let mut r = rig();
    let now = Instant::now();
    ask(
        &mut r.gw,
        &presence(ALICE, "boiler@gw.example.org", "subscribe"),
    );
    feed(&mut r.gw, reading(20.0), now);
    let online = feed(&mut r.gw, status(DeviceStatus::Online), now);
    assert_eq!(
        (kind_of(&online[0]), status_of(&online[0]).as_str()),
        (None, "temperature 20.00 °C")
    );
    let stale = feed(&mut r.gw, status(DeviceStatus::Stale), now);
    assert_eq!(
        stale[0]
            .get_child("show", NS_COMPONENT)
            .map(|s| s.text())
            .as_deref(),
        Some("xa")
    );
    let offline = feed(
        &mut r.gw,
        status(DeviceStatus::Offline {
            reason: "connection refused".into(),
        }),
        now,
    );
    assert_eq!(kind_of(&offline[0]), Some("unavailable"));
    assert_eq!(status_of(&offline[0]), "connection refused");
    let bye = r.gw.goodbye();
    assert_eq!(
        (kind_of(&bye[0]), status_of(&bye[0]).as_str()),
        (Some("unavailable"), "gateway stopped")
    );
}

#[test]
fn status_text_refreshes_at_most_every_ten_seconds() {
    let mut r = rig();
    let t0 = Instant::now();
    let ms = Duration::from_millis;
    ask(
        &mut r.gw,
        &presence(ALICE, "boiler@gw.example.org", "subscribe"),
    );
    feed(&mut r.gw, reading(20.0), t0);
    let online = feed(&mut r.gw, status(DeviceStatus::Online), t0);
    assert_eq!(status_of(&online[0]), "temperature 20.00 °C");
    // The rest of the message that brought the device online: shown once it
    // settled, not ten seconds later.
    let out = feed(&mut r.gw, reading(21.0), t0 + ms(10));
    assert!(out.iter().all(|e| e.name() != "presence"), "too soon");
    assert!(r.gw.tick(t0 + ms(500)).is_empty());
    let out = r.gw.tick(t0 + STATUS_SETTLE);
    assert_eq!(out.len(), 1);
    assert_eq!(status_of(&out[0]), "temperature 21.00 °C");
    // From then on, at most every STATUS_INTERVAL.
    let t1 = t0 + STATUS_SETTLE;
    feed(&mut r.gw, reading(22.0), t1 + ms(100));
    assert!(r.gw.tick(t1 + Duration::from_secs(5)).is_empty());
    let out = r.gw.tick(t1 + STATUS_INTERVAL);
    assert_eq!(out.len(), 1);
    assert_eq!(status_of(&out[0]), "temperature 22.00 °C");
    assert!(
        r.gw.tick(t1 + STATUS_INTERVAL * 3).is_empty(),
        "nothing changed since"
    );
}

#[test]
fn a_probe_from_a_reader_gets_the_current_presence() {
    let mut r = rig();
    let now = Instant::now();
    feed(&mut r.gw, status(DeviceStatus::Online), now);
    feed(&mut r.gw, reading(21.5), now);
    let out = ask(
        &mut r.gw,
        &presence(ALICE, "boiler@gw.example.org", "probe"),
    );
    // The presence, then the nickname event (tests/card.rs).
    assert_eq!(out.len(), 2);
    assert_eq!(kind_of(&out[0]), None, "available");
    assert_eq!(out[0].attr("to"), Some(ALICE));
    assert_eq!(status_of(&out[0]), "temperature 21.50 °C");
}

#[test]
fn presence_comes_from_the_devices_resource_and_subscription_answers_from_its_bare_jid() {
    let mut r = rig();
    let out = ask(
        &mut r.gw,
        &presence(ALICE, "boiler@gw.example.org", "subscribe"),
    );
    assert_eq!(kind_of(&out[0]), Some("subscribed"));
    assert_eq!(out[0].attr("from"), Some("boiler@gw.example.org"));
    assert_eq!(out[1].name(), "presence");
    assert_eq!(out[1].attr("from"), Some("boiler@gw.example.org/test"));
    let probe = ask(
        &mut r.gw,
        &presence(ALICE, "boiler@gw.example.org", "probe"),
    );
    assert_eq!(probe[0].attr("from"), Some("boiler@gw.example.org/test"));
    let bye = r.gw.goodbye();
    assert_eq!(
        bye[0].attr("from"),
        Some("boiler@gw.example.org/test"),
        "unavailable from the same resource"
    );
    assert_eq!(kind_of(&bye[0]), Some("unavailable"));
}

#[test]
fn a_damaged_subscription_gets_no_presence_and_the_others_still_do() {
    let mut r = rig();
    ask(
        &mut r.gw,
        &presence(ALICE, "boiler@gw.example.org", "subscribe"),
    );
    // Only a damaged store could hold this: subscriptions are checked
    // when they are made.
    r.gw.subscribers
        .subscribe(SubscriptionKind::Presence, "boiler", "not a jid");
    let out = r.gw.on_event(status(DeviceStatus::Online), Instant::now());
    let to: Vec<Option<&str>> = out.iter().map(|p| p.attr("to")).collect();
    assert_eq!(to, [Some("alice@example.org")], "{out:?}");
}

#[test]
fn the_status_text_shows_the_summary_or_as_many_whole_points_as_fit_a_line() {
    use crate::gateway::DeviceState;
    use crate::gateway::presence::{SUMMARY_WIDTH, status_text};
    use fieldbridge_core::{Quality, Reading, Sample, Value};

    let mut spec = (**directory().device("boiler").unwrap()).clone();
    let template = spec.points["temperature"].clone();
    let mut state = DeviceState {
        status: Some(DeviceStatus::Online),
        ..DeviceState::default()
    };
    for (id, label, value) in [
        ("a_power", Some("Power"), 1670.218989),
        ("b_flow", Some("Flow temperature"), 62.79916),
        ("c_return", Some("Return temperature"), 48.1234),
        ("d_outside", Some("Outside temperature"), -3.5),
        ("temperature", None, 21.0),
    ] {
        let mut p = template.clone();
        p.id = PointId::new(id).unwrap();
        p.settings.label = label.map(str::to_owned);
        spec.points.insert(p.id.clone(), p.clone());
        state.latest.insert(
            p.id.clone(),
            Sample {
                at: SystemTime::now(),
                reading: Reading {
                    point: p.id,
                    value: Value::Float(value),
                    unit: None,
                    quality: Quality::Good,
                },
            },
        );
    }
    // By default: points in id order, whole, while the line stays short.
    let text = status_text(Some(&spec), &state);
    assert_eq!(
        text,
        "Power 1670 °C, Flow temperature 62.80 °C, Return temperature 48.12 °C"
    );
    assert!(text.chars().count() <= SUMMARY_WIDTH);
    // `summary`: these points, in this order, however long.
    spec.settings.summary = Some(
        ["temperature", "d_outside", "b_flow"]
            .map(|p| PointId::new(p).unwrap())
            .to_vec(),
    );
    assert_eq!(
        status_text(Some(&spec), &state),
        "temperature 21.00 °C, Outside temperature -3.500 °C, Flow temperature 62.80 °C"
    );
    state.status = Some(DeviceStatus::Stale);
    assert!(
        status_text(Some(&spec), &state)
            .starts_with("no fresh readings; last: temperature 21.00 °C, ")
    );
}
