//! Arbitrary stanzas into the gateway, as the server would deliver them
//! (read by the stream reader, so within its limits), from a reader, a
//! controller and an outsider in turn: every answer must serialize, and
//! nothing may panic.
#![no_main]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;

use fieldbridge_core::{
    ConnectionId, DeviceId, DeviceSettings, DeviceSpec, Directory, PointId, PointSettings,
    PointSpec, Unit, ValueKind,
};
use fieldbridge_xmpp::AccessConfig;
use fieldbridge_xmpp::access::Access;
use fieldbridge_xmpp::gateway::Gateway;
use fieldbridge_xmpp::reader::{Incoming, StanzaReader};
use libfuzzer_sys::fuzz_target;
use minidom::Element;

const HEADER: &[u8] = b"<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
    xmlns:stream='http://etherx.jabber.org/streams' id='x' from='gw.localhost'>";
const SENDERS: [&str; 4] = [
    "alice@localhost/phone",
    "bob@localhost/laptop",
    "eve@evil.example/x",
    "gw.localhost",
];

fn point(id: &str, kind: ValueKind, writable: bool) -> (PointId, PointSpec) {
    let id = PointId::new(id).expect("a valid id");
    let spec = PointSpec {
        id: id.clone(),
        kind,
        settings: PointSettings {
            unit: Some(Unit("°C".into())),
            writable,
            ..Default::default()
        },
    };
    (id, spec)
}

struct Rig {
    gw: Gateway,
    _dir: tempfile::TempDir,
}

fn rig() -> Rig {
    let dir = tempfile::tempdir().expect("a temp dir");
    let directory = Arc::new(Directory::new([DeviceSpec {
        id: DeviceId::new("boiler").expect("a valid id"),
        settings: DeviceSettings {
            name: Some("Boiler room".into()),
            ..DeviceSettings::on(ConnectionId::new("sim").expect("a valid id"))
        },
        points: BTreeMap::from([
            point("temperature", ValueKind::Float, false),
            point("setpoint", ValueKind::Float, true),
            point("pump", ValueKind::Bool, true),
        ]),
    }]));
    let access = Access::new(&AccessConfig {
        read: vec!["localhost".into()],
        control: vec!["alice@localhost".into()],
    });
    let mut gw = Gateway::new(
        "gw.localhost",
        "fuzz",
        directory,
        access,
        dir.path(),
        Default::default(),
    )
    .expect("a gateway");
    gw.on_connected(tokio::time::Instant::now());
    Rig { gw, _dir: dir }
}

thread_local! {
    static RIG: RefCell<Rig> = RefCell::new(rig());
    /// A paused clock, moved on between inputs: every input starts with
    /// full rate-limit allowances, so the fuzzer explores the handlers
    /// rather than the limiter's refusals.
    static CLOCK: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
}

fn serialize(out: &[Element]) {
    for el in out {
        let _ = String::from(el);
    }
}

fuzz_target!(|data: &[u8]| {
    let mut reader = StanzaReader::new();
    if reader.feed(HEADER).is_err() || reader.feed(data).is_err() {
        return;
    }
    CLOCK.with(|clock| clock.block_on(tokio::time::advance(std::time::Duration::from_secs(10))));
    let _time = CLOCK.with(|clock| clock.handle().clone());
    let _entered = _time.enter();
    RIG.with(|rig| {
        let rig = &mut *rig.borrow_mut();
        let mut n = 0;
        while let Some(item) = reader.pop() {
            match item {
                Incoming::Stanza(mut el) => {
                    // The server stamps the sender; the input picks which.
                    let from = SENDERS[n % SENDERS.len()];
                    n += 1;
                    el.set_attr(
                        minidom::rxml::Namespace::NONE,
                        minidom::rxml::NcName::try_from("from").expect("a name"),
                        from.to_owned(),
                    );
                    serialize(&rig.gw.on_stanza(&el));
                }
                Incoming::Refused { stanza, why } => serialize(&rig.gw.refused(&stanza, why)),
                Incoming::Header(_) | Incoming::Footer => {}
            }
        }
        let jobs = rig.gw.take_jobs(usize::MAX);
        drop(jobs);
    });
});
