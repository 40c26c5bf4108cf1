//! The XEP-0114 connection: connect, authenticate, tell apart the ways it
//! can fail, then move stanzas.
//!
//! The stream is read by the gateway's own [`StanzaReader`] rather than
//! tokio-xmpp's `Component` or `xmlstream`: there one unparsable stanza
//! from any remote user ends the stream, a 12 KB attribute is a fatal
//! error, and a deeply nested one overflows the stack (their reader builds
//! elements recursively and its limits cannot be set). Here the stream
//! yields plain elements within limits, and the gateway decides what is
//! malformed.
//!
//! With `xmpp.tls` the stream is TLS from the first byte (no STARTTLS:
//! XEP-0114 has none). The certificate is checked against the name the
//! SNI carries, the component's domain by default; no ALPN protocol is
//! offered, since Prosody routes `xmpp-client` to c2s. A failed handshake
//! ends the attempt: nothing is ever sent in clear text instead.

use std::sync::Arc;
use std::time::Duration;

use fieldbridge_tls::rustls;
use minidom::Element;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use xmpp_parsers::component::Handshake;

use crate::XmppError;
use crate::config::TlsConfig;
use crate::gateway::Notification;
use crate::reader::{Incoming, StanzaReader};
use crate::xml::{NS_COMPONENT, NS_STREAMS};

/// How long connecting and logging in may take.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(15);

/// After this much inbound silence the gateway pings the server, so that
/// an idle but healthy link is never taken for a dead one.
pub const KEEPALIVE: Duration = Duration::from_secs(30);

/// With nothing at all from the server for this long (three pings
/// unanswered) the link is taken for dead and reconnected.
pub const DEAD_AFTER: Duration = Duration::from_secs(90);

/// A write that makes no progress for this long means a dead or stuck
/// server: the connection is dropped rather than stall the component.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes written per step of [`Stream::send`]: the write timeout applies
/// to each, so a long catch-up is fine while the server keeps taking data.
const WRITE_STEP: usize = 64 * 1024;

/// What the stream runs over: TCP, or TLS over TCP.
trait Transport: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug> Transport for T {}

/// An established, logged-in component stream.
#[derive(Debug)]
pub struct Stream {
    io: Box<dyn Transport>,
    reader: StanzaReader,
    chunk: Box<[u8]>,
    out: Vec<u8>,
}

impl Stream {
    /// The next item from the server. Cancel-safe: what was read stays in
    /// the reader, so it may be raced against other work in `select!`.
    pub async fn next(&mut self) -> Result<Incoming, XmppError> {
        loop {
            if let Some(item) = self.reader.pop() {
                return Ok(item);
            }
            let n = self.io.read(&mut self.chunk).await.map_err(XmppError::Io)?;
            if n == 0 {
                return Err(XmppError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            self.reader.feed(&self.chunk[..n]).map_err(|e| {
                XmppError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
            })?;
        }
    }

    /// Sends `stanzas` and `notifications` with one write (in steps, each
    /// bounded by [`WRITE_TIMEOUT`]).
    pub async fn send(
        &mut self,
        stanzas: &[Element],
        notifications: &[Notification],
    ) -> std::io::Result<()> {
        self.out.clear();
        for el in stanzas {
            el.write_to(&mut self.out).map_err(std::io::Error::other)?;
        }
        for n in notifications {
            n.write_to(&mut self.out);
        }
        if self.out.is_empty() {
            return Ok(());
        }
        for step in self.out.chunks(WRITE_STEP) {
            stalled(self.io.write_all(step)).await?;
        }
        stalled(self.io.flush()).await
    }

    /// Sends `stanzas`, then closes the stream.
    pub async fn close(&mut self, stanzas: &[Element]) -> std::io::Result<()> {
        self.send(stanzas, &[]).await?;
        stalled(self.io.write_all(b"</stream:stream>")).await?;
        stalled(self.io.shutdown()).await
    }
}

/// A write step that makes no progress for [`WRITE_TIMEOUT`] is an error.
async fn stalled(step: impl Future<Output = std::io::Result<()>>) -> std::io::Result<()> {
    tokio::time::timeout(WRITE_TIMEOUT, step)
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the server took no data for {WRITE_TIMEOUT:?}"),
            ))
        })
}

/// Connects to `server` (with TLS when `tls` is set) and logs in as
/// `domain` (owned arguments so that the attempt can run as a `'static`
/// future beside the bus). The CA file is read on each attempt, so that a
/// corrected one is used without a restart.
pub async fn connect(
    server: String,
    domain: String,
    secret: String,
    tls: Option<TlsConfig>,
) -> Result<Stream, XmppError> {
    let login = login(&server, &domain, &secret, tls.as_ref());
    match tokio::time::timeout(LOGIN_TIMEOUT, login).await {
        Ok(r) => r,
        Err(_) => Err(XmppError::Timeout {
            server,
            after: LOGIN_TIMEOUT,
        }),
    }
}

/// What the server's certificate is checked against, for messages.
fn trusted(tls: &TlsConfig) -> String {
    match &tls.ca_file {
        Some(ca) => format!("the CA in ca_file {}", ca.display()),
        None => "the system's root certificates".to_owned(),
    }
}

/// The TLS handshake over `tcp`, checking the certificate for the name
/// `tls` gives (or `domain`).
async fn encrypt(
    tcp: TcpStream,
    server: &str,
    domain: &str,
    tls: &TlsConfig,
) -> Result<Box<dyn Transport>, XmppError> {
    let name = tls.name(domain).to_owned();
    let fail = |reason: String, misconfigured: bool| XmppError::Tls {
        server: server.to_owned(),
        name: name.clone(),
        trusted: trusted(tls),
        reason,
        misconfigured,
    };
    let config = fieldbridge_tls::client_config(tls.ca_file.as_deref(), None)
        .map_err(|e| fail(e.to_string(), true))?;
    let server_name = rustls::pki_types::ServerName::try_from(name.clone())
        .map_err(|e| fail(format!("{name:?}: {e}"), true))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    match connector.connect(server_name, tcp).await {
        Ok(stream) => Ok(Box::new(stream)),
        Err(e) => {
            // rustls's own refusal (a certificate it does not trust, a
            // name it does not cover, a port that does not speak TLS)
            // needs someone to fix the settings; a reset connection may
            // pass on the next attempt.
            let refusal = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>());
            let misconfigured = refusal.is_some_and(|r| {
                matches!(
                    r,
                    rustls::Error::InvalidCertificate(_)
                        | rustls::Error::AlertReceived(_)
                        | rustls::Error::PeerIncompatible(_)
                        | rustls::Error::InvalidMessage(_)
                )
            });
            let reason = if matches!(refusal, Some(rustls::Error::InvalidMessage(_))) {
                format!("{e}: the port does not speak TLS (a clear-text component port?)")
            } else if e.kind() == std::io::ErrorKind::UnexpectedEof {
                "the server closed the connection during the handshake (is this a TLS port?)"
                    .to_owned()
            } else {
                e.to_string()
            };
            Err(fail(reason, misconfigured))
        }
    }
}

async fn login(
    server: &str,
    domain: &str,
    secret: &str,
    tls: Option<&TlsConfig>,
) -> Result<Stream, XmppError> {
    let io = |source| XmppError::Connect {
        server: server.to_owned(),
        source,
    };
    let protocol = |reason: String| XmppError::Protocol {
        domain: domain.to_owned(),
        reason,
    };
    let tcp = TcpStream::connect(server).await.map_err(io)?;
    // Small stanzas must not wait ~40 ms for Nagle.
    tcp.set_nodelay(true).map_err(io)?;
    let transport: Box<dyn Transport> = match tls {
        Some(tls) => encrypt(tcp, server, domain, tls).await?,
        None => Box::new(tcp),
    };
    let mut stream = Stream {
        io: transport,
        reader: StanzaReader::new(),
        chunk: vec![0; 16 * 1024].into_boxed_slice(),
        out: Vec::new(),
    };
    let header = format!(
        "<?xml version='1.0'?><stream:stream xmlns='{NS_COMPONENT}' \
         xmlns:stream='{STREAM_NS}' to='{}'>",
        String::from_utf8_lossy(&minidom::element::escape(domain.as_bytes()))
    );
    stream.io.write_all(header.as_bytes()).await.map_err(io)?;
    let unreadable = |e: XmppError| match e {
        XmppError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            protocol("the server closed the stream without saying why".into())
        }
        XmppError::Io(e) => io(e),
        e => e,
    };
    let stream_id = match stream.next().await.map_err(unreadable)? {
        Incoming::Header(h) => match h.attr("id") {
            Some(id) => id.to_owned(),
            None => return Err(protocol("the server sent no stream id".into())),
        },
        Incoming::Stanza(el) if is_stream_error(&el) => return Err(stream_error(&el, domain)),
        _ => return Err(protocol("no stream header from the server".into())),
    };
    // The digest is never logged: it is enough to guess a weak secret.
    let handshake: Element = Handshake::from_stream_id_and_password(stream_id, secret).into();
    stream.send(&[handshake], &[]).await.map_err(io)?;
    match stream.next().await.map_err(unreadable)? {
        Incoming::Stanza(el) if el.name() == "handshake" => Ok(stream),
        Incoming::Stanza(el) if is_stream_error(&el) => Err(stream_error(&el, domain)),
        Incoming::Stanza(el) => Err(protocol(format!(
            "unexpected <{}> instead of the handshake",
            el.name()
        ))),
        Incoming::Refused { why, .. } => Err(protocol(format!(
            "{} instead of the handshake",
            why.as_str()
        ))),
        Incoming::Header(_) | Incoming::Footer => Err(protocol(
            "the server closed the stream without saying why".into(),
        )),
    }
}

/// The namespace of `<stream:error>` itself.
pub const STREAM_NS: &str = "http://etherx.jabber.org/streams";

/// Whether `el` is a `<stream:error>`.
pub fn is_stream_error(el: &Element) -> bool {
    el.name() == "error" && el.ns() == STREAM_NS
}

/// Reads a `<stream:error>`: which condition it names, in words. A wrong
/// secret (`not-authorized`) and a second gateway (`conflict`) need
/// different fixes, so they are told apart here.
pub fn stream_error(el: &Element, domain: &str) -> XmppError {
    let condition = el
        .children()
        .find(|c| c.ns() == NS_STREAMS && c.name() != "text")
        .map(|c| c.name().to_owned())
        .unwrap_or_else(|| "undefined-condition".into());
    let text = el
        .get_child("text", NS_STREAMS)
        .map(|t| t.text())
        .unwrap_or_default();
    match condition.as_str() {
        "not-authorized" => XmppError::NotAuthorized {
            domain: domain.to_owned(),
        },
        "conflict" => XmppError::Conflict {
            domain: domain.to_owned(),
        },
        "host-unknown" | "improper-addressing" => XmppError::HostUnknown {
            domain: domain.to_owned(),
        },
        other => XmppError::Protocol {
            domain: domain.to_owned(),
            reason: if text.is_empty() {
                format!("stream error {other}")
            } else {
                format!("stream error {other}: {text}")
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(condition: &str) -> Element {
        format!(
            "<error xmlns='{STREAM_NS}'><{condition} xmlns='{NS_STREAMS}'/>\
<text xmlns='{NS_STREAMS}'>why</text></error>"
        )
        .parse()
        .unwrap()
    }

    #[test]
    fn a_wrong_secret_and_a_second_gateway_are_told_apart() {
        let e = stream_error(&error("not-authorized"), "gw.example.org");
        assert!(matches!(e, XmppError::NotAuthorized { .. }), "{e}");
        assert!(e.to_string().contains("secret"), "{e}");
        assert!(e.needs_operator());
        let e = stream_error(&error("conflict"), "gw.example.org");
        assert!(matches!(e, XmppError::Conflict { .. }), "{e}");
        assert!(e.to_string().contains("already connected"), "{e}");
        let e = stream_error(&error("host-unknown"), "gw.example.org");
        assert!(matches!(e, XmppError::HostUnknown { .. }), "{e}");
        let e = stream_error(&error("system-shutdown"), "gw.example.org");
        assert!(e.to_string().contains("system-shutdown: why"), "{e}");
        assert!(is_stream_error(&error("conflict")));
    }

    #[tokio::test]
    async fn an_unreachable_server_is_an_io_error() {
        // A port that was free a moment ago: connection refused.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let e = connect(
            format!("127.0.0.1:{port}"),
            "gw.example.org".into(),
            "s".into(),
            None,
        )
        .await
        .err()
        .unwrap();
        assert!(matches!(e, XmppError::Connect { .. }), "{e}");
    }

    #[tokio::test]
    async fn a_tls_link_to_a_clear_text_server_fails_and_sends_nothing_in_clear() {
        use tokio::io::AsyncReadExt as _;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = listener.local_addr().unwrap().to_string();
        // A clear-text component port: it answers anything with a header.
        let peer = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            s.write_all(b"<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' id='x'>")
                .await
                .unwrap();
            let mut got = Vec::new();
            let _ = s.read_to_end(&mut got).await;
            got
        });
        let tls = TlsConfig {
            server_name: None,
            ca_file: None,
        };
        let e = connect(server, "gw.example.org".into(), "s".into(), Some(tls))
            .await
            .err()
            .unwrap();
        assert!(matches!(e, XmppError::Tls { .. }), "{e}");
        let text = e.to_string();
        assert!(text.contains("not falling back to clear text"), "{text}");
        assert!(text.contains("for gw.example.org"), "{text}");
        let got = peer.await.unwrap();
        // Only a TLS ClientHello (a handshake record) was sent, no stream.
        assert_eq!(got.first(), Some(&0x16), "{got:?}");
        assert!(!String::from_utf8_lossy(&got).contains("stream:stream"));
    }
}
