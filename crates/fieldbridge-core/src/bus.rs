//! The event bus: fan-out from core to every sink, bounded, never blocking.
//!
//! Each sink has its own mailbox: a bounded queue, and behind it an overflow
//! that keeps only the newest event per point (and per device status). A
//! sink that falls behind therefore costs memory proportional to the number
//! of points, never to time, and field polling never waits on it. What the
//! overflow replaces is counted and logged once per lag episode.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::event::{DeviceEvent, EventKind};
use crate::id::{DeviceId, PointId};

/// Events a sink's mailbox queues in order before it starts coalescing.
pub const DEFAULT_QUEUE: usize = 4096;

/// Overflow keys kept at most (one per point and per device status); far
/// above any real configuration, there only to bound a misbehaving adapter.
const MAX_OVERFLOW_KEYS: usize = 1 << 20;

/// Publishes events to every subscribed sink. Dropping it closes the bus:
/// sinks drain what is left and then see the end.
#[derive(Debug)]
pub struct Bus {
    mailboxes: Mutex<Vec<Arc<Mailbox>>>,
    queue: usize,
}

/// A sink's end of the bus.
#[derive(Debug)]
pub struct Subscription {
    mailbox: Arc<Mailbox>,
}

/// Counters of one sink's mailbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MailboxStats {
    /// Events replaced by a newer one for the same point while the sink lagged.
    pub coalesced: u64,
    /// Events dropped because the overflow was full (a misbehaving adapter).
    pub dropped: u64,
}

#[derive(Debug)]
struct Mailbox {
    sink: String,
    state: Mutex<MailboxState>,
    notify: Notify,
}

#[derive(Debug, Default)]
struct MailboxState {
    queue: VecDeque<DeviceEvent>,
    overflow: Overflow,
    closed: bool,
    detached: bool,
    stats: MailboxStats,
    coalesced_this_episode: u64,
    lagging: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Reading(DeviceId, PointId),
    Status(DeviceId),
}

/// Newest event per key, in the order keys were last written.
#[derive(Debug, Default)]
struct Overflow {
    order: BTreeMap<u64, Key>,
    entries: HashMap<Key, (u64, DeviceEvent)>,
    next_seq: u64,
}

impl Overflow {
    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Inserts; returns whether an older event for the same key was replaced,
    /// or `None` if the overflow is full.
    fn put(&mut self, key: Key, event: DeviceEvent) -> Option<bool> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let replaced = match self.entries.get_mut(&key) {
            Some(entry) => {
                self.order.remove(&entry.0);
                *entry = (seq, event);
                true
            }
            None => {
                if self.entries.len() >= MAX_OVERFLOW_KEYS {
                    return None;
                }
                self.entries.insert(key.clone(), (seq, event));
                false
            }
        };
        self.order.insert(seq, key);
        Some(replaced)
    }

    fn pop(&mut self) -> Option<DeviceEvent> {
        let (_, key) = self.order.pop_first()?;
        self.entries.remove(&key).map(|(_, e)| e)
    }
}

fn lock(m: &Mutex<MailboxState>) -> MutexGuard<'_, MailboxState> {
    // A panic while holding this lock cannot leave the state inconsistent
    // in a way worse than losing events, so keep going.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Bus {
    /// A bus whose sinks queue `queue` events in order before coalescing.
    pub fn new(queue: usize) -> Self {
        Self {
            mailboxes: Mutex::new(Vec::new()),
            queue: queue.max(1),
        }
    }

    /// Adds a sink; it sees every event published from now on.
    pub fn subscribe(&self, sink: &str) -> Subscription {
        let mailbox = Arc::new(Mailbox {
            sink: sink.to_owned(),
            state: Mutex::new(MailboxState::default()),
            notify: Notify::new(),
        });
        self.mailboxes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(mailbox.clone());
        Subscription { mailbox }
    }

    /// Hands the event to every sink without waiting for any of them.
    pub fn publish(&self, event: DeviceEvent) {
        let mut boxes = self.mailboxes.lock().unwrap_or_else(|p| p.into_inner());
        boxes.retain(|m| !lock(&m.state).detached);
        let Some((last, rest)) = boxes.split_last() else {
            return;
        };
        for m in rest {
            m.deliver(event.clone(), self.queue);
        }
        last.deliver(event, self.queue);
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        for m in self
            .mailboxes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            lock(&m.state).closed = true;
            m.notify.notify_one();
        }
    }
}

impl Mailbox {
    fn deliver(&self, event: DeviceEvent, queue: usize) {
        let mut st = lock(&self.state);
        if st.overflow.is_empty() && st.queue.len() < queue {
            st.queue.push_back(event);
        } else {
            if !st.lagging {
                st.lagging = true;
                tracing::warn!(
                    sink = %self.sink,
                    "sink is falling behind; keeping only the newest value per point until it catches up"
                );
            }
            let key = match &event.kind {
                EventKind::Reading(r) => Key::Reading(event.device.clone(), r.point.clone()),
                EventKind::Status(_) => Key::Status(event.device.clone()),
            };
            match st.overflow.put(key, event) {
                Some(true) => {
                    st.stats.coalesced += 1;
                    st.coalesced_this_episode += 1;
                }
                Some(false) => {}
                None => {
                    st.stats.dropped += 1;
                    if st.stats.dropped.is_power_of_two() {
                        tracing::error!(
                            sink = %self.sink,
                            dropped = st.stats.dropped,
                            "sink overflow is full; dropping events"
                        );
                    }
                }
            }
        }
        drop(st);
        self.notify.notify_one();
    }
}

impl Subscription {
    /// The next event, in publication order per point; `None` once the bus
    /// is closed and everything has been delivered.
    pub async fn recv(&mut self) -> Option<DeviceEvent> {
        loop {
            if let Some(next) = self.try_next() {
                return next;
            }
            self.mailbox.notify.notified().await;
        }
    }

    /// The next event if one is ready, without waiting. `Some(None)` means the
    /// bus is closed and drained.
    pub fn try_recv(&mut self) -> Option<Option<DeviceEvent>> {
        self.try_next()
    }

    fn try_next(&mut self) -> Option<Option<DeviceEvent>> {
        let mut st = lock(&self.mailbox.state);
        if let Some(e) = st.queue.pop_front() {
            return Some(Some(e));
        }
        if let Some(e) = st.overflow.pop() {
            return Some(Some(e));
        }
        if st.lagging {
            st.lagging = false;
            let n = std::mem::take(&mut st.coalesced_this_episode);
            tracing::warn!(
                sink = %self.mailbox.sink,
                coalesced = n,
                "sink caught up; {n} readings were replaced by newer values of the same point"
            );
        }
        if st.closed {
            return Some(None);
        }
        None
    }

    /// Counters since the subscription began.
    pub fn stats(&self) -> MailboxStats {
        lock(&self.mailbox.state).stats
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        lock(&self.mailbox.state).detached = true;
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::event::DeviceStatus;
    use crate::value::{Quality, Reading, Value};

    fn reading(device: &str, point: &str, v: i64) -> DeviceEvent {
        DeviceEvent {
            device: DeviceId::new(device).unwrap(),
            at: SystemTime::UNIX_EPOCH,
            kind: EventKind::Reading(Reading {
                point: PointId::new(point).unwrap(),
                value: Value::Int(v),
                unit: None,
                quality: Quality::Good,
            }),
        }
    }

    fn int(e: &DeviceEvent) -> (String, i64) {
        match &e.kind {
            EventKind::Reading(r) => match r.value {
                Value::Int(i) => (r.point.to_string(), i),
                _ => unreachable!(),
            },
            EventKind::Status(_) => ("status".into(), -1),
        }
    }

    fn drain(sub: &mut Subscription) -> Vec<(String, i64)> {
        let mut out = Vec::new();
        while let Some(Some(e)) = sub.try_recv() {
            out.push(int(&e));
        }
        out
    }

    #[test]
    fn a_fast_sink_gets_everything_in_order() {
        let bus = Bus::new(8);
        let mut sub = bus.subscribe("t");
        for i in 0..5 {
            bus.publish(reading("d", "p", i));
        }
        let got: Vec<i64> = drain(&mut sub).into_iter().map(|(_, v)| v).collect();
        assert_eq!(got, vec![0, 1, 2, 3, 4]);
        assert_eq!(sub.stats(), MailboxStats::default());
    }

    #[test]
    fn a_lagging_sink_keeps_the_newest_value_per_point_and_counts_the_rest() {
        let bus = Bus::new(2);
        let mut sub = bus.subscribe("slow");
        // Two fit the queue; then a, b, a, a overflow: a is replaced twice.
        bus.publish(reading("d", "a", 1));
        bus.publish(reading("d", "b", 1));
        bus.publish(reading("d", "a", 2));
        bus.publish(reading("d", "b", 2));
        bus.publish(reading("d", "a", 3));
        bus.publish(reading("d", "a", 4));
        let got = drain(&mut sub);
        assert_eq!(
            got,
            vec![
                ("a".into(), 1),
                ("b".into(), 1),
                ("b".into(), 2),
                ("a".into(), 4)
            ]
        );
        assert_eq!(sub.stats().coalesced, 2);
    }

    #[test]
    fn one_slow_sink_does_not_hold_back_another() {
        let bus = Bus::new(1);
        let mut slow = bus.subscribe("slow");
        let mut fast = bus.subscribe("fast");
        for i in 0..3 {
            bus.publish(reading("d", "p", i));
            assert_eq!(drain(&mut fast), vec![("p".into(), i)]);
        }
        assert_eq!(drain(&mut slow), vec![("p".into(), 0), ("p".into(), 2)]);
        assert_eq!(fast.stats().coalesced, 0);
        assert_eq!(slow.stats().coalesced, 1);
    }

    #[tokio::test]
    async fn closing_the_bus_ends_subscriptions_after_draining() {
        let bus = Bus::new(4);
        let mut sub = bus.subscribe("t");
        bus.publish(DeviceEvent {
            device: DeviceId::new("d").unwrap(),
            at: SystemTime::UNIX_EPOCH,
            kind: EventKind::Status(DeviceStatus::Online),
        });
        drop(bus);
        let within = std::time::Duration::from_secs(5);
        let next = tokio::time::timeout(within, sub.recv());
        assert!(next.await.expect("the queued event at once").is_some());
        let next = tokio::time::timeout(within, sub.recv());
        assert!(next.await.expect("the end at once").is_none());
    }

    #[test]
    fn recv_wakes_on_publish() {
        use std::future::Future;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::task::{Context, Poll, Wake, Waker};

        /// Counts its wake-ups.
        struct Wakes(AtomicUsize);
        impl Wake for Wakes {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let bus = Bus::new(4);
        let mut sub = bus.subscribe("t");
        let wakes = Arc::new(Wakes(AtomicUsize::new(0)));
        let waker = Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let mut recv = Box::pin(sub.recv());
        // Nothing published yet: the receiver waits (it is registered now).
        assert!(recv.as_mut().poll(&mut cx).is_pending());
        assert_eq!(wakes.0.load(Ordering::SeqCst), 0);
        bus.publish(reading("d", "p", 7));
        assert_eq!(
            wakes.0.load(Ordering::SeqCst),
            1,
            "publish wakes the waiting receiver"
        );
        match recv.as_mut().poll(&mut cx) {
            Poll::Ready(Some(e)) => assert_eq!(int(&e), ("p".into(), 7)),
            other => panic!("woken but not ready: {other:?}"),
        }
    }
}
