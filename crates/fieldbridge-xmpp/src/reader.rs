//! Reading the component stream: bytes in, stanzas out, within limits that
//! no remote sender can get past.
//!
//! Any user on the XMPP network can make the server forward a stanza to the
//! gateway, so what a stanza may cost is bounded here, before anything
//! looks at it:
//!
//! - **depth**: an element tree deeper than [`MAX_DEPTH`] is not built (the
//!   parser only counts its levels), so nothing that walks an element
//!   recursively — drop, clone, serialization, a handler — can exhaust the
//!   stack. tokio-xmpp's reader builds elements recursively and overflowed
//!   the stack at ~3500 levels, one message aborting the process.
//! - **size**: a token (an attribute value, a name) may be as long as a
//!   whole stanza the server lets through ([`MAX_STANZA`]; Prosody's limits
//!   are 256 KiB for c2s and 512 KiB for s2s). rxml's default of 8 KiB, which
//!   tokio-xmpp cannot change, ended the stream on a 12 KB attribute and so
//!   let anyone disconnect the gateway.
//!
//! A stanza over a limit is skipped to its end and reported as
//! [`Incoming::Refused`] with its top element (attributes, no children), so
//! that an IQ can still be answered with an error; the stream goes on. Only
//! XML that is not well-formed, which a server never forwards, ends it.
//!
//! The reader is free of I/O so that it can be fed arbitrary bytes (see the
//! fuzz targets) and reused for stored payloads ([`parse_element`]).

use std::collections::VecDeque;

use minidom::Element;
use rxml::error::EndOrError;
use rxml::{Event, Parse, Parser, WithOptions};

/// The deepest element tree a stanza may have, counting the stanza itself
/// as 1. Real stanzas stay well below it: an ad-hoc form is 5 levels deep,
/// a pubsub notification with a sensor-data payload 8.
pub const MAX_DEPTH: usize = 32;

/// The largest stanza that is built; larger ones are refused. Above the
/// largest stanza Prosody or ejabberd forwards by default.
pub const MAX_STANZA: usize = 1024 * 1024;

/// Open elements the parser tracks at most. A refused stanza is skipped in
/// constant memory, whatever its length, except for the parser's stack of
/// open elements: past this many levels (far beyond what any server's
/// stanza limit lets through) the stream is dropped instead.
pub const MAX_OPEN: usize = 100_000;

/// What the stream delivered.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// The server's stream header (its attributes: `id`, `from`).
    Header(Element),
    /// A complete stanza within the limits.
    Stanza(Element),
    /// A stanza over a limit: its top element without children.
    Refused {
        /// The stanza's name, namespace and attributes.
        stanza: Element,
        /// Which limit it broke.
        why: Refusal,
    },
    /// The server closed the stream (`</stream:stream>`).
    Footer,
}

/// Which limit a refused stanza broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// Deeper than [`MAX_DEPTH`].
    TooDeep,
    /// Larger than [`MAX_STANZA`].
    TooLarge,
}

impl Refusal {
    /// In words, for logs and error texts.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::TooDeep => "stanza nested too deeply",
            Refusal::TooLarge => "stanza too large",
        }
    }
}

/// Why the stream cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The bytes are not well-formed XML.
    #[error("the server sent XML that is not well-formed: {0}")]
    Xml(#[from] rxml::Error),
    /// A stanza nested far beyond any server's limits.
    #[error("the server sent a stanza nested more than {MAX_OPEN} levels deep")]
    Endless,
    /// Data after the end of the stream.
    #[error("the server sent data after closing the stream")]
    AfterEnd,
}

/// The stanza being read.
#[derive(Debug)]
enum Current {
    /// Between stanzas.
    None,
    /// Built as it arrives: the open elements, outermost first.
    Building(Vec<Element>),
    /// Over a limit: only its top element is kept while the rest is skipped.
    Skipping(Element, Refusal),
}

/// Turns the bytes of a component stream into [`Incoming`] items.
#[derive(Debug)]
pub struct StanzaReader {
    parser: Parser,
    /// Open elements: 0 before the stream header, 1 between stanzas.
    depth: usize,
    current: Current,
    /// Bytes of the current stanza so far.
    size: usize,
    ready: VecDeque<Incoming>,
    ended: bool,
}

impl Default for StanzaReader {
    fn default() -> Self {
        Self::new()
    }
}

impl StanzaReader {
    /// A reader for a new stream.
    pub fn new() -> Self {
        let options = rxml::parser::Options {
            max_token_length: MAX_STANZA,
            ..Default::default()
        };
        Self {
            parser: Parser::with_options(options),
            depth: 0,
            current: Current::None,
            size: 0,
            ready: VecDeque::new(),
            ended: false,
        }
    }

    /// Takes the next bytes of the stream. What they complete is then
    /// returned by [`pop`](Self::pop).
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), StreamError> {
        // The parser takes all of `data` before it asks for more; events
        // it completes come out one call at a time.
        loop {
            match self.parser.parse(&mut data, false) {
                Ok(Some(_)) if self.ended => return Err(StreamError::AfterEnd),
                Ok(Some(event)) => self.on_event(event)?,
                Ok(None) | Err(EndOrError::NeedMoreData) => return Ok(()),
                Err(EndOrError::Error(e)) => return Err(e.into()),
            }
        }
    }

    /// The next complete item, if the bytes so far hold one.
    pub fn pop(&mut self) -> Option<Incoming> {
        self.ready.pop_front()
    }

    fn on_event(&mut self, event: Event) -> Result<(), StreamError> {
        match event {
            Event::XmlDeclaration(..) => {}
            Event::StartElement(m, (ns, name), attrs) => {
                self.depth += 1;
                if self.depth > MAX_OPEN {
                    return Err(StreamError::Endless);
                }
                let element = || {
                    let mut el = Element::bare(name.as_str(), ns.as_str());
                    *el.attrs_mut() = attrs;
                    el
                };
                match self.depth {
                    1 => self.ready.push_back(Incoming::Header(element())),
                    2 => {
                        self.size = m.len();
                        self.current = Current::Building(vec![element()]);
                        self.check_size();
                    }
                    depth => {
                        self.grow(m.len());
                        // Nothing is built of a stanza being skipped.
                        if let Current::Building(open) = &mut self.current {
                            if depth - 1 > MAX_DEPTH {
                                self.refuse(Refusal::TooDeep);
                            } else {
                                open.push(element());
                            }
                        }
                    }
                }
            }
            Event::Text(m, text) => {
                if self.depth >= 2 {
                    self.grow(m.len());
                    if let Current::Building(open) = &mut self.current
                        && let Some(top) = open.last_mut()
                    {
                        top.append_text(text);
                    }
                }
                // Between stanzas: whitespace keepalives.
            }
            Event::EndElement(m) => {
                self.depth = self.depth.saturating_sub(1);
                match self.depth {
                    0 => {
                        self.ended = true;
                        self.ready.push_back(Incoming::Footer);
                    }
                    1 => {
                        self.grow(m.len());
                        match std::mem::replace(&mut self.current, Current::None) {
                            Current::Building(mut open) => {
                                if let Some(stanza) = open.pop() {
                                    self.ready.push_back(Incoming::Stanza(stanza));
                                }
                            }
                            Current::Skipping(stanza, why) => {
                                self.ready.push_back(Incoming::Refused { stanza, why })
                            }
                            Current::None => {}
                        }
                    }
                    _ => {
                        self.grow(m.len());
                        if let Current::Building(open) = &mut self.current
                            && open.len() >= 2
                            && let Some(done) = open.pop()
                            && let Some(parent) = open.last_mut()
                        {
                            parent.append_child(done);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn grow(&mut self, bytes: usize) {
        self.size = self.size.saturating_add(bytes);
        self.check_size();
    }

    fn check_size(&mut self) {
        if self.size > MAX_STANZA && matches!(self.current, Current::Building(_)) {
            self.refuse(Refusal::TooLarge);
        }
    }

    /// Drops what was built of the current stanza but its top element.
    fn refuse(&mut self, why: Refusal) {
        if let Current::Building(open) = &mut self.current
            && let Some(top) = open.first()
        {
            let mut head = Element::bare(top.name(), top.ns());
            *head.attrs_mut() = top.attrs().clone();
            // Dropped one level at a time, innermost first: no recursion
            // deeper than MAX_DEPTH either way.
            while open.pop().is_some() {}
            self.current = Current::Skipping(head, why);
        }
    }
}

/// Parses one stored element (a history payload) with the same limits as
/// the stream, so that whatever was accepted can be read back.
pub fn parse_element(xml: &str) -> Option<Element> {
    let mut reader = StanzaReader::new();
    // A wrapper stands in for the stream element.
    reader.feed(b"<s>").ok()?;
    reader.feed(xml.as_bytes()).ok()?;
    reader.feed(b"</s>").ok()?;
    let mut stanza = None;
    while let Some(item) = reader.pop() {
        match item {
            Incoming::Stanza(el) if stanza.is_none() => stanza = Some(el),
            Incoming::Header(_) | Incoming::Footer => {}
            _ => return None,
        }
    }
    stanza
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
        xmlns:stream='http://etherx.jabber.org/streams' id='abc' from='gw.localhost'>";

    fn read_all(reader: &mut StanzaReader) -> Vec<Incoming> {
        std::iter::from_fn(|| reader.pop()).collect()
    }

    fn started() -> StanzaReader {
        let mut r = StanzaReader::new();
        r.feed(HEADER.as_bytes()).unwrap();
        let items = read_all(&mut r);
        let [Incoming::Header(h)] = &items[..] else {
            panic!("{items:?}")
        };
        assert_eq!(h.attr("id"), Some("abc"));
        r
    }

    fn nested(depth: usize) -> String {
        format!(
            "<message to='boiler@gw.localhost' from='eve@localhost/x' type='chat' id='m1'>\
             <body>x</body>{}{}</message>",
            "<x>".repeat(depth),
            "</x>".repeat(depth)
        )
    }

    #[test]
    fn stanzas_split_anywhere_arrive_whole_with_namespaces_and_text() {
        let mut r = started();
        let text = "<iq type='get' id='1' from='a@localhost/r' to='gw.localhost'>\
            <query xmlns='http://jabber.org/protocol/disco#info' xml:lang='en'>a &amp; b</query></iq> \
            <presence from='a@localhost' to='d@gw.localhost' type='probe'/>";
        for b in text.as_bytes().chunks(3) {
            r.feed(b).unwrap();
        }
        let items = read_all(&mut r);
        let [Incoming::Stanza(iq), Incoming::Stanza(presence)] = &items[..] else {
            panic!("{items:?}")
        };
        assert_eq!(iq.name(), "iq");
        assert_eq!(iq.ns(), "jabber:component:accept");
        let q = iq
            .get_child("query", "http://jabber.org/protocol/disco#info")
            .unwrap();
        assert_eq!(q.text(), "a & b");
        assert_eq!(
            q.attr_ns(rxml::Namespace::xml(), "lang"),
            Some("en"),
            "namespaced attributes are kept"
        );
        assert_eq!(presence.attr("type"), Some("probe"));
    }

    #[test]
    fn a_stanza_nested_too_deeply_is_refused_and_the_stream_goes_on() {
        let mut r = started();
        r.feed(nested(10_000).as_bytes()).unwrap();
        r.feed(b"<presence from='a@localhost' to='d@gw.localhost' type='probe'/>")
            .unwrap();
        let items = read_all(&mut r);
        let [Incoming::Refused { stanza, why }, Incoming::Stanza(next)] = &items[..] else {
            panic!("{items:?}")
        };
        assert_eq!(*why, Refusal::TooDeep);
        assert_eq!(stanza.name(), "message");
        assert_eq!(stanza.attr("id"), Some("m1"));
        assert_eq!(stanza.children().count(), 0);
        assert_eq!(next.attr("type"), Some("probe"));
    }

    #[test]
    fn the_depth_limit_counts_the_stanza_itself() {
        // message (1) > body (2), message (1) > x × (MAX_DEPTH - 1).
        let mut r = started();
        r.feed(nested(MAX_DEPTH - 1).as_bytes()).unwrap();
        r.feed(nested(MAX_DEPTH).as_bytes()).unwrap();
        let items = read_all(&mut r);
        assert!(matches!(items[0], Incoming::Stanza(_)), "{items:?}");
        assert!(
            matches!(
                items[1],
                Incoming::Refused {
                    why: Refusal::TooDeep,
                    ..
                }
            ),
            "{items:?}"
        );
    }

    #[test]
    fn a_long_attribute_is_read_and_an_oversized_stanza_refused() {
        let mut r = started();
        let long = "a".repeat(200_000);
        r.feed(format!("<message id='{long}' type='chat'><body>hi</body></message>").as_bytes())
            .unwrap();
        let body = "b".repeat(MAX_STANZA);
        r.feed(
            format!(
                "<iq id='big' type='set'><q xmlns='urn:x'>{body}</q></iq><iq id='ok' type='get'/>"
            )
            .as_bytes(),
        )
        .unwrap();
        let items = read_all(&mut r);
        let [
            Incoming::Stanza(m),
            Incoming::Refused { stanza, why },
            Incoming::Stanza(ok),
        ] = &items[..]
        else {
            panic!("{} items", items.len())
        };
        assert_eq!(m.attr("id").map(str::len), Some(200_000));
        assert_eq!(*why, Refusal::TooLarge);
        assert_eq!(stanza.attr("id"), Some("big"));
        assert_eq!(ok.attr("id"), Some("ok"));
    }

    #[test]
    fn an_oversized_stanza_of_any_length_is_skipped() {
        let mut r = started();
        r.feed(b"<message id='huge'><body>").unwrap();
        let chunk = "z".repeat(64 * 1024);
        for _ in 0..(8 * MAX_STANZA / chunk.len()) {
            r.feed(chunk.as_bytes()).unwrap();
        }
        r.feed(b"</body></message><iq id='after' type='get'/>")
            .unwrap();
        let items = read_all(&mut r);
        assert!(
            matches!(
                &items[..],
                [
                    Incoming::Refused {
                        why: Refusal::TooLarge,
                        ..
                    },
                    Incoming::Stanza(_)
                ]
            ),
            "{} items",
            items.len()
        );
    }

    #[test]
    fn the_stream_end_is_reported_and_broken_xml_is_an_error() {
        let mut r = started();
        r.feed(b"</stream:stream>").unwrap();
        assert_eq!(read_all(&mut r), vec![Incoming::Footer]);
        let mut r = started();
        let e = r.feed(b"<message></iq>").unwrap_err();
        assert!(matches!(e, StreamError::Xml(_)), "{e}");
    }

    #[test]
    fn stored_payloads_of_any_accepted_size_parse_back() {
        let text = "t".repeat(9 * 1024);
        let xml =
            format!("<fields xmlns='urn:xmpp:iot:sensordata'><string value='{text}'/></fields>");
        let el = parse_element(&xml).unwrap();
        assert_eq!(
            el.children()
                .next()
                .and_then(|s| s.attr("value"))
                .map(str::len),
            Some(9 * 1024)
        );
        assert!(parse_element("<a>").is_none());
        assert!(parse_element("<a/><b/>").is_none(), "one element only");
    }
}
