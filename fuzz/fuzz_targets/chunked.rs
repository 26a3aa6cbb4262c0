//! Chunked bodies from a backend, fed in two pieces at a fuzzed split:
//! any bytes, no panic, and never more data out than bytes in.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use switchyard::proxy::wire::{ChunkedDecoder, Decoded};

fuzz_target!(|data: &[u8]| {
    let Some((&split, body)) = data.split_first() else { return };
    let split = (split as usize).min(body.len());
    let mut decoder = ChunkedDecoder::default();
    let mut buf = BytesMut::from(&body[..split]);
    let mut out = 0usize;
    let mut fed_rest = false;
    loop {
        match decoder.decode(&mut buf) {
            Ok(Decoded::Data(d)) => out += d.len(),
            Ok(Decoded::Trailers(_)) | Ok(Decoded::End) | Err(_) => break,
            Ok(Decoded::NeedMore) if !fed_rest => {
                buf.extend_from_slice(&body[split..]);
                fed_rest = true;
            }
            Ok(Decoded::NeedMore) => break,
        }
    }
    assert!(out <= body.len());
});
