use super::*;

#[test]
fn the_command_list_holds_only_what_the_sender_may_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = chat_gateway(dir.path());
    let boiler = "boiler@gw.example.org";
    assert_eq!(
        command_nodes(&mut gw, ALICE, boiler),
        ["read", "set", "info"]
    );
    assert_eq!(command_nodes(&mut gw, BOB, boiler), ["read", "info"]);
    assert_eq!(command_nodes(&mut gw, ALICE, DOMAIN), ["list"]);
    let out = ask(
        &mut gw,
        &iq(
            MALLORY,
            boiler,
            "get",
            &format!("<query xmlns='{NS_DISCO_ITEMS}' node='{NS_COMMANDS}'/>"),
        ),
    );
    assert_eq!(condition(&out[0]).as_deref(), Some("forbidden"));
    // A reader running Set, at its first step or by submitting the form
    // directly, is refused as a chat `set` is: forbidden (XEP-0050 §4.4).
    for command in [
        format!("<command xmlns='{NS_COMMANDS}' node='set' action='execute'/>"),
        format!(
            "<command xmlns='{NS_COMMANDS}' node='set' sessionid='fb-1' action='complete'>\
             <x xmlns='{NS_DATA}' type='submit'><field var='point'><value>setpoint</value></field>\
             <field var='value'><value>60</value></field></x></command>"
        ),
    ] {
        let out = execute(&mut gw, BOB, boiler, &command);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(
            condition(&out[0]).as_deref(),
            Some("forbidden"),
            "{command}"
        );
    }
    // A command that does not exist is not found.
    let out = execute(
        &mut gw,
        BOB,
        boiler,
        &format!("<command xmlns='{NS_COMMANDS}' node='reboot' action='execute'/>"),
    );
    assert_eq!(condition(&out[0]).as_deref(), Some("item-not-found"));
}

#[test]
fn set_a_point_is_a_two_stage_form_that_ends_as_a_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = chat_gateway(dir.path());
    let boiler = "boiler@gw.example.org";
    let out = execute(
        &mut gw,
        ALICE,
        boiler,
        &format!("<command xmlns='{NS_COMMANDS}' node='set' action='execute'/>"),
    );
    let cmd = command_of(&out[0]);
    assert_eq!(cmd.attr("status"), Some("executing"));
    let session = cmd.attr("sessionid").unwrap().to_owned();
    let x = cmd.get_child("x", NS_DATA).unwrap();
    assert_eq!(x.attr("type"), Some("form"));
    let options: Vec<String> = x
        .children()
        .find(|f| f.attr("var") == Some("point"))
        .unwrap()
        .children()
        .filter_map(|o| o.get_child("value", NS_DATA).map(|v| v.text()))
        .collect();
    assert_eq!(options, ["setpoint"], "only writable points");
    let preselected = x
        .children()
        .find(|f| f.attr("var") == Some("point"))
        .and_then(|f| f.get_child("value", NS_DATA))
        .map(|v| v.text());
    assert_eq!(
        preselected.as_deref(),
        Some("setpoint"),
        "the first writable point is the default, so clients preselect it"
    );

    let submit = |value: &str| {
        format!(
            "<command xmlns='{NS_COMMANDS}' node='set' sessionid='{session}' action='complete'>\
             <x xmlns='{NS_DATA}' type='submit'>\
             <field var='point'><value>setpoint</value></field>\
             <field var='value'><value>{value}</value></field></x></command>"
        )
    };
    let bad = execute(&mut gw, ALICE, boiler, &submit("hot"));
    assert_eq!(condition(&bad[0]).as_deref(), Some("bad-request"));
    assert!(gw.take_jobs(usize::MAX).is_empty());

    assert!(
        execute(&mut gw, ALICE, boiler, &submit("60")).is_empty(),
        "waits for the adapter"
    );
    let job = gw.take_jobs(usize::MAX).pop().unwrap();
    assert_eq!(
        job.action,
        JobAction::Write {
            point: PointId::new("setpoint").unwrap(),
            value: Value::Float(60.0)
        }
    );
    let done = gw
        .job_done(job, JobOutcome::Written(Ok(Value::Float(60.0))))
        .remove(0);
    assert_eq!(kind_of(&done), Some("result"));
    assert_eq!(done.attr("id"), Some("q1"));
    let cmd = command_of(&done);
    assert_eq!(cmd.attr("status"), Some("completed"));
    assert_eq!(cmd.attr("sessionid"), Some(session.as_str()));
    let note = cmd.get_child("note", NS_COMMANDS).unwrap();
    assert_eq!(note.attr("type"), Some("info"));
    assert_eq!(note.text(), "Target temperature set to 60.0 °C.");

    let canceled = execute(
        &mut gw,
        ALICE,
        boiler,
        &format!(
            "<command xmlns='{NS_COMMANDS}' node='set' sessionid='{session}' action='cancel'/>"
        ),
    );
    assert_eq!(command_of(&canceled[0]).attr("status"), Some("canceled"));
}

#[test]
fn read_now_info_and_list_report_the_device() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = chat_gateway(dir.path());
    let boiler = "boiler@gw.example.org";
    feed(&mut gw, status(DeviceStatus::Online), Instant::now());
    feed(&mut gw, reading(21.5), Instant::now());

    assert!(
        execute(
            &mut gw,
            BOB,
            boiler,
            &format!("<command xmlns='{NS_COMMANDS}' node='read'/>")
        )
        .is_empty()
    );
    let job = gw.take_jobs(usize::MAX).pop().unwrap();
    let JobAction::Read(points) = &job.action else {
        panic!("a read")
    };
    assert_eq!(points.len(), 2);
    let outcome = JobOutcome::Values(vec![
        (PointId::new("setpoint").unwrap(), Ok(Value::Float(50.0))),
        (
            PointId::new("temperature").unwrap(),
            Err(fieldbridge_core::CommandError::Failed(
                AdapterError::Unavailable("sensor unplugged".into()),
            )),
        ),
    ]);
    let done = gw.job_done(job, outcome).remove(0);
    assert_eq!(
        form_values(command_of(&done)),
        [
            ("setpoint".to_owned(), "50.0 °C".to_owned()),
            (
                "temperature".to_owned(),
                "error: sensor unplugged".to_owned()
            )
        ]
    );

    let info = execute(
        &mut gw,
        BOB,
        boiler,
        &format!("<command xmlns='{NS_COMMANDS}' node='info'/>"),
    );
    let values = form_values(command_of(&info[0]));
    assert_eq!(values[0], ("jid".to_owned(), boiler.to_owned()));
    assert_eq!(values[1], ("status".to_owned(), "online".to_owned()));
    assert_eq!(
        values[2],
        (
            "point.setpoint".to_owned(),
            "Target temperature: no reading yet".to_owned()
        )
    );
    assert!(
        values[3].1.starts_with("temperature 21.50 °C ("),
        "{values:?}"
    );

    let list = execute(
        &mut gw,
        BOB,
        DOMAIN,
        &format!("<command xmlns='{NS_COMMANDS}' node='list'/>"),
    );
    assert_eq!(
        form_values(command_of(&list[0])),
        [(
            "boiler".to_owned(),
            "online: temperature 21.50 °C".to_owned()
        )]
    );
}

#[test]
fn adapter_work_is_bounded_queued_then_refused_as_busy() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = chat_gateway(dir.path());
    for i in 0..MAX_QUEUED_JOBS {
        let out = ask(
            &mut gw,
            &chat(
                ALICE,
                "boiler@gw.example.org",
                "chat",
                &format!("set setpoint {i}"),
            ),
        );
        assert!(out.is_empty(), "queued");
    }
    let busy = body_of(&one_reply(&mut gw, ALICE, "set setpoint 99"));
    assert_eq!(busy, "Too many requests at once; try again in a moment.");
    let first = gw.take_jobs(4);
    assert_eq!(first.len(), 4);
    assert_eq!(
        first[0].action,
        JobAction::Write {
            point: PointId::new("setpoint").unwrap(),
            value: Value::Float(0.0)
        },
        "oldest first"
    );
    assert_eq!(gw.take_jobs(usize::MAX).len(), MAX_QUEUED_JOBS - 4);
}
