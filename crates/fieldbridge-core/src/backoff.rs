//! Capped exponential backoff with jitter, for every reconnect loop (XMPP,
//! MQTT, Modbus, serial ports) and for retrying a silent device.
//!
//! Each wait is the nominal delay (`start`, doubling up to `cap`) times a
//! random factor in ±25 %, so that many gateways restarted together do not
//! retry in lockstep, and then capped: no wait is ever longer than `cap`,
//! so a peer back after an outage is found within `cap` (jitter applied
//! after the cap would stretch a 30 s cap to 37.5 s).
//!
//! Written here rather than taken from a crate: none of `backoff`, `backon`
//! or `exponential-backoff` is in the dependency tree, the loops that use
//! it own their sleeping (inside `select!` with shutdown, or as a
//! not-before instant between polls) so a crate's retry/sleep machinery
//! would go unused, and what is needed is thirty lines over `rand`, which
//! core already depends on.

use std::time::Duration;

/// Lowest jitter factor: a wait is at least 75 % of the nominal delay.
const JITTER_LOW: f64 = 0.75;
/// Width of the jitter range: a wait is at most 125 % of the nominal delay
/// (and never past the cap).
const JITTER_SPAN: f64 = 0.5;

/// Capped exponential backoff with ±25 % jitter that never goes past the
/// cap; [`reset`](Backoff::reset) it after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    start: Duration,
    cap: Duration,
    next: Duration,
}

impl Backoff {
    /// Starts at `start` and doubles up to `cap`. A `start` above `cap` is
    /// taken as `cap`.
    pub fn new(start: Duration, cap: Duration) -> Self {
        let start = start.min(cap);
        Self {
            start,
            cap,
            next: start,
        }
    }

    /// The next wait (the nominal delay ±25 %, at most the cap); the
    /// nominal delay doubles for the one after.
    pub fn next_delay(&mut self) -> Duration {
        let nominal = self.next;
        self.next = self.next.saturating_mul(2).min(self.cap);
        jittered(nominal, self.cap, rand::random::<f64>())
    }

    /// Back to the first delay, after a success.
    pub fn reset(&mut self) {
        self.next = self.start;
    }
}

/// `nominal` scaled by `0.75 + 0.5 * unit` (`unit` in `[0, 1]`), at most
/// `cap`; saturates instead of overflowing.
fn jittered(nominal: Duration, cap: Duration, unit: f64) -> Duration {
    let factor = JITTER_LOW + JITTER_SPAN * unit.clamp(0.0, 1.0);
    Duration::try_from_secs_f64(nominal.as_secs_f64() * factor)
        .unwrap_or(cap)
        .min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DRAWS: usize = 2000;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// `[0.75, 1.25] * nominal`, clipped to `cap`.
    fn bounds(nominal: Duration, cap: Duration) -> (Duration, Duration) {
        (
            nominal.mul_f64(0.75).min(cap),
            nominal.mul_f64(1.25).min(cap),
        )
    }

    #[test]
    fn every_delay_doubles_within_its_jitter_and_never_passes_the_cap() {
        let (start, cap) = (ms(250), Duration::from_secs(30));
        let nominal = [250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000];
        for _ in 0..DRAWS / nominal.len() {
            let mut b = Backoff::new(start, cap);
            for n in nominal {
                let d = b.next_delay();
                let (lo, hi) = bounds(ms(n), cap);
                assert!(lo <= d && d <= hi, "{d:?} not within {lo:?}..={hi:?}");
            }
        }
    }

    #[test]
    fn at_the_cap_waits_spread_below_it_and_never_above() {
        let cap = Duration::from_secs(30);
        let mut b = Backoff::new(cap, cap);
        let waits: Vec<Duration> = (0..DRAWS).map(|_| b.next_delay()).collect();
        assert!(waits.iter().all(|d| *d <= cap && *d >= cap.mul_f64(0.75)));
        // Jittered: about half the draws land on the cap itself, the
        // others spread below it (with 2000 draws, none below 29 s has
        // odds of 0.57^2000).
        assert!(waits.iter().any(|d| *d < Duration::from_secs(29)));
        let distinct: std::collections::HashSet<_> = waits.iter().collect();
        assert!(distinct.len() > DRAWS / 4, "{} distinct", distinct.len());
    }

    #[test]
    fn below_the_cap_jitter_reaches_both_sides_of_the_nominal_delay() {
        let nominal = Duration::from_secs(1);
        let mut b = Backoff::new(nominal, Duration::from_secs(60));
        let mut first = Vec::new();
        for _ in 0..DRAWS {
            first.push(b.next_delay());
            b.reset();
        }
        assert!(first.iter().any(|d| *d < nominal.mul_f64(0.9)));
        assert!(first.iter().any(|d| *d > nominal.mul_f64(1.1)));
    }

    #[test]
    fn the_jitter_extremes_are_three_quarters_and_five_quarters_capped() {
        let cap = Duration::from_secs(30);
        assert_eq!(jittered(ms(1000), cap, 0.0), ms(750));
        assert_eq!(jittered(ms(1000), cap, 1.0), ms(1250));
        assert_eq!(jittered(ms(1000), cap, 0.5), ms(1000));
        assert_eq!(jittered(Duration::from_secs(28), cap, 1.0), cap);
        assert_eq!(jittered(Duration::MAX, Duration::MAX, 1.0), Duration::MAX);
    }

    #[test]
    fn reset_starts_over_from_the_first_delay() {
        let (start, cap) = (ms(100), ms(800));
        let mut b = Backoff::new(start, cap);
        for _ in 0..10 {
            b.next_delay();
        }
        let (lo, hi) = bounds(cap, cap);
        let d = b.next_delay();
        assert!(lo <= d && d <= hi, "{d:?} at the cap");
        b.reset();
        for n in [100, 200, 400] {
            let d = b.next_delay();
            let (lo, hi) = bounds(ms(n), cap);
            assert!(
                lo <= d && d <= hi,
                "{d:?} after reset, not within {lo:?}..={hi:?}"
            );
        }
    }

    #[test]
    fn a_start_above_the_cap_waits_at_most_the_cap() {
        let cap = ms(500);
        let mut b = Backoff::new(Duration::from_secs(5), cap);
        for _ in 0..100 {
            let d = b.next_delay();
            assert!(d <= cap && d >= cap.mul_f64(0.75), "{d:?}");
        }
    }

    #[test]
    fn huge_delays_saturate_instead_of_panicking() {
        let mut b = Backoff::new(Duration::MAX / 2, Duration::MAX);
        for _ in 0..4 {
            assert!(b.next_delay() >= Duration::MAX / 4);
        }
    }
}
