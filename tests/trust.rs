//! Nobody outside the trust boundary can move the rollout or its judge: a
//! client's broken, aborted or stalled body is the client's fault (never a
//! backend error, never a guard sample), pins follow `force_from` and lose
//! to a rollback, control headers never reach a backend, no spelling of a
//! path escapes its route or rule, forwarding headers are believed only from
//! trusted proxies, and the admin API fails closed.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use support::raw::{exchange, read_to_close, statuses};
use support::*;
use switchyard::gateway::Gateway;
use switchyard::rollout::controller::Actor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn sre() -> Actor {
    Actor::new("test", "test")
}

/// Users the default salt puts on `new` at `percent`, and users it keeps on old.
fn users(percent: f64) -> (Vec<String>, Vec<String>) {
    let seed = switchyard::split::seed("switchyard");
    let (mut new, mut old) = (Vec::new(), Vec::new());
    for i in 0..400 {
        let u = format!("user-{i}");
        if switchyard::split::bucket(seed, u.as_bytes()) < percent {
            new.push(u);
        } else {
            old.push(u);
        }
    }
    (new, old)
}

/// Answers with the size of the body it read.
async fn body_counter(name: &'static str) -> Origin {
    Origin::start(Arc::new(move |req: Request<Incoming>| {
        Box::pin(async move {
            let fail = req.uri().path() == "/boom";
            let n = req.into_body().collect().await.map(|b| b.to_bytes().len()).unwrap_or(0);
            json_response(
                if fail { 500 } else { 200 },
                serde_json::json!({ "backend": name, "read": n }),
            )
        })
    }))
    .await
}

const GUARD: &str = "  guard: { interval: \"100ms\", window: \"30s\", min_requests: 5 }\n";

async fn status(g: &Gateway) -> serde_json::Value {
    get(&client(), &format!("{}/status", admin(g)), &[]).await.json()
}

/// A guarded gateway at 50 %, sticky by user, that has served ten good
/// requests on each side; with its origins and the users it puts on new.
async fn at_half_with_ten_good_requests_each() -> ((Origin, Origin), Gateway, Vec<String>) {
    let (old, new) = (body_counter("old").await, body_counter("new").await);
    let g = gateway(&format!(
        "{}rollout:\n  sticky: \"header:x-user-id\"\n{GUARD}",
        backends(&old, &new)
    ));
    g.controller.set_percent(50.0, &sre()).unwrap();
    let (on_new, on_old) = users(50.0);
    let c = client();
    for u in on_new.iter().take(10).chain(on_old.iter().take(10)) {
        assert_eq!(
            get(&c, &format!("{}/ok", proxy(&g)), &[("x-user-id", u)]).await.status,
            200
        );
    }
    ((old, new), g, on_new)
}

/// Waits for two guard runs that began after now.
async fn guard_has_judged(g: &Gateway) {
    let start = status(g).await["guard"]["last_run_ms"].as_u64().unwrap_or(0);
    let c = client();
    let url = format!("{}/status", admin(g));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = get(&c, &url, &[]).await.json()["guard"]["last_run_ms"]
            .as_u64()
            .unwrap_or(0);
        if now > start + 150 {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "the guard never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_bodies_are_the_clients_fault_and_never_roll_back() {
    let (_origins, g, on_new) = at_half_with_ten_good_requests_each().await;
    // 30 malformed chunked bodies from users served by new: before, each
    // was a 502 "the new backend failed" and the guard rolled back.
    for u in on_new.iter().take(30) {
        let attack = format!(
            "POST /up HTTP/1.1\r\nHost: shop\r\nx-user-id: {u}\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n"
        );
        let answer = exchange(g.proxy_addr, attack.as_bytes(), Duration::from_secs(10)).await;
        let got = statuses(&answer);
        assert!(
            got.is_empty() || got == [400],
            "a broken body is a 400 or a closed connection: {answer}"
        );
    }
    eventually(Duration::from_secs(10), "30 framing errors counted", || {
        metric(&g, "switchyard_client_errors_total", &[("kind", "framing")]) == 30.0
    })
    .await;
    guard_has_judged(&g).await;
    let s = status(&g).await;
    assert_eq!(
        (s["percent"].as_f64(), s["phase"].as_str()),
        (Some(50.0), Some("progressing")),
        "{s}"
    );
    assert_eq!(metric(&g, "switchyard_upstream_errors_total", &[]), 0.0);
    assert_eq!(
        s["guard"]["requests_new"], 10,
        "only the good requests were samples: {s}"
    );
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_requests_are_not_guard_samples() {
    let (_origins, g, _) = at_half_with_ten_good_requests_each().await;
    let c = client();
    for _ in 0..30 {
        let a = get(&c, &format!("{}/boom", proxy(&g)), &[("x-switchyard-backend", "new")]).await;
        assert_eq!(a.status, 500);
    }
    guard_has_judged(&g).await;
    let s = status(&g).await;
    assert_eq!(s["phase"], "progressing", "{s}");
    assert_eq!(s["guard"]["requests_new"], 10, "{s}");
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_upload_is_counted_as_the_clients() {
    let (old, new) = (body_counter("old").await, body_counter("new").await);
    let g = gateway(&backends(&old, &new));
    // The client sends a tenth of its upload and leaves.
    let mut s = TcpStream::connect(g.proxy_addr).await.unwrap();
    s.write_all(b"POST /up HTTP/1.1\r\nHost: shop\r\nContent-Length: 1000\r\n\r\nonly ten b")
        .await
        .unwrap();
    s.shutdown().await.unwrap();
    let answer = read_to_close(&mut s, Duration::from_secs(10)).await;
    assert!(!answer.contains(" 502 "), "{answer}");
    eventually(Duration::from_secs(10), "the abort counted", || {
        metric(&g, "switchyard_client_errors_total", &[("kind", "aborted")]) == 1.0
    })
    .await;
    assert_eq!(metric(&g, "switchyard_upstream_errors_total", &[]), 0.0);
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upload_is_a_408_and_a_slow_one_is_served() {
    let (old, new) = (body_counter("old").await, body_counter("new").await);
    let g = gateway(&format!(
        "backends:\n  old: {{ url: \"{}\", timeout: \"1s\" }}\n  new: {{ url: \"{}\" }}\nserver: {{ client_body_timeout: \"400ms\" }}\n",
        old.url(),
        new.url()
    ));
    // Stalled: 10 of 1,000 bytes, then nothing. Before, the backend's
    // timeout fired and the backend was blamed (504).
    let mut s = TcpStream::connect(g.proxy_addr).await.unwrap();
    s.write_all(b"POST /up HTTP/1.1\r\nHost: shop\r\nContent-Length: 1000\r\n\r\nonly ten b")
        .await
        .unwrap();
    let answer = read_to_close(&mut s, Duration::from_secs(10)).await;
    assert_eq!(statuses(&answer), [408], "{answer}");
    assert_eq!(
        metric(&g, "switchyard_client_errors_total", &[("kind", "timeout")]),
        1.0
    );
    assert_eq!(metric(&g, "switchyard_upstream_errors_total", &[]), 0.0);

    // Slow but steady: 10 chunks 300 ms apart, 3 s in all, longer than the
    // backend's 1 s timeout, which only starts once the upload is over.
    let mut s = TcpStream::connect(g.proxy_addr).await.unwrap();
    s.write_all(b"POST /up HTTP/1.1\r\nHost: shop\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        s.write_all(&[b'x'; 100]).await.unwrap();
    }
    let answer = read_to_close(&mut s, Duration::from_secs(10)).await;
    assert_eq!(statuses(&answer), [200], "{answer}");
    assert!(answer.contains("\"read\":1000"), "{answer}");
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_body_that_lies_about_its_length_is_the_clients_fault() {
    let (old, new) = (body_counter("old").await, body_counter("new").await);
    let g = gateway(&backends(&old, &new));
    let tcp = TcpStream::connect(g.proxy_addr).await.unwrap();
    let (mut h2, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let req = Request::post(format!("http://{}/up", g.proxy_addr))
        .header("content-length", "100")
        .body(())
        .unwrap();
    let (resp, mut body) = h2.send_request(req, false).unwrap();
    body.send_data(Bytes::from_static(b"only ten b"), true).unwrap();
    // Either our 400 or the HTTP/2 layer's own reset: never a 502.
    if let Ok(resp) = resp.await {
        assert_eq!(resp.status(), 400);
    }
    // Counted where it was seen: our body check (`framing`), or hyper's
    // reset of the stream before an answer (`aborted`).
    eventually(Duration::from_secs(10), "the lie counted as the client's", || {
        metric(&g, "switchyard_client_errors_total", &[("kind", "framing")])
            + metric(&g, "switchyard_client_errors_total", &[("kind", "aborted")])
            == 1.0
    })
    .await;
    assert_eq!(metric(&g, "switchyard_upstream_errors_total", &[]), 0.0);
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_beats_the_force_header_and_force_from_limits_who_pins() {
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let g = gateway(&backends(&old, &new));
    let c = client();
    let pinned = |g: &Gateway| format!("{}/x", proxy(g));
    let a = get(&c, &pinned(&g), &[("x-switchyard-backend", "new")]).await;
    assert_eq!(
        a.header("x-switchyard-served-by"),
        Some("new"),
        "anyone may pin by default"
    );
    g.controller.set_percent(50.0, &sre()).unwrap();
    g.controller
        .rollback(&sre(), switchyard::rollout::controller::RollbackReason::Manual)
        .unwrap();
    let before = new.count();
    for _ in 0..20 {
        let a = get(&c, &pinned(&g), &[("x-switchyard-backend", "new")]).await;
        assert_eq!(a.header("x-switchyard-served-by"), Some("old"));
    }
    assert_eq!(
        new.count(),
        before,
        "after a rollback new serves no live request, pinned or not"
    );
    g.controller.set_percent(5.0, &sre()).unwrap();
    let a = get(&c, &pinned(&g), &[("x-switchyard-backend", "new")]).await;
    assert_eq!(
        a.header("x-switchyard-served-by"),
        Some("new"),
        "raised again, pins work again"
    );
    stop(g).await;

    let g = gateway(&format!(
        "{}rollout: {{ force_from: [\"10.0.0.0/8\"] }}\nserver: {{ trusted_proxies: [\"127.0.0.1\"] }}\n",
        backends(&old, &new)
    ));
    let a = get(&c, &pinned(&g), &[("x-switchyard-backend", "new")]).await;
    assert_eq!(a.header("x-switchyard-served-by"), Some("old"), "127.0.0.1 may not pin");
    let a = get(
        &c,
        &pinned(&g),
        &[("x-switchyard-backend", "new"), ("x-forwarded-for", "10.1.2.3")],
    )
    .await;
    assert_eq!(
        a.header("x-switchyard-served-by"),
        Some("new"),
        "a client in force_from, as the trusted proxy says, may"
    );
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_headers_from_clients_never_reach_a_backend() {
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    // No noise baseline: its second request to old is a mirror, carries
    // x-switchyard-shadow by right, and may arrive before the live one.
    let g = gateway(&format!(
        "{}shadow: {{ percent: 100 }}\ndiff: {{ noise: {{ repeat_percent: 0 }} }}\n",
        backends(&old, &new)
    ));
    let c = client();
    let a = get(
        &c,
        &format!("{}/x", proxy(&g)),
        &[
            ("x-switchyard-shadow", "1"),
            ("x-switchyard-backend", "old"),
            ("x-switchyard-anything", "z"),
        ],
    )
    .await;
    assert_eq!(a.status, 200);
    eventually(Duration::from_secs(10), "the mirror arrived", || new.count() == 1).await;
    let live = &old.seen()[0];
    for h in ["x-switchyard-shadow", "x-switchyard-backend", "x-switchyard-anything"] {
        assert!(!live.headers.contains_key(h), "{h} reached the live backend");
    }
    let mirror = &new.seen()[0];
    assert_eq!(
        mirror.headers["x-switchyard-shadow"], "1",
        "only the gateway's mirrors carry it"
    );
    assert!(!mirror.headers.contains_key("x-switchyard-anything"));
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_spelling_of_a_path_escapes_its_route_or_rule() {
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let g = gateway(&format!(
        "{}rollout: {{ percent: 100 }}\nroutes:\n  - name: payments\n    match: {{ path_prefix: \"/api/payments\" }}\n    rollout: {{ percent: 0 }}\nmodules:\n  - rules:\n      - {{ name: no-admin, match: {{ path_prefix: \"/admin\" }} }}\n",
        backends(&old, &new)
    ));
    let c = client();
    for spelling in [
        "/api/payments/1",
        "//api/payments/1",
        "/api/./payments/1",
        "/api/%70ayments/1",
        "/x/../api/payments/1",
        "/api%2Fpayments/1",
    ] {
        let a = get(&c, &format!("{}{spelling}", proxy(&g)), &[]).await;
        assert_eq!(
            a.header("x-switchyard-served-by"),
            Some("old"),
            "{spelling} escaped the route"
        );
        // The backend still gets the target exactly as sent.
        assert_eq!(old.seen().last().unwrap().path, spelling);
    }
    for spelling in ["/admin", "//admin/x", "/%61dmin", "/x/../admin", "/./admin/"] {
        let a = get(&c, &format!("{}{spelling}", proxy(&g)), &[]).await;
        assert_eq!(a.status, 403, "{spelling} escaped the rule");
    }
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_are_believed_only_from_trusted_proxies() {
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let attack = b"GET /x HTTP/1.1\r\nHost: shop.example\r\nX-Forwarded-For: 6.6.6.6\xff\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: admin.internal\r\nConnection: close\r\n\r\n";

    let g = gateway(&backends(&old, &new));
    let answer = exchange(g.proxy_addr, attack, Duration::from_secs(10)).await;
    assert_eq!(statuses(&answer), [200], "{answer}");
    let seen = old.seen().pop().unwrap();
    assert_eq!(
        seen.headers["x-forwarded-for"], "127.0.0.1",
        "an untrusted client's claim is replaced"
    );
    assert_eq!(seen.headers["x-forwarded-proto"], "http");
    assert_eq!(seen.headers["x-forwarded-host"], "shop.example");
    stop(g).await;

    let g = gateway(&format!(
        "{}server: {{ trusted_proxies: [\"127.0.0.0/8\"] }}\n",
        backends(&old, &new)
    ));
    let answer = exchange(g.proxy_addr, attack, Duration::from_secs(10)).await;
    assert_eq!(statuses(&answer), [200], "{answer}");
    let seen = old.seen().pop().unwrap();
    assert_eq!(
        seen.headers["x-forwarded-for"].as_bytes(),
        b"6.6.6.6\xff, 127.0.0.1",
        "a trusted chain is kept and the peer appended, even when it is not text"
    );
    assert_eq!(seen.headers["x-forwarded-proto"], "https");
    assert_eq!(seen.headers["x-forwarded-host"], "admin.internal");
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_judges_an_http2_body_of_unknown_length() {
    let (old, new) = (body_counter("old").await, body_counter("new").await);
    let g = gateway(&format!(
        "{}modules:\n  - rules:\n      - {{ name: big, match: {{ body_larger_than: 100 }} }}\n",
        backends(&old, &new)
    ));
    let tcp = TcpStream::connect(g.proxy_addr).await.unwrap();
    let (mut h2, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let req = Request::post(format!("http://{}/up", g.proxy_addr)).body(()).unwrap();
    let (resp, mut body) = h2.send_request(req, false).unwrap();
    body.send_data(Bytes::from(vec![b'x'; 1000]), true).unwrap();
    let resp = resp.await.unwrap();
    assert_eq!(resp.status(), 413, "before, a body without a length skipped the rule");
    stop(g).await;
}

/// The admin API of `g`, called with `headers`.
async fn call(g: &Gateway, method: Method, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    send(
        &client(),
        method,
        &format!("{}{path}", admin(g)),
        headers,
        body.to_string(),
    )
    .await
}

const JSON: (&str, &str) = ("content-type", "application/json");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_token_is_read_once_and_a_missing_file_never_opens_the_api() {
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    let config = dir.path().join("g.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: \"127.0.0.1:0\"\nadmin: {{ listen: \"127.0.0.1:0\", token_file: \"{}\" }}\n{}",
            token_file.display(),
            backends(&old, &new)
        ),
    )
    .unwrap();
    let g = gateway_from_file(&config);
    std::fs::remove_file(&token_file).unwrap();
    let set = "{\"percent\": 50}";
    let a = call(&g, Method::PUT, "/rollout", &[JSON], set).await;
    assert_eq!(
        a.status,
        401,
        "before, an unreadable token file meant no token: {}",
        a.text()
    );
    let a = call(
        &g,
        Method::POST,
        "/reload",
        &[("authorization", "Bearer s3cret-token")],
        "",
    )
    .await;
    assert_eq!(a.status, 400, "a reload that cannot read the token is rejected");
    let a = call(
        &g,
        Method::PUT,
        "/rollout",
        &[JSON, ("authorization", "Bearer s3cret-token")],
        set,
    )
    .await;
    assert_eq!(a.status, 200, "the last token stays: {}", a.text());
    stop(g).await;

    // Unreadable at start: the gateway does not start.
    let cfg = switchyard::config::Config::from_yaml(
        &format!(
            "listen: \"127.0.0.1:0\"\nadmin: {{ listen: \"127.0.0.1:0\", token: \"s3cret-token\" }}\n{}",
            backends(&old, &new)
        ),
        "t",
    )
    .unwrap();
    let mut cfg = cfg;
    cfg.admin.token = None;
    cfg.admin.token_file = Some(token_file.clone());
    let e = Gateway::start(cfg, Default::default())
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("admin.token_file: cannot read"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_pages_cannot_move_a_token_less_loopback_admin() {
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let g = gateway(&backends(&old, &new));
    let set = "{\"percent\": 50}";
    let host = g.admin_addr.to_string();
    for (headers, status) in [
        (vec![JSON, ("origin", "http://evil.example")], 403),
        (vec![JSON, ("sec-fetch-site", "cross-site")], 403),
        (vec![("content-type", "text/plain")], 415),
        (vec![("content-type", "application/x-www-form-urlencoded")], 415),
    ] {
        let a = call(&g, Method::PUT, "/rollout", &headers, set).await;
        assert_eq!(a.status, status, "{headers:?}: {}", a.text());
    }
    let a = call(&g, Method::POST, "/rollback", &[("origin", "http://evil.example")], "").await;
    assert_eq!(a.status, 403);
    assert_eq!(g.controller.state().percent, 0.0, "nothing moved");
    let own = format!("http://{host}");
    let a = call(&g, Method::PUT, "/rollout", &[JSON, ("origin", own.as_str())], set).await;
    assert_eq!(a.status, 200, "the admin's own pages may: {}", a.text());
    let a = call(&g, Method::PUT, "/rollout", &[JSON], set).await;
    assert_eq!(a.status, 200, "the CLI sends no Origin");
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_the_report_needs_it_and_probes_stay_open() {
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let g = gateway(&format!(
        "listen: \"127.0.0.1:0\"\nadmin: {{ listen: \"127.0.0.1:0\", token: \"s3cret-token\" }}\n{}",
        backends(&old, &new)
    ));
    for path in ["/report", "/report.json", "/report.txt", "/diffs"] {
        let a = call(&g, Method::GET, path, &[], "").await;
        assert_eq!(a.status, 401, "{path} holds sampled bodies");
        assert!(a.header("www-authenticate").unwrap().starts_with("Basic"), "{path}");
        let a = call(&g, Method::GET, path, &[("authorization", "Bearer s3cret-token")], "").await;
        assert_eq!(a.status, 200, "{path}");
    }
    // A browser sends Basic: any user name, the token as password.
    let a = call(
        &g,
        Method::GET,
        "/report",
        &[("authorization", "Basic c3JlOnMzY3JldC10b2tlbg==")],
        "",
    )
    .await;
    assert_eq!(a.status, 200);
    for path in ["/metrics", "/healthz", "/readyz", "/status"] {
        assert_eq!(call(&g, Method::GET, path, &[], "").await.status, 200, "{path}");
    }
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_each_get_their_answer() {
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let g = gateway(&backends(&old, &new));
    let mut s = TcpStream::connect(g.proxy_addr).await.unwrap();
    s.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut all))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(statuses(&String::from_utf8_lossy(&all)), [200, 200]);
    stop(g).await;
}
