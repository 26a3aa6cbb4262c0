//! Response heads from a backend, as the HTTP/1.1 leg parses them: any
//! bytes, no panic; a head it accepts has consistent framing.
#![no_main]

use bytes::BytesMut;
use http::Method;
use libfuzzer_sys::fuzz_target;
use switchyard::proxy::wire::{parse_response, ResponseFraming};

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    let method = if first & 1 == 0 { Method::GET } else { Method::HEAD };
    let mut buf = BytesMut::from(rest);
    if let Ok(Some(head)) = parse_response(&mut buf, &method) {
        if head.framing == ResponseFraming::UntilClose {
            assert!(!head.keep_alive, "a body read until close cannot leave the connection reusable");
        }
        if method == Method::HEAD {
            assert_eq!(head.framing, ResponseFraming::Empty);
        }
        assert!(head.parts.status.as_u16() >= 200);
    }
});
