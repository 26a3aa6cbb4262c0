//! Request smuggling and request-target probes, in the categories of public
//! HTTP/1.1 conformance suites: CL.TE, TE.CL, TE.TE obfuscations, duplicate,
//! list, signed and hex Content-Length, chunk-size overflow, bare LF,
//! obs-fold, NUL and CR in values, absolute-form, two Hosts, missing Host,
//! targets that are not paths, CONNECT.
//!
//! Each attack goes to the gateway on its own connection, raw; a backend
//! that frames requests strictly records what reached it. For every attack
//! the client's answers and the backend's requests are exactly as listed:
//! one client request is at most one backend request, framed the same way
//! on both sides (never a desync), and what the gateway refuses never
//! reaches a backend.

mod support;

use std::time::Duration;

use support::raw::{exchange, statuses, Recorder};
use support::*;

/// An attack, the statuses the client gets, and the request lines (with
/// bodies) the backend parses, in order.
struct Case {
    name: &'static str,
    bytes: &'static [u8],
    client: &'static [u16],
    backend: &'static [(&'static str, &'static str)],
}

const CASES: &[Case] = &[
    // both lengths: chunked wins, and the connection closes after the answer, so the request behind it is never read
    Case {
        name: "cl.te",
        bytes: b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
        client: &[200],
        backend: &[("POST /a", "")],
    },
    // the chunk claims more than the client sends: the backend never gets a
    // whole request, and the client, which sends nothing more, gets 408
    Case {
        name: "te.cl",
        bytes: b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\nContent-Length: 15\r\n\r\nx=1\r\n0\r\n\r\n",
        client: &[408],
        backend: &[],
    },
    Case {
        name: "te.xchunked",
        bytes: b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        client: &[400],
        backend: &[],
    },
    Case {
        name: "te.space-colon",
        bytes: b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        client: &[400],
        backend: &[],
    },
    // a tab is whitespace: this is plain chunked
    Case {
        name: "te.tab",
        bytes: b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\tchunked\r\n\r\n0\r\n\r\n",
        client: &[200],
        backend: &[("POST /a", "")],
    },
    Case {
        name: "te.twice",
        bytes: b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n",
        client: &[400],
        backend: &[],
    },
    // the last coding is chunked, and the body is framed again for the backend
    Case {
        name: "te.identity-chunked",
        bytes: b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n",
        client: &[200],
        backend: &[("POST /a", "")],
    },
    Case {
        name: "te.chunked-gzip",
        bytes: b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
        client: &[400],
        backend: &[],
    },
    Case {
        name: "te.http10",
        bytes: b"POST /a HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        client: &[400],
        backend: &[],
    },
    Case {
        name: "cl.dup-diff",
        bytes: b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        client: &[400],
        backend: &[],
    },
    // identical lengths are one length (RFC 9110 §8.6), sent once
    Case {
        name: "cl.dup-same",
        bytes: b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        client: &[200],
        backend: &[("POST /a", "hello")],
    },
    Case {
        name: "cl.list",
        bytes: b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello",
        client: &[400],
        backend: &[],
    },
    Case {
        name: "cl.signed",
        bytes: b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello",
        client: &[400],
        backend: &[],
    },
    Case {
        name: "cl.hex",
        bytes: b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0x5\r\n\r\nhello",
        client: &[400],
        backend: &[],
    },
    // the bytes past the length are the client's next request, to the gateway and the backend alike
    Case {
        name: "cl.longer-body",
        bytes: b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nhelloGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
        client: &[200, 200],
        backend: &[("POST /a", "hel"), ("loGET /smuggled", "")],
    },
    Case {
        name: "chunk.overflow",
        bytes: b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff1\r\nx\r\n0\r\n\r\n",
        client: &[400],
        backend: &[],
    },
    Case {
        name: "chunk.bad-size",
        bytes: b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n",
        client: &[400],
        backend: &[],
    },
    Case {
        name: "chunk.lf-only",
        bytes: b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n",
        client: &[400],
        backend: &[],
    },
    // tolerated, and sent on with CRLF
    Case {
        name: "bare-lf",
        bytes: b"GET /a HTTP/1.1\nHost: x\n\n",
        client: &[200],
        backend: &[("GET /a", "")],
    },
    Case {
        name: "obs-fold",
        bytes: b"GET /a HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",
        client: &[400],
        backend: &[],
    },
    Case {
        name: "nul-value",
        bytes: b"GET /a HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
        client: &[400],
        backend: &[],
    },
    Case {
        name: "cr-value",
        bytes: b"GET /a HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n",
        client: &[400],
        backend: &[],
    },
    // origin-form to the backend, with the target's host (checked below)
    Case {
        name: "absolute-form",
        bytes: b"GET http://evil.example/x HTTP/1.1\r\nHost: shop\r\n\r\n",
        client: &[200],
        backend: &[("GET /x", "")],
    },
    // was forwarded with both
    Case {
        name: "two-hosts",
        bytes: b"GET /a HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
        client: &[400],
        backend: &[],
    },
    // was forwarded
    Case {
        name: "no-host",
        bytes: b"GET /a HTTP/1.1\r\n\r\n",
        client: &[400],
        backend: &[],
    },
    // was forwarded as GET /
    Case {
        name: "bad-target",
        bytes: b"GET abc HTTP/1.1\r\nHost: x\r\n\r\n",
        client: &[400],
        backend: &[],
    },
    // reached the backend as CONNECT / and the client got no status
    Case {
        name: "connect",
        bytes: b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n",
        client: &[405],
        backend: &[],
    },
    Case {
        name: "space-in-target",
        bytes: b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n",
        client: &[400],
        backend: &[],
    },
    // the upgrade is hop-by-hop: a plain GET goes on
    Case {
        name: "h2c-upgrade",
        bytes: b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
        client: &[200],
        backend: &[("GET /a", "")],
    },
    Case {
        name: "expect",
        bytes: b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello",
        client: &[100, 200],
        backend: &[("POST /a", "hello")],
    },
];

/// The request line's method and target, and the body.
fn parsed(r: &support::raw::Recorded) -> (String, String) {
    let line = r.head.lines().next().unwrap_or("");
    let method_and_target: Vec<&str> = line.split(' ').take(2).collect();
    (
        method_and_target.join(" "),
        String::from_utf8_lossy(&r.body).into_owned(),
    )
}

/// A gateway in front of `b`, quick to give up on a client that stops
/// sending: an idle keep-alive connection, or a body that never arrives,
/// ends each exchange within a second.
fn recording_gateway(b: &Recorder) -> switchyard::gateway::Gateway {
    gateway(&format!(
        "server: {{ header_read_timeout: 1s, client_body_timeout: 1s }}\nbackends:\n  old: {{ url: \"{}\" }}\n  new: {{ url: \"{}\" }}\n",
        b.url(),
        b.url()
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attack_is_refused_or_framed_the_same_on_both_sides() {
    let b = Recorder::start().await;
    let g = recording_gateway(&b);
    let mut failures = Vec::new();
    for case in CASES {
        b.clear();
        let answer = exchange(g.proxy_addr, case.bytes, Duration::from_secs(10)).await;
        let client = statuses(&answer);
        let expected: Vec<(String, String)> = case
            .backend
            .iter()
            .map(|(l, body)| (l.to_string(), body.to_string()))
            .collect();
        // The answers are in, so the requests behind them were parsed.
        let backend: Vec<(String, String)> = b.seen().iter().map(parsed).collect();
        if client != case.client || backend != expected {
            failures.push(format!(
                "{}: client got {client:?} (want {:?}), backend parsed {backend:?} (want {expected:?})",
                case.name, case.client
            ));
        }
        if case.name == "absolute-form" {
            assert_eq!(
                b.seen()[0].header("host"),
                Some("evil.example"),
                "the target's host replaces Host"
            );
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    // What the gateway refused is the client's fault, counted as such.
    assert_eq!(metric(&g, "switchyard_client_errors_total", &[("kind", "host")]), 2.0);
    assert_eq!(metric(&g, "switchyard_client_errors_total", &[("kind", "target")]), 1.0);
    assert_eq!(
        metric(&g, "switchyard_client_errors_total", &[("kind", "connect")]),
        1.0
    );
    assert_eq!(metric(&g, "switchyard_upstream_errors_total", &[]), 0.0);
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_gets_exactly_the_bytes_declared() {
    // A 300,000-byte upload and the request pipelined behind it arrive as
    // two whole requests, the first with the length it carries.
    let b = Recorder::start().await;
    let g = recording_gateway(&b);
    let mut req = b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 300000\r\n\r\n".to_vec();
    req.extend(std::iter::repeat_n(b'z', 300_000));
    req.extend_from_slice(b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n");
    let answer = exchange(g.proxy_addr, &req, Duration::from_secs(10)).await;
    assert_eq!(statuses(&answer), [200, 200]);
    let seen = b.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].body.len(), 300_000);
    assert_eq!(seen[0].header("content-length"), Some("300000"));
    assert_eq!(seen[1].target(), "/after");
    assert!(b.garbage().is_empty(), "{:?}", b.garbage());
    stop(g).await;
}
