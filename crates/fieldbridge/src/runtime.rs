//! Wiring: one adapter per connection → normalization → bus → XMPP
//! component, reloads, and the orderly stop.
//!
//! Once the adapters run, systemd hears `READY=1` ([`crate::systemd`]).
//! On SIGHUP the configuration is read again and applied without dropping
//! the XMPP link (`reload`). On SIGINT/SIGTERM the adapters are cancelled
//! first; when the last one has let go of its event sender the engine
//! publishes what it still held and closes the bus; the component then
//! sends every device's last "unavailable" presence, saves its state and
//! closes the stream.

mod adapters;
mod reload;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use fieldbridge::config::GatewayConfig;
use fieldbridge_core::bus::{Bus, DEFAULT_QUEUE};
use fieldbridge_core::normalize;
use fieldbridge_core::telemetry::Telemetry;
use fieldbridge_core::watchdog::Heartbeat;
use tokio_util::sync::CancellationToken;

use adapters::Adapters;

use crate::systemd::Service;

/// How long each stage of the stop may take before we stop waiting for it.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Runs the gateway until a stop signal, or until the XMPP side fails for good.
pub async fn run(cfg: GatewayConfig) -> anyhow::Result<()> {
    // First: SIGHUP's default action ends the process.
    let mut hangup = Hangup::new();
    let mut stop = StopSignals::new();
    // 0700 when new: it holds subscribers' addresses and every reading.
    fieldbridge_core::files::create_private_dir(&cfg.gateway.state_dir).with_context(|| {
        format!(
            "cannot create the state directory {}",
            cfg.gateway.state_dir.display()
        )
    })?;
    let (audit, audit_writer) = fieldbridge_core::audit::spawn(&cfg.gateway.state_dir)
        .with_context(|| {
            format!(
                "cannot open the audit log in {}",
                cfg.gateway.state_dir.display()
            )
        })?;
    let directory = cfg.directory.clone();
    tracing::info!(
        gateway = %cfg.gateway.id,
        devices = directory.len(),
        points = directory.point_count(),
        component = %cfg.xmpp.component,
        "fieldbridge {} starting",
        env!("CARGO_PKG_VERSION")
    );
    if let Some(warning) = cfg.xmpp.clear_text_warning() {
        tracing::warn!(server = %cfg.xmpp.server, "{warning}");
    }

    // Every counter of this run: adapters, engine, bus and component count
    // into it, the shutdown summary reads it.
    let telemetry = Arc::new(Telemetry::new());
    let bus = Bus::with_telemetry(DEFAULT_QUEUE, Arc::clone(&telemetry));
    // Bound before anything starts: a taken port stops start-up.
    let ops_stop = CancellationToken::new();
    let ops = match cfg.metrics {
        Some(m) => {
            Some(fieldbridge::ops::serve(m.listen, Arc::clone(&telemetry), ops_stop.clone()).await?)
        }
        None => None,
    };
    let xmpp_events = bus.subscribe("xmpp");
    let engine_alive = Heartbeat::new("normalization engine");
    let (events, engine_reload, engine) =
        normalize::spawn_reloadable(directory.clone(), bus, engine_alive.clone());

    let dashboard_stop = CancellationToken::new();
    let dashboard = match &cfg.dashboard {
        Some(d) => Some(start_dashboard(d, &cfg.xmpp.component, dashboard_stop.clone()).await?),
        None => None,
    };

    let applied = fieldbridge::reload::Applied::of(&cfg);
    let build = cfg.build_context();
    let mut adapters = Adapters::new(events);
    for connection in cfg.connections {
        adapters.start(connection, &build);
    }
    let router = adapters.router(directory.clone());

    let (reloader, reloads) = fieldbridge_xmpp::reloader();
    let mut reloading = reload::Reloading {
        source: cfg.source,
        applied,
        directory: Arc::clone(&directory),
        gateway_id: cfg.gateway.id.clone(),
        engine: engine_reload,
        xmpp: reloader,
        router: router.clone(),
    };
    let xmpp_alive = Heartbeat::new("XMPP connection loop");
    let options = fieldbridge_xmpp::ComponentOptions {
        config: cfg.xmpp,
        secret: cfg.secret,
        state_dir: cfg.gateway.state_dir,
        gateway_id: cfg.gateway.id,
        time_zone: cfg.gateway.time_zone,
        alerts: cfg.alerts,
        audit,
        alive: xmpp_alive.clone(),
    };
    let mut xmpp = tokio::spawn(fieldbridge_xmpp::run(
        options,
        Arc::clone(&directory),
        xmpp_events,
        router,
        reloads,
    ));

    // Configuration loaded, adapters running; the link comes when it can.
    let service = Service::ready(vec![engine_alive, xmpp_alive], Arc::clone(&telemetry));

    let early_end = loop {
        tokio::select! {
            signal = stop.recv() => {
                tracing::info!(signal, "stopping");
                break None;
            }
            ended = &mut xmpp => break Some(ended),
            () = hangup.recv() => reloading.reload(&mut adapters).await,
        }
    };

    service.stopping();
    // Only adapters hold event senders now: when they stop, the engine
    // drains and closes the bus.
    adapters.stop_all().await;
    match tokio::time::timeout(STOP_GRACE, engine).await {
        Ok(Ok(())) => {
            let t = &telemetry;
            let sum = |name| t.sum(name, []) as u64;
            let skipped = |cause| t.sum("readings_skipped_total", [("cause", cause)]) as u64;
            tracing::info!(
                received = sum("readings_received_total"),
                published = sum("readings_published_total"),
                updates = sum("updates_published_total"),
                within_deadband = skipped("deadband"),
                rate_limited = skipped("rate_limited"),
                unknown = skipped("unknown"),
                invalid = skipped("invalid"),
                coalesced = sum("readings_coalesced_total"),
                dropped = sum("readings_dropped_total"),
                "normalization stopped"
            );
        }
        Ok(Err(e)) => tracing::error!(error = %e, "normalization engine panicked"),
        Err(_) => tracing::warn!("normalization engine did not stop in time"),
    }

    let xmpp_result = match early_end {
        Some(ended) => ended,
        None => match tokio::time::timeout(STOP_GRACE, &mut xmpp).await {
            Ok(ended) => ended,
            Err(_) => {
                xmpp.abort();
                anyhow::bail!("the XMPP component did not stop within {STOP_GRACE:?}");
            }
        },
    };
    finish_audit(audit_writer).await;
    dashboard_stop.cancel();
    if let Some(served) = dashboard {
        let _ = tokio::time::timeout(STOP_GRACE, served).await;
    }
    // Scrapes answer until the end, so that the last counters can be read.
    ops_stop.cancel();
    if let Some(ops) = ops {
        let _ = tokio::time::timeout(STOP_GRACE, ops).await;
    }
    xmpp_result
        .context("the XMPP component panicked")?
        .context("the XMPP component failed")?;
    tracing::info!("stopped");
    Ok(())
}

/// Waits for the audit writer to write what the component recorded (it
/// has let go of its log by now).
async fn finish_audit(writer: fieldbridge_core::audit::Writer) {
    let finished = tokio::task::spawn_blocking(move || writer.finish());
    if tokio::time::timeout(STOP_GRACE, finished).await.is_err() {
        tracing::warn!("the audit writer did not finish within {STOP_GRACE:?}");
    }
}

/// Starts the dashboard's listener (a busy or refused address stops the
/// start, as a mistake in the file would).
async fn start_dashboard(
    d: &fieldbridge::dashboard::DashboardSettings,
    component: &str,
    stop: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    if let Some(note) = d.missing_files_note() {
        tracing::warn!("{note}");
    }
    let served = fieldbridge::dashboard::serve(d, component, stop)
        .await
        .with_context(|| format!("cannot serve the dashboard on {}", d.listen))?;
    tracing::info!(listen = %d.listen, files = %d.files.display(), "dashboard on http://{}/", d.listen);
    Ok(served)
}

/// SIGINT and SIGTERM (Ctrl-C only, off Unix), listened to from creation.
struct StopSignals {
    #[cfg(unix)]
    unix: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl StopSignals {
    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Self {
                unix: signal(SignalKind::terminate())
                    .ok()
                    .zip(signal(SignalKind::interrupt()).ok()),
            }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// The next stop signal's name.
    async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        if let Some((term, int)) = &mut self.unix {
            return tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
        }
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}

/// SIGHUP (`systemctl reload`): read the configuration again. Never
/// fires off Unix.
struct Hangup {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangup {
    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let signal = signal(SignalKind::hangup())
                .inspect_err(|e| tracing::warn!(error = %e, "cannot listen for SIGHUP: no reloads"))
                .ok();
            Self { signal }
        }
        #[cfg(not(unix))]
        Self {}
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(s) = &mut self.signal
            && s.recv().await.is_some()
        {
            return;
        }
        std::future::pending().await
    }
}
