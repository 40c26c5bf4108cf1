//! fieldbridge's XMPP side: a XEP-0114 external component that gives every
//! device a JID (`<device>@<component>`) with presence, chat commands,
//! ad-hoc commands and the IoT XEPs, and a pubsub node at the component
//! domain whose items are kept in a history.
//!
//! [`run`] owns the connection: it logs in ([`connection`]), moves elements
//! between the server and the I/O-free [`gateway::Gateway`], reconnects
//! with capped, jittered exponential backoff, and keeps draining the event
//! bus while disconnected so that field polling never waits on the network.
//!
//! Data flow:
//!
//! ```text
//!  bus (DeviceEvent) ──▶ Gateway::on_event ──▶ device state, presence ────────┐
//!  item window       ──▶ Gateway::publish_due ─▶ one item per device update ────┤
//!                          (serialized once) ─▶ notifications to subscribers ───┼─▶ server
//!  server (Element)  ──▶ Gateway::on_stanza ─▶ replies ─────────────────────────┤
//!  1 s tick          ──▶ Gateway::tick ──────▶ rate-limited status texts, ping ─┤
//!  chat, ad-hoc ──▶ Gateway::take_jobs ──▶ CommandRouter ──▶ adapter ──▶ reply ─┤
//!  item requests ──▶ Gateway::take_reads ──▶ store (blocking pool) ──▶ reply ───┘
//!  250 ms flush  ──▶ Gateway::take_writes ─▶ store (blocking pool): items, subscriptions
//! ```
//!
//! While the link is down, nothing is sent but everything is kept: after a
//! reconnect, each node subscriber gets the items it missed from the
//! history, and presence is sent again.
//!
//! The stream is read by the gateway's own [`reader`], within limits of
//! depth and size that no remote sender can get past, and yields plain
//! `minidom` elements: tokio-xmpp's `Component` ends the stream on one
//! unparsable stanza (which any remote user can send), its reader cannot
//! be bounded, it never reconnects, and it reports a wrong secret and a
//! second gateway alike. Here a stanza the gateway does not understand is
//! counted, answered with an error when it is a request, and otherwise
//! dropped.
//!
//! Who may do what is [`access`]; subscriptions and items survive restarts
//! in `fieldbridge_store`; pubsub items carry XEP-0323 [`sensordata`];
//! messages to a device are commands in words ([`chat`]).

pub mod access;
pub mod chat;
pub mod config;
pub mod connection;
pub mod flood;
pub mod gateway;
pub mod reader;
pub mod sensordata;
pub mod xml;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use fieldbridge_core::backoff::Backoff;
use fieldbridge_core::{CommandRouter, Directory, Subscription};
use minidom::Element;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, MissedTickBehavior};

pub use config::{AccessConfig, XmppConfig};

use crate::connection::Stream;
use crate::gateway::{Found, Gateway, Job, JobOutcome, Notification, StoreRead};
use crate::reader::Incoming;

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

/// What went wrong with the component: the connection (reaching the
/// server, the login, the stream) or its state directory.
///
/// Connection errors are not fatal to [`run`], which retries with backoff
/// and logs them; they are typed so that the log says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum XmppError {
    /// The server's component port could not be reached.
    #[error("cannot reach the XMPP server at {server}: {source}")]
    Connect {
        /// host:port
        server: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Connecting and logging in took too long.
    #[error("no answer from the XMPP server at {server} within {after:?}")]
    Timeout {
        /// host:port
        server: String,
        /// How long we waited.
        after: Duration,
    },
    /// The server refused the secret (`<not-authorized/>`).
    #[error(
        "the server refused the component secret for {domain} (not-authorized): \
         check component_secret on the server against the gateway's secret"
    )]
    NotAuthorized {
        /// The component domain.
        domain: String,
    },
    /// Another process is connected as this component (`<conflict/>`).
    #[error(
        "another process is already connected as component {domain} (conflict): \
         is a second gateway running?"
    )]
    Conflict {
        /// The component domain.
        domain: String,
    },
    /// The server does not serve this component domain.
    #[error("the server has no component {domain} (host-unknown): declare it, see deploy/")]
    HostUnknown {
        /// The component domain.
        domain: String,
    },
    /// Any other stream error or protocol surprise.
    #[error("XMPP stream as {domain}: {reason}")]
    Protocol {
        /// The component domain.
        domain: String,
        /// What happened.
        reason: String,
    },
    /// Reading or writing the established stream failed.
    #[error("XMPP stream I/O: {0}")]
    Io(#[source] std::io::Error),
    /// The state directory cannot be used.
    #[error("state in {dir}: {source}")]
    State {
        /// The directory.
        dir: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

impl XmppError {
    /// Failures that retrying will not fix without someone changing a setting.
    pub fn needs_operator(&self) -> bool {
        matches!(
            self,
            XmppError::NotAuthorized { .. } | XmppError::HostUnknown { .. }
        )
    }
}

/// First reconnect delay; doubles up to [`BACKOFF_CAP`].
const BACKOFF_START: Duration = Duration::from_millis(250);
/// Longest wait between reconnect attempts.
const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// A connection that lasted this long resets the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(10);
/// How long the goodbye may take when stopping.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(3);
/// How often published items and subscription changes are written to the
/// store (or sooner, when a batch is full or a subscription changed): one
/// disk commit per batch, not per reading.
const HISTORY_FLUSH: Duration = Duration::from_millis(250);
/// Periodic work (presence text refresh, keepalive).
const TICK: Duration = Duration::from_secs(1);

type Connecting = Pin<Box<dyn Future<Output = Result<Stream, XmppError>> + Send>>;

/// The connection as the loop sees it.
struct Link {
    stream: Option<Connected>,
    connecting: Option<Connecting>,
    retry_at: Instant,
    backoff: Backoff,
}

struct Connected {
    stream: Stream,
    since: Instant,
    last_rx: Instant,
    last_ping: Instant,
    pings: u64,
}

impl Link {
    /// Drops the connection and schedules the next attempt.
    fn disconnect(&mut self) {
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
    async fn send(&mut self, out: Vec<Element>, notifications: Vec<Notification>) {
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

/// Runs the component until `events` ends (the bus closes when the gateway
/// stops): then sends unavailable presence for every device to its
/// subscribers, saves state, and closes the stream, within a few seconds
/// even if the server is unreachable.
///
/// Connection failures never end it: it reconnects with backoff, logging
/// what to fix. It fails only if the state directory cannot be used.
pub async fn run(
    options: ComponentOptions,
    directory: Arc<Directory>,
    mut events: Subscription,
    commands: CommandRouter,
) -> Result<(), XmppError> {
    let ComponentOptions {
        config,
        secret,
        state_dir,
        gateway_id,
    } = options;
    let state_error = |source| XmppError::State {
        dir: state_dir.clone(),
        source,
    };
    let mut gw = Gateway::new(
        &config.component,
        &gateway_id,
        directory,
        access::Access::new(&config.access),
        &state_dir,
    )
    .map_err(state_error)?;
    gw.set_status_interval(config.status_interval());

    let mut link = Link {
        stream: None,
        connecting: None,
        retry_at: Instant::now(),
        backoff: Backoff::new(BACKOFF_START, BACKOFF_CAP),
    };
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_error: Option<String> = None;
    // Adapter work asked for over XMPP, running through the command
    // router: at most MAX_RUNNING_JOBS at once, each ending within the
    // router's timeout; the gateway holds at most MAX_QUEUED_JOBS more.
    let mut jobs: JoinSet<(Job, JobOutcome)> = JoinSet::new();
    let mut flush = tokio::time::interval(HISTORY_FLUSH);
    flush.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // One store write at a time, off the runtime; reads beside it.
    let mut writing: Option<JoinHandle<Result<usize, fieldbridge_store::StoreError>>> = None;
    let mut reads: JoinSet<(StoreRead, Found)> = JoinSet::new();

    loop {
        if link.stream.is_none() && gw.is_connected() {
            gw.on_disconnected();
        }
        for job in gw.take_jobs(gateway::MAX_RUNNING_JOBS.saturating_sub(jobs.len())) {
            jobs.spawn(job.run(commands.clone()));
        }
        for read in gw.take_reads() {
            reads.spawn_blocking(move || {
                let found = read.run();
                (read, found)
            });
        }
        if writing.is_none()
            && (gw.unsaved() >= gateway::history::BATCH || gw.subscriptions_changed())
        {
            writing = start_write(&mut gw);
        }
        let idle = link.stream.is_none() && link.connecting.is_none();
        let publish_at = gw.next_publish();
        // A store that cannot keep up holds back intake, not memory.
        let intake = gw.unwritten() < gateway::history::MAX_UNWRITTEN;
        tokio::select! {
            event = events.recv(), if intake => match event {
                Some(e) => {
                    let now = Instant::now();
                    let mut out = gw.on_event(e, now);
                    // Take what else is ready: one write for all of it.
                    for _ in 0..MAX_EVENTS_AT_ONCE {
                        match events.try_recv() {
                            Some(Some(e)) => out.extend(gw.on_event(e, now)),
                            _ => break,
                        }
                    }
                    link.send(out, gw.take_notifications()).await;
                }
                None => break,
            },
            _ = sleep_until_some(publish_at) => {
                gw.publish_due(Instant::now());
                link.send(Vec::new(), gw.take_notifications()).await;
            },
            done = async { writing.as_mut().expect("guarded").await }, if writing.is_some() => {
                writing = None;
                match done {
                    Ok(result) => gw.written(result),
                    Err(e) => {
                        tracing::error!(error = %e, "the store writer failed");
                        gw.written(Ok(0));
                    }
                }
            },
            Some(done) = reads.join_next(), if !reads.is_empty() => {
                match done {
                    Ok((read, found)) => {
                        let out = gw.read_done(read, found);
                        link.send(out, gw.take_notifications()).await;
                    }
                    Err(e) => tracing::error!(error = %e, "a store read failed"),
                }
            },
            _ = tokio::time::sleep_until(link.retry_at), if idle => {
                link.connecting = Some(Box::pin(connection::connect(
                    config.server.clone(),
                    config.component.clone(),
                    secret.clone(),
                )));
            },
            result = async { link.connecting.as_mut().expect("guarded").await }, if link.connecting.is_some() => {
                link.connecting = None;
                match result {
                    Ok(s) => {
                        tracing::info!(server = %config.server, component = %config.component, "connected to the XMPP server");
                        last_error = None;
                        let now = Instant::now();
                        link.stream = Some(Connected { stream: s, since: now, last_rx: now, last_ping: now, pings: 0 });
                        let out = gw.on_connected(now);
                        link.send(out, gw.take_notifications()).await;
                    }
                    Err(e) => {
                        let delay = link.backoff.next_delay();
                        link.retry_at = Instant::now() + delay;
                        log_connect_error(&e, &mut last_error, delay);
                    }
                }
            },
            item = next(&mut link.stream), if link.stream.is_some() => {
                if let (Some(c), Ok(_)) = (&mut link.stream, &item) {
                    c.last_rx = Instant::now();
                }
                match item {
                    Ok(Incoming::Stanza(el)) if connection::is_stream_error(&el) => {
                        let e = connection::stream_error(&el, &config.component);
                        tracing::warn!(error = %e, "the server closed the stream");
                        link.disconnect();
                    }
                    Ok(Incoming::Stanza(el)) => {
                        let out = gw.on_stanza(&el);
                        link.send(out, Vec::new()).await;
                    }
                    Ok(Incoming::Refused { stanza, why }) => {
                        let out = gw.refused(&stanza, why);
                        link.send(out, Vec::new()).await;
                    }
                    Ok(Incoming::Header(_)) => {}
                    Ok(Incoming::Footer) => {
                        tracing::warn!("the XMPP server closed the connection");
                        link.disconnect();
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "connection to the XMPP server lost");
                        link.disconnect();
                    }
                }
            },
            Some(done) = jobs.join_next(), if !jobs.is_empty() => {
                match done {
                    Ok((job, outcome)) => {
                        let replies = gw.job_done(job, outcome);
                        link.send(replies, Vec::new()).await;
                    }
                    Err(e) => tracing::error!(error = %e, "an adapter job failed"),
                }
            },
            _ = flush.tick(), if writing.is_none() => writing = start_write(&mut gw),
            _ = tick.tick() => {
                let now = Instant::now();
                let mut out = gw.tick(now);
                if let Some(c) = &mut link.stream
                    && now.duration_since(c.last_rx) >= connection::KEEPALIVE
                    && now.duration_since(c.last_ping) >= connection::KEEPALIVE
                {
                    out.push(c.ping(&config.component));
                }
                if link.stream.as_ref().is_some_and(|c| now.duration_since(c.last_rx) >= connection::DEAD_AFTER) {
                    tracing::warn!(silent_for = ?connection::DEAD_AFTER, "no answer from the XMPP server; reconnecting");
                    link.disconnect();
                }
                link.send(out, Vec::new()).await;
            }
        }
    }

    // Stopping: last presence, state, then close.
    let stats = gw.stats();
    tracing::info!(
        malformed = stats.malformed,
        forbidden = stats.forbidden,
        unsupported = stats.unsupported,
        items = stats.items,
        notifications = stats.notifications,
        rate_limited = stats.rate_limited,
        subscriptions_refused = stats.subscriptions_refused,
        "XMPP component stopping"
    );
    gw.publish_all();
    let last_items = gw.take_notifications();
    if let Some(w) = writing.take() {
        gw.written(w.await.unwrap_or(Ok(0)));
    }
    let saved = match gw.take_writes() {
        Some(w) => match tokio::task::spawn_blocking(move || w.write()).await {
            Ok(r) => r.map(drop).map_err(std::io::Error::other),
            Err(e) => Err(std::io::Error::other(e)),
        },
        None => Ok(()),
    };
    if let Some(mut c) = link.stream.take() {
        if let Err(e) = c.stream.send(&[], &last_items).await {
            tracing::warn!(error = %XmppError::Io(e), "could not send the last items");
        }
        let last_words = gw.goodbye();
        let goodbye = c.stream.close(&last_words);
        match tokio::time::timeout(GOODBYE_TIMEOUT, goodbye).await {
            Ok(Ok(())) => tracing::info!("said goodbye to the XMPP server"),
            Ok(Err(e)) => {
                tracing::warn!(error = %XmppError::Io(e), "could not say goodbye to the server")
            }
            Err(_) => tracing::warn!("the server did not take the goodbye in time"),
        }
    }
    saved.map_err(state_error)
}

/// Bus events handled before their output is written: enough to make one
/// write of a burst, few enough that replies to stanzas never wait long.
const MAX_EVENTS_AT_ONCE: usize = 256;

/// Starts writing what waits for the store, off the async runtime.
fn start_write(
    gw: &mut Gateway,
) -> Option<JoinHandle<Result<usize, fieldbridge_store::StoreError>>> {
    let batch = gw.take_writes()?;
    Some(tokio::task::spawn_blocking(move || batch.write()))
}

/// Sleeps until `at`; never wakes without one.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Connected {
    /// A XEP-0199 ping to the server's own domain (the component's parent):
    /// any answer, even an error, proves the link alive and resets the
    /// stream's read timeout. Answers are results or errors, which the
    /// gateway never replies to.
    fn ping(&mut self, component: &str) -> Element {
        self.pings += 1;
        self.last_ping = Instant::now();
        keepalive_ping(component, self.pings)
    }
}

async fn next(stream: &mut Option<Connected>) -> Result<Incoming, XmppError> {
    match stream {
        Some(c) => c.stream.next().await,
        None => std::future::pending().await,
    }
}

fn keepalive_ping(component: &str, n: u64) -> Element {
    let server = component
        .split_once('.')
        .map_or(component, |(_, rest)| rest);
    let mut iq = xml::with(xml::stanza("iq", component, server), "type", "get");
    xml::set(&mut iq, "id", format!("keepalive-{n}"));
    iq.append_child(xml::element("ping", xml::NS_PING));
    iq
}

fn log_connect_error(e: &XmppError, last: &mut Option<String>, delay: Duration) {
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
