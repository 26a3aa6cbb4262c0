//! Who the client is, and the `X-Forwarded-*` headers that tell a backend.
//!
//! Only peers listed in `server.trusted_proxies` (a load balancer in front)
//! are believed: their `X-Forwarded-For` is kept and appended to, and names
//! the client (the rightmost address that is not itself a trusted proxy, as
//! NGINX's `real_ip_recursive` does). From anyone else the headers are
//! replaced by what the gateway saw, so a client cannot pose as another
//! address to the split, the rate limiter, `force_from` or the backend.

use std::net::IpAddr;

use bytes::BytesMut;
use http::header::{Entry, HeaderMap, HeaderValue};

use super::headers::{X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO};
use crate::config::cidr::Ranges;

/// A client address as it goes into `X-Forwarded-For` (IPv4-mapped IPv6
/// written as IPv4). Made once per connection.
pub fn client_value(client: IpAddr) -> HeaderValue {
    let text = match unmapped(client) {
        // By hand: `Display` through the formatter, then a copy into the
        // value, cost 1.5k instructions per connection in profiles.
        IpAddr::V4(v4) => {
            let mut out = [0u8; 15];
            let mut n = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out[n] = b'.';
                    n += 1;
                }
                for (at_least, digit) in [(100, octet / 100), (10, octet / 10 % 10), (0, octet % 10)] {
                    if octet >= at_least {
                        out[n] = b'0' + digit;
                        n += 1;
                    }
                }
            }
            return HeaderValue::from_bytes(&out[..n]).unwrap_or(HeaderValue::from_static("unknown"));
        }
        v6 => v6.to_string(),
    };
    HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("unknown"))
}

fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The client of a request from `peer`: the peer itself, unless the peer is
/// a trusted proxy, in which case the rightmost untrusted address of
/// `X-Forwarded-For` (or the last trusted hop when every entry is trusted
/// or one does not parse).
pub fn client_ip(headers: &HeaderMap, peer: IpAddr, trusted: &Ranges) -> IpAddr {
    if trusted.is_empty() || !trusted.contains(peer) {
        return peer;
    }
    let mut client = peer;
    // Later header lines are later hops; within a line, entries run left to right.
    let lines: Vec<&HeaderValue> = headers.get_all(&X_FORWARDED_FOR).iter().collect();
    for line in lines.iter().rev() {
        let Ok(text) = line.to_str() else { return client };
        for entry in text.rsplit(',') {
            let Some(ip) = parse_entry(entry) else { return client };
            client = ip;
            if !trusted.contains(ip) {
                return ip;
            }
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an address, maybe with a port (`1.2.3.4:5`,
/// `[::1]:5`).
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let e = entry.trim();
    if let Ok(ip) = e.parse::<IpAddr>() {
        return Some(unmapped(ip));
    }
    if let Some(rest) = e.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok().map(unmapped);
    }
    let (host, port) = e.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse().ok().map(unmapped)
}

/// Writes the forwarding headers of a request from `peer` (whose address is
/// `peer_value`). From a trusted proxy, `X-Forwarded-For` lines are joined
/// and the peer appended, byte for byte (a value that is not text still
/// gets the address), and `-Proto`/`-Host` are kept when present. From
/// anyone else, all three are what the gateway itself saw.
pub fn set(
    headers: &mut HeaderMap,
    peer_value: &HeaderValue,
    trusted: bool,
    proto: &'static str,
    host: Option<&HeaderValue>,
) {
    if trusted {
        let mut lines = headers.get_all(&X_FORWARDED_FOR).iter();
        let chain = match (lines.next(), lines.next()) {
            (None, _) => peer_value.clone(),
            (Some(only), None) if only.is_empty() => peer_value.clone(),
            (Some(first), second) => {
                let mut buf = BytesMut::with_capacity(first.len() + peer_value.len() + 16);
                buf.extend_from_slice(first.as_bytes());
                for more in second.into_iter().chain(lines) {
                    buf.extend_from_slice(b", ");
                    buf.extend_from_slice(more.as_bytes());
                }
                buf.extend_from_slice(b", ");
                buf.extend_from_slice(peer_value.as_bytes());
                // Every byte came from a valid value or an address.
                HeaderValue::from_maybe_shared(buf.freeze()).unwrap_or_else(|_| peer_value.clone())
            }
        };
        headers.insert(&X_FORWARDED_FOR, chain);
        headers
            .entry(&X_FORWARDED_PROTO)
            .or_insert_with(|| HeaderValue::from_static(proto));
        if let Some(h) = host {
            headers.entry(&X_FORWARDED_HOST).or_insert_with(|| h.clone());
        }
        return;
    }
    headers.insert(&X_FORWARDED_FOR, peer_value.clone());
    headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    match (host, headers.entry(&X_FORWARDED_HOST)) {
        (Some(h), Entry::Occupied(mut e)) => {
            e.insert(h.clone());
        }
        (Some(h), Entry::Vacant(e)) => {
            e.insert(h.clone());
        }
        (None, Entry::Occupied(e)) => {
            e.remove_entry_mult().1.for_each(drop);
        }
        (None, Entry::Vacant(_)) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_address_is_written_as_display_writes_it() {
        for ip in [
            "0.0.0.0",
            "255.255.255.255",
            "10.0.0.1",
            "192.168.100.9",
            "1.20.255.3",
            "100.10.1.0",
            "2001:db8::1",
            "::1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(client_value(ip), ip.to_string().as_str());
        }
        let mapped: IpAddr = "::ffff:203.0.113.7".parse().unwrap();
        assert_eq!(client_value(mapped), "203.0.113.7");
    }

    fn map(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_bytes(v).unwrap(),
            );
        }
        m
    }

    fn ranges(list: &[&str]) -> Ranges {
        Ranges::new(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn an_untrusted_peer_cannot_say_who_it_is() {
        let mut h = map(&[
            ("x-forwarded-for", b"6.6.6.6"),
            ("x-forwarded-proto", b"https"),
            ("x-forwarded-host", b"admin.internal"),
        ]);
        let peer: IpAddr = "198.51.100.4".parse().unwrap();
        assert_eq!(client_ip(&h, peer, &ranges(&["10.0.0.0/8"])), peer);
        set(
            &mut h,
            &client_value(peer),
            false,
            "http",
            Some(&HeaderValue::from_static("shop.example")),
        );
        assert_eq!(h["x-forwarded-for"], "198.51.100.4");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "shop.example");
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
    }

    #[test]
    fn a_trusted_proxy_chain_is_kept_and_names_the_client() {
        let trusted = ranges(&["10.0.0.0/8"]);
        let h = map(&[
            ("x-forwarded-for", b"203.0.113.9, 10.1.1.1"),
            ("x-forwarded-for", b"10.2.2.2"),
        ]);
        let peer: IpAddr = "10.3.3.3".parse().unwrap();
        assert_eq!(client_ip(&h, peer, &trusted), "203.0.113.9".parse::<IpAddr>().unwrap());
        let mut h = h;
        set(&mut h, &client_value(peer), true, "http", None);
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, 10.1.1.1, 10.2.2.2, 10.3.3.3");
        assert_eq!(h["x-forwarded-proto"], "http");
        // A spoofed entry left of the real client is not believed.
        let h = map(&[("x-forwarded-for", b"1.1.1.1, 203.0.113.9:4711")]);
        assert_eq!(client_ip(&h, peer, &trusted), "203.0.113.9".parse::<IpAddr>().unwrap());
        // All trusted: the leftmost trusted hop.
        let h = map(&[("x-forwarded-for", b"10.9.9.9")]);
        assert_eq!(client_ip(&h, peer, &trusted), "10.9.9.9".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn an_unreadable_value_still_gets_the_address() {
        let mut h = map(&[("x-forwarded-for", b"6.6.6.6\xff")]);
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(client_ip(&h, peer, &ranges(&["10.0.0.0/8"])), peer);
        set(&mut h, &client_value(peer), true, "http", None);
        assert_eq!(h["x-forwarded-for"].as_bytes(), b"6.6.6.6\xff, 10.0.0.1");
        let mut h = map(&[("x-forwarded-for", b"6.6.6.6\xff")]);
        set(&mut h, &client_value(peer), false, "http", None);
        assert_eq!(h["x-forwarded-for"], "10.0.0.1");
    }

    #[test]
    fn addresses_are_written_unmapped() {
        assert_eq!(client_value("::ffff:192.0.2.1".parse().unwrap()), "192.0.2.1");
        assert_eq!(client_value("2001:db8::1".parse().unwrap()), "2001:db8::1");
    }
}
