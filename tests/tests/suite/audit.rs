//! End-to-end: write attempts from real XMPP clients (a chat `set`, an
//! ad-hoc "Set a point", a refused reader) through a real Prosody to the
//! real gateway, then read back with `fieldbridge audit` run as a process
//! while the gateway runs.

use std::process::Command;
use std::time::Duration;

use fieldbridge_e2e::client::{XmppUser, el, with_child, xml};
use fieldbridge_e2e::gateway::{Gateway, SIMULATOR, Setup};
use fieldbridge_e2e::prosody::Prosody;
use fieldbridge_e2e::{fieldbridge_bin, output_within};
use tokio::time::Instant;

const BOILER: &str = "boiler@gw.localhost";
const NS_COMMANDS: &str = "http://jabber.org/protocol/commands";
const NS_DATA: &str = "jabber:x:data";

const DEVICES: &str = "  boiler:\n    name: Boiler room\n    connection: sim\n    poll: 100ms\n    points:\n      \
temperature: { signal: constant, value: 21.5, unit: \"°C\" }\n      \
setpoint: { signal: constant, value: 50.0, unit: \"°C\", writable: true, decimals: 1, min: 30, max: 85 }\n";

/// A zone with a half-hour offset: times shown in UTC cannot pass.
const ZONE: &str = "Asia/Kolkata";

/// `fieldbridge audit -c gateway.yaml ARGS`: (stdout lines, stderr).
fn audit(gateway: &Gateway, args: &[&str]) -> (Vec<String>, String) {
    let out = output_within(
        Command::new(fieldbridge_bin())
            .arg("audit")
            .arg("-c")
            .arg(gateway.config_file())
            .args(args)
            .env("FIELDBRIDGE__GATEWAY__TIMEZONE", ZONE),
        Duration::from_secs(20),
    )
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    let lines = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    (lines, stderr)
}

/// [`audit`] until it lists `n` entries: the gateway writes its file off
/// its event loop, an instant after the reply went out.
async fn audit_until(gateway: &Gateway, args: &[&str], n: usize) -> (Vec<String>, String) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (lines, stderr) = audit(gateway, args);
        if lines.len() >= n {
            return (lines, stderr);
        }
        assert!(
            Instant::now() < deadline,
            "fewer than {n} audit entries after 15 s: {lines:#?}\n{stderr}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn field(var: &str, value: &str) -> minidom::Element {
    let mut v = el("value", NS_DATA, &[]);
    v.append_text_node(value);
    with_child(el("field", NS_DATA, &[("var", var)]), v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_attempt_is_in_the_audit() {
    let server = Prosody::start().await.expect("prosody starts");
    for u in ["alice", "bob"] {
        server.register(u, "pw").expect("user registered");
    }
    let gateway = Gateway::started(
        &server,
        &Setup::alice_controls(SIMULATOR, DEVICES),
        &[("FIELDBRIDGE__GATEWAY__TIMEZONE", ZONE)],
    )
    .await;
    let mut alice = XmppUser::connect(server.c2s_port, "alice", "pw")
        .await
        .unwrap();
    let mut bob = XmppUser::connect(server.c2s_port, "bob", "pw")
        .await
        .unwrap();

    // Nothing written yet: no file, no entries, no complaint.
    let (lines, stderr) = audit(&gateway, &[]);
    assert!(lines.is_empty() && stderr.is_empty(), "{lines:?} {stderr}");

    // By chat.
    let done = alice.chat(BOILER, "set setpoint 62.5").await.unwrap();
    assert_eq!(done, "setpoint set to 62.5 °C.");
    // By ad-hoc command, the form submitted at once.
    let mut x = el("x", NS_DATA, &[("type", "submit")]);
    x.append_child(field("point", "setpoint"));
    x.append_child(field("value", "57.5"));
    let command = with_child(el("command", NS_COMMANDS, &[("node", "set")]), x);
    let answer = alice.iq(BOILER, "set", command).await.unwrap();
    assert_eq!(answer.attr("type"), Some("result"), "{}", xml(&answer));
    // A reader, refused.
    // (Twice in many runs on a loaded machine no answer came within 15 s:
    // the gateway's log says what it did meanwhile.)
    let refused = bob
        .chat(BOILER, "set setpoint 70")
        .await
        .unwrap_or_else(|e| panic!("{e}\ngateway log:\n{}", gateway.log()));
    assert_eq!(
        refused,
        "You may not change this device (not in access.control)."
    );

    let (lines, stderr) = audit_until(&gateway, &[], 3).await;
    assert!(stderr.is_empty(), "{stderr}");
    let want = [
        "alice@localhost via chat: write boiler.setpoint = 62.5 °C: ok, now 62.5 °C",
        "alice@localhost via adhoc: write boiler.setpoint = 57.5 °C: ok, now 57.5 °C",
        "bob@localhost via chat: write boiler.setpoint = 70.0 °C: error: You may not change this device (not in access.control).",
    ];
    assert_eq!(lines.len(), 3, "{lines:#?}");
    for (line, want) in lines.iter().zip(want) {
        // "2026-12-01 05:04:03 +05:30  alice@localhost via chat: ..."
        let (time, rest) = line.split_once("  ").unwrap_or_else(|| panic!("{line}"));
        assert!(time.ends_with(" +05:30"), "in gateway.timezone: {line}");
        assert_eq!(rest, want);
    }

    // The raw lines, with their stable fields.
    let (json, _) = audit(&gateway, &["--json"]);
    let entries: Vec<serde_json::Value> = json
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let fields = |e: &serde_json::Value| {
        ["who", "via", "action", "device", "point", "result"]
            .map(|k| e[k].as_str().unwrap_or_default().to_owned())
    };
    assert_eq!(
        fields(&entries[0]),
        [
            "alice@localhost",
            "chat",
            "write",
            "boiler",
            "setpoint",
            "ok"
        ]
    );
    assert_eq!(entries[0]["asked"], 62.5);
    assert_eq!(entries[0]["value"], 62.5);
    assert_eq!(
        fields(&entries[1]),
        [
            "alice@localhost",
            "adhoc",
            "write",
            "boiler",
            "setpoint",
            "ok"
        ]
    );
    assert_eq!(
        fields(&entries[2]),
        [
            "bob@localhost",
            "chat",
            "write",
            "boiler",
            "setpoint",
            "error"
        ]
    );
    assert_eq!(
        entries[2]["error"],
        "You may not change this device (not in access.control)."
    );
    let at = entries[1]["at"].as_str().unwrap();
    assert!(at.ends_with("+00:00"), "RFC 3339 with offset: {at}");

    // --since: a time keeps what came at or after it; a duration reaches back.
    let (since, _) = audit(&gateway, &["--since", at]);
    assert_eq!(since.len(), 2, "{since:#?}");
    assert!(since[0].ends_with(want[1]) && since[1].ends_with(want[2]));
    assert_eq!(audit(&gateway, &["--since", "1h"]).0, lines);
    let future = "2999-01-01T00:00:00+00:00";
    assert!(audit(&gateway, &["--since", future]).0.is_empty());

    // A line that is not an entry is named and skipped, not fatal.
    let file = gateway.state_dir().join("audit.jsonl");
    std::io::Write::write_all(
        &mut std::fs::OpenOptions::new()
            .append(true)
            .open(&file)
            .unwrap(),
        b"not an entry\n",
    )
    .unwrap();
    let (again, stderr) = audit(&gateway, &[]);
    assert_eq!(again, lines);
    assert!(
        stderr.contains("audit.jsonl:4: not an audit entry"),
        "{stderr}"
    );
}
