//! The connection loop of `run` against a scripted in-process server on a
//! loopback port: login, a malformed stanza that must not end the stream,
//! reconnect after the server drops the link, and the goodbye when the bus
//! closes. (The real-server checks live in the repository's `tests/`
//! workspace, against Prosody.)

// Helpers here are test code too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fieldbridge_core::{
    Bus, CommandRoutes, ConnectionId, DeviceEvent, DeviceId, DeviceSettings, DeviceSpec,
    DeviceStatus, Directory, EventKind,
};
use fieldbridge_xmpp::{AccessConfig, ComponentOptions, XmppConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

/// One server-side connection with what it has read so far.
struct Peer {
    tcp: TcpStream,
    seen: String,
}

impl Peer {
    /// Accepts the component and completes its handshake.
    async fn accept(listener: &TcpListener) -> Peer {
        let (tcp, _) = timeout(WAIT, listener.accept())
            .await
            .expect("the gateway connects")
            .unwrap();
        let mut peer = Peer {
            tcp,
            seen: String::new(),
        };
        peer.until("<stream:stream").await;
        peer.until(">").await;
        peer.send(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
             xmlns:stream='http://etherx.jabber.org/streams' from='gw.localhost' id='s1'>",
        )
        .await;
        peer.until("</handshake>").await;
        peer.send("<handshake/>").await;
        peer
    }

    async fn send(&mut self, text: &str) {
        self.tcp.write_all(text.as_bytes()).await.unwrap();
    }

    /// Reads until `needle` has been seen; returns everything up to it and
    /// keeps the rest.
    async fn until(&mut self, needle: &str) -> String {
        let read = async {
            loop {
                if let Some(i) = self.seen.find(needle) {
                    let rest = self.seen.split_off(i + needle.len());
                    return std::mem::replace(&mut self.seen, rest);
                }
                let mut buf = [0u8; 4096];
                let n = self.tcp.read(&mut buf).await.unwrap();
                assert!(n > 0, "connection closed before {needle:?}: {}", self.seen);
                self.seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        };
        match timeout(WAIT, read).await {
            Ok(s) => s,
            Err(_) => panic!("no {needle:?} within {WAIT:?}; got {:?}", self.seen),
        }
    }
}

fn directory() -> Arc<Directory> {
    Arc::new(Directory::new([DeviceSpec {
        id: DeviceId::new("boiler").unwrap(),
        settings: DeviceSettings {
            name: None,
            connection: ConnectionId::new("sim").unwrap(),
            poll: None,
            stale_after: None,
            history: None,
        },
        points: BTreeMap::new(),
    }]))
}

fn start(
    listener: &TcpListener,
    state: &tempfile::TempDir,
    bus: &Bus,
) -> tokio::task::JoinHandle<Result<(), fieldbridge_xmpp::XmppError>> {
    let options = ComponentOptions {
        config: XmppConfig {
            component: "gw.localhost".into(),
            server: listener.local_addr().unwrap().to_string(),
            secret: None,
            secret_file: None,
            access: AccessConfig {
                read: vec!["localhost".into()],
                control: vec![],
            },
        },
        secret: "s3cret".into(),
        state_dir: state.path().to_owned(),
        gateway_id: "test".into(),
    };
    let directory = directory();
    let events = bus.subscribe("xmpp");
    let router = CommandRoutes::new().into_router(directory.clone(), Duration::from_secs(1));
    tokio::spawn(fieldbridge_xmpp::run(options, directory, events, router))
}

#[tokio::test]
async fn a_refused_login_is_retried_and_stopping_never_waits_for_the_server() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let state = tempfile::tempdir().unwrap();
    let bus = Bus::new(16);
    let gateway = start(&listener, &state, &bus);

    // "Component already connected": the gateway must try again.
    let (tcp, _) = timeout(WAIT, listener.accept()).await.unwrap().unwrap();
    let mut peer = Peer {
        tcp,
        seen: String::new(),
    };
    peer.until("<stream:stream").await;
    peer.send(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
         xmlns:stream='http://etherx.jabber.org/streams' from='gw.localhost' id='s1'>",
    )
    .await;
    peer.until("</handshake>").await;
    peer.send(
        "<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>",
    )
    .await;
    drop(peer);

    // The next attempt hangs in the login (a stuck server) ...
    let (_stuck, _) = timeout(WAIT, listener.accept()).await.unwrap().unwrap();
    // ... and stopping still takes no time: the login runs beside the bus.
    drop(bus);
    let result = timeout(Duration::from_secs(3), gateway)
        .await
        .expect("run returns while a login hangs")
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
    assert!(
        state.path().join("subscriptions.json").exists(),
        "state saved"
    );
}

#[tokio::test]
async fn survives_bad_stanzas_reconnects_and_says_goodbye() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let state = tempfile::tempdir().unwrap();
    std::fs::write(
        state.path().join("subscriptions.json"),
        r#"{"presence":{"boiler":["alice@localhost"]}}"#,
    )
    .unwrap();
    let bus = Bus::new(16);
    let gateway = start(&listener, &state, &bus);

    // Login; the persisted subscriber gets the device's presence at once.
    let mut peer = Peer::accept(&listener).await;
    let first = peer.until("</presence>").await;
    assert!(first.contains("alice@localhost"), "{first}");
    assert!(first.contains("waiting for the first reading"), "{first}");

    // Garbage from a remote user: dropped or answered, never fatal.
    peer.send(
        "<message type='bogus' from='alice@localhost/x' to='boiler@gw.localhost'><body>hi</body></message>\
         <presence from='alice@localhost/x' to='boiler@gw.localhost'><show>sleepy</show></presence>\
         <iq type='get' id='empty' from='alice@localhost/x' to='gw.localhost'/>",
    )
    .await;
    let reply = peer.until("</iq>").await;
    assert!(
        reply.contains("id='empty'") && reply.contains("bad-request"),
        "{reply}"
    );
    peer.send(
        "<iq type='get' id='p1' from='alice@localhost/x' to='gw.localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
    )
    .await;
    let pong = peer.until("</iq>").await;
    assert!(
        pong.contains("id='p1'") && pong.contains("type='result'"),
        "{pong}"
    );

    // The server goes away; the gateway comes back and re-announces.
    drop(peer);
    bus.publish(DeviceEvent {
        device: DeviceId::new("boiler").unwrap(),
        at: SystemTime::now(),
        kind: EventKind::Status(DeviceStatus::Offline {
            reason: "unplugged".into(),
        }),
    });
    let mut peer = Peer::accept(&listener).await;
    let again = peer.until("unplugged").await;
    assert!(again.contains("alice@localhost"), "{again}");

    // The bus closes: goodbye, end of stream, Ok.
    drop(bus);
    let bye = peer.until("</stream:stream>").await;
    assert!(bye.contains("gateway stopped"), "{bye}");
    let result = timeout(WAIT, gateway).await.expect("run returns").unwrap();
    assert!(result.is_ok(), "{result:?}");
}
