//! The demo's traffic generator: many distinct users hitting a mix of
//! endpoints through the gateway, at a steady rate, with a few workers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Counts the generator keeps as it goes.
#[derive(Default)]
pub struct Progress {
    pub sent: AtomicU64,
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    pub served_new: AtomicU64,
}

/// What to send.
#[derive(Clone, Debug)]
pub struct Plan {
    pub proxy: String,
    /// Stop after this many requests (None: until the deadline or forever).
    pub requests: Option<u64>,
    pub deadline: Option<Instant>,
    /// Requests per second across all workers.
    pub rate: u64,
    pub users: u64,
    pub workers: usize,
}

fn pick_target(n: u64) -> String {
    let r = rand::random::<u64>();
    match n % 10 {
        0 => "/health".into(),
        1..=3 => format!("/users/{}", r % 500),
        4 | 5 => format!("/users/{}/orders", r % 500),
        6..=8 => format!("/orders/{}", r % 1000),
        _ => format!("/search?q={}", ["", "la", "ch", "mu"][(r % 4) as usize]),
    }
}

/// Runs the plan to its end.
pub async fn run(plan: Plan, progress: Arc<Progress>) {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(64)
        .build_http();
    let counter = Arc::new(AtomicU64::new(0));
    let per_worker = Duration::from_secs_f64(plan.workers as f64 / plan.rate.max(1) as f64);
    let mut tasks = Vec::new();
    for _ in 0..plan.workers {
        let (client, counter, progress, plan) = (client.clone(), counter.clone(), progress.clone(), plan.clone());
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(per_worker);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let n = counter.fetch_add(1, Ordering::Relaxed);
                if plan.requests.is_some_and(|max| n >= max) || plan.deadline.is_some_and(|d| Instant::now() >= d) {
                    return;
                }
                let user = rand::random::<u64>() % plan.users;
                let req = Request::get(format!("{}{}", plan.proxy, pick_target(n)))
                    .header("x-user-id", format!("user-{user}"))
                    .body(Empty::new());
                let Ok(req) = req else { continue };
                progress.sent.fetch_add(1, Ordering::Relaxed);
                match client.request(req).await {
                    Ok(resp) => {
                        if resp.headers().get("x-switchyard-served-by").is_some_and(|v| v == "new") {
                            progress.served_new.fetch_add(1, Ordering::Relaxed);
                        }
                        let _ = resp.into_body().collect().await;
                        progress.ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        progress.failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}
