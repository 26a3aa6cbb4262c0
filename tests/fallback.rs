//! Per-request fallback to old: a request new fails (refused, timed out,
//! 5xx) is answered by old, within a budget, and still counted as new's
//! failure for the guard.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Method, Request};
use hyper::body::Incoming;
use support::*;

async fn failing_new() -> Origin {
    Origin::start(Arc::new(|_req: Request<Incoming>| {
        Box::pin(async { json_response(500, serde_json::json!({"error": "new is broken"})) })
    }))
    .await
}

fn config(old: &Origin, new_url: &str, fallback: &str, extra: &str) -> String {
    format!(
        "backends: {{ old: {{ url: \"{}\" }}, new: {{ url: \"{new_url}\", timeout: \"300ms\" }} }}\nrollout:\n  percent: 100\n  sticky: none\n  guard: {{ interval: \"100ms\", min_requests: 1 }}\n  fallback: {fallback}\n{extra}",
        old.url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_new_fails_is_answered_by_old_and_judged_as_new_s_failure() {
    let old = Origin::named("old").await;
    let dead = Refusing::new();
    let broken = failing_new().await;
    let c = client();

    // new refuses connections.
    let g = gateway(&config(&old, &dead.url(), "{ max_share: 1.0 }", ""));
    let a = get(&c, &format!("{}/a", proxy(&g)), &[]).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.header("x-switchyard-served-by"), Some("old"));
    assert_eq!(a.json()["backend"], "old");
    assert_eq!(
        metric(&g, "switchyard_fallbacks_total", &[("reason", "connect_error")]),
        1.0
    );
    assert_eq!(
        metric(
            &g,
            "switchyard_upstream_errors_total",
            &[("backend", "new"), ("kind", "connect")]
        ),
        1.0,
        "the failure is new's"
    );
    // The guard judged it as new's error.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let g2 = g.guard.lock().unwrap().clone();
        if g2.requests_new >= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the guard never saw new's failure: {g2:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    g.shutdown();

    // new answers 5xx: its answer is dropped, old's served.
    let g = gateway(&config(&old, &broken.url(), "{ on: [5xx], max_share: 1.0 }", ""));
    let a = get(&c, &format!("{}/b", proxy(&g)), &[]).await;
    assert_eq!(
        (a.status.as_u16(), a.header("x-switchyard-served-by")),
        (200, Some("old"))
    );
    assert_eq!(metric(&g, "switchyard_fallbacks_total", &[("reason", "5xx")]), 1.0);
    // Not for a method that is not listed (a second POST could do harm)…
    let a = send(&c, Method::POST, &format!("{}/b", proxy(&g)), &[], "").await;
    assert_eq!(
        (a.status.as_u16(), a.header("x-switchyard-served-by")),
        (500, Some("new"))
    );
    // …nor for a request pinned to new (a tester wants new's answer).
    let a = get(&c, &format!("{}/b", proxy(&g)), &[("x-switchyard-backend", "new")]).await;
    assert_eq!(a.status, 500);
    assert_eq!(metric(&g, "switchyard_fallbacks_total", &[]), 1.0);
    g.shutdown();

    // new does not answer within its timeout (300 ms here).
    let slow = Origin::start(Arc::new(|_req: Request<Incoming>| {
        Box::pin(async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            json_response(200, serde_json::json!({"backend": "new"}))
        })
    }))
    .await;
    let g = gateway(&config(&old, &slow.url(), "{ on: [timeout], max_share: 1.0 }", ""));
    let a = get(&c, &format!("{}/slow", proxy(&g)), &[]).await;
    assert_eq!(
        (a.status.as_u16(), a.header("x-switchyard-served-by")),
        (200, Some("old"))
    );
    assert_eq!(metric(&g, "switchyard_fallbacks_total", &[("reason", "timeout")]), 1.0);
    g.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_max_share_new_s_errors_reach_the_client() {
    let old = Origin::named("old").await;
    let broken = failing_new().await;
    let g = gateway(&config(&old, &broken.url(), "{ max_share: 0.05 }", ""));
    let c = client();
    let (mut ok, mut failed) = (0, 0);
    for i in 0..100 {
        let a = get(&c, &format!("{}/c{i}", proxy(&g)), &[]).await;
        match a.status.as_u16() {
            200 => ok += 1,
            500 => failed += 1,
            s => panic!("{s}"),
        }
    }
    assert_eq!((ok, failed), (5, 95), "5 % of new's requests fall back, no more");
    assert_eq!(metric(&g, "switchyard_fallbacks_total", &[]), 5.0);
    g.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_says_a_request_fell_back() {
    let old = Origin::named("old").await;
    let broken = failing_new().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("g.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen: \"127.0.0.1:0\"\nadmin: {{ listen: \"127.0.0.1:0\" }}\nserver: {{ workers: 1 }}\nlogging: {{ access_log: true }}\n{}",
            config(&old, &broken.url(), "{ max_share: 1.0 }", "")
        ),
    )
    .unwrap();
    let g = support::raw::Running::start(&cfg, &[], true).unwrap();
    let a = get(&client(), &format!("{}/logged", g.proxy_url()), &[]).await;
    assert_eq!(a.status, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(line) = g.log().iter().find(|l| l.contains("/logged")) {
            assert!(
                line.contains("fallback=\"5xx\"") || line.contains("fallback=5xx"),
                "{line}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "no access log line: {:#?}", g.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A request whose body was held whole for its mirror can fall back too:
/// old gets the same body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_held_for_the_mirror_is_sent_to_old_again() {
    let old = Origin::start(Arc::new(|req: Request<Incoming>| {
        Box::pin(async move {
            use http_body_util::BodyExt;
            let method = req.method().to_string();
            let body = req.into_body().collect().await.unwrap().to_bytes();
            json_response(
                200,
                serde_json::json!({"backend": "old", "method": method, "body": String::from_utf8_lossy(&body)}),
            )
        })
    }))
    .await;
    let broken = failing_new().await;
    let g = gateway(&config(
        &old,
        &broken.url(),
        "{ methods: [PUT], max_share: 1.0 }",
        "shadow: { percent: 100, methods: [PUT] }\n",
    ));
    let a = send(
        &client(),
        Method::PUT,
        &format!("{}/doc", proxy(&g)),
        &[],
        "the same bytes",
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let v = a.json();
    assert_eq!(
        (v["method"].as_str(), v["body"].as_str()),
        (Some("PUT"), Some("the same bytes"))
    );
    assert_eq!(metric(&g, "switchyard_fallbacks_total", &[("reason", "5xx")]), 1.0);
    g.shutdown();
}
