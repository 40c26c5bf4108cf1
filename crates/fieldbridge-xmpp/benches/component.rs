//! CPU cost of the XMPP side per reading: what the component does for each
//! bus event (the pubsub item in the XEP-0323 shape, one notification per
//! subscriber, the history write in batches, the XML serialization the
//! stream would do), without the network. DESIGN.md wants the gateway far
//! from being the bottleneck: Prosody routes about 20k events/s to one
//! subscriber on this kind of machine. Run with
//! `cargo bench -p fieldbridge-xmpp --bench component`.

use fieldbridge_core::process::cpu_time;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use fieldbridge_core::{
    ConnectionId, DeviceEvent, DeviceId, DeviceSettings, DeviceSpec, DeviceStatus, Directory,
    EventKind, PointId, PointSettings, PointSpec, Quality, Reading, Unit, Value, ValueKind,
};
use fieldbridge_xmpp::AccessConfig;
use fieldbridge_xmpp::access::Access;
use fieldbridge_xmpp::gateway::{Gateway, history};
use fieldbridge_xmpp::state::Store;
use minidom::Element;

const DEVICES: usize = 100;
const POINTS: usize = 10;
const READINGS: usize = 200_000;

fn directory() -> Arc<Directory> {
    Arc::new(Directory::new((0..DEVICES).map(|d| {
        DeviceSpec {
            id: DeviceId::new(&format!("dev{d}")).expect("valid id"),
            settings: DeviceSettings {
                name: None,
                connection: ConnectionId::new("bench").expect("valid id"),
                poll: Some(Duration::from_secs(1)),
                stale_after: None,
                history: None,
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
        Store::new(dir.path()),
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
    let ids: Vec<(DeviceId, PointId)> = (0..DEVICES)
        .flat_map(|d| {
            (0..POINTS).map(move |p| {
                (
                    DeviceId::new(&format!("dev{d}")).expect("id"),
                    PointId::new(&format!("p{p}")).expect("id"),
                )
            })
        })
        .collect();
    let (cpu0, t0) = (cpu_time(), Instant::now());
    let mut stanzas = 0usize;
    let mut bytes = 0usize;
    for i in 0..READINGS {
        let (device, point) = &ids[i % ids.len()];
        let out = gw.on_event(
            DeviceEvent {
                device: device.clone(),
                at: SystemTime::now(),
                kind: EventKind::Reading(Reading {
                    point: point.clone(),
                    value: Value::Float(i as f64 * 0.1),
                    unit: Some(Unit("°C".into())),
                    quality: Quality::Good,
                }),
            },
            now,
        );
        stanzas += out.len();
        bytes += out.iter().map(|e| String::from(e).len()).sum::<usize>();
        if gw.unsaved() >= history::BATCH {
            gw.take_history()
                .expect("a batch")
                .write()
                .expect("written");
        }
    }
    if let Some(batch) = gw.take_history() {
        batch.write().expect("written");
    }
    let wall = t0.elapsed();
    let cpu = cpu_time().zip(cpu0).map(|(a, b)| a.saturating_sub(b));
    println!(
        "{subscribers} subscriber(s) per node: {READINGS} readings in {wall:.2?}: {:.0} readings/s, {} CPU per reading (history included), {:.1} stanzas and {:.0} bytes of XML per reading",
        READINGS as f64 / wall.as_secs_f64(),
        cpu.map_or("n/a".into(), |c| format!("{:.2?}", c / READINGS as u32)),
        stanzas as f64 / READINGS as f64,
        bytes as f64 / READINGS as f64,
    );
}

fn main() {
    for subscribers in [1, 10] {
        run(subscribers);
    }
}
