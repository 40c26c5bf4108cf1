use super::*;

#[test]
fn a_momentary_readout_is_accepted_then_answered_with_fresh_fields() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = chat_gateway(dir.path());
    let boiler = "boiler@gw.example.org";
    // XEP-0323 §3.1, with our JIDs.
    let out = ask(
        &mut gw,
        &iq(
            BOB,
            boiler,
            "get",
            "<req xmlns='urn:xmpp:iot:sensordata' seqnr='1' momentary='true'/>",
        ),
    );
    assert_eq!(out.len(), 1);
    assert_eq!(kind_of(&out[0]), Some("result"));
    let accepted = out[0]
        .get_child("accepted", crate::xml::NS_SENSORDATA)
        .unwrap();
    assert_eq!(accepted.attr("seqnr"), Some("1"));
    let job = gw.take_jobs(usize::MAX).pop().unwrap();
    assert_eq!(
        job.action,
        JobAction::Read(vec![
            PointId::new("setpoint").unwrap(),
            PointId::new("temperature").unwrap()
        ])
    );
    let outcome = JobOutcome::Values(vec![
        (PointId::new("setpoint").unwrap(), Ok(Value::Float(50.0))),
        (PointId::new("temperature").unwrap(), Ok(Value::Float(23.4))),
    ]);
    let done = gw.job_done(job, outcome);
    assert_eq!(done.len(), 1);
    let m = &done[0];
    assert_eq!(m.name(), "message");
    assert_eq!(m.attr("to"), Some(BOB));
    assert_eq!(m.attr("from"), Some(boiler));
    let fields = m.get_child("fields", crate::xml::NS_SENSORDATA).unwrap();
    assert_eq!(fields.attr("seqnr"), Some("1"));
    assert_eq!(fields.attr("done"), Some("true"));
    assert_eq!(
        sensordata_fields(m),
        [
            ("setpoint".into(), "50".into(), Some("°C".into())),
            ("temperature".into(), "23.4".into(), Some("°C".into()))
        ]
    );
}

#[test]
fn a_readout_of_named_fields_reads_only_those_and_reports_failures() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = chat_gateway(dir.path());
    // XEP-0323 §3.6: read-out of specific fields.
    ask(
        &mut gw,
        &iq(
            BOB,
            "boiler@gw.example.org",
            "get",
            "<req xmlns='urn:xmpp:iot:sensordata' seqnr='4' momentary='true'>\
         <field name='temperature'/></req>",
        ),
    );
    let job = gw.take_jobs(usize::MAX).pop().unwrap();
    assert_eq!(
        job.action,
        JobAction::Read(vec![PointId::new("temperature").unwrap()])
    );
    let outcome = JobOutcome::Values(vec![(
        PointId::new("temperature").unwrap(),
        Err(fieldbridge_core::CommandError::Failed(
            AdapterError::NoAnswer("timeout".into()),
        )),
    )]);
    let done = gw.job_done(job, outcome);
    assert_eq!(done.len(), 1, "nothing read: only the failure");
    let failure = done[0]
        .get_child("failure", crate::xml::NS_SENSORDATA)
        .unwrap();
    assert_eq!(failure.attr("seqnr"), Some("4"));
    assert_eq!(failure.attr("done"), Some("true"));
    let error = failure
        .get_child("error", crate::xml::NS_SENSORDATA)
        .unwrap();
    assert_eq!(error.attr("nodeId"), Some("boiler"));
    assert_eq!(error.text(), "temperature: timeout");
}

#[test]
fn a_historical_readout_is_served_from_the_history() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = chat_gateway(dir.path());
    for v in [20.0, 21.0] {
        feed(&mut gw, reading(v), Instant::now());
    }
    let out = ask(
        &mut gw,
        &iq(
            BOB,
            "boiler@gw.example.org",
            "get",
            "<req xmlns='urn:xmpp:iot:sensordata' seqnr='7' historicalOther='true'/>",
        ),
    );
    assert_eq!(out.len(), 2, "accepted, then the values: {out:?}");
    assert!(
        gw.take_jobs(usize::MAX).is_empty(),
        "nothing asked of the adapter"
    );
    let fields = out[1]
        .get_child("fields", crate::xml::NS_SENSORDATA)
        .unwrap();
    assert_eq!(fields.attr("done"), Some("true"));
    assert_eq!(
        sensordata_fields(&out[1]),
        [
            ("temperature".into(), "20".into(), Some("°C".into())),
            ("temperature".into(), "21".into(), Some("°C".into()))
        ]
    );
    let first = fields
        .get_child("node", crate::xml::NS_SENSORDATA)
        .and_then(|n| n.get_child("timestamp", crate::xml::NS_SENSORDATA))
        .and_then(|t| t.children().next())
        .unwrap();
    assert_eq!(first.attr("historicalOther"), Some("true"));
    assert_eq!(first.attr("momentary"), None);
}

#[test]
fn control_sets_writable_points_for_controllers_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = chat_gateway(dir.path());
    let boiler = "boiler@gw.example.org";
    let set = |value: &str, name: &str| {
        format!("<set xmlns='{NS_CONTROL}'><double name='{name}' value='{value}'/></set>")
    };
    let out = ask(&mut gw, &iq(BOB, boiler, "set", &set("55", "setpoint")));
    assert_eq!(condition(&out[0]).as_deref(), Some("forbidden"));
    let out = ask(&mut gw, &iq(ALICE, boiler, "set", &set("5", "temperature")));
    assert_eq!(
        condition(&out[0]).as_deref(),
        Some("bad-request"),
        "read-only"
    );
    let out = ask(&mut gw, &iq(ALICE, boiler, "set", &set("warm", "setpoint")));
    assert_eq!(
        condition(&out[0]).as_deref(),
        Some("bad-request"),
        "not a number"
    );
    assert!(gw.take_jobs(usize::MAX).is_empty());

    // XEP-0325 §3.3-style: one parameter, then the result once written.
    let out = ask(&mut gw, &iq(ALICE, boiler, "set", &set("55.5", "setpoint")));
    assert!(out.is_empty(), "waits for the adapter");
    let job = gw.take_jobs(usize::MAX).pop().unwrap();
    assert_eq!(
        job.action,
        JobAction::WriteMany(vec![(
            PointId::new("setpoint").unwrap(),
            Value::Float(55.5)
        )])
    );
    let ok = gw.job_done(
        job.clone(),
        JobOutcome::Values(vec![(
            PointId::new("setpoint").unwrap(),
            Ok(Value::Float(55.5)),
        )]),
    );
    assert_eq!(kind_of(&ok[0]), Some("result"));
    assert_eq!(ok[0].attr("id"), Some("q1"));
    let failed = gw.job_done(
        job,
        JobOutcome::Values(vec![(
            PointId::new("setpoint").unwrap(),
            Err(fieldbridge_core::CommandError::Failed(
                AdapterError::Refused("NAK".into()),
            )),
        )]),
    );
    assert_eq!(kind_of(&failed[0]), Some("error"));
    assert_eq!(
        condition(&failed[0]).as_deref(),
        Some("not-acceptable"),
        "the device refused the value: not a server failure"
    );
    assert_eq!(failed[0].attr("id"), Some("q1"));
    let text = failed[0]
        .get_child("error", NS_COMPONENT)
        .and_then(|e| e.get_child("text", crate::xml::NS_STANZAS))
        .map(Element::text);
    assert_eq!(text.as_deref(), Some("setpoint: NAK"), "{failed:?}");
}

/// XEP-0323 §3.1 and XEP-0325 §3.1, as the XEP texts write them (their
/// JIDs and node replaced by ours, whitespace between elements removed):
/// what we send must be those stanzas, to the attribute.
#[test]
fn the_iot_xep_examples_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = chat_gateway(dir.path());
    let client = "alice@example.org/amr";
    let device = "boiler@gw.example.org";
    let request: Element = format!(
        "<iq xmlns='jabber:component:accept' type='get' from='{client}' to='{device}' id='S0001'>\
         <req xmlns='urn:xmpp:iot:sensordata' seqnr='1' momentary='true'/></iq>"
    )
    .parse()
    .unwrap();
    let accepted: Element = format!(
        "<iq xmlns='jabber:component:accept' type='result' from='{device}' to='{client}' id='S0001'>\
         <accepted xmlns='urn:xmpp:iot:sensordata' seqnr='1'/></iq>"
    )
    .parse()
    .unwrap();
    assert_eq!(ask(&mut gw, &request), vec![accepted]);
    let job = gw.take_jobs(usize::MAX).pop().unwrap();
    let done = gw
        .job_done(
            job,
            JobOutcome::Values(vec![(
                PointId::new("temperature").unwrap(),
                Ok(Value::Float(23.4)),
            )]),
        )
        .remove(0);
    let ts = done
        .get_child("fields", crate::xml::NS_SENSORDATA)
        .and_then(|f| f.get_child("node", crate::xml::NS_SENSORDATA))
        .and_then(|n| n.get_child("timestamp", crate::xml::NS_SENSORDATA))
        .and_then(|t| t.attr("value"))
        .unwrap()
        .to_owned();
    let fields: Element = format!(
        "<message xmlns='jabber:component:accept' from='{device}' to='{client}'>\
         <fields xmlns='urn:xmpp:iot:sensordata' seqnr='1' done='true'>\
         <node nodeId='boiler'><timestamp value='{ts}'>\
         <numeric name='temperature' momentary='true' value='23.4' unit='°C'/>\
         </timestamp></node></fields></message>"
    )
    .parse()
    .unwrap();
    assert_eq!(done, fields);

    let set: Element = format!(
        "<iq xmlns='jabber:component:accept' type='set' from='{client}' to='{device}' id='1'>\
         <set xmlns='urn:xmpp:iot:control'><double name='setpoint' value='61.5'/></set></iq>"
    )
    .parse()
    .unwrap();
    assert!(ask(&mut gw, &set).is_empty());
    let job = gw.take_jobs(usize::MAX).pop().unwrap();
    let result: Element = format!(
        "<iq xmlns='jabber:component:accept' type='result' from='{device}' to='{client}' id='1'/>"
    )
    .parse()
    .unwrap();
    assert_eq!(
        gw.job_done(
            job,
            JobOutcome::Values(vec![(
                PointId::new("setpoint").unwrap(),
                Ok(Value::Float(61.5))
            )])
        ),
        vec![result]
    );
}

#[test]
fn a_failed_command_is_answered_with_the_condition_of_its_cause() {
    use crate::gateway::jobs::error_condition;
    use crate::xml::{DefinedCondition as C, ErrorType as T};
    let boiler = || DeviceId::new("boiler").unwrap();
    let failed = |e: AdapterError| fieldbridge_core::CommandError::Failed(e);
    let cases = [
        (
            fieldbridge_core::CommandError::UnknownDevice("kettle".into()),
            T::Cancel,
            C::ItemNotFound,
        ),
        (
            failed(AdapterError::NotHere("not on this bus".into())),
            T::Cancel,
            C::ItemNotFound,
        ),
        (
            fieldbridge_core::CommandError::NotWritable {
                device: boiler(),
                point: PointId::new("temperature").unwrap(),
            },
            T::Cancel,
            C::NotAllowed,
        ),
        (
            fieldbridge_core::CommandError::InvalidValue(fieldbridge_core::ValueError::NotNumber(
                "warm".into(),
            )),
            T::Modify,
            C::BadRequest,
        ),
        (
            failed(AdapterError::Refused("above the maximum".into())),
            T::Modify,
            C::NotAcceptable,
        ),
        (
            failed(AdapterError::Unsupported("no write template".into())),
            T::Cancel,
            C::FeatureNotImplemented,
        ),
        (
            fieldbridge_core::CommandError::Timeout {
                device: boiler(),
                after: std::time::Duration::from_secs(10),
            },
            T::Wait,
            C::RemoteServerTimeout,
        ),
        (
            failed(AdapterError::NoAnswer("no ack".into())),
            T::Wait,
            C::RemoteServerTimeout,
        ),
        (
            failed(AdapterError::Unavailable("link down".into())),
            T::Wait,
            C::ServiceUnavailable,
        ),
        (
            fieldbridge_core::CommandError::AdapterGone(boiler()),
            T::Wait,
            C::ServiceUnavailable,
        ),
    ];
    for (error, kind, condition) in cases {
        assert_eq!(error_condition(&error), (kind, condition), "{error:?}");
    }
}
