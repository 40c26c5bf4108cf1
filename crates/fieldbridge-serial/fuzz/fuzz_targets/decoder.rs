//! Arbitrary bytes, cut into arbitrary reads, through every framing: the
//! decoder must never panic, never return a frame longer than its maximum,
//! and never end the stream.
#![no_main]

use bytes::BytesMut;
use fieldbridge_serial::framing::{FrameDecoder, Framing};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let framings = [
        Framing::Lines,
        Framing::Delimiter(b";;".to_vec()),
        Framing::StartEnd {
            start: vec![0x02],
            end: vec![0x03],
        },
    ];
    for framing in framings {
        let max = 16;
        let mut decoder = FrameDecoder::new(framing, max);
        let mut buf = BytesMut::new();
        let step = usize::from(split % 17) + 1;
        for chunk in rest.chunks(step) {
            buf.extend_from_slice(chunk);
            while let Ok(Some(item)) = decoder.decode(&mut buf) {
                if let Ok(frame) = item {
                    assert!(frame.len() <= max, "frame longer than the maximum");
                }
            }
            assert!(buf.len() <= max + 16, "the buffer must stay bounded");
        }
    }
});
