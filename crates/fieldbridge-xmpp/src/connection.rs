//! The XEP-0114 connection: connect, authenticate, and tell apart the ways
//! it can fail.
//!
//! The login is done by hand with tokio-xmpp's `xmlstream` API rather than
//! its `Component`, which reads typed stanzas: there one unparsable stanza
//! from any remote user ends the stream. Here the stream yields plain
//! elements, and the gateway decides what is malformed.

use std::time::Duration;

use futures::StreamExt;
use minidom::Element;
use tokio::io::BufStream;
use tokio::net::TcpStream;
use tokio_xmpp::xmlstream::{self, ReadError, StreamHeader, Timeouts, XmlStream};
use xmpp_parsers::component::Handshake;

use crate::XmppError;
use crate::xml::{NS_COMPONENT, NS_STREAMS};

/// The established stream.
pub type Stream = XmlStream<BufStream<TcpStream>, Element>;

/// How long connecting and logging in may take.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(15);

/// After `read_timeout` of silence the stream reports a soft timeout (we
/// ping the server then); after `response_timeout` more it is dead. Generous
/// on purpose: [`KEEPALIVE`] keeps a healthy link far from either.
pub const TIMEOUTS: Timeouts = Timeouts {
    read_timeout: Duration::from_secs(120),
    response_timeout: Duration::from_secs(60),
};

/// After this much inbound silence the gateway pings the server, well
/// within [`TIMEOUTS`]' read timeout, so that an idle but healthy link is
/// never taken for a dead one.
pub const KEEPALIVE: Duration = Duration::from_secs(30);

/// Connects to `server` and logs in as `domain` (owned arguments so that
/// the attempt can run as a `'static` future beside the bus).
pub async fn connect(server: String, domain: String, secret: String) -> Result<Stream, XmppError> {
    match tokio::time::timeout(LOGIN_TIMEOUT, login(&server, &domain, &secret)).await {
        Ok(r) => r,
        Err(_) => Err(XmppError::Timeout {
            server,
            after: LOGIN_TIMEOUT,
        }),
    }
}

async fn login(server: &str, domain: &str, secret: &str) -> Result<Stream, XmppError> {
    let io = |source| XmppError::Connect {
        server: server.to_owned(),
        source,
    };
    let tcp = TcpStream::connect(server).await.map_err(io)?;
    // Small stanzas must not wait ~40 ms for Nagle.
    tcp.set_nodelay(true).map_err(io)?;
    let header = StreamHeader {
        from: None,
        to: Some(domain.to_owned().into()),
        id: None,
    };
    let mut pending =
        xmlstream::initiate_stream(BufStream::new(tcp), NS_COMPONENT, header, TIMEOUTS)
            .await
            .map_err(io)?;
    let header = pending.take_header();
    let Some(stream_id) = header.id else {
        return Err(XmppError::Protocol {
            domain: domain.to_owned(),
            reason: "the server sent no stream id".into(),
        });
    };
    let mut stream: Stream = pending.skip_features();
    let handshake: Element =
        Handshake::from_stream_id_and_password(stream_id.into_owned(), secret).into();
    futures::SinkExt::send(&mut stream, &handshake)
        .await
        .map_err(io)?;
    loop {
        match stream.next().await {
            Some(Ok(el)) if el.name() == "handshake" => return Ok(stream),
            Some(Ok(el)) if is_stream_error(&el) => {
                return Err(stream_error(&el, domain));
            }
            Some(Ok(el)) => {
                return Err(XmppError::Protocol {
                    domain: domain.to_owned(),
                    reason: format!("unexpected <{}> instead of the handshake", el.name()),
                });
            }
            Some(Err(ReadError::SoftTimeout)) => continue,
            Some(Err(ReadError::HardError(e))) => return Err(io(e)),
            Some(Err(ReadError::ParseError(e))) => {
                return Err(XmppError::Protocol {
                    domain: domain.to_owned(),
                    reason: format!("unreadable answer: {e}"),
                });
            }
            Some(Err(ReadError::StreamFooterReceived)) | None => {
                return Err(XmppError::Protocol {
                    domain: domain.to_owned(),
                    reason: "the server closed the stream without saying why".into(),
                });
            }
        }
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
        )
        .await
        .err()
        .unwrap();
        assert!(matches!(e, XmppError::Connect { .. }), "{e}");
    }
}
