//! Message heads on the backend leg: the request head as bytes, written in
//! one pass over the already-rewritten header map, and the response head
//! parsed with `httparse` into `http` types whose values share the read
//! buffer instead of copying it, and whose names the connection mostly
//! knows from its last answer ([`KnownNames`]).

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::CONTENT_LENGTH;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};
use http_body::SizeHint;

use super::names::{KnownNames, Role};

/// A response head larger than this is refused (NGINX's default for
/// `proxy_buffer_size` is far smaller; this leaves room for big cookies).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// More response header fields than this are refused.
pub const MAX_HEADERS: usize = 128;

/// How a request body goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFraming {
    Empty,
    Length(u64),
    Chunked,
}

/// How a response body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFraming {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

/// Why a response head could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("malformed response head: {0}")]
    Malformed(String),
    #[error("response head is larger than {MAX_HEAD_BYTES} bytes")]
    TooLarge,
    #[error("response has more than {MAX_HEADERS} header fields")]
    TooManyHeaders,
    #[error("conflicting Content-Length values")]
    ConflictingLength,
    #[error("response switches protocols (101) to a request that asked for no upgrade")]
    Upgrade,
}

/// Writes the request line and headers for `parts` (origin-form URI,
/// hop-by-hop headers already removed) and says how the body follows.
pub fn encode_request(parts: &http::request::Parts, body: &SizeHint, out: &mut Vec<u8>) -> RequestFraming {
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    out.reserve(64 + target.len() + parts.headers.len() * 32);
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut declared = None;
    for (name, value) in &parts.headers {
        if name == CONTENT_LENGTH {
            let n = parse_length(value.as_bytes());
            // An unreadable length is left out rather than contradicted:
            // the body's own framing is written below instead.
            if n.is_none() || declared.is_some() {
                continue;
            }
            declared = n;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let framing = match (declared, body.exact()) {
        (Some(0), _) => RequestFraming::Empty,
        (Some(n), _) => RequestFraming::Length(n),
        (None, Some(0)) => {
            // Servers may answer 411 to a bodiless POST without a length.
            if matches!(parts.method, Method::POST | Method::PUT | Method::PATCH) {
                out.extend_from_slice(b"content-length: 0\r\n");
            }
            RequestFraming::Empty
        }
        (None, Some(n)) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa_u64(n, &mut [0u8; 20]));
            out.extend_from_slice(b"\r\n");
            RequestFraming::Length(n)
        }
        (None, None) => {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n");
            RequestFraming::Chunked
        }
    };
    out.extend_from_slice(b"\r\n");
    framing
}

/// A Content-Length value: one or more ASCII digits and nothing else (no
/// sign, no spaces, no list), within u64 (RFC 9110 §8.6).
pub fn parse_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    value
        .iter()
        .try_fold(0u64, |n, d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
}

fn itoa_u64(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// A parsed response head, its body framing, and whether the connection
/// can carry another request afterwards.
#[derive(Debug)]
pub struct ResponseHead {
    pub parts: http::response::Parts,
    pub framing: ResponseFraming,
    pub keep_alive: bool,
}

/// Parses a final response head from the front of `buf`, consuming it.
/// `Ok(None)` means more bytes are needed; informational (1xx) heads are
/// consumed and skipped. `names` are the connection's, from its last answer.
pub fn parse_response(
    buf: &mut BytesMut,
    method: &Method,
    names: &mut KnownNames,
) -> Result<Option<ResponseHead>, HeadError> {
    loop {
        // Uninitialised slots: zeroing 128 of them per response showed in profiles.
        let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut []);
        let base = buf.as_ptr() as usize;
        let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut resp, buf, &mut fields);
        let (len, indices, code, minor) = match parsed {
            Ok(httparse::Status::Complete(len)) => {
                // Offsets, so the values can share the buffer once it is frozen.
                let indices: Vec<[usize; 4]> = resp
                    .headers
                    .iter()
                    .map(|h| {
                        let name = h.name.as_ptr() as usize - base;
                        let value = h.value.as_ptr() as usize - base;
                        [name, name + h.name.len(), value, value + h.value.len()]
                    })
                    .collect();
                (len, indices, resp.code.unwrap_or(0), resp.version.unwrap_or(1))
            }
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => return Err(HeadError::TooLarge),
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyHeaders),
            Err(e) => return Err(HeadError::Malformed(e.to_string())),
        };
        if len > MAX_HEAD_BYTES {
            return Err(HeadError::TooLarge);
        }
        let head = buf.split_to(len).freeze();
        match code {
            // The caller decides whether it asked for a protocol switch.
            101 => {}
            100..=199 => continue,
            _ => {}
        }
        let status = StatusCode::from_u16(code).map_err(|e| HeadError::Malformed(e.to_string()))?;
        return build(&head, &indices, status, minor, method, names).map(Some);
    }
}

fn build(
    head: &Bytes,
    indices: &[[usize; 4]],
    status: StatusCode,
    minor: u8,
    method: &Method,
    names: &mut KnownNames,
) -> Result<ResponseHead, HeadError> {
    let version = if minor == 0 { Version::HTTP_10 } else { Version::HTTP_11 };
    let switching = status == StatusCode::SWITCHING_PROTOCOLS;
    // Room for what the pipeline adds (served-by, Via, request id).
    let mut headers = HeaderMap::with_capacity(indices.len() + 4);
    let mut named: Vec<HeaderName> = Vec::new();
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut encoded = false;
    let mut close = version == Version::HTTP_10;
    for (at, &[ns, ne, vs, ve]) in indices.iter().enumerate() {
        let (name, role) = names
            .name(at, &head[ns..ne])
            .map_err(|_| HeadError::Malformed("invalid header name".into()))?;
        let raw = &head[vs..ve];
        match role {
            Role::Length => {
                let n = parse_length(raw).ok_or_else(|| HeadError::Malformed("invalid Content-Length".into()))?;
                if length.is_some_and(|l| l != n) {
                    return Err(HeadError::ConflictingLength);
                }
                length = Some(n);
            }
            Role::TransferCoding => {
                encoded = true;
                // Only a final `chunked` delimits the body; anything else
                // runs until the connection closes.
                chunked = raw
                    .rsplit(|&b| b == b',')
                    .next()
                    .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            }
            Role::Connection => {
                for token in raw.split(|&b| b == b',') {
                    let token = token.trim_ascii();
                    if token.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        if version == Version::HTTP_10 {
                            close = false;
                        }
                    } else if let Ok(n) = HeaderName::from_bytes(token) {
                        named.push(n);
                    }
                }
            }
            Role::Upgrade | Role::HopByHop | Role::EndToEnd => {}
        }
        // Hop-by-hop fields were for this connection alone: read above,
        // never passed on (the pipeline strips them from hyper's responses).
        // A switch of protocols names its protocol in `Upgrade`, which the
        // client must see.
        if role.passed_on(switching) {
            let value = HeaderValue::from_maybe_shared(head.slice(vs..ve))
                .map_err(|_| HeadError::Malformed(format!("invalid value for header {name}")))?;
            headers.append(name, value);
        }
    }
    for n in named {
        if !(switching && n == http::header::UPGRADE) {
            headers.remove(n);
        }
    }
    let bodiless =
        *method == Method::HEAD || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED || switching;
    let framing = if bodiless {
        ResponseFraming::Empty
    } else if encoded {
        // Transfer-Encoding overrides Content-Length (RFC 9112 §6.3).
        if chunked {
            ResponseFraming::Chunked
        } else {
            ResponseFraming::UntilClose
        }
    } else {
        match length {
            Some(0) => ResponseFraming::Empty,
            Some(n) => ResponseFraming::Length(n),
            None => ResponseFraming::UntilClose,
        }
    };
    if encoded && length.is_some() {
        // A message with both is a smuggling vector: never reuse its connection.
        close = true;
        headers.remove(CONTENT_LENGTH);
    }
    let (mut parts, ()) = http::Response::new(()).into_parts();
    parts.status = status;
    parts.version = version;
    parts.headers = headers;
    Ok(ResponseHead {
        parts,
        framing,
        keep_alive: !close && framing != ResponseFraming::UntilClose && !switching,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str, method: Method) -> Result<Option<ResponseHead>, HeadError> {
        let mut buf = BytesMut::from(raw.as_bytes());
        parse_response(&mut buf, &method, &mut KnownNames::default())
    }

    fn head(raw: &str) -> ResponseHead {
        parse(raw, Method::GET).unwrap().unwrap()
    }

    #[test]
    fn a_length_delimited_response() {
        let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello"[..]);
        let h = parse_response(&mut buf, &Method::GET, &mut KnownNames::default())
            .unwrap()
            .unwrap();
        assert_eq!(h.parts.status, 200);
        assert_eq!(h.framing, ResponseFraming::Length(5));
        assert!(h.keep_alive);
        assert_eq!(h.parts.headers["x-a"], "b");
        assert_eq!(&buf[..], b"hello", "the body stays in the buffer");
    }

    #[test]
    fn a_partial_head_asks_for_more() {
        assert!(parse("HTTP/1.1 200 OK\r\nContent-Le", Method::GET).unwrap().is_none());
    }

    #[test]
    fn informational_heads_are_skipped() {
        let h = head("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(h.parts.status, 201);
        assert!(!h.parts.headers.contains_key("link"));
        assert_eq!(h.framing, ResponseFraming::Empty);
    }

    #[test]
    fn framing_follows_rfc_9112() {
        assert_eq!(
            head("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n").framing,
            ResponseFraming::Chunked
        );
        let h = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n");
        assert_eq!(h.framing, ResponseFraming::UntilClose);
        assert!(!h.keep_alive);
        assert_eq!(head("HTTP/1.1 200 OK\r\n\r\n").framing, ResponseFraming::UntilClose);
        assert_eq!(
            head("HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n").framing,
            ResponseFraming::Empty
        );
        assert_eq!(
            head("HTTP/1.1 304 Not Modified\r\n\r\n").framing,
            ResponseFraming::Empty
        );
        let h = parse("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", Method::HEAD)
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, ResponseFraming::Empty);
        assert_eq!(
            h.parts.headers[CONTENT_LENGTH], "9",
            "HEAD keeps the length it announces"
        );
    }

    #[test]
    fn both_length_and_chunked_is_chunked_and_not_reused() {
        let h = head("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(h.framing, ResponseFraming::Chunked);
        assert!(!h.keep_alive);
        assert!(!h.parts.headers.contains_key(CONTENT_LENGTH));
    }

    #[test]
    fn hop_by_hop_fields_are_read_but_not_kept() {
        let h = head("HTTP/1.1 200 OK\r\nConnection: keep-alive, x-secret\r\nKeep-Alive: timeout=5\r\nX-Secret: s\r\nProxy-Foo: 1\r\nTransfer-Encoding: chunked\r\nX-Kept: k\r\n\r\n");
        assert_eq!(h.framing, ResponseFraming::Chunked);
        let left: Vec<&str> = h.parts.headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, vec!["x-kept"]);
    }

    #[test]
    fn keep_alive_rules() {
        assert!(!head("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").keep_alive);
        assert!(!head("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").keep_alive);
        let h = head("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n");
        assert!(h.keep_alive);
        assert_eq!(h.parts.version, Version::HTTP_10);
    }

    #[test]
    fn bad_heads_are_refused_with_a_reason() {
        assert_eq!(
            parse(
                "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
                Method::GET
            )
            .unwrap_err(),
            HeadError::ConflictingLength
        );
        for bad in ["x", "+5", "-5", "5 5", "5,5", "0x10", "99999999999999999999"] {
            assert_eq!(
                parse(
                    &format!("HTTP/1.1 200 OK\r\nContent-Length: {bad}\r\n\r\n"),
                    Method::GET
                )
                .unwrap_err(),
                HeadError::Malformed("invalid Content-Length".into()),
                "{bad}"
            );
        }
        let switched = head("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
        assert_eq!(switched.parts.status, 101);
        assert_eq!(
            switched.parts.headers["upgrade"], "websocket",
            "the client must see the protocol"
        );
        assert!(switched.parts.headers.get("connection").is_none());
        assert_eq!(switched.framing, ResponseFraming::Empty);
        assert!(!switched.keep_alive, "an upgraded connection never goes back to a pool");
        assert!(matches!(
            parse("HTTX/1.1 200 OK\r\n\r\n", Method::GET),
            Err(HeadError::Malformed(_))
        ));
        let many: String = (0..=MAX_HEADERS).map(|i| format!("x-{i}: v\r\n")).collect();
        assert_eq!(
            parse(&format!("HTTP/1.1 200 OK\r\n{many}\r\n"), Method::GET).unwrap_err(),
            HeadError::TooManyHeaders
        );
        let big = format!("HTTP/1.1 200 OK\r\nx-big: {}", "a".repeat(MAX_HEAD_BYTES + 1));
        assert_eq!(parse(&big, Method::GET).unwrap_err(), HeadError::TooLarge);
    }

    /// What a parse gives, in a form two parses can be compared by.
    fn outcome(r: Result<Option<ResponseHead>, HeadError>) -> String {
        match r {
            Ok(Some(h)) => format!(
                "{} {:?} {:?} keep_alive={} {:?}",
                h.parts.status,
                h.parts.version,
                h.framing,
                h.keep_alive,
                h.parts.headers.iter().collect::<Vec<_>>()
            ),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn a_connection_that_remembers_names_parses_every_head_as_a_fresh_one_would() {
        // Heads one connection might answer in turn: the same names, other
        // cases and orders, names that become hop-by-hop or framing at a
        // place an end-to-end one held, fewer and more fields, bad ones.
        let heads = [
            "HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n",
            "HTTP/1.1 200 OK\r\nSERVER: nginx\r\ncontent-type: text/plain\r\ncontent-length: 3\r\nconnection: keep-alive\r\n\r\n",
            "HTTP/1.1 200 OK\r\nServer: nginx\r\nTransfer-Encoding: chunked\r\nContent-Type: a\r\nConnection: close, x-a\r\nX-A: 1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nConnection: x-b\r\nServer: nginx\r\nX-B: 2\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 101 Switching Protocols\r\nServer: nginx\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            "HTTP/1.1 200 OK\r\nServer: nginx\r\nUpgrade: h2c\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: x\r\n\r\n",
            "HTTP/1.1 200 OK\r\nServe r: nginx\r\n\r\n",
            "HTTP/1.0 200 OK\r\nServer: nginx\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 204 No Content\r\nProxy-Foo: 1\r\nKeep-Alive: timeout=5\r\nServer: nginx\r\n\r\n",
            "HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n",
        ];
        let mut names = KnownNames::default();
        for (round, raw) in heads.iter().chain(heads.iter().rev()).enumerate() {
            let remembered = parse_response(&mut BytesMut::from(raw.as_bytes()), &Method::GET, &mut names);
            let fresh = parse(raw, Method::GET);
            assert_eq!(outcome(remembered), outcome(fresh), "head {round}: {raw:?}");
        }
    }

    fn request(method: Method, uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = http::Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn encoded(parts: &http::request::Parts, hint: SizeHint) -> (String, RequestFraming) {
        let mut out = Vec::new();
        let f = encode_request(parts, &hint, &mut out);
        (String::from_utf8(out).unwrap(), f)
    }

    #[test]
    fn request_heads_carry_the_framing_the_body_needs() {
        let get = request(Method::GET, "/a?b=c", &[("host", "x")]);
        assert_eq!(
            encoded(&get, SizeHint::with_exact(0)),
            ("GET /a?b=c HTTP/1.1\r\nhost: x\r\n\r\n".into(), RequestFraming::Empty)
        );
        let post = request(Method::POST, "/p", &[]);
        assert_eq!(
            encoded(&post, SizeHint::with_exact(0)),
            (
                "POST /p HTTP/1.1\r\ncontent-length: 0\r\n\r\n".into(),
                RequestFraming::Empty
            )
        );
        assert_eq!(
            encoded(&post, SizeHint::with_exact(1234)),
            (
                "POST /p HTTP/1.1\r\ncontent-length: 1234\r\n\r\n".into(),
                RequestFraming::Length(1234)
            )
        );
        assert_eq!(
            encoded(&post, SizeHint::new()),
            (
                "POST /p HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n".into(),
                RequestFraming::Chunked
            )
        );
        let declared = request(Method::PUT, "/p", &[("content-length", "7")]);
        assert_eq!(encoded(&declared, SizeHint::new()).1, RequestFraming::Length(7));
        let garbled = request(Method::PUT, "/p", &[("content-length", "seven")]);
        assert_eq!(
            encoded(&garbled, SizeHint::with_exact(7)),
            (
                "PUT /p HTTP/1.1\r\ncontent-length: 7\r\n\r\n".into(),
                RequestFraming::Length(7)
            )
        );
    }
}
