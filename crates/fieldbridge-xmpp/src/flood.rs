//! Per-sender rate limits: one sender's flood must not delay anyone
//! else's answers.
//!
//! The gateway handles stanzas one at a time on one task, so every stanza
//! of a flood is work done before the next person's request. Each sender
//! (bare JID) has a token bucket: a burst large enough for a client that
//! logs in and asks about every device at once, refilled at a rate no
//! person or dashboard reaches. Past it, the sender's stanzas are refused
//! cheaply until it slows down.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;
use xmpp_parsers::jid::BareJid;

/// Stanzas a sender may send at once.
pub const BURST: f64 = 200.0;

/// Stanzas per second a sender may keep sending.
pub const RATE: f64 = 50.0;

/// Senders tracked at once; beyond it, senders whose bucket is full again
/// (who could as well be new) are forgotten.
const MAX_SENDERS: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
    /// Whether the sender is over the limit now (for logging once per flood).
    over: bool,
}

impl Bucket {
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * RATE).min(BURST);
        self.at = now;
    }
}

/// What [`SenderLimits::check`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the limit.
    Allowed,
    /// Over it: the first stanza refused in this flood.
    FloodStarts,
    /// Over it, and already said so.
    Refused,
}

/// Token buckets by sender.
#[derive(Debug, Default)]
pub struct SenderLimits {
    buckets: HashMap<BareJid, Bucket>,
}

impl SenderLimits {
    /// Takes one stanza from `sender`'s allowance.
    pub fn check(&mut self, sender: &BareJid, now: Instant) -> Verdict {
        if self.buckets.len() >= MAX_SENDERS && !self.buckets.contains_key(sender) {
            self.forget_idle(now);
        }
        let bucket = self.buckets.entry(sender.clone()).or_insert(Bucket {
            tokens: BURST,
            at: now,
            over: false,
        });
        bucket.refill(now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            // A flood is over once the sender has let half its allowance
            // come back, not at the first token: a sender that keeps
            // pushing at the limit is one flood, logged once.
            if bucket.tokens >= BURST / 2.0 {
                bucket.over = false;
            }
            Verdict::Allowed
        } else if bucket.over {
            Verdict::Refused
        } else {
            bucket.over = true;
            Verdict::FloodStarts
        }
    }

    fn forget_idle(&mut self, now: Instant) {
        let full_after = Duration::from_secs_f64(BURST / RATE);
        self.buckets
            .retain(|_, b| now.saturating_duration_since(b.at) < full_after);
    }

    /// Senders tracked now.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no sender is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(s: &str) -> BareJid {
        BareJid::new(s).unwrap()
    }

    #[test]
    fn a_flood_is_cut_at_the_burst_and_refills_at_the_rate() {
        let mut l = SenderLimits::default();
        let now = Instant::now();
        let eve = jid("eve@example.org");
        let allowed = (0..1000)
            .filter(|_| l.check(&eve, now) == Verdict::Allowed)
            .count();
        assert_eq!(allowed, BURST as usize);
        // The first refusal is flagged once per flood.
        let mut l2 = SenderLimits::default();
        let verdicts: Vec<Verdict> = (0..BURST as usize + 3)
            .map(|_| l2.check(&eve, now))
            .collect();
        assert_eq!(verdicts[BURST as usize], Verdict::FloodStarts);
        assert_eq!(verdicts[BURST as usize + 1], Verdict::Refused);
        // Someone else is not affected.
        assert_eq!(l.check(&jid("alice@example.org"), now), Verdict::Allowed);
        // Trickling in at the rate, the flood goes on: said once.
        let mut t = now;
        for _ in 0..100 {
            t += Duration::from_secs_f64(1.0 / RATE);
            let _ = l2.check(&eve, t);
            assert_ne!(l2.check(&eve, t), Verdict::FloodStarts);
        }
        // One second later, RATE more.
        let later = now + Duration::from_secs(1);
        let allowed = (0..1000)
            .filter(|_| l.check(&eve, later) == Verdict::Allowed)
            .count();
        assert_eq!(allowed, RATE as usize);
    }

    #[test]
    fn the_table_of_senders_stays_bounded() {
        let mut l = SenderLimits::default();
        let start = Instant::now();
        for i in 0..MAX_SENDERS {
            l.check(&jid(&format!("u{i}@example.org")), start);
        }
        assert_eq!(l.len(), MAX_SENDERS);
        // Once they are idle long enough to be full again, they make room.
        let later = start + Duration::from_secs_f64(BURST / RATE + 1.0);
        assert_eq!(l.check(&jid("new@example.org"), later), Verdict::Allowed);
        assert_eq!(l.len(), 1);
    }
}
