//! The diff engine on two bodies (split from the input), as JSON: no panic,
//! and a body compared with itself never differs.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use switchyard::diff::rules::DiffRules;
use switchyard::diff::{compare, Exchange};

fn exchange(body: &[u8]) -> Exchange {
    let mut headers = http::HeaderMap::new();
    headers.insert("content-type", http::HeaderValue::from_static("application/json"));
    Exchange {
        status: 200,
        headers,
        body: Bytes::copy_from_slice(body),
        ..Default::default()
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&at, rest)) = data.split_first() else { return };
    let at = (at as usize * rest.len()) / 256;
    let (a, b) = (exchange(&rest[..at]), exchange(&rest[at..]));
    let rules = DiffRules::default();
    let _ = compare(&a, &b, &rules);
    assert!(compare(&a, &a, &rules).differences.is_empty(), "a body differs from itself");
});
