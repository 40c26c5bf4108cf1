//! Alarms to people and software: chat from the device, the room (join,
//! create, rejoin, commands), the queue and its delay stamps while the
//! link is down, reminders, `alarms` and `ack`, the `alerts` node, and the
//! alarm flags of the state item.

use std::time::Duration;

use fieldbridge_core::alarm::{AlarmKey, Alert, Change, Severity};
use fieldbridge_core::audit::{Action, AuditLog, Entry, Via};
use tokio::sync::mpsc;

use super::*;
use crate::config::AlertsConfig;
use crate::gateway::alerts::{NOT_ACK, SUMMARY_OVER};
use crate::gateway::items::NS_DELAY;
use crate::gateway::room::{NS_MUC, NS_MUC_ADMIN, NS_MUC_OWNER, NS_MUC_USER, REJOIN_CAP};

const ROOM: &str = "plant@conference.example.org";
/// The gateway's occupant JID.
const ME: &str = "gw.example.org/alerts";

fn config(to: &[&str], room: Option<&str>, remind: Option<Duration>) -> AlertsConfig {
    AlertsConfig {
        to: to.iter().map(|s| s.to_string()).collect(),
        room: room.map(str::to_owned),
        nick: None,
        remind,
    }
}

/// The chat gateway (alice controls, bob reads) with `alerts`, connected,
/// its audit going to a channel.
fn alerting(dir: &std::path::Path, alerts: AlertsConfig) -> (Gateway, mpsc::Receiver<Entry>) {
    let mut gw = chat_gateway(dir);
    let (tx, rx) = mpsc::channel(64);
    gw.set_audit(AuditLog::to_channel(tx));
    gw.set_time_zone(TimeZone::get("Europe/Berlin").unwrap());
    assert!(
        gw.set_alerts(AlertSettings::new(&alerts, "test"), Instant::now())
            .is_empty(),
        "nothing is sent before the link is up"
    );
    (gw, rx)
}

/// 2026-11-25 14:03:12 UTC plus `secs`.
fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_615_392 + secs)
}

fn point_alert(change: Change, severity: Severity, secs: u64) -> Alert {
    let boiler = DeviceId::new("boiler").unwrap();
    let text = match change {
        Change::Cleared => {
            "Boiler room: temperature is back at 83.9 °C (was above 85 °C for 5 min)"
        }
        _ => "Boiler room: temperature is 95.3 °C, above 85 °C for 30 s",
    };
    Alert {
        key: AlarmKey::Point {
            device: boiler.clone(),
            point: PointId::new("temperature").unwrap(),
        },
        severity,
        change,
        notify: true,
        devices: vec![boiler],
        at: at(secs),
        since: at(secs.saturating_sub(30)),
        value: Some(Value::Float(95.3)),
        text: text.into(),
    }
}

fn event(alert: Alert) -> DeviceEvent {
    DeviceEvent {
        device: alert.devices[0].clone(),
        at: alert.at,
        kind: EventKind::Alert(alert),
    }
}

fn raised(secs: u64) -> DeviceEvent {
    event(point_alert(Change::Raised, Severity::Critical, secs))
}

fn xml(el: &Element) -> String {
    crate::xml::to_string(el)
}

fn stamp_of(el: &Element) -> Option<(String, String)> {
    let d = el.get_child("delay", NS_DELAY)?;
    Some((d.attr("stamp")?.to_owned(), d.attr("from")?.to_owned()))
}

#[test]
fn a_notifying_alert_is_one_chat_message_from_the_device_to_each_reader() {
    let dir = tempfile::tempdir().unwrap();
    let alerts = config(&["alice@example.org", "bob@example.org"], None, None);
    let (mut gw, _) = alerting(dir.path(), alerts);
    connect(&mut gw, Instant::now());
    let out = gw.on_event(raised(0), Instant::now());
    assert_eq!(out.len(), 2, "{out:?}");
    for (m, to) in out.iter().zip(["alice@example.org", "bob@example.org"]) {
        assert_eq!(m.name(), "message");
        assert_eq!(m.attr("from"), Some("boiler@gw.example.org"));
        assert_eq!(m.attr("to"), Some(to));
        assert_eq!(kind_of(m), Some("chat"));
        assert_eq!(
            body_of(m),
            "🔴 CRITICAL Boiler room: temperature is 95.3 °C, above 85 °C for 30 s · 15:03:12 +01:00"
        );
        assert!(stamp_of(m).is_none(), "sent live: no delay");
    }
    let cleared = gw.on_event(
        event(point_alert(Change::Cleared, Severity::Critical, 300)),
        Instant::now(),
    );
    assert_eq!(cleared.len(), 2);
    assert!(body_of(&cleared[0]).starts_with("✅ CLEARED Boiler room: temperature is back"));
    // A transition a flapping summary stands for is not sent.
    let mut quiet = point_alert(Change::Raised, Severity::Critical, 301);
    quiet.notify = false;
    assert!(gw.on_event(event(quiet), Instant::now()).is_empty());
}

#[test]
fn a_connection_alert_comes_from_the_gateway_and_nobody_outside_access_gets_one() {
    let dir = tempfile::tempdir().unwrap();
    let (mut gw, _) = alerting(dir.path(), config(&["alice@example.org"], None, None));
    connect(&mut gw, Instant::now());
    let mut a = point_alert(Change::Raised, Severity::Warning, 0);
    a.key = AlarmKey::Connection(ConnectionId::new("plc").unwrap());
    a.text = "Connection plc is down: Boiler room offline for 2 min (refused)".into();
    let out = gw.on_event(event(a.clone()), Instant::now());
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].attr("from"), Some(DOMAIN));
    assert!(body_of(&out[0]).starts_with("🟠 WARNING Connection plc is down"));
    // Alice is no longer a reader: she is told nothing.
    gw.reconfigure(
        directory(),
        Access::new(&AccessConfig {
            read: vec!["other.example".into()],
            control: vec![],
        }),
    );
    assert!(gw.on_event(event(a), Instant::now()).is_empty());
}

#[test]
fn alerts_raised_while_the_link_was_down_follow_with_their_time() {
    let dir = tempfile::tempdir().unwrap();
    let (mut gw, _) = alerting(dir.path(), config(&["alice@example.org"], None, None));
    connect(&mut gw, Instant::now());
    gw.on_disconnected();
    assert!(gw.on_event(raised(0), Instant::now()).is_empty());
    assert!(
        gw.on_event(
            event(point_alert(Change::Cleared, Severity::Critical, 60)),
            Instant::now()
        )
        .is_empty()
    );
    let out: Vec<Element> = connect(&mut gw, Instant::now())
        .into_iter()
        .filter(|e| e.name() == "message")
        .collect();
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(
        stamp_of(&out[0]),
        Some(("2026-11-25T14:03:12.000Z".into(), DOMAIN.into()))
    );
    assert_eq!(
        stamp_of(&out[1]),
        Some(("2026-11-25T14:04:12.000Z".into(), DOMAIN.into()))
    );
    assert!(body_of(&out[1]).starts_with("✅ CLEARED"));
    // Sent once: the next connect has nothing more.
    gw.on_disconnected();
    assert!(
        connect(&mut gw, Instant::now())
            .iter()
            .all(|e| e.name() != "message")
    );
}

#[test]
fn many_waiting_alerts_go_as_one_message_stamped_with_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let (mut gw, _) = alerting(dir.path(), config(&["alice@example.org"], None, None));
    gw.on_disconnected();
    let n = SUMMARY_OVER as u64 + 2;
    for i in 0..n {
        gw.on_event(raised(i * 10), Instant::now());
    }
    let out: Vec<Element> = connect(&mut gw, Instant::now())
        .into_iter()
        .filter(|e| e.name() == "message")
        .collect();
    assert_eq!(out.len(), 1, "{out:?}");
    let body = body_of(&out[0]);
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines[0], "7 alerts while they could not be sent:");
    assert_eq!(lines.len(), 8, "{body}");
    assert!(lines[1].ends_with("· 15:03:12 +01:00"), "{body}");
    assert!(lines[7].ends_with("· 15:04:12 +01:00"), "{body}");
    assert_eq!(
        stamp_of(&out[0]).map(|s| s.0),
        Some("2026-11-25T14:03:12.000Z".into())
    );
    assert_eq!(out[0].attr("from"), Some("boiler@gw.example.org"));
    let t = gw.telemetry();
    assert_eq!(t.sum("alert_messages_total", [("kind", "replay")]), 1.0);
    assert_eq!(t.sum("alert_messages_total", [("kind", "live")]), 0.0);
}

/// The self-presence a MUC service sends once the gateway is in.
fn self_presence(codes: &[u16], kind: Option<&str>) -> Element {
    let status: String = codes
        .iter()
        .map(|c| format!("<status code='{c}'/>"))
        .collect();
    let kind = kind.map_or(String::new(), |k| format!(" type='{k}'"));
    stanza_from(
        &format!("{ROOM}/test"),
        &format!(
            "<presence xmlns='jabber:component:accept' to='{ME}'{kind}>\
             <x xmlns='{NS_MUC_USER}'><item affiliation='owner' role='moderator'/>{status}</x></presence>"
        ),
    )
}

fn occupant(nick: &str, real: Option<&str>) -> Element {
    let jid = real.map_or(String::new(), |j| format!(" jid='{j}'"));
    stanza_from(
        &format!("{ROOM}/{nick}"),
        &format!(
            "<presence xmlns='jabber:component:accept' to='{ME}'>\
             <x xmlns='{NS_MUC_USER}'><item affiliation='member' role='participant'{jid}/></x></presence>"
        ),
    )
}

fn said(nick: &str, body: &str, delayed: bool) -> Element {
    let delay = if delayed {
        format!("<delay xmlns='{NS_DELAY}' stamp='2026-11-25T14:00:00Z' from='{ROOM}'/>")
    } else {
        String::new()
    };
    stanza_from(
        &format!("{ROOM}/{nick}"),
        &format!(
            "<message xmlns='jabber:component:accept' to='{ME}' type='groupchat'><body>{body}</body>{delay}</message>"
        ),
    )
}

#[test]
fn the_gateway_joins_its_room_creates_it_members_only_and_posts_there() {
    let dir = tempfile::tempdir().unwrap();
    let (mut gw, _) = alerting(dir.path(), config(&[], Some(ROOM), None));
    let joined = connect(&mut gw, Instant::now());
    let join: Vec<&Element> = joined.iter().filter(|e| e.name() == "presence").collect();
    assert_eq!(join.len(), 1, "{joined:?}");
    assert_eq!(join[0].attr("from"), Some(ME));
    assert_eq!(
        join[0].attr("to"),
        Some("plant@conference.example.org/test")
    );
    let history = join[0]
        .get_child("x", NS_MUC)
        .and_then(|x| x.get_child("history", NS_MUC))
        .expect("a MUC join");
    assert_eq!(history.attr("maxchars"), Some("0"));
    // Raised before the room answered: it waits for the room.
    assert!(gw.on_event(raised(0), Instant::now()).is_empty());
    let out = gw.on_stanza(&self_presence(&[110, 201], None));
    assert_eq!(out.len(), 3, "{out:?}");
    let form = out[1]
        .get_child("query", NS_MUC_OWNER)
        .and_then(|q| q.get_child("x", "jabber:x:data"))
        .expect("the owner form");
    assert_eq!(form.attr("type"), Some("submit"));
    let value = |var: &str| {
        form.children()
            .find(|f| f.attr("var") == Some(var))
            .map(|f| f.children().next().map(Element::text).unwrap_or_default())
    };
    assert_eq!(value("muc#roomconfig_membersonly").as_deref(), Some("1"));
    assert_eq!(value("muc#roomconfig_persistentroom").as_deref(), Some("1"));
    assert_eq!(value("muc#roomconfig_whois").as_deref(), Some("anyone"));
    // The members before the form that unlocks the room.
    let members: Vec<&str> = out[0]
        .get_child("query", NS_MUC_ADMIN)
        .expect("members")
        .children()
        .filter_map(|i| i.attr("jid"))
        .collect();
    // Accounts only: example.org is a whole domain.
    assert_eq!(members, ["alice@example.org"]);
    assert_eq!(out[2].attr("to"), Some(ROOM));
    assert_eq!(kind_of(&out[2]), Some("groupchat"));
    assert!(body_of(&out[2]).starts_with("🔴 CRITICAL"));
    assert!(stamp_of(&out[2]).is_some(), "it waited: delay-stamped");
    // In the room: the next alert goes at once.
    let out = gw.on_event(
        event(point_alert(Change::Cleared, Severity::Critical, 60)),
        Instant::now(),
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].attr("from"), Some(ME));
    assert!(stamp_of(&out[0]).is_none());
    let t = gw.telemetry();
    assert_eq!(
        t.sum(
            "alert_messages_total",
            [("via", "room"), ("kind", "replay")]
        ),
        1.0
    );
    assert_eq!(
        t.sum("alert_messages_total", [("via", "room"), ("kind", "live")]),
        1.0
    );
}

#[test]
fn kicked_or_refused_it_joins_again_after_the_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let (mut gw, _) = alerting(dir.path(), config(&[], Some(ROOM), None));
    let now = Instant::now();
    connect(&mut gw, now);
    gw.on_stanza(&self_presence(&[110], None));
    assert!(
        gw.on_stanza(&self_presence(&[110, 307], Some("unavailable")))
            .is_empty()
    );
    // Kicked: the alert waits.
    assert!(gw.on_event(raised(0), now).is_empty());
    let rejoin = gw.tick(now + REJOIN_CAP);
    let join: Vec<&Element> = rejoin.iter().filter(|e| e.name() == "presence").collect();
    assert_eq!(join.len(), 1, "{rejoin:?}");
    // Refused (e.g. the room became members-only): again later.
    let error = stanza_from(
        &format!("{ROOM}/test"),
        &format!(
            "<presence xmlns='jabber:component:accept' to='{ME}' type='error'>\
             <error type='auth'><registration-required xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>"
        ),
    );
    assert!(gw.on_stanza(&error).is_empty());
    let later = now + REJOIN_CAP * 2;
    assert_eq!(
        gw.tick(later)
            .iter()
            .filter(|e| e.name() == "presence")
            .count(),
        1
    );
    // Back in: what waited is posted, once.
    let out = gw.on_stanza(&self_presence(&[110], None));
    assert_eq!(out.len(), 1);
    assert_eq!(kind_of(&out[0]), Some("groupchat"));
    // The link drops and comes back: joined again.
    gw.on_disconnected();
    let again = connect(&mut gw, later);
    assert_eq!(
        again
            .iter()
            .filter(|e| e.name() == "presence"
                && e.attr("to") == Some("plant@conference.example.org/test"))
            .count(),
        1
    );
}

#[test]
fn in_the_room_it_answers_its_nick_never_itself_or_history() {
    let dir = tempfile::tempdir().unwrap();
    let (mut gw, mut audit) = alerting(dir.path(), config(&[], Some(ROOM), None));
    connect(&mut gw, Instant::now());
    gw.on_stanza(&self_presence(&[110], None));
    gw.on_event(raised(0), Instant::now());
    gw.on_stanza(&occupant("al", Some("alice@example.org/phone")));
    gw.on_stanza(&occupant("bob", Some("bob@example.org/laptop")));
    gw.on_stanza(&occupant("anon", None));
    // Its own messages, history, and what is not addressed to it.
    assert!(
        gw.on_stanza(&said("test", "test: alarms", false))
            .is_empty()
    );
    assert!(gw.on_stanza(&said("al", "test: alarms", true)).is_empty());
    assert!(gw.on_stanza(&said("al", "alarms", false)).is_empty());
    let out = gw.on_stanza(&said("al", "test: alarms", false));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].attr("to"), Some(ROOM));
    let body = body_of(&out[0]);
    assert!(
        body.starts_with("al: All devices: 1 active alarm\n🔴 CRITICAL"),
        "{body}"
    );
    assert!(body.ends_with("not acknowledged"), "{body}");
    // Who the room does not show cannot be checked; a reader may not ack.
    let anon = body_of(&gw.on_stanza(&said("anon", "test, ack all", false))[0]);
    assert!(
        anon.starts_with("anon: This room does not show me who you are"),
        "{anon}"
    );
    let bob = body_of(&gw.on_stanza(&said("bob", "test: ack all", false))[0]);
    assert_eq!(bob, format!("bob: {NOT_ACK}"));
    assert!(
        audit.try_recv().is_err(),
        "refusals are answered, not audited"
    );
    let alice = body_of(&gw.on_stanza(&said("al", "Test: ack boiler/temperature", false))[0]);
    assert!(
        alice.starts_with("al: Acknowledged:\nBoiler room"),
        "{alice}"
    );
    let entry = audit.try_recv().expect("the ack is audited");
    assert_eq!(entry.who, "alice@example.org");
    assert_eq!(entry.via, Via::Room);
    assert_eq!(
        entry.action,
        Action::Ack {
            device: "boiler".into(),
            alarm: "boiler/temperature".into()
        }
    );
}

#[test]
fn ack_in_chat_is_for_control_users_and_stops_reminders() {
    let dir = tempfile::tempdir().unwrap();
    let remind = Duration::from_secs(30 * 60);
    let (mut gw, mut audit) = alerting(
        dir.path(),
        config(&["alice@example.org"], None, Some(remind)),
    );
    let t0 = Instant::now();
    connect(&mut gw, t0);
    assert_eq!(gw.on_event(raised(0), t0).len(), 1);
    // A warning is never reminded of.
    let mut warning = point_alert(Change::Raised, Severity::Warning, 0);
    warning.key = AlarmKey::Offline(DeviceId::new("boiler").unwrap());
    warning.text = "Boiler room is offline for 2 min: timeout".into();
    gw.on_event(event(warning), t0);
    let messages = |out: Vec<Element>| -> Vec<Element> {
        out.into_iter().filter(|e| e.name() == "message").collect()
    };
    assert!(messages(gw.tick(t0 + remind - Duration::from_secs(1))).is_empty());
    let reminded = messages(gw.tick(t0 + remind));
    assert_eq!(reminded.len(), 1, "{reminded:?}");
    assert!(
        body_of(&reminded[0]).starts_with("Reminder: 🔴 CRITICAL Boiler room: temperature"),
        "{}",
        body_of(&reminded[0])
    );
    // Once per `remind`.
    assert!(messages(gw.tick(t0 + remind + Duration::from_secs(60))).is_empty());

    let listing = body_of(&one_reply(&mut gw, BOB, "alarms"));
    assert!(
        listing.starts_with("Boiler room: 2 active alarms\n"),
        "{listing}"
    );
    assert_eq!(
        body_of(&one_reply(&mut gw, BOB, "ack temperature")),
        NOT_ACK
    );
    let outsider = ask(
        &mut gw,
        &chat(MALLORY, "boiler@gw.example.org", "chat", "ack all"),
    );
    assert_eq!(condition(&outsider[0]).as_deref(), Some("forbidden"));
    assert!(audit.try_recv().is_err());
    let done = body_of(&one_reply(&mut gw, ALICE, "Ack Temperature"));
    assert!(
        done.starts_with("Acknowledged:\nBoiler room: temperature"),
        "{done}"
    );
    let entry = audit.try_recv().expect("audited");
    assert_eq!(
        (entry.who.as_str(), entry.via),
        ("alice@example.org", Via::Chat)
    );
    assert!(
        messages(gw.tick(t0 + remind * 3)).is_empty(),
        "acknowledged: no reminder"
    );
    let again = body_of(&one_reply(&mut gw, ALICE, "ack temperature"));
    assert!(again.starts_with("No unacknowledged alarm"), "{again}");
    // `ack offline`, and the gateway's own JID lists everything.
    let offline = body_of(&one_reply(&mut gw, ALICE, "ack offline"));
    assert!(offline.contains("Boiler room is offline"), "{offline}");
    let all = ask(&mut gw, &chat(BOB, DOMAIN, "chat", "alarms"));
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].attr("from"), Some(DOMAIN));
    let text = body_of(&all[0]);
    assert!(text.starts_with("All devices: 2 active alarms"), "{text}");
    assert!(
        text.contains("acknowledged by alice@example.org at "),
        "{text}"
    );
    let outsider = ask(&mut gw, &chat(MALLORY, DOMAIN, "chat", "alarms"));
    assert_eq!(condition(&outsider[0]).as_deref(), Some("forbidden"));
}

#[test]
fn the_alerts_node_has_an_item_per_notifying_alert() {
    let dir = tempfile::tempdir().unwrap();
    let (mut gw, _) = alerting(dir.path(), config(&[], None, None));
    connect(&mut gw, Instant::now());
    let out = ask(
        &mut gw,
        &pubsub(
            ALICE,
            "set",
            &format!("<subscribe node='alerts' jid='{ALICE}'/>"),
        ),
    );
    assert_eq!(kind_of(&out[0]), Some("result"), "{}", xml(&out[0]));
    assert_eq!(out.len(), 1, "no item yet, no last item");
    gw.on_event(raised(0), Instant::now());
    let mut quiet = point_alert(Change::Cleared, Severity::Critical, 1);
    quiet.notify = false;
    gw.on_event(event(quiet), Instant::now());
    let notes: Vec<Element> = sent(&mut gw)
        .into_iter()
        .filter(|n| xml(n).contains("node='alerts'") || xml(n).contains("node=\"alerts\""))
        .collect();
    assert_eq!(notes.len(), 1, "{notes:?}");
    let item = first_item(&notes[0], NS_PUBSUB_EVENT).expect("an item");
    let alert = item
        .get_child("alert", crate::gateway::alerts::NS_ALERT)
        .expect("the alert payload");
    assert_eq!(alert.attr("key"), Some("boiler/temperature"));
    assert_eq!(alert.attr("change"), Some("raised"));
    assert_eq!(alert.attr("severity"), Some("critical"));
    assert_eq!(alert.attr("value"), Some("95.3"));
    let dev = alert.children().find(|c| c.name() == "device").unwrap();
    assert_eq!(dev.attr("name"), Some("Boiler room"));
    let items = ask(&mut gw, &pubsub(ALICE, "get", "<items node='alerts'/>"));
    let list: Vec<&Element> = items[0]
        .get_child("pubsub", NS_PUBSUB)
        .and_then(|p| p.get_child("items", NS_PUBSUB))
        .unwrap()
        .children()
        .collect();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].attr("id"), item.attr("id"));
    let denied = ask(&mut gw, &pubsub(MALLORY, "get", "<items node='alerts'/>"));
    assert_eq!(condition(&denied[0]).as_deref(), Some("forbidden"));
    // A new subscriber gets the newest item, delay-stamped.
    let out = ask(
        &mut gw,
        &pubsub(
            BOB,
            "set",
            &format!("<subscribe node='alerts' jid='{BOB}'/>"),
        ),
    );
    assert_eq!(out.len(), 2, "{out:?}");
    assert!(out[1].get_child("delay", NS_DELAY).is_some());
}

#[test]
fn the_state_item_flags_points_in_alarm() {
    let dir = tempfile::tempdir().unwrap();
    let (mut gw, _) = alerting(dir.path(), config(&[], None, None));
    let now = Instant::now();
    connect(&mut gw, now);
    subscribe_node(&mut gw, ALICE, "boiler");
    sent(&mut gw);
    feed(&mut gw, reading(95.3), now);
    let field = |items: &[Element]| -> String {
        let x = items.iter().map(xml).collect::<String>();
        let start = x.find("<numeric").expect("a field");
        x[start..].split("/>").next().unwrap().to_owned()
    };
    let critical = feed(&mut gw, raised(0), now);
    let f = field(&critical);
    assert!(
        f.contains("error='true'") || f.contains("error=\"true\""),
        "{f}"
    );
    let warning = feed(
        &mut gw,
        event(point_alert(Change::Raised, Severity::Warning, 1)),
        now,
    );
    let f = field(&warning);
    assert!(f.contains("warning") && !f.contains("error"), "{f}");
    let cleared = feed(
        &mut gw,
        event(point_alert(Change::Cleared, Severity::Warning, 2)),
        now,
    );
    let f = field(&cleared);
    assert!(!f.contains("warning") && !f.contains("error"), "{f}");
}

#[test]
fn a_reload_to_another_room_leaves_the_old_one_and_joins_the_new() {
    let dir = tempfile::tempdir().unwrap();
    let (mut gw, _) = alerting(dir.path(), config(&[], Some(ROOM), None));
    connect(&mut gw, Instant::now());
    gw.on_stanza(&self_presence(&[110], None));
    let same = AlertSettings::new(&config(&["alice@example.org"], Some(ROOM), None), "test");
    assert!(
        gw.set_alerts(same, Instant::now()).is_empty(),
        "same room: stays"
    );
    let other = AlertSettings::new(
        &config(&[], Some("ops@conference.example.org"), None),
        "test",
    );
    let out = gw.set_alerts(other, Instant::now());
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(out[0].attr("to"), Some("plant@conference.example.org/test"));
    assert_eq!(kind_of(&out[0]), Some("unavailable"));
    assert_eq!(out[1].attr("to"), Some("ops@conference.example.org/test"));
    assert!(out[1].get_child("x", NS_MUC).is_some());
    // The old room's stanzas are no longer taken as the room's.
    assert!(gw.on_stanza(&said("al", "test: alarms", false)).is_empty());
}

#[test]
fn a_nick_the_room_gave_it_is_its_own_too() {
    let dir = tempfile::tempdir().unwrap();
    let (mut gw, _) = alerting(dir.path(), config(&[], Some(ROOM), None));
    connect(&mut gw, Instant::now());
    let mut given = self_presence(&[110, 210], None);
    set(&mut given, "from", format!("{ROOM}/test-1"));
    gw.on_stanza(&given);
    assert!(
        gw.on_stanza(&said("test-1", "test: alarms", false))
            .is_empty()
    );
    assert_eq!(gw.on_stanza(&said("al", "test: alarms", false)).len(), 1);
}

#[test]
fn an_alert_replayed_late_is_not_reminded_of_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let remind = Duration::from_secs(60);
    let (mut gw, _) = alerting(
        dir.path(),
        config(&["alice@example.org"], None, Some(remind)),
    );
    let t0 = Instant::now();
    gw.on_disconnected();
    gw.on_event(raised(0), t0);
    let back = t0 + remind * 10;
    let replayed = connect(&mut gw, back);
    assert_eq!(replayed.iter().filter(|e| e.name() == "message").count(), 1);
    assert!(gw.tick(back).iter().all(|e| e.name() != "message"));
    let reminded = gw.tick(back + remind);
    assert_eq!(
        reminded
            .iter()
            .filter(|e| body_of(e).starts_with("Reminder: "))
            .count(),
        1
    );
}
