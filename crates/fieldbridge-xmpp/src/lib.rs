//! fieldbridge's XMPP side: a XEP-0114 external component that gives every
//! device a JID (`<device>@<component>`) with presence, and a pubsub node
//! at the component domain.
//!
//! [`run`] owns the connection: it logs in ([`connection`]), moves elements
//! between the server and the I/O-free [`gateway::Gateway`], reconnects
//! with capped, jittered exponential backoff, and keeps draining the event
//! bus while disconnected so that field polling never waits on the network.

pub mod access;
pub mod config;
pub mod connection;
pub mod gateway;
pub mod sensordata;
pub mod state;
pub mod xml;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fieldbridge_core::{CommandRouter, Directory, Subscription};
use futures::{SinkExt, StreamExt};
use minidom::Element;
use tokio::time::Instant;
use tokio_xmpp::xmlstream::ReadError;

pub use config::{AccessConfig, XmppConfig};

use crate::connection::{ConnectError, Stream};
use crate::gateway::Gateway;

/// What the component needs besides the bus.
#[derive(Debug, Clone)]
pub struct ComponentOptions {
    /// `xmpp:` from gateway.yaml.
    pub config: XmppConfig,
    /// The component secret.
    pub secret: String,
    /// Where subscriptions are kept.
    pub state_dir: PathBuf,
    /// The gateway's id.
    pub gateway_id: String,
}

/// Why the component stopped for good.
#[derive(Debug, thiserror::Error)]
pub enum XmppError {
    /// The state directory cannot be used.
    #[error("state in {dir}: {source}")]
    State {
        /// The directory.
        dir: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// First reconnect delay; doubles up to [`BACKOFF_CAP`].
const BACKOFF_START: Duration = Duration::from_millis(250);
/// Longest wait between reconnect attempts.
const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// A connection that lasted this long resets the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(10);
/// How long the goodbye may take when stopping.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(3);
/// Periodic work (presence text refresh).
const TICK: Duration = Duration::from_secs(1);

/// Capped exponential backoff with ±25 % jitter, so that many gateways
/// restarted with their server do not reconnect in lockstep.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Self {
        Self {
            next: BACKOFF_START,
        }
    }

    fn reset(&mut self) {
        self.next = BACKOFF_START;
    }

    fn delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(BACKOFF_CAP);
        base.mul_f64(0.75 + rand::random::<f64>() * 0.5)
    }
}

/// Runs the component until `events` ends (the gateway is stopping): then
/// sends every device's last presence, saves state and closes the stream.
pub async fn run(
    options: ComponentOptions,
    directory: Arc<Directory>,
    mut events: Subscription,
    _commands: CommandRouter,
) -> Result<(), XmppError> {
    let ComponentOptions {
        config,
        secret,
        state_dir,
        gateway_id,
    } = options;
    let store = state::Store::new(&state_dir);
    let mut gw = Gateway::new(
        &config.component,
        &gateway_id,
        directory,
        access::Access::new(&config.access),
        store,
    )
    .map_err(|source| XmppError::State {
        dir: state_dir.clone(),
        source,
    })?;

    let mut backoff = Backoff::new();
    let mut stream: Option<(Stream, Instant)> = None;
    let mut retry_at = Instant::now();
    let mut tick = tokio::time::interval(TICK);
    let mut last_error: Option<String> = None;
    let mut pings = 0u64;

    loop {
        let connected = stream.is_some();
        tokio::select! {
            event = events.recv() => match event {
                Some(e) => {
                    let out = gw.on_event(e, Instant::now());
                    send_or_drop(&mut stream, out, &mut retry_at, &mut backoff).await;
                }
                None => break,
            },
            _ = tokio::time::sleep_until(retry_at), if !connected => {
                match connection::connect(&config.server, &config.component, &secret).await {
                    Ok(s) => {
                        tracing::info!(server = %config.server, component = %config.component, "connected to the XMPP server");
                        last_error = None;
                        stream = Some((s, Instant::now()));
                        let out = gw.all_presences(Instant::now());
                        send_or_drop(&mut stream, out, &mut retry_at, &mut backoff).await;
                    }
                    Err(e) => {
                        let delay = backoff.delay();
                        retry_at = Instant::now() + delay;
                        log_connect_error(&e, &mut last_error, delay);
                    }
                }
            },
            item = next(&mut stream), if connected => match item {
                Some(Ok(el)) => {
                    if el.name() == "error" && el.ns() == "http://etherx.jabber.org/streams" {
                        let e = connection::stream_error(&el, &config.component);
                        tracing::warn!(error = %e, "the server closed the stream");
                        disconnect(&mut stream, &mut retry_at, &mut backoff);
                    } else {
                        let out = gw.on_stanza(&el);
                        send_or_drop(&mut stream, out, &mut retry_at, &mut backoff).await;
                    }
                }
                Some(Err(ReadError::SoftTimeout)) => {
                    pings += 1;
                    let ping = keepalive_ping(&config.component, pings);
                    send_or_drop(&mut stream, vec![ping], &mut retry_at, &mut backoff).await;
                }
                Some(Err(ReadError::ParseError(e))) => {
                    // The XML itself was broken: the stream cannot be trusted.
                    tracing::warn!(error = %e, "unreadable XML from the server; reconnecting");
                    disconnect(&mut stream, &mut retry_at, &mut backoff);
                }
                Some(Err(ReadError::HardError(e))) => {
                    tracing::warn!(error = %e, "connection to the XMPP server lost");
                    disconnect(&mut stream, &mut retry_at, &mut backoff);
                }
                Some(Err(ReadError::StreamFooterReceived)) | None => {
                    tracing::warn!("the XMPP server closed the connection");
                    disconnect(&mut stream, &mut retry_at, &mut backoff);
                }
            },
            _ = tick.tick() => {
                let out = gw.tick(Instant::now());
                send_or_drop(&mut stream, out, &mut retry_at, &mut backoff).await;
            }
        }
    }

    // Stopping: last presence, then close.
    let stats = gw.stats();
    tracing::info!(
        malformed = stats.malformed,
        forbidden = stats.forbidden,
        unsupported = stats.unsupported,
        notifications = stats.notifications,
        "XMPP component stopping"
    );
    if let Some((mut s, _)) = stream.take() {
        let goodbye = async {
            for el in gw.goodbye() {
                s.feed(&el).await?;
            }
            SinkExt::<&Element>::flush(&mut s).await?;
            SinkExt::<&Element>::close(&mut s).await
        };
        match tokio::time::timeout(GOODBYE_TIMEOUT, goodbye).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not say goodbye to the server"),
            Err(_) => tracing::warn!("the server did not take the goodbye in time"),
        }
    }
    Ok(())
}

async fn next(stream: &mut Option<(Stream, Instant)>) -> Option<Result<Element, ReadError>> {
    match stream {
        Some((s, _)) => s.next().await,
        None => std::future::pending().await,
    }
}

fn disconnect(
    stream: &mut Option<(Stream, Instant)>,
    retry_at: &mut Instant,
    backoff: &mut Backoff,
) {
    if let Some((_, since)) = stream.take()
        && since.elapsed() >= STABLE_AFTER
    {
        backoff.reset();
    }
    *retry_at = Instant::now() + backoff.delay();
}

/// Sends `out`; on a write error the connection is dropped (and what could
/// not be sent is lost: presence is re-sent on reconnect).
async fn send_or_drop(
    stream: &mut Option<(Stream, Instant)>,
    out: Vec<Element>,
    retry_at: &mut Instant,
    backoff: &mut Backoff,
) {
    if out.is_empty() {
        return;
    }
    let Some((s, _)) = stream else {
        return;
    };
    let result = async {
        for el in &out {
            s.feed(el).await?;
        }
        SinkExt::<&Element>::flush(s).await
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "cannot write to the XMPP server; reconnecting");
        disconnect(stream, retry_at, backoff);
    }
}

fn keepalive_ping(component: &str, n: u64) -> Element {
    // Pinging the server's own domain (the component's parent) keeps the
    // link busy; any answer, even an error, resets the read timeout.
    let server = component
        .split_once('.')
        .map_or(component, |(_, rest)| rest);
    let mut iq = xml::with(xml::stanza("iq", component, server), "type", "get");
    xml::set(&mut iq, "id", format!("keepalive-{n}"));
    iq.append_child(xml::element("ping", xml::NS_PING));
    iq
}

fn log_connect_error(e: &ConnectError, last: &mut Option<String>, delay: Duration) {
    let text = e.to_string();
    // Say each distinct failure loudly once, then quietly while it lasts.
    if last.as_deref() != Some(&text) {
        if e.needs_operator() {
            tracing::error!(error = %text, retry_in = ?delay, "cannot connect to the XMPP server");
        } else {
            tracing::warn!(error = %text, retry_in = ?delay, "cannot connect to the XMPP server");
        }
        *last = Some(text);
    } else {
        tracing::debug!(error = %text, retry_in = ?delay, "still cannot connect");
    }
}
