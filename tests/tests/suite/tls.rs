//! The encrypted component link: the real gateway with `xmpp.tls`, TLS
//! from the first byte, to ejabberd's `ejabberd_service` with `tls: true`
//! and to Prosody's Direct-TLS port (`net_multiplex`), with a CA generated
//! at test time; a real client sees the device's presence and pubsub items.
//! A CA that did not sign the server's certificate, or a name it does not
//! cover, is an error naming the CA file, and nothing goes in clear text.

use std::path::Path;
use std::time::Duration;

use fieldbridge_e2e::certs::TestCa;
use fieldbridge_e2e::client::{XmppUser, is_presence, status_text};
use fieldbridge_e2e::gateway::{Gateway, Setup};
use fieldbridge_e2e::prosody::COMPONENT;
use fieldbridge_e2e::pubsub;
use fieldbridge_e2e::server::{ComponentServer, Options, Server, ServerKind};

const BOILER: &str = "boiler@gw.localhost";
const WAIT: Duration = Duration::from_secs(15);
const CONNECTED: &str = "connected to the XMPP server";
const NO_FALLBACK: &str = "not falling back to clear text";

/// What the server logs when a component logs in.
fn login_line(kind: ServerKind) -> &'static str {
    match kind {
        ServerKind::Prosody => "External component successfully authenticated",
        ServerKind::Ejabberd => "Accepted external component handshake authentication",
    }
}

const DEVICES: &str = "  boiler:\n    connection: sim\n    poll: 200ms\n    points:\n      \
temperature: { signal: constant, value: 21.5, unit: \"°C\" }\n";

/// The server as the gateway sees it: its TLS component port.
struct TlsPort<'a>(&'a Server);

impl ComponentServer for TlsPort<'_> {
    fn component_port(&self) -> u16 {
        self.0.tls_port().expect("started with a TLS port")
    }
    fn secret(&self) -> &str {
        self.0.secret()
    }
    fn server_log(&self) -> String {
        self.0.log()
    }
}

fn setup() -> Setup<'static> {
    Setup {
        read: &["alice@localhost"],
        control: &[],
        connections: "  sim: { simulator: {} }\n",
        devices: DEVICES,
    }
}

fn ca_env(ca: &Path) -> (&'static str, String) {
    ("FIELDBRIDGE__XMPP__TLS__CA_FILE", ca.display().to_string())
}

/// A gateway that must not log in: it says why, naming `ca`, and stays
/// offline. It is stopped before the next one starts (same component).
async fn refused(server: &impl ComponentServer, env: &[(&str, &str)], ca: &Path, why: &str) {
    let mut gw = Gateway::launch(server, &setup(), env).unwrap();
    gw.wait_log(NO_FALLBACK, 1, WAIT).await.unwrap();
    // The next attempt (after a short backoff) fails alike: no fallback.
    gw.wait_log("still cannot connect", 1, WAIT).await.unwrap();
    let log = gw.log();
    let line = log
        .lines()
        .find(|l| l.contains(NO_FALLBACK))
        .expect("the failure is logged");
    assert!(line.contains(&ca.display().to_string()), "{line}");
    assert!(line.contains(why), "{line}");
    assert!(line.contains("\"level\":\"ERROR\""), "{line}");
    assert_eq!(gw.log_count(CONNECTED), 0, "{log}");
    gw.stop().await.unwrap();
}

async fn encrypted_link(kind: ServerKind) {
    let dir = tempfile::tempdir().unwrap();
    let good = TestCa::generate(dir.path(), "good", &[COMPONENT]).unwrap();
    let other = TestCa::generate(dir.path(), "other", &[COMPONENT]).unwrap();
    let options = Options {
        tls: Some(good.clone()),
        ..Options::default()
    };
    let server = Server::start_with(kind, &options)
        .await
        .unwrap_or_else(|e| panic!("{} starts: {e}", kind.name()));
    server.register("alice", "pw").expect("alice registered");
    let mut alice = XmppUser::connect(server.c2s_port(), "alice", "pw")
        .await
        .unwrap();

    // Another CA, the wrong name, and TLS to the clear-text port: each an
    // error naming the CA file, and the device never comes online.
    let (key, other_ca) = ca_env(&other.ca);
    refused(
        &TlsPort(&server),
        &[(key, &other_ca)],
        &other.ca,
        "UnknownIssuer",
    )
    .await;
    let (key, good_ca) = ca_env(&good.ca);
    refused(
        &TlsPort(&server),
        &[
            (key, &good_ca),
            ("FIELDBRIDGE__XMPP__TLS__SERVER_NAME", "other.localhost"),
        ],
        &good.ca,
        "for other.localhost",
    )
    .await;
    refused(
        &server,
        &[(key, &good_ca)],
        &good.ca,
        "TLS to the XMPP server",
    )
    .await;

    // The server saw only refused handshakes (and, on its clear-text
    // port, a ClientHello it could not parse): no component logged in.
    assert!(
        !server.log().contains(login_line(kind)),
        "{} let a component in:\n{}",
        kind.name(),
        server.log()
    );

    let gateway = Gateway::started(&TlsPort(&server), &setup(), &[(key, &good_ca)]).await;
    let log = gateway.log();
    let login = log.lines().find(|l| l.contains(CONNECTED)).unwrap();
    assert!(login.contains("\"tls\":true"), "{login}");
    // The server's side of the same login, over TLS (ejabberd says so on
    // the line; Prosody on the handshake before it). Its log is written
    // asynchronously: wait for the line.
    let deadline = tokio::time::Instant::now() + WAIT;
    let log = loop {
        let log = server.log();
        if log.contains(login_line(kind)) {
            break log;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no login in the server's log:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    match kind {
        ServerKind::Ejabberd => {
            let line = log.lines().find(|l| l.contains(login_line(kind)));
            assert!(line.is_some_and(|l| l.contains("(tls|")), "{line:?}");
        }
        ServerKind::Prosody => assert!(log.contains("TLS handshake complete"), "{log}"),
    }

    alice.subscribe_presence(BOILER).await.unwrap();
    let p = alice
        .expect("the boiler's presence over the TLS link", WAIT, |e| {
            is_presence(e, BOILER, None) && status_text(e).is_some()
        })
        .await
        .unwrap();
    assert_eq!(status_text(&p).as_deref(), Some("temperature 21.50 °C"));
    pubsub::subscribe(&mut alice, "boiler").await.unwrap();
    let fields = pubsub::next_fields(&mut alice, "boiler", WAIT)
        .await
        .unwrap();
    let t = fields.iter().find(|f| f.name == "temperature").unwrap();
    assert_eq!(t.value.parse::<f64>().ok(), Some(21.5), "{t:?}");
    alice.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_link_to_prosody() {
    encrypted_link(ServerKind::Prosody).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_link_to_ejabberd() {
    encrypted_link(ServerKind::Ejabberd).await;
}
