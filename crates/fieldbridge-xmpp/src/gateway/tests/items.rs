use super::*;

#[test]
fn notifications_carry_the_reading_in_the_sensordata_shape() {
    let mut r = rig();
    ask(
        &mut r.gw,
        &pubsub(
            ALICE,
            "set",
            "<subscribe node='boiler' jid='alice@example.org/phone'/>",
        ),
    );
    let mut event = reading(21.5);
    set_read_at(
        &mut event,
        SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_582_800_123),
    );
    let out = feed(&mut r.gw, event, Instant::now());
    let message = out
        .iter()
        .find(|e| e.name() == "message")
        .expect("a notification");
    assert_eq!(message.attr("type"), Some("headline"));
    assert_eq!(message.attr("from"), Some(DOMAIN));
    assert_eq!(message.attr("to"), Some(ALICE));
    let items = message
        .get_child("event", NS_PUBSUB_EVENT)
        .and_then(|e| e.get_child("items", NS_PUBSUB_EVENT))
        .unwrap();
    assert_eq!(items.attr("node"), Some("boiler"));
    let item = items.get_child("item", NS_PUBSUB_EVENT).unwrap();
    assert_eq!(item.attr("id").map(str::len), Some(16), "{item:?}");
    let fields = item.get_child("fields", crate::xml::NS_SENSORDATA).unwrap();
    assert_eq!(
        crate::xml::to_string(fields),
        "<fields xmlns='urn:xmpp:iot:sensordata' done='true' seqnr='1'><node nodeId='boiler'>\
<timestamp value='2026-11-25T05:00:00.123Z'>\
<numeric momentary='true' name='temperature' unit='°C' value='21.5'/>\
</timestamp></node></fields>"
    );
    assert_eq!(stats(&r.gw).notifications, 1);
}

#[test]
fn a_device_made_at_run_time_is_served_and_keeps_its_subscribers_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let access = || {
        Access::new(&AccessConfig {
            read: vec!["example.org".into()],
            control: vec![],
        })
    };
    let start = |directory: Arc<Directory>| {
        let mut gw = Gateway::new(
            DOMAIN,
            "t",
            directory,
            access(),
            dir.path(),
            Default::default(),
        )
        .unwrap();
        connect(&mut gw, Instant::now());
        gw
    };
    let directory = directory();
    let mut gw = start(directory.clone());
    // The adapter creates the device when its first message comes.
    directory.insert(plug()).unwrap();
    ask(
        &mut gw,
        &presence(ALICE, "plug@gw.example.org", "subscribe"),
    );
    ask(
        &mut gw,
        &pubsub(
            ALICE,
            "set",
            "<subscribe node='plug' jid='alice@example.org/phone'/>",
        ),
    );
    let out = feed(&mut gw, power(100.0), Instant::now());
    assert!(
        out.iter().any(|e| e.name() == "message"),
        "notified: {out:?}"
    );
    // Stopping writes what waited.
    gw.save_now();
    drop(gw);

    // After a restart the device is unknown until its next message...
    let directory = self::directory();
    let mut gw = start(directory.clone());
    let out = ask(&mut gw, &presence(ALICE, "plug@gw.example.org", "probe"));
    assert_eq!(kind_of(&out[0]), Some("unavailable"), "not unsubscribed");
    assert_eq!(status_of(&out[0]), "not seen since the gateway started");
    let out = ask(&mut gw, &presence(MALLORY, "plug@gw.example.org", "probe"));
    assert_eq!(
        kind_of(&out[0]),
        Some("unsubscribed"),
        "strangers learn nothing"
    );
    // ...and then its subscribers are served again.
    directory.insert(plug()).unwrap();
    let mut online = power(120.0);
    online.kind = EventKind::Status(DeviceStatus::Online);
    let out = feed(&mut gw, online, Instant::now());
    assert!(
        out.iter()
            .any(|e| e.name() == "presence" && e.attr("to") == Some("alice@example.org")),
        "{out:?}"
    );
    let out = feed(&mut gw, power(120.0), Instant::now());
    let message = out.iter().find(|e| e.name() == "message").unwrap();
    assert_eq!(message.attr("to"), Some(ALICE));
}

#[test]
fn readings_that_arrive_together_make_one_item_with_the_whole_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = meter_gateway(dir.path());
    let t0 = Instant::now();
    let read = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_582_800_000);
    // One poll: every point at once.
    gw.on_event(
        meter_readings(
            &[("current", 0.5), ("power", 115.0), ("voltage", 230.0)],
            read,
        ),
        t0,
    );
    // Another message of the same device a moment later, another point.
    let later = read + Duration::from_millis(20);
    gw.on_event(meter_readings(&[("power", 116.0)], later), t0);
    // That was a second reading of `power` before its item: the first
    // item went out at once, with the first poll whole.
    let first = sent(&mut gw);
    assert_eq!(first.len(), 1, "{first:?}");
    let t = |ms: u64| crate::sensordata::timestamp(read + Duration::from_millis(ms));
    let row = |p: &str, v: &str, ms: u64| (p.to_owned(), v.to_owned(), t(ms));
    assert_eq!(
        state_of(&first[0]),
        [
            row("current", "0.5", 0),
            row("power", "115", 0),
            row("voltage", "230", 0)
        ]
    );
    // Within the window, a reading of another point joins the pending item.
    gw.on_event(meter_readings(&[("current", 0.6)], later), t0);
    gw.publish_due(t0 + crate::gateway::items::ITEM_WINDOW / 2);
    assert!(sent(&mut gw).is_empty(), "the window is not over");
    assert_eq!(
        gw.next_publish(),
        Some(t0 + crate::gateway::items::ITEM_WINDOW)
    );
    gw.publish_due(t0 + crate::gateway::items::ITEM_WINDOW);
    let second = sent(&mut gw);
    assert_eq!(second.len(), 1, "one item for both");
    // The whole state, each value under the time it was read at.
    assert_eq!(
        state_of(&second[0]),
        [
            row("voltage", "230", 0),
            row("current", "0.6", 20),
            row("power", "116", 20)
        ]
    );
    assert_eq!(stats(&gw).items, 2);

    // A late subscriber gets the state at once, stamped with when it was
    // published; and `max_items=1` is the same state.
    let out = subscribe_node(&mut gw, "bob@example.org/laptop", "meter");
    let last = notifications(&out);
    assert_eq!(last.len(), 1, "{out:?}");
    assert_eq!(state_of(last[0]), state_of(&second[0]));
    let delay = last[0]
        .get_child("delay", crate::gateway::items::NS_DELAY)
        .expect("a delay stamp");
    assert_eq!(delay.attr("from"), Some(DOMAIN));
    let stamp = delay.attr("stamp").unwrap();
    assert_eq!(stamp.len(), 24, "{stamp}");
    let out = ask(
        &mut gw,
        &pubsub(ALICE, "get", "<items node='meter' max_items='1'/>"),
    );
    assert_eq!(state_of(&out[0]), state_of(&second[0]));
}
