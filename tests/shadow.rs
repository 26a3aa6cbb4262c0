//! Mirroring and comparison on loopback: real old, new and twin servers.

mod support;

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use support::*;

fn field<'a>(report: &'a serde_json::Value, endpoint: &str, field: &str) -> Option<&'a serde_json::Value> {
    report["endpoints"]
        .as_array()?
        .iter()
        .find(|e| e["endpoint"] == endpoint)?["fields"]
        .as_array()?
        .iter()
        .find(|f| f["field"] == field)
}

async fn report(g: &switchyard::gateway::Gateway) -> serde_json::Value {
    get(&client(), &format!("{}/report.json", admin(g)), &[]).await.json()
}

fn comparisons(g: &switchyard::gateway::Gateway) -> f64 {
    metric(g, "switchyard_comparisons_total", &[])
}

/// An origin answering a user document; `name` differs per flavor, `ts`
/// and `rid` on every response.
fn user_origin(name: &'static str, extra: bool) -> Handler {
    Arc::new(move |req: Request<Incoming>| {
        Box::pin(async move {
            let id: u64 = req
                .uri()
                .path()
                .rsplit('/')
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let mut v = serde_json::json!({
                "id": id,
                "name": name,
                "tags": ["a", "b"],
                "ts": rand::random::<u64>(),
                "rid": format!("{:x}", rand::random::<u64>()),
            });
            if extra {
                v["beta"] = serde_json::json!(true);
            }
            json_response(200, v)
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrors_to_the_other_side_with_the_same_request_id() {
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let g = gateway(&format!(
        "{}shadow: {{ percent: 100 }}\ndiff: {{ noise: {{ repeat_percent: 0 }} }}\n",
        backends(&old, &new)
    ));
    let c = client();
    for i in 0..5 {
        let a = get(&c, &format!("{}/m/{i}", proxy(&g)), &[]).await;
        assert_eq!(a.json()["backend"], "old");
    }
    eventually(BACKGROUND, "5 mirrored requests", || new.count() == 5).await;
    for (live, mirror) in old.seen().iter().zip(new.seen()) {
        assert!(!live.headers.contains_key("x-switchyard-shadow"));
        assert_eq!(mirror.headers["x-switchyard-shadow"], "1");
        let same: Vec<_> = old
            .seen()
            .iter()
            .filter(|s| s.headers["x-request-id"] == mirror.headers["x-request-id"])
            .map(|s| s.path.clone())
            .collect();
        assert_eq!(same, vec![mirror.path.clone()], "mirror carries the live request's id");
        let _ = live;
    }
    eventually(BACKGROUND, "5 comparisons", || comparisons(&g) == 5.0).await;
    assert_eq!(
        metric(
            &g,
            "switchyard_shadow_requests_total",
            &[("backend", "new"), ("outcome", "completed")]
        ),
        5.0
    );
    // Old served live, new answered the mirror: both sides' pair latencies are recorded.
    assert_eq!(
        metric(&g, "switchyard_pair_duration_seconds", &[("backend", "old")]),
        5.0
    );
    assert_eq!(
        metric(&g, "switchyard_pair_duration_seconds", &[("backend", "new")]),
        5.0
    );
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_mirrored_only_when_a_route_opts_in() {
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let g = gateway(&format!(
        "{}shadow: {{ percent: 100 }}\nroutes:\n  - name: search\n    match: {{ path_prefix: /search }}\n    shadow: {{ methods: [POST] }}\n",
        backends(&old, &new)
    ));
    let c = client();
    send(&c, Method::POST, &format!("{}/orders", proxy(&g)), &[], "{\"buy\":1}").await;
    send(
        &c,
        Method::POST,
        &format!("{}/search", proxy(&g)),
        &[],
        "{\"q\":\"lamp\"}",
    )
    .await;
    eventually(BACKGROUND, "the opted-in POST mirrored", || new.count() == 1).await;
    assert_eq!(new.seen()[0].path, "/search");
    assert_eq!(new.seen()[0].headers["content-length"], "12");
    assert_eq!(old.count(), 2);
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_differences_are_found_and_random_fields_are_noise() {
    let old = Origin::start(user_origin("ann", false)).await;
    let twin = Origin::start(user_origin("ann", false)).await;
    let new = Origin::start(user_origin("anne", true)).await;
    let g = gateway(&format!(
        "{}shadow: {{ percent: 100 }}\n",
        backends_with_twin(&old, &new, &twin)
    ));
    let c = client();
    for i in 0..200 {
        get(&c, &format!("{}/users/{i}", proxy(&g)), &[]).await;
    }
    eventually(BACKGROUND, "200 comparisons", || comparisons(&g) == 200.0).await;
    let r = report(&g).await;
    let ep = "GET /users/{id}";
    assert_eq!(field(&r, ep, "body:/name").unwrap()["verdict"], "real");
    assert_eq!(field(&r, ep, "body:/name").unwrap()["kinds"][0][0], "value_changed");
    assert_eq!(field(&r, ep, "body:/beta").unwrap()["verdict"], "real");
    assert_eq!(field(&r, ep, "body:/beta").unwrap()["kinds"][0][0], "extra");
    assert_eq!(field(&r, ep, "body:/ts").unwrap()["verdict"], "noise");
    assert_eq!(field(&r, ep, "body:/rid").unwrap()["verdict"], "noise");
    assert!(field(&r, ep, "body:/id").is_none());
    assert!(field(&r, ep, "body:/tags").is_none());
    assert_eq!(metric(&g, "switchyard_comparisons_total", &[("result", "diff")]), 200.0);
    assert_eq!(
        metric(
            &g,
            "switchyard_shadow_requests_total",
            &[("backend", "old_twin"), ("outcome", "completed")]
        ),
        200.0
    );
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_random_field_is_noise_only_and_the_pair_counts_as_noise() {
    let old = Origin::start(user_origin("ann", false)).await;
    let twin = Origin::start(user_origin("ann", false)).await;
    let new = Origin::start(user_origin("ann", false)).await;
    let g = gateway(&format!(
        "{}shadow: {{ percent: 100 }}\n",
        backends_with_twin(&old, &new, &twin)
    ));
    let c = client();
    for i in 0..50 {
        get(&c, &format!("{}/users/{i}", proxy(&g)), &[]).await;
    }
    eventually(BACKGROUND, "50 comparisons", || comparisons(&g) == 50.0).await;
    assert_eq!(metric(&g, "switchyard_comparisons_total", &[("result", "noise")]), 50.0);
    assert_eq!(report(&g).await["headline"]["real_diffs"], 0);
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_twin_old_is_asked_twice_to_learn_its_noise() {
    let old = Origin::start(user_origin("ann", false)).await;
    let new = Origin::start(user_origin("anne", false)).await;
    let g = gateway(&format!(
        "{}shadow: {{ percent: 100 }}\ndiff: {{ noise: {{ repeat_percent: 100 }} }}\n",
        backends(&old, &new)
    ));
    let c = client();
    for i in 0..100 {
        get(&c, &format!("{}/users/{i}", proxy(&g)), &[]).await;
    }
    eventually(BACKGROUND, "100 comparisons", || comparisons(&g) == 100.0).await;
    let r = report(&g).await;
    assert_eq!(field(&r, "GET /users/{id}", "body:/ts").unwrap()["verdict"], "noise");
    assert_eq!(field(&r, "GET /users/{id}", "body:/name").unwrap()["verdict"], "real");
    // Old saw each request twice: once live, once as the repeat.
    assert_eq!(old.count(), 200);
    assert!(
        old.seen()
            .iter()
            .filter(|s| s.headers.contains_key("x-switchyard-shadow"))
            .count()
            == 100
    );
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn differently_compressed_answers_still_match() {
    let doc = serde_json::json!({"items": [1, 2, 3], "name": "kettle"}).to_string();
    let gz = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(doc.as_bytes()).unwrap();
        Bytes::from(e.finish().unwrap())
    };
    let zipped: Handler = Arc::new(move |_req| {
        let gz = gz.clone();
        Box::pin(async move {
            let mut r = Response::new(full(gz));
            r.headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            r.headers_mut().insert("content-encoding", "gzip".parse().unwrap());
            r
        })
    });
    let doc2 = doc.clone();
    let plain: Handler = Arc::new(move |_req| {
        let doc = doc2.clone();
        Box::pin(async move { json_response(200, serde_json::from_str(&doc).unwrap()) })
    });
    let (old, new) = (Origin::start(zipped).await, Origin::start(plain).await);
    let g = gateway(&format!("{}shadow: {{ percent: 100 }}\n", backends(&old, &new)));
    get(&client(), &format!("{}/x", proxy(&g)), &[]).await;
    eventually(BACKGROUND, "a comparison", || comparisons(&g) == 1.0).await;
    assert_eq!(metric(&g, "switchyard_comparisons_total", &[("result", "diff")]), 0.0);
    assert_eq!(
        metric(&g, "switchyard_comparisons_total", &[("result", "ignored")]),
        1.0,
        "only ignored headers differ"
    );
    stop(g).await;
}

fn hanging(secs: u64) -> Handler {
    Arc::new(move |_req| {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_secs(secs)).await;
            json_response(200, serde_json::json!({}))
        })
    })
}

/// The slowest of `n` live requests to `url`.
async fn slowest(url: &str, n: usize) -> Duration {
    let c = client();
    let mut slowest = Duration::ZERO;
    for _ in 0..n {
        let t = Instant::now();
        let a = get(&c, url, &[]).await;
        assert_eq!(a.status, 200);
        slowest = slowest.max(t.elapsed());
    }
    slowest
}

/// Every mirror hangs for 5 s: a live request that waited for its mirror
/// would take 5 s. The bound is 1 s, far from both that and from what a
/// busy machine adds, so no latency ratio (which load can break) is needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_shadow_backend_adds_no_latency_to_live_traffic() {
    let old = Origin::named("old").await;
    let new = Origin::start(hanging(5)).await;
    let mirrored = gateway(&format!(
        "{}shadow: {{ percent: 100, timeout: \"10s\" }}\n",
        backends(&old, &new)
    ));
    let with = slowest(&format!("{}/x", proxy(&mirrored)), 200).await;
    assert!(
        with < Duration::from_secs(1),
        "a live request waited {with:?} for the shadow"
    );
    eventually(
        Duration::from_secs(10),
        "every request mirrored to the hanging side",
        || new.count() == 200,
    )
    .await;
    assert_eq!(
        metric(
            &mirrored,
            "switchyard_shadow_requests_total",
            &[("backend", "new"), ("outcome", "dropped")]
        ),
        0.0
    );
    stop(mirrored).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrors_beyond_the_in_flight_cap_are_dropped_and_counted() {
    let old = Origin::named("old").await;
    let new = Origin::start(hanging(3)).await;
    let g = gateway(&format!(
        "{}shadow: {{ percent: 100, max_in_flight: 2 }}\n",
        backends(&old, &new)
    ));
    let c = client();
    for i in 0..10 {
        assert_eq!(get(&c, &format!("{}/x/{i}", proxy(&g)), &[]).await.status, 200);
    }
    assert_eq!(
        metric(
            &g,
            "switchyard_shadow_requests_total",
            &[("backend", "new"), ("outcome", "dropped")]
        ),
        8.0
    );
    eventually(BACKGROUND, "two mirrors in flight", || new.count() == 2).await;
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_timeouts_and_dead_shadows_are_counted_not_felt() {
    let old = Origin::named("old").await;
    let slow = Origin::start(hanging(3)).await;
    let g = gateway(&format!(
        "{}shadow: {{ percent: 100, timeout: \"200ms\" }}\n",
        backends(&old, &slow)
    ));
    assert_eq!(get(&client(), &format!("{}/x", proxy(&g)), &[]).await.status, 200);
    eventually(BACKGROUND, "a shadow timeout", || {
        metric(
            &g,
            "switchyard_shadow_requests_total",
            &[("backend", "new"), ("outcome", "timeout")],
        ) == 1.0
    })
    .await;
    stop(g).await;

    let refusing = Refusing::new();
    let dead = refusing.addr;
    let g = gateway(&format!(
        "backends:\n  old: {{ url: \"{}\" }}\n  new: {{ url: \"http://{dead}\" }}\nshadow: {{ percent: 100 }}\n",
        old.url()
    ));
    assert_eq!(get(&client(), &format!("{}/x", proxy(&g)), &[]).await.status, 200);
    eventually(BACKGROUND, "a shadow error", || {
        metric(
            &g,
            "switchyard_shadow_requests_total",
            &[("backend", "new"), ("outcome", "error")],
        ) == 1.0
    })
    .await;
    eventually(BACKGROUND, "the failed pair counted", || {
        metric(&g, "switchyard_comparisons_total", &[("result", "error")]) == 1.0
    })
    .await;
    // …and the report counts it too, under its endpoint.
    eventually(BACKGROUND, "the report counts the error", || {
        let c = g.analysis.collector.lock().unwrap();
        c.totals.error == 1 && c.endpoints["GET /x"].results.error == 1
    })
    .await;
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_cap_is_served_live_and_not_mirrored() {
    let counting: Handler = Arc::new(|req: Request<Incoming>| {
        Box::pin(async move {
            let n = req.into_body().collect().await.unwrap().to_bytes().len();
            json_response(200, serde_json::json!({ "got": n }))
        })
    });
    let (old, new) = (Origin::start(counting.clone()).await, Origin::start(counting).await);
    let g = gateway(&format!(
        "{}shadow: {{ percent: 100, methods: [POST], max_body_bytes: 1024 }}\n",
        backends(&old, &new)
    ));
    let c = client();
    let a = send(&c, Method::POST, &format!("{}/up", proxy(&g)), &[], vec![b'a'; 10_000]).await;
    assert_eq!(a.json()["got"], 10_000);
    assert_eq!(
        metric(
            &g,
            "switchyard_shadow_requests_total",
            &[("backend", "new"), ("outcome", "skipped_body")]
        ),
        1.0
    );

    // A chunked body (no length) that turns out too big: read ahead, then streamed on.
    let chunks: Vec<Result<hyper::body::Frame<Bytes>, std::convert::Infallible>> = (0..10)
        .map(|_| Ok(hyper::body::Frame::data(Bytes::from(vec![b'b'; 500]))))
        .collect();
    let body = BodyExt::boxed(http_body_util::StreamBody::new(futures_util::stream::iter(chunks)));
    let cc: hyper_util::client::legacy::Client<_, Body> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let resp = cc
        .request(Request::post(format!("{}/up", proxy(&g))).body(body).unwrap())
        .await
        .unwrap();
    let got: serde_json::Value = serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(got["got"], 5000);
    assert_eq!(
        metric(
            &g,
            "switchyard_shadow_requests_total",
            &[("backend", "new"), ("outcome", "skipped_body")]
        ),
        2.0
    );

    // A small body is mirrored whole.
    send(&c, Method::POST, &format!("{}/up", proxy(&g)), &[], vec![b'c'; 100]).await;
    eventually(BACKGROUND, "the small body mirrored", || new.count() == 1).await;
    eventually(BACKGROUND, "compared", || comparisons(&g) == 1.0).await;
    assert_eq!(metric(&g, "switchyard_comparisons_total", &[("result", "diff")]), 0.0);
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_client_abandons_is_not_compared() {
    let old = Origin::start(hanging(2)).await;
    let new = Origin::named("new").await;
    let g = gateway(&format!("{}shadow: {{ percent: 100 }}\n", backends(&old, &new)));
    let url = format!("{}/x", proxy(&g));
    let r = tokio::time::timeout(Duration::from_millis(300), get(&client(), &url, &[])).await;
    assert!(r.is_err(), "the client gave up");
    eventually(BACKGROUND, "the mirror counted as cancelled", || {
        metric(
            &g,
            "switchyard_shadow_requests_total",
            &[("backend", "new"), ("outcome", "cancelled")],
        ) == 1.0
    })
    .await;
    assert_eq!(comparisons(&g), 0.0);
    // Leaving is the client's doing: its request is stopped and counted so.
    assert_eq!(
        metric(&g, "switchyard_client_errors_total", &[("kind", "aborted")]),
        1.0
    );
    assert_eq!(metric(&g, "switchyard_upstream_errors_total", &[]), 0.0);
    stop(g).await;
}

/// A 204 (or a HEAD, or a gRPC trailers-only answer) has an empty body
/// hyper never polls; its comparison used to be lost as `cancelled`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_without_a_body_are_compared() {
    let empty = || {
        Arc::new(|_req: Request<Incoming>| {
            Box::pin(async move {
                let mut r = Response::new(full(""));
                *r.status_mut() = http::StatusCode::NO_CONTENT;
                r
            }) as std::pin::Pin<Box<dyn std::future::Future<Output = Response<Body>> + Send>>
        }) as Handler
    };
    let (old, new) = (Origin::start(empty()).await, Origin::start(empty()).await);
    // Mirrors run at the lowest CPU priority: on a busy machine they may
    // wait long for a core, which must not end them as timeouts here.
    let g = gateway(&format!(
        "{}shadow: {{ percent: 100, timeout: \"60s\" }}\n",
        backends(&old, &new)
    ));
    let c = client();
    for i in 0..5 {
        assert_eq!(get(&c, &format!("{}/empty/{i}", proxy(&g)), &[]).await.status, 204);
    }
    eventually(Duration::from_secs(60), "5 comparisons", || comparisons(&g) == 5.0).await;
    // Equal, or equal but for ignored headers (two `Date`s a second apart).
    let equal = metric(&g, "switchyard_comparisons_total", &[("result", "match")])
        + metric(&g, "switchyard_comparisons_total", &[("result", "ignored")]);
    assert_eq!(equal, 5.0);
    assert_eq!(
        metric(&g, "switchyard_shadow_requests_total", &[("outcome", "cancelled")]),
        0.0
    );
    stop(g).await;
}

/// A stopping gateway leaves what its analysis queue still holds once
/// `server.drain_timeout` has passed, counted as dropped comparisons: the
/// analysis runs at nice 19, and on a busy machine a full queue kept the
/// process alive for minutes after SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_gateway_stops_comparing_after_the_drain_timeout() {
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let g = gateway(&format!(
        "{}server: {{ drain_timeout: \"1s\" }}\nshadow: {{ percent: 100 }}\ndiff: {{ noise: {{ repeat_percent: 0 }} }}\n",
        backends(&old, &new)
    ));
    // The analysis is held up, as a starved thread would be: it waits for
    // the report's lock, held by a thread of the test's until told.
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let collector = g.analysis.collector.clone();
    let holder = std::thread::spawn(move || {
        let _held = collector.lock().unwrap();
        held_tx.send(()).unwrap();
        let _ = release_rx.recv();
    });
    held_rx.recv().unwrap();
    let c = client();
    for i in 0..10 {
        get(&c, &format!("{}/m/{i}", proxy(&g)), &[]).await;
    }
    let ended = |g: &switchyard::gateway::Gateway| {
        metric(
            g,
            "switchyard_shadow_requests_total",
            &[("backend", "new"), ("outcome", "completed")],
        )
    };
    eventually(BACKGROUND, "10 mirrors answered", || ended(&g) == 10.0).await;
    assert_eq!(comparisons(&g), 0.0, "nothing compared while the analysis is held");

    let stopping = Instant::now();
    g.shutdown();
    // The behaviour under test is the deadline itself: let it pass while
    // the analysis is still held.
    tokio::time::sleep_until((stopping + Duration::from_secs(1)).into()).await;
    release_tx.send(()).unwrap();
    holder.join().unwrap();
    let metrics = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::task::spawn_blocking(move || {
            let m = g.metrics.clone();
            g.join();
            m
        }),
    )
    .await
    .expect("the gateway stops once the analysis gives up its queue")
    .unwrap();
    let all = metric_in(&metrics, "switchyard_comparisons_total", &[]);
    let dropped = metric_in(&metrics, "switchyard_comparisons_total", &[("result", "dropped")]);
    let compared = all - dropped;
    // The pair the thread had taken before it was held is compared.
    assert!(compared <= 1.0, "compared {compared} after the drain timeout");
    assert_eq!(compared + dropped, 10.0, "every pair accounted for");
}
