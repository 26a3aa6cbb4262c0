//! The diff engine: two exchanges in, a [`Comparison`] out. Pure: no I/O, no
//! clocks, no shared state, so every rule is unit-tested on its own.
//!
//! Locations are `status`, `header:<name>` and `body` or `body:<JSON
//! Pointer>`. Bodies are decoded first (gzip, deflate, br), so two sides that
//! compress differently still match. JSON is compared structurally, text by
//! lines, anything else by length and hash.

pub mod decode;
pub mod grpc;
pub mod json;
pub mod node;
pub mod pointer;
pub mod rules;
pub mod text;

use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use serde::{Deserialize, Serialize};

use rules::DiffRules;

/// One side's answer to a request.
#[derive(Clone, Debug, Default)]
pub struct Exchange {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The body was longer than the capture cap; `body` is its start.
    pub truncated: bool,
    /// Time to the response head.
    pub latency: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Same type, different value.
    ValueChanged,
    /// A string became a number, an object became an array…
    TypeChanged,
    /// Present in old, absent in new.
    Missing,
    /// Absent in old, present in new.
    Extra,
    /// Arrays of different length.
    LengthChanged,
    /// The same elements in a different order.
    OrderChanged,
    /// Text bodies differ (see the unified diff).
    TextChanged,
    /// Binary bodies differ (length and hash).
    BinaryChanged,
    /// A body was too large to compare whole.
    Truncated,
}

impl Kind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::ValueChanged => "value_changed",
            Kind::TypeChanged => "type_changed",
            Kind::Missing => "missing",
            Kind::Extra => "extra",
            Kind::LengthChanged => "length_changed",
            Kind::OrderChanged => "order_changed",
            Kind::TextChanged => "text_changed",
            Kind::BinaryChanged => "binary_changed",
            Kind::Truncated => "truncated",
        }
    }
}

/// One difference between old (left) and new (right).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Difference {
    /// `status`, `header:<name>`, `body`, or `body:<pointer>`.
    pub location: String,
    pub kind: Kind,
    /// Old's value, as compact JSON or text (shortened).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub left: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub right: Option<String>,
    /// A unified diff, a similarity ratio, a hash…
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub detail: Option<String>,
    /// Matched an ignore rule: counted, never reported as a difference.
    #[serde(default)]
    pub ignored: bool,
}

impl Difference {
    pub fn new(location: impl Into<String>, kind: Kind) -> Self {
        Self {
            location: location.into(),
            kind,
            left: None,
            right: None,
            detail: None,
            ignored: false,
        }
    }

    pub fn values(mut self, left: Option<String>, right: Option<String>) -> Self {
        self.left = left.map(shorten);
        self.right = right.map(shorten);
        self
    }

    /// The location with array indices generalised (`body:/items/*/price`),
    /// which is what counts and noise are kept by.
    pub fn field(&self) -> String {
        generalise(&self.location)
    }
}

/// Replaces numeric pointer tokens by `*`.
pub fn generalise(location: &str) -> String {
    let Some(ptr) = location.strip_prefix("body:") else {
        return location.to_string();
    };
    let mut out = String::with_capacity(location.len());
    out.push_str("body:");
    for tok in ptr.split('/').skip(1) {
        out.push('/');
        if !tok.is_empty() && tok.bytes().all(|b| b.is_ascii_digit()) {
            out.push('*');
        } else {
            out.push_str(tok);
        }
    }
    out
}

const SNIPPET: usize = 200;

fn shorten(mut s: String) -> String {
    if s.len() > SNIPPET {
        let mut cut = SNIPPET;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// The result of comparing two exchanges.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub differences: Vec<Difference>,
}

impl Comparison {
    /// Differences that count (not ignored).
    pub fn counted(&self) -> impl Iterator<Item = &Difference> {
        self.differences.iter().filter(|d| !d.ignored)
    }

    pub fn is_match(&self) -> bool {
        self.differences.is_empty()
    }

    /// Only ignored differences.
    pub fn is_ignored_only(&self) -> bool {
        !self.differences.is_empty() && self.differences.iter().all(|d| d.ignored)
    }
}

/// Compares old (left) with new (right) under `rules`.
pub fn compare(old: &Exchange, new: &Exchange, rules: &DiffRules) -> Comparison {
    compare_call(old, new, rules, "")
}

/// Compares the answers to a request for `target` (its path tells a gRPC
/// call's method, hence its message type).
pub fn compare_call(old: &Exchange, new: &Exchange, rules: &DiffRules, target: &str) -> Comparison {
    let mut out = Vec::new();
    if old.status != new.status {
        out.push(
            Difference::new("status", Kind::ValueChanged)
                .values(Some(old.status.to_string()), Some(new.status.to_string())),
        );
    }
    compare_headers(&old.headers, &new.headers, rules, &mut out);
    compare_bodies(old, new, rules, target, &mut out);
    Comparison { differences: out }
}

fn header_text(h: &HeaderMap, name: &http::HeaderName) -> Option<String> {
    let mut vals = h
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let first = vals.next()?;
    Some(vals.fold(first, |acc, v| acc + ", " + &v))
}

fn compare_headers(old: &HeaderMap, new: &HeaderMap, rules: &DiffRules, out: &mut Vec<Difference>) {
    // The common case, with no lookup at all: both sides sent the same
    // fields in the same order (a server and its twin, or old asked twice).
    if old.len() == new.len() && old.iter().eq(new.iter()) {
        return;
    }
    // Most headers of a pair are the same byte for byte: compared as sent,
    // they cost no text, and only the few that differ are sorted (into
    // the report's order). Sorting every name of both sides first was half
    // of each comparison's instructions.
    let sent_alike = |name: &http::HeaderName| old.get_all(name).iter().eq(new.get_all(name).iter());
    let mut differing: Vec<&http::HeaderName> = old
        .keys()
        .filter(|name| !sent_alike(name))
        .chain(new.keys().filter(|name| !old.contains_key(*name)))
        .collect();
    differing.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
    for name in differing {
        // As text: values split over two lines still equal the same values
        // joined on one.
        let (l, r) = (header_text(old, name), header_text(new, name));
        if l == r {
            continue;
        }
        let kind = match (&l, &r) {
            (Some(_), None) => Kind::Missing,
            (None, Some(_)) => Kind::Extra,
            _ => Kind::ValueChanged,
        };
        let mut d = Difference::new(format!("header:{}", name.as_str()), kind).values(l, r);
        d.ignored = rules.is_ignored_header(name.as_str());
        out.push(d);
    }
}

fn content_type(h: &HeaderMap) -> &str {
    h.get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Bodies longer than the kept size are compared on what is known: their
/// lengths (a whole body is shorter than a cut one) and the kept prefixes,
/// as sent (both encoded the same way, or nothing can be said).
fn compare_truncated(old: &Exchange, new: &Exchange, out: &mut Vec<Difference>) {
    let encoding = |e: &Exchange| e.headers.get(http::header::CONTENT_ENCODING).cloned();
    let kept = old.body.len().min(new.body.len());
    let first_difference = old.body[..kept].iter().zip(&new.body[..kept]).position(|(a, b)| a != b);
    let same_encoding = encoding(old) == encoding(new);
    let side = |e: &Exchange| {
        if e.truncated {
            format!("more than {} bytes", e.body.len())
        } else {
            format!("{} bytes", e.body.len())
        }
    };
    let mut d = Difference::new("body", Kind::Truncated);
    if !same_encoding {
        d.detail = Some("a body was longer than shadow.max_response_bytes and the sides are encoded differently; bodies were not compared".into());
        d.ignored = true;
    } else if old.truncated != new.truncated {
        d = Difference::new("body", Kind::LengthChanged).values(Some(side(old)), Some(side(new)));
        d.detail = Some(format!(
            "only one body is longer than the {kept} bytes kept (shadow.max_response_bytes)"
        ));
    } else if let Some(at) = first_difference {
        d = Difference::new("body", Kind::BinaryChanged);
        d.detail = Some(format!(
            "the bodies differ at byte {at}, within the first {kept} bytes kept (shadow.max_response_bytes)"
        ));
    } else {
        d.detail = Some(format!(
            "both bodies are longer than shadow.max_response_bytes; their first {kept} bytes are equal and the rest was not compared"
        ));
        d.ignored = true;
    }
    out.push(d);
}

fn compare_bodies(old: &Exchange, new: &Exchange, rules: &DiffRules, target: &str, out: &mut Vec<Difference>) {
    if old.truncated || new.truncated {
        compare_truncated(old, new, out);
        return;
    }
    // Both sides of a comparison share one bound on decoded bytes.
    let mut budget = decode::MAX_DECODED;
    let l = decode::decoded(&old.headers, &old.body, &mut budget);
    let r = decode::decoded(&new.headers, &new.body, &mut budget);
    let (l, r) = match (l, r) {
        (Ok(l), Ok(r)) => (l, r),
        (l, r) => {
            let mut d = Difference::new("body", Kind::BinaryChanged);
            d.detail = Some(format!(
                "could not decode: old {}, new {}",
                l.err().unwrap_or_else(|| "ok".into()),
                r.err().unwrap_or_else(|| "ok".into())
            ));
            out.push(d);
            return;
        }
    };
    if l == r {
        return;
    }
    let grpc = |h: &HeaderMap| content_type(h).starts_with("application/grpc");
    if grpc(&old.headers) && grpc(&new.headers) {
        compare_grpc(&l, &r, rules, target, out);
        return;
    }
    let json_l = json::parse_if_json(content_type(&old.headers), &l);
    let json_r = json::parse_if_json(content_type(&new.headers), &r);
    match (json_l, json_r) {
        (Some(a), Some(b)) => json::compare(a, b, rules, out),
        (a, b) if a.is_some() != b.is_some() && !(l.is_empty() || r.is_empty()) => {
            out.push(
                Difference::new("body", Kind::TypeChanged).values(Some(text::preview(&l)), Some(text::preview(&r))),
            );
        }
        _ => match (std::str::from_utf8(&l), std::str::from_utf8(&r)) {
            (Ok(a), Ok(b)) => out.push(text::compare(a, b)),
            _ => out.push(text::binary(&l, &r)),
        },
    }
}

/// gRPC messages: field by field when the descriptors know the method,
/// else as bytes, saying why.
fn compare_grpc(l: &[u8], r: &[u8], rules: &DiffRules, target: &str, out: &mut Vec<Difference>) {
    let path = target.split('?').next().unwrap_or(target);
    let why_bytes = match rules.grpc.as_ref().map(|g| g.response_of(path)) {
        None => {
            "gRPC messages compared as bytes; set diff.grpc.descriptor_set to compare them field by field".to_string()
        }
        Some(None) => format!("diff.grpc.descriptor_set does not describe {path}; compared as bytes"),
        Some(Some(descriptor)) => match (grpc::to_json(&descriptor, l), grpc::to_json(&descriptor, r)) {
            (Ok(a), Ok(b)) => {
                if let (Some(a), Some(b)) = (
                    json::parse_if_json("application/json", a.as_bytes()),
                    json::parse_if_json("application/json", b.as_bytes()),
                ) {
                    json::compare(a, b, rules, out);
                }
                return;
            }
            (Err(e), _) | (_, Err(e)) => format!("a gRPC message could not be decoded ({e}); compared as bytes"),
        },
    };
    let mut d = text::binary(l, r);
    d.detail = Some(match d.detail.take() {
        Some(detail) => format!("{detail}; {why_bytes}"),
        None => why_bytes,
    });
    out.push(d);
}

#[cfg(test)]
mod tests;
