use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
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

fn directory(points: Vec<PointSpec>) -> Arc<Directory> {
    Arc::new(Directory::new([DeviceSpec {
        id: DeviceId::new("dev").unwrap(),
        settings: DeviceSettings {
            name: None,
            connection: ConnectionId::new("c").unwrap(),
            poll: Some(POLL),
            stale_after: None,
            history: None,
        },
        points: points
            .into_iter()
            .map(|p| (p.id.clone(), p))
            .collect::<BTreeMap<_, _>>(),
    }]))
}

struct Rig {
    tx: EventSender,
    sub: Subscription,
    task: JoinHandle<NormalizeStats>,
    dev: DeviceId,
}

impl Rig {
    fn new(points: Vec<PointSpec>) -> Self {
        let bus = Bus::new(1024);
        let sub = bus.subscribe("test");
        let (tx, task) = spawn(directory(points), bus);
        Self {
            tx,
            sub,
            task,
            dev: DeviceId::new("dev").unwrap(),
        }
    }

    async fn read(&self, point: &str, v: Value) {
        self.tx
            .reading(&self.dev, &PointId::new(point).unwrap(), v)
            .await;
    }

    /// Everything published so far, once the engine has processed what was sent.
    async fn published(&mut self) -> Vec<EventKind> {
        settled(&self.tx).await;
        let mut out = Vec::new();
        while let Some(Some(e)) = self.sub.try_recv() {
            out.push(e.kind);
        }
        out
    }

    async fn stop(self) -> (NormalizeStats, Vec<EventKind>) {
        let Rig {
            tx, mut sub, task, ..
        } = self;
        drop(tx);
        let stats = stopped(task).await;
        let rest = closed(&mut sub).into_iter().map(|e| e.kind).collect();
        (stats, rest)
    }
}

/// Waits until the engine has taken every event sent to it. These tests
/// run on tokio's current-thread runtime, where the engine handles an
/// event in the same poll that takes it off its queue: once the queue is
/// empty, everything sent has been handled and what it published is on
/// the bus. (Yielding does not advance the paused clock.)
async fn settled(tx: &EventSender) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while tx.queued() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the engine left {} events unread for 10 s",
            tx.queued()
        );
        tokio::task::yield_now().await;
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

/// The engine's stats once it has stopped (all its senders are dropped),
/// within a minute of (paused) time.
async fn stopped(task: JoinHandle<NormalizeStats>) -> NormalizeStats {
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("the engine stops once every sender is dropped")
        .unwrap()
}

fn values(events: &[EventKind]) -> Vec<Value> {
    events
        .iter()
        .filter_map(|e| match e {
            EventKind::Reading(r) => Some(r.value.clone()),
            EventKind::Status(_) => None,
        })
        .collect()
}

fn statuses(events: &[EventKind]) -> Vec<DeviceStatus> {
    events
        .iter()
        .filter_map(|e| match e {
            EventKind::Status(s) => Some(s.clone()),
            EventKind::Reading(_) => None,
        })
        .collect()
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
    let got = rig.published().await;
    let reading = got
        .iter()
        .find_map(|e| match e {
            EventKind::Reading(r) => Some(r.clone()),
            EventKind::Status(_) => None,
        })
        .expect("a reading");
    assert_eq!(reading.value.to_string(), "21.5");
    assert_eq!(reading.unit, Some(Unit("°C".into())));
    // The reading comes before the status it causes.
    assert!(matches!(got[0], EventKind::Reading(_)));
    assert_eq!(statuses(&got), vec![DeviceStatus::Online]);
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
    rig.tx
        .reading_with_quality(
            &rig.dev,
            &PointId::new("t").unwrap(),
            Value::Float(19.9),
            Quality::Bad {
                reason: "sensor open".into(),
            },
        )
        .await;
    let got = values(&rig.published().await);
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
async fn without_deadband_every_reading_is_published() {
    let mut rig = Rig::new(vec![point("t", ValueKind::Int, PointSettings::default())]);
    for _ in 0..3 {
        rig.read("t", Value::Int(1)).await;
    }
    assert_eq!(values(&rig.published().await).len(), 3);
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
    assert_eq!(values(&rig.published().await), vec![Value::Int(1)]);
    tokio::time::advance(Duration::from_secs(9)).await;
    assert_eq!(values(&rig.published().await), vec![]);
    tokio::time::advance(Duration::from_millis(1200)).await;
    assert_eq!(values(&rig.published().await), vec![Value::Int(3)]);
    let (stats, _) = rig.stop().await;
    assert_eq!(stats.rate_limited, 1);
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
async fn max_interval_republishes_an_unchanged_value() {
    let mut rig = Rig::new(vec![point(
        "t",
        ValueKind::Int,
        PointSettings {
            deadband: Some(1.0),
            max_interval: Some(Duration::from_secs(5)),
            ..Default::default()
        },
    )]);
    rig.read("t", Value::Int(7)).await;
    assert_eq!(values(&rig.published().await), vec![Value::Int(7)]);
    // Readings within the deadband keep the device fresh but publish nothing...
    for _ in 0..4 {
        tokio::time::advance(POLL).await;
        rig.read("t", Value::Int(7)).await;
    }
    assert_eq!(values(&rig.published().await), vec![]);
    // ...until max_interval has passed since the last publish.
    tokio::time::advance(Duration::from_millis(1100)).await;
    rig.read("t", Value::Int(7)).await;
    assert_eq!(values(&rig.published().await), vec![Value::Int(7)]);
}

#[tokio::test(start_paused = true)]
async fn a_silent_device_turns_stale_and_a_failing_one_offline() {
    let mut rig = Rig::new(vec![point("t", ValueKind::Int, PointSettings::default())]);
    rig.read("t", Value::Int(1)).await;
    assert_eq!(statuses(&rig.published().await), vec![DeviceStatus::Online]);
    // stale_after defaults to three poll periods.
    tokio::time::advance(POLL * 2).await;
    assert_eq!(statuses(&rig.published().await), vec![]);
    tokio::time::advance(POLL + Duration::from_millis(200)).await;
    assert_eq!(statuses(&rig.published().await), vec![DeviceStatus::Stale]);
    let offline = DeviceStatus::Offline {
        reason: "connection refused".into(),
    };
    rig.tx.status(&rig.dev, offline.clone()).await;
    rig.tx.status(&rig.dev, offline.clone()).await;
    assert_eq!(statuses(&rig.published().await), vec![offline]);
    rig.read("t", Value::Int(2)).await;
    assert_eq!(statuses(&rig.published().await), vec![DeviceStatus::Online]);
}

#[tokio::test(start_paused = true)]
async fn unknown_points_and_non_finite_values_are_counted_not_published() {
    let mut rig = Rig::new(vec![point("t", ValueKind::Float, PointSettings::default())]);
    rig.read("nope", Value::Int(1)).await;
    rig.read("t", Value::Float(f64::NAN)).await;
    rig.tx
        .reading(
            &DeviceId::new("ghost").unwrap(),
            &PointId::new("t").unwrap(),
            Value::Int(1),
        )
        .await;
    assert_eq!(rig.published().await, vec![]);
    let (stats, _) = rig.stop().await;
    assert_eq!((stats.unknown, stats.invalid, stats.received), (2, 1, 3));
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
    tx.reading(&th1, &t, Value::Float(1.0)).await;
    // The engine sees the first reading before the device exists.
    settled(&tx).await;
    let mut template = (**dir.device("dev").unwrap()).clone();
    template.id = th1.clone();
    dir.insert(template).unwrap();
    tx.reading(&th1, &t, Value::Float(2.0)).await;
    drop(tx);
    let stats = stopped(task).await;
    let mut got = Vec::new();
    for e in closed(&mut sub) {
        assert_eq!(e.device, th1);
        got.push(e.kind);
    }
    assert_eq!(values(&got), vec![Value::Float(20.0)]);
    assert_eq!(statuses(&got), vec![DeviceStatus::Online]);
    assert_eq!(stats.unknown, 1);
}
