//! The request target and `Host`, as the gateway judges them before anything
//! else looks at a request: requests no origin server may accept are
//! refused here (RFC 9112 §3.2), and the path that routes and rules decide
//! on is normalised, so that `//api/./%70ayments` cannot escape a rule
//! written for `/api/payments`. The backend still gets the target exactly as
//! the client sent it.

use std::borrow::Cow;

use http::header::HOST;
use http::request::Parts;
use http::{Method, Version};

/// Why a request head is refused before routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// More than one `Host`, or none on HTTP/1.1 (RFC 9112 §3.2: 400).
    Host(&'static str),
    /// A target that is neither origin-form, absolute-form nor `*`.
    Target(&'static str),
    /// `CONNECT`: the gateway opens no tunnels.
    Connect,
}

impl Refused {
    pub fn message(self) -> &'static str {
        match self {
            Refused::Host(m) | Refused::Target(m) => m,
            Refused::Connect => "CONNECT is not supported: this gateway forwards HTTP requests and opens no tunnels",
        }
    }
}

/// Checks a request head; on success an absolute-form target's authority
/// has replaced `Host`, as RFC 9112 §3.2.2 requires, so that routing and
/// the backend see the same host.
pub fn check(parts: &mut Parts) -> Result<(), Refused> {
    // An HTTP/2 extended CONNECT (RFC 8441) names a protocol to switch to
    // on this stream; a plain CONNECT asks for a tunnel to anywhere.
    let extended = parts.version == Version::HTTP_2 && parts.extensions.get::<hyper::ext::Protocol>().is_some();
    if parts.method == Method::CONNECT && !extended {
        return Err(Refused::Connect);
    }
    let host_count = parts.headers.get_all(HOST).iter().take(2).count();
    if host_count > 1 {
        return Err(Refused::Host("the request has more than one Host header"));
    }
    let http1 = matches!(parts.version, Version::HTTP_10 | Version::HTTP_11 | Version::HTTP_09);
    if http1 {
        let uri = &parts.uri;
        if uri.scheme().is_some() {
            // absolute-form: the target's authority wins over Host.
            if let Some(authority) = uri.authority() {
                if let Ok(v) = http::HeaderValue::from_str(authority.as_str()) {
                    parts.headers.insert(HOST, v);
                }
            }
        } else if uri.authority().is_some() {
            return Err(Refused::Target(
                "the request target must be a path starting with '/' (or an absolute URL)",
            ));
        } else if !(uri.path().starts_with('/') || (uri.path() == "*" && parts.method == Method::OPTIONS)) {
            return Err(Refused::Target("the request target must be a path starting with '/'"));
        }
        if host_count == 0 && parts.version == Version::HTTP_11 && uri.authority().is_none() {
            return Err(Refused::Host("an HTTP/1.1 request needs a Host header"));
        }
    }
    Ok(())
}

/// The path routes and rules decide on: percent-encoded unreserved
/// characters and `/` decoded, other escapes upper-cased, `//` merged, and
/// `.`/`..` segments resolved (never above the root), as NGINX does for its
/// `location` matching. Most paths need none of it and are borrowed.
pub fn normalized(path: &str) -> Cow<'_, str> {
    // Byte scans: most paths need nothing done, and two substring
    // searches (each setting up a searcher) cost a thousand instructions
    // per request to find that out.
    let b = path.as_bytes();
    let plain = !b.contains(&b'%') && !b.windows(2).any(|w| w[0] == b'/' && matches!(w[1], b'/' | b'.'));
    if plain || !path.starts_with('/') {
        return Cow::Borrowed(path);
    }
    let decoded = decode(path);
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = decoded.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    let mut trailing = false;
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "" | "." => trailing = i == last,
            ".." => {
                out.pop();
                trailing = i == last;
            }
            s => {
                out.push(s);
                trailing = false;
            }
        }
    }
    let mut norm = String::with_capacity(decoded.len());
    for s in &out {
        norm.push('/');
        norm.push_str(s);
    }
    if trailing || out.is_empty() {
        norm.push('/');
    }
    Cow::Owned(norm)
}

/// Decodes `%XX` for unreserved characters (RFC 3986 §2.3) and `/`; other
/// escapes stay, with upper-case hex. A `%` that starts no escape is
/// written `%25`, so decoding can never make a new escape (`%%354F` must not
/// become `%54F`, which a second pass would read as `T`): normalising is
/// idempotent.
fn decode(path: &str) -> String {
    let b = path.as_bytes();
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                let c = h * 16 + l;
                if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'/') {
                    out.push(c as char);
                } else {
                    out.push('%');
                    out.push(b[i + 1].to_ascii_uppercase() as char);
                    out.push(b[i + 2].to_ascii_uppercase() as char);
                }
                i += 3;
                continue;
            }
        }
        if b[i] == b'%' {
            out.push_str("%25");
        } else {
            // The URI parser only lets visible ASCII through.
            out.push(b[i] as char);
        }
        i += 1;
    }
    out
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_path_normalise_to_it() {
        for spelling in [
            "/api/payments/1",
            "//api/payments/1",
            "/api/./payments/1",
            "/api/%70ayments/1",
            "/x/../api/payments/1",
            "/api//payments//1",
            "/%61pi/payments/%31",
            "/api/payments/x/..//1",
            "/../../api/payments/1",
            "/api%2Fpayments/1",
            "/api/%2e/payments/./1",
            "/api/x/%2E%2E/payments/1",
        ] {
            assert_eq!(normalized(spelling), "/api/payments/1", "{spelling}");
        }
    }

    #[test]
    fn plain_paths_are_borrowed_and_the_rest_keeps_its_meaning() {
        assert!(matches!(normalized("/users/12/orders"), Cow::Borrowed(_)));
        assert!(matches!(normalized("/a.b/c-d_e~f"), Cow::Borrowed(_)));
        assert_eq!(normalized("/a/b/"), "/a/b/");
        assert_eq!(normalized("/a/b/."), "/a/b/");
        assert_eq!(normalized("/a/b/.."), "/a/");
        assert_eq!(normalized("/.."), "/");
        assert_eq!(
            normalized("/search%3fq"),
            "/search%3Fq",
            "reserved escapes stay escaped"
        );
        assert_eq!(normalized("/a%20b"), "/a%20b");
        assert_eq!(
            normalized("/a%zz/./b"),
            "/a%25zz/b",
            "a stray % is written as an escape"
        );
        assert_eq!(normalized("/a%2"), "/a%252");
        // Found by fuzzing: decoding must not make a new escape.
        let once = normalized("/$/Eei%%354Fb%zz").into_owned();
        assert_eq!(once, "/$/Eei%2554Fb%25zz");
        assert_eq!(normalized(&once), once);
        assert_eq!(normalized("*"), "*");
        assert_eq!(normalized("/.well-known/x"), "/.well-known/x");
    }

    fn head(req: http::request::Builder) -> Parts {
        req.body(()).unwrap().into_parts().0
    }

    #[test]
    fn heads_no_origin_server_may_accept_are_refused() {
        let two = head(http::Request::get("/").header("host", "a").header("host", "b"));
        assert!(matches!(check(&mut two.clone()), Err(Refused::Host(_))));
        let none = head(http::Request::get("/"));
        assert!(matches!(check(&mut none.clone()), Err(Refused::Host(_))));
        let old = head(http::Request::get("/").version(Version::HTTP_10));
        assert!(check(&mut old.clone()).is_ok(), "HTTP/1.0 needs no Host");
        let mut connect = head(http::Request::connect("example.com:443").header("host", "x"));
        assert_eq!(check(&mut connect), Err(Refused::Connect));
        let mut h2_connect = head(http::Request::connect("https://example.com:443").version(Version::HTTP_2));
        assert_eq!(
            check(&mut h2_connect),
            Err(Refused::Connect),
            "a tunnel to anywhere, over HTTP/2"
        );
        let mut websocket = head(http::Request::connect("https://shop.example/chat").version(Version::HTTP_2));
        websocket
            .extensions
            .insert(hyper::ext::Protocol::from_static("websocket"));
        assert!(
            check(&mut websocket).is_ok(),
            "RFC 8441's extended CONNECT names a protocol"
        );
        let mut bare = head(http::Request::get("abc").header("host", "x"));
        assert!(matches!(check(&mut bare), Err(Refused::Target(_))));
        let mut star = head(http::Request::options("*").header("host", "x"));
        assert!(check(&mut star).is_ok());
        let mut h2 = head(http::Request::get("https://shop.example/a").version(Version::HTTP_2));
        assert!(check(&mut h2).is_ok(), "HTTP/2 carries :authority, not Host");
    }

    #[test]
    fn an_absolute_form_target_names_the_host() {
        let mut abs = head(http::Request::get("http://payments.internal/api").header("host", "shop.example"));
        check(&mut abs).unwrap();
        assert_eq!(abs.headers[HOST], "payments.internal");
    }
}
