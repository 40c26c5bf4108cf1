use super::*;

fn dev(id: &str) -> DeviceId {
    DeviceId::new(id).expect("valid id")
}

#[test]
fn events_move_their_counters() {
    let t = Telemetry::new();
    let boiler = dev("boiler");
    ReadingsReceived {
        device: &boiler,
        known_device: true,
        count: 3,
    }
    .emit(&t);
    UpdatePublished {
        device: &boiler,
        samples: 2,
    }
    .emit(&t);
    UpdatePublished {
        device: &boiler,
        samples: 1,
    }
    .emit(&t);
    ReadingsSkipped {
        device: &dev("ghost"),
        known_device: false,
        point: None,
        cause: SkipCause::Unknown,
        count: 1,
    }
    .emit(&t);
    let plc = crate::id::ConnectionId::new("plc").expect("valid id");
    RequestDone {
        connection: &plc,
        outcome: "timeout",
        elapsed: Some(Duration::from_millis(20)),
    }
    .emit(&t);
    let c = |f: &Counters, l: &[(&'static str, &str)]| {
        f.get(&l.iter().map(|(k, v)| (*k, (*v).to_owned())).collect())
            .map_or(0, |c| c.get())
    };
    assert_eq!(
        Telemetry::count(&t.readings_received, [("device", "boiler")]),
        3
    );
    assert_eq!(c(&t.updates_published, &[("device", "boiler")]), 2);
    assert_eq!(
        Telemetry::count(&t.readings_published, [("device", "boiler")]),
        3
    );
    // An unknown device is not a label value.
    assert_eq!(
        Telemetry::count(&t.readings_skipped, [("device", ""), ("cause", "unknown")]),
        1
    );
    assert_eq!(
        Telemetry::count(&t.requests, [("connection", "plc"), ("outcome", "timeout")]),
        1
    );
    assert_eq!(t.sum("readings_published_total", []), 3.0);
    assert_eq!(
        t.sum("request_duration_seconds_count", [("connection", "plc")]),
        1.0
    );
}

#[test]
fn dropped_readings_are_counted_whatever_the_batch() {
    let t = Telemetry::new();
    for n in [1, 2, 5] {
        ReadingsDropped {
            sink: "xmpp",
            count: n,
        }
        .emit(&t);
    }
    assert_eq!(Telemetry::count(&t.readings_dropped, [("sink", "xmpp")]), 8);
}

#[test]
fn first_is_once_per_key() {
    let t = Telemetry::new();
    assert!(t.first("bad_input", "a"));
    assert!(!t.first("bad_input", "a"));
    assert!(t.first("bad_input", "b"));
    assert!(t.first("other", "a"));
}

#[test]
fn device_statuses_are_counted_once_each() {
    let t = Telemetry::new();
    let (a, b) = (dev("a"), dev("b"));
    t.device_known(&a);
    t.device_known(&b);
    assert_eq!(Telemetry::gauge(&t.devices, [("status", "unknown")]), 2);
    for status in [DeviceStatus::Online, DeviceStatus::Online] {
        DeviceStatusChanged {
            device: &a,
            status: &status,
        }
        .emit(&t);
    }
    DeviceStatusChanged {
        device: &b,
        status: &DeviceStatus::Offline {
            reason: "unplugged".into(),
        },
    }
    .emit(&t);
    t.device_known(&a);
    assert_eq!(Telemetry::gauge(&t.devices, [("status", "online")]), 1);
    assert_eq!(Telemetry::gauge(&t.devices, [("status", "offline")]), 1);
    assert_eq!(Telemetry::gauge(&t.devices, [("status", "unknown")]), 0);
    t.forget_device(&b);
    assert_eq!(Telemetry::gauge(&t.devices, [("status", "offline")]), 0);
    let h = t.health();
    assert_eq!(
        h.devices,
        DeviceCounts {
            online: 1,
            ..DeviceCounts::default()
        }
    );
}

#[test]
fn health_names_what_is_wrong() {
    let t = std::sync::Arc::new(Telemetry::new());
    t.set_adapters_configured(1);
    let h = t.health();
    assert_eq!(h.problem.as_deref(), Some("the XMPP link is down"));
    assert!(h.to_json().contains("\"reason\":\"the XMPP link is down\""));
    LinkChanged { up: true }.emit(&t);
    assert_eq!(t.health().problem.as_deref(), Some("no adapter is running"));
    let running = t.adapter_running();
    let h = t.health();
    assert!(h.is_ok(), "{h:?}");
    let body: serde_json::Value = serde_json::from_str(&h.to_json()).unwrap();
    assert_eq!(
        body,
        serde_json::json!({
            "status": "ok",
            "link": "up",
            "adapters": { "running": 1, "configured": 1 },
            "devices": { "online": 0, "stale": 0, "offline": 0, "unknown": 0 },
        })
    );
    drop(running);
    assert!(!t.health().is_ok());
}

#[test]
fn encoding_is_prometheus_text() {
    let t = Telemetry::new();
    ChatAnswered.emit(&t);
    let text = t.encode();
    assert!(!text.contains("# EOF"), "{text}");
    assert!(
        text.contains("# TYPE fieldbridge_chat_commands_total counter\n"),
        "{text}"
    );
    assert!(
        text.contains("# HELP fieldbridge_chat_commands_total Chat commands answered.\n"),
        "{text}"
    );
    assert!(
        text.contains("\nfieldbridge_chat_commands_total 1\n"),
        "{text}"
    );
    assert!(text.contains("# TYPE fieldbridge_xmpp_link_up gauge\n"));
    assert!(text.contains("fieldbridge_devices{status=\"online\"} 0\n"));
}
