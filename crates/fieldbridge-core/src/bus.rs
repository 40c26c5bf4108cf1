//! The event bus: fan-out from core to every sink, bounded, never blocking.
//!
//! Each sink has its own mailbox: a bounded queue, and behind it an overflow
//! that keeps one pending update per device: a new readings event of a
//! device merges into it, the newest sample per point winning, and a status
//! change replaces the device's pending status. A sink that falls behind
//! therefore costs memory proportional to the number of points, never to
//! time, and field polling never waits on it. What the overflow replaces is
//! counted (`fieldbridge_readings_coalesced_total{sink}`) and logged once per
//! lag episode, through the bus's [`Telemetry`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::event::{DeviceEvent, EventKind};
use crate::id::DeviceId;
use crate::telemetry::{
    InternalEvent, ReadingsCoalesced, ReadingsDropped, SinkCaughtUp, SinkLagging, Telemetry,
};

/// Events a sink's mailbox queues in order before it starts coalescing.
pub const DEFAULT_QUEUE: usize = 4096;

/// Overflow entries kept at most (one per point with a pending sample and
/// per device with a pending status); far above any real configuration,
/// there only to bound a misbehaving publisher.
const MAX_OVERFLOW_KEYS: usize = 1 << 20;

/// Publishes events to every subscribed sink. Dropping it closes the bus:
/// sinks drain what is left and then see the end.
#[derive(Debug)]
pub struct Bus {
    mailboxes: Mutex<Vec<Arc<Mailbox>>>,
    queue: usize,
    telemetry: Arc<Telemetry>,
}

/// A sink's end of the bus.
#[derive(Debug)]
pub struct Subscription {
    mailbox: Arc<Mailbox>,
}

#[derive(Debug)]
struct Mailbox {
    sink: String,
    telemetry: Arc<Telemetry>,
    state: Mutex<MailboxState>,
    notify: Notify,
}

#[derive(Debug, Default)]
struct MailboxState {
    queue: VecDeque<DeviceEvent>,
    overflow: Overflow,
    closed: bool,
    detached: bool,
    coalesced_this_episode: u64,
    lagging: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Readings(DeviceId),
    Status(DeviceId),
    /// Alerts are never merged: each is its own entry, by its sequence.
    Alert(u64),
}

/// What putting an event into the overflow did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Put {
    /// Samples or statuses that replaced a pending one.
    replaced: u64,
    /// Samples or statuses left out because the overflow was full.
    dropped: u64,
}

/// The newest pending update per device (readings and status apart), in the
/// order they were last written.
#[derive(Debug, Default)]
struct Overflow {
    order: BTreeMap<u64, Key>,
    entries: HashMap<Key, (u64, DeviceEvent)>,
    next_seq: u64,
    /// Samples and statuses pending, bounded by [`MAX_OVERFLOW_KEYS`].
    len: usize,
}

impl Overflow {
    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Merges `event` into the pending update of its device.
    fn put(&mut self, event: DeviceEvent) -> Put {
        let key = match &event.kind {
            EventKind::Readings(_) => Key::Readings(event.device.clone()),
            EventKind::Status(_) => Key::Status(event.device.clone()),
            EventKind::Alert(_) => Key::Alert(self.next_seq),
        };
        let mut put = Put::default();
        let seq = self.next_seq;
        match self.entries.get_mut(&key) {
            Some((old_seq, pending)) => {
                match (&mut pending.kind, event.kind) {
                    (EventKind::Readings(pending_samples), EventKind::Readings(samples)) => {
                        for sample in samples {
                            match pending_samples
                                .iter_mut()
                                .find(|p| p.reading.point == sample.reading.point)
                            {
                                Some(slot) => {
                                    *slot = sample;
                                    put.replaced += 1;
                                }
                                None if self.len >= MAX_OVERFLOW_KEYS => put.dropped += 1,
                                None => {
                                    pending_samples.push(sample);
                                    self.len += 1;
                                }
                            }
                        }
                    }
                    (kind, new) => {
                        *kind = new;
                        put.replaced += 1;
                    }
                }
                pending.at = event.at;
                self.order.remove(old_seq);
                *old_seq = seq;
            }
            None => {
                let mut event = event;
                let size = match &mut event.kind {
                    EventKind::Readings(samples) => {
                        let room = MAX_OVERFLOW_KEYS.saturating_sub(self.len);
                        if samples.len() > room {
                            put.dropped += (samples.len() - room) as u64;
                            samples.truncate(room);
                        }
                        samples.len()
                    }
                    EventKind::Status(_) | EventKind::Alert(_) if self.len >= MAX_OVERFLOW_KEYS => {
                        put.dropped += 1;
                        0
                    }
                    EventKind::Status(_) | EventKind::Alert(_) => 1,
                };
                if size == 0 {
                    return put;
                }
                self.len += size;
                self.entries.insert(key.clone(), (seq, event));
            }
        }
        self.next_seq += 1;
        self.order.insert(seq, key);
        put
    }

    fn pop(&mut self) -> Option<DeviceEvent> {
        let (_, key) = self.order.pop_first()?;
        let (_, event) = self.entries.remove(&key)?;
        self.len -= match &event.kind {
            EventKind::Readings(samples) => samples.len(),
            EventKind::Status(_) | EventKind::Alert(_) => 1,
        };
        Some(event)
    }
}

fn lock(m: &Mutex<MailboxState>) -> MutexGuard<'_, MailboxState> {
    // A panic while holding this lock cannot leave the state inconsistent
    // in a way worse than losing events, so keep going.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Bus {
    /// A bus whose sinks queue `queue` events in order before coalescing,
    /// counting into a telemetry of its own (for tests).
    pub fn new(queue: usize) -> Self {
        Self::with_telemetry(queue, Arc::default())
    }

    /// A bus counting into `telemetry`, which the engine and every sink
    /// take from it.
    pub fn with_telemetry(queue: usize, telemetry: Arc<Telemetry>) -> Self {
        Self {
            mailboxes: Mutex::new(Vec::new()),
            queue: queue.max(1),
            telemetry,
        }
    }

    /// The metrics everything on this bus counts into.
    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.telemetry
    }

    /// Adds a sink; it sees every event published from now on.
    pub fn subscribe(&self, sink: &str) -> Subscription {
        let mailbox = Arc::new(Mailbox {
            sink: sink.to_owned(),
            telemetry: Arc::clone(&self.telemetry),
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
            let sink = self.sink.as_str();
            if !st.lagging {
                st.lagging = true;
                SinkLagging { sink }.emit(&self.telemetry);
            }
            let put = st.overflow.put(event);
            st.coalesced_this_episode += put.replaced;
            ReadingsCoalesced {
                sink,
                count: put.replaced,
            }
            .emit(&self.telemetry);
            ReadingsDropped {
                sink,
                count: put.dropped,
            }
            .emit(&self.telemetry);
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
            SinkCaughtUp {
                sink: &self.mailbox.sink,
                coalesced: std::mem::take(&mut st.coalesced_this_episode),
            }
            .emit(&self.mailbox.telemetry);
        }
        if st.closed {
            return Some(None);
        }
        None
    }

    /// The metrics of the bus this subscription reads.
    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.mailbox.telemetry
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
    use crate::id::PointId;
    use crate::value::{Quality, Reading, Sample, Value};

    /// An update of `device` with `points` read as `(point, value)`.
    fn update(device: &str, points: &[(&str, i64)]) -> DeviceEvent {
        DeviceEvent {
            device: DeviceId::new(device).unwrap(),
            at: SystemTime::UNIX_EPOCH,
            kind: EventKind::Readings(
                points
                    .iter()
                    .map(|(point, v)| Sample {
                        at: SystemTime::UNIX_EPOCH,
                        reading: Reading {
                            point: PointId::new(point).unwrap(),
                            value: Value::Int(*v),
                            unit: None,
                            quality: Quality::Good,
                        },
                    })
                    .collect(),
            ),
        }
    }

    fn reading(device: &str, point: &str, v: i64) -> DeviceEvent {
        update(device, &[(point, v)])
    }

    fn status(device: &str, status: DeviceStatus) -> DeviceEvent {
        DeviceEvent {
            device: DeviceId::new(device).unwrap(),
            at: SystemTime::UNIX_EPOCH,
            kind: EventKind::Status(status),
        }
    }

    /// An event as `device: point=value ...` (or `device: <status>`).
    fn show(e: &DeviceEvent) -> String {
        match &e.kind {
            EventKind::Readings(samples) => {
                let points: Vec<String> = samples
                    .iter()
                    .map(|s| format!("{}={}", s.reading.point, s.reading.value))
                    .collect();
                format!("{}: {}", e.device, points.join(" "))
            }
            EventKind::Status(s) => format!("{}: {s}", e.device),
            EventKind::Alert(a) => format!("{}: alert {}", e.device, a.key),
        }
    }

    /// (coalesced, dropped) of the subscription's sink.
    fn counts(sub: &Subscription) -> (u64, u64) {
        let t = sub.telemetry();
        let sink = [("sink", sub.mailbox.sink.as_str())];
        (
            Telemetry::count(&t.readings_coalesced, sink),
            Telemetry::count(&t.readings_dropped, sink),
        )
    }

    fn drain(sub: &mut Subscription) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(Some(e)) = sub.try_recv() {
            out.push(show(&e));
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
        assert_eq!(
            drain(&mut sub),
            ["d: p=0", "d: p=1", "d: p=2", "d: p=3", "d: p=4"]
        );
        assert_eq!(counts(&sub), (0, 0));
    }

    #[test]
    fn a_lagging_sink_gets_one_update_per_device_with_the_newest_sample_per_point() {
        let bus = Bus::new(2);
        let mut sub = bus.subscribe("slow");
        // Two fit the queue; the rest overflow and merge per device.
        bus.publish(update("d", &[("a", 1), ("b", 1)]));
        bus.publish(update("e", &[("a", 1)]));
        bus.publish(update("d", &[("a", 2), ("b", 2)]));
        bus.publish(update("e", &[("a", 2)]));
        bus.publish(update("d", &[("a", 3), ("c", 3)]));
        bus.publish(update("d", &[("a", 4)]));
        assert_eq!(
            drain(&mut sub),
            [
                "d: a=1 b=1",
                "e: a=1",
                // e was last written before d: it comes first.
                "e: a=2",
                "d: a=4 b=2 c=3",
            ]
        );
        // a of d was replaced twice; nothing else was.
        assert_eq!(counts(&sub), (2, 0));
    }

    #[test]
    fn a_lagging_sink_keeps_the_newest_status_apart_from_readings() {
        let bus = Bus::new(1);
        let mut sub = bus.subscribe("slow");
        bus.publish(reading("d", "a", 1));
        bus.publish(status("d", DeviceStatus::Stale));
        bus.publish(reading("d", "a", 2));
        bus.publish(status("d", DeviceStatus::Online));
        assert_eq!(drain(&mut sub), ["d: a=1", "d: a=2", "d: online"]);
        assert_eq!(counts(&sub).0, 1);
    }

    #[test]
    fn a_full_overflow_drops_and_counts_new_points_but_still_replaces_pending_ones() {
        let bus = Bus::new(1);
        let mut sub = bus.subscribe("slow");
        bus.publish(reading("d", "queued", 0));
        {
            // Fill the overflow without a million publishes.
            let mut st = lock(&sub.mailbox.state);
            st.overflow.len = MAX_OVERFLOW_KEYS - 1;
        }
        bus.publish(update("d", &[("a", 1), ("b", 1)]));
        bus.publish(update("d", &[("a", 2), ("c", 2)]));
        bus.publish(status("e", DeviceStatus::Online));
        assert_eq!(counts(&sub), (1, 3));
        assert_eq!(drain(&mut sub), ["d: queued=0", "d: a=2"]);
        assert!(lock(&sub.mailbox.state).overflow.is_empty());
    }

    #[test]
    fn one_slow_sink_does_not_hold_back_another() {
        let bus = Bus::new(1);
        let mut slow = bus.subscribe("slow");
        let mut fast = bus.subscribe("fast");
        for i in 0..3 {
            bus.publish(reading("d", "p", i));
            assert_eq!(drain(&mut fast), [format!("d: p={i}")]);
        }
        assert_eq!(drain(&mut slow), ["d: p=0", "d: p=2"]);
        assert_eq!(counts(&fast).0, 0);
        assert_eq!(counts(&slow).0, 1);
    }

    #[tokio::test]
    async fn closing_the_bus_ends_subscriptions_after_draining() {
        let bus = Bus::new(4);
        let mut sub = bus.subscribe("t");
        bus.publish(status("d", DeviceStatus::Online));
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
            Poll::Ready(Some(e)) => assert_eq!(show(&e), "d: p=7"),
            other => panic!("woken but not ready: {other:?}"),
        }
    }
}
