//! Alarms as the engine evaluates them: what goes on the bus, when.

use super::*;
use crate::alarm::{AlarmKey, AlarmSettings, Alert, Change, Expected, Severity};

const S: fn(u64) -> Duration = Duration::from_secs;

fn temperature_alarm() -> AlarmSettings {
    AlarmSettings {
        above: Some(85.0),
        below: Some(5.0),
        equals: None,
        hysteresis: Some(1.0),
        hold: Some(S(30)),
        severity: Severity::Critical,
        text: None,
    }
}

/// `temperature` (°C, one decimal) with `alarm`, and a plain `pressure`.
fn boiler(id: &str, alarm: Option<AlarmSettings>) -> DeviceSpec {
    let mut d = device(
        id,
        vec![
            point(
                "temperature",
                ValueKind::Float,
                PointSettings {
                    label: Some("Temperature".into()),
                    unit: Some(Unit("°C".into())),
                    decimals: Some(1),
                    // Alarms see readings the deadband keeps from sinks.
                    deadband: Some(1000.0),
                    alarm,
                    ..PointSettings::default()
                },
            ),
            plain("pressure"),
        ],
    );
    d.settings.name = Some("Boiler room".into());
    d
}

/// A device `id` on `connection` with `offline_alert: 2m`.
fn watched(id: &str, name: &str, connection: &str) -> DeviceSpec {
    let mut d = device(id, vec![plain("a")]);
    d.settings.name = Some(name.into());
    d.settings.connection = ConnectionId::new(connection).unwrap();
    d.settings.offline_alert = Some(S(120));
    d
}

fn alerts(events: &[DeviceEvent]) -> Vec<Alert> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Alert(a) => {
                assert_eq!(
                    e.device, a.devices[0],
                    "an alert goes as its first device's"
                );
                assert_eq!(e.at, a.at);
                Some(a.clone())
            }
            _ => None,
        })
        .collect()
}

impl Rig {
    async fn alerts(&mut self) -> Vec<Alert> {
        alerts(&self.published().await)
    }

    async fn temperature(&self, v: f64, quality: Quality) {
        let samples = vec![sample(
            &PointId::new("temperature").unwrap(),
            Value::Float(v),
            quality,
        )];
        self.tx.readings(&self.dev, samples).await;
        settled(&self.tx).await;
    }

    async fn offline(&self, device: &str) {
        let reason = format!("{device}: connection refused");
        self.tx
            .status(
                &DeviceId::new(device).unwrap(),
                DeviceStatus::Offline { reason },
            )
            .await;
        settled(&self.tx).await;
    }
}

async fn pass(d: Duration) {
    tokio::time::advance(d).await;
}

fn dev(id: &str) -> DeviceId {
    DeviceId::new(id).unwrap()
}

#[tokio::test(start_paused = true)]
async fn beyond_the_limit_for_its_hold_raises_one_alert_and_the_hysteresis_clears_it() {
    let mut rig = Rig::with(Arc::new(Directory::new([boiler(
        "dev",
        Some(temperature_alarm()),
    )])));
    rig.temperature(80.0, Quality::Good).await;
    rig.temperature(95.3, Quality::Good).await;
    // Jitter beyond the limit does not restart the hold.
    pass(S(10)).await;
    rig.temperature(90.0, Quality::Good).await;
    pass(S(19)).await;
    assert_eq!(rig.alerts().await, [], "29 s: not yet");
    pass(Duration::from_millis(1100)).await;
    let raised = rig.alerts().await;
    assert_eq!(raised.len(), 1, "{raised:?}");
    let a = &raised[0];
    let key = AlarmKey::Point {
        device: dev("dev"),
        point: PointId::new("temperature").unwrap(),
    };
    assert_eq!(a.key, key);
    assert_eq!(a.change, Change::Raised);
    assert_eq!(a.severity, Severity::Critical);
    assert!(a.notify);
    assert_eq!(a.devices, [dev("dev")]);
    assert_eq!(a.value, Some(Value::Float(90.0)), "the newest value beyond");
    assert_eq!(
        a.text,
        "Boiler room: Temperature is 90.0 °C, above 85 °C for 30 s"
    );
    let beyond = a.at.duration_since(a.since).unwrap();
    assert!(beyond >= S(30) && beyond < S(31), "{beyond:?}");
    // Inside the limit but not by the hysteresis: nothing; then cleared once.
    rig.temperature(84.5, Quality::Good).await;
    pass(S(60)).await;
    assert_eq!(rig.alerts().await, []);
    rig.temperature(83.9, Quality::Good).await;
    rig.temperature(70.0, Quality::Good).await;
    let cleared = rig.alerts().await;
    assert_eq!(cleared.len(), 1, "{cleared:?}");
    assert_eq!(cleared[0].change, Change::Cleared);
    assert_eq!(
        cleared[0].text,
        "Boiler room: Temperature is back at 83.9 °C (was above 85 °C for 90 s)"
    );
    // A clear's since is its raise, 60 s (of the test's paused clock) ago.
    let raised_for = cleared[0].at.duration_since(cleared[0].since).unwrap();
    assert!(raised_for >= S(60) && raised_for < S(61), "{raised_for:?}");
    let t = Arc::clone(rig.tx.telemetry());
    let critical = [("severity", "critical")];
    assert_eq!(t.sum("alarms_raised_total", critical), 1.0);
    assert_eq!(t.sum("alarms_active", critical), 0.0);
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn jitter_around_the_limit_raises_nothing_and_bad_quality_neither_raises_nor_clears() {
    let mut rig = Rig::with(Arc::new(Directory::new([boiler(
        "dev",
        Some(temperature_alarm()),
    )])));
    for i in 0..20 {
        let v = if i % 2 == 0 { 85.5 } else { 84.5 };
        rig.temperature(v, Quality::Good).await;
        pass(S(10)).await;
    }
    assert_eq!(rig.alerts().await, [], "never 30 s beyond");
    let bad = Quality::Bad {
        reason: "sensor open circuit".into(),
    };
    rig.temperature(99.0, bad.clone()).await;
    rig.temperature(99.0, Quality::Uncertain).await;
    pass(S(60)).await;
    assert_eq!(rig.alerts().await, [], "bad values do not raise");
    rig.temperature(99.0, Quality::Good).await;
    pass(S(31)).await;
    assert_eq!(rig.alerts().await.len(), 1);
    rig.temperature(20.0, bad).await;
    pass(S(1)).await;
    assert_eq!(rig.alerts().await, [], "a bad 20 does not clear");
    let t = Arc::clone(rig.tx.telemetry());
    assert_eq!(t.sum("alarms_active", [("severity", "critical")]), 1.0);
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_equals_alarm_with_a_text_says_it() {
    let mut d = device(
        "dev",
        vec![point(
            "pump",
            ValueKind::Bool,
            PointSettings {
                label: Some("Pump".into()),
                alarm: Some(AlarmSettings {
                    above: None,
                    below: None,
                    equals: Some(Expected::Bool(false)),
                    hysteresis: None,
                    hold: Some(S(10)),
                    severity: Severity::Warning,
                    text: Some("pump stopped".into()),
                }),
                ..PointSettings::default()
            },
        )],
    );
    d.settings.name = Some("Boiler room".into());
    let mut rig = Rig::with(Arc::new(Directory::new([d])));
    rig.read("pump", Value::Bool(false)).await;
    pass(Duration::from_millis(10_100)).await;
    let texts: Vec<String> = rig.alerts().await.into_iter().map(|a| a.text).collect();
    assert_eq!(texts, ["Boiler room: pump stopped (Pump is off for 10 s)"]);
    pass(S(20)).await;
    rig.read("pump", Value::Bool(true)).await;
    let texts: Vec<String> = rig.alerts().await.into_iter().map(|a| a.text).collect();
    assert_eq!(
        texts,
        ["Boiler room: pump stopped (Pump is on, was off for 30 s)"]
    );
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn offline_alert_after_its_delay_and_cleared_when_online() {
    let dir = Directory::new([watched("dev", "Boiler room", "plc")]);
    let mut rig = Rig::with(Arc::new(dir));
    rig.read("a", Value::Int(1)).await;
    // Stale (no reading for three polls) raises nothing.
    pass(S(200)).await;
    assert_eq!(rig.alerts().await, []);
    rig.offline("dev").await;
    pass(S(119)).await;
    assert_eq!(rig.alerts().await, []);
    pass(Duration::from_millis(1100)).await;
    let raised = rig.alerts().await;
    assert_eq!(raised.len(), 1, "{raised:?}");
    assert_eq!(raised[0].key, AlarmKey::Offline(dev("dev")));
    assert_eq!(raised[0].severity, Severity::Warning);
    assert_eq!(
        raised[0].text,
        "Boiler room is offline for 2 min: dev: connection refused"
    );
    // Still offline (another reason): nothing more.
    rig.tx
        .status(
            &dev("dev"),
            DeviceStatus::Offline {
                reason: "timeout".into(),
            },
        )
        .await;
    pass(S(300)).await;
    assert_eq!(rig.alerts().await, []);
    rig.read("a", Value::Int(1)).await;
    let cleared = rig.alerts().await;
    assert_eq!(cleared.len(), 1);
    assert_eq!(cleared[0].change, Change::Cleared);
    assert_eq!(
        cleared[0].text,
        "Boiler room is back online (was offline for 7 min)"
    );
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_whole_connection_down_is_one_alert_and_back_is_one_clear() {
    let dir = Directory::new([
        watched("boiler", "Boiler room", "plc"),
        watched("heat", "Heat pump", "plc"),
        // Without offline_alert: not counted either way.
        device("quiet", vec![plain("a")]),
        watched("far", "Far away", "other"),
    ]);
    let mut rig = Rig::with(Arc::new(dir));
    rig.offline("boiler").await;
    pass(S(30)).await;
    rig.offline("heat").await;
    // The boiler's delay ends with the heat pump offline too (its own
    // delay has not ended): one alert for the connection, listing both.
    pass(S(91)).await;
    let raised = rig.alerts().await;
    assert_eq!(raised.len(), 1, "{raised:?}");
    let a = &raised[0];
    assert_eq!(
        a.key,
        AlarmKey::Connection(ConnectionId::new("plc").unwrap())
    );
    assert_eq!(a.devices, [dev("boiler"), dev("heat")]);
    assert_eq!(
        a.text,
        "Connection plc is down: Boiler room, Heat pump offline for 2 min \
         (boiler: connection refused)"
    );
    // The heat pump's own delay ends: still nothing per device.
    pass(S(60)).await;
    assert_eq!(rig.alerts().await, []);
    rig.poll_device("boiler", &[("a", Value::Int(1))]).await;
    assert_eq!(rig.alerts().await, [], "one back, the other still down");
    pass(S(600)).await;
    rig.poll_device("heat", &[("a", Value::Int(1))]).await;
    let cleared = rig.alerts().await;
    assert_eq!(cleared.len(), 1, "{cleared:?}");
    assert_eq!(cleared[0].change, Change::Cleared);
    assert_eq!(
        cleared[0].text,
        "Connection plc is back: Boiler room, Heat pump online (was down for 13 min)"
    );
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn part_of_a_connection_down_alerts_per_device() {
    let dir = Directory::new([
        watched("boiler", "Boiler room", "plc"),
        watched("heat", "Heat pump", "plc"),
        watched("fan", "Fan", "plc"),
    ]);
    let mut rig = Rig::with(Arc::new(dir));
    rig.poll_device("fan", &[("a", Value::Int(1))]).await;
    rig.offline("boiler").await;
    rig.offline("heat").await;
    pass(Duration::from_millis(120_100)).await;
    let keys: Vec<AlarmKey> = rig.alerts().await.into_iter().map(|a| a.key).collect();
    assert_eq!(
        keys,
        [
            AlarmKey::Offline(dev("boiler")),
            AlarmKey::Offline(dev("heat"))
        ]
    );
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_alarm_flapping_within_a_minute_is_summarized_once() {
    let alarm = AlarmSettings {
        below: None,
        hysteresis: None,
        hold: None,
        ..temperature_alarm()
    };
    let mut rig = Rig::with(Arc::new(Directory::new([boiler("dev", Some(alarm))])));
    for v in [90.0, 80.0, 90.0, 80.0, 90.0, 80.0, 90.0] {
        rig.temperature(v, Quality::Good).await;
        pass(S(5)).await;
    }
    let flaps = rig.alerts().await;
    let seen: Vec<(Change, bool)> = flaps.iter().map(|a| (a.change.clone(), a.notify)).collect();
    // Every transition is on the bus; from the third raise on, quietly.
    assert_eq!(
        seen,
        [
            (Change::Raised, true),
            (Change::Cleared, true),
            (Change::Raised, true),
            (Change::Cleared, true),
            (Change::Raised, false),
            (Change::Cleared, false),
            (Change::Raised, false),
        ]
    );
    pass(S(30)).await;
    let summary = rig.alerts().await;
    assert_eq!(summary.len(), 1, "{summary:?}");
    assert_eq!(
        summary[0].change,
        Change::Flapping {
            times: 4,
            raised: true
        }
    );
    assert!(summary[0].notify);
    assert_eq!(
        summary[0].text,
        "Boiler room: Temperature alarm went on and off 4 times in the last minute; now raised"
    );
    // A minute later it is a new window: the next clear is told.
    rig.temperature(80.0, Quality::Good).await;
    let next = rig.alerts().await;
    assert_eq!(next.len(), 1);
    assert!(next[0].notify);
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn alerts_are_never_coalesced_on_a_lagging_bus() {
    let alarm = AlarmSettings {
        below: None,
        hysteresis: None,
        hold: None,
        ..temperature_alarm()
    };
    let bus = Bus::new(2);
    let mut sub = bus.subscribe("slow");
    let dir = Arc::new(Directory::new([boiler("dev", Some(alarm))]));
    let (tx, _reload, task) = spawn_reloadable(dir, bus, Heartbeat::new("engine"));
    let t = PointId::new("temperature").unwrap();
    // 20 transitions without the sink reading any.
    for i in 0..20 {
        let v = if i % 2 == 0 { 90.0 } else { 80.0 };
        tx.readings(
            &dev("dev"),
            vec![sample(&t, Value::Float(v), Quality::Good)],
        )
        .await;
        settled(&tx).await;
    }
    drop(tx);
    stopped(task).await;
    let changes: Vec<Change> = alerts(&closed(&mut sub))
        .into_iter()
        .map(|a| a.change)
        .collect();
    assert_eq!(changes.len(), 20, "{changes:?}");
    assert!(
        changes
            .iter()
            .zip([Change::Raised, Change::Cleared].iter().cycle())
            .all(|(a, b)| a == b)
    );
}

#[tokio::test(start_paused = true)]
async fn a_reload_keeps_unchanged_alarms_and_re_evaluates_or_clears_changed_ones() {
    let quick = AlarmSettings {
        hold: None,
        ..temperature_alarm()
    };
    let dir = Arc::new(Directory::new([
        boiler("dev", Some(quick.clone())),
        boiler("same", Some(quick.clone())),
        boiler("gone", Some(quick.clone())),
    ]));
    let mut rig = Rig::with(Arc::clone(&dir));
    for d in ["dev", "same", "gone"] {
        rig.poll_device(d, &[("temperature", Value::Float(90.0))])
            .await;
    }
    assert_eq!(rig.alerts().await.len(), 3);
    let reload = |devices: Vec<DeviceSpec>| {
        Arc::new(dir.reconfigured(devices, [ConnectionId::new("c").unwrap()]))
    };
    // Unchanged (the device's name changed, not the alarm): still raised,
    // nothing said. Changed: ends, and the new limit raises again with the
    // latest value. Removed device: cleared.
    let mut same = boiler("same", Some(quick.clone()));
    same.settings.name = Some("Same room".into());
    let higher = AlarmSettings {
        above: Some(88.0),
        ..quick.clone()
    };
    assert!(
        rig.reload
            .reconfigure(reload(vec![boiler("dev", Some(higher)), same]))
            .await
    );
    let got: Vec<(AlarmKey, Change, String)> = rig
        .alerts()
        .await
        .into_iter()
        .map(|a| (a.key, a.change, a.text))
        .collect();
    let key = |d: &str| AlarmKey::Point {
        device: dev(d),
        point: PointId::new("temperature").unwrap(),
    };
    assert_eq!(
        got,
        [
            (
                key("dev"),
                Change::Cleared,
                "Boiler room: Temperature alarm was changed by a reload (was above 85 °C)".into()
            ),
            (
                key("gone"),
                Change::Cleared,
                "Boiler room: Temperature alarm is no longer configured (was above 85 °C)".into()
            ),
            (
                key("dev"),
                Change::Raised,
                "Boiler room: Temperature is 90.0 °C, above 88 °C".into()
            ),
        ]
    );
    // The kept one still clears by its value, under its new name.
    rig.poll_device("same", &[("temperature", Value::Float(20.0))])
        .await;
    let texts: Vec<String> = rig.alerts().await.into_iter().map(|a| a.text).collect();
    assert_eq!(
        texts,
        ["Same room: Temperature is back at 20.0 °C (was above 85 °C)"]
    );
    // The alarm removed: the raised one clears.
    assert!(
        rig.reload
            .reconfigure(reload(vec![boiler("dev", None)]))
            .await
    );
    let changes: Vec<(AlarmKey, Change)> = rig
        .alerts()
        .await
        .into_iter()
        .map(|a| (a.key, a.change))
        .collect();
    assert_eq!(changes, [(key("dev"), Change::Cleared)]);
    let t = Arc::clone(rig.tx.telemetry());
    assert_eq!(t.sum("alarms_active", []), 0.0);
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_reload_that_removes_an_offline_alert_clears_it() {
    let dir = Arc::new(Directory::new([watched("dev", "Boiler room", "plc")]));
    let mut rig = Rig::with(Arc::clone(&dir));
    rig.offline("dev").await;
    pass(Duration::from_millis(120_100)).await;
    assert_eq!(rig.alerts().await.len(), 1);
    let mut plain = watched("dev", "Boiler room", "plc");
    plain.settings.offline_alert = None;
    let new = dir.reconfigured([plain], [ConnectionId::new("plc").unwrap()]);
    assert!(rig.reload.reconfigure(Arc::new(new)).await);
    let cleared = rig.alerts().await;
    assert_eq!(cleared.len(), 1);
    assert_eq!(cleared[0].change, Change::Cleared);
    assert_eq!(
        cleared[0].text,
        "Boiler room: offline alert is no longer configured (offline for 2 min)"
    );
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_connection_alert_outlives_a_reload_that_removes_one_of_its_devices() {
    let dir = Arc::new(Directory::new([
        watched("boiler", "Boiler room", "plc"),
        watched("heat", "Heat pump", "plc"),
    ]));
    let mut rig = Rig::with(Arc::clone(&dir));
    rig.offline("boiler").await;
    rig.offline("heat").await;
    pass(Duration::from_millis(120_100)).await;
    assert_eq!(rig.alerts().await.len(), 1);
    let t = Arc::clone(rig.tx.telemetry());
    assert_eq!(t.sum("alarms_active", [("severity", "warning")]), 1.0);
    let new = dir.reconfigured(
        [watched("boiler", "Boiler room", "plc")],
        [ConnectionId::new("plc").unwrap()],
    );
    assert!(rig.reload.reconfigure(Arc::new(new)).await);
    assert_eq!(rig.alerts().await, [], "the boiler is still down");
    rig.poll_device("boiler", &[("a", Value::Int(1))]).await;
    let cleared = rig.alerts().await;
    assert_eq!(cleared.len(), 1, "{cleared:?}");
    assert_eq!(cleared[0].change, Change::Cleared);
    assert_eq!(cleared[0].devices, [dev("boiler")]);
    assert_eq!(
        cleared[0].text,
        "Connection plc is back: Boiler room online (was down for 2 min)"
    );
    assert_eq!(t.sum("alarms_active", []), 0.0);
    rig.stop().await;
}
