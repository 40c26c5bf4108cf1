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
use fieldbridge_xmpp::reader::{Incoming, StanzaReader};
use fieldbridge_xmpp::{AccessConfig, ComponentOptions, XmppConfig};
use minidom::Element;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

/// One server-side connection, read with the gateway's own stanza reader
/// so that replies are matched by structure, not by substrings.
struct Peer {
    tcp: TcpStream,
    reader: StanzaReader,
}

const STREAM_HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
     xmlns:stream='http://etherx.jabber.org/streams' from='gw.localhost' id='s1'>";

impl Peer {
    /// Accepts the component's connection and reads its stream header.
    async fn connected(listener: &TcpListener) -> Peer {
        let (tcp, _) = timeout(WAIT, listener.accept())
            .await
            .expect("the gateway connects")
            .unwrap();
        let mut peer = Peer {
            tcp,
            reader: StanzaReader::new(),
        };
        match peer.next().await {
            Incoming::Header(h) => assert_eq!(h.attr("to"), Some("gw.localhost")),
            other => panic!("expected the stream header, got {other:?}"),
        }
        peer.send(STREAM_HEADER).await;
        let handshake = peer.stanza().await;
        assert_eq!(handshake.name(), "handshake");
        // SHA-1 of "s1" + "s3cret", as XEP-0114 says.
        assert_eq!(handshake.text(), "959fbb9c4ed23abd46ab356942367d4b7fc7a7c7");
        peer
    }

    /// Accepts the component and completes its handshake.
    async fn accept(listener: &TcpListener) -> Peer {
        let mut peer = Peer::connected(listener).await;
        peer.send("<handshake/>").await;
        peer
    }

    async fn send(&mut self, text: &str) {
        self.tcp.write_all(text.as_bytes()).await.unwrap();
    }

    /// The next item the gateway sent, within [`WAIT`].
    async fn next(&mut self) -> Incoming {
        let read = async {
            loop {
                if let Some(item) = self.reader.pop() {
                    return item;
                }
                let mut buf = [0u8; 4096];
                let n = self.tcp.read(&mut buf).await.unwrap();
                assert!(n > 0, "the gateway closed the connection");
                self.reader.feed(&buf[..n]).unwrap();
            }
        };
        timeout(WAIT, read)
            .await
            .unwrap_or_else(|_| panic!("nothing from the gateway within {WAIT:?}"))
    }

    async fn stanza(&mut self) -> Element {
        match self.next().await {
            Incoming::Stanza(el) => el,
            other => panic!("expected a stanza, got {other:?}"),
        }
    }

    /// Stanzas until one matches `want`, which is returned.
    async fn until(&mut self, what: &str, want: impl Fn(&Element) -> bool) -> Element {
        let mut seen = Vec::new();
        let found = timeout(WAIT, async {
            loop {
                let el = self.stanza().await;
                if want(&el) {
                    return el;
                }
                seen.push(String::from(&el));
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("no {what} within {WAIT:?}; got {seen:?}"))
    }

    /// The reply to the IQ with `id`.
    async fn reply(&mut self, id: &str) -> Element {
        self.until(&format!("reply to {id}"), |el| {
            el.name() == "iq" && el.attr("id") == Some(id)
        })
        .await
    }
}

fn condition(reply: &Element) -> Option<String> {
    reply
        .get_child("error", "jabber:component:accept")?
        .children()
        .find(|c| c.ns() == "urn:ietf:params:xml:ns:xmpp-stanzas" && c.name() != "text")
        .map(|c| c.name().to_owned())
}

fn status(presence: &Element) -> String {
    presence
        .get_child("status", "jabber:component:accept")
        .map(|s| s.text())
        .unwrap_or_default()
}

fn directory() -> Arc<Directory> {
    Arc::new(Directory::new([DeviceSpec {
        id: DeviceId::new("boiler").unwrap(),
        settings: DeviceSettings::on(ConnectionId::new("sim").unwrap()),
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
            tls: None,
            secret: None,
            secret_file: None,
            access: AccessConfig {
                read: vec!["localhost".into()],
                control: vec![],
            },
            status_interval: None,
        },
        secret: "s3cret".into(),
        state_dir: state.path().to_owned(),
        gateway_id: "test".into(),
        time_zone: jiff::tz::TimeZone::UTC,
        alerts: Default::default(),
        audit: fieldbridge_core::audit::AuditLog::log_only(),
        alive: fieldbridge_core::watchdog::Heartbeat::new("XMPP connection loop"),
    };
    let directory = directory();
    let events = bus.subscribe("xmpp");
    let router = CommandRoutes::new().into_router(directory.clone(), Duration::from_secs(1));
    // No reloads here: the reloader is dropped at once.
    let (_, reloads) = fieldbridge_xmpp::reloader();
    tokio::spawn(fieldbridge_xmpp::run(
        options, directory, events, router, reloads,
    ))
}

#[tokio::test]
async fn a_refused_login_is_retried_and_stopping_never_waits_for_the_server() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let state = tempfile::tempdir().unwrap();
    let bus = Bus::new(16);
    let gateway = start(&listener, &state, &bus);

    // "Component already connected": the gateway must try again.
    let mut peer = Peer::connected(&listener).await;
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
        state.path().join(fieldbridge_store::FILE).exists(),
        "the store is in the state directory"
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
    let first = peer.until("presence", |el| el.name() == "presence").await;
    assert_eq!(first.attr("to"), Some("alice@localhost"));
    assert_eq!(status(&first), "waiting for the first reading");

    // Garbage from a remote user: dropped or answered, never fatal.
    peer.send(
        "<message type='bogus' from='alice@localhost/x' to='boiler@gw.localhost'><body>hi</body></message>\
         <presence from='alice@localhost/x' to='boiler@gw.localhost'><show>sleepy</show></presence>\
         <iq type='get' id='empty' from='alice@localhost/x' to='gw.localhost'/>",
    )
    .await;
    let reply = peer.reply("empty").await;
    assert_eq!(reply.attr("type"), Some("error"));
    assert_eq!(condition(&reply).as_deref(), Some("bad-request"));

    // Hostile sizes: 10,000 nested elements (this overflowed the stack of
    // tokio-xmpp's reader) and a 200 KB attribute (over rxml's default
    // token limit, which ended the stream).
    let deep = format!(
        "<iq type='get' id='deep' from='alice@localhost/x' to='gw.localhost'><query xmlns='urn:x'>{}{}</query></iq>",
        "<x>".repeat(10_000),
        "</x>".repeat(10_000)
    );
    peer.send(&deep).await;
    let reply = peer.reply("deep").await;
    assert_eq!(condition(&reply).as_deref(), Some("policy-violation"));
    let long = format!(
        "<iq type='get' id='long' from='alice@localhost/x' to='gw.localhost' x='{}'><ping xmlns='urn:xmpp:ping'/></iq>",
        "a".repeat(200_000)
    );
    peer.send(&long).await;
    let pong = peer.reply("long").await;
    assert_eq!(
        pong.attr("type"),
        Some("result"),
        "a long attribute is read"
    );

    peer.send(
        "<iq type='get' id='p1' from='alice@localhost/x' to='gw.localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
    )
    .await;
    let pong = peer.reply("p1").await;
    assert_eq!(pong.attr("type"), Some("result"));

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
    let again = peer
        .until("the offline presence", |el| status(el) == "unplugged")
        .await;
    assert_eq!(again.attr("to"), Some("alice@localhost"));
    assert_eq!(again.attr("type"), Some("unavailable"));

    // The bus closes: goodbye, end of stream, Ok.
    drop(bus);
    let bye = peer
        .until("the goodbye", |el| status(el) == "gateway stopped")
        .await;
    assert_eq!(bye.attr("type"), Some("unavailable"));
    loop {
        match peer.next().await {
            Incoming::Footer => break,
            Incoming::Stanza(_) => {}
            other => panic!("{other:?} before the end of the stream"),
        }
    }
    let result = timeout(WAIT, gateway).await.expect("run returns").unwrap();
    assert!(result.is_ok(), "{result:?}");
}
