//! End-to-end: ad-hoc commands (XEP-0050) from a real client through a real
//! Prosody and a real ejabberd to the real gateway and its simulator.

use fieldbridge_e2e::client::{XmppUser, control_set, el, error_condition, with_child, xml};
use fieldbridge_e2e::gateway::{Gateway, Setup};
use fieldbridge_e2e::server::{COMPONENT, Server, ServerKind};
use minidom::Element;

const BOILER: &str = "boiler@gw.localhost";
const NS_COMMANDS: &str = "http://jabber.org/protocol/commands";
const NS_DATA: &str = "jabber:x:data";
const NS_ITEMS: &str = "http://jabber.org/protocol/disco#items";

const DEVICES: &str = "  boiler:\n    name: Boiler room\n    connection: sim\n    poll: 100ms\n    points:\n      \
temperature: { signal: constant, value: 21.5, unit: \"°C\" }\n      \
setpoint: { signal: constant, value: 50.0, unit: \"°C\", writable: true }\n";

async fn commands_of(user: &mut XmppUser, jid: &str) -> Vec<String> {
    let q = el("query", NS_ITEMS, &[("node", NS_COMMANDS)]);
    let answer = user.iq(jid, "get", q).await.unwrap();
    answer
        .get_child("query", NS_ITEMS)
        .unwrap_or_else(|| panic!("{}", xml(&answer)))
        .children()
        .filter_map(|i| i.attr("node").map(str::to_owned))
        .collect()
}

/// Runs a command; returns its `<command/>` answer.
async fn run(user: &mut XmppUser, jid: &str, command: Element) -> Element {
    let answer = user.iq(jid, "set", command).await.unwrap();
    assert_eq!(answer.attr("type"), Some("result"), "{}", xml(&answer));
    answer.get_child("command", NS_COMMANDS).unwrap().clone()
}

fn values(command: &Element) -> Vec<(String, String)> {
    command
        .get_child("x", NS_DATA)
        .unwrap_or_else(|| panic!("no form in {}", xml(command)))
        .children()
        .filter(|f| f.name() == "field")
        .map(|f| {
            (
                f.attr("var").unwrap_or_default().to_owned(),
                f.get_child("value", NS_DATA)
                    .map(Element::text)
                    .unwrap_or_default(),
            )
        })
        .collect()
}

/// The server, the gateway, alice (in access.control) and bob (reads only).
async fn setup(kind: ServerKind) -> (Server, Gateway, XmppUser, XmppUser) {
    let server = Server::start(kind).await.expect("the XMPP server starts");
    for u in ["alice", "bob"] {
        server.register(u, "pw").unwrap();
    }
    let gateway = Gateway::start_with(
        &server,
        &Setup {
            read: &["localhost"],
            control: &["alice@localhost"],
            connections: "  sim: { simulator: {} }\n",
            devices: DEVICES,
        },
    )
    .await
    .unwrap();
    let alice = XmppUser::connect(server.c2s_port(), "alice", "pw")
        .await
        .unwrap();
    let bob = XmppUser::connect(server.c2s_port(), "bob", "pw")
        .await
        .unwrap();
    (server, gateway, alice, bob)
}

fn field(var: &str, value: &str) -> Element {
    let mut v = el("value", NS_DATA, &[]);
    v.append_text_node(value);
    with_child(el("field", NS_DATA, &[("var", var)]), v)
}

async fn ad_hoc_commands_read_describe_list_and_write(kind: ServerKind) {
    let (_server, _gateway, mut alice, mut bob) = setup(kind).await;

    assert_eq!(
        commands_of(&mut alice, BOILER).await,
        ["read", "set", "info"]
    );
    assert_eq!(commands_of(&mut bob, BOILER).await, ["read", "info"]);
    assert_eq!(commands_of(&mut bob, COMPONENT).await, ["list"]);

    // Read now: the adapter answers with fresh values.
    let read = run(
        &mut bob,
        BOILER,
        el(
            "command",
            NS_COMMANDS,
            &[("node", "read"), ("action", "execute")],
        ),
    )
    .await;
    assert_eq!(read.attr("status"), Some("completed"));
    assert_eq!(
        values(&read),
        [
            ("setpoint".to_owned(), "50.00 °C".to_owned()),
            ("temperature".to_owned(), "21.50 °C".to_owned())
        ]
    );

    // Set a point: the form, then the submission; the simulator reports
    // the new value from then on.
    let form = run(
        &mut alice,
        BOILER,
        el(
            "command",
            NS_COMMANDS,
            &[("node", "set"), ("action", "execute")],
        ),
    )
    .await;
    assert_eq!(form.attr("status"), Some("executing"));
    let session = form.attr("sessionid").unwrap().to_owned();
    let mut x = el("x", NS_DATA, &[("type", "submit")]);
    x.append_child(field("point", "setpoint"));
    x.append_child(field("value", "57.5"));
    let submit = with_child(
        el(
            "command",
            NS_COMMANDS,
            &[
                ("node", "set"),
                ("sessionid", &session),
                ("action", "complete"),
            ],
        ),
        x,
    );
    let done = run(&mut alice, BOILER, submit).await;
    assert_eq!(done.attr("status"), Some("completed"));
    let note = done.get_child("note", NS_COMMANDS).unwrap();
    assert_eq!(note.text(), "setpoint set to 57.50 °C.", "{}", xml(&done));
    let read = run(
        &mut bob,
        BOILER,
        el("command", NS_COMMANDS, &[("node", "read")]),
    )
    .await;
    assert_eq!(
        values(&read)[0],
        ("setpoint".to_owned(), "57.50 °C".to_owned())
    );

    // Bob may not write: not by starting the command, not by sending the
    // form directly (with no session, and with alice's), and the value
    // stays what alice set.
    let start = bob
        .iq(
            BOILER,
            "set",
            el(
                "command",
                NS_COMMANDS,
                &[("node", "set"), ("action", "execute")],
            ),
        )
        .await
        .unwrap();
    assert_eq!(
        error_condition(&start).as_deref(),
        Some("forbidden"),
        "{}",
        xml(&start)
    );
    for session in [None, Some(session.as_str())] {
        let mut x = el("x", NS_DATA, &[("type", "submit")]);
        x.append_child(field("point", "setpoint"));
        x.append_child(field("value", "99"));
        let mut command = el("command", NS_COMMANDS, &[("node", "set")]);
        if let Some(id) = session {
            command = el(
                "command",
                NS_COMMANDS,
                &[("node", "set"), ("sessionid", id), ("action", "complete")],
            );
        }
        let refused = bob.iq(BOILER, "set", with_child(command, x)).await.unwrap();
        assert_eq!(
            error_condition(&refused).as_deref(),
            Some("forbidden"),
            "session {session:?}: {}",
            xml(&refused)
        );
    }
    let read = run(
        &mut bob,
        BOILER,
        el("command", NS_COMMANDS, &[("node", "read")]),
    )
    .await;
    assert_eq!(
        values(&read)[0],
        ("setpoint".to_owned(), "57.50 °C".to_owned()),
        "a refused write changed the value"
    );

    let info = run(
        &mut bob,
        BOILER,
        el("command", NS_COMMANDS, &[("node", "info")]),
    )
    .await;
    let info = values(&info);
    assert_eq!(info[0], ("jid".to_owned(), BOILER.to_owned()));
    assert_eq!(info[1], ("status".to_owned(), "online".to_owned()));

    let list = run(
        &mut bob,
        COMPONENT,
        el("command", NS_COMMANDS, &[("node", "list")]),
    )
    .await;
    let list = values(&list);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].0, "boiler");
    assert!(list[0].1.starts_with("online: "), "{list:?}");
    alice.close().await;
    bob.close().await;
}

const NS_SENSORDATA: &str = "urn:xmpp:iot:sensordata";

/// A XEP-0323 momentary readout: (name, value) of every field.
async fn readout(user: &mut XmppUser, seqnr: &str) -> Vec<(String, String)> {
    let req = el(
        "req",
        NS_SENSORDATA,
        &[("seqnr", seqnr), ("momentary", "true")],
    );
    let accepted = user.iq(BOILER, "get", req).await.unwrap();
    assert!(
        accepted.get_child("accepted", NS_SENSORDATA).is_some(),
        "{}",
        xml(&accepted)
    );
    let m = user
        .expect("the readout", std::time::Duration::from_secs(15), |e| {
            e.get_child("fields", NS_SENSORDATA)
                .is_some_and(|f| f.attr("seqnr") == Some(seqnr))
        })
        .await
        .unwrap();
    let fields = m.get_child("fields", NS_SENSORDATA).unwrap();
    assert_eq!(fields.attr("done"), Some("true"));
    fields
        .get_child("node", NS_SENSORDATA)
        .unwrap()
        .children()
        .flat_map(Element::children)
        .map(|f| {
            (
                f.attr("name").unwrap().to_owned(),
                f.attr("value").unwrap().to_owned(),
            )
        })
        .collect()
}

async fn sensor_data_readout_and_control_from_iot_software(kind: ServerKind) {
    let (_server, _gateway, mut alice, mut bob) = setup(kind).await;

    assert_eq!(
        readout(&mut bob, "1").await,
        [
            ("setpoint".to_owned(), "50".to_owned()),
            ("temperature".to_owned(), "21.5".to_owned())
        ]
    );
    let refused = bob
        .iq(BOILER, "set", control_set("setpoint", "70"))
        .await
        .unwrap();
    assert_eq!(
        error_condition(&refused).as_deref(),
        Some("forbidden"),
        "{}",
        xml(&refused)
    );
    // The refused write did not happen: the value read back is unchanged.
    assert_eq!(
        readout(&mut bob, "2").await[0],
        ("setpoint".to_owned(), "50".to_owned()),
        "bob's refused write changed the value"
    );
    let done = alice
        .iq(BOILER, "set", control_set("setpoint", "61.25"))
        .await
        .unwrap();
    assert_eq!(done.attr("type"), Some("result"), "{}", xml(&done));
    assert_eq!(
        readout(&mut bob, "3").await[0],
        ("setpoint".to_owned(), "61.25".to_owned())
    );
    alice.close().await;
    bob.close().await;
}

fieldbridge_e2e::on_every_server!(
    ad_hoc_commands_read_describe_list_and_write,
    sensor_data_readout_and_control_from_iot_software
);
