//! CPU cost of the XMPP side per reading: what the component does for each
//! device update on the bus (the device's state as one pubsub item in the
//! XEP-0323 shape, serialized once and addressed to each subscriber, the
//! store write in batches), without the network. DESIGN.md wants the gateway far
//! from being the bottleneck: Prosody routes about 20k events/s to one
//! subscriber on this kind of machine. Run with
//! `cargo bench -p fieldbridge-xmpp --bench component`.

use fieldbridge_core::process::cpu_time;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use fieldbridge_core::{
    ConnectionId, DeviceEvent, DeviceId, DeviceSettings, DeviceSpec, DeviceStatus, Directory,
    EventKind, PointId, PointSettings, PointSpec, Quality, Reading, Sample, Unit, Value, ValueKind,
};
use fieldbridge_xmpp::AccessConfig;
use fieldbridge_xmpp::access::Access;
use fieldbridge_xmpp::gateway::{Gateway, history, items};
use minidom::Element;

const DEVICES: usize = 100;
const POINTS: usize = 10;
/// Device updates (one poll of one device: POINTS readings each).
const UPDATES: usize = 20_000;
const READINGS: usize = UPDATES * POINTS;

fn directory() -> Arc<Directory> {
    Arc::new(Directory::new((0..DEVICES).map(|d| {
        DeviceSpec {
            id: DeviceId::new(&format!("dev{d}")).expect("valid id"),
            settings: DeviceSettings {
                poll: Some(Duration::from_secs(1)),
                ..DeviceSettings::on(ConnectionId::new("bench").expect("valid id"))
            },
            points: (0..POINTS)
                .map(|p| {
                    let id = PointId::new(&format!("p{p}")).expect("valid id");
                    let spec = PointSpec {
                        id: id.clone(),
                        kind: ValueKind::Float,
                        settings: PointSettings {
                            unit: Some(Unit("°C".into())),
                            ..Default::default()
                        },
                    };
                    (id, spec)
                })
                .collect::<BTreeMap<_, _>>(),
        }
    })))
}

fn stanza(from: &str, xml: String) -> Element {
    let mut el: Element = xml.parse().expect("valid XML");
    el.set_attr(
        minidom::rxml::Namespace::NONE,
        minidom::rxml::NcName::try_from("from").expect("name"),
        from.to_owned(),
    );
    el
}

fn run(subscribers: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let access = Access::new(&AccessConfig {
        read: vec!["example.org".into()],
        control: vec![],
    });
    let mut gw = Gateway::new(
        "gw.example.org",
        "bench",
        directory(),
        access,
        dir.path(),
        Default::default(),
    )
    .expect("gateway");
    let now = tokio::time::Instant::now();
    gw.on_connected(now);
    for d in 0..DEVICES {
        for s in 0..subscribers {
            let jid = format!("user{s}@example.org/r");
            gw.on_stanza(&stanza(
                &jid,
                format!(
                    "<iq xmlns='jabber:component:accept' to='gw.example.org' type='set' id='s'>\
                     <pubsub xmlns='http://jabber.org/protocol/pubsub'>\
                     <subscribe node='dev{d}' jid='{jid}'/></pubsub></iq>"
                ),
            ));
        }
        gw.on_event(
            DeviceEvent {
                device: DeviceId::new(&format!("dev{d}")).expect("id"),
                at: SystemTime::now(),
                kind: EventKind::Status(DeviceStatus::Online),
            },
            now,
        );
    }
    let devices: Vec<DeviceId> = (0..DEVICES)
        .map(|d| DeviceId::new(&format!("dev{d}")).expect("id"))
        .collect();
    let points: Vec<PointId> = (0..POINTS)
        .map(|p| PointId::new(&format!("p{p}")).expect("id"))
        .collect();
    let (cpu0, t0) = (cpu_time(), Instant::now());
    let mut messages = 0usize;
    let mut bytes = 0usize;
    let mut out = Vec::new();
    for i in 0..UPDATES {
        let at = SystemTime::now();
        let samples = points
            .iter()
            .enumerate()
            .map(|(p, point)| Sample {
                at,
                reading: Reading {
                    point: point.clone(),
                    value: Value::Float((i * POINTS + p) as f64 * 0.1),
                    unit: Some(Unit("°C".into())),
                    quality: Quality::Good,
                },
            })
            .collect();
        gw.on_event(
            DeviceEvent {
                device: devices[i % DEVICES].clone(),
                at,
                kind: EventKind::Readings(samples),
            },
            now,
        );
        gw.publish_due(now + items::ITEM_WINDOW);
        out.clear();
        for n in gw.take_notifications() {
            messages += n.len();
            n.write_to(&mut out);
        }
        bytes += out.len();
        if gw.unsaved() >= history::BATCH
            && let Some(w) = gw.take_writes()
        {
            let r = w.write();
            gw.written(r);
        }
    }
    if let Some(w) = gw.take_writes() {
        let r = w.write();
        gw.written(r);
    }
    let wall = t0.elapsed();
    let cpu = cpu_time().zip(cpu0).map(|(a, b)| a.saturating_sub(b));
    let delivered = READINGS * subscribers;
    println!(
        "{subscribers} subscriber(s) per node, {POINTS}-point devices: {READINGS} readings in {wall:.2?}: {:.0} readings/s, {} CPU per delivered reading (store included), {:.2} messages per update, {:.0} bytes of XML per delivered reading",
        READINGS as f64 / wall.as_secs_f64(),
        cpu.map_or("n/a".into(), |c| format!("{:.2?}", c / delivered as u32)),
        messages as f64 / UPDATES as f64,
        bytes as f64 / delivered as f64,
    );
}

fn main() {
    for subscribers in [1, 10] {
        run(subscribers);
    }
}
