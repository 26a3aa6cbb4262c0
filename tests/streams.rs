//! Long answers and trailers: server-sent events reach the client event by
//! event and are never compared; trailers cross the gateway both ways,
//! over HTTP/1.1 backends too.

mod support;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use support::*;
use tokio::sync::Notify;

#[tokio::test]
async fn server_sent_events_arrive_one_by_one_and_are_not_compared() {
    let (old_go, new_go) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let old = Origin::start(events(old_go.clone())).await;
    let new = Origin::start(events(new_go.clone())).await;
    // No noise baseline: a second request to old would wait on the same
    // signal as the live one.
    let g = gateway(&format!(
        "{}shadow: {{ percent: 100 }}\ndiff: {{ noise: {{ repeat_percent: 0 }} }}\n",
        backends(&old, &new)
    ));
    let resp = client()
        .request(
            Request::get(format!("{}/events", proxy(&g)))
                .body(Default::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    // The backend sends the second event only when told: a gateway that
    // buffered the stream would never hand over the first.
    let first = tokio::time::timeout(Duration::from_secs(10), body.frame())
        .await
        .expect("the first event arrives while the stream is open")
        .unwrap()
        .unwrap();
    assert_eq!(first.into_data().unwrap(), "data: first\n\n");
    old_go.notify_one();
    let second = tokio::time::timeout(Duration::from_secs(10), body.frame())
        .await
        .expect("the second event follows the signal")
        .unwrap()
        .unwrap();
    assert_eq!(second.into_data().unwrap(), "data: second\n\n");
    new_go.notify_one();
    eventually(
        Duration::from_secs(10),
        "the mirror counted as a skipped stream",
        || {
            metric(
                &g,
                "switchyard_shadow_requests_total",
                &[("backend", "new"), ("outcome", "skipped_stream")],
            ) == 1.0
        },
    )
    .await;
    assert_eq!(metric(&g, "switchyard_comparisons_total", &[]), 0.0);
    stop(g).await;
}

type TrailerClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    http_body_util::combinators::BoxBody<Bytes, Infallible>,
>;

fn with_trailers(data: &'static str, trailers: HeaderMap) -> http_body_util::combinators::BoxBody<Bytes, Infallible> {
    let frames = vec![
        Ok::<_, Infallible>(Frame::data(Bytes::from(data))),
        Ok(Frame::trailers(trailers)),
    ];
    StreamBody::new(futures_util::stream::iter(frames)).boxed()
}

fn trailers(name: &'static str, value: &'static str) -> HeaderMap {
    let mut t = HeaderMap::new();
    t.insert(name, HeaderValue::from_static(value));
    t
}

#[tokio::test]
async fn trailers_cross_an_http1_backend_both_ways() {
    // The backend (HTTP/1.1, chunked both ways) echoes the request's
    // trailer in its own.
    let origin = Origin::start(Arc::new(|req: Request<hyper::body::Incoming>| {
        Box::pin(async move {
            let collected = req.into_body().collect().await.unwrap();
            let got = collected
                .trailers()
                .and_then(|t| t.get("x-checksum"))
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_else(|| "none".into());
            let mut out = HeaderMap::new();
            out.insert("x-echoed", HeaderValue::from_str(&got).unwrap());
            let mut r = Response::new(with_trailers("body", out));
            r.headers_mut().insert("trailer", HeaderValue::from_static("x-echoed"));
            r
        })
    }))
    .await;
    let g = gateway(&backends(&origin, &origin));
    let c: TrailerClient = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let req = Request::post(format!("{}/upload", proxy(&g)))
        .header("te", "trailers")
        .body(with_trailers("payload", trailers("x-checksum", "abc123")))
        .unwrap();
    let resp = c.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let collected = resp.into_body().collect().await.unwrap();
    let t = collected
        .trailers()
        .cloned()
        .expect("the response's trailers reach the client");
    assert_eq!(t["x-echoed"], "abc123", "the request's trailer reached the backend");
    assert_eq!(collected.to_bytes(), "body");
    assert_eq!(origin.seen()[0].headers["te"], "trailers", "TE: trailers is passed on");
    stop(g).await;
}
