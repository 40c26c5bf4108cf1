//! The run loop: moves elements between the server and the I/O-free
//! [`Gateway`], runs its jobs, reads and writes (store work on the blocking
//! pool), and keeps draining the bus while the link is down.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fieldbridge_core::audit::AuditLog;
use fieldbridge_core::telemetry::{InternalEvent, JobsPending, Telemetry};
use fieldbridge_core::watchdog::Heartbeat;
use fieldbridge_core::{CommandRouter, Directory, Subscription};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, MissedTickBehavior};

use crate::config::{AccessConfig, AlertsConfig, XmppConfig};
use crate::error::{XmppError, log_connect_error};
use crate::gateway::{self, AlertSettings, Found, Gateway, Job, JobOutcome, StoreRead};
use crate::link::{Link, next};
use crate::reader::Incoming;
use crate::{access, connection};

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
    /// The zone of times shown to people (`gateway.timezone`).
    pub time_zone: jiff::tz::TimeZone,
    /// `alerts:` from gateway.yaml: who hears of alarms.
    pub alerts: AlertsConfig,
    /// Where write attempts are audited.
    pub audit: AuditLog,
    /// Beaten every turn of the loop's 1 s tick, while the link is down
    /// and reconnecting too, for a watchdog.
    pub alive: Heartbeat,
}

/// A reload for the running component: the new directory, the settings
/// of `xmpp:` that apply without reconnecting, and `alerts:` (applied at
/// once: new recipients, a new room joined and the old one left).
#[derive(Debug)]
struct Reload {
    directory: Arc<Directory>,
    access: AccessConfig,
    status_interval: Duration,
    alerts: AlertsConfig,
    applied: oneshot::Sender<gateway::Reconfigured>,
}

/// Hands a running component ([`run`]) a reload.
#[derive(Debug, Clone)]
pub struct Reloader(mpsc::Sender<Reload>);

/// The component's end of [`Reloader`].
#[derive(Debug)]
pub struct Reloads(mpsc::Receiver<Reload>);

/// A reloader and the end [`run`] takes.
pub fn reloader() -> (Reloader, Reloads) {
    let (tx, rx) = mpsc::channel(1);
    (Reloader(tx), Reloads(rx))
}

impl Reloader {
    /// Applies `directory`, `config`'s access lists and status interval,
    /// and `alerts`, on the link as it is; waits until done. The rest of
    /// `config` needs a restart. None when the component has stopped.
    pub async fn reconfigure(
        &self,
        directory: Arc<Directory>,
        config: &XmppConfig,
        alerts: &AlertsConfig,
    ) -> Option<gateway::Reconfigured> {
        let (applied, done) = oneshot::channel();
        let reload = Reload {
            directory,
            access: config.access.clone(),
            status_interval: config.status_interval(),
            alerts: alerts.clone(),
            applied,
        };
        self.0.send(reload).await.ok()?;
        done.await.ok()
    }
}

/// How long the goodbye may take when stopping.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(3);
/// How often published items and subscription changes are written to the
/// store (or sooner, when a batch is full or a subscription changed): one
/// disk commit per batch, not per reading.
const HISTORY_FLUSH: Duration = Duration::from_millis(250);
/// Periodic work (presence text refresh, keepalive).
const TICK: Duration = Duration::from_secs(1);

/// Runs the component until `events` ends (the bus closes when the gateway
/// stops): then sends unavailable presence for every device to its
/// subscribers, saves state, and closes the stream, within a few seconds
/// even if the server is unreachable.
///
/// Connection failures never end it: it reconnects with backoff, logging
/// what to fix. It fails only if the state directory cannot be used.
///
/// What it does is counted in the bus's telemetry (`events.telemetry()`).
pub async fn run(
    options: ComponentOptions,
    directory: Arc<Directory>,
    mut events: Subscription,
    commands: CommandRouter,
    mut reloads: Reloads,
) -> Result<(), XmppError> {
    let ComponentOptions {
        config,
        secret,
        state_dir,
        gateway_id,
        time_zone,
        alerts,
        audit,
        alive,
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
        Arc::clone(events.telemetry()),
    )
    .map_err(state_error)?;
    let telemetry = Arc::clone(events.telemetry());
    gw.set_status_interval(config.status_interval());
    gw.set_time_zone(time_zone);
    gw.set_audit(audit);
    // Not connected yet: the room is joined on connect.
    gw.set_alerts(AlertSettings::new(&alerts, &gateway_id), Instant::now());

    let mut link = Link::new();
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
        JobsPending {
            queued: gw.queued_jobs(),
            running: jobs.len(),
        }
        .emit(&telemetry);
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
                    config.tls.clone(),
                )));
            },
            result = async { link.connecting.as_mut().expect("guarded").await }, if link.connecting.is_some() => {
                link.connecting = None;
                match result {
                    Ok(s) => {
                        tracing::info!(server = %config.server, component = %config.component, tls = config.tls.is_some(), "connected to the XMPP server");
                        last_error = None;
                        let now = link.connected(s);
                        let out = gw.on_connected(now);
                        link.send(out, gw.take_notifications()).await;
                    }
                    Err(e) => {
                        let delay = link.attempt_failed();
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
            Some(reload) = reloads.0.recv() => {
                gw.set_status_interval(reload.status_interval);
                let (mut out, what) = gw.reconfigure(reload.directory, access::Access::new(&reload.access));
                out.extend(gw.set_alerts(AlertSettings::new(&reload.alerts, &gateway_id), Instant::now()));
                link.send(out, gw.take_notifications()).await;
                let _ = reload.applied.send(what);
            },
            _ = tick.tick() => {
                let now = Instant::now();
                alive.beat_at(now);
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
    summary(&telemetry);
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

/// The shutdown summary, read from the same counters `/metrics` shows.
fn summary(t: &Telemetry) {
    let refused = |cause| t.sum("stanzas_refused_total", [("cause", cause)]) as u64;
    tracing::info!(
        malformed = refused("malformed"),
        forbidden = refused("forbidden"),
        unsupported = refused("unsupported"),
        items = t.sum("items_published_total", []) as u64,
        notifications = t.sum("notifications_sent_total", []) as u64,
        rate_limited = refused("rate_limited"),
        subscriptions_refused = refused("subscription_limit"),
        "XMPP component stopping"
    );
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
