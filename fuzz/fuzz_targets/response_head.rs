//! Response heads from a backend, as the HTTP/1.1 leg parses them: any
//! bytes, no panic; a head it accepts has consistent framing; and a head
//! parsed with the names a connection remembers from the head before it
//! parses exactly as it would afresh.
#![no_main]

use bytes::BytesMut;
use http::Method;
use libfuzzer_sys::fuzz_target;
use switchyard::proxy::wire::{parse_response, HeadError, KnownNames, ResponseFraming, ResponseHead};

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    let method = if first & 1 == 0 { Method::GET } else { Method::HEAD };
    // The rest is two answers of one connection, in turn, cut where the
    // first byte says.
    let cut = usize::from(first >> 1) * rest.len() / 128;
    let (earlier, later) = rest.split_at(cut);
    let mut names = KnownNames::default();
    check(parse_response(&mut BytesMut::from(earlier), &method, &mut names), &method);
    let remembered = parse_response(&mut BytesMut::from(later), &method, &mut names);
    let fresh = parse_response(&mut BytesMut::from(later), &method, &mut KnownNames::default());
    assert_eq!(outcome(&remembered), outcome(&fresh), "the names remembered changed the parse");
    check(remembered, &method);
});

fn check(parsed: Result<Option<ResponseHead>, HeadError>, method: &Method) {
    if let Ok(Some(head)) = parsed {
        if head.framing == ResponseFraming::UntilClose {
            assert!(!head.keep_alive, "a body read until close cannot leave the connection reusable");
        }
        if method == Method::HEAD {
            assert_eq!(head.framing, ResponseFraming::Empty);
        }
        assert!(head.parts.status.as_u16() >= 200);
    }
}

fn outcome(parsed: &Result<Option<ResponseHead>, HeadError>) -> String {
    match parsed {
        Ok(Some(h)) => format!(
            "{} {:?} {:?} {} {:?}",
            h.parts.status,
            h.parts.version,
            h.framing,
            h.keep_alive,
            h.parts.headers.iter().collect::<Vec<_>>()
        ),
        other => format!("{other:?}"),
    }
}
