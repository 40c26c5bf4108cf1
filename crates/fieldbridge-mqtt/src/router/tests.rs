//! The router without a broker: messages in, events out.

use std::time::{Duration, UNIX_EPOCH};

use fieldbridge_core::{ConnectionId, DeviceSettings, PointSettings, PointSpec};
use serde_json::json;

use super::*;

/// A device from JSON written like `gateway.yaml`: `points` map to
/// (adapter keys, writable).
fn device(
    id: &str,
    config: serde_json::Value,
    points: &[(&str, serde_json::Value)],
) -> AdapterDevice<MqttDevice, MqttPoint> {
    let points: BTreeMap<PointId, MqttPoint> = points
        .iter()
        .map(|(p, v)| {
            (
                PointId::new(p).unwrap(),
                serde_json::from_value(v.clone()).unwrap(),
            )
        })
        .collect();
    let specs = points
        .iter()
        .map(|(p, cfg)| {
            (
                p.clone(),
                PointSpec {
                    id: p.clone(),
                    kind: fieldbridge_core::device::PointSource::kind(cfg),
                    settings: PointSettings {
                        writable: cfg.command_topic.is_some(),
                        ..Default::default()
                    },
                },
            )
        })
        .collect();
    // `name` is core's key, beside the adapter's.
    let mut config = config;
    let name = config
        .as_object_mut()
        .and_then(|m| m.remove("name"))
        .and_then(|n| n.as_str().map(str::to_owned));
    AdapterDevice {
        spec: Arc::new(DeviceSpec {
            id: DeviceId::new(id).unwrap(),
            settings: DeviceSettings {
                name,
                ..DeviceSettings::on(ConnectionId::new("broker").unwrap())
            },
            points: specs,
        }),
        config: serde_json::from_value(config).unwrap(),
        points,
    }
}

fn settings() -> MqttConnection {
    serde_json::from_value(json!({ "url": "mqtt://127.0.0.1" })).unwrap()
}

fn plug() -> AdapterDevice<MqttDevice, MqttPoint> {
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
                json!({ "topic": "stat/plug/POWER", "type": "bool", "command_topic": "cmnd/plug/POWER", "true_values": ["ON"], "false_values": ["OFF"] }),
            ),
        ],
    )
}

fn sensors(max: usize) -> AdapterDevice<MqttDevice, MqttPoint> {
    device(
        "sensors",
        json!({
            "name": "Sensors",
            "topic": "$share/gw/sensors/{device}/state",
            "max_devices": max,
            "availability": { "topic": "sensors/{device}/availability" },
        }),
        &[("temperature", json!({ "json": "/t" }))],
    )
}

fn router(
    devices: Vec<AdapterDevice<MqttDevice, MqttPoint>>,
) -> (Router, Arc<Directory>, MqttStats) {
    let configured: Vec<DeviceSpec> = devices
        .iter()
        .filter(|d| !d.config.is_template())
        .map(|d| (*d.spec).clone())
        .collect();
    let dir = Arc::new(Directory::new(configured));
    let stats = MqttStats::new(ConnectionId::new("broker").unwrap(), Arc::default());
    (
        Router::new(&settings(), devices, Some(Arc::clone(&dir)), stats.clone()),
        dir,
        stats,
    )
}

/// (device, point, value, good?)
type Seen = (String, String, Value, bool);

/// (device, point, value, good?) of each reading.
fn readings(events: &[DeviceEvent]) -> Vec<Seen> {
    events
        .iter()
        .flat_map(|e| samples(e).iter().map(move |s| (e, &s.reading)))
        .map(|(e, r)| {
            (
                e.device.to_string(),
                r.point.to_string(),
                r.value.clone(),
                r.quality.is_good(),
            )
        })
        .collect()
}

/// The samples of a readings event (none for a status or an alert).
fn samples(e: &DeviceEvent) -> &[Sample] {
    match &e.kind {
        EventKind::Readings(samples) => samples,
        _ => &[],
    }
}

fn statuses(events: &[DeviceEvent]) -> Vec<(String, DeviceStatus)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Status(s) => Some((e.device.to_string(), s.clone())),
            _ => None,
        })
        .collect()
}

fn r(d: &str, p: &str, v: Value, good: bool) -> Seen {
    (d.into(), p.into(), v, good)
}

#[test]
fn subscriptions_cover_devices_points_availability_and_templates() {
    let (router, _, _) = router(vec![plug(), sensors(10)]);
    let subs: Vec<String> = router.subscriptions().into_iter().map(|(f, _)| f).collect();
    assert_eq!(
        subs,
        [
            "$share/gw/sensors/+/state",
            "sensors/+/availability",
            "stat/plug/POWER",
            "tele/plug/LWT",
            "tele/plug/SENSOR",
        ]
    );
    let avail: Vec<String> = router
        .availability_subscriptions()
        .into_iter()
        .map(|(f, _)| f)
        .collect();
    assert_eq!(avail, ["sensors/+/availability", "tele/plug/LWT"]);
}

#[test]
fn a_tasmota_message_gives_readings_stamped_with_its_time() {
    let (mut router, _, stats) = router(vec![plug()]);
    let payload = br#"{"Time":"2024-05-01T12:00:00","ENERGY":{"Power":42.5,"Voltage":230}}"#;
    let (events, created) = router.on_message("tele/plug/SENSOR", payload, SystemTime::now());
    assert!(created.is_empty());
    assert_eq!(
        readings(&events),
        [
            r("plug", "power", Value::Float(42.5), true),
            r("plug", "voltage", Value::Int(230), true),
        ]
    );
    assert_eq!(events.len(), 1, "one message, one event: {events:?}");
    let stamp = UNIX_EPOCH + Duration::from_secs(1_714_564_800);
    assert!(samples(&events[0]).iter().all(|s| s.at == stamp));
    let (events, _) = router.on_message("stat/plug/POWER", b"OFF", SystemTime::now());
    assert_eq!(
        readings(&events),
        [r("plug", "relay", Value::Bool(false), true)]
    );
    let (events, _) = router.on_message("tele/other/SENSOR", b"{}", SystemTime::now());
    assert!(events.is_empty());
    assert_eq!((stats.messages(), stats.unmatched()), (3, 1));
}

#[test]
fn a_message_with_three_points_is_one_event_with_three_samples() {
    let meter = device(
        "meter",
        json!({ "topic": "tele/meter/SENSOR" }),
        &[
            ("power", json!({ "json": "/ENERGY/Power" })),
            ("voltage", json!({ "json": "/ENERGY/Voltage" })),
            ("current", json!({ "json": "/ENERGY/Current" })),
        ],
    );
    let (mut router, _, _) = router(vec![meter]);
    let now = SystemTime::now();
    let payload = br#"{"ENERGY":{"Power":460,"Voltage":230,"Current":2.0}}"#;
    let (events, _) = router.on_message("tele/meter/SENSOR", payload, now);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].device.as_str(), "meter");
    assert_eq!(
        readings(&events),
        [
            r("meter", "current", Value::Float(2.0), true),
            r("meter", "power", Value::Float(460.0), true),
            r("meter", "voltage", Value::Float(230.0), true),
        ]
    );
    // Without a timestamp in the payload, every sample was read on arrival.
    assert!(samples(&events[0]).iter().all(|s| s.at == now));
}

#[test]
fn one_message_reaching_a_device_through_two_routes_is_still_one_event() {
    // The device topic, and a point naming the same topic as its own: two
    // routes that one message matches.
    let dual = device(
        "dual",
        json!({ "topic": "dual/state" }),
        &[
            ("a", json!({ "json": "/a" })),
            ("b", json!({ "topic": "dual/state", "json": "/b" })),
        ],
    );
    let (mut router, _, _) = router(vec![dual]);
    let (events, _) = router.on_message("dual/state", br#"{"a":1,"b":2}"#, SystemTime::now());
    assert_eq!(events.len(), 1, "{events:?}");
    let mut got = readings(&events);
    got.sort_by(|x, y| x.1.cmp(&y.1));
    assert_eq!(
        got,
        [
            r("dual", "a", Value::Float(1.0), true),
            r("dual", "b", Value::Float(2.0), true),
        ]
    );
}

#[test]
fn bad_payloads_keep_the_last_value_with_bad_quality_and_are_counted_per_cause() {
    let (mut router, _, stats) = router(vec![plug()]);
    let now = SystemTime::now();
    // Nothing known yet: a bad payload has no value to report.
    let (events, _) = router.on_message("tele/plug/SENSOR", b"garbage", now);
    assert!(events.is_empty());
    let (events, _) = router.on_message(
        "tele/plug/SENSOR",
        br#"{"ENERGY":{"Power":10,"Voltage":229}}"#,
        now,
    );
    assert_eq!(readings(&events).len(), 2);
    let huge = format!(r#"{{"ENERGY":{{"Power":{}}}}}"#, "9".repeat(1024 * 1024));
    let cases: &[(&[u8], Vec<Seen>)] = &[
        (
            b"not json",
            vec![
                r("plug", "power", Value::Float(10.0), false),
                r("plug", "voltage", Value::Int(229), false),
            ],
        ),
        (
            br#"{"ENERGY":{"Voltage":231}}"#,
            vec![
                r("plug", "power", Value::Float(10.0), false),
                r("plug", "voltage", Value::Int(231), true),
            ],
        ),
        (
            br#"{"ENERGY":{"Power":"lots","Voltage":232}}"#,
            vec![
                r("plug", "power", Value::Float(10.0), false),
                r("plug", "voltage", Value::Int(232), true),
            ],
        ),
        (
            huge.as_bytes(),
            vec![
                r("plug", "power", Value::Float(10.0), false),
                r("plug", "voltage", Value::Int(232), false),
            ],
        ),
        (
            br#"{"ENERGY":{"Power":11,"Voltage":233}}"#,
            vec![
                r("plug", "power", Value::Float(11.0), true),
                r("plug", "voltage", Value::Int(233), true),
            ],
        ),
    ];
    for (payload, expected) in cases {
        let (events, _) = router.on_message("tele/plug/SENSOR", payload, now);
        assert_eq!(
            &readings(&events),
            expected,
            "{}",
            String::from_utf8_lossy(&payload[..payload.len().min(50)])
        );
    }
    // The bad reading says why.
    let (events, _) = router.on_message("tele/plug/SENSOR", br#"{"ENERGY":{"Voltage":1}}"#, now);
    match &samples(&events[0])[0].reading {
        Reading {
            quality: Quality::Bad { reason },
            ..
        } => {
            assert_eq!(reason, "no field /ENERGY/Power")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        stats.failures("plug", Cause::NotJson),
        4,
        "2 points × 2 messages"
    );
    assert_eq!(stats.failures("plug", Cause::MissingField), 2);
    assert_eq!(stats.failures("plug", Cause::WrongType), 1);
    assert_eq!(stats.failures("plug", Cause::TooLarge), 2);
}

#[test]
fn availability_payloads_drive_status() {
    let (mut router, _, _) = router(vec![plug()]);
    let now = SystemTime::now();
    let (events, _) = router.on_message("tele/plug/LWT", b"Online", now);
    assert_eq!(statuses(&events), [("plug".into(), DeviceStatus::Online)]);
    let (events, _) = router.on_message("tele/plug/LWT", b"offline", now);
    assert!(
        matches!(&statuses(&events)[..], [(_, DeviceStatus::Offline { reason })] if reason.contains("Offline") || reason.contains("offline"))
    );
    let (events, _) = router.on_message("tele/plug/LWT", br#"{"state":"online"}"#, now);
    assert_eq!(
        statuses(&events),
        [("plug".into(), DeviceStatus::Online)],
        "Zigbee2MQTT's JSON form"
    );
    let (events, _) = router.on_message("tele/plug/LWT", b"sleeping", now);
    assert!(events.is_empty());
    let (events, _) = router.on_message("tele/plug/LWT", b"", now);
    assert!(
        events.is_empty(),
        "an empty retained message clears the topic"
    );
}

#[test]
fn template_rules_create_valid_devices_up_to_their_cap() {
    let (mut router, dir, stats) = router(vec![plug(), sensors(2)]);
    let now = SystemTime::now();
    let (events, created) = router.on_message("sensors/th-1/state", br#"{"t":21.5}"#, now);
    assert_eq!(created.len(), 1);
    assert_eq!(
        readings(&events),
        [r("th-1", "temperature", Value::Float(21.5), true)]
    );
    assert!(dir.device("th-1").is_some(), "announced in the directory");
    assert_eq!(created[0].settings.name.as_deref(), Some("Sensors th-1"));
    let (_, created) = router.on_message("sensors/th-1/state", br#"{"t":22}"#, now);
    assert!(created.is_empty(), "created once");
    let (events, _) = router.on_message("sensors/th-1/availability", b"offline", now);
    assert!(matches!(&statuses(&events)[..], [(d, DeviceStatus::Offline { .. })] if d == "th-1"));
    // Invalid ids and ids of existing devices are refused.
    for bad in ["Living Room", "plug", "-x"] {
        let (events, created) =
            router.on_message(&format!("sensors/{bad}/state"), br#"{"t":1}"#, now);
        assert!(events.is_empty() && created.is_empty(), "{bad}");
    }
    let (_, created) = router.on_message("sensors/th-2/state", br#"{"t":1}"#, now);
    assert_eq!(created.len(), 1);
    let (events, created) = router.on_message("sensors/th-3/state", br#"{"t":1}"#, now);
    assert!(events.is_empty() && created.is_empty(), "over the cap");
    assert!(dir.device("th-3").is_none());
    assert_eq!(stats.refused_devices(), 4);
    let offline = router.all_offline("broker gone");
    let ids: Vec<String> = statuses(&offline).into_iter().map(|(d, _)| d).collect();
    assert_eq!(ids, ["plug", "th-1", "th-2"]);
}

#[test]
fn a_restarted_connection_takes_back_the_devices_its_rule_made() {
    let (mut router, dir, stats) = router(vec![sensors(2)]);
    let now = SystemTime::now();
    router.on_message("sensors/th-1/state", br#"{"t":21.5}"#, now);
    // A reload restarted the connection: a new router, the same directory.
    let mut again = Router::new(
        &settings(),
        vec![sensors(2)],
        Some(Arc::clone(&dir)),
        stats.clone(),
    );
    let (events, created) = again.on_message("sensors/th-1/state", br#"{"t":22}"#, now);
    assert_eq!(created.len(), 1);
    assert_eq!(
        readings(&events),
        [r("th-1", "temperature", Value::Float(22.0), true)]
    );
    assert_eq!(dir.len(), 1, "the same device, not a second one");
    // A rule that changed does not take over what the old one made.
    let mut changed = sensors(2);
    changed.config.max_devices = Some(3);
    let mut spec = (*changed.spec).clone();
    spec.settings.name = Some("Other sensors".into());
    changed.spec = Arc::new(spec);
    let mut other = Router::new(
        &settings(),
        vec![changed],
        Some(Arc::clone(&dir)),
        stats.clone(),
    );
    let (events, created) = other.on_message("sensors/th-1/state", br#"{"t":23}"#, now);
    assert!(events.is_empty() && created.is_empty());
}

#[test]
fn readings_of_a_device_said_offline_are_uncertain_until_it_is_back() {
    let (mut router, _, _) = router(vec![plug()]);
    let now = SystemTime::now();
    router.on_message("tele/plug/LWT", b"Offline", now);
    // A retained state delivered after the will must not look fresh.
    let (events, _) = router.on_message(
        "tele/plug/SENSOR",
        br#"{"ENERGY":{"Power":1,"Voltage":2}}"#,
        now,
    );
    assert_eq!(events.len(), 1, "one message, one event: {events:?}");
    let qualities: Vec<(String, Quality)> = samples(&events[0])
        .iter()
        .map(|s| (s.reading.point.to_string(), s.reading.quality.clone()))
        .collect();
    assert_eq!(
        qualities,
        [
            ("power".to_owned(), Quality::Uncertain),
            ("voltage".to_owned(), Quality::Uncertain)
        ]
    );
    router.on_message("tele/plug/LWT", b"Online", now);
    let (events, _) = router.on_message(
        "tele/plug/SENSOR",
        br#"{"ENERGY":{"Power":1,"Voltage":2}}"#,
        now,
    );
    assert_eq!(
        readings(&events),
        [
            r("plug", "power", Value::Float(1.0), true),
            r("plug", "voltage", Value::Int(2), true)
        ]
    );
}

#[test]
fn random_topics_and_payloads_never_panic_and_never_exceed_the_caps() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let (mut router, dir, stats) = router(vec![plug(), sensors(3)]);
    let topics = [
        "tele/plug/SENSOR",
        "tele/plug/LWT",
        "stat/plug/POWER",
        "sensors/{}/state",
        "sensors/{}/availability",
        "{}/{}",
        "$SYS/{}",
    ];
    let mut pieces = || -> String {
        let len = rng.random_range(0..12);
        (0..len)
            .map(|_| char::from(rng.random_range(32u8..127)))
            .collect()
    };
    let mut rng2 = rand::rngs::StdRng::seed_from_u64(6);
    for _ in 0..20_000 {
        let t = topics[rng2.random_range(0..topics.len())]
            .replacen("{}", &pieces(), 1)
            .replacen("{}", &pieces(), 1);
        let payload: Vec<u8> = match rng2.random_range(0..4) {
            0 => (0..rng2.random_range(0..64))
                .map(|_| rng2.random())
                .collect(),
            1 => format!(
                r#"{{"ENERGY":{{"Power":{}}},"t":"{}"}}"#,
                rng2.random::<f64>(),
                pieces()
            )
            .into_bytes(),
            2 => pieces().into_bytes(),
            _ => br#"{"t":[1,{"a":null}],"ENERGY":"x"}"#.to_vec(),
        };
        let _ = router.on_message(&t, &payload, SystemTime::now());
    }
    assert!(dir.len() <= 1 + 3, "the template cap holds: {}", dir.len());
    assert!(stats.messages() == 20_000);
    assert!(router.warned_refusals.len() <= MAX_REMEMBERED_REFUSALS);
}
