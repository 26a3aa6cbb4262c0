//! A stored sample: one request and the answers of old, new (and the twin),
//! kept as evidence for a field, redacted before it is kept anywhere. Each
//! has an id, so an engineer can show it side by side or replay it.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::diff::{Difference, Exchange, Kind};

/// Headers never stored or shown, whatever the config says.
pub const ALWAYS_REDACTED: &[&str] = &["authorization", "cookie", "set-cookie", "proxy-authorization"];

/// What a redacted header's value is replaced by.
pub const REDACTED: &str = "[redacted]";

/// Bodies are kept up to this many bytes.
pub const BODY_SNIPPET: usize = 4096;

/// One side of a stored sample.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SideSample {
    pub status: u16,
    pub content_type: String,
    /// The body, decoded, shortened to a few KB.
    pub body: String,
    pub latency_ms: f64,
}

/// A request and both answers, kept as evidence for a field.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Sample {
    /// Stable for the sample's life: `switchyard diff show ID`, `replay ID`.
    #[serde(default)]
    pub id: String,
    pub at_ms: u64,
    pub request_id: String,
    pub route: String,
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Request headers, sensitive ones redacted.
    pub headers: Vec<(String, String)>,
    pub request_body: String,
    /// The request body was longer than what was kept: a replay would not
    /// send the same request.
    #[serde(default)]
    pub request_body_cut: bool,
    pub old: SideSample,
    pub new: SideSample,
    /// The noise baseline's answer, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub twin: Option<SideSample>,
    pub difference: Difference,
}

impl Sample {
    /// The id of the sample a request left for a field: short, and the same
    /// wherever it is computed (the store keeps no separate index).
    pub fn id_for(request_id: &str, at_ms: u64, field: &str) -> String {
        let mut key = Vec::with_capacity(request_id.len() + field.len() + 9);
        key.extend_from_slice(request_id.as_bytes());
        key.extend_from_slice(&at_ms.to_le_bytes());
        key.extend_from_slice(field.as_bytes());
        format!("{:012x}", xxhash_rust::xxh3::xxh3_64(&key) >> 16)
    }
}

/// The set of header names a gateway redacts: the fixed ones and the config's.
pub fn redaction(extra: &[String]) -> HashSet<String> {
    let mut redact: HashSet<String> = ALWAYS_REDACTED.iter().map(|s| s.to_string()).collect();
    redact.extend(extra.iter().map(|h| h.to_ascii_lowercase()));
    redact
}

/// Request headers as stored: names lower-case, redacted values replaced.
pub fn stored_headers(headers: &http::HeaderMap, redact: &HashSet<String>) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| {
            let value = if redact.contains(k.as_str()) {
                REDACTED.to_string()
            } else {
                String::from_utf8_lossy(v.as_bytes()).into_owned()
            };
            (k.as_str().to_string(), value)
        })
        .collect()
}

pub fn redact_difference(d: &Difference, redact: &HashSet<String>) -> Difference {
    let mut d = d.clone();
    if let Some(name) = d.location.strip_prefix("header:") {
        if redact.contains(name) {
            d.left = d.left.map(|_| REDACTED.into());
            d.right = d.right.map(|_| REDACTED.into());
        }
    }
    d
}

/// The first [`BODY_SNIPPET`] bytes as text, and whether that was all.
pub fn snippet(bytes: &[u8]) -> (String, bool) {
    let cut = bytes.len().min(BODY_SNIPPET);
    let mut s = String::from_utf8_lossy(&bytes[..cut]).into_owned();
    let was_cut = bytes.len() > BODY_SNIPPET;
    if was_cut {
        s.push('…');
    }
    (s, was_cut)
}

pub fn side_sample(x: &Exchange) -> SideSample {
    let mut budget = crate::diff::decode::MAX_DECODED;
    let body = crate::diff::decode::decoded(&x.headers, &x.body, &mut budget).unwrap_or_else(|_| x.body.clone());
    SideSample {
        status: x.status,
        content_type: x
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
        body: snippet(&body).0,
        latency_ms: x.latency.as_secs_f64() * 1000.0,
    }
}

/// A placeholder difference, replaced by the one a sample is kept for.
pub fn no_difference() -> Difference {
    Difference::new("", Kind::ValueChanged)
}
