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

use crate::xml::{NS_COMPONENT, NS_STREAMS};

/// The established stream.
pub type Stream = XmlStream<BufStream<TcpStream>, Element>;

/// How long connecting and logging in may take.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(15);

/// After this much silence the stream reports a soft timeout and we ping
/// the server; after as much again without an answer it is dead.
pub const TIMEOUTS: Timeouts = Timeouts {
    read_timeout: Duration::from_secs(60),
    response_timeout: Duration::from_secs(30),
};

/// Why the connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// TCP or stream I/O failed.
    #[error("cannot reach {server}: {source}")]
    Io {
        /// host:port
        server: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The server refused the secret.
    #[error(
        "the server refused the component secret for {0} (check component_secret on the server and the gateway's secret)"
    )]
    NotAuthorized(String),
    /// Another process is connected as this component.
    #[error("another process is already connected as component {0} (a second gateway running?)")]
    Conflict(String),
    /// The server does not know this component domain.
    #[error("the server has no component {0} (declare it: see deploy/)")]
    HostUnknown(String),
    /// Any other stream error or protocol surprise.
    #[error("login as {domain} failed: {reason}")]
    Protocol {
        /// The component domain.
        domain: String,
        /// What happened.
        reason: String,
    },
    /// Nothing happened in time.
    #[error("no answer from {0} within {LOGIN_TIMEOUT:?}")]
    Timeout(String),
}

impl ConnectError {
    /// Failures that retrying will not fix without someone changing a setting.
    pub fn needs_operator(&self) -> bool {
        matches!(
            self,
            ConnectError::NotAuthorized(_) | ConnectError::HostUnknown(_)
        )
    }
}

/// Connects to `server` and logs in as `domain`.
pub async fn connect(server: &str, domain: &str, secret: &str) -> Result<Stream, ConnectError> {
    match tokio::time::timeout(LOGIN_TIMEOUT, login(server, domain, secret)).await {
        Ok(r) => r,
        Err(_) => Err(ConnectError::Timeout(server.to_owned())),
    }
}

async fn login(server: &str, domain: &str, secret: &str) -> Result<Stream, ConnectError> {
    let io = |source| ConnectError::Io {
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
        return Err(ConnectError::Protocol {
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
            Some(Ok(el)) if el.name() == "error" => return Err(stream_error(&el, domain)),
            Some(Ok(el)) => {
                return Err(ConnectError::Protocol {
                    domain: domain.to_owned(),
                    reason: format!("unexpected <{}> instead of the handshake", el.name()),
                });
            }
            Some(Err(ReadError::SoftTimeout)) => continue,
            Some(Err(ReadError::HardError(e))) => return Err(io(e)),
            Some(Err(ReadError::ParseError(e))) => {
                return Err(ConnectError::Protocol {
                    domain: domain.to_owned(),
                    reason: format!("unreadable answer: {e}"),
                });
            }
            Some(Err(ReadError::StreamFooterReceived)) | None => {
                return Err(ConnectError::Protocol {
                    domain: domain.to_owned(),
                    reason: "the server closed the stream".into(),
                });
            }
        }
    }
}

/// Reads a `<stream:error>`: which condition it names, in words.
pub fn stream_error(el: &Element, domain: &str) -> ConnectError {
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
        "not-authorized" => ConnectError::NotAuthorized(domain.to_owned()),
        "conflict" => ConnectError::Conflict(domain.to_owned()),
        "host-unknown" | "improper-addressing" => ConnectError::HostUnknown(domain.to_owned()),
        other => ConnectError::Protocol {
            domain: domain.to_owned(),
            reason: if text.is_empty() {
                format!("stream error {other}")
            } else {
                format!("stream error {other}: {text}")
            },
        },
    }
}
