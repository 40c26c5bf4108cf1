//! Counting what a subscriber receives, as cheaply as reading it: a reader
//! that scans the bytes of a c2s socket for stanza and field start tags
//! instead of parsing them, so that it keeps up with any server and leaves
//! the CPU to the processes being measured.
//!
//! It counts `<message` start tags (notifications: a subscriber that only
//! subscribed to nodes gets no other messages), the XEP-0323 field elements
//! inside them (`<numeric`, `<boolean`, `<string` of
//! `urn:xmpp:iot:sensordata`: readings, however many one notification
//! carries) and the bytes read. Both servers write these elements without a
//! prefix, in the `fields` element's default namespace; a caller that needs
//! to be sure compares one parsed notification with the counts.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::Notify;

const MESSAGE: &[u8] = b"<message";
const FIELDS: [&[u8]; 3] = [b"<numeric", b"<boolean", b"<string"];
/// The longest tag name scanned for: what a chunk keeps of the one before.
const KEEP: usize = 8;

/// Counts start tags in a byte stream that arrives in arbitrary chunks.
#[derive(Debug, Default)]
pub struct Scanner {
    /// The last bytes of the previous chunk, then the current one.
    buf: Vec<u8>,
}

/// What a [`Scanner`] found in one chunk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Found {
    /// `<message` start tags.
    pub messages: u64,
    /// Field start tags (`<numeric`, `<boolean`, `<string`).
    pub fields: u64,
}

impl Scanner {
    /// Scans the next chunk of the stream. A tag split across chunks is
    /// counted once, with the chunk that holds the byte after its name.
    pub fn scan(&mut self, chunk: &[u8]) -> Found {
        let old = self.buf.len();
        self.buf.extend_from_slice(chunk);
        let buf = &self.buf;
        let mut found = Found::default();
        let mut i = 0;
        while let Some(off) = buf[i..].iter().position(|&b| b == b'<') {
            let s = i + off;
            let rest = &buf[s..];
            // Counted here only when the byte after the name is new, so
            // that a tag seen in the kept tail is not counted twice.
            let is = |name: &[u8]| {
                rest.len() > name.len()
                    && s + name.len() >= old
                    && rest.starts_with(name)
                    && matches!(rest[name.len()], b' ' | b'/' | b'>' | b'\t' | b'\n' | b'\r')
            };
            if is(MESSAGE) {
                found.messages += 1;
            } else if FIELDS.iter().any(|f| is(f)) {
                found.fields += 1;
            }
            i = s + 1;
        }
        let keep_from = self.buf.len().saturating_sub(KEEP);
        self.buf.drain(..keep_from);
        found
    }
}

/// Totals of one or more counting readers.
#[derive(Debug, Default)]
pub struct Counters {
    messages: AtomicU64,
    readings: AtomicU64,
    bytes: AtomicU64,
    closed: AtomicU64,
    /// Woken on every read, for a sender that paces itself by what arrived.
    pub arrived: Notify,
}

/// A snapshot of [`Counters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Messages received (notifications).
    pub messages: u64,
    /// Fields received in them (readings).
    pub readings: u64,
    /// Bytes read from the sockets.
    pub bytes: u64,
}

impl std::ops::Sub for Counts {
    type Output = Counts;
    fn sub(self, earlier: Counts) -> Counts {
        Counts {
            messages: self.messages - earlier.messages,
            readings: self.readings - earlier.readings,
            bytes: self.bytes - earlier.bytes,
        }
    }
}

impl Counters {
    /// The totals now.
    pub fn counts(&self) -> Counts {
        Counts {
            messages: self.messages.load(Ordering::Relaxed),
            readings: self.readings.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }

    /// How many of the readers found their connection closed.
    pub fn closed(&self) -> u64 {
        self.closed.load(Ordering::Relaxed)
    }
}

/// Reads `stream` until it closes (or the task is aborted, which closes
/// it), adding what arrives to `counters`.
pub fn spawn_reader(mut stream: TcpStream, counters: Arc<Counters>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut scanner = Scanner::default();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    counters.closed.fetch_add(1, Ordering::Relaxed);
                    counters.arrived.notify_waiters();
                    return;
                }
                Ok(n) => {
                    let found = scanner.scan(&buf[..n]);
                    counters.bytes.fetch_add(n as u64, Ordering::Relaxed);
                    counters.readings.fetch_add(found.fields, Ordering::Relaxed);
                    counters
                        .messages
                        .fetch_add(found.messages, Ordering::Relaxed);
                    counters.arrived.notify_waiters();
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOTIFICATION: &str = "<message from='gw.localhost' to='bench@localhost' \
        type='headline'><event xmlns='http://jabber.org/protocol/pubsub#event'>\
        <items node='dev0001'><item id='1'><fields xmlns='urn:xmpp:iot:sensordata' \
        done='true' seqnr='1'><node nodeId='dev0001'><timestamp value='x'>\
        <numeric name='p0' value='1.5'/><boolean name='p1' value='true'/>\
        <string name='p2' value='&lt;message '></string></timestamp></node></fields>\
        </item></items></event></message><messages/><stringent/>";

    #[test]
    fn counts_messages_and_fields_in_one_chunk() {
        let found = Scanner::default().scan(NOTIFICATION.as_bytes());
        assert_eq!(
            found,
            Found {
                messages: 1,
                fields: 3
            }
        );
    }

    #[test]
    fn a_tag_split_across_chunks_counts_once_at_every_split() {
        let bytes = NOTIFICATION.repeat(3).into_bytes();
        for split in 0..bytes.len() {
            let mut s = Scanner::default();
            let a = s.scan(&bytes[..split]);
            let b = s.scan(&bytes[split..]);
            assert_eq!(
                (a.messages + b.messages, a.fields + b.fields),
                (3, 9),
                "split at {split}"
            );
        }
    }

    #[test]
    fn byte_by_byte_counts_the_same() {
        let mut s = Scanner::default();
        let mut total = Found::default();
        for b in NOTIFICATION.repeat(2).as_bytes() {
            let f = s.scan(std::slice::from_ref(b));
            total.messages += f.messages;
            total.fields += f.fields;
        }
        assert_eq!(
            total,
            Found {
                messages: 2,
                fields: 6
            }
        );
    }
}
