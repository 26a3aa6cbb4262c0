//! The gateway core on loopback: the split, stickiness, routes, proxy header
//! semantics, HTTP/2, streaming, error mapping, limits and graceful shutdown.

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use support::*;
use switchyard::rollout::controller::Actor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn sre() -> Actor {
    Actor::new("test", "test")
}

async fn side_of(c: &HttpClient, url: &str, user: &str) -> String {
    let a = get(c, url, &[("x-user-id", user)]).await;
    assert_eq!(a.status, 200, "{}", a.text());
    a.header("x-switchyard-served-by").unwrap().to_string()
}

/// Sides of many users, sent concurrently.
async fn sides(url: &str, users: &[String]) -> Vec<bool> {
    let c = client();
    let out = futures_util::stream::iter(users.iter().cloned())
        .map(|u| {
            let (c, url) = (c.clone(), url.to_string());
            async move { side_of(&c, &url, &u).await == "new" }
        })
        .buffered(32)
        .collect::<Vec<bool>>()
        .await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splits_by_percent_within_tolerance() {
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let g = gateway(&format!(
        "{}rollout: {{ percent: 30, sticky: \"header:x-user-id\" }}\n",
        backends(&old, &new)
    ));
    let users: Vec<String> = (0..10_000).map(|i| format!("user-{i}")).collect();
    let to_new = sides(&format!("{}/x", proxy(&g)), &users)
        .await
        .iter()
        .filter(|n| **n)
        .count();
    // Binomial(10000, 0.3): sigma ≈ 45.8; 5 sigma either way.
    assert!((2771..=3229).contains(&to_new), "{to_new} of 10000 went to new at 30%");
    assert_eq!(new.count(), to_new);
    assert_eq!(old.count(), 10_000 - to_new);
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raising_the_percent_only_moves_users_to_new_and_back() {
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let g = gateway(&format!(
        "{}rollout: {{ sticky: \"header:x-user-id\" }}\n",
        backends(&old, &new)
    ));
    let url = format!("{}/x", proxy(&g));
    let users: Vec<String> = (0..2000).map(|i| format!("u{i}")).collect();
    let mut history: Vec<(f64, Vec<bool>)> = Vec::new();
    for p in [1.0, 5.0, 25.0, 50.0, 100.0, 50.0, 25.0, 5.0, 1.0] {
        g.controller.set_percent(p, &sre()).unwrap();
        history.push((p, sides(&url, &users).await));
    }
    for w in history.windows(2) {
        let ((p0, a), (p1, b)) = (&w[0], &w[1]);
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            if p1 > p0 {
                assert!(!*x || *y, "user {i} went back to old when {p0}% → {p1}%");
            } else {
                assert!(*x || !*y, "user {i} moved to new when {p0}% → {p1}%");
            }
        }
    }
    // Same percent, same users: up and down agree.
    for (up, down) in [(0, 8), (1, 7), (2, 6), (3, 5)] {
        assert_eq!(history[up].1, history[down].1, "stickiness at {}%", history[up].0);
    }
    assert!(history[4].1.iter().all(|n| *n), "100% sends everyone to new");

    // Another instance (a restart, a second replica) with the same salt agrees.
    let g2 = gateway(&format!(
        "{}rollout: {{ percent: 25, sticky: \"header:x-user-id\" }}\n",
        backends(&old, &new)
    ));
    assert_eq!(sides(&format!("{}/x", proxy(&g2)), &users).await, history[2].1);
    stop(g).await;
    stop(g2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fractional_percent_and_force_header() {
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let g = gateway(&format!(
        "{}rollout: {{ percent: 0.5, sticky: \"header:x-user-id\" }}\n",
        backends(&old, &new)
    ));
    let users: Vec<String> = (0..4000).map(|i| format!("f{i}")).collect();
    let to_new = sides(&format!("{}/x", proxy(&g)), &users)
        .await
        .iter()
        .filter(|n| **n)
        .count();
    // Binomial(4000, 0.005): mean 20, sigma ≈ 4.5.
    assert!((3..=43).contains(&to_new), "{to_new} of 4000 at 0.5%");

    let c = client();
    g.controller.set_percent(0.0, &sre()).unwrap();
    let a = get(&c, &format!("{}/x", proxy(&g)), &[("x-switchyard-backend", "new")]).await;
    assert_eq!(a.header("x-switchyard-served-by"), Some("new"));
    assert_eq!(a.json()["backend"], "new");
    g.controller.set_percent(100.0, &sre()).unwrap();
    let a = get(&c, &format!("{}/x", proxy(&g)), &[("x-switchyard-backend", "old")]).await;
    assert_eq!(a.json()["backend"], "old");
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_override_the_global_percent() {
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let g = gateway(&format!(
        "{}rollout: {{ percent: 100 }}\nroutes:\n  - name: payments\n    match: {{ path_prefix: /api/payments }}\n    rollout: {{ percent: 0 }}\n  - name: shop\n    match: {{ host: \"shop.example\", methods: [POST] }}\n    rollout: {{ percent: 0 }}\n",
        backends(&old, &new)
    ));
    let c = client();
    let p = proxy(&g);
    assert_eq!(
        get(&c, &format!("{p}/api/payments/7"), &[]).await.json()["backend"],
        "old"
    );
    assert_eq!(get(&c, &format!("{p}/api/other"), &[]).await.json()["backend"], "new");
    let a = send(&c, Method::POST, &format!("{p}/cart"), &[("host", "shop.example")], "x").await;
    assert_eq!(a.json()["backend"], "old");
    let a = get(&c, &format!("{p}/cart"), &[("host", "shop.example")]).await;
    assert_eq!(a.json()["backend"], "new", "route matches POST only");
    assert_eq!(
        metric(
            &g,
            "switchyard_requests_total",
            &[("route", "payments"), ("backend", "old")]
        ),
        1.0
    );
    assert_eq!(
        metric(
            &g,
            "switchyard_requests_total",
            &[("route", "shop"), ("backend", "old")]
        ),
        1.0
    );
    assert_eq!(
        metric(
            &g,
            "switchyard_requests_total",
            &[("route", "default"), ("backend", "new")]
        ),
        2.0
    );
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_stay_behind_and_forwarding_headers_are_added() {
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let g = gateway(&backends(&old, &new));
    let c = client();
    let a = get(
        &c,
        &format!("{}/h", proxy(&g)),
        &[
            ("connection", "x-secret"),
            ("x-secret", "do-not-forward"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic c2VjcmV0"),
            ("te", "gzip, trailers"),
            ("x-kept", "yes"),
            ("x-forwarded-for", "203.0.113.7"),
            ("host", "shop.example"),
        ],
    )
    .await;
    assert_eq!(a.status, 200);
    let seen = &old.seen()[0];
    for h in ["x-secret", "keep-alive", "proxy-authorization"] {
        assert!(!seen.headers.contains_key(h), "{h} reached the backend");
    }
    // Of TE only `trailers` passes on: gRPC backends look for it.
    assert_eq!(seen.headers["te"], "trailers");
    assert!(seen
        .headers
        .get("connection")
        .is_none_or(|v| !v.to_str().unwrap().contains("x-secret")));
    assert_eq!(seen.headers["x-kept"], "yes");
    // The client is no trusted proxy: what it says of itself is replaced.
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen.headers["x-forwarded-proto"], "http");
    assert_eq!(seen.headers["x-forwarded-host"], "shop.example");
    assert_eq!(seen.headers["host"], "shop.example", "Host is preserved by default");
    assert_eq!(seen.headers["via"], "1.1 switchyard");
    // A request id was made, sent, and returned.
    let rid = seen.headers["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(rid.len(), 32);
    assert_eq!(a.header("x-request-id"), Some(rid.as_str()));
    assert_eq!(a.json()["request_id"], rid.as_str());
    assert_eq!(a.header("x-switchyard-served-by"), Some("old"));
    assert_eq!(a.header("via"), Some("1.1 switchyard"));

    // A client's request id is kept.
    get(&c, &format!("{}/h", proxy(&g)), &[("x-request-id", "abc-123")]).await;
    assert_eq!(old.seen()[1].headers["x-request-id"], "abc-123");
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_by_header_can_be_turned_off_and_host_rewritten() {
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let g = gateway(&format!(
        "server: {{ served_by_header: false }}\nbackends:\n  old: {{ url: \"{}\", host: rewrite }}\n  new: {{ url: \"{}\" }}\n",
        old.url(),
        new.url()
    ));
    let a = get(&client(), &format!("{}/h", proxy(&g)), &[("host", "shop.example")]).await;
    assert!(a.header("x-switchyard-served-by").is_none());
    assert_eq!(old.seen()[0].headers["host"], old.addr.to_string().as_str());
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_path_prefix_is_joined() {
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let g = gateway(&format!(
        "backends:\n  old: {{ url: \"{}/base/\" }}\n  new: {{ url: \"{}\" }}\n",
        old.url(),
        new.url()
    ));
    get(&client(), &format!("{}/users/1?x=2", proxy(&g)), &[]).await;
    assert_eq!(old.seen()[0].path, "/base/users/1?x=2");
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_clients_are_served_over_http1_upstreams() {
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let g = gateway(&backends(&old, &new));
    let c = h2_client();
    for _ in 0..3 {
        let a = get(&c, &format!("{}/two", proxy(&g)), &[]).await;
        assert_eq!(a.status, 200);
        assert_eq!(a.header("x-switchyard-served-by"), Some("old"));
    }
    let seen = &old.seen()[0];
    assert_eq!(seen.version, http::Version::HTTP_11);
    assert_eq!(
        seen.headers["host"],
        g.proxy_addr.to_string().as_str(),
        ":authority becomes Host"
    );
    assert_eq!(seen.headers["via"], "2 switchyard");
    stop(g).await;
}

const HUNDRED_MB: u64 = 100 * 1024 * 1024;
const CHUNK: usize = 64 * 1024;

fn vm_hwm_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn generated(total: u64) -> Body {
    let chunks = (total as usize).div_ceil(CHUNK);
    let stream = futures_util::stream::iter(0..chunks)
        .map(|_| Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(vec![b'z'; CHUNK]))));
    BodyExt::boxed(StreamBody::new(stream))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_body_streams_both_ways_without_buffering() {
    let streamer: Handler = Arc::new(|req: Request<Incoming>| {
        Box::pin(async move {
            if req.method() == Method::POST {
                let mut body = req.into_body();
                let mut n = 0u64;
                while let Some(f) = body.frame().await {
                    if let Ok(d) = f.unwrap().into_data() {
                        n += d.len() as u64;
                    }
                }
                Response::new(full(n.to_string()))
            } else {
                Response::new(generated(HUNDRED_MB))
            }
        })
    });
    let old = Origin::start(streamer).await;
    let new = Origin::named("new").await;
    let g = gateway(&backends(&old, &new));
    let before = vm_hwm_kb();

    // Upload: the client streams 100 MB that never exists in one piece.
    let c: hyper_util::client::legacy::Client<_, Body> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let req = Request::post(format!("{}/upload", proxy(&g)))
        .body(generated(HUNDRED_MB))
        .unwrap();
    let resp = c.request(req).await.unwrap();
    let got = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(got, HUNDRED_MB.to_string().as_bytes());

    // Download: counted as it arrives.
    let req = Request::get(format!("{}/download", proxy(&g))).body(full("")).unwrap();
    let mut body = c.request(req).await.unwrap().into_body();
    let mut n = 0u64;
    while let Some(f) = body.frame().await {
        if let Ok(d) = f.unwrap().into_data() {
            n += d.len() as u64;
        }
    }
    assert_eq!(n, HUNDRED_MB);
    let grown_mb = (vm_hwm_kb().saturating_sub(before)) / 1024;
    assert!(
        grown_mb < 40,
        "peak memory grew by {grown_mb} MB while streaming 200 MB"
    );
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_backend_is_502_and_slow_backend_is_504() {
    let slow: Handler = Arc::new(|_req| {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            json_response(200, serde_json::json!({}))
        })
    });
    let slow = Origin::start(slow).await;
    let refusing = Refusing::new();
    let dead = refusing.addr;
    let g = gateway(&format!(
        "backends:\n  old: {{ url: \"http://{dead}\", connect_timeout: \"300ms\" }}\n  new: {{ url: \"{}\", timeout: \"200ms\" }}\n",
        slow.url()
    ));
    let c = client();
    let a = get(&c, &format!("{}/x", proxy(&g)), &[]).await;
    assert_eq!(a.status, 502);
    assert_eq!(a.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(a.text(), "could not connect to the old backend\n");
    assert_eq!(a.header("x-switchyard-served-by"), Some("old"));

    let started = Instant::now();
    let a = get(&c, &format!("{}/x", proxy(&g)), &[("x-switchyard-backend", "new")]).await;
    assert_eq!(a.status, 504);
    assert_eq!(a.text(), "the new backend did not answer within 200ms\n");
    assert!(started.elapsed() < Duration::from_secs(2));

    assert_eq!(
        metric(
            &g,
            "switchyard_upstream_errors_total",
            &[("backend", "old"), ("kind", "connect")]
        ),
        1.0
    );
    assert_eq!(
        metric(
            &g,
            "switchyard_upstream_errors_total",
            &[("backend", "new"), ("kind", "timeout")]
        ),
        1.0
    );
    assert_eq!(
        metric(
            &g,
            "switchyard_requests_total",
            &[("backend", "old"), ("code_class", "5xx")]
        ),
        1.0
    );
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_lets_an_in_flight_request_finish() {
    let slow: Handler = Arc::new(|_req| {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(700)).await;
            json_response(200, serde_json::json!({"done": true}))
        })
    });
    let old = Origin::start(slow).await;
    let new = Origin::named("new").await;
    let g = gateway(&format!(
        "{}server: {{ drain_timeout: \"5s\" }}\n",
        backends(&old, &new)
    ));
    let url = format!("{}/slow", proxy(&g));
    let addr = g.proxy_addr;
    let in_flight = tokio::spawn(async move { get(&client(), &url, &[]).await });
    eventually(Duration::from_secs(5), "the slow request reached the backend", || {
        old.count() == 1
    })
    .await;
    g.shutdown();
    // Draining: the admin API still answers, and says not ready.
    let ready = get(&client(), &format!("{}/readyz", admin(&g)), &[]).await;
    assert_eq!(ready.status, 503);
    let a = in_flight.await.unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["done"], true);
    // The listener is gone.
    let deadline = Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting after shutdown");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::task::spawn_blocking(move || g.join()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_are_refused_and_slow_heads_cut_off() {
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let g = gateway(&format!(
        "server: {{ max_header_bytes: 8192, max_headers: 20, header_read_timeout: \"300ms\" }}\n{}",
        backends(&old, &new)
    ));
    let c = client();
    let big = "x".repeat(10_000);
    let req = Request::get(format!("{}/", proxy(&g)))
        .header("x-big", &big)
        .body(http_body_util::Full::new(Bytes::new()))
        .unwrap();
    let status = c.request(req).await.map(|r| r.status().as_u16()).unwrap_or(431);
    assert_eq!(status, 431);

    let mut b = Request::get(format!("{}/", proxy(&g)));
    for i in 0..40 {
        b = b.header(format!("x-h{i}"), "v");
    }
    let status = c
        .request(b.body(http_body_util::Full::new(Bytes::new())).unwrap())
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(431);
    assert_eq!(status, 431);
    assert_eq!(old.count(), 0);

    // Slowloris: half a request head, then silence.
    let mut s = tokio::net::TcpStream::connect(g.proxy_addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 512];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "connection with an unfinished head was not closed");
    assert!(started.elapsed() < Duration::from_secs(3));
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let g = gateway(&format!(
        "server: {{ max_connections: 1, workers: 1 }}\n{}",
        backends(&old, &new)
    ));
    // One idle keep-alive connection holds the only slot.
    let mut first = tokio::net::TcpStream::connect(g.proxy_addr).await.unwrap();
    first.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = first.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));

    // The second connection is made (the kernel completes it) but waits in
    // the listener's accept queue, unserved, while the slot is taken.
    let mut second = tokio::net::TcpStream::connect(g.proxy_addr).await.unwrap();
    second
        .write_all(b"GET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let port = g.proxy_addr.port();
    eventually(
        Duration::from_secs(10),
        "the second connection waits in the accept queue",
        || accept_queue(port) == Some(1),
    )
    .await;
    let mut probe = [0u8; 1];
    assert!(
        matches!(second.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "a second connection was served past the cap"
    );
    assert!(!old.seen().iter().any(|s| s.path == "/b"));
    drop(first);
    let answer = support::raw::read_to_close(&mut second, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let seen: HashSet<String> = old.seen().iter().map(|s| s.path.clone()).collect();
    assert!(seen.contains("/b"));
    stop(g).await;
}

/// Connections waiting to be accepted on the IPv4 loopback listener of
/// `port` (the `rx_queue` of a LISTEN socket in /proc/net/tcp).
fn accept_queue(port: u16) -> Option<u32> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let local = format!("0100007F:{port:04X}");
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.get(1) == Some(&local.as_str()) && f.get(3) == Some(&"0A"))
            .then(|| u32::from_str_radix(f.get(4)?.split(':').nth(1)?, 16).ok())
            .flatten()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_backends_are_reached_with_prior_knowledge() {
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let g = gateway(&format!(
        "backends:\n  old: {{ url: \"{}\", http2: true }}\n  new: {{ url: \"{}\" }}\n",
        old.url(),
        new.url()
    ));
    let c = client();
    for i in 0..3 {
        let a = get(&c, &format!("{}/h2/{i}", proxy(&g)), &[("host", "shop.example")]).await;
        assert_eq!(a.json()["backend"], "old");
    }
    let seen = old.seen();
    assert!(seen.iter().all(|s| s.version == http::Version::HTTP_2));
    assert_eq!(seen[0].path, "/h2/0");
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_from_an_http2_backend_stay_behind() {
    let h2: Handler = Arc::new(|_req| {
        Box::pin(async move {
            let mut r = json_response(200, serde_json::json!({}));
            r.headers_mut().insert("proxy-authenticate", "Basic".parse().unwrap());
            r.headers_mut().insert("x-kept", "yes".parse().unwrap());
            r
        })
    });
    let (old, new) = (Origin::start(h2).await, Origin::named("new").await);
    let g = gateway(&format!(
        "backends:\n  old: {{ url: \"{}\", http2: true }}\n  new: {{ url: \"{}\" }}\n",
        old.url(),
        new.url()
    ));
    let a = get(&client(), &format!("{}/x", proxy(&g)), &[]).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("x-kept"), Some("yes"));
    assert_eq!(a.header("proxy-authenticate"), None);
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_from_an_http2_backend_is_cut_after_the_read_timeout() {
    let stalling: Handler = Arc::new(|_req| {
        Box::pin(async move {
            let chunks = futures_util::stream::once(async { Ok(Frame::data(Bytes::from_static(b"the start"))) })
                .chain(futures_util::stream::pending());
            Response::new(BodyExt::boxed(StreamBody::new(chunks)))
        })
    });
    let old = Origin::start(stalling).await;
    let new = Origin::named("new").await;
    let g = gateway(&format!(
        "backends:\n  old: {{ url: \"{}\", http2: true, read_timeout: \"300ms\" }}\n  new: {{ url: \"{}\" }}\n",
        old.url(),
        new.url()
    ));
    let c = client();
    let started = Instant::now();
    let outcome = get_whole(&c, &format!("{}/s", proxy(&g)), Duration::from_secs(10)).await;
    assert!(outcome.is_err(), "a stalled body must not look complete");
    assert!(started.elapsed() >= Duration::from_millis(300));
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_closes_idle_connections_is_retried_transparently() {
    // Answers with `Connection: close`: every pooled connection dies after one use.
    let closing: Handler = Arc::new(|_req| {
        Box::pin(async move {
            let mut r = json_response(200, serde_json::json!({"ok": true}));
            r.headers_mut().insert("connection", "close".parse().unwrap());
            r
        })
    });
    let old = Origin::start(closing).await;
    let new = Origin::named("new").await;
    let g = gateway(&backends(&old, &new));
    let c = client();
    for _ in 0..50 {
        assert_eq!(get(&c, &format!("{}/x", proxy(&g)), &[]).await.status, 200);
    }
    assert_eq!(metric(&g, "switchyard_upstream_errors_total", &[]), 0.0);
    stop(g).await;
}
