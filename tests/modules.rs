//! Request modules on loopback: the rate limiter and the rules, in front of
//! real backends and a real mirror.

mod support;

use std::time::{Duration, Instant};

use http::Method;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limiter_answers_429_at_the_configured_rate_then_recovers() {
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let g = gateway(&format!(
        "{}modules:\n  - rate_limit: {{ key: \"header:x-user-id\", rate: 20, per: \"1s\", burst: 5 }}\n",
        backends(&old, &new)
    ));
    let c = client();
    let url = format!("{}/x", proxy(&g));
    // Two seconds as fast as we can: 5 of burst + 20/s.
    let started = Instant::now();
    let (mut ok, mut limited) = (0u32, 0u32);
    let mut retry_after = None;
    while started.elapsed() < Duration::from_secs(2) {
        let a = get(&c, &url, &[("x-user-id", "greedy")]).await;
        match a.status.as_u16() {
            200 => ok += 1,
            429 => {
                limited += 1;
                retry_after = a.header("retry-after").map(String::from);
            }
            s => panic!("unexpected {s}"),
        }
    }
    let expected = 5.0 + 20.0 * started.elapsed().as_secs_f64();
    assert!(
        (ok as f64 - expected).abs() <= 0.15 * expected + 2.0,
        "{ok} allowed, expected about {expected:.0}"
    );
    assert!(limited > 0);
    assert_eq!(retry_after.as_deref(), Some("1"));
    // Another user has a budget of their own.
    assert_eq!(get(&c, &url, &[("x-user-id", "polite")]).await.status, 200);
    // After a quiet spell the budget is back.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        if get(&c, &url, &[("x-user-id", "greedy")]).await.status == 200 {
            break;
        }
        limited += 1;
        assert!(Instant::now() < deadline, "the limit never lifted");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        metric(
            &g,
            "switchyard_module_decisions_total",
            &[("module", "rate_limit"), ("decision", "limited")]
        ),
        limited as f64
    );
    // Limited requests reached no backend.
    assert_eq!(
        old.count() + new.count(),
        ok as usize + 2,
        "limited requests reached no backend"
    );
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limit_is_the_same_whichever_side_would_serve() {
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let g = gateway(&format!(
        "{}rollout: {{ sticky: none, percent: 50 }}\nmodules:\n  - rate_limit: {{ key: global, rate: 10, per: \"10s\", burst: 10 }}\n",
        backends(&old, &new)
    ));
    let c = client();
    let mut ok = 0;
    for _ in 0..30 {
        if get(&c, &format!("{}/x", proxy(&g)), &[]).await.status == 200 {
            ok += 1;
        }
    }
    assert_eq!(ok, 10, "one budget, however the requests were split");
    assert_eq!(old.count() + new.count(), 10);
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_request_reaches_no_backend_and_no_mirror() {
    let (old, new, twin) = (
        Origin::named("old").await,
        Origin::named("new").await,
        Origin::named("twin").await,
    );
    let g = gateway(&format!(
        "{}shadow: {{ percent: 100 }}\nmodules:\n  - rules:\n      - name: no-admin\n        match: {{ path_prefix: /admin }}\n      - name: bots\n        action: tag\n        match: {{ header: {{ name: user-agent, regex: \"(?i)bot\" }} }}\n      - name: no-php\n        match: {{ path_regex: \"\\\\.php$\" }}\n      - name: big-upload\n        status: 413\n        match: {{ methods: [POST], body_larger_than: 1000 }}\n",
        backends_with_twin(&old, &new, &twin)
    ));
    let c = client();
    let p = proxy(&g);
    let a = get(&c, &format!("{p}/admin/users"), &[]).await;
    assert_eq!(a.status, 403);
    assert_eq!(a.text(), "Forbidden: blocked by rule no-admin\n");
    assert_eq!(get(&c, &format!("{p}/wp-login.php"), &[]).await.status, 403);
    let a = send(&c, Method::POST, &format!("{p}/upload"), &[], vec![0u8; 5000]).await;
    assert_eq!(a.status, 413);
    // A tagged request goes through (and is mirrored like any other).
    assert_eq!(
        get(&c, &format!("{p}/page"), &[("user-agent", "FriendlyBot/1.0")])
            .await
            .status,
        200
    );
    eventually(Duration::from_secs(5), "the tagged request mirrored", || {
        new.count() == 1 && twin.count() == 1
    })
    .await;
    assert_eq!(old.count(), 1, "only the tagged request reached old");
    assert!(old.seen().iter().all(|s| s.path == "/page"));
    assert!(new.seen().iter().all(|s| s.path == "/page"));
    assert!(twin.seen().iter().all(|s| s.path == "/page"));
    for (decision, n) in [("no-admin", 1.0), ("no-php", 1.0), ("big-upload", 1.0), ("bots", 1.0)] {
        assert_eq!(
            metric(
                &g,
                "switchyard_module_decisions_total",
                &[("module", "rules"), ("decision", decision)]
            ),
            n,
            "{decision}"
        );
    }
    // Only the tagged request is compared (the analysis thread counts it a
    // moment after both answers are in).
    eventually(Duration::from_secs(5), "the tagged request compared", || {
        metric(&g, "switchyard_comparisons_total", &[]) == 1.0
    })
    .await;
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_modules_apply_to_their_route_only() {
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let g = gateway(&format!(
        "{}routes:\n  - name: api\n    match: {{ path_prefix: /api }}\n    modules:\n      - rules:\n          - name: no-delete\n            match: {{ methods: [DELETE] }}\n",
        backends(&old, &new)
    ));
    let c = client();
    assert_eq!(
        send(&c, Method::DELETE, &format!("{}/api/items/1", proxy(&g)), &[], "")
            .await
            .status,
        403
    );
    assert_eq!(
        send(&c, Method::DELETE, &format!("{}/items/1", proxy(&g)), &[], "")
            .await
            .status,
        200
    );
    assert_eq!(
        metric(
            &g,
            "switchyard_module_decisions_total",
            &[("route", "api"), ("decision", "no-delete")]
        ),
        1.0
    );
    stop(g).await;
}
