//! systemd's notify protocol (`Type=notify`, through the `sd-notify`
//! crate): `READY=1` once the configuration is loaded and the adapters run
//! (not waiting for the XMPP link, which reconnects by itself: a server
//! that is down must not fail the start), `STATUS=` with a one-line
//! summary whenever it changes, `WATCHDOG=1` while every loop that must
//! not hang proves it is alive, `STOPPING=1` at shutdown.
//!
//! The watchdog pings at half of `WATCHDOG_USEC` when every
//! [`Heartbeat`] beat within `WATCHDOG_USEC`; when one did not, it logs
//! which loop is stuck and stops pinging, so that systemd restarts the
//! service. Without `NOTIFY_SOCKET` (not started by systemd) nothing here
//! does anything.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fieldbridge_core::telemetry::{Health, Telemetry};
use fieldbridge_core::watchdog::{self, Heartbeat};
use sd_notify::NotifyState;
use tokio::time::{Instant, MissedTickBehavior};

/// The shortest time a loop may go without a beat before it counts as
/// stuck, whatever `WATCHDOG_USEC` says: the slowest loop beats every
/// second.
const MIN_STALE: Duration = Duration::from_secs(2);

/// The one-line summary systemd shows (`systemctl status`), from the same
/// health snapshot as `/healthz`.
pub fn status_line(health: &Health) -> String {
    let link = if health.link_up {
        "XMPP link up"
    } else {
        "XMPP link down (connecting)"
    };
    let d = &health.devices;
    let total = d.online + d.stale + d.offline + d.unknown;
    let s = if total == 1 { "" } else { "s" };
    let by_status: Vec<String> = [
        (d.online, "online"),
        (d.stale, "stale"),
        (d.offline, "offline"),
        (d.unknown, "not heard from yet"),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect();
    if by_status.is_empty() {
        format!("{link}; {total} device{s}")
    } else {
        format!("{link}; {total} device{s}: {}", by_status.join(", "))
    }
}

/// How often the status line is looked at (sent only when it changed).
const STATUS_EVERY: Duration = Duration::from_secs(1);

/// The gateway as a systemd service.
#[derive(Debug)]
pub struct Service {
    /// Whether systemd listens (`NOTIFY_SOCKET` is set).
    enabled: bool,
    /// Set at shutdown: the loops stop on purpose, the watchdog keeps
    /// pinging (`TimeoutStopSec` bounds the stop).
    stopping: Arc<AtomicBool>,
}

impl Service {
    /// Says `READY=1` with the first `STATUS=`, then keeps `STATUS=` up to
    /// date with `telemetry`'s health and, when systemd asks for it, the watchdog
    /// going over `beats`. Needs a tokio runtime.
    pub fn ready(beats: Vec<Heartbeat>, telemetry: Arc<Telemetry>) -> Self {
        let enabled = std::env::var_os("NOTIFY_SOCKET").is_some();
        let stopping = Arc::new(AtomicBool::new(false));
        if !enabled {
            return Self { enabled, stopping };
        }
        let mut sent = status_line(&telemetry.health());
        notify(&[NotifyState::Ready, NotifyState::Status(&sent)]);
        tracing::info!(status = %sent, "told systemd we are ready");
        let stopped = Arc::clone(&stopping);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(STATUS_EVERY);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            // `stopping` says "stopping" from then on.
            while !stopped.load(Ordering::Relaxed) {
                tick.tick().await;
                let line = status_line(&telemetry.health());
                if line != sent && !stopped.load(Ordering::Relaxed) {
                    notify(&[NotifyState::Status(&line)]);
                    sent = line;
                }
            }
        });
        if let Some(timeout) = sd_notify::watchdog_enabled() {
            let every = (timeout / 2).max(Duration::from_millis(100));
            tracing::info!(?timeout, ?every, "systemd watchdog on");
            let mut watch = Watch::new(beats, timeout, Arc::clone(&stopping));
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    if watch.check(Instant::now()) {
                        notify(&[NotifyState::Watchdog]);
                    }
                }
            });
        }
        Self { enabled, stopping }
    }

    /// Says `STOPPING=1`: the gateway is shutting down on purpose.
    pub fn stopping(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        if self.enabled {
            notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
        }
    }
}

/// Sends to systemd; a failure is logged, never fatal (systemd restarts a
/// service whose watchdog stays silent: that is the outcome anyway).
fn notify(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// The watchdog's judgement, turn by turn: ping or not, and the log lines
/// when a loop gets stuck and when it is back.
#[derive(Debug)]
struct Watch {
    beats: Vec<Heartbeat>,
    stale_after: Duration,
    stopping: Arc<AtomicBool>,
    stuck: Option<&'static str>,
}

impl Watch {
    fn new(beats: Vec<Heartbeat>, timeout: Duration, stopping: Arc<AtomicBool>) -> Self {
        Self {
            beats,
            stale_after: timeout.max(MIN_STALE),
            stopping,
            stuck: None,
        }
    }

    /// Whether to ping now: every loop beat recently, or the gateway is
    /// stopping.
    fn check(&mut self, now: Instant) -> bool {
        if self.stopping.load(Ordering::Relaxed) {
            return true;
        }
        match watchdog::stuck(&self.beats, now, self.stale_after) {
            None => {
                if let Some(name) = self.stuck.take() {
                    tracing::warn!(
                        stuck = name,
                        "the loop is alive again: watchdog pings resume"
                    );
                }
                true
            }
            Some(b) => {
                if self.stuck != Some(b.name()) {
                    self.stuck = Some(b.name());
                    tracing::error!(
                        stuck = b.name(),
                        silent_for = ?b.age(now),
                        "a loop that must not hang is stuck: no more watchdog pings, systemd will restart the service"
                    );
                }
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_line_says_link_and_devices_by_status() {
        let mut health = Health {
            link_up: true,
            adapters_running: 1,
            adapters_configured: 1,
            devices: Default::default(),
            problem: None,
        };
        health.devices.online = 2;
        health.devices.offline = 1;
        assert_eq!(
            status_line(&health),
            "XMPP link up; 3 devices: 2 online, 1 offline"
        );
        health.link_up = false;
        health.devices = Default::default();
        health.devices.unknown = 1;
        assert_eq!(
            status_line(&health),
            "XMPP link down (connecting); 1 device: 1 not heard from yet"
        );
        health.devices = Default::default();
        assert_eq!(
            status_line(&health),
            "XMPP link down (connecting); 0 devices"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stale_heartbeat_stops_the_pings_until_it_beats_again() {
        let engine = Heartbeat::new("normalization engine");
        let xmpp = Heartbeat::new("XMPP connection loop");
        let stopping = Arc::new(AtomicBool::new(false));
        let mut watch = Watch::new(
            vec![engine.clone(), xmpp.clone()],
            Duration::from_secs(4),
            Arc::clone(&stopping),
        );
        let second = Duration::from_secs(1);
        // Both loops beat every second: a ping every turn.
        for _ in 0..10 {
            tokio::time::advance(second).await;
            engine.beat();
            xmpp.beat();
            assert!(watch.check(Instant::now()));
        }
        // The XMPP loop hangs: pings go on within WATCHDOG_USEC, then stop.
        let mut pinged = Vec::new();
        for _ in 0..8 {
            tokio::time::advance(second).await;
            engine.beat();
            pinged.push(watch.check(Instant::now()));
        }
        assert_eq!(pinged, [true, true, true, true, false, false, false, false]);
        assert_eq!(watch.stuck, Some("XMPP connection loop"));
        // It comes back: pings resume.
        xmpp.beat();
        assert!(watch.check(Instant::now()));
        assert_eq!(watch.stuck, None);
        // Stopping on purpose: the loops end, the pings do not.
        stopping.store(true, Ordering::Relaxed);
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(watch.check(Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_short_watchdog_still_lets_the_slowest_loop_beat() {
        let xmpp = Heartbeat::new("XMPP connection loop");
        let mut watch = Watch::new(
            vec![xmpp.clone()],
            Duration::from_millis(500),
            Arc::default(),
        );
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert!(watch.check(Instant::now()), "within MIN_STALE");
        tokio::time::advance(Duration::from_millis(1000)).await;
        assert!(!watch.check(Instant::now()));
    }
}
