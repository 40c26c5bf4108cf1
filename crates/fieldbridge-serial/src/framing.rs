//! Cutting a byte stream into frames, without ever giving up on it.
//!
//! tokio-util's `LinesCodec` ends the stream on invalid UTF-8 or an
//! over-long line; a sensor that prints one burst of noise would then be
//! lost until the port is reopened. This decoder reports such frames as
//! items (`Err(FrameError)`), drops them, and goes on with the next good one.

use bytes::{Buf, BytesMut};
use tokio_util::codec::Decoder;

/// How frames are delimited on the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framing {
    /// Lines ended by LF, CR or CRLF (empty lines are skipped).
    Lines,
    /// Frames ended by this byte sequence (empty frames are skipped).
    Delimiter(Vec<u8>),
    /// Frames between a start and an end sequence; bytes outside are noise.
    StartEnd {
        /// Opens a frame, e.g. STX.
        start: Vec<u8>,
        /// Closes a frame, e.g. ETX.
        end: Vec<u8>,
    },
}

/// A frame that was dropped, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The frame is not UTF-8 text (line noise, wrong baud rate).
    #[error("frame is not valid UTF-8 (line noise or a wrong baud rate?)")]
    InvalidUtf8,
    /// No frame end within the maximum length; bytes up to the next frame
    /// end were discarded.
    #[error("no frame end within {0} bytes (wrong framing or line noise?)")]
    TooLong(usize),
}

/// The decoder: `Framing` plus a maximum frame length.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    framing: Framing,
    max: usize,
    /// Dropping bytes until the next frame boundary after an over-long frame.
    discarding: bool,
    /// Start/end framing: a start was seen, the end not yet.
    inside: bool,
}

impl FrameDecoder {
    /// A decoder cutting frames of at most `max` bytes.
    pub fn new(framing: Framing, max: usize) -> Self {
        Self {
            framing,
            max: max.max(1),
            discarding: false,
            inside: false,
        }
    }

    fn text(bytes: &[u8]) -> Result<String, FrameError> {
        std::str::from_utf8(bytes)
            .map(|s| {
                s.trim_matches(|c: char| c.is_whitespace() || c == '\0')
                    .to_owned()
            })
            .map_err(|_| FrameError::InvalidUtf8)
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl FrameDecoder {
    fn frame(&self, bytes: &[u8]) -> Option<Result<String, FrameError>> {
        if bytes.len() > self.max {
            return Some(Err(FrameError::TooLong(self.max)));
        }
        match Self::text(bytes) {
            Ok(t) if t.is_empty() => None,
            other => Some(other),
        }
    }

    /// Start/end framing: noise before a start is dropped; a new start
    /// before the end means the previous frame was cut off.
    fn decode_start_end(
        &mut self,
        buf: &mut BytesMut,
        start: &[u8],
        end: &[u8],
    ) -> Option<Result<String, FrameError>> {
        loop {
            if !self.inside {
                match find(buf, start) {
                    Some(i) => {
                        buf.advance(i + start.len());
                        self.inside = true;
                    }
                    None => {
                        // Keep what could be the beginning of a start.
                        let keep = start.len().saturating_sub(1).min(buf.len());
                        buf.advance(buf.len() - keep);
                        return None;
                    }
                }
            }
            match find(buf, end) {
                Some(i) => {
                    if let Some(j) = find(&buf[..i], start) {
                        buf.advance(j + start.len());
                        continue;
                    }
                    let frame = buf.split_to(i + end.len());
                    self.inside = false;
                    if let Some(item) = self.frame(&frame[..i]) {
                        return Some(item);
                    }
                }
                None if buf.len() > self.max => {
                    buf.clear();
                    self.inside = false;
                    return Some(Err(FrameError::TooLong(self.max)));
                }
                None => return None,
            }
        }
    }

    /// Lines and delimiters: after an over-long frame, everything up to the
    /// next terminator belongs to it and is dropped too.
    fn decode_terminated(&mut self, buf: &mut BytesMut) -> Option<Result<String, FrameError>> {
        loop {
            let end = match &self.framing {
                Framing::Lines => buf
                    .iter()
                    .position(|b| *b == b'\n' || *b == b'\r')
                    .map(|i| (i, 1)),
                Framing::Delimiter(d) => find(buf, d).map(|i| (i, d.len())),
                Framing::StartEnd { .. } => None,
            };
            match end {
                Some((i, terminator)) => {
                    let frame = buf.split_to(i + terminator);
                    if std::mem::take(&mut self.discarding) {
                        continue;
                    }
                    if let Some(item) = self.frame(&frame[..i]) {
                        return Some(item);
                    }
                }
                None if buf.len() > self.max => {
                    // Keep a possible partial terminator.
                    let keep = match &self.framing {
                        Framing::Delimiter(d) => d.len().saturating_sub(1),
                        _ => 0,
                    };
                    buf.advance(buf.len() - keep.min(buf.len()));
                    if std::mem::replace(&mut self.discarding, true) {
                        return None;
                    }
                    return Some(Err(FrameError::TooLong(self.max)));
                }
                None => return None,
            }
        }
    }
}

impl Decoder for FrameDecoder {
    type Item = Result<String, FrameError>;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> std::io::Result<Option<Self::Item>> {
        Ok(match self.framing.clone() {
            Framing::StartEnd { start, end } => self.decode_start_end(buf, &start, &end),
            _ => self.decode_terminated(buf),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `chunks` one after another (as split reads would) and collects
    /// every item.
    fn run(framing: Framing, max: usize, chunks: &[&[u8]]) -> Vec<Result<String, FrameError>> {
        let mut d = FrameDecoder::new(framing, max);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for c in chunks {
            buf.extend_from_slice(c);
            while let Some(item) = d.decode(&mut buf).unwrap() {
                out.push(item);
            }
        }
        out
    }

    fn ok(s: &str) -> Result<String, FrameError> {
        Ok(s.to_owned())
    }

    #[test]
    fn lines_end_with_lf_cr_or_crlf_and_survive_split_reads() {
        let got = run(
            Framing::Lines,
            64,
            &[b"T=1\r\nT=", b"2\nT=3\r", b"\r\n\nT=4"],
        );
        assert_eq!(got, vec![ok("T=1"), ok("T=2"), ok("T=3")]);
    }

    #[test]
    fn invalid_utf8_and_overlong_lines_are_reported_and_skipped() {
        let got = run(
            Framing::Lines,
            8,
            &[
                b"good\n\xff\xfe\x00bad\n",
                b"0123456789ABCDEF",
                b"XYZ\nafter\n",
            ],
        );
        assert_eq!(
            got,
            vec![
                ok("good"),
                Err(FrameError::InvalidUtf8),
                Err(FrameError::TooLong(8)),
                ok("after")
            ]
        );
    }

    #[test]
    fn a_long_line_completed_in_one_read_is_too_long_too() {
        let got = run(Framing::Lines, 4, &[b"123456\nok\n"]);
        assert_eq!(got, vec![Err(FrameError::TooLong(4)), ok("ok")]);
    }

    #[test]
    fn custom_delimiters_may_be_split_across_reads() {
        let got = run(
            Framing::Delimiter(b"||".to_vec()),
            64,
            &[b"a=1|", b"|b=2||", b"||c"],
        );
        assert_eq!(got, vec![ok("a=1"), ok("b=2")]);
    }

    #[test]
    fn start_end_frames_ignore_noise_between_frames() {
        let framing = Framing::StartEnd {
            start: vec![0x02],
            end: vec![0x03],
        };
        let got = run(
            framing,
            64,
            &[b"noise\x02one\x03junk\x02t", b"wo\x03\x02cut\x02three\x03"],
        );
        assert_eq!(got, vec![ok("one"), ok("two"), ok("three")]);
    }
}
