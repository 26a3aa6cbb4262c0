//! Path normalisation, which routes and rules decide on: the result starts
//! with '/', has no empty, '.' or '..' segment, and normalising it again
//! changes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard::proxy::target::normalized;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // Request paths are visible ASCII starting with '/'.
    if !text.starts_with('/') || !text.bytes().all(|b| b.is_ascii_graphic()) {
        return;
    }
    let once = normalized(text).into_owned();
    assert!(once.starts_with('/'), "{text:?} -> {once:?}");
    let inner = once.trim_end_matches('/');
    for seg in inner.split('/').skip(1) {
        assert!(!seg.is_empty() && seg != "." && seg != "..", "{text:?} -> {once:?}");
    }
    assert_eq!(normalized(&once), once, "not idempotent for {text:?}");
});
