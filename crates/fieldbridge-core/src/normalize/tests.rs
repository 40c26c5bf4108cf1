use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::adapter::sample;
use crate::bus::Subscription;
use crate::device::{DeviceSettings, DeviceSpec, PointSettings};
use crate::id::ConnectionId;
use crate::value::{Unit, ValueKind};

const POLL: Duration = Duration::from_secs(1);

fn point(id: &str, kind: ValueKind, settings: PointSettings) -> PointSpec {
    PointSpec {
        id: PointId::new(id).unwrap(),
        kind,
        settings,
    }
}

/// A device polled every [`POLL`], stale after three polls.
fn device(id: &str, points: Vec<PointSpec>) -> DeviceSpec {
    DeviceSpec {
        id: DeviceId::new(id).unwrap(),
        settings: DeviceSettings {
            poll: Some(POLL),
            ..DeviceSettings::on(ConnectionId::new("c").unwrap())
        },
        points: points
            .into_iter()
            .map(|p| (p.id.clone(), p))
            .collect::<BTreeMap<_, _>>(),
    }
}

fn directory(points: Vec<PointSpec>) -> Arc<Directory> {
    Arc::new(Directory::new([device("dev", points)]))
}

struct Rig {
    tx: EventSender,
    reload: EngineReload,
    sub: Subscription,
    task: JoinHandle<()>,
    dev: DeviceId,
}

/// What the engine counted, read from its telemetry (sums over devices).
#[derive(Debug, Default, PartialEq)]
struct Stats {
    received: u64,
    published: u64,
    updates: u64,
    within_deadband: u64,
    rate_limited: u64,
    unknown: u64,
    invalid: u64,
}

fn stats(t: &Telemetry) -> Stats {
    let skipped = |cause| t.sum("readings_skipped_total", [("cause", cause)]) as u64;
    Stats {
        received: t.sum("readings_received_total", []) as u64,
        published: t.sum("readings_published_total", []) as u64,
        updates: t.sum("updates_published_total", []) as u64,
        within_deadband: skipped("deadband"),
        rate_limited: skipped("rate_limited"),
        unknown: skipped("unknown"),
        invalid: skipped("invalid"),
    }
}

impl Rig {
    fn new(points: Vec<PointSpec>) -> Self {
        Self::with(directory(points))
    }

    fn with(directory: Arc<Directory>) -> Self {
        let bus = Bus::new(1024);
        let sub = bus.subscribe("test");
        let (tx, reload, task) = spawn_reloadable(directory, bus, Heartbeat::new("engine"));
        Self {
            tx,
            reload,
            sub,
            task,
            dev: DeviceId::new("dev").unwrap(),
        }
    }

    /// One poll of `dev` that read only `point`, handled before this returns.
    async fn read(&self, point: &str, v: Value) {
        self.poll(&[(point, v)]).await;
    }

    /// One poll of `dev` that read every `(point, value)` together.
    async fn poll(&self, points: &[(&str, Value)]) {
        self.poll_device("dev", points).await;
    }

    /// One poll of `dev` whose samples all say they were read `at`.
    async fn poll_at(&self, points: &[(&str, Value)], at: SystemTime) {
        let samples = points
            .iter()
            .map(|(p, v)| Sample {
                at,
                ..sample(&PointId::new(p).unwrap(), v.clone(), Quality::Good)
            })
            .collect();
        self.tx.readings(&self.dev, samples).await;
        settled(&self.tx).await;
    }

    async fn poll_device(&self, device: &str, points: &[(&str, Value)]) {
        let samples = points
            .iter()
            .map(|(p, v)| sample(&PointId::new(p).unwrap(), v.clone(), Quality::Good))
            .collect();
        self.tx
            .readings(&DeviceId::new(device).unwrap(), samples)
            .await;
        // Handled now, before the test moves the clock.
        settled(&self.tx).await;
    }

    /// Everything published so far, once the engine has processed what was sent.
    async fn published(&mut self) -> Vec<DeviceEvent> {
        settled(&self.tx).await;
        let mut out = Vec::new();
        while let Some(Some(e)) = self.sub.try_recv() {
            out.push(e);
        }
        out
    }

    /// What was published so far, as kinds.
    async fn kinds(&mut self) -> Vec<EventKind> {
        self.published().await.into_iter().map(|e| e.kind).collect()
    }

    async fn stop(self) -> (Stats, Vec<EventKind>) {
        let Rig {
            tx, mut sub, task, ..
        } = self;
        let telemetry = Arc::clone(tx.telemetry());
        drop(tx);
        stopped(task).await;
        let stats = stats(&telemetry);
        let rest = closed(&mut sub).into_iter().map(|e| e.kind).collect();
        (stats, rest)
    }
}

/// Waits until the engine has taken every event sent to it and has run
/// whatever timer fired. These tests run on tokio's current-thread runtime,
/// where the engine handles an event in the same poll that takes it off its
/// queue: once the queue is empty, everything sent has been handled and
/// what it published is on the bus. A timer fired by `advance` wakes the
/// engine, but this task may be polled first: the first yield lets the
/// engine run. (Yielding does not advance the paused clock.)
async fn settled(tx: &EventSender) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        tokio::task::yield_now().await;
        if tx.queued() == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the engine left {} events unread for 10 s",
            tx.queued()
        );
    }
}

/// What is left on the bus of an engine that has stopped (and so dropped
/// the bus).
fn closed(sub: &mut Subscription) -> Vec<DeviceEvent> {
    let mut rest = Vec::new();
    loop {
        match sub.try_recv() {
            Some(Some(e)) => rest.push(e),
            Some(None) => return rest,
            None => panic!("the bus is still open after the engine stopped"),
        }
    }
}

/// Waits for the engine to stop (all its senders are dropped), within a
/// minute of (paused) time.
async fn stopped(task: JoinHandle<()>) {
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("the engine stops once every sender is dropped")
        .unwrap()
}

/// Each readings update as `point=value` strings, in order.
fn updates(events: &[EventKind]) -> Vec<Vec<String>> {
    events
        .iter()
        .filter_map(|e| match e {
            EventKind::Readings(samples) => Some(
                samples
                    .iter()
                    .map(|s| format!("{}={}", s.reading.point, s.reading.value))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// Every published value, over all updates.
fn values(events: &[EventKind]) -> Vec<Value> {
    events
        .iter()
        .filter_map(|e| match e {
            EventKind::Readings(samples) => Some(samples.iter().map(|s| s.reading.value.clone())),
            _ => None,
        })
        .flatten()
        .collect()
}

fn statuses(events: &[EventKind]) -> Vec<DeviceStatus> {
    events
        .iter()
        .filter_map(|e| match e {
            EventKind::Status(s) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

fn plain(id: &str) -> PointSpec {
    point(id, ValueKind::Int, PointSettings::default())
}

#[tokio::test(start_paused = true)]
async fn scale_offset_and_unit_are_applied() {
    let mut rig = Rig::new(vec![point(
        "t",
        ValueKind::Float,
        PointSettings {
            scale: Some(0.1),
            offset: Some(-40.0),
            unit: Some(Unit("°C".into())),
            ..Default::default()
        },
    )]);
    rig.read("t", Value::Int(615)).await;
    let got = rig.kinds().await;
    let EventKind::Readings(samples) = &got[0] else {
        panic!("the reading comes before the status it causes: {got:?}");
    };
    assert_eq!(samples[0].reading.value.to_string(), "21.5");
    assert_eq!(samples[0].reading.unit, Some(Unit("°C".into())));
    assert_eq!(statuses(&got), vec![DeviceStatus::Online]);
}

#[tokio::test(start_paused = true)]
async fn a_poll_is_published_as_one_update_with_its_read_times() {
    let mut rig = Rig::new(vec![plain("a"), plain("b"), plain("c")]);
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
    let samples = ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(i, p)| Sample {
            at: at + Duration::from_secs(i as u64),
            ..sample(&PointId::new(p).unwrap(), Value::Int(1), Quality::Good)
        })
        .collect();
    rig.tx.readings(&rig.dev, samples).await;
    let got = rig.published().await;
    assert_eq!(got.len(), 2, "one update, then online: {got:?}");
    let EventKind::Readings(samples) = &got[0].kind else {
        panic!("readings first: {got:?}");
    };
    assert_eq!(got[0].device, rig.dev);
    let times: Vec<SystemTime> = samples.iter().map(|s| s.at).collect();
    assert_eq!(
        times,
        [at, at + Duration::from_secs(1), at + Duration::from_secs(2)],
        "each sample keeps its own time"
    );
    let (stats, _) = rig.stop().await;
    assert_eq!((stats.received, stats.published, stats.updates), (3, 3, 1));
}

#[tokio::test(start_paused = true)]
async fn unchanged_points_ride_along_with_a_change_and_nothing_is_published_without_one() {
    let mut rig = Rig::new(vec![plain("a"), plain("b"), plain("c")]);
    let poll = |b: i64| {
        [
            ("a", Value::Int(1)),
            ("b", Value::Int(b)),
            ("c", Value::Int(3)),
        ]
    };
    rig.poll(&poll(2)).await;
    tokio::time::advance(POLL).await;
    // Only b changed: one update, a and c refreshed with it.
    rig.poll(&poll(5)).await;
    tokio::time::advance(POLL).await;
    // Nothing changed: nothing published.
    rig.poll(&poll(5)).await;
    let got = rig.kinds().await;
    assert_eq!(
        updates(&got),
        [["a=1", "b=2", "c=3"], ["a=1", "b=5", "c=3"]]
    );
    let (stats, _) = rig.stop().await;
    assert_eq!(
        (
            stats.received,
            stats.published,
            stats.updates,
            stats.within_deadband
        ),
        (9, 6, 2, 3)
    );
}

#[tokio::test(start_paused = true)]
async fn deadband_publishes_only_larger_changes_and_quality_changes() {
    let mut rig = Rig::new(vec![point(
        "t",
        ValueKind::Float,
        PointSettings {
            deadband: Some(0.5),
            ..Default::default()
        },
    )]);
    for v in [20.0, 20.3, 20.5, 20.6, 19.9] {
        rig.read("t", Value::Float(v)).await;
    }
    let bad = Quality::Bad {
        reason: "sensor open".into(),
    };
    let t = PointId::new("t").unwrap();
    rig.tx
        .readings(&rig.dev, vec![sample(&t, Value::Float(19.9), bad)])
        .await;
    let got = values(&rig.kinds().await);
    assert_eq!(
        got,
        vec![
            Value::Float(20.0),
            Value::Float(20.6),
            Value::Float(19.9),
            Value::Float(19.9)
        ]
    );
    let (stats, _) = rig.stop().await;
    assert_eq!(stats.within_deadband, 2);
}

#[tokio::test(start_paused = true)]
async fn a_ride_along_does_not_move_the_deadband_baseline() {
    let banded = point(
        "t",
        ValueKind::Float,
        PointSettings {
            deadband: Some(1.0),
            ..Default::default()
        },
    );
    let mut rig = Rig::new(vec![banded, plain("n")]);
    rig.poll(&[("t", Value::Float(10.0)), ("n", Value::Int(0))])
        .await;
    // n changes; t rides along at 10.6, within the band of 10.
    rig.poll(&[("t", Value::Float(10.6)), ("n", Value::Int(1))])
        .await;
    // 11.2 is within the band of 10.6, but not of 10, the last due value.
    rig.poll(&[("t", Value::Float(11.2)), ("n", Value::Int(1))])
        .await;
    assert_eq!(
        updates(&rig.kinds().await),
        [["t=10", "n=0"], ["t=10.6", "n=1"], ["t=11.2", "n=1"]]
    );
}

#[tokio::test(start_paused = true)]
async fn without_deadband_only_changes_are_published() {
    let mut rig = Rig::new(vec![plain("t")]);
    for v in [1, 1, 1, 2, 2, 1] {
        rig.read("t", Value::Int(v)).await;
    }
    assert_eq!(
        values(&rig.kinds().await),
        [Value::Int(1), Value::Int(2), Value::Int(1)]
    );
    let (stats, _) = rig.stop().await;
    assert_eq!((stats.updates, stats.within_deadband), (3, 3));
}

#[tokio::test(start_paused = true)]
async fn min_interval_holds_the_newest_and_publishes_it_when_due() {
    let mut rig = Rig::new(vec![point(
        "t",
        ValueKind::Int,
        PointSettings {
            min_interval: Some(Duration::from_secs(10)),
            ..Default::default()
        },
    )]);
    rig.read("t", Value::Int(1)).await;
    rig.read("t", Value::Int(2)).await;
    rig.read("t", Value::Int(3)).await;
    assert_eq!(values(&rig.kinds().await), vec![Value::Int(1)]);
    tokio::time::advance(Duration::from_secs(9)).await;
    assert_eq!(values(&rig.kinds().await), vec![]);
    tokio::time::advance(Duration::from_millis(1200)).await;
    assert_eq!(values(&rig.kinds().await), vec![Value::Int(3)]);
    let (stats, _) = rig.stop().await;
    assert_eq!(stats.rate_limited, 1);
}

#[tokio::test(start_paused = true)]
async fn held_samples_are_released_in_one_update_per_device() {
    let limited = |id: &str| {
        point(
            id,
            ValueKind::Int,
            PointSettings {
                min_interval: Some(Duration::from_secs(10)),
                ..Default::default()
            },
        )
    };
    let dir = Arc::new(Directory::new([
        device("dev", vec![limited("a"), limited("b"), plain("c")]),
        device("dev2", vec![limited("a")]),
    ]));
    let mut rig = Rig::with(dir);
    let first = [
        ("a", Value::Int(1)),
        ("b", Value::Int(1)),
        ("c", Value::Int(1)),
    ];
    rig.poll(&first).await;
    rig.poll_device("dev2", &[("a", Value::Int(1))]).await;
    tokio::time::advance(POLL).await;
    // a and b changed too soon: held. c did not change: nothing is due.
    rig.poll(&[
        ("a", Value::Int(2)),
        ("b", Value::Int(2)),
        ("c", Value::Int(1)),
    ])
    .await;
    rig.poll_device("dev2", &[("a", Value::Int(2))]).await;
    assert_eq!(updates(&rig.kinds().await).len(), 2, "the first polls only");
    tokio::time::advance(Duration::from_millis(9200)).await;
    let mut released: Vec<(String, Vec<String>)> = rig
        .published()
        .await
        .into_iter()
        .filter(|e| matches!(e.kind, EventKind::Readings(_)))
        .map(|e| {
            let samples = updates(std::slice::from_ref(&e.kind)).concat();
            (e.device.to_string(), samples)
        })
        .collect();
    released.sort();
    assert_eq!(
        released,
        [
            (
                "dev".to_string(),
                vec!["a=2".to_string(), "b=2".to_string()]
            ),
            ("dev2".to_string(), vec!["a=2".to_string()]),
        ]
    );
    let (stats, _) = rig.stop().await;
    assert_eq!((stats.updates, stats.published), (4, 7));
}

#[tokio::test(start_paused = true)]
async fn a_held_reading_is_published_on_stop() {
    let rig = Rig::new(vec![point(
        "t",
        ValueKind::Int,
        PointSettings {
            min_interval: Some(Duration::from_secs(60)),
            ..Default::default()
        },
    )]);
    rig.read("t", Value::Int(1)).await;
    rig.read("t", Value::Int(2)).await;
    let (_, all) = rig.stop().await;
    assert_eq!(values(&all), vec![Value::Int(1), Value::Int(2)]);
}

#[tokio::test(start_paused = true)]
async fn a_heartbeat_repeats_every_latest_sample_after_the_shortest_max_interval() {
    let mut rig = Rig::new(vec![
        point(
            "t",
            ValueKind::Int,
            PointSettings {
                deadband: Some(1.0),
                max_interval: Some(Duration::from_secs(5)),
                ..Default::default()
            },
        ),
        point(
            "u",
            ValueKind::Int,
            PointSettings {
                max_interval: Some(Duration::from_secs(60)),
                ..Default::default()
            },
        ),
    ]);
    rig.poll(&[("t", Value::Int(7)), ("u", Value::Int(0))])
        .await;
    assert_eq!(updates(&rig.kinds().await), [["t=7", "u=0"]]);
    // Unchanged readings keep the device fresh but publish nothing...
    let unchanged = [("t", Value::Int(7)), ("u", Value::Int(0))];
    let read_at = |i: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(i);
    for i in 1..=4 {
        tokio::time::advance(POLL).await;
        rig.poll_at(&unchanged, read_at(i)).await;
    }
    assert_eq!(updates(&rig.kinds().await), Vec::<Vec<String>>::new());
    // ...until 5 s (t's max_interval) have passed since the last publish:
    // then the whole device, as last read.
    tokio::time::advance(Duration::from_millis(1100)).await;
    let got = rig.kinds().await;
    assert_eq!(updates(&got), [["t=7", "u=0"]]);
    let EventKind::Readings(samples) = &got[0] else {
        unreachable!()
    };
    assert!(samples.iter().all(|s| s.at == read_at(4)), "{samples:?}");
    // The next heartbeat counts from this one.
    for i in 5..=8 {
        rig.poll_at(&unchanged, read_at(i)).await;
        tokio::time::advance(POLL).await;
    }
    assert_eq!(updates(&rig.kinds().await), Vec::<Vec<String>>::new());
    let (stats, _) = rig.stop().await;
    assert_eq!((stats.updates, stats.published), (2, 4));
}

#[tokio::test(start_paused = true)]
async fn without_max_interval_a_device_repeats_itself_every_ten_minutes() {
    let mut spec = device("dev", vec![plain("t")]);
    spec.settings.stale_after = Some(Duration::from_secs(3600));
    let mut rig = Rig::with(Arc::new(Directory::new([spec])));
    rig.read("t", Value::Int(1)).await;
    assert_eq!(values(&rig.kinds().await), [Value::Int(1)]);
    tokio::time::advance(DEFAULT_MAX_INTERVAL - Duration::from_secs(1)).await;
    assert_eq!(values(&rig.kinds().await), []);
    tokio::time::advance(Duration::from_millis(1100)).await;
    assert_eq!(values(&rig.kinds().await), [Value::Int(1)]);
}

#[tokio::test(start_paused = true)]
async fn a_heartbeat_leaves_held_samples_to_their_own_interval() {
    let mut rig = Rig::new(vec![
        point(
            "fast",
            ValueKind::Int,
            PointSettings {
                max_interval: Some(Duration::from_secs(5)),
                ..Default::default()
            },
        ),
        point(
            "slow",
            ValueKind::Int,
            PointSettings {
                min_interval: Some(Duration::from_secs(60)),
                ..Default::default()
            },
        ),
    ]);
    rig.poll(&[("fast", Value::Int(1)), ("slow", Value::Int(1))])
        .await;
    tokio::time::advance(POLL).await;
    // slow changed too soon: held; fast did not change.
    rig.poll(&[("fast", Value::Int(1)), ("slow", Value::Int(2))])
        .await;
    for _ in 0..4 {
        tokio::time::advance(POLL).await;
        rig.poll(&[("fast", Value::Int(1)), ("slow", Value::Int(2))])
            .await;
    }
    tokio::time::advance(Duration::from_millis(500)).await;
    assert_eq!(
        updates(&rig.kinds().await),
        vec![vec!["fast=1", "slow=1"], vec!["fast=1"]]
    );
    let (_, rest) = rig.stop().await;
    assert_eq!(updates(&rest), [["slow=2"]]);
}

#[tokio::test(start_paused = true)]
async fn a_silent_device_turns_stale_and_a_failing_one_offline() {
    let mut rig = Rig::new(vec![plain("t")]);
    rig.read("t", Value::Int(1)).await;
    assert_eq!(statuses(&rig.kinds().await), vec![DeviceStatus::Online]);
    // stale_after defaults to three poll periods.
    tokio::time::advance(POLL * 2).await;
    assert_eq!(statuses(&rig.kinds().await), vec![]);
    tokio::time::advance(POLL + Duration::from_millis(200)).await;
    assert_eq!(statuses(&rig.kinds().await), vec![DeviceStatus::Stale]);
    let offline = DeviceStatus::Offline {
        reason: "connection refused".into(),
    };
    rig.tx.status(&rig.dev, offline.clone()).await;
    rig.tx.status(&rig.dev, offline.clone()).await;
    assert_eq!(statuses(&rig.kinds().await), vec![offline]);
    // Back with an unchanged value: online, nothing to republish.
    rig.read("t", Value::Int(1)).await;
    assert_eq!(
        rig.kinds().await,
        vec![EventKind::Status(DeviceStatus::Online)]
    );
}

#[tokio::test(start_paused = true)]
async fn bad_quality_alone_does_not_bring_a_device_online() {
    let mut rig = Rig::new(vec![plain("a"), plain("b")]);
    let bad = Quality::Bad {
        reason: "illegal data address".into(),
    };
    let (a, b) = (PointId::new("a").unwrap(), PointId::new("b").unwrap());
    rig.tx
        .readings(&rig.dev, vec![sample(&a, Value::Int(0), bad.clone())])
        .await;
    assert_eq!(statuses(&rig.kinds().await), vec![]);
    rig.tx
        .readings(
            &rig.dev,
            vec![
                sample(&a, Value::Int(0), bad),
                sample(&b, Value::Int(5), Quality::Good),
            ],
        )
        .await;
    let got = rig.kinds().await;
    assert_eq!(updates(&got), [["a=0", "b=5"]]);
    assert_eq!(statuses(&got), vec![DeviceStatus::Online]);
}

#[tokio::test(start_paused = true)]
async fn unknown_points_and_non_finite_values_are_counted_not_published() {
    let mut rig = Rig::new(vec![point("t", ValueKind::Float, PointSettings::default())]);
    rig.poll(&[("nope", Value::Int(1)), ("t", Value::Float(f64::NAN))])
        .await;
    rig.poll_device("ghost", &[("t", Value::Int(1))]).await;
    assert_eq!(rig.kinds().await, vec![]);
    // What is known and valid in the same poll still goes through.
    rig.poll(&[("nope", Value::Int(2)), ("t", Value::Float(1.5))])
        .await;
    assert_eq!(updates(&rig.kinds().await), [["t=1.5"]]);
    let telemetry = Arc::clone(rig.tx.telemetry());
    let (stats, _) = rig.stop().await;
    assert_eq!((stats.unknown, stats.invalid, stats.received), (3, 1, 5));
    // The unknown device's reading is counted without its id as a label.
    let received = |device| Telemetry::count(&telemetry.readings_received, [("device", device)]);
    assert_eq!((received(""), received("ghost")), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn a_device_added_at_run_time_is_normalized_like_a_configured_one() {
    let scaled = PointSettings {
        scale: Some(10.0),
        ..Default::default()
    };
    let dir = directory(vec![point("t", ValueKind::Float, scaled)]);
    let bus = Bus::new(1024);
    let mut sub = bus.subscribe("test");
    let (tx, task) = spawn(Arc::clone(&dir), bus);
    let th1 = DeviceId::new("th-1").unwrap();
    let t = PointId::new("t").unwrap();
    // Unknown until added.
    tx.readings(&th1, vec![sample(&t, Value::Float(1.0), Quality::Good)])
        .await;
    // The engine sees the first reading before the device exists.
    settled(&tx).await;
    let mut template = (**dir.device("dev").unwrap()).clone();
    template.id = th1.clone();
    dir.insert(template).unwrap();
    tx.readings(&th1, vec![sample(&t, Value::Float(2.0), Quality::Good)])
        .await;
    let telemetry = Arc::clone(tx.telemetry());
    drop(tx);
    stopped(task).await;
    let stats = stats(&telemetry);
    let mut got = Vec::new();
    for e in closed(&mut sub) {
        assert_eq!(e.device, th1);
        got.push(e.kind);
    }
    assert_eq!(values(&got), vec![Value::Float(20.0)]);
    assert_eq!(statuses(&got), vec![DeviceStatus::Online]);
    assert_eq!(stats.unknown, 1);
}

#[test]
fn decimals_round_what_is_published_and_compared() {
    let mut spec = PointSpec {
        id: PointId::new("t").unwrap(),
        kind: ValueKind::Float,
        settings: PointSettings {
            scale: Some(0.1),
            decimals: Some(1),
            ..Default::default()
        },
    };
    let raw = |v: Value| Reading {
        point: PointId::new("t").unwrap(),
        value: v,
        unit: None,
        quality: Quality::Good,
    };
    let value = |spec: &PointSpec, v| normalize(spec, raw(v)).unwrap().value;
    assert_eq!(value(&spec, Value::Int(215)), Value::Float(21.5));
    assert_eq!(value(&spec, Value::Float(214.96)), Value::Float(21.5));
    assert_eq!(value(&spec, Value::Float(-0.04)), Value::Float(-0.0));
    spec.settings.decimals = Some(0);
    assert_eq!(value(&spec, Value::Float(214.96)), Value::Float(21.0));
    // Whole numbers and other kinds are left alone.
    spec.settings.scale = None;
    assert_eq!(value(&spec, Value::Int(7)), Value::Int(7));
    assert_eq!(value(&spec, Value::Bool(true)), Value::Bool(true));
}

#[tokio::test(start_paused = true)]
async fn the_engine_beats_every_tick_for_the_watchdog() {
    let alive = Heartbeat::new("normalization engine");
    let (tx, _reload, task) =
        spawn_reloadable(directory(vec![plain("a")]), Bus::new(16), alive.clone());
    // Paused time runs on as the engine's ticks are due: a minute passes,
    // and its last beat is never older than a tick.
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            alive.age(Instant::now()) <= TICK,
            "{:?}",
            alive.age(Instant::now())
        );
    }
    drop(tx);
    task.await.unwrap();
    // Stopped: it beats no more.
    tokio::time::advance(Duration::from_secs(5)).await;
    assert!(alive.age(Instant::now()) >= Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn a_reload_keeps_unchanged_devices_as_they_were_and_takes_on_new_ones() {
    let int = |id| point(id, ValueKind::Int, PointSettings::default());
    let dir = Arc::new(Directory::new([
        device("dev", vec![int("a")]),
        device("gone", vec![int("a")]),
        device("moved", vec![int("a"), int("b")]),
    ]));
    let mut rig = Rig::with(Arc::clone(&dir));
    rig.read("a", Value::Int(1)).await;
    rig.poll_device("moved", &[("a", Value::Int(1)), ("b", Value::Int(1))])
        .await;
    assert_eq!(rig.published().await.len(), 4, "two updates, two online");

    let mut moved = device("moved", vec![int("a"), int("b")]);
    moved.points.get_mut("b").unwrap().settings.deadband = Some(5.0);
    let new = dir.reconfigured(
        [
            device("dev", vec![int("a")]),
            moved,
            device("new", vec![int("a")]),
        ],
        [ConnectionId::new("c").unwrap()],
    );
    assert!(rig.reload.reconfigure(Arc::new(new)).await);
    // Nothing is published for a reload itself.
    assert!(rig.published().await.is_empty());
    // Unchanged: still online, same baseline (an equal value is not due).
    rig.read("a", Value::Int(1)).await;
    assert!(rig.published().await.is_empty());
    // Changed: its status is kept, so is the baseline of its unchanged
    // point; the changed point starts over (due at once).
    rig.poll_device("moved", &[("a", Value::Int(1)), ("b", Value::Int(1))])
        .await;
    assert_eq!(updates(&rig.kinds().await), [vec!["a=1", "b=1"]]);
    // Added: normalized from its first reading.
    rig.poll_device("new", &[("a", Value::Int(7))]).await;
    let events = rig.published().await;
    assert!(events.iter().all(|e| e.device.as_str() == "new"));
    assert_eq!(
        statuses(&events.into_iter().map(|e| e.kind).collect::<Vec<_>>()),
        [DeviceStatus::Online]
    );
    // Removed: unknown from now on.
    rig.poll_device("gone", &[("a", Value::Int(2))]).await;
    assert!(rig.published().await.is_empty());
    let (stats, _) = rig.stop().await;
    assert_eq!(stats.unknown, 1);
}

mod alarms;
