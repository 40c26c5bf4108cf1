//! The link to the server as the run loop sees it: the stream (or the
//! attempt to open one), when to retry, and the keepalive that proves a
//! quiet stream alive.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use fieldbridge_core::backoff::Backoff;
use minidom::Element;
use tokio::time::Instant;

use crate::connection::Stream;
use crate::error::XmppError;
use crate::gateway::Notification;
use crate::reader::Incoming;
use crate::xml;

/// First reconnect delay; doubles up to [`BACKOFF_CAP`].
const BACKOFF_START: Duration = Duration::from_millis(250);
/// Longest wait between reconnect attempts.
const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// A connection that lasted this long resets the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(10);

pub(crate) type Connecting = Pin<Box<dyn Future<Output = Result<Stream, XmppError>> + Send>>;

/// The connection as the loop sees it.
pub(crate) struct Link {
    pub(crate) stream: Option<Connected>,
    pub(crate) connecting: Option<Connecting>,
    pub(crate) retry_at: Instant,
    backoff: Backoff,
}

/// An established stream and its keepalive bookkeeping.
pub(crate) struct Connected {
    pub(crate) stream: Stream,
    pub(crate) since: Instant,
    pub(crate) last_rx: Instant,
    pub(crate) last_ping: Instant,
    pub(crate) pings: u64,
}

impl Link {
    /// No stream yet; the first attempt is due at once.
    pub(crate) fn new() -> Self {
        Self {
            stream: None,
            connecting: None,
            retry_at: Instant::now(),
            backoff: Backoff::new(BACKOFF_START, BACKOFF_CAP),
        }
    }

    /// The stream is up; when it came up.
    pub(crate) fn connected(&mut self, stream: Stream) -> Instant {
        let now = Instant::now();
        self.stream = Some(Connected {
            stream,
            since: now,
            last_rx: now,
            last_ping: now,
            pings: 0,
        });
        now
    }

    /// An attempt to connect failed: the next is due after the returned wait.
    pub(crate) fn attempt_failed(&mut self) -> Duration {
        let delay = self.backoff.next_delay();
        self.retry_at = Instant::now() + delay;
        delay
    }

    /// Drops the connection and schedules the next attempt.
    pub(crate) fn disconnect(&mut self) {
        if let Some(c) = self.stream.take()
            && c.since.elapsed() >= STABLE_AFTER
        {
            self.backoff.reset();
        }
        let delay = self.backoff.next_delay();
        tracing::debug!(retry_in = ?delay, "reconnecting later");
        self.retry_at = Instant::now() + delay;
    }

    /// Sends `out` and the notifications, with one write; on a write
    /// error or a stuck server the connection is dropped (what could not be
    /// sent is lost: presence is re-sent on reconnect, items from the
    /// history).
    pub(crate) async fn send(&mut self, out: Vec<Element>, notifications: Vec<Notification>) {
        if out.is_empty() && notifications.is_empty() {
            return;
        }
        let Some(c) = &mut self.stream else {
            return;
        };
        let error = match c.stream.send(&out, &notifications).await {
            Ok(()) => return,
            Err(e) => e,
        };
        tracing::warn!(error = %XmppError::Io(error), "cannot write to the XMPP server; reconnecting");
        self.disconnect();
    }
}

impl Connected {
    /// A XEP-0199 ping to the server's own domain (the component's parent):
    /// any answer, even an error, proves the link alive and resets the
    /// stream's read timeout. Answers are results or errors, which the
    /// gateway never replies to.
    pub(crate) fn ping(&mut self, component: &str) -> Element {
        self.pings += 1;
        self.last_ping = Instant::now();
        keepalive_ping(component, self.pings)
    }
}

/// The next element of the stream; pending forever while there is none.
pub(crate) async fn next(stream: &mut Option<Connected>) -> Result<Incoming, XmppError> {
    match stream {
        Some(c) => c.stream.next().await,
        None => std::future::pending().await,
    }
}

/// A keepalive ping from the component to its server.
fn keepalive_ping(component: &str, n: u64) -> Element {
    let server = component
        .split_once('.')
        .map_or(component, |(_, rest)| rest);
    let mut iq = xml::with(xml::stanza("iq", component, server), "type", "get");
    xml::set(&mut iq, "id", format!("keepalive-{n}"));
    iq.append_child(xml::element("ping", xml::NS_PING));
    iq
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive_pings_go_to_the_server_domain() {
        let p = keepalive_ping("gw.example.org", 3);
        assert_eq!(p.attr("to"), Some("example.org"));
        assert_eq!(p.attr("from"), Some("gw.example.org"));
        assert_eq!(p.attr("id"), Some("keepalive-3"));
        assert!(p.get_child("ping", xml::NS_PING).is_some());
    }
}
