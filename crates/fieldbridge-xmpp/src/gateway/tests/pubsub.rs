use super::*;

#[test]
fn node_subscribers_get_headline_notifications_with_increasing_ids() {
    let mut r = rig();
    let out = ask(
        &mut r.gw,
        &iq(
            ALICE,
            DOMAIN,
            "set",
            "<pubsub xmlns='http://jabber.org/protocol/pubsub'><subscribe node='boiler' jid='alice@example.org'/></pubsub>",
        ),
    );
    assert_eq!(kind_of(&out[0]), Some("result"));
    assert_eq!(out.len(), 1, "no item yet to send");
    let now = Instant::now();
    let first = feed(&mut r.gw, reading(20.0), now);
    let second = feed(&mut r.gw, reading(21.0), now);
    let id = |m: &Element| {
        assert_eq!(m.attr("type"), Some("headline"));
        m.get_child("event", NS_PUBSUB_EVENT)
            .and_then(|e| e.get_child("items", NS_PUBSUB_EVENT))
            .and_then(|i| i.get_child("item", NS_PUBSUB_EVENT))
            .and_then(|i| i.attr("id"))
            .unwrap()
            .to_owned()
    };
    assert_eq!(first[0].attr("to"), Some("alice@example.org"));
    // The id is the publication time in microseconds since the epoch, 16
    // digits, strictly increasing even within one microsecond.
    let published = |m: &Element| -> u64 { id(m).parse().unwrap() };
    let now_micros = fieldbridge_store::micros(SystemTime::now());
    assert_eq!(id(&first[0]).len(), 16);
    assert!(
        now_micros.abs_diff(published(&first[0])) < 60_000_000,
        "{}",
        id(&first[0])
    );
    assert!(published(&second[0]) > published(&first[0]));
    // A later subscriber gets the last item right away.
    let out = ask(
        &mut r.gw,
        &iq(
            "bob@example.org/laptop",
            DOMAIN,
            "set",
            "<pubsub xmlns='http://jabber.org/protocol/pubsub'><subscribe node='boiler' jid='bob@example.org/laptop'/></pubsub>",
        ),
    );
    assert_eq!(out.len(), 2);
    assert_eq!(out[1].attr("to"), Some("bob@example.org/laptop"));
    assert_eq!(id(&out[1]), id(&second[0]));
    assert_eq!(
        item_values(&out[1], NS_PUBSUB_EVENT),
        [(id(&second[0]), "21".to_owned())]
    );
}

#[test]
fn pubsub_refuses_subscribing_someone_else_and_unknown_nodes() {
    let mut r = rig();
    let out = ask(
        &mut r.gw,
        &iq(
            ALICE,
            DOMAIN,
            "set",
            "<pubsub xmlns='http://jabber.org/protocol/pubsub'><subscribe node='boiler' jid='bob@example.org'/></pubsub>",
        ),
    );
    assert_eq!(condition(&out[0]).as_deref(), Some("bad-request"));
    let error = out[0].get_child("error", NS_COMPONENT).unwrap();
    assert!(
        error
            .get_child("invalid-jid", crate::xml::NS_PUBSUB_ERRORS)
            .is_some(),
        "{}",
        crate::xml::to_string(&out[0])
    );
    let out = ask(
        &mut r.gw,
        &iq(
            ALICE,
            DOMAIN,
            "get",
            "<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='kettle'/></pubsub>",
        ),
    );
    assert_eq!(condition(&out[0]).as_deref(), Some("item-not-found"));
}

#[test]
fn unsubscribing_forgets_the_subscriber() {
    let mut r = rig();
    ask(
        &mut r.gw,
        &presence(ALICE, "boiler@gw.example.org", "subscribe"),
    );
    let out = ask(
        &mut r.gw,
        &presence(ALICE, "boiler@gw.example.org", "unsubscribe"),
    );
    assert_eq!(kind_of(&out[0]), Some("unsubscribed"));
    assert!(r.gw.all_presences(Instant::now()).is_empty());
    assert!(restart(r).gw.all_presences(Instant::now()).is_empty());
}

#[test]
fn pubsub_subscriptions_survive_a_restart_and_only_the_owner_unsubscribes() {
    let mut r = rig();
    let out = ask(
        &mut r.gw,
        &pubsub(
            ALICE,
            "set",
            "<subscribe node='boiler' jid='alice@example.org/phone'/>",
        ),
    );
    let sub = out[0]
        .get_child("pubsub", NS_PUBSUB)
        .and_then(|p| p.get_child("subscription", NS_PUBSUB))
        .unwrap();
    assert_eq!(sub.attr("subscription"), Some("subscribed"));
    assert_eq!(sub.attr("node"), Some("boiler"));

    let mut r = restart(r);
    let again = &mut r.gw;
    let out = feed(again, reading(20.0), Instant::now());
    assert_eq!(
        out.iter()
            .filter(|e| e.name() == "message" && e.attr("to") == Some(ALICE))
            .count(),
        1,
        "the subscription was loaded"
    );
    let out = ask(
        again,
        &pubsub(
            "bob@example.org/x",
            "set",
            "<unsubscribe node='boiler' jid='alice@example.org/phone'/>",
        ),
    );
    assert_eq!(condition(&out[0]).as_deref(), Some("bad-request"));
    let out = ask(
        again,
        &pubsub(
            ALICE,
            "set",
            "<unsubscribe node='boiler' jid='alice@example.org/phone'/>",
        ),
    );
    assert_eq!(kind_of(&out[0]), Some("result"));
    assert!(
        feed(again, reading(21.0), Instant::now())
            .iter()
            .all(|e| e.name() != "message")
    );
    let mut restarted = restart(r);
    assert!(feed(&mut restarted.gw, reading(21.0), Instant::now()).is_empty());
}

#[test]
fn publishing_to_a_device_node_is_not_offered() {
    let mut r = rig();
    let out = ask(
        &mut r.gw,
        &pubsub(
            ALICE,
            "set",
            "<publish node='boiler'><item><x xmlns='urn:x'/></item></publish>",
        ),
    );
    assert_eq!(
        condition(&out[0]).as_deref(),
        Some("feature-not-implemented")
    );
    let unsupported = out[0]
        .get_child("error", NS_COMPONENT)
        .and_then(|e| e.get_child("unsupported", crate::xml::NS_PUBSUB_ERRORS))
        .unwrap_or_else(|| panic!("{}", crate::xml::to_string(&out[0])));
    assert_eq!(unsupported.attr("feature"), Some("publish"));
    assert_eq!(stats(&r.gw).unsupported, 1);
}

#[test]
fn affiliations_list_every_readable_node_as_member() {
    let mut r = rig();
    let out = ask(&mut r.gw, &pubsub(ALICE, "get", "<affiliations/>"));
    let list = out[0]
        .get_child("pubsub", NS_PUBSUB)
        .and_then(|p| p.get_child("affiliations", NS_PUBSUB))
        .unwrap();
    let affs: Vec<(&str, &str)> = list
        .children()
        .map(|a| (a.attr("node").unwrap(), a.attr("affiliation").unwrap()))
        .collect();
    assert_eq!(affs, [("boiler", "member"), ("alerts", "member")]);
    let out = ask(&mut r.gw, &pubsub(MALLORY, "get", "<affiliations/>"));
    assert_eq!(condition(&out[0]).as_deref(), Some("forbidden"));
}

#[test]
fn a_subscriber_asks_what_it_missed_after_the_last_id_it_has() {
    let mut r = rig();
    for v in 1..=5 {
        feed(&mut r.gw, reading(f64::from(v)), Instant::now());
    }
    let all = item_values(
        &ask(&mut r.gw, &pubsub(ALICE, "get", "<items node='boiler'/>"))[0],
        NS_PUBSUB,
    );
    r.gw.save_now();
    let request = |after: &str, max: &str| {
        let mut el = pubsub(ALICE, "get", "<items node='boiler'/>");
        let p = el.get_child_mut("pubsub", NS_PUBSUB).unwrap();
        p.append_child(
            format!(
                "<set xmlns='http://jabber.org/protocol/rsm'><after>{after}</after><max>{max}</max></set>"
            )
            .parse::<Element>()
            .unwrap(),
        );
        el
    };
    let out = ask(&mut r.gw, &request(&all[1].0, "2"));
    assert_eq!(values(&item_values(&out[0], NS_PUBSUB)), ["3", "4"]);
    let set = out[0]
        .get_child("pubsub", NS_PUBSUB)
        .and_then(|p| p.get_child("set", NS_RSM))
        .unwrap();
    assert_eq!(set.get_child("first", NS_RSM).unwrap().text(), all[2].0);
    assert_eq!(set.get_child("last", NS_RSM).unwrap().text(), all[3].0);
    let out = ask(&mut r.gw, &request(&all[4].0, "10"));
    assert!(item_values(&out[0], NS_PUBSUB).is_empty(), "nothing newer");
    let out = ask(&mut r.gw, &request("yesterday", "10"));
    assert_eq!(condition(&out[0]).as_deref(), Some("bad-request"));
}

#[test]
fn one_user_subscribes_a_few_resources_to_a_node_and_no_more() {
    let mut r = rig();
    let results: Vec<Result<(), String>> = (0..10)
        .map(|i| subscribe_as(&mut r.gw, &format!("alice@example.org/r{i}")))
        .collect();
    let accepted = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(accepted, MAX_RESOURCES_PER_USER, "{results:?}");
    let refused = results[MAX_RESOURCES_PER_USER].as_ref().unwrap_err();
    assert!(
        refused.starts_with("policy-violation / at most 4 resources"),
        "{refused}"
    );
    // Subscribing again with a resource already subscribed is fine, and
    // another user is not affected.
    assert_eq!(subscribe_as(&mut r.gw, "alice@example.org/r0"), Ok(()));
    assert_eq!(subscribe_as(&mut r.gw, "bob@example.org/laptop"), Ok(()));
    assert_eq!(stats(&r.gw).subscriptions_refused, 6);
    // The refused ones are not notified.
    let out = feed(&mut r.gw, reading(1.0), Instant::now());
    let notified: BTreeSet<&str> = out
        .iter()
        .filter(|m| m.name() == "message")
        .filter_map(|m| m.attr("to"))
        .collect();
    assert_eq!(notified.len(), MAX_RESOURCES_PER_USER + 1, "{notified:?}");
}

#[test]
fn a_device_takes_a_bounded_number_of_subscribers() {
    let mut r = rig();
    for i in 0..MAX_SUBSCRIBERS_PER_DEVICE {
        let jid = format!("u{i}@example.org");
        for kind in [SubscriptionKind::Pubsub, SubscriptionKind::Presence] {
            r.gw.subscribers.subscribe(kind, "boiler", &jid);
        }
    }
    let refused = subscribe_as(&mut r.gw, "carol@example.org/x").unwrap_err();
    assert!(refused.contains("limit of 1000 subscribers"), "{refused}");
    let out = ask(
        &mut r.gw,
        &presence("carol@example.org/x", "boiler@gw.example.org", "subscribe"),
    );
    assert_eq!(kind_of(&out[0]), Some("error"));
    assert_eq!(condition(&out[0]).as_deref(), Some("policy-violation"));
}

#[test]
fn paging_returns_exactly_the_items_after_or_before_an_id_saved_or_not() {
    let mut r = rig();
    let now = Instant::now();
    for v in 1..=20 {
        feed(&mut r.gw, reading(f64::from(v)), now);
    }
    r.gw.save_now();
    for v in 21..=30 {
        feed(&mut r.gw, reading(f64::from(v)), now);
    }
    assert_eq!(r.gw.unsaved(), 10, "the last ten are not written yet");
    let all = item_values(
        &ask(&mut r.gw, &pubsub(ALICE, "get", "<items node='boiler'/>"))[0],
        NS_PUBSUB,
    );
    let id_of = |v: usize| all[v - 1].0.clone();
    let page = |gw: &mut Gateway, rsm: &str| -> (Vec<String>, Element) {
        let out = ask(
            gw,
            &pubsub(
                ALICE,
                "get",
                &format!(
                    "<items node='boiler'/><set xmlns='http://jabber.org/protocol/rsm'>{rsm}</set>"
                ),
            ),
        );
        let values = values(&item_values(&out[0], NS_PUBSUB))
            .into_iter()
            .map(str::to_owned)
            .collect();
        let set = out[0]
            .get_child("pubsub", NS_PUBSUB)
            .and_then(|p| p.get_child("set", NS_RSM))
            .cloned()
            .expect("a result set");
        (values, set)
    };
    let numbers = |a: usize, b: usize| (a..=b).map(|v| v.to_string()).collect::<Vec<_>>();
    // Walking forward with <after> meets every item once, across the
    // saved and the unsaved.
    let mut seen = Vec::new();
    let mut after = id_of(5);
    loop {
        let (values, set) = page(&mut r.gw, &format!("<after>{after}</after><max>7</max>"));
        assert_eq!(
            set.get_child("count", NS_RSM).map(|c| c.text()).as_deref(),
            Some("30")
        );
        if values.is_empty() {
            assert!(set.get_child("first", NS_RSM).is_none());
            break;
        }
        let last = set.get_child("last", NS_RSM).unwrap().text();
        let first = set.get_child("first", NS_RSM).unwrap().text();
        assert_eq!(first, id_of(values[0].parse().unwrap()));
        assert_eq!(last, id_of(values.last().unwrap().parse().unwrap()));
        seen.extend(values);
        assert!(seen.len() <= 30, "paging does not end: {seen:?}");
        after = last;
    }
    assert_eq!(seen, numbers(6, 30));
    // Backwards: before an id, and the last page.
    assert_eq!(
        page(
            &mut r.gw,
            &format!("<before>{}</before><max>3</max>", id_of(10))
        )
        .0,
        numbers(7, 9)
    );
    assert_eq!(
        page(
            &mut r.gw,
            &format!("<before>{}</before><max>3</max>", id_of(23))
        )
        .0,
        numbers(20, 22)
    );
    assert_eq!(page(&mut r.gw, "<before/><max>3</max>").0, numbers(28, 30));
    // Between two ids.
    assert_eq!(
        page(
            &mut r.gw,
            &format!("<after>{}</after><before>{}</before>", id_of(18), id_of(23))
        )
        .0,
        numbers(19, 22)
    );
    let out = ask(
        &mut r.gw,
        &pubsub(
            ALICE,
            "get",
            "<items node='boiler'/><set xmlns='http://jabber.org/protocol/rsm'><after>x</after></set>",
        ),
    );
    assert_eq!(condition(&out[0]).as_deref(), Some("bad-request"));
}

#[test]
fn subscriptions_are_written_in_batches_and_survive_a_restart() {
    let mut r = rig();
    for i in 0..1000 {
        let out = subscribe_node(&mut r.gw, &format!("user{i}@example.org/r"), "boiler");
        assert_eq!(kind_of(&out[0]), Some("result"), "{out:?}");
    }
    assert!(r.gw.subscriptions_changed());
    assert_eq!(r.gw.unsaved(), 1000, "nothing written on the event loop");
    // One write takes them all.
    let write = r.gw.take_writes().unwrap();
    assert!(r.gw.take_writes().is_none(), "one write at a time");
    let written = write.write();
    assert!(written.is_ok(), "{written:?}");
    r.gw.written(written);
    assert!(!r.gw.subscriptions_changed());
    let mut r = restart(r);
    let out = feed(&mut r.gw, reading(30.0), Instant::now());
    assert_eq!(notifications(&out).len(), 1000, "every subscriber kept");
}

#[test]
fn notifications_follow_every_subscribe_and_unsubscribe() {
    let mut r = rig();
    let bob = "bob@example.org/laptop";
    let carol = "carol@example.org/phone";
    let recipients = |out: &[Element]| {
        let mut to: Vec<String> = out
            .iter()
            .filter(|m| m.name() == "message")
            .filter_map(|m| m.attr("to").map(str::to_owned))
            .collect();
        to.sort();
        to
    };
    subscribe_as(&mut r.gw, ALICE).unwrap();
    subscribe_as(&mut r.gw, bob).unwrap();
    let out = feed(&mut r.gw, reading(1.0), Instant::now());
    assert_eq!(recipients(&out), [ALICE, bob]);
    let out = ask(
        &mut r.gw,
        &pubsub(
            bob,
            "set",
            &format!("<unsubscribe node='boiler' jid='{bob}'/>"),
        ),
    );
    assert_eq!(kind_of(&out[0]), Some("result"));
    let out = feed(&mut r.gw, reading(2.0), Instant::now());
    assert_eq!(recipients(&out), [ALICE]);
    subscribe_as(&mut r.gw, carol).unwrap();
    let out = feed(&mut r.gw, reading(3.0), Instant::now());
    assert_eq!(recipients(&out), [ALICE, carol]);
}
