//! Proof of life for the loops that must not hang (the normalization
//! engine, the XMPP connection loop): each touches its [`Heartbeat`] every
//! turn of its timer, and whoever watches (the binary's systemd watchdog)
//! asks [`stuck`] whether every one beat recently. A loop that hangs stops
//! beating, the watchdog stops telling systemd that all is well, and
//! systemd restarts the service.
//!
//! A beat is one atomic store: cheap enough for every tick.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// One loop's last sign of life. Clones share it: the loop keeps one to
/// beat, the watchdog another to look at.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    name: &'static str,
    start: Instant,
    /// Milliseconds from `start` to the last beat.
    last: Arc<AtomicU64>,
}

impl Heartbeat {
    /// A heartbeat named for the log (`"XMPP connection loop"`); it counts
    /// as beating now.
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            start: Instant::now(),
            last: Arc::default(),
        }
    }

    /// The loop is alive now.
    pub fn beat(&self) {
        self.beat_at(Instant::now());
    }

    /// The loop was alive at `now` (for a loop that read the clock anyway).
    pub fn beat_at(&self, now: Instant) {
        let since = now.saturating_duration_since(self.start);
        let ms = u64::try_from(since.as_millis()).unwrap_or(u64::MAX);
        self.last.fetch_max(ms, Ordering::Relaxed);
    }

    /// Time since the last beat, as of `now`.
    pub fn age(&self, now: Instant) -> Duration {
        let last = self.start + Duration::from_millis(self.last.load(Ordering::Relaxed));
        now.saturating_duration_since(last)
    }

    /// The loop's name.
    pub fn name(&self) -> &'static str {
        self.name
    }
}

/// The first of `beats` that has not beaten within `limit` of `now`, if any.
pub fn stuck(beats: &[Heartbeat], now: Instant, limit: Duration) -> Option<&Heartbeat> {
    beats.iter().find(|b| b.age(now) > limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_loop_that_stops_beating_is_named_as_stuck() {
        let engine = Heartbeat::new("engine");
        let xmpp = Heartbeat::new("xmpp");
        // What the watchdog holds: clones, sharing the beats.
        let watched = [engine.clone(), xmpp.clone()];
        let limit = Duration::from_secs(2);
        assert!(stuck(&watched, Instant::now(), limit).is_none());

        // Both beat every second for a while: never stuck.
        for _ in 0..5 {
            tokio::time::advance(Duration::from_secs(1)).await;
            engine.beat();
            xmpp.beat();
            assert!(stuck(&watched, Instant::now(), limit).is_none());
        }
        // The XMPP loop hangs: within the limit it still passes, past it
        // it is the one named.
        for second in 1..=3 {
            tokio::time::advance(Duration::from_secs(1)).await;
            engine.beat();
            let found = stuck(&watched, Instant::now(), limit);
            if second <= 2 {
                assert!(found.is_none(), "{second} s");
            } else {
                assert_eq!(found.map(Heartbeat::name), Some("xmpp"));
            }
        }
        assert_eq!(watched[1].age(Instant::now()), Duration::from_secs(3));
        // It comes back: fine again.
        xmpp.beat();
        assert!(stuck(&watched, Instant::now(), limit).is_none());
    }
}
