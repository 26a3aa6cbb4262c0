//! The demo's built-in origins: a small shop API served three times, as
//! `old`, `old_twin` (the same code) and `new` (with planted differences).
//!
//! Planted in `new`, each realistic:
//! - `GET /users/{id}`: the field `user_name` is renamed `username`;
//! - `GET /users/{id}/orders`: `total` changes from a number to a string ("12.50");
//! - `GET /orders/{id}`: 404 for ids ending in 0, where old answers 200;
//! - `GET /search`: `tags` come in another order (declared unordered: no diff),
//!   an extra field `next_cursor`, and answers 30 % slower.
//!
//! Every answer of every origin carries `meta.generated_at` and
//! `meta.trace_id`, which differ on every response: noise the twin cancels.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    Old,
    Twin,
    New,
}

const NAMES: &[&str] = &[
    "ada", "grace", "linus", "barbara", "ken", "margaret", "dennis", "radia", "edsger", "frances",
];
const PRODUCTS: &[&str] = &["kettle", "lamp", "chair", "desk", "mug", "plant", "clock", "rug"];

/// Base latency of a search, in microseconds; new adds 30 %.
pub const SEARCH_LATENCY_US: u64 = 10_000;

/// The last `generated_at` handed out, in nanoseconds: two answers made in
/// the same microsecond (old and its twin, asked at once) still differ, as
/// the noise they stand for does.
static LAST_GENERATED_NS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn meta() -> Value {
    use std::sync::atomic::Ordering;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut last = LAST_GENERATED_NS.load(Ordering::Relaxed);
    let ns = loop {
        let next = now.max(last + 1);
        match LAST_GENERATED_NS.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => break next,
            Err(seen) => last = seen,
        }
    };
    json!({
        "generated_at": format!("{}.{:09}", ns / 1_000_000_000, ns % 1_000_000_000),
        "trace_id": format!("{:016x}", rand::random::<u64>()),
    })
}

fn id_from(segment: Option<&str>) -> Option<u64> {
    segment.and_then(|s| s.parse().ok())
}

fn user(id: u64, flavor: Flavor) -> Value {
    let name = NAMES[(id % NAMES.len() as u64) as usize];
    let mut v = json!({
        "id": id,
        "email": format!("{name}{id}@example.com"),
        "plan": if id % 3 == 0 { "pro" } else { "free" },
        "meta": meta(),
    });
    let key = if flavor == Flavor::New { "username" } else { "user_name" };
    v[key] = json!(format!("{name}{id}"));
    v
}

fn orders_of(user: u64, flavor: Flavor) -> Value {
    let orders: Vec<Value> = (0..(user % 3 + 1))
        .map(|i| {
            let cents = 500 + (user * 37 + i * 113) % 9000;
            let total = if flavor == Flavor::New {
                json!(format!("{}.{:02}", cents / 100, cents % 100))
            } else {
                json!(cents as f64 / 100.0)
            };
            json!({ "id": user * 100 + i, "total": total, "currency": "EUR" })
        })
        .collect();
    json!({ "user": user, "orders": orders, "meta": meta() })
}

fn order(id: u64, flavor: Flavor) -> (StatusCode, Value) {
    if flavor == Flavor::New && id % 10 == 0 {
        return (
            StatusCode::NOT_FOUND,
            json!({ "error": "order not found", "meta": meta() }),
        );
    }
    let items: Vec<Value> = (0..(id % 4 + 1))
        .map(|i| json!({ "sku": PRODUCTS[((id + i) % PRODUCTS.len() as u64) as usize], "qty": i + 1 }))
        .collect();
    (
        StatusCode::OK,
        json!({ "id": id, "status": if id % 2 == 0 { "shipped" } else { "processing" }, "items": items, "meta": meta() }),
    )
}

fn search(q: &str, flavor: Flavor) -> Value {
    let results: Vec<Value> = PRODUCTS
        .iter()
        .filter(|p| p.contains(q) || q.is_empty())
        .map(|p| json!({ "name": p, "price": (p.len() as f64) * 3.5 }))
        .collect();
    let mut tags = vec!["home", "gift", "sale"];
    if flavor == Flavor::New {
        tags.reverse();
    }
    let mut v = json!({ "query": q, "results": results, "tags": tags, "meta": meta() });
    if flavor == Flavor::New {
        v["next_cursor"] = Value::Null;
    }
    v
}

async fn answer(req: Request<Incoming>, flavor: Flavor) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (status, body) = match parts.as_slice() {
        ["health"] => (StatusCode::OK, json!({ "status": "ok", "meta": meta() })),
        ["users", id] => match id_from(Some(id)) {
            Some(id) => (StatusCode::OK, user(id, flavor)),
            None => (
                StatusCode::BAD_REQUEST,
                json!({ "error": "bad user id", "meta": meta() }),
            ),
        },
        ["users", id, "orders"] => match id_from(Some(id)) {
            Some(id) => (StatusCode::OK, orders_of(id, flavor)),
            None => (
                StatusCode::BAD_REQUEST,
                json!({ "error": "bad user id", "meta": meta() }),
            ),
        },
        ["orders", id] => match id_from(Some(id)) {
            Some(id) => order(id, flavor),
            None => (
                StatusCode::BAD_REQUEST,
                json!({ "error": "bad order id", "meta": meta() }),
            ),
        },
        ["search"] => {
            let q = crate::split::query_param(&query, "q").unwrap_or("").to_string();
            let us = if flavor == Flavor::New {
                SEARCH_LATENCY_US * 13 / 10
            } else {
                SEARCH_LATENCY_US
            };
            // Jitter of ±10 % so the distributions are distributions.
            let jitter = rand::random::<f64>() * 0.2 + 0.9;
            tokio::time::sleep(Duration::from_micros((us as f64 * jitter) as u64)).await;
            (StatusCode::OK, search(&q, flavor))
        }
        _ => (
            StatusCode::NOT_FOUND,
            json!({ "error": "no such endpoint", "meta": meta() }),
        ),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

/// Serves one origin on `addr` until `stop`; returns its bound address.
pub async fn start(flavor: Flavor, addr: SocketAddr, stop: CancellationToken) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                _ = stop.cancelled() => return,
                a = listener.accept() => match a {
                    Ok(a) => a,
                    Err(_) => continue,
                },
            };
            let _ = stream.set_nodelay(true);
            let stop = stop.clone();
            tokio::spawn(async move {
                let conn = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service_fn(move |req| answer(req, flavor)))
                    .into_owned();
                tokio::select! {
                    _ = conn => {}
                    _ = stop.cancelled() => {}
                }
            });
        }
    });
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_and_twin_agree_but_for_meta() {
        let mut a = user(17, Flavor::Old);
        let mut b = user(17, Flavor::Twin);
        a["meta"] = Value::Null;
        b["meta"] = Value::Null;
        assert_eq!(a, b);
    }

    #[test]
    fn new_plants_its_differences() {
        assert!(user(1, Flavor::New).get("username").is_some());
        assert!(user(1, Flavor::New).get("user_name").is_none());
        assert!(orders_of(2, Flavor::New)["orders"][0]["total"].is_string());
        assert!(orders_of(2, Flavor::Old)["orders"][0]["total"].is_number());
        assert_eq!(order(30, Flavor::New).0, StatusCode::NOT_FOUND);
        assert_eq!(order(31, Flavor::New).0, StatusCode::OK);
        assert_eq!(order(30, Flavor::Old).0, StatusCode::OK);
    }
}
