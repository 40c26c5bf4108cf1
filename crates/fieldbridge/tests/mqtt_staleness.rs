//! MQTT devices report at their own pace: one with `availability` stays
//! online however long it is quiet (its last will says when it is lost),
//! one without turns stale only after the MQTT default, not core's 60 s.
//! Loaded by the real loader, routed by the real MQTT router, judged by
//! the real engine, on tokio's paused clock.

#![allow(clippy::unwrap_used)] // test fixtures: a failure should stop the test loudly

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fieldbridge::config::{Purpose, load};
use fieldbridge_core::{Bus, DeviceEvent, DeviceStatus, EventKind, Subscription, normalize};
use fieldbridge_mqtt::Mqtt;
use fieldbridge_mqtt::router::Router;
use fieldbridge_mqtt::stats::MqttStats;

const CONFIG: &str = "xmpp: { component: gw.localhost, secret: s }
connections:
  broker: { mqtt: { url: \"mqtt://127.0.0.1\" } }
devices:
  # Tasmota with its last will: online and offline come from it.
  lwt-plug:
    connection: broker
    topic: tele/lwt/SENSOR
    availability: { topic: tele/lwt/LWT, online: Online, offline: Offline }
    points: { power: { json: /ENERGY/Power, unit: W } }
  # The same plug without it: staleness is all there is.
  plain-plug:
    connection: broker
    topic: tele/plain/SENSOR
    points: { power: { json: /ENERGY/Power, unit: W } }
";

/// Every status change on the bus until `want` (device, status) arrives,
/// and whatever the engine published with it.
async fn statuses_until(
    sub: &mut Subscription,
    device: &str,
    want: &DeviceStatus,
) -> Vec<(String, DeviceStatus)> {
    let mut seen = Vec::new();
    let mut found = false;
    while !found {
        let e = sub.recv().await.unwrap();
        if let EventKind::Status(s) = e.kind {
            found = e.device.as_str() == device && &s == want;
            seen.push((e.device.as_str().to_owned(), s));
        }
    }
    // The engine publishes a tick's changes together: take the rest of it.
    while let Some(Some(DeviceEvent {
        device,
        kind: EventKind::Status(s),
        ..
    })) = sub.try_recv()
    {
        seen.push((device.as_str().to_owned(), s));
    }
    seen
}

/// Moves the paused clock on by `total`, a minute at a time, letting the
/// engine run its timers at each step.
async fn pass(total: Duration) {
    let step = Duration::from_secs(60);
    let mut gone = Duration::ZERO;
    while gone < total {
        tokio::time::advance(step).await;
        tokio::task::yield_now().await;
        gone += step;
    }
}

#[tokio::test(start_paused = true)]
async fn a_quiet_mqtt_device_with_availability_stays_online() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(CONFIG.as_bytes()).unwrap();
    let cfg = load(file.path(), Purpose::Run).unwrap_or_else(|e| panic!("{e}"));
    let mqtt = cfg.connections[0].kind.of_kind::<Mqtt>().unwrap();
    let mut router = Router::new(
        &mqtt.settings,
        mqtt.devices.clone(),
        Some(Arc::clone(&cfg.directory)),
        MqttStats::new(cfg.connections[0].id.clone(), Arc::default()),
    );
    let bus = Bus::new(1024);
    let mut sub = bus.subscribe("test");
    let (tx, engine) = normalize::spawn(Arc::clone(&cfg.directory), bus);

    let report = br#"{"ENERGY":{"Power":42.5}}"#;
    for (topic, payload) in [
        ("tele/lwt/LWT", &b"Online"[..]),
        ("tele/lwt/SENSOR", report),
        ("tele/plain/SENSOR", report),
    ] {
        let (events, _) = router.on_message(topic, payload, SystemTime::now());
        assert!(!events.is_empty(), "{topic} routed nowhere");
        for e in events {
            tx.send(e).await;
        }
    }
    let online = statuses_until(&mut sub, "plain-plug", &DeviceStatus::Online).await;
    assert!(
        online.contains(&("lwt-plug".into(), DeviceStatus::Online)),
        "{online:?}"
    );

    // Well past core's old 60 s default, and past the MQTT one, when the
    // plug without availability turns stale.
    let start = tokio::time::Instant::now();
    pass(Duration::from_secs(10 * 60)).await;
    let seen = statuses_until(&mut sub, "plain-plug", &DeviceStatus::Stale).await;
    assert!(start.elapsed() >= fieldbridge_mqtt::kind::DEFAULT_STALE_AFTER);
    assert_eq!(seen, [("plain-plug".to_owned(), DeviceStatus::Stale)]);

    // Hours later the plug with availability still says online, and so it is.
    pass(Duration::from_secs(3 * 3600)).await;
    let (events, _) = router.on_message("tele/lwt/LWT", b"Offline", SystemTime::now());
    for e in events {
        tx.send(e).await;
    }
    let offline = DeviceStatus::Offline {
        reason: "the device reported \"Offline\" on tele/lwt/LWT".into(),
    };
    let seen = statuses_until(&mut sub, "lwt-plug", &offline).await;
    assert_eq!(seen, [("lwt-plug".to_owned(), offline)]);
    drop(tx);
    engine.await.unwrap();
}
