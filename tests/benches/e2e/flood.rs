//! The baseline: a trivial component that floods the server with copies
//! of a notification fieldbridge sent in the same scenario (same stanza,
//! same size, same subscriber; only the item id changes), as fast as the
//! server passes them on.
//!
//! "As fast as the server takes them" is paced by delivery: at most
//! `in_flight` notifications are sent and not yet counted by the
//! subscriber's reader. Unpaced, a server that reads its component socket
//! faster than it writes the c2s one only queues (ejabberd then kills the
//! c2s session for its queue length); paced, the rate measured is what
//! the server delivers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use fieldbridge_e2e::component;
use fieldbridge_e2e::count::Counters;
use fieldbridge_e2e::pubsub::{NS_EVENT, NS_SENSORDATA};
use fieldbridge_e2e::server::{COMPONENT, Server};
use minidom::Element;
use minidom::rxml::{Namespace, NcName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// A notification to send again and again, as text with a slot for the
/// item id.
#[derive(Debug, Clone)]
pub struct Template {
    head: String,
    tail: String,
    id_width: usize,
    /// XEP-0323 fields (readings) in it.
    pub fields: usize,
    /// Its size as sent, bytes.
    pub bytes: usize,
}

fn escape(value: &str) -> String {
    value
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('\'', "&apos;")
        .replace('"', "&quot;")
}

fn count_fields(e: &Element) -> usize {
    let own = usize::from(
        e.ns() == NS_SENSORDATA && matches!(e.name(), "numeric" | "boolean" | "string"),
    );
    own + e.children().map(count_fields).sum::<usize>()
}

impl Template {
    /// The notification `sample` (as a subscriber received it), as the
    /// component would send it: the message's attributes and its
    /// `<event>` as they were, in the component stream's namespace.
    pub fn from_sample(sample: &Element) -> anyhow::Result<Self> {
        let text = String::from(sample);
        anyhow::ensure!(sample.name() == "message", "not a message: {text}");
        let mut event = sample
            .get_child("event", NS_EVENT)
            .ok_or_else(|| anyhow::anyhow!("no pubsub event in {text}"))?
            .clone();
        let item = event
            .get_child_mut("items", NS_EVENT)
            .and_then(|i| i.get_child_mut("item", NS_EVENT))
            .ok_or_else(|| anyhow::anyhow!("no item in {text}"))?;
        let id_width = item.attr("id").map_or(16, str::len).max(1);
        let marker = "Q".repeat(id_width);
        item.set_attr(Namespace::NONE, NcName::try_from("id")?, marker.clone());
        let event = String::from(&event);
        let at = event
            .find(&format!("'{marker}'"))
            .or_else(|| event.find(&format!("\"{marker}\"")))
            .map(|i| i + 1)
            .ok_or_else(|| anyhow::anyhow!("item id not found again in {event}"))?;
        let mut head = String::from("<message");
        for ((ns, name), value) in sample.attrs().iter() {
            if *ns == Namespace::NONE {
                head.push_str(&format!(" {}='{}'", name.as_str(), escape(value)));
            }
        }
        head.push('>');
        head.push_str(&event[..at]);
        let tail = format!("{}</message>", &event[at + id_width..]);
        Ok(Self {
            bytes: head.len() + id_width + tail.len(),
            head,
            tail,
            id_width,
            fields: count_fields(sample),
        })
    }

    /// Copy number `n`, as text (for checks).
    pub fn text(&self, n: u64) -> String {
        let mut out = Vec::new();
        self.write(n, &mut out);
        String::from_utf8(out).expect("built from strings")
    }

    /// Appends copy number `n`.
    fn write(&self, n: u64, out: &mut Vec<u8>) {
        out.extend_from_slice(self.head.as_bytes());
        let id = format!("{n:0width$}", width = self.id_width);
        // A copy number wider than the slot keeps its last digits.
        out.extend_from_slice(&id.as_bytes()[id.len() - self.id_width..]);
        out.extend_from_slice(self.tail.as_bytes());
    }
}

/// A running flood.
pub struct Flood {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    drain: tokio::task::JoinHandle<()>,
}

/// No notification delivered for this long, with some in flight: the
/// server lost them, or the reader is gone.
const STALL: Duration = Duration::from_secs(10);

/// Logs in to `server` as the component (once the gateway has let go of
/// it) and starts flooding copies of `template`; `counters` are the
/// subscriber's.
pub async fn start(
    server: &Server,
    template: Arc<Template>,
    counters: Arc<Counters>,
    in_flight: u64,
) -> anyhow::Result<Flood> {
    // The server may not have seen the gateway's stream end yet, and then
    // refuses a second login for the domain: try again until a deadline.
    let deadline = Instant::now() + Duration::from_secs(15);
    let stream = loop {
        match component::connect(
            server.component_port(),
            COMPONENT,
            server.secret(),
            Duration::from_secs(5),
        )
        .await
        {
            Ok(s) => break s,
            Err(e) if Instant::now() >= deadline => {
                anyhow::bail!("the baseline component cannot log in: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    let (mut read, mut write) = stream.into_split();
    // Whatever the server sends the component is read and dropped, until
    // the server closes the stream.
    let drain = tokio::spawn(async move {
        let mut buf = vec![0u8; 1 << 16];
        while matches!(read.read(&mut buf).await, Ok(n) if n > 0) {}
    });
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let task = tokio::spawn({
        let (stop, sent_total) = (stop.clone(), sent.clone());
        async move {
            let base = counters.counts().messages;
            let delivered = || counters.counts().messages.saturating_sub(base);
            let mut sent = 0u64;
            let mut buf = Vec::with_capacity(1 << 17);
            let mut progress = (Instant::now(), 0u64);
            while !stop.load(Ordering::Relaxed) {
                let room = in_flight.saturating_sub(sent.saturating_sub(delivered()));
                if room == 0 {
                    let arrived = counters.arrived.notified();
                    let now_delivered = delivered();
                    if now_delivered != progress.1 {
                        progress = (Instant::now(), now_delivered);
                    } else if progress.0.elapsed() > STALL {
                        anyhow::bail!(
                            "the server delivered nothing for {STALL:?} with {} notifications in flight \
                             (sent {sent}, delivered {now_delivered}, subscriber closed: {})",
                            sent - now_delivered,
                            counters.closed() > 0
                        );
                    }
                    if in_flight.saturating_sub(sent.saturating_sub(now_delivered)) == 0 {
                        let _ = tokio::time::timeout(Duration::from_millis(50), arrived).await;
                    }
                    continue;
                }
                buf.clear();
                for _ in 0..room.min(64) {
                    template.write(sent, &mut buf);
                    sent += 1;
                }
                write.write_all(&buf).await?;
                sent_total.store(sent, Ordering::Relaxed);
            }
            let _ = write.write_all(b"</stream:stream>").await;
            let _ = write.shutdown().await;
            Ok(())
        }
    });
    Ok(Flood {
        stop,
        sent,
        task,
        drain,
    })
}

impl Flood {
    /// Stops flooding and closes the connection; returns how many
    /// notifications were sent, or why the flood failed.
    ///
    /// The socket is closed for certain, not only the stream: ejabberd
    /// accepts several connections for one component domain and shares
    /// the domain's stanzas among them, so a connection left open would
    /// take some of the next gateway's.
    pub async fn stop(mut self) -> anyhow::Result<u64> {
        self.stop.store(true, Ordering::Relaxed);
        let flooded = tokio::time::timeout(Duration::from_secs(10), &mut self.task).await;
        if flooded.is_err() {
            self.task.abort();
        }
        // The server closes its side on our end of stream; if it does not
        // in time, dropping the read half closes the socket anyway.
        if tokio::time::timeout(Duration::from_secs(5), &mut self.drain)
            .await
            .is_err()
        {
            self.drain.abort();
            let _ = (&mut self.drain).await;
        }
        flooded
            .map_err(|_| anyhow::anyhow!("the baseline flood did not stop within 10 s"))???;
        Ok(self.sent.load(Ordering::Relaxed))
    }

    /// Whether it failed already (the error comes with [`Flood::stop`]).
    pub fn finished(&self) -> bool {
        self.task.is_finished()
    }
}
