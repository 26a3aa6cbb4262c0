//! Webhooks against real hook servers on loopback: notifications (JSON,
//! signed, and Slack's format) and gates the plan waits on.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use support::*;

/// One call a hook received: its path, `signature|raw body` when signed,
/// and the body as JSON.
type Call = (String, Option<String>, Value);

/// A hook server: records every call (path, signature, body) and answers
/// with the status it is set to.
struct Hook {
    addr: SocketAddr,
    calls: Arc<Mutex<Vec<Call>>>,
    status: Arc<AtomicU16>,
}

impl Hook {
    async fn start() -> Hook {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(AtomicU16::new(200));
        let (c, st) = (calls.clone(), status.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (c, st) = (c.clone(), st.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (c, st) = (c.clone(), st.clone());
                        async move {
                            let path = req.uri().path().to_string();
                            let sig = req
                                .headers()
                                .get("x-switchyard-signature")
                                .map(|v| v.to_str().unwrap().to_string());
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                            // The signature with the raw body it signs.
                            let signed = sig.map(|s| format!("{s}|{}", String::from_utf8_lossy(&body)));
                            c.lock().unwrap().push((path, signed, v));
                            let code = st.load(Ordering::SeqCst);
                            let mut r = Response::new(Full::new(Bytes::from(if code == 200 {
                                "ok"
                            } else {
                                "QA has not signed off"
                            })));
                            *r.status_mut() = http::StatusCode::from_u16(code).unwrap();
                            Ok::<_, Infallible>(r)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Hook { addr, calls, status }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn calls(&self, path: &str) -> Vec<(Option<String>, Value)> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _, _)| p == path)
            .map(|(_, s, v)| (s.clone(), v.clone()))
            .collect()
    }
}

async fn call(g: &switchyard::gateway::Gateway, method: Method, path: &str, body: Value) -> Answer {
    send(
        &client(),
        method,
        &format!("{}{path}", admin(g)),
        &[("content-type", "application/json")],
        body.to_string(),
    )
    .await
}

async fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_are_notified_signed_and_in_slack_format() {
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let hook = Hook::start().await;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("hook.secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    let g = gateway(&format!(
        "{}rollout:\n  webhooks:\n    - {{ name: audit, url: \"{}\", events: [changed], secret_file: \"{}\" }}\n    - {{ name: chat, url: \"{}\", events: [rolled_back], format: slack }}\n",
        backends(&old, &new),
        hook.url("/audit"),
        secret.display(),
        hook.url("/chat")
    ));
    assert_eq!(
        call(
            &g,
            Method::PUT,
            "/rollout",
            json!({"percent": 5, "who": "ana", "reason": "canary"})
        )
        .await
        .status,
        200
    );
    assert_eq!(
        call(&g, Method::POST, "/rollback", json!({"who": "ana", "reason": "errors"}))
            .await
            .status,
        200
    );

    let audit = until("two signed notifications", || {
        let c = hook.calls("/audit");
        (c.len() == 2).then_some(c)
    })
    .await;
    let (sig0, first) = &audit[0];
    assert_eq!(first["event"], "changed", "{first:#}");
    assert_eq!((first["from"].clone(), first["to"].clone()), (json!(0.0), json!(5.0)));
    assert_eq!(
        (first["who"].as_str(), first["why"].as_str()),
        (Some("ana"), Some("canary"))
    );
    assert_eq!(first["phase"], "progressing");
    assert!(
        first["at"].as_u64().unwrap() > 0 && first["checks"].is_array(),
        "{first:#}"
    );
    assert!(first["links"]["status"].as_str().unwrap().ends_with("/status"));
    // The signature is HMAC-SHA256 of the exact body with the secret.
    let (sig, raw) = sig0.as_ref().expect("signed").split_once('|').unwrap();
    assert_eq!(
        sig,
        switchyard::rollout::webhooks::message::signature(b"s3cret", raw.as_bytes())
    );
    assert!(audit[1].0.is_some(), "every call of a hook with a secret is signed");
    assert_eq!(audit[1].1["event"], "rolled_back", "`changed` hears every change");

    let chat = until("a Slack message", || {
        let c = hook.calls("/chat");
        (c.len() == 1).then_some(c)
    })
    .await;
    let msg = &chat[0].1;
    assert!(msg["text"].as_str().unwrap().contains("Rolled back"), "{msg:#}");
    assert!(msg["text"].as_str().unwrap().contains("by ana: errors"), "{msg:#}");
    assert_eq!(msg["blocks"][0]["type"], "section");
    assert!(msg["blocks"][1]["elements"][0]["text"]
        .as_str()
        .unwrap()
        .contains("/report|diff report>"));
    assert!(chat[0].0.is_none(), "no secret, no signature");
    until("the deliveries counted", || {
        (metric(
            &g,
            "switchyard_webhook_deliveries_total",
            &[("name", "audit"), ("result", "delivered")],
        ) == 2.0)
            .then_some(())
    })
    .await;
    g.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plan_waits_on_a_gate_until_it_agrees_and_force_passes_it() {
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let gate = Hook::start().await;
    gate.status.store(403, Ordering::SeqCst);
    let g = gateway(&format!(
        "{}rollout:\n  steps: [1, 50, 100]\n  webhooks:\n    - {{ name: qa, url: \"{}\", events: [pre_step, confirm_promotion] }}\n    - {{ name: audit, url: \"{}\", events: [gate_waiting] }}\n",
        backends(&old, &new),
        gate.url("/gate"),
        gate.url("/audit")
    ));
    let a = call(&g, Method::POST, "/step", json!({"who": "ana"})).await;
    assert_eq!(a.status, 409, "{}", a.text());
    assert!(
        a.text().contains("waiting on gate qa (pre_step) before 1%"),
        "{}",
        a.text()
    );
    assert!(
        a.text().contains("QA has not signed off"),
        "the hook's answer: {}",
        a.text()
    );
    let s = get(&client(), &format!("{}/status", admin(&g)), &[]).await.json();
    assert_eq!(s["percent"], json!(0.0), "nothing moved");
    assert_eq!(s["gates"]["waiting"]["gate"], "qa", "{s:#}");
    let asked = &gate.calls("/gate")[0].1;
    assert_eq!(
        (asked["event"].as_str(), asked["to"].as_f64()),
        (Some("pre_step"), Some(1.0))
    );
    until("gate_waiting notified", || {
        (!gate.calls("/audit").is_empty()).then_some(())
    })
    .await;

    gate.status.store(200, Ordering::SeqCst);
    let a = call(&g, Method::POST, "/step", json!({"who": "ana"})).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(a.json()["gates"]["waiting"].is_null());

    // Promotion asks both gates; a refusal is passed only with force.
    gate.status.store(403, Ordering::SeqCst);
    let a = call(&g, Method::PUT, "/rollout", json!({"percent": 100})).await;
    assert_eq!(a.status, 409, "{}", a.text());
    let a = call(
        &g,
        Method::PUT,
        "/rollout",
        json!({"percent": 100, "who": "lead", "force": true}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let change = &a.json()["last_change"];
    assert!(
        change["why"].as_str().unwrap().ends_with("(gates passed by --force)"),
        "{change}"
    );
    // A rollback is never gated.
    assert_eq!(call(&g, Method::POST, "/rollback", json!({})).await.status, 200);
    g.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_asks_the_gate_at_every_look_and_steps_once_it_agrees() {
    let (old, new) = (Origin::named("same").await, Origin::named("same").await);
    let gate = Hook::start().await;
    gate.status.store(403, Ordering::SeqCst);
    let g = gateway(&format!(
        "{}rollout:\n  sticky: none\n  steps: [10, 50, 100]\n  step_every: \"200ms\"\n  guard: {{ interval: \"200ms\", min_requests: 20 }}\n  webhooks:\n    - {{ name: qa, url: \"{}\", events: [pre_step] }}\n",
        backends(&old, &new),
        gate.url("/gate")
    ));
    gate.status.store(200, Ordering::SeqCst);
    g.controller
        .step(&switchyard::rollout::controller::Actor::new("t", "start"))
        .unwrap();
    gate.status.store(403, Ordering::SeqCst);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let url = format!("{}/x", proxy(&g));
    let (s2, c) = (stop.clone(), client());
    let traffic = tokio::spawn(async move {
        while !s2.load(Ordering::Relaxed) {
            let _ = get(&c, &url, &[]).await;
        }
    });
    // Refused at several looks, said so, and the plan holds at 10 %.
    until("the guard asked the gate at several looks", || {
        (gate.calls("/gate").len() >= 3).then_some(())
    })
    .await;
    let s = get(&client(), &format!("{}/status", admin(&g)), &[]).await.json();
    assert_eq!(s["percent"], json!(10.0), "{s:#}");
    assert!(
        s["guard"]["holding"]
            .as_str()
            .is_some_and(|h| h.starts_with("waiting on gate qa")),
        "{s:#}"
    );
    gate.status.store(200, Ordering::SeqCst);
    until("the plan moves once the gate agrees", || {
        (g.controller.state().percent >= 50.0).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let _ = traffic.await;
    g.shutdown();
}
