//! Rollout control on loopback: the admin API, its auth and input checks,
//! instant rollback under load, the step plan, reload, and the guard.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Method, Request};
use hyper::body::Incoming;
use support::*;
use switchyard::gateway::Gateway;
use switchyard::rollout::controller::Actor;

async fn status(g: &Gateway) -> serde_json::Value {
    get(&client(), &format!("{}/status", admin(g)), &[]).await.json()
}

async fn call(g: &Gateway, method: Method, path: &str, body: &str, token: Option<&str>) -> Answer {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("authorization", a.as_str()));
    }
    send(
        &client(),
        method,
        &format!("{}{path}", admin(g)),
        &headers,
        body.to_string(),
    )
    .await
}

const TOKEN: &str = "correct-horse-battery";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutations_need_the_bearer_token() {
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let g = gateway(&format!(
        "listen: \"127.0.0.1:0\"\nadmin: {{ listen: \"127.0.0.1:0\", token: \"{TOKEN}\" }}\n{}",
        backends(&old, &new)
    ));
    for (method, path, body) in [
        (Method::PUT, "/rollout", "{\"percent\": 50}"),
        (Method::POST, "/rollback", ""),
        (Method::POST, "/step", ""),
        (Method::POST, "/promote", ""),
        (Method::POST, "/pause", ""),
        (Method::POST, "/resume", ""),
        (Method::POST, "/reload", ""),
    ] {
        let a = call(&g, method.clone(), path, body, None).await;
        assert_eq!(a.status, 401, "{method} {path} without a token");
        assert!(a.json()["error"].as_str().unwrap().contains("Bearer"));
        let a = call(&g, method.clone(), path, body, Some("wrong-token-xxxx")).await;
        assert_eq!(a.status, 401, "{method} {path} with a wrong token");
    }
    assert_eq!(status(&g).await["percent"], 0.0, "nothing changed");
    let a = call(&g, Method::PUT, "/rollout", "{\"percent\": 50}", Some(TOKEN)).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["percent"], 50.0);
    // Reads are open.
    assert_eq!(get(&client(), &format!("{}/metrics", admin(&g)), &[]).await.status, 200);
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_changes_nothing() {
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let g = gateway(&backends(&old, &new));
    assert_eq!(
        call(&g, Method::PUT, "/rollout", "{\"percent\": 5}", None).await.status,
        200
    );
    // The guard begins its test of the new step on its next run, which may
    // come after this read: the state compared at the end is the one after.
    let deadline = Instant::now() + Duration::from_secs(10);
    let before = loop {
        let s = status(&g).await;
        if !s["guard"]["test"].is_null() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the guard never began testing the 5 % step: {s}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let huge = format!("{{\"percent\": 5, \"reason\": \"{}\"}}", "x".repeat(70_000));
    let cases: Vec<(&str, &str)> = vec![
        ("{\"percent\": 101}", "percent must be a number from 0 to 100, got 101"),
        (
            "{\"percent\": -0.5}",
            "percent must be a number from 0 to 100, got -0.5",
        ),
        (
            "{\"percent\": \"25\"}",
            "invalid JSON body: invalid type: string \"25\", expected f64",
        ),
        ("{\"percent\": NaN}", "invalid JSON body: expected value"),
        ("{\"percent\": 1e999}", "invalid JSON body"),
        ("{\"percent\": 5", "invalid JSON body: EOF while parsing an object"),
        (
            "{\"percent\": 5, \"percnt\": 6}",
            "invalid JSON body: unknown field `percnt`",
        ),
        ("{}", "invalid JSON body: missing field `percent`"),
        ("", "invalid JSON body: EOF while parsing a value"),
        ("[25]", "invalid JSON body: expected an object"),
        (&huge, "request body is larger than 65536 bytes"),
    ];
    for (body, want) in cases {
        let a = call(&g, Method::PUT, "/rollout", body, None).await;
        assert_eq!(a.status, 400, "{body:.60}");
        let msg = a.json()["error"].as_str().unwrap().to_string();
        assert!(msg.starts_with(want), "{body:.60}: got {msg:?}, want {want:?}");
    }
    let a = call(&g, Method::POST, "/rollback", "{\"who\": 7}", None).await;
    assert_eq!(a.status, 400);
    let a = call(&g, Method::GET, "/rollout", "", None).await;
    assert_eq!(a.status, 405);
    let a = call(&g, Method::GET, "/nope", "", None).await;
    assert_eq!(a.status, 404);
    assert_eq!(a.json()["error"], "no admin endpoint GET /nope");
    assert_eq!(status(&g).await, before, "state is exactly as before");
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_after_a_rollback_reply_is_served_by_old_under_load() {
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let dir = tempfile::tempdir().unwrap();
    let g = gateway(&format!(
        "{}rollout: {{ percent: 100, state_file: \"{}\" }}\n",
        backends(&old, &new),
        dir.path().join("state.json").display()
    ));
    let url = format!("{}/x", proxy(&g));
    // Background load on both sides all along.
    let running = Arc::new(AtomicBool::new(true));
    let served = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (running, served, url) = (running.clone(), served.clone(), url.clone());
        load.push(tokio::spawn(async move {
            let c = client();
            while running.load(Ordering::Relaxed) {
                let a = get(&c, &url, &[]).await;
                assert_eq!(a.status, 200);
                served.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let c = client();
    let admin_url = admin(&g);
    for i in 0..1000 {
        let a = send(
            &c,
            Method::PUT,
            &format!("{admin_url}/rollout"),
            &[("content-type", "application/json")],
            "{\"percent\": 100}",
        )
        .await;
        assert_eq!(a.status, 200);
        let a = send(&c, Method::POST, &format!("{admin_url}/rollback"), &[], "").await;
        assert_eq!(a.status, 200);
        let next = get(&c, &url, &[]).await;
        assert_eq!(next.header("x-switchyard-served-by"), Some("old"), "repetition {i}");
    }
    running.store(false, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    assert!(served.load(Ordering::Relaxed) > 100, "the background load ran");
    assert_eq!(
        metric(&g, "switchyard_rollbacks_total", &[("reason", "manual")]),
        1000.0
    );
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("state.json")).unwrap()).unwrap();
    assert_eq!(saved["phase"], "rolled_back");
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_step_plan_through_the_api() {
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let g = gateway(&format!(
        "{}rollout: {{ steps: [1, 5, 25, 50, 100] }}\n",
        backends(&old, &new)
    ));
    assert_eq!(status(&g).await["phase"], "idle");
    let mut seen = Vec::new();
    for _ in 0..5 {
        let a = call(
            &g,
            Method::POST,
            "/step",
            "{\"who\": \"ana\", \"reason\": \"dashboards green\"}",
            None,
        )
        .await;
        assert_eq!(a.status, 200);
        let s = a.json();
        seen.push((s["percent"].as_f64().unwrap(), s["phase"].as_str().unwrap().to_string()));
        assert_eq!(s["last_change"]["who"], "ana");
        assert_eq!(s["last_change"]["why"], "dashboards green");
    }
    assert_eq!(
        seen,
        vec![
            (1.0, "progressing".to_string()),
            (5.0, "progressing".into()),
            (25.0, "progressing".into()),
            (50.0, "progressing".into()),
            (100.0, "promoted".into())
        ]
    );
    let a = call(&g, Method::POST, "/step", "", None).await;
    assert_eq!(a.status, 409);
    assert_eq!(a.json()["error"], "already at the last step (100%)");

    call(&g, Method::PUT, "/rollout", "{\"percent\": 25}", None).await;
    assert_eq!(
        call(&g, Method::POST, "/pause", "", None).await.json()["phase"],
        "paused"
    );
    assert_eq!(status(&g).await["paused"], true);
    assert_eq!(call(&g, Method::POST, "/pause", "", None).await.status, 409);
    assert_eq!(
        call(&g, Method::POST, "/resume", "", None).await.json()["phase"],
        "progressing"
    );
    let s = call(&g, Method::POST, "/promote", "", None).await.json();
    assert_eq!(
        (s["percent"].as_f64(), s["phase"].as_str()),
        (Some(100.0), Some("promoted"))
    );
    let s = call(&g, Method::POST, "/rollback", "{\"reason\": \"pager\"}", None)
        .await
        .json();
    assert_eq!(
        (s["percent"].as_f64(), s["phase"].as_str()),
        (Some(0.0), Some("rolled_back"))
    );
    assert_eq!(s["last_change"]["why"], "pager");
    assert_eq!(metric(&g, "switchyard_rollout_phase", &[("phase", "rolled_back")]), 1.0);
    assert_eq!(metric(&g, "switchyard_rollout_phase", &[("phase", "promoted")]), 0.0);
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_a_good_config_and_keeps_the_old_one_on_errors() {
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchyard.yaml");
    let base = format!(
        "listen: \"127.0.0.1:0\"\nadmin: {{ listen: \"127.0.0.1:0\" }}\n{}",
        backends(&old, &new)
    );
    std::fs::write(&path, &base).unwrap();
    let cfg = switchyard::config::Config::load(&path).unwrap();
    let g = Gateway::start(
        cfg,
        switchyard::gateway::Options {
            reset_state: false,
            config_path: Some(path.clone()),
        },
    )
    .unwrap();
    let c = client();
    g.controller
        .set_percent(100.0, &switchyard::rollout::controller::Actor::new("t", "t"))
        .unwrap();
    // A keep-alive connection opened before the reload…
    assert_eq!(
        get(&c, &format!("{}/pay/1", proxy(&g)), &[]).await.json()["backend"],
        "new"
    );

    std::fs::write(
        &path,
        format!("{base}routes:\n  - name: pay\n    match: {{ path_prefix: /pay }}\n    rollout: {{ percent: 0 }}\n"),
    )
    .unwrap();
    let a = call(&g, Method::POST, "/reload", "", None).await;
    assert_eq!(a.status, 200, "{}", a.text());
    // …keeps working, under the new routes.
    assert_eq!(
        get(&c, &format!("{}/pay/1", proxy(&g)), &[]).await.json()["backend"],
        "old"
    );
    assert_eq!(
        get(&c, &format!("{}/other", proxy(&g)), &[]).await.json()["backend"],
        "new"
    );

    std::fs::write(&path, format!("{base}rollout: {{ percnt: 5 }}\n")).unwrap();
    let a = call(&g, Method::POST, "/reload", "", None).await;
    assert_eq!(a.status, 400);
    let j = a.json();
    assert!(
        j["details"][0]
            .as_str()
            .unwrap()
            .contains("rollout.percnt: unknown field `percnt`"),
        "{j}"
    );
    assert_eq!(
        get(&c, &format!("{}/pay/1", proxy(&g)), &[]).await.json()["backend"],
        "old",
        "old config in force"
    );
    assert_eq!(
        metric(&g, "switchyard_config_reloads_total", &[("result", "rejected")]),
        1.0
    );
    assert_eq!(
        metric(&g, "switchyard_config_reloads_total", &[("result", "applied")]),
        1.0
    );
    // The rollout state survived both reloads.
    assert_eq!(status(&g).await["percent"], 100.0);
    stop(g).await;
}

// --- the guard ---------------------------------------------------------------

/// An origin that sleeps `ms` and fails one request in `fail_every`; its
/// body carries `field` (the same on both sides unless a test wants a diff).
fn behaving(ms: u64, fail_every: u64, field: &'static str) -> Handler {
    let n = Arc::new(AtomicU64::new(0));
    Arc::new(move |_req: Request<Incoming>| {
        let i = n.fetch_add(1, Ordering::Relaxed);
        Box::pin(async move {
            if ms > 0 {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            if fail_every > 0 && i % fail_every == 0 {
                return json_response(500, serde_json::json!({"error": "boom"}));
            }
            json_response(200, serde_json::json!({"kind": "item", "value": field}))
        })
    })
}

/// Sends steady random-user traffic until `stop` is set.
fn traffic(url: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let c = client();
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (c, url, stop) = (c.clone(), url.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let _ = c
                        .request(
                            Request::get(&url)
                                .body(http_body_util::Full::new(bytes::Bytes::new()))
                                .unwrap(),
                        )
                        .await;
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    })
}

fn guard_config(old: &Origin, new: &Origin, extra: &str) -> String {
    guard_config_with(old, new, "", extra)
}

/// As [`guard_config`], with more keys for `rollout.guard` (`, key: value`).
fn guard_config_with(old: &Origin, new: &Origin, guard: &str, extra: &str) -> String {
    format!(
        "{}rollout:\n  sticky: none\n  steps: [20, 50, 100]\n  step_every: \"300ms\"\n  guard: {{ interval: \"200ms\", window: \"30s\", min_requests: 60, min_comparisons: 40{guard} }}\n{extra}",
        backends(old, new)
    )
}

async fn run_until_phase(g: &Gateway, want: &str, within: Duration) -> serde_json::Value {
    let stop_flag = Arc::new(AtomicBool::new(false));
    let t = traffic(format!("{}/g", proxy(g)), stop_flag.clone());
    let deadline = std::time::Instant::now() + within;
    let s = loop {
        let s = status(g).await;
        if s["phase"] == want {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "phase never became {want}: {s:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    stop_flag.store(true, Ordering::Relaxed);
    t.await.unwrap();
    s
}

/// Starts the plan on a gateway over `old` and `new`, sends traffic until
/// the guard rolls back, and checks it said why.
async fn guard_rolls_back(old: Handler, new: Handler, extra: &str, failed_check: &str) -> Gateway {
    let (old, new) = (Origin::start(old).await, Origin::start(new).await);
    let g = gateway(&guard_config(&old, &new, extra));
    g.controller
        .step(&switchyard::rollout::controller::Actor::new("t", "start"))
        .unwrap();
    let s = run_until_phase(&g, "rolled_back", Duration::from_secs(30)).await;
    let why = s["last_change"]["why"].as_str().unwrap();
    assert!(
        why.starts_with(&format!("guard: {failed_check} failed at look ")),
        "{why}"
    );
    // It says how strong the evidence was, against what a failure needed.
    assert!(why.contains("evidence ×") && why.contains(" needed"), "{why}");
    assert_eq!(s["last_change"]["who"], "guard");
    assert_eq!(metric(&g, "switchyard_rollbacks_total", &[("reason", "guard")]), 1.0);
    g
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_rolls_back_when_new_fails_5_percent() {
    let g = guard_rolls_back(behaving(0, 0, "v"), behaving(0, 20, "v"), "", "error_rate").await;
    assert!(metric(&g, "switchyard_guard_check_value", &[("check", "error_rate")]) > 0.01);
    assert_eq!(
        metric(&g, "switchyard_guard_check_threshold", &[("check", "error_rate")]),
        0.01
    );
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_rolls_back_when_new_is_30_percent_slower() {
    let g = guard_rolls_back(behaving(20, 0, "v"), behaving(26, 0, "v"), "", "latency").await;
    assert!(metric(&g, "switchyard_guard_check_value", &[("check", "latency")]) > 1.2);
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_rolls_back_when_bodies_differ() {
    let g = guard_rolls_back(
        behaving(0, 0, "one"),
        behaving(0, 0, "two"),
        "shadow: { percent: 100 }\n",
        "diff_rate",
    )
    .await;
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_pauses_instead_when_told_to() {
    let old = Origin::start(behaving(0, 0, "v")).await;
    let new = Origin::start(behaving(0, 10, "v")).await;
    let g =
        gateway(&guard_config(&old, &new, "").replace("min_comparisons: 40 }", "min_comparisons: 40, action: pause }"));
    g.controller
        .step(&switchyard::rollout::controller::Actor::new("t", "start"))
        .unwrap();
    let s = run_until_phase(&g, "paused", Duration::from_secs(30)).await;
    // Paused where it was (a step the plan took before the evidence was
    // in stays taken), never promoted, never rolled back.
    let percent = s["percent"].as_f64().unwrap();
    assert!(percent < 100.0, "{s:#}");
    assert_eq!(s["last_change"]["from_percent"].as_f64(), Some(percent), "{s:#}");
    assert_eq!(s["last_change"]["to_percent"].as_f64(), Some(percent), "{s:#}");
    assert_eq!(s["last_change"]["who"], "guard");
    assert_eq!(metric(&g, "switchyard_rollbacks_total", &[("reason", "guard")]), 0.0);
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identical_new_is_walked_through_every_step_to_promoted() {
    let old = Origin::start(behaving(0, 0, "v")).await;
    let new = Origin::start(behaving(0, 0, "v")).await;
    let g = gateway(&guard_config(&old, &new, "shadow: { percent: 100 }\n"));
    g.controller
        .step(&switchyard::rollout::controller::Actor::new("t", "start"))
        .unwrap();
    let s = run_until_phase(&g, "promoted", Duration::from_secs(40)).await;
    assert_eq!(s["percent"], 100.0);
    assert_eq!(s["last_change"]["who"], "guard");
    assert_eq!(metric(&g, "switchyard_rollbacks_total", &[]), 0.0);
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_each_checks_evidence_and_the_looks_taken() {
    let old = Origin::start(behaving(0, 0, "v")).await;
    let new = Origin::start(behaving(0, 0, "v")).await;
    // No step_every: the plan stays at 20 % while the guard looks.
    let g = gateway(&guard_config(&old, &new, "shadow: { percent: 100 }\n").replace("  step_every: \"300ms\"\n", ""));
    g.controller
        .step(&switchyard::rollout::controller::Actor::new("t", "start"))
        .unwrap();
    let stop_flag = Arc::new(AtomicBool::new(false));
    let t = traffic(format!("{}/g", proxy(&g)), stop_flag.clone());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let s = loop {
        let s = status(&g).await;
        let judged = s["guard"]["checks"]
            .as_array()
            .is_some_and(|c| c.len() == 4 && c.iter().all(|c| c["needed"].is_number()));
        if judged && s["guard"]["test"]["looks"].as_u64() >= Some(3) {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "never judged: {s:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    stop_flag.store(true, Ordering::Relaxed);
    t.await.unwrap();
    let guard = &s["guard"];
    assert_eq!(guard["test"]["number"], 1, "the rollout's first test: {guard:#}");
    assert_eq!(guard["false_alarm_rate"], 0.01);
    for c in guard["checks"].as_array().unwrap() {
        assert_eq!(c["state"], "pass", "{c:#}");
        // 1/α of the first test, shared by four checks: 4π²/(6·0.01) ≈ 658.
        let needed = c["needed"].as_f64().unwrap();
        assert!((needed - 657.97).abs() < 0.1, "{c:#}");
        assert!(c["progress"].as_f64().unwrap() < 1.0, "{c:#}");
        assert!(c["detail"].as_str().unwrap().contains(" needed"), "{c:#}");
    }
    assert_eq!(s["phase"], "progressing");
    assert!(metric(&g, "switchyard_guard_check_evidence", &[("check", "latency")]) < 1.0);
    // The report shows the same.
    let report = call(&g, Method::GET, "/report.json", "", None).await.json();
    assert_eq!(report["guard"]["checks"].as_array().map(Vec::len), Some(4));
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_on_new_finish_after_a_rollback() {
    let old = Origin::named("old").await;
    let slow_new: Handler = Arc::new(|_req| {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(600)).await;
            json_response(200, serde_json::json!({"backend": "new"}))
        })
    });
    let new = Origin::start(slow_new).await;
    let g = gateway(&format!("{}rollout: {{ percent: 100 }}\n", backends(&old, &new)));
    let url = format!("{}/x", proxy(&g));
    let in_flight = tokio::spawn({
        let url = url.clone();
        async move { get(&client(), &url, &[]).await }
    });
    eventually(Duration::from_secs(5), "the request reached new", || new.count() == 1).await;
    assert_eq!(call(&g, Method::POST, "/rollback", "", None).await.status, 200);
    assert_eq!(
        get(&client(), &url, &[]).await.json()["backend"],
        "old",
        "the next request goes to old"
    );
    let a = in_flight.await.unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["backend"], "new", "the one already on new finished there");
    stop(g).await;
}

/// The guard's report says when it would not act, and a change starts a
/// new test in the report at once: the previous step's figures are never
/// shown as the new one's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_says_when_it_is_not_acting_and_a_change_clears_its_figures() {
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let idle = gateway(&format!(
        "{}rollout: {{ percent: 5, guard: {{ interval: \"100ms\" }} }}\n",
        backends(&old, &new)
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = status(&idle).await;
        if let Some(why) = s["guard"]["not_acting"].as_str() {
            assert!(why.contains("the rollout is idle"), "{why}");
            break;
        }
        assert!(Instant::now() < deadline, "no reason given: {s:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let out = std::process::Command::new(support::raw::BIN)
        .args(["status", "--admin", &admin(&idle)])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("not acting: the rollout is idle"), "{text}");
    // Each check says what it still needs, in words.
    assert!(
        text.contains("→ inconclusive (needs 100 more requests on new and 100 on old)"),
        "{text}"
    );
    idle.shutdown();

    // Looks every 10 s: a report that follows the change at once is reset
    // by the change, not by a look.
    let slow = gateway(&format!(
        "{}rollout: {{ percent: 5, guard: {{ interval: \"10s\" }} }}\n",
        backends(&old, &new)
    ));
    let changed = slow
        .controller
        .set_percent(25.0, &Actor::new("test", "a step"))
        .unwrap();
    let at = changed.last_change.unwrap().at_ms;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = status(&slow).await;
        if s["guard"]["test_since_ms"].as_u64() == Some(at) {
            assert_eq!(s["guard"]["checks"], serde_json::json!([]), "{s:#}");
            assert_eq!(s["guard"]["requests_new"], 0);
            break;
        }
        assert!(Instant::now() < deadline, "the report still shows the last test: {s:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    slow.shutdown();
}

/// `enabled: false` is a dry run: the guard says what it would do and does
/// not do it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_guard_says_what_it_would_do_and_does_not() {
    let (old, new) = (
        Origin::start(behaving(0, 0, "v")).await,
        Origin::start(behaving(0, 5, "v")).await,
    );
    let g = gateway(&guard_config_with(&old, &new, ", enabled: false", ""));
    g.controller.step(&Actor::new("t", "start")).unwrap();
    let stop_flag = Arc::new(AtomicBool::new(false));
    let t = traffic(format!("{}/g", proxy(&g)), stop_flag.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = status(&g).await;
        if let Some(h) = s["guard"]["holding"].as_str() {
            if h.starts_with("would roll back: guard: error_rate failed") {
                break;
            }
        }
        assert_eq!(s["phase"], "progressing", "a dry run never acts: {s:#}");
        assert!(Instant::now() < deadline, "no dry-run verdict: {s:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status(&g).await["percent"], serde_json::json!(20.0));
    stop_flag.store(true, Ordering::Relaxed);
    t.await.unwrap();
    stop(g).await;
}

/// `consecutive_failures: 3`: a failing check is held back for two looks,
/// said so, and acted on at the third.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_acts_after_the_failures_in_a_row_it_was_told_to_wait_for() {
    let (old, new) = (
        Origin::start(behaving(0, 0, "v")).await,
        Origin::start(behaving(0, 5, "v")).await,
    );
    let g = gateway(&guard_config_with(&old, &new, ", consecutive_failures: 3", ""));
    g.controller.step(&Actor::new("t", "start")).unwrap();
    let stop_flag = Arc::new(AtomicBool::new(false));
    let t = traffic(format!("{}/g", proxy(&g)), stop_flag.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut held = Vec::new();
    let s = loop {
        let s = status(&g).await;
        if let Some(h) = s["guard"]["holding"].as_str() {
            if !held.iter().any(|x: &String| x == h) {
                held.push(h.to_string());
            }
        }
        if s["phase"] == "rolled_back" {
            break s;
        }
        assert!(Instant::now() < deadline, "never rolled back: {s:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    stop_flag.store(true, Ordering::Relaxed);
    t.await.unwrap();
    // Seen held back at least once (each state lasts one look, 200 ms: a
    // starved poller may miss one, not both)…
    assert!(
        held.iter()
            .any(|h| h.starts_with("error_rate failed ") && h.contains(" look(s) in a row; the guard acts after 3")),
        "{held:#?}"
    );
    // …and acted on no sooner than the third failing look.
    let why = s["last_change"]["why"].as_str().unwrap();
    let look: u32 = why
        .strip_prefix("guard: error_rate failed at look ")
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{why}"));
    assert!(look >= 3, "{why}");
    stop(g).await;
}
