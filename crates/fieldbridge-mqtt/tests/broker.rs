//! The MQTT adapter against a real Mosquitto started by the test: devices
//! played by real clients (mosquitto_pub, mosquitto_sub), readings checked
//! after core's normalization, on the bus, as the XMPP side sees them.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: fail loudly

mod common;

use common::{BrokerOptions, Mosquitto, Rig, connection, device, device_with};
use fieldbridge_core::{
    AdapterError, CommandError, DeviceStatus, EventKind, PointId, PointSettings, Quality, Value,
};
use fieldbridge_mqtt::config::MqttPoint;
use fieldbridge_mqtt::payload::Cause;
use serde_json::json;

fn plug() -> fieldbridge_core::device::AdapterDevice<
    fieldbridge_mqtt::config::MqttDevice,
    fieldbridge_mqtt::config::MqttPoint,
> {
    device(
        "plug",
        json!({
            "topic": "tele/plug/SENSOR",
            "timestamp": "/Time",
            "availability": { "topic": "tele/plug/LWT", "online": "Online", "offline": "Offline" },
        }),
        &[
            ("power", json!({ "json": "/ENERGY/Power" })),
            (
                "voltage",
                json!({ "json": "/ENERGY/Voltage", "type": "int" }),
            ),
            (
                "relay",
                json!({
                    "topic": "stat/plug/POWER", "type": "bool",
                    "command_topic": "cmnd/plug/POWER",
                    "true_values": ["ON"], "false_values": ["OFF"],
                }),
            ),
            (
                "setpoint",
                json!({
                    "topic": "stat/plug/SETPOINT",
                    "command_topic": "cmnd/plug/SETPOINT",
                    "payload": "{\"setpoint\": {value}}",
                    "qos": 0,
                }),
            ),
        ],
        &["relay", "setpoint"],
    )
}

/// Waits until the adapter has connected `n` times and has its
/// subscriptions of the last connection acknowledged.
async fn subscribed(rig: &Rig, n: u64) {
    rig.until("connected and subscribed", |s| {
        s.connects() >= n && s.subacks() >= n
    })
    .await;
}

#[tokio::test]
async fn wildcard_and_template_devices_reach_the_bus_normalized_once() {
    let broker = Mosquitto::start(BrokerOptions::default()).await;
    // A rule creating one device per id, scaled by core (0.1), and a
    // device spread over a wildcard filter.
    let sensors = device_with(
        "sensors",
        json!({ "topic": "sensors/{device}/state", "max_devices": 2 }),
        [(
            PointId::new("temperature").unwrap(),
            serde_json::from_value::<MqttPoint>(json!({ "json": "/t" })).unwrap(),
        )]
        .into(),
        |_| PointSettings {
            scale: Some(0.1),
            ..Default::default()
        },
    );
    let kitchen = device(
        "kitchen",
        json!({ "topic": "$share/gw/home/kitchen/+" }),
        &[("temperature", json!({ "json": "/temperature" }))],
        &[],
    );
    let mut rig = Rig::start(
        connection(&broker.url(), json!({})),
        vec![plug(), sensors, kitchen],
    );
    subscribed(&rig, 1).await;

    broker
        .publish(
            "tele/plug/SENSOR",
            br#"{"Time":"2024-05-01T12:00:00","ENERGY":{"Power":42.5,"Voltage":230}}"#,
            1,
            false,
        )
        .await;
    let (value, quality, at) = rig.reading_at("plug", "power").await;
    assert_eq!((value, quality), (Value::Float(42.5), Quality::Good));
    assert_eq!(
        at,
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_714_564_800),
        "stamped with the payload's Time"
    );
    assert_eq!(
        rig.reading("plug", "voltage").await,
        (Value::Int(230), Quality::Good)
    );

    broker
        .publish("home/kitchen/sensor1", br#"{"temperature":19.5}"#, 1, false)
        .await;
    assert_eq!(
        rig.reading("kitchen", "temperature").await,
        (Value::Float(19.5), Quality::Good)
    );

    broker
        .publish("sensors/th-1/state", br#"{"t":215}"#, 1, false)
        .await;
    assert_eq!(
        rig.reading("th-1", "temperature").await,
        (Value::Float(21.5), Quality::Good),
        "scaled by core exactly once"
    );
    assert_eq!(rig.status("th-1").await, DeviceStatus::Online);
    assert!(rig.directory.device("th-1").is_some());

    broker
        .publish("sensors/th-2/state", br#"{"t":100}"#, 1, false)
        .await;
    assert_eq!(
        rig.reading("th-2", "temperature").await,
        (Value::Float(10.0), Quality::Good)
    );
    // Over the cap, and not a valid id: not created, counted.
    broker
        .publish("sensors/th-3/state", br#"{"t":1}"#, 1, false)
        .await;
    broker
        .publish("sensors/Bad Id/state", br#"{"t":1}"#, 1, false)
        .await;
    rig.until("two refusals", |s| s.refused_devices() == 2)
        .await;
    assert!(rig.directory.device("th-3").is_none());
    assert_eq!(rig.directory.len(), 4, "plug, kitchen, th-1, th-2");
    rig.stop().await;
}

#[tokio::test]
async fn a_tasmota_energy_message_reaches_the_bus_as_one_update() {
    let broker = Mosquitto::start(BrokerOptions::default()).await;
    let meter = device(
        "meter",
        json!({ "topic": "tele/meter/SENSOR", "timestamp": "/Time" }),
        &[
            ("power", json!({ "json": "/ENERGY/Power" })),
            ("voltage", json!({ "json": "/ENERGY/Voltage" })),
            ("current", json!({ "json": "/ENERGY/Current" })),
        ],
        &[],
    );
    let mut rig = Rig::start(connection(&broker.url(), json!({})), vec![meter]);
    subscribed(&rig, 1).await;
    broker
        .publish(
            "tele/meter/SENSOR",
            br#"{"Time":"2024-05-01T12:00:00","ENERGY":{"Power":460,"Voltage":230,"Current":2.0}}"#,
            1,
            false,
        )
        .await;
    let event = rig.next().await;
    assert_eq!(event.device.as_str(), "meter");
    let EventKind::Readings(samples) = event.kind else {
        panic!("the readings come first: {event:?}");
    };
    let got: Vec<(&str, &Value)> = samples
        .iter()
        .map(|s| (s.reading.point.as_str(), &s.reading.value))
        .collect();
    assert_eq!(
        got,
        [
            ("current", &Value::Float(2.0)),
            ("power", &Value::Float(460.0)),
            ("voltage", &Value::Float(230.0)),
        ]
    );
    let stamp = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_714_564_800);
    assert!(
        samples.iter().all(|s| s.at == stamp),
        "each sample at the payload's Time"
    );
    rig.stop().await;
}

#[tokio::test]
async fn bad_payloads_are_survived_with_bad_quality() {
    let broker = Mosquitto::start(BrokerOptions::default()).await;
    let mut rig = Rig::start(connection(&broker.url(), json!({})), vec![plug()]);
    subscribed(&rig, 1).await;
    let topic = "tele/plug/SENSOR";
    broker
        .publish(topic, br#"{"ENERGY":{"Power":10,"Voltage":229}}"#, 1, false)
        .await;
    assert_eq!(
        rig.reading("plug", "power").await,
        (Value::Float(10.0), Quality::Good)
    );

    let huge = format!(r#"{{"ENERGY":{{"Power":{}}}}}"#, "7".repeat(1024 * 1024));
    let cases: [(&[u8], &str); 5] = [
        (b"not json at all", "payload is not JSON"),
        (br#"{"ENERGY":{"Voltage":231}}"#, "no field /ENERGY/Power"),
        (
            br#"{"ENERGY":{"Power":"lots"}}"#,
            "/ENERGY/Power: \"lots\" is not a number",
        ),
        (b"\xff\xfe\x00garbage", "payload is not JSON"),
        (huge.as_bytes(), "over the limit"),
    ];
    for (payload, why) in cases {
        broker.publish(topic, payload, 1, false).await;
        let (value, quality) = rig.reading("plug", "power").await;
        assert_eq!(value, Value::Float(10.0), "the point keeps its last value");
        match quality {
            Quality::Bad { reason } => assert!(reason.contains(why), "{reason:?} vs {why:?}"),
            q => panic!("expected bad quality for {why}, got {q:?}"),
        }
    }
    broker
        .publish(topic, br#"{"ENERGY":{"Power":11,"Voltage":229}}"#, 1, false)
        .await;
    assert_eq!(
        rig.reading("plug", "power").await,
        (Value::Float(11.0), Quality::Good)
    );
    assert_eq!(
        rig.stats.failures("plug", Cause::NotJson),
        4,
        "2 points × 2"
    );
    assert_eq!(rig.stats.failures("plug", Cause::MissingField), 2);
    assert_eq!(rig.stats.failures("plug", Cause::WrongType), 1);
    assert_eq!(rig.stats.failures("plug", Cause::TooLarge), 2);
    assert_eq!(rig.stats.connects(), 1, "never disconnected");
    rig.stop().await;
}

#[tokio::test]
async fn a_retained_last_will_drives_status() {
    let broker = Mosquitto::start(BrokerOptions::default()).await;
    // The device: its will says Offline, retained; it announces Online.
    let device_client = broker
        .subscriber(
            "cmnd/plug/#",
            &[
                "--will-topic",
                "tele/plug/LWT",
                "--will-payload",
                "Offline",
                "--will-retain",
                "--will-qos",
                "1",
            ],
        )
        .await;
    broker.publish("tele/plug/LWT", b"Online", 1, true).await;
    // The gateway starts later: the retained message tells it.
    let mut rig = Rig::start(connection(&broker.url(), json!({})), vec![plug()]);
    assert_eq!(rig.status("plug").await, DeviceStatus::Online);
    // The device dies without a goodbye: the broker publishes its will.
    device_client.crash().await;
    match rig.status("plug").await {
        DeviceStatus::Offline { reason } => assert!(reason.contains("Offline"), "{reason}"),
        s => panic!("{s:?}"),
    }
    // A reading while the device is said offline is uncertain (so it does
    // not make the device look online).
    broker
        .publish(
            "tele/plug/SENSOR",
            br#"{"ENERGY":{"Power":1,"Voltage":230}}"#,
            1,
            false,
        )
        .await;
    assert_eq!(
        rig.reading("plug", "power").await,
        (Value::Float(1.0), Quality::Uncertain)
    );
    broker.publish("tele/plug/LWT", b"Online", 1, true).await;
    assert_eq!(rig.status("plug").await, DeviceStatus::Online);
    rig.stop().await;
}

#[tokio::test]
async fn a_persistent_session_keeps_qos1_messages_published_while_away_across_a_broker_restart() {
    let mut broker = Mosquitto::start(BrokerOptions::default()).await;
    let url = broker.url();
    let settings = || {
        connection(
            &url,
            json!({ "client_id": "gw-persistent", "clean_session": false }),
        )
    };
    let rig = Rig::start(settings(), vec![plug()]);
    subscribed(&rig, 1).await;
    // The gateway goes away (its session stays on the broker) ...
    rig.stop().await;
    // ... the device publishes, the broker restarts ...
    for power in [1, 2, 3] {
        let payload = format!(r#"{{"ENERGY":{{"Power":{power},"Voltage":230}}}}"#);
        broker
            .publish("tele/plug/SENSOR", payload.as_bytes(), 1, false)
            .await;
    }
    broker.restart().await;
    // ... and the gateway, back, gets every message, in order, without
    // having to subscribe again.
    let mut rig = Rig::start(settings(), vec![plug()]);
    for power in [1.0, 2.0, 3.0] {
        assert_eq!(
            rig.reading("plug", "power").await,
            (Value::Float(power), Quality::Good)
        );
    }
    // And while it runs, a broker restart is survived the same way.
    broker.restart().await;
    match rig.status("plug").await {
        DeviceStatus::Offline { reason } => assert!(reason.contains("unreachable"), "{reason}"),
        s => panic!("{s:?}"),
    }
    rig.until("reconnected", |s| s.connects() >= 2).await;
    broker
        .publish(
            "tele/plug/SENSOR",
            br#"{"ENERGY":{"Power":4,"Voltage":230}}"#,
            1,
            false,
        )
        .await;
    // QoS 1 is at least once: a message whose acknowledgement the broker
    // had not taken in when it stopped comes again first. Only those may.
    loop {
        match rig.reading("plug", "power").await {
            (Value::Float(4.0), Quality::Good) => break,
            (Value::Float(again), Quality::Good) if [1.0, 2.0, 3.0].contains(&again) => {}
            other => panic!("only a repeat may come before 4: {other:?}"),
        }
    }
    rig.until_status("plug", DeviceStatus::Online).await;
    rig.stop().await;
}

#[tokio::test]
async fn without_a_session_subscriptions_are_restored_after_a_broker_restart() {
    let mut broker = Mosquitto::start(BrokerOptions::default()).await;
    let mut rig = Rig::start(
        connection(&broker.url(), json!({ "clean_session": true })),
        vec![plug()],
    );
    subscribed(&rig, 1).await;
    broker.restart().await;
    match rig.status("plug").await {
        DeviceStatus::Offline { reason } => assert!(reason.contains("unreachable"), "{reason}"),
        s => panic!("{s:?}"),
    }
    // The restarted broker knows nothing of us: only our new SUBSCRIBE
    // can bring this message.
    subscribed(&rig, 2).await;
    plug_reports(&broker, &mut rig, 5).await;
    rig.stop().await;
}

#[tokio::test]
async fn a_write_ends_as_a_publish_on_the_command_topic() {
    let mut broker = Mosquitto::start(BrokerOptions::default()).await;
    let rig = Rig::start(connection(&broker.url(), json!({})), vec![plug()]);
    subscribed(&rig, 1).await;
    let mut observer = broker.subscriber("cmnd/plug/#", &[]).await;

    // QoS 1: answered once the broker acknowledged it.
    assert_eq!(
        rig.router.write_text("plug", "relay", "on").await,
        Ok(Value::Bool(true))
    );
    assert_eq!(observer.next().await, "cmnd/plug/POWER ON");
    assert_eq!(
        rig.router.write_text("plug", "relay", "off").await,
        Ok(Value::Bool(false))
    );
    assert_eq!(observer.next().await, "cmnd/plug/POWER OFF");
    // A JSON template, QoS 0.
    assert_eq!(
        rig.router.write_text("plug", "setpoint", "21.5").await,
        Ok(Value::Float(21.5))
    );
    assert_eq!(
        observer.next().await,
        r#"cmnd/plug/SETPOINT {"setpoint": 21.5}"#
    );
    // Read-only points and bad values never reach the broker.
    assert!(matches!(
        rig.router.write_text("plug", "power", "5").await,
        Err(CommandError::NotWritable { .. })
    ));
    // Without a broker, the write is refused in words, at once.
    broker.stop().await;
    rig.until("disconnected", |s| s.connection_errors() >= 1)
        .await;
    match rig.router.write_text("plug", "relay", "on").await {
        Err(CommandError::Failed(AdapterError::Unavailable(why))) => {
            assert!(why.contains("not connected"), "{why}")
        }
        other => panic!("{other:?}"),
    }
    rig.stop().await;
}

#[tokio::test]
async fn a_command_topic_with_retain_leaves_the_last_write_on_the_broker() {
    let broker = Mosquitto::start(BrokerOptions::default()).await;
    let plug = device(
        "plug",
        json!({ "topic": "tele/plug/SENSOR" }),
        &[
            (
                "relay",
                json!({
                    "topic": "stat/plug/POWER", "type": "bool",
                    "command_topic": "cmnd/plug/POWER", "retain": true,
                    "true_values": ["ON"], "false_values": ["OFF"],
                }),
            ),
            (
                "setpoint",
                json!({ "topic": "stat/plug/SETPOINT", "command_topic": "cmnd/plug/SETPOINT" }),
            ),
        ],
        &["relay", "setpoint"],
    );
    let rig = Rig::start(connection(&broker.url(), json!({})), vec![plug]);
    subscribed(&rig, 1).await;
    // QoS 1 (the default): answered once the broker has the message.
    for (point, text, value) in [
        ("relay", "off", Value::Bool(false)),
        ("relay", "on", Value::Bool(true)),
        ("setpoint", "21.5", Value::Float(21.5)),
    ] {
        assert_eq!(rig.router.write_text("plug", point, text).await, Ok(value));
    }
    // A subscriber that comes later gets what is retained (the last
    // write of `relay` only) right after subscribing, before anything
    // published after that.
    let mut late = broker
        .subscriber("cmnd/plug/#", &["-F", "retain=%r %t %p"])
        .await;
    broker.publish("cmnd/plug/~end", b"end", 1, false).await;
    assert_eq!(late.next().await, "retain=1 cmnd/plug/POWER ON");
    assert_eq!(late.next().await, "retain=0 cmnd/plug/~end end");
    rig.stop().await;
}

#[tokio::test]
async fn a_write_to_a_device_made_by_a_template_goes_to_its_own_command_topic() {
    let broker = Mosquitto::start(BrokerOptions::default()).await;
    let lights = device(
        "lights",
        json!({ "topic": "lights/{device}/state" }),
        &[(
            "on",
            json!({
                "json": "/on", "type": "bool",
                "command_topic": "lights/{device}/set",
                "payload": "{\"on\": {value}}",
            }),
        )],
        &["on"],
    );
    let mut rig = Rig::start(connection(&broker.url(), json!({})), vec![lights]);
    subscribed(&rig, 1).await;
    let mut observer = broker.subscriber("lights/+/set", &[]).await;
    broker
        .publish("lights/hall/state", br#"{"on":false}"#, 1, false)
        .await;
    assert_eq!(
        rig.reading("hall", "on").await,
        (Value::Bool(false), Quality::Good)
    );
    assert_eq!(
        rig.router.write_text("hall", "on", "on").await,
        Ok(Value::Bool(true))
    );
    assert_eq!(observer.next().await, r#"lights/hall/set {"on": true}"#);
    rig.stop().await;
}

#[tokio::test]
async fn a_password_protected_broker() {
    let broker = Mosquitto::start(BrokerOptions {
        password: Some(("gateway".into(), "s3cret pw".into())),
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("password");
    std::fs::write(&file, "s3cret pw\n").unwrap();
    let mut rig = Rig::start(
        connection(
            &broker.url(),
            json!({ "username": "gateway", "password_file": file }),
        ),
        vec![plug()],
    );
    subscribed(&rig, 1).await;
    plug_reports(&broker, &mut rig, 7).await;
    rig.stop().await;

    // A wrong password: offline, saying why, and retried with backoff,
    // not in a tight loop.
    let mut rig = Rig::start(
        connection(
            &broker.url(),
            json!({ "username": "gateway", "password": "wrong" }),
        ),
        vec![plug()],
    );
    match rig.status("plug").await {
        DeviceStatus::Offline { reason } => {
            assert!(reason.contains("refused"), "{reason}")
        }
        s => panic!("{s:?}"),
    }
    let started = tokio::time::Instant::now();
    rig.until("three attempts", |s| s.connection_errors() >= 3)
        .await;
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(400),
        "retries are spaced by the backoff (250 ms, then 500 ms, ±25 %)"
    );
    assert!(rig.stats.connection_errors() < 10);
    rig.stop().await;
}

#[tokio::test]
async fn a_tls_listener_with_a_test_ca() {
    let broker = Mosquitto::start(BrokerOptions {
        tls: true,
        ..Default::default()
    })
    .await;
    let ca = broker.tls.as_ref().unwrap().ca.clone();
    let mut rig = Rig::start(
        connection(&broker.url(), json!({ "ca_file": ca })),
        vec![plug()],
    );
    subscribed(&rig, 1).await;
    plug_reports(&broker, &mut rig, 8).await;
    rig.stop().await;

    // The system's roots do not know our test CA: refused, said so.
    let mut rig = Rig::start(connection(&broker.url(), json!({})), vec![plug()]);
    match rig.status("plug").await {
        DeviceStatus::Offline { reason } => assert!(
            reason.contains("TLS") || reason.contains("certificate"),
            "{reason}"
        ),
        s => panic!("{s:?}"),
    }
    assert_eq!(rig.stats.connects(), 0);
    rig.stop().await;
}

#[tokio::test]
async fn a_tls_listener_that_wants_a_client_certificate() {
    let broker = Mosquitto::start(BrokerOptions {
        tls: true,
        client_certificates: true,
        ..Default::default()
    })
    .await;
    let files = broker.tls.clone().unwrap();
    let mut rig = Rig::start(
        connection(
            &broker.url(),
            json!({
                "ca_file": files.ca,
                "client_cert": files.client_cert,
                "client_key": files.client_key,
            }),
        ),
        vec![plug()],
    );
    subscribed(&rig, 1).await;
    plug_reports(&broker, &mut rig, 9).await;
    rig.stop().await;

    // Without the certificate the broker hangs up: offline, never connected.
    let mut rig = Rig::start(
        connection(&broker.url(), json!({ "ca_file": files.ca })),
        vec![plug()],
    );
    assert!(matches!(
        rig.status("plug").await,
        DeviceStatus::Offline { .. }
    ));
    assert_eq!(rig.stats.connects(), 0);
    rig.stop().await;
}

#[tokio::test]
async fn a_kept_session_from_an_older_configuration_still_gets_the_new_topics() {
    let broker = Mosquitto::start(BrokerOptions::default()).await;
    let settings = || {
        connection(
            &broker.url(),
            json!({ "client_id": "gw-upgraded", "clean_session": false }),
        )
    };
    let old = device(
        "old",
        json!({ "topic": "old/state" }),
        &[("v", json!({}))],
        &[],
    );
    let rig = Rig::start(settings(), vec![old]);
    subscribed(&rig, 1).await;
    rig.stop().await;
    // Restarted with a new device: the broker still has the session.
    let mut rig = Rig::start(settings(), vec![plug()]);
    subscribed(&rig, 1).await;
    plug_reports(&broker, &mut rig, 3).await;
    rig.stop().await;
}

#[tokio::test]
async fn mqtt5_readings_writes_and_a_session_kept_across_a_broker_restart() {
    let mut broker = Mosquitto::start(BrokerOptions::default()).await;
    let url = broker.url();
    let settings = || {
        connection(
            &url,
            json!({ "protocol": 5, "client_id": "gw-v5", "clean_session": false }),
        )
    };
    let mut rig = Rig::start(settings(), vec![plug()]);
    subscribed(&rig, 1).await;
    plug_reports(&broker, &mut rig, 50).await;
    let mut observer = broker.subscriber("cmnd/plug/#", &[]).await;
    assert_eq!(
        rig.router.write_text("plug", "relay", "on").await,
        Ok(Value::Bool(true))
    );
    assert_eq!(observer.next().await, "cmnd/plug/POWER ON");
    drop(observer);
    rig.stop().await;
    // Away: QoS 1 messages wait in the MQTT 5 session (it must not expire
    // at disconnect), across a broker restart.
    for power in [51, 52] {
        let payload = format!(r#"{{"ENERGY":{{"Power":{power},"Voltage":230}}}}"#);
        broker
            .publish("tele/plug/SENSOR", payload.as_bytes(), 1, false)
            .await;
    }
    broker.restart().await;
    let mut rig = Rig::start(settings(), vec![plug()]);
    for power in [51.0, 52.0] {
        assert_eq!(
            rig.reading("plug", "power").await,
            (Value::Float(power), Quality::Good)
        );
    }
    rig.stop().await;
}

/// The plug publishes `power` W; the reading arrives on the bus, good.
async fn plug_reports(broker: &Mosquitto, rig: &mut Rig, power: u32) {
    let payload = format!(r#"{{"ENERGY":{{"Power":{power},"Voltage":230}}}}"#);
    broker
        .publish("tele/plug/SENSOR", payload.as_bytes(), 1, false)
        .await;
    assert_eq!(
        rig.reading("plug", "power").await,
        (Value::Float(f64::from(power)), Quality::Good)
    );
}
