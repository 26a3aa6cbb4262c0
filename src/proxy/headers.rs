//! Header rules of a proxy, in one place: hop-by-hop headers never cross the
//! gateway (RFC 9110 §7.6.1), nor do a client's `x-switchyard-*` headers;
//! `Via` names each hop. Forwarding headers are in [`super::forwarded`].

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
    // Asked of every header of every message: the length rules out most
    // names before any bytes are compared.
    let n = name.as_str().as_bytes();
    let listed = match n.len() {
        2 => n == b"te",
        7 => n == b"trailer" || n == b"upgrade",
        10 => n == b"connection" || n == b"keep-alive",
        17 => n == b"transfer-encoding",
        _ => false,
    };
    listed || n.starts_with(b"proxy-")
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

/// Which of the request headers the request path looks up are there at
/// all, from one pass over the names. Most requests carry none of them,
/// and looking up an absent name (hashing it, probing the map) cost 110 to
/// 180 instructions, five of them per request; comparing a name with a
/// standard one is a comparison of two small numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Present {
    pub content_type: bool,
    pub te: bool,
    pub upgrade: bool,
    /// The force header, by whatever name it has.
    pub force: bool,
    /// The force header or any `x-switchyard-*` header.
    pub controls: bool,
}

impl Present {
    pub fn of(headers: &HeaderMap, force_header: &HeaderName) -> Self {
        let mut present = Present::default();
        for name in headers.keys() {
            // Apart: the force header may be given any name, a standard one too.
            if name == force_header {
                present.force = true;
                present.controls = true;
            }
            if name == header::CONTENT_TYPE {
                present.content_type = true;
            } else if name == header::TE {
                present.te = true;
            } else if name == header::UPGRADE {
                present.upgrade = true;
            } else if name.as_str().starts_with("x-switchyard-") {
                present.controls = true;
            }
        }
        present
    }
}

/// Removes the gateway's own control headers from a client's request: every
/// `x-switchyard-*` header, and the force header by whatever name it has
/// (it was read by the split already). A backend may then trust
/// `x-switchyard-shadow: 1` to mean a mirror.
pub fn strip_controls(headers: &mut HeaderMap, force_header: &HeaderName) {
    let ours = |k: &HeaderName| k.as_str().starts_with("x-switchyard-") || k == force_header;
    if !headers.keys().any(ours) {
        return;
    }
    let doomed: Vec<HeaderName> = headers.keys().filter(|k| ours(k)).cloned().collect();
    for name in doomed {
        headers.remove(name);
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
    fn hop_by_hop_names_and_their_near_misses() {
        for hop in [
            "connection",
            "keep-alive",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "proxy-authorization",
            "proxy-authenticate",
            "proxy-x",
        ] {
            assert!(is_hop_by_hop(&HeaderName::from_static(hop)), "{hop}");
        }
        for end_to_end in [
            "tk",
            "trailers",
            "upgradx",
            "connexion",
            "keep-alivf",
            "transfer-encodinx",
            "proxy",
            "xproxy-a",
            "content-type",
            "date",
        ] {
            assert!(!is_hop_by_hop(&HeaderName::from_static(end_to_end)), "{end_to_end}");
        }
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
    fn control_headers_from_clients_stay_behind() {
        let mut h = map(&[
            ("x-switchyard-shadow", "1"),
            ("x-switchyard-backend", "new"),
            ("x-pin", "new"),
            ("x-switchyard", "kept: not our prefix"),
            ("accept", "*/*"),
        ]);
        strip_controls(&mut h, &HeaderName::from_static("x-pin"));
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, vec!["accept", "x-switchyard"]);
    }

    #[test]
    fn present_finds_each_header_in_any_spelling_and_nothing_else() {
        let force = HeaderName::from_static("x-pin");
        assert_eq!(
            Present::of(&map(&[("host", "a"), ("accept", "*/*"), ("x-other", "1")]), &force),
            Present::default()
        );
        let all = map(&[
            ("Content-Type", "application/grpc"),
            ("TE", "trailers"),
            ("Upgrade", "websocket"),
            ("X-Pin", "new"),
        ]);
        assert_eq!(
            Present::of(&all, &force),
            Present {
                content_type: true,
                te: true,
                upgrade: true,
                force: true,
                controls: true
            }
        );
        let control = Present::of(&map(&[("x-switchyard-admin-call", "1")]), &force);
        assert!(control.controls && !control.force);
        // The default force header is itself one of the gateway's own.
        let default_force = HeaderName::from_static("x-switchyard-backend");
        let forced = Present::of(&map(&[("x-switchyard-backend", "new")]), &default_force);
        assert!(forced.force && forced.controls);
        // A force header named like a standard header is still found as both.
        let pinned_by_te = Present::of(&map(&[("te", "new")]), &header::TE);
        assert!(pinned_by_te.force && pinned_by_te.te);
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

/// Whether the client accepts trailers (`TE: trailers`), as every gRPC
/// client says: the backend must hear it too, or it may refuse the call
/// as coming through an incompatible proxy.
pub fn accepts_trailers(headers: &HeaderMap) -> bool {
    headers.get_all(header::TE).iter().any(|v| {
        v.as_bytes().split(|&b| b == b',').any(|t| {
            t.split(|&b| b == b';')
                .next()
                .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"trailers"))
        })
    })
}

#[cfg(test)]
mod trailer_tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn trailers_are_accepted_by_token() {
        assert!(accepts_trailers(&map(&[("te", "trailers")])));
        assert!(accepts_trailers(&map(&[("te", "gzip, Trailers;q=1")])));
        assert!(!accepts_trailers(&map(&[("te", "gzip")])));
    }
}
