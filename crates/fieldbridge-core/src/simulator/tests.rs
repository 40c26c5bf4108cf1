use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::adapter::EventSender;
use crate::device::{DeviceSettings, DeviceSpec, PointSettings, PointSpec};
use crate::event::{DeviceEvent, EventKind};

fn point(signal: Signal, range: Option<[f64; 2]>, value: Option<Value>) -> SimulatorPoint {
    SimulatorPoint {
        signal,
        range,
        value,
    }
}

struct Rig {
    events: mpsc::Receiver<DeviceEvent>,
    commands: mpsc::Sender<Command>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn start(device: SimulatorDevice, points: Vec<(&str, SimulatorPoint)>, poll: Duration) -> Rig {
    let points: BTreeMap<PointId, SimulatorPoint> = points
        .into_iter()
        .map(|(id, p)| (PointId::new(id).unwrap(), p))
        .collect();
    let spec = DeviceSpec {
        id: DeviceId::new("sim").unwrap(),
        settings: DeviceSettings {
            poll: Some(poll),
            ..DeviceSettings::on(ConnectionId::new("demo").unwrap())
        },
        points: points
            .iter()
            .map(|(id, p)| {
                (
                    id.clone(),
                    PointSpec {
                        id: id.clone(),
                        kind: p.kind(),
                        settings: PointSettings {
                            writable: true,
                            ..Default::default()
                        },
                    },
                )
            })
            .collect(),
    };
    let adapter = Box::new(SimulatorAdapter::new(
        ConnectionId::new("demo").unwrap(),
        SimulatorConnection { seed: Some(1) },
        vec![AdapterDevice {
            spec: Arc::new(spec),
            config: device,
            points,
        }],
    ));
    let (tx, events) = mpsc::channel(1024);
    let (commands, rx) = mpsc::channel(8);
    let shutdown = CancellationToken::new();
    let ctx = AdapterContext {
        events: EventSender::new(tx, Arc::default()),
        commands: rx,
        shutdown: shutdown.clone(),
    };
    let task = tokio::spawn(adapter.run(ctx));
    Rig {
        events,
        commands,
        shutdown,
        task,
    }
}

impl Rig {
    async fn next(&mut self) -> DeviceEvent {
        tokio::time::timeout(Duration::from_secs(30), self.events.recv())
            .await
            .expect("an event in time")
            .expect("adapter running")
    }

    /// The samples of the next readings event, as `(point, value, read at)`.
    async fn next_readings(&mut self) -> Vec<(String, Value, SystemTime)> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "only status events for 30 s, no reading"
            );
            let e = self.next().await;
            if let EventKind::Readings(samples) = e.kind {
                return samples
                    .into_iter()
                    .map(|s| (s.reading.point.to_string(), s.reading.value, s.at))
                    .collect();
            }
        }
    }

    /// The value of the next readings event of a one-point device.
    async fn next_value(&mut self) -> Value {
        let mut samples = self.next_readings().await;
        assert_eq!(samples.len(), 1, "one point, one sample: {samples:?}");
        samples.remove(0).1
    }

    async fn command(&self, point: &str, action: Action) -> Result<Value, AdapterError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command {
                device: DeviceId::new("sim").unwrap(),
                point: PointId::new(point).unwrap(),
                action,
                reply,
            })
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), answer)
            .await
            .expect("the simulator answers a command within 10 s")
            .unwrap()
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("stops on shutdown")
            .unwrap();
    }
}

fn unix(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

#[tokio::test]
async fn sine_and_ramp_follow_their_formula_at_the_reading_time() {
    let device = SimulatorDevice {
        period: Some(Duration::from_secs(7)),
        outage: None,
    };
    let mut rig = start(
        device,
        vec![
            ("s", point(Signal::Sine, Some([20.0, 30.0]), None)),
            ("r", point(Signal::Ramp, Some([0.0, 70.0]), None)),
        ],
        Duration::from_millis(10),
    );
    for _ in 0..10 {
        let samples = rig.next_readings().await;
        // One poll, one event with every point, read at the same time.
        let points: Vec<&str> = samples.iter().map(|(p, _, _)| p.as_str()).collect();
        assert_eq!(points, ["r", "s"]);
        assert_eq!(samples[0].2, samples[1].2);
        for (point, value, at) in samples {
            let Value::Float(v) = value else {
                panic!("float expected")
            };
            let t = unix(at);
            // As documented: anchored to the Unix epoch, a 7 s period; the
            // sine is centred on 25 with an amplitude of 5, the ramp rises
            // from 0 to 70. Written out here, not taken from the simulator.
            let phase = (t % 7.0) / 7.0;
            let want = match point.as_str() {
                "s" => 25.0 + 5.0 * (2.0 * std::f64::consts::PI * phase).sin(),
                _ => 70.0 * phase,
            };
            assert!((v - want).abs() < 1e-9, "{point}: {v} != {want}");
        }
    }
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn random_walk_stays_in_range_and_moves() {
    let mut rig = start(
        SimulatorDevice::default(),
        vec![("w", point(Signal::RandomWalk, Some([1.0, 2.0]), None))],
        Duration::from_millis(100),
    );
    let mut seen = Vec::new();
    for _ in 0..200 {
        let Value::Float(v) = rig.next_value().await else {
            panic!("float expected")
        };
        assert!((1.0..=2.0).contains(&v), "{v}");
        seen.push(v);
    }
    seen.dedup();
    assert!(
        seen.len() > 100,
        "the walk should move: {} distinct values",
        seen.len()
    );
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_write_is_published_at_once_and_reported_from_then_on() {
    let mut rig = start(
        SimulatorDevice::default(),
        vec![(
            "sp",
            point(Signal::Constant, None, Some(Value::Float(65.0))),
        )],
        Duration::from_secs(1),
    );
    assert_eq!(rig.next_value().await, Value::Float(65.0));
    assert_eq!(
        rig.command("sp", Action::Write(Value::Float(70.5))).await,
        Ok(Value::Float(70.5))
    );
    assert_eq!(rig.next_value().await, Value::Float(70.5));
    // The next poll reports the written value, as does a read-now.
    assert_eq!(rig.next_value().await, Value::Float(70.5));
    assert_eq!(
        rig.command("sp", Action::Read).await,
        Ok(Value::Float(70.5))
    );
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn scheduled_outages_take_the_device_offline_and_back() {
    let device = SimulatorDevice {
        period: None,
        outage: Some(Outage {
            every: Duration::from_secs(2),
            duration: Duration::from_millis(500),
        }),
    };
    let mut rig = start(
        device,
        vec![("t", point(Signal::Toggle, None, None))],
        Duration::from_millis(100),
    );
    let started = Instant::now();
    let mut timeline = Vec::new();
    while timeline.len() < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no offline, reading, offline within 30 s: {timeline:?}"
        );
        let e = rig.next().await;
        let offset = Instant::now().duration_since(started);
        match e.kind {
            EventKind::Status(DeviceStatus::Offline { reason }) => {
                assert!(reason.starts_with("scheduled outage"), "{reason}");
                timeline.push(("offline", offset));
            }
            EventKind::Readings(_) if timeline.last().is_none_or(|(s, _)| *s == "offline") => {
                timeline.push(("reading", offset));
            }
            _ => {}
        }
    }
    assert_eq!(timeline[0], ("reading", Duration::ZERO));
    assert_eq!(timeline[1], ("offline", Duration::from_millis(1500)));
    assert_eq!(timeline[2], ("reading", Duration::from_millis(2000)));
    assert_eq!(
        rig.command("t", Action::Read).await.map(|_| ()),
        Ok(()),
        "writes and reads work again after the outage"
    );
    rig.stop().await;
}
