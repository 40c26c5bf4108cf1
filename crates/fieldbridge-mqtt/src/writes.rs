//! Which write a broker acknowledgement answers.
//!
//! rumqttc 0.25 gives no handle per publish: `try_publish` returns `()`,
//! the packet id it picks shows up later as `Outgoing::Publish(pkid)` (0 for
//! QoS 0), and the broker's PUBACK names only that id. So `Writes` matches
//! writes to packet ids by order. This is sound because of what rumqttc
//! 0.25.1 does (its `EventLoop::poll`, `clean` and `MqttState`):
//!
//! 1. It handles requests one at a time, in the order they were queued, and
//!    emits `Outgoing::Publish` as it handles each; events reach the adapter
//!    in order. So within one connection the n-th publish event not
//!    explained otherwise belongs to the n-th write still unsent.
//! 2. When the connection fails it moves the QoS 1 publishes not yet
//!    acknowledged (keeping their ids) and every request still queued into
//!    its `pending` list. The session then closes the [`Gate`] and drains
//!    the queue once more, so that no publish queued between rumqttc's
//!    drain and the adapter hearing of the failure escapes that list.
//! 3. After a ConnAck with a session, it sends `pending` first, before any
//!    new request: the unacknowledged ones under their old ids, the others
//!    in order. Without a session it drops `pending`. Either way the writes
//!    answered at the failure are accounted for: by id, by count, or gone.
//! 4. A new publish never gets an id rumqttc still holds: it waits
//!    ("collision") for that id's PUBACK, which the adapter sees first.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;

use fieldbridge_core::{AdapterError, DeviceId, PointId, Value};
use rumqttc::QoS;
use tokio::sync::oneshot;

/// A write waiting for its publish to be sent or acknowledged.
#[derive(Debug)]
pub(crate) struct PendingWrite {
    pub value: Value,
    pub reply: oneshot::Sender<Result<Value, AdapterError>>,
    pub device: DeviceId,
    pub point: PointId,
}

/// What a write publishes, and the write to answer when it is done.
#[derive(Debug)]
pub(crate) struct WriteRequest {
    pub topic: String,
    pub qos: QoS,
    pub retain: bool,
    pub payload: Vec<u8>,
    pub write: PendingWrite,
}

/// Writes from `try_publish` to their answer. `W` is the write (generic so
/// that the bookkeeping is tested on its own).
#[derive(Debug)]
pub(crate) struct Writes<W> {
    /// Handed to rumqttc, in order, not yet given a packet id.
    unsent: VecDeque<(QoS, W)>,
    /// QoS 1, sent, waiting for the PUBACK.
    inflight: HashMap<u16, W>,
    /// Publishes of writes already answered (at a connection failure) that
    /// rumqttc still holds unsent: their events come before any new one.
    stale: usize,
    /// Ids of QoS 1 publishes of writes already answered that rumqttc sends
    /// again on a resumed session, until their PUBACK.
    replays: HashSet<u16>,
}

impl<W> Default for Writes<W> {
    fn default() -> Self {
        Self {
            unsent: VecDeque::new(),
            inflight: HashMap::new(),
            stale: 0,
            replays: HashSet::new(),
        }
    }
}

impl<W> Writes<W> {
    /// `write` was handed to rumqttc at `qos`.
    pub fn queued(&mut self, qos: QoS, write: W) {
        self.unsent.push_back((qos, write));
    }

    /// rumqttc sent a publish with `pkid`: a QoS 0 write is done (returned).
    pub fn sent(&mut self, pkid: u16) -> Option<W> {
        if pkid != 0 && self.replays.contains(&pkid) {
            return None;
        }
        if self.stale > 0 {
            self.stale -= 1;
            if pkid != 0 {
                // A stale QoS 1 publish, now rumqttc's to resend.
                self.replays.insert(pkid);
            }
            return None;
        }
        match self.unsent.pop_front()? {
            (QoS::AtMostOnce, w) => Some(w),
            (_, w) => {
                self.inflight.insert(pkid, w);
                None
            }
        }
    }

    /// The broker acknowledged `pkid`: its write, if it is still waiting.
    pub fn acked(&mut self, pkid: u16) -> Option<W> {
        self.replays.remove(&pkid);
        self.inflight.remove(&pkid)
    }

    /// The connection failed: every waiting write, to be answered now.
    /// rumqttc keeps their publishes; their events are recognized later.
    pub fn connection_lost(&mut self) -> Vec<W> {
        self.stale += self.unsent.len();
        let mut lost: Vec<W> = self.unsent.drain(..).map(|(_, w)| w).collect();
        for (pkid, w) in self.inflight.drain() {
            self.replays.insert(pkid);
            lost.push(w);
        }
        lost
    }

    /// Connected again. Without a session rumqttc dropped what it held.
    pub fn connected(&mut self, session_present: bool) {
        if !session_present {
            self.stale = 0;
            self.replays.clear();
        }
    }

    /// Every write still waiting (the adapter stops).
    pub fn drain(&mut self) -> Vec<W> {
        let mut all: Vec<W> = self.unsent.drain(..).map(|(_, w)| w).collect();
        all.extend(self.inflight.drain().map(|(_, w)| w));
        all
    }
}

/// Open while the session is connected. The session closes it, and makes
/// rumqttc take every queued request into its `pending` list, under the
/// lock; a publish happens under the same lock, so none is queued after
/// that drain and before the adapter hears of the failure (point 2 above).
#[derive(Debug, Default)]
pub struct Gate(Mutex<bool>);

impl Gate {
    fn lock(&self) -> std::sync::MutexGuard<'_, bool> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Connected: publishes may go.
    pub fn open(&self) {
        *self.lock() = true;
    }

    /// The connection failed: closes, then runs `drain` (rumqttc's `clean`).
    pub fn close(&self, drain: impl FnOnce()) {
        let mut open = self.lock();
        *open = false;
        drain();
    }

    /// Runs `publish` if open; `None` when closed.
    pub(crate) fn publish<R>(&self, publish: impl FnOnce() -> R) -> Option<R> {
        let open = self.lock();
        (*open).then(publish)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q0: QoS = QoS::AtMostOnce;
    const Q1: QoS = QoS::AtLeastOnce;

    #[test]
    fn in_order_qos0_is_done_when_sent_and_qos1_when_acknowledged() {
        let mut w = Writes::default();
        w.queued(Q1, "a");
        w.queued(Q0, "b");
        w.queued(Q1, "c");
        assert_eq!(w.sent(1), None);
        assert_eq!(w.sent(0), Some("b"));
        assert_eq!(w.sent(2), None);
        assert_eq!(w.acked(1), Some("a"));
        assert_eq!(w.acked(2), Some("c"));
        assert_eq!(w.acked(2), None, "answered once");
        assert!(w.drain().is_empty());
    }

    #[test]
    fn acknowledgements_out_of_order_answer_their_own_write() {
        let mut w = Writes::default();
        for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
            w.queued(Q1, name);
            assert_eq!(w.sent(i as u16 + 1), None);
        }
        assert_eq!(w.acked(3), Some("c"));
        assert_eq!(w.acked(1), Some("a"));
        assert_eq!(w.acked(7), None, "an unknown id answers nothing");
        assert_eq!(w.acked(2), Some("b"));
    }

    #[test]
    fn a_resumed_session_resends_lost_writes_before_new_ones() {
        let mut w = Writes::default();
        w.queued(Q1, "inflight");
        assert_eq!(w.sent(5), None);
        w.queued(Q1, "unsent");
        w.queued(Q0, "unsent0");
        let mut lost = w.connection_lost();
        lost.sort_unstable();
        assert_eq!(lost, ["inflight", "unsent", "unsent0"]);
        w.connected(true);
        w.queued(Q1, "new");
        // rumqttc: the replay under its id, the orphans in order, then new.
        assert_eq!(w.sent(5), None);
        assert_eq!(w.sent(6), None);
        assert_eq!(w.sent(0), None);
        assert_eq!(w.sent(7), None);
        assert_eq!(w.acked(5), None, "already answered");
        assert_eq!(w.acked(6), None, "already answered");
        assert_eq!(w.acked(7), Some("new"));
    }

    #[test]
    fn an_orphan_sent_and_lost_again_is_recognized_when_resent() {
        let mut w = Writes::default();
        w.queued(Q1, "a");
        assert_eq!(w.connection_lost(), ["a"]);
        w.connected(true);
        assert_eq!(w.sent(1), None, "the orphan");
        assert!(w.connection_lost().is_empty());
        w.connected(true);
        w.queued(Q1, "b");
        assert_eq!(w.sent(1), None, "the orphan again, under its id");
        assert_eq!(w.sent(2), None);
        assert_eq!(w.acked(1), None);
        assert_eq!(w.acked(2), Some("b"));
    }

    #[test]
    fn without_a_session_nothing_lost_comes_back() {
        let mut w = Writes::default();
        w.queued(Q1, "inflight");
        assert_eq!(w.sent(1), None);
        w.queued(Q1, "unsent");
        assert_eq!(w.connection_lost().len(), 2);
        w.connected(false);
        // rumqttc dropped both; ids start again where they were.
        w.queued(Q1, "new");
        w.queued(Q0, "new0");
        assert_eq!(w.sent(1), None, "id 1 again, for a new write");
        assert_eq!(w.sent(0), Some("new0"));
        assert_eq!(w.acked(1), Some("new"));
    }

    #[test]
    fn a_reused_id_after_its_replay_was_acknowledged_is_a_new_write() {
        let mut w = Writes::default();
        w.queued(Q1, "old");
        assert_eq!(w.sent(3), None);
        assert_eq!(w.connection_lost(), ["old"]);
        w.connected(true);
        assert_eq!(w.sent(3), None, "replay");
        assert_eq!(w.acked(3), None);
        w.queued(Q1, "new");
        assert_eq!(w.sent(3), None);
        assert_eq!(w.acked(3), Some("new"));
    }

    #[test]
    fn the_gate_refuses_publishes_while_closed_and_drains_under_its_lock() {
        let gate = Gate::default();
        assert_eq!(gate.publish(|| 1), None, "closed until the first ConnAck");
        gate.open();
        assert_eq!(gate.publish(|| 2), Some(2));
        let mut drained = false;
        gate.close(|| drained = true);
        assert!(drained);
        assert_eq!(gate.publish(|| 3), None);
    }
}
