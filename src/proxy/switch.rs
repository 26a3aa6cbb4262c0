//! Protocol switches (WebSocket, or any other protocol): what a client's
//! request asks for, and how it is said to the backend and back.
//!
//! HTTP/1.1 clients ask with `Connection: upgrade` + `Upgrade`; HTTP/2
//! clients with an extended CONNECT (RFC 8441: `:method CONNECT`,
//! `:protocol websocket`). Backends are always asked the HTTP/1.1 way, on a
//! connection of their own, and their `101` is passed back in the client's
//! own terms: a `101` to HTTP/1.1, a `200` to HTTP/2.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Version};

use super::headers::Present;

static SEC_WEBSOCKET_KEY: header::HeaderName = header::HeaderName::from_static("sec-websocket-key");
static SEC_WEBSOCKET_ACCEPT: header::HeaderName = header::HeaderName::from_static("sec-websocket-accept");

/// A request's ask to switch protocols.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SwitchAsk {
    /// HTTP/1.1 `Upgrade`, naming the protocol.
    Upgrade(HeaderValue),
    /// HTTP/2 extended CONNECT, naming the protocol.
    ExtendedConnect(HeaderValue),
}

impl SwitchAsk {
    /// What the request asks to switch to, if anything. Read before
    /// hop-by-hop stripping (which removes `Upgrade`); `present`, the
    /// request's headers as found by [`Present::of`], spares the lookups
    /// when it carries no `Upgrade`.
    pub fn of(parts: &http::request::Parts, present: &Present) -> Option<Self> {
        if parts.version == Version::HTTP_2 && parts.method == Method::CONNECT {
            let protocol = parts.extensions.get::<hyper::ext::Protocol>()?;
            return HeaderValue::from_str(protocol.as_str())
                .ok()
                .map(SwitchAsk::ExtendedConnect);
        }
        if parts.version != Version::HTTP_11 || !present.upgrade {
            return None;
        }
        let upgrade = parts.headers.get(header::UPGRADE)?;
        let named = parts.headers.get_all(header::CONNECTION).iter().any(|v| {
            v.as_bytes()
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"upgrade"))
        });
        named.then(|| SwitchAsk::Upgrade(upgrade.clone()))
    }

    /// Rewrites the request, its hop-by-hop fields already stripped, into
    /// the HTTP/1.1 Upgrade its backend expects.
    pub fn ask_backend(&self, parts: &mut http::request::Parts) {
        let protocol = match self {
            SwitchAsk::Upgrade(p) => p.clone(),
            SwitchAsk::ExtendedConnect(p) => {
                parts.method = Method::GET;
                parts.version = Version::HTTP_11;
                parts.extensions.remove::<hyper::ext::Protocol>();
                // RFC 8441 drops the key; an HTTP/1.1 WebSocket server needs one.
                if p.as_bytes().eq_ignore_ascii_case(b"websocket") && !parts.headers.contains_key(&SEC_WEBSOCKET_KEY) {
                    use base64::Engine as _;
                    let key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>());
                    if let Ok(v) = HeaderValue::from_str(&key) {
                        parts.headers.insert(&SEC_WEBSOCKET_KEY, v);
                    }
                }
                p.clone()
            }
        };
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(header::UPGRADE, protocol);
    }

    /// Rewrites the backend's `101` head for the client.
    pub fn answer_client(&self, head: &mut http::response::Parts) {
        match self {
            SwitchAsk::Upgrade(_) => {
                head.headers
                    .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            }
            SwitchAsk::ExtendedConnect(_) => {
                // HTTP/2 has no 101 and no connection-specific fields; the
                // accept value answers a key the client never sent.
                head.status = http::StatusCode::OK;
                head.version = Version::HTTP_2;
                strip_switch_fields(&mut head.headers);
            }
        }
    }
}

fn strip_switch_fields(headers: &mut HeaderMap) {
    headers.remove(header::UPGRADE);
    headers.remove(header::CONNECTION);
    headers.remove(&SEC_WEBSOCKET_ACCEPT);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(version: Version, method: Method, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = http::Request::builder().method(method).version(version).uri("/chat");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn ask(parts: &http::request::Parts) -> Option<SwitchAsk> {
        let force = header::HeaderName::from_static("x-switchyard-backend");
        SwitchAsk::of(parts, &Present::of(&parts.headers, &force))
    }

    #[test]
    fn an_upgrade_needs_its_connection_token_and_http_1_1() {
        let ws = [("connection", "keep-alive, Upgrade"), ("upgrade", "websocket")];
        assert_eq!(
            ask(&request(Version::HTTP_11, Method::GET, &ws)),
            Some(SwitchAsk::Upgrade(HeaderValue::from_static("websocket")))
        );
        assert_eq!(ask(&request(Version::HTTP_2, Method::GET, &ws)), None);
        assert_eq!(
            ask(&request(Version::HTTP_11, Method::GET, &[("upgrade", "websocket")])),
            None
        );
    }

    #[test]
    fn an_extended_connect_becomes_an_upgrade_and_its_answer_a_200() {
        let mut parts = request(Version::HTTP_2, Method::CONNECT, &[("sec-websocket-version", "13")]);
        parts.extensions.insert(hyper::ext::Protocol::from_static("websocket"));
        let ask = ask(&parts).unwrap();
        assert_eq!(ask, SwitchAsk::ExtendedConnect(HeaderValue::from_static("websocket")));
        ask.ask_backend(&mut parts);
        assert_eq!((parts.method.as_str(), parts.version), ("GET", Version::HTTP_11));
        assert_eq!(parts.headers["upgrade"], "websocket");
        assert_eq!(parts.headers["connection"], "upgrade");
        assert_eq!(
            parts.headers["sec-websocket-key"].len(),
            24,
            "a fresh 16-byte key, base64"
        );

        let mut head = http::Response::builder()
            .status(101)
            .header("upgrade", "websocket")
            .header("sec-websocket-accept", "x")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        ask.answer_client(&mut head);
        assert_eq!(head.status, 200);
        assert!(head.headers.is_empty(), "{:?}", head.headers);
    }
}
