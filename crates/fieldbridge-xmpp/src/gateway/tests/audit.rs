//! Every write attempt is audited: done, failed at the device, or refused
//! before a job existed, through chat, ad-hoc command or XEP-0325.

use fieldbridge_core::CommandError;
use fieldbridge_core::audit::{Action, AuditLog, Entry, Outcome, Via};
use tokio::sync::mpsc;

use super::*;

/// The chat gateway, its audit entries going to a channel.
fn audited(dir: &std::path::Path) -> (Gateway, mpsc::Receiver<Entry>) {
    let mut gw = chat_gateway(dir);
    let (tx, rx) = mpsc::channel(64);
    gw.set_audit(AuditLog::to_channel(tx));
    (gw, rx)
}

/// (who, via, device, point, asked, result) of each entry so far.
fn entries(rx: &mut mpsc::Receiver<Entry>) -> Vec<(String, Via, String, String, Value, Outcome)> {
    let mut out = Vec::new();
    while let Ok(e) = rx.try_recv() {
        let Action::Write {
            device,
            point,
            asked,
        } = e.action
        else {
            continue;
        };
        out.push((e.who, e.via, device, point, asked, e.result));
    }
    out
}

fn ok(v: f64) -> Outcome {
    Outcome::Ok {
        value: Some(Value::Float(v)),
    }
}

fn error(why: &str) -> Outcome {
    Outcome::Error {
        error: why.to_owned(),
    }
}

const ALICE_BARE: &str = "alice@example.org";
const BOB_BARE: &str = "bob@example.org";

#[test]
fn chat_writes_are_audited_done_failed_and_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut gw, mut rx) = audited(dir.path());
    one_reply(&mut gw, BOB, "set setpoint 55");
    one_reply(&mut gw, ALICE, "set temperature 5");
    one_reply(&mut gw, ALICE, "set setpoint warm");
    one_reply(&mut gw, ALICE, "set pressure 3");
    let write = |who: &str, point: &str, asked: Value, result: Outcome| {
        (
            who.to_owned(),
            Via::Chat,
            "boiler".to_owned(),
            point.to_owned(),
            asked,
            result,
        )
    };
    assert_eq!(
        entries(&mut rx),
        vec![
            write(
                BOB_BARE,
                "setpoint",
                Value::Float(55.0),
                error("You may not change this device (not in access.control).")
            ),
            write(
                ALICE_BARE,
                "temperature",
                Value::Float(5.0),
                error("temperature is read-only.")
            ),
            write(
                ALICE_BARE,
                "setpoint",
                Value::Text("warm".into()),
                error("Target temperature: \"warm\" is not a number")
            ),
            write(
                ALICE_BARE,
                "pressure",
                Value::Text("3".into()),
                error("Boiler room has no point \"pressure\"; its points: setpoint, temperature.")
            ),
        ]
    );

    // Queued: audited once the adapter answered, with what it answered.
    assert!(
        ask(
            &mut gw,
            &chat(
                ALICE,
                "boiler@gw.example.org",
                "chat",
                "set Target temperature 55.5"
            )
        )
        .is_empty()
    );
    assert!(entries(&mut rx).is_empty(), "not done yet");
    let job = gw.take_jobs(usize::MAX).pop().unwrap();
    gw.job_done(job.clone(), JobOutcome::Written(Ok(Value::Float(55.0))));
    let refused = CommandError::Failed(AdapterError::Refused(
        "55.5 °C is above the maximum 50 °C".into(),
    ));
    gw.job_done(job, JobOutcome::Written(Err(refused.clone())));
    assert_eq!(
        entries(&mut rx),
        vec![
            write(ALICE_BARE, "setpoint", Value::Float(55.5), ok(55.0)),
            write(
                ALICE_BARE,
                "setpoint",
                Value::Float(55.5),
                error(&refused.to_string())
            ),
        ]
    );
    // Counted as audited: the four refused before the adapter, and the
    // adapter's refusal; one done.
    let writes = |outcome| {
        fieldbridge_core::telemetry::Telemetry::count(
            &gw.telemetry().writes,
            [("device", "boiler"), ("outcome", outcome)],
        )
    };
    assert_eq!(
        (writes("done"), writes("refused"), writes("failed")),
        (1, 5, 0)
    );
}

#[test]
fn ad_hoc_writes_are_audited_but_opening_the_form_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let (mut gw, mut rx) = audited(dir.path());
    let boiler = "boiler@gw.example.org";
    let open = format!("<command xmlns='{NS_COMMANDS}' node='set' action='execute'/>");
    execute(&mut gw, BOB, boiler, &open);
    execute(&mut gw, ALICE, boiler, &open);
    assert!(
        entries(&mut rx).is_empty(),
        "nothing asked to be written yet"
    );
    let submit = |value: &str| {
        format!(
            "<command xmlns='{NS_COMMANDS}' node='set' action='complete'>\
             <x xmlns='{NS_DATA}' type='submit'>\
             <field var='point'><value>setpoint</value></field>\
             <field var='value'><value>{value}</value></field></x></command>"
        )
    };
    let refused = execute(&mut gw, BOB, boiler, &submit("60"));
    assert_eq!(condition(&refused[0]).as_deref(), Some("forbidden"));
    execute(&mut gw, ALICE, boiler, &submit("hot"));
    assert!(execute(&mut gw, ALICE, boiler, &submit("60")).is_empty());
    let job = gw.take_jobs(usize::MAX).pop().unwrap();
    gw.job_done(job, JobOutcome::Written(Ok(Value::Float(60.0))));
    let write = |who: &str, asked: Value, result: Outcome| {
        (
            who.to_owned(),
            Via::Adhoc,
            "boiler".to_owned(),
            "setpoint".to_owned(),
            asked,
            result,
        )
    };
    assert_eq!(
        entries(&mut rx),
        vec![
            write(
                BOB_BARE,
                Value::Float(60.0),
                error("You may not change this device (not in access.control).")
            ),
            write(
                ALICE_BARE,
                Value::Text("hot".into()),
                error("Target temperature: \"hot\" is not a number")
            ),
            write(ALICE_BARE, Value::Float(60.0), ok(60.0)),
        ]
    );
}

#[test]
fn control_sets_are_audited_per_parameter() {
    let dir = tempfile::tempdir().unwrap();
    let (mut gw, mut rx) = audited(dir.path());
    let boiler = "boiler@gw.example.org";
    let set = format!(
        "<set xmlns='{NS_CONTROL}'><double name='setpoint' value='55'/>\
         <double name='temperature' value='5'/></set>"
    );
    ask(&mut gw, &iq(BOB, boiler, "set", &set));
    // One bad parameter: nothing of the set is written, both are refused.
    ask(&mut gw, &iq(ALICE, boiler, "set", &set));
    let good = format!("<set xmlns='{NS_CONTROL}'><double name='setpoint' value='42'/></set>");
    assert!(ask(&mut gw, &iq(ALICE, boiler, "set", &good)).is_empty());
    let job = gw.take_jobs(usize::MAX).pop().unwrap();
    gw.job_done(
        job,
        JobOutcome::Values(vec![(
            PointId::new("setpoint").unwrap(),
            Ok(Value::Float(42.0)),
        )]),
    );
    let write = |who: &str, point: &str, asked: f64, result: Outcome| {
        (
            who.to_owned(),
            Via::Xep0325,
            "boiler".to_owned(),
            point.to_owned(),
            Value::Float(asked),
            result,
        )
    };
    let not_allowed = error("You may not change this device (not in access.control).");
    let read_only = error("temperature is read-only.");
    assert_eq!(
        entries(&mut rx),
        vec![
            write(BOB_BARE, "setpoint", 55.0, not_allowed.clone()),
            write(BOB_BARE, "temperature", 5.0, not_allowed),
            write(ALICE_BARE, "setpoint", 55.0, read_only.clone()),
            write(ALICE_BARE, "temperature", 5.0, read_only),
            write(ALICE_BARE, "setpoint", 42.0, ok(42.0)),
        ]
    );
}

#[test]
fn reads_are_not_audited() {
    let dir = tempfile::tempdir().unwrap();
    let (mut gw, mut rx) = audited(dir.path());
    let out = execute(
        &mut gw,
        ALICE,
        "boiler@gw.example.org",
        &format!("<command xmlns='{NS_COMMANDS}' node='read' action='execute'/>"),
    );
    assert!(out.is_empty());
    let job = gw.take_jobs(usize::MAX).pop().unwrap();
    gw.job_done(
        job,
        JobOutcome::Values(vec![(
            PointId::new("setpoint").unwrap(),
            Ok(Value::Float(42.0)),
        )]),
    );
    assert!(entries(&mut rx).is_empty());
}
