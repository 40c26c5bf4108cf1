use super::*;

#[test]
fn unknown_and_malformed_stanzas_get_an_error_or_nothing_never_a_crash() {
    let mut r = rig();
    // An IQ we do not handle: service-unavailable.
    let out = ask(
        &mut r.gw,
        &iq(ALICE, DOMAIN, "get", "<query xmlns='jabber:iq:oob'/>"),
    );
    assert_eq!(condition(&out[0]).as_deref(), Some("service-unavailable"));
    let out = ask(
        &mut r.gw,
        &iq(
            ALICE,
            "boiler@gw.example.org",
            "set",
            "<x xmlns='urn:unknown'/>",
        ),
    );
    assert_eq!(condition(&out[0]).as_deref(), Some("service-unavailable"));
    // No payload: bad-request.
    let out = ask(&mut r.gw, &iq(ALICE, DOMAIN, "get", ""));
    assert_eq!(condition(&out[0]).as_deref(), Some("bad-request"));
    // Replies and errors are never answered (no loops).
    assert!(ask(&mut r.gw, &iq(ALICE, DOMAIN, "result", "")).is_empty());
    assert!(ask(&mut r.gw, &iq(ALICE, DOMAIN, "error", "<error/>")).is_empty());
    // Nonsense types, missing or broken senders: dropped and counted.
    assert!(
        ask(
            &mut r.gw,
            &iq(ALICE, DOMAIN, "bogus", "<ping xmlns='urn:xmpp:ping'/>")
        )
        .is_empty()
    );
    assert!(ask(&mut r.gw, &parse("<iq xmlns='jabber:component:accept' type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>")).is_empty());
    assert!(ask(&mut r.gw, &stanza_from("not a jid@@", "<presence xmlns='jabber:component:accept' to='boiler@gw.example.org' type='subscribe'/>")).is_empty());
    assert!(
        ask(
            &mut r.gw,
            &presence(ALICE, "boiler@gw.example.org", "sleepy")
        )
        .is_empty()
    );
    assert!(ask(&mut r.gw, &stanza_from(ALICE, "<message xmlns='jabber:component:accept' to='boiler@gw.example.org' type='bogus'><body>hi</body></message>")).is_empty());
    assert!(ask(&mut r.gw, &stanza_from(ALICE, "<nonsense xmlns='urn:x'/>")).is_empty());
    assert_eq!(stats(&r.gw).malformed, 4);
    // And the gateway still works.
    let out = ask(
        &mut r.gw,
        &iq(ALICE, DOMAIN, "get", "<ping xmlns='urn:xmpp:ping'/>"),
    );
    assert_eq!(kind_of(&out[0]), Some("result"));
}

#[test]
fn nothing_is_ever_sent_back_to_our_own_domain_or_without_an_id() {
    let mut r = rig();
    // A bounce of our own keepalive, or a spoof: no reply, no loop.
    for from in [DOMAIN, "boiler@gw.example.org"] {
        assert!(
            ask(
                &mut r.gw,
                &iq(from, DOMAIN, "get", "<ping xmlns='urn:xmpp:ping'/>")
            )
            .is_empty(),
            "{from}"
        );
        assert!(
            ask(
                &mut r.gw,
                &presence(from, "boiler@gw.example.org", "subscribe")
            )
            .is_empty()
        );
    }
    let no_id = stanza_from(
        ALICE,
        "<iq xmlns='jabber:component:accept' to='gw.example.org' type='get'><ping xmlns='urn:xmpp:ping'/></iq>",
    );
    assert!(ask(&mut r.gw, &no_id).is_empty());
    assert_eq!(stats(&r.gw).malformed, 5);
}

#[test]
fn a_stanza_the_reader_refused_gets_policy_violation_only_when_it_is_a_request() {
    let mut r = rig();
    let head = iq(ALICE, DOMAIN, "get", "");
    let out = r.gw.refused(&head, Refusal::TooDeep);
    assert_eq!(out.len(), 1);
    assert_eq!(kind_of(&out[0]), Some("error"));
    assert_eq!(condition(&out[0]).as_deref(), Some("policy-violation"));
    assert_eq!(out[0].attr("id"), Some("q1"));
    let message = chat(MALLORY, "boiler@gw.example.org", "chat", "x");
    assert!(r.gw.refused(&message, Refusal::TooLarge).is_empty());
    assert_eq!(stats(&r.gw).malformed, 2);
}

#[tokio::test(start_paused = true)]
async fn a_flood_from_one_sender_is_refused_while_others_are_still_answered() {
    let mut r = rig();
    let ping = |from: &str| iq(from, DOMAIN, "get", "<ping xmlns='urn:xmpp:ping'/>");
    let answers: Vec<Option<String>> = (0..1000)
        .map(|_| {
            let out = ask(&mut r.gw, &ping(ALICE));
            condition(&out[0])
        })
        .collect();
    let answered = answers.iter().filter(|c| c.is_none()).count();
    assert_eq!(answered, crate::flood::BURST as usize);
    assert!(
        answers[answered..]
            .iter()
            .all(|c| c.as_deref() == Some("resource-constraint")),
        "the rest are told to wait"
    );
    assert_eq!(stats(&r.gw).rate_limited, 1000 - answered as u64);
    // Presence floods are dropped without an answer.
    assert!(
        ask(
            &mut r.gw,
            &presence(ALICE, "nobody@gw.example.org", "subscribe")
        )
        .is_empty()
    );
    let out = ask(&mut r.gw, &ping(BOB));
    assert_eq!(
        kind_of(&out[0]),
        Some("result"),
        "another reader is answered"
    );
}
