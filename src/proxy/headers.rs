//! Header rules of a proxy, in one place: hop-by-hop headers never cross the
//! gateway (RFC 9110 §7.6.1), and forwarded requests say where they came from.

use std::fmt::Write;
use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::Version;

/// Headers that describe one connection, not the message.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
    HeaderName::from_static("keep-alive"),
];

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static X_SERVED_BY: HeaderName = HeaderName::from_static("x-switchyard-served-by");
pub static X_SHADOW: HeaderName = HeaderName::from_static("x-switchyard-shadow");

/// Removes hop-by-hop headers: the fixed list, every `Proxy-*` header, and
/// every header the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Fast path: most requests carry none of these.
    let named_by_connection: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named_by_connection {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        if headers.contains_key(name) {
            headers.remove(name);
        }
    }
    let has_proxy_header = headers.keys().any(|k| k.as_str().starts_with("proxy-"));
    if has_proxy_header {
        let proxy: Vec<HeaderName> = headers
            .keys()
            .filter(|k| k.as_str().starts_with("proxy-"))
            .cloned()
            .collect();
        for name in proxy {
            headers.remove(name);
        }
    }
}

fn via_value(version: Version) -> &'static str {
    match version {
        Version::HTTP_2 => "2 switchyard",
        Version::HTTP_10 => "1.0 switchyard",
        Version::HTTP_3 => "3 switchyard",
        _ => "1.1 switchyard",
    }
}

/// Appends this hop to `Via`.
pub fn append_via(headers: &mut HeaderMap, version: Version) {
    let ours = via_value(version);
    let value = match headers.get(header::VIA).and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.is_empty() => {
            HeaderValue::from_str(&format!("{prev}, {ours}")).unwrap_or(HeaderValue::from_static(ours))
        }
        _ => HeaderValue::from_static(ours),
    };
    headers.insert(header::VIA, value);
}

/// Adds `X-Forwarded-For` (appending the client), `X-Forwarded-Proto` and
/// `X-Forwarded-Host` (kept when an earlier proxy set them).
pub fn add_forwarding(headers: &mut HeaderMap, client: IpAddr, host: Option<&HeaderValue>) {
    let mut xff = String::with_capacity(48);
    if let Some(prev) = headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        xff.push_str(prev);
        xff.push_str(", ");
    }
    let client = match client {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    let _ = write!(xff, "{client}");
    if let Ok(v) = HeaderValue::from_str(&xff) {
        headers.insert(&X_FORWARDED_FOR, v);
    }
    if !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    }
    if !headers.contains_key(&X_FORWARDED_HOST) {
        if let Some(h) = host {
            headers.insert(&X_FORWARDED_HOST, h.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    #[test]
    fn strips_fixed_named_and_proxy_headers() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret"),
            ("connection", "X-Other"),
            ("x-secret", "1"),
            ("x-other", "2"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("trailer", "x-sum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic x"),
            ("proxy-connection", "keep-alive"),
            ("x-kept", "yes"),
            ("content-type", "application/json"),
        ]);
        strip_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, vec!["content-type", "x-kept"]);
    }

    #[test]
    fn forwarding_appends_to_an_existing_chain() {
        let mut h = map(&[("x-forwarded-for", "203.0.113.9"), ("x-forwarded-proto", "https")]);
        add_forwarding(
            &mut h,
            "10.0.0.1".parse().unwrap(),
            Some(&HeaderValue::from_static("shop.example")),
        );
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, 10.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "shop.example");
    }

    #[test]
    fn forwarding_sets_fresh_headers_and_unmaps_ipv4() {
        let mut h = HeaderMap::new();
        add_forwarding(&mut h, "::ffff:192.0.2.1".parse().unwrap(), None);
        assert_eq!(h["x-forwarded-for"], "192.0.2.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert!(!h.contains_key("x-forwarded-host"));
    }

    #[test]
    fn via_names_the_received_protocol() {
        let mut h = HeaderMap::new();
        append_via(&mut h, Version::HTTP_2);
        assert_eq!(h["via"], "2 switchyard");
        append_via(&mut h, Version::HTTP_11);
        assert_eq!(h["via"], "2 switchyard, 1.1 switchyard");
    }
}
