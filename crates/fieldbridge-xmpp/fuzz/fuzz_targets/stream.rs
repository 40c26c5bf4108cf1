//! Arbitrary bytes as the server's side of the component stream, split
//! where the input says: errors end the stream, panics are bugs, and every
//! stanza that comes out can be serialized and parsed back.
#![no_main]

use fieldbridge_xmpp::reader::{Incoming, StanzaReader, parse_element};
use libfuzzer_sys::fuzz_target;

const HEADER: &[u8] = b"<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
    xmlns:stream='http://etherx.jabber.org/streams' id='x' from='gw.localhost'>";

fuzz_target!(|data: &[u8]| {
    let (split, body) = match data.split_first() {
        Some((s, rest)) => (usize::from(*s).max(1), rest),
        None => return,
    };
    let mut reader = StanzaReader::new();
    if reader.feed(HEADER).is_err() {
        return;
    }
    for chunk in body.chunks(split) {
        if reader.feed(chunk).is_err() {
            break;
        }
    }
    while let Some(item) = reader.pop() {
        if let Incoming::Stanza(el) = item {
            let text = String::from(&el);
            assert!(
                parse_element(&text).is_some(),
                "a stanza that was read serializes to something readable: {text}"
            );
        }
    }
});
