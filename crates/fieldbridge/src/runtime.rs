//! Wiring: one adapter per connection → normalization → bus → XMPP
//! component, and the orderly stop.
//!
//! Once the adapters run, systemd hears `READY=1` ([`crate::systemd`]).
//! On SIGINT/SIGTERM the adapters are cancelled first; when the last one
//! has let go of its event sender the engine publishes what it still held
//! and closes the bus; the component then sends every device's last
//! "unavailable" presence, saves its state and closes the stream.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use fieldbridge::config::GatewayConfig;
use fieldbridge_core::adapter::AdapterContext;
use fieldbridge_core::bus::{Bus, DEFAULT_QUEUE};
use fieldbridge_core::command::{CommandRoutes, DEFAULT_COMMAND_TIMEOUT};
use fieldbridge_core::normalize;
use fieldbridge_core::telemetry::Telemetry;
use fieldbridge_core::watchdog::Heartbeat;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::systemd::Service;

/// How long each stage of the stop may take before we stop waiting for it.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Runs the gateway until a stop signal, or until the XMPP side fails for good.
pub async fn run(cfg: GatewayConfig) -> anyhow::Result<()> {
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
    telemetry.set_adapters_configured(cfg.connections.len());
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
    let (events, engine) = normalize::spawn_watched(directory.clone(), bus, engine_alive.clone());

    let shutdown = CancellationToken::new();
    let mut routes = CommandRoutes::new();
    let mut adapters = JoinSet::new();
    let build = cfg.build_context();
    for connection in cfg.connections {
        let connection_id = connection.id.clone();
        let adapter = connection.kind.build(connection.id, &build);
        let name = adapter.name();
        let ctx = AdapterContext {
            events: events.clone(),
            // By connection too: devices an adapter adds at run time (MQTT
            // template rules) get their commands.
            commands: routes.register_connection(&connection_id, adapter.devices()),
            shutdown: shutdown.child_token(),
        };
        tracing::debug!(adapter = %name, "starting adapter");
        let running = telemetry.adapter_running();
        let run = adapter.run(ctx);
        adapters.spawn(async move {
            run.await;
            // Counted as running until its loop returns.
            drop(running);
        });
    }
    // From here on only adapters hold event senders: when they stop, the
    // engine drains and closes the bus.
    drop(events);
    let router = routes.into_router(directory.clone(), DEFAULT_COMMAND_TIMEOUT);

    let xmpp_alive = Heartbeat::new("XMPP connection loop");
    let (link_up, link_state) = tokio::sync::watch::channel(false);
    let options = fieldbridge_xmpp::ComponentOptions {
        config: cfg.xmpp,
        secret: cfg.secret,
        state_dir: cfg.gateway.state_dir,
        gateway_id: cfg.gateway.id,
        time_zone: cfg.gateway.time_zone,
        audit,
        alive: xmpp_alive.clone(),
        link_up,
    };
    let mut xmpp = tokio::spawn(fieldbridge_xmpp::run(
        options,
        Arc::clone(&directory),
        xmpp_events,
        router,
    ));

    // Configuration loaded, adapters running; the link comes when it can.
    let service = Service::ready(vec![engine_alive, xmpp_alive], link_state, directory.len());

    let early_end = tokio::select! {
        signal = stop_signal() => {
            tracing::info!(signal, "stopping");
            None
        }
        ended = &mut xmpp => Some(ended),
    };

    service.stopping();
    shutdown.cancel();
    let adapters_stopped = tokio::time::timeout(STOP_GRACE, async {
        while let Some(result) = adapters.join_next().await {
            if let Err(e) = result {
                tracing::error!(error = %e, "an adapter panicked");
            }
        }
    })
    .await;
    if adapters_stopped.is_err() {
        tracing::warn!("adapters did not stop within {STOP_GRACE:?}; abandoning them");
        adapters.abort_all();
    }
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

/// Waits for SIGINT or SIGTERM (Ctrl-C only, off Unix).
async fn stop_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            },
            _ => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}
