//! Header rules of a proxy, in one place: hop-by-hop headers never cross the
//! gateway (RFC 9110 §7.6.1), and forwarded requests say where they came from.

use std::net::IpAddr;

use http::header::{self, Entry, HeaderMap, HeaderName, HeaderValue};
use http::Version;

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static X_SERVED_BY: HeaderName = HeaderName::from_static("x-switchyard-served-by");
pub static X_SHADOW: HeaderName = HeaderName::from_static("x-switchyard-shadow");

/// Whether a header describes one connection rather than the message.
pub(crate) fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection" | "keep-alive" | "te" | "trailer" | "transfer-encoding" | "upgrade"
    ) || name.as_str().starts_with("proxy-")
}

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");

/// Removes hop-by-hop headers: the fixed list, every `Proxy-*` header, and
/// every header the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass of string compares decides; most messages have nothing to
    // remove, and hashing a dozen names per request showed in profiles.
    let (mut any, mut beyond_connection) = (false, false);
    for k in headers.keys() {
        if is_hop_by_hop(k) {
            any = true;
            beyond_connection |= *k != header::CONNECTION && *k != KEEP_ALIVE;
        }
    }
    if !any {
        return;
    }
    // The usual case, `Connection: keep-alive` or `close` from a backend,
    // names nothing beyond the fixed list: no parsing, no allocation.
    let plain = headers.get_all(header::CONNECTION).iter().all(|v| {
        let v = v.as_bytes();
        v.eq_ignore_ascii_case(b"keep-alive") || v.eq_ignore_ascii_case(b"close")
    });
    if plain && !beyond_connection {
        headers.remove(header::CONNECTION);
        headers.remove(&KEEP_ALIVE);
        return;
    }
    let mut doomed: Vec<HeaderName> = Vec::new();
    if !plain {
        doomed.extend(
            headers
                .get_all(header::CONNECTION)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok()),
        );
    }
    doomed.extend(headers.keys().filter(|k| is_hop_by_hop(k)).cloned());
    for name in doomed {
        headers.remove(name);
    }
}

/// This hop's `Via` entry, by the protocol the message arrived in; built at
/// compile time, so adding it validates nothing per request.
fn via_value(version: Version) -> HeaderValue {
    const VIA_2: HeaderValue = HeaderValue::from_static("2 switchyard");
    const VIA_10: HeaderValue = HeaderValue::from_static("1.0 switchyard");
    const VIA_11: HeaderValue = HeaderValue::from_static("1.1 switchyard");
    const VIA_3: HeaderValue = HeaderValue::from_static("3 switchyard");
    match version {
        Version::HTTP_2 => VIA_2,
        Version::HTTP_10 => VIA_10,
        Version::HTTP_3 => VIA_3,
        _ => VIA_11,
    }
}

/// Appends this hop to `Via`.
pub fn append_via(headers: &mut HeaderMap, version: Version) {
    let ours = via_value(version);
    // One lookup: the entry both reads the chain and writes it.
    match headers.entry(header::VIA) {
        Entry::Vacant(e) => {
            e.insert(ours);
        }
        Entry::Occupied(mut e) => {
            let chain = match (e.get().to_str(), ours.to_str()) {
                (Ok(prev), Ok(hop)) if !prev.is_empty() => {
                    HeaderValue::from_str(&format!("{prev}, {hop}")).unwrap_or(ours)
                }
                _ => ours,
            };
            e.insert(chain);
        }
    }
}

/// A client address as it goes into `X-Forwarded-For` (IPv4-mapped IPv6
/// written as IPv4). Made once per connection.
pub fn client_value(client: IpAddr) -> HeaderValue {
    let client = match client {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    HeaderValue::from_str(&client.to_string()).unwrap_or(HeaderValue::from_static("unknown"))
}

/// Adds `X-Forwarded-For` (appending the client), `X-Forwarded-Proto` and
/// `X-Forwarded-Host` (kept when an earlier proxy set them).
pub fn add_forwarding(headers: &mut HeaderMap, client: &HeaderValue, host: Option<&HeaderValue>) {
    match headers.entry(&X_FORWARDED_FOR) {
        Entry::Vacant(e) => {
            e.insert(client.clone());
        }
        Entry::Occupied(mut e) => {
            if let Ok(prev) = e.get().to_str() {
                let mut xff = String::with_capacity(prev.len() + 2 + client.len());
                xff.push_str(prev);
                xff.push_str(", ");
                xff.push_str(client.to_str().unwrap_or(""));
                if let Ok(v) = HeaderValue::from_str(&xff) {
                    e.insert(v);
                }
            }
        }
    }
    headers
        .entry(&X_FORWARDED_PROTO)
        .or_insert_with(|| HeaderValue::from_static("http"));
    if let Some(h) = host {
        headers.entry(&X_FORWARDED_HOST).or_insert_with(|| h.clone());
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
    fn a_plain_keep_alive_or_close_is_removed_without_touching_the_rest() {
        for value in ["keep-alive", "Close"] {
            let mut h = map(&[
                ("connection", value),
                ("keep-alive", "timeout=5"),
                ("content-type", "text/plain"),
            ]);
            strip_hop_by_hop(&mut h);
            let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
            assert_eq!(left, vec!["content-type"], "{value}");
        }
        let mut h = map(&[("connection", "keep-alive"), ("upgrade", "h2c"), ("x-a", "1")]);
        strip_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, vec!["x-a"]);
    }

    #[test]
    fn forwarding_appends_to_an_existing_chain() {
        let mut h = map(&[("x-forwarded-for", "203.0.113.9"), ("x-forwarded-proto", "https")]);
        let client = client_value("10.0.0.1".parse().unwrap());
        add_forwarding(&mut h, &client, Some(&HeaderValue::from_static("shop.example")));
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, 10.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "shop.example");
    }

    #[test]
    fn forwarding_sets_fresh_headers_and_unmaps_ipv4() {
        let mut h = HeaderMap::new();
        add_forwarding(&mut h, &client_value("::ffff:192.0.2.1".parse().unwrap()), None);
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
