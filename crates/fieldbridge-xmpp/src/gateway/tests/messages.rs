use super::*;

#[test]
fn chat_replies_come_from_the_device_in_the_same_type_and_thread() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = chat_gateway(dir.path());
    for kind in ["chat", "normal"] {
        let out = ask(&mut gw, &chat(ALICE, "boiler@gw.example.org", kind, "help"));
        assert_eq!(out.len(), 1);
        let r = &out[0];
        assert_eq!(r.name(), "message");
        assert_eq!(r.attr("type"), Some(kind));
        assert_eq!(
            r.attr("from"),
            Some("boiler@gw.example.org/test"),
            "from the device's resource, as its presence"
        );
        assert_eq!(r.attr("to"), Some(ALICE), "to the full JID that asked");
        assert_eq!(
            r.get_child("thread", NS_COMPONENT).map(|t| t.text()),
            Some("t-42".to_owned())
        );
    }
}

#[test]
fn help_lists_set_only_for_controllers_and_unknown_words_get_help() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = chat_gateway(dir.path());
    let alice = body_of(&one_reply(&mut gw, ALICE, "help"));
    assert!(
        alice.contains("set <point> <value>: change setpoint"),
        "{alice}"
    );
    assert!(
        alice.contains("get [point]: one reading, or all (setpoint, temperature)"),
        "{alice}"
    );
    let bob = body_of(&one_reply(&mut gw, BOB, "help"));
    assert!(!bob.contains("set <point>"), "{bob}");
    assert_eq!(
        body_of(&one_reply(&mut gw, BOB, "what is this")),
        format!("unknown command `what`\n{bob}")
    );
    assert_eq!(
        body_of(&one_reply(&mut gw, BOB, "set setpoint")),
        format!("usage: set <point> <value>\n{bob}")
    );
}

#[test]
fn status_and_get_show_values_units_age_and_quality() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = chat_gateway(dir.path());
    let now = Instant::now();
    feed(&mut gw, status(DeviceStatus::Online), now);
    let mut ev = reading(21.5);
    set_read_at(&mut ev, SystemTime::now() - Duration::from_secs(3));
    feed(&mut gw, ev, now);

    let s = body_of(&one_reply(&mut gw, BOB, "status"));
    let mut lines = s.lines();
    assert_eq!(lines.next(), Some("Boiler room: online"));
    assert_eq!(lines.next(), Some("Target temperature: no reading yet"));
    let t = lines.next().unwrap();
    assert!(t.starts_with("temperature 21.50 °C ("), "{t}");
    assert!(t.ends_with(" s ago)"), "{t}");

    for asked in ["get temperature", "GET TEMPERATURE", "Get Temperature"] {
        let g = body_of(&one_reply(&mut gw, BOB, asked));
        assert!(g.starts_with("temperature 21.50 °C ("), "{asked}: {g}");
    }
    let by_label = body_of(&one_reply(&mut gw, BOB, "get target TEMPERATURE"));
    assert_eq!(by_label, "Target temperature: no reading yet");
    // `get` alone: the lines of `status`, without its header.
    let all = body_of(&one_reply(&mut gw, BOB, "get"));
    assert_eq!(all, s.split_once('\n').unwrap().1);

    let mut bad = reading(0.0);
    if let EventKind::Readings(samples) = &mut bad.kind {
        samples[0].reading.quality = Quality::Bad {
            reason: "no answer".into(),
        };
    }
    feed(&mut gw, bad, now);
    let g = body_of(&one_reply(&mut gw, BOB, "get temperature"));
    assert!(g.ends_with("ago), bad: no answer"), "{g}");

    let unknown = body_of(&one_reply(&mut gw, BOB, "get pressure"));
    assert_eq!(
        unknown,
        "Boiler room has no point \"pressure\"; its points: setpoint, temperature."
    );
}

#[test]
fn set_is_queued_only_for_controllers_on_writable_points_with_valid_values() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = chat_gateway(dir.path());

    let refused = body_of(&one_reply(&mut gw, BOB, "set setpoint 55"));
    assert_eq!(
        refused,
        "You may not change this device (not in access.control)."
    );
    assert_eq!(stats(&gw).forbidden, 1, "counted as every refused write is");
    let ro = body_of(&one_reply(&mut gw, ALICE, "set temperature 5"));
    assert_eq!(ro, "temperature is read-only.");
    let bad = body_of(&one_reply(&mut gw, ALICE, "set setpoint warm"));
    assert_eq!(bad, "Target temperature: \"warm\" is not a number");
    let bad = body_of(&one_reply(&mut gw, ALICE, "set Target Temperature warm"));
    assert_eq!(bad, "Target temperature: \"warm\" is not a number");
    assert!(
        gw.take_jobs(usize::MAX).is_empty(),
        "nothing reached the adapter"
    );

    let out = ask(
        &mut gw,
        &chat(ALICE, "boiler@gw.example.org", "chat", "SET SetPoint 55.5"),
    );
    assert!(out.is_empty(), "the answer waits for the adapter");
    let mut jobs = gw.take_jobs(usize::MAX);
    assert_eq!(jobs.len(), 1);
    let w = jobs.pop().unwrap();
    assert_eq!(w.device.as_str(), "boiler");
    assert_eq!(
        w.action,
        JobAction::Write {
            point: PointId::new("setpoint").unwrap(),
            value: Value::Float(55.5)
        }
    );
    assert!(gw.take_jobs(usize::MAX).is_empty(), "taken once");

    let ok = gw
        .job_done(w.clone(), JobOutcome::Written(Ok(Value::Float(55.5))))
        .remove(0);
    assert_eq!(body_of(&ok), "Target temperature set to 55.5 °C.");
    assert_eq!(ok.attr("to"), Some(ALICE));
    assert_eq!(ok.attr("type"), Some("chat"));
    let failed = gw
        .job_done(
            w,
            JobOutcome::Written(Err(fieldbridge_core::CommandError::Failed(
                AdapterError::Refused("device answered NAK".into()),
            ))),
        )
        .remove(0);
    assert_eq!(
        body_of(&failed),
        "Could not set Target temperature: device answered NAK"
    );
}

#[test]
fn chat_from_outsiders_or_to_unknown_devices_is_forbidden_alike() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = chat_gateway(dir.path());
    for (from, to) in [
        (MALLORY, "boiler@gw.example.org"),
        (MALLORY, "ghost@gw.example.org"),
        (ALICE, "ghost@gw.example.org"),
    ] {
        let out = ask(&mut gw, &chat(from, to, "chat", "status"));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].attr("type"), Some("error"));
        assert_eq!(condition(&out[0]).as_deref(), Some("forbidden"));
        assert_eq!(body_of(&out[0]), "", "no device details");
        assert_eq!(out[0].attr("id"), Some("m1"));
    }
    assert_eq!(stats(&gw).forbidden, 3);
}

#[test]
fn messages_that_are_not_commands_get_no_reply() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = chat_gateway(dir.path());
    for kind in ["headline", "groupchat", "error", "bogus"] {
        let out = ask(
            &mut gw,
            &chat(ALICE, "boiler@gw.example.org", kind, "status"),
        );
        assert!(out.is_empty(), "{kind}: {out:?}");
    }
    let no_body = stanza_from(
        ALICE,
        "<message xmlns='jabber:component:accept' to='boiler@gw.example.org' type='chat'>\
         <active xmlns='http://jabber.org/protocol/chatstates'/></message>",
    );
    assert!(ask(&mut gw, &no_body).is_empty());
    let to_service = chat(ALICE, DOMAIN, "groupchat", "alarms");
    assert!(ask(&mut gw, &to_service).is_empty());
    assert_eq!(stats(&gw).chat_commands, 0);
}

#[test]
fn chat_history_shows_each_change_once_with_when_it_began() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = chat_gateway(dir.path());
    let now = Instant::now();
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_582_800);
    // Read every poll; an item carries the value each time.
    for (s, v) in [
        (0, 20.0),
        (2, 20.0),
        (4, 20.0),
        (6, 21.5),
        (8, 21.5),
        (10, 20.0),
    ] {
        let mut e = reading(v);
        set_read_at(&mut e, t0 + Duration::from_secs(s));
        feed(&mut gw, e, now);
    }
    let body = body_of(&one_reply(&mut gw, ALICE, "history temperature 5"));
    assert_eq!(
        body,
        "temperature: all 3 values, 05:00:00–05:00:10 +00:00\n\
         2026-11-25 05:00:00 +00:00  20.00 °C\n\
         2026-11-25 05:00:06 +00:00  21.50 °C\n\
         2026-11-25 05:00:10 +00:00  20.00 °C"
    );
    let body = body_of(&one_reply(&mut gw, ALICE, "History TEMPERATURE 2"));
    assert_eq!(
        body,
        "temperature: last 2 of 3 values, 05:00:06–05:00:10 +00:00; \
         `history temperature 20` shows up to 20\n\
         2026-11-25 05:00:06 +00:00  21.50 °C\n\
         2026-11-25 05:00:10 +00:00  20.00 °C"
    );
    // The gateway's time zone, with its offset.
    gw.set_time_zone(jiff::tz::TimeZone::get("Asia/Kolkata").unwrap());
    let body = body_of(&one_reply(&mut gw, ALICE, "history temperature 1"));
    assert!(
        body.ends_with("\n2026-11-25 10:30:10 +05:30  20.00 °C"),
        "{body}"
    );
}
