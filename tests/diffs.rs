//! From a difference to a decision: accepting intended differences,
//! replaying a stored sample after a fix, starting the report afresh,
//! recording live requests, and diffing recorded traffic (a capture or a
//! HAR file) offline — each against real origins on loopback.

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use http::{Method, Request};
use hyper::body::Incoming;
use serde_json::{json, Value};
use support::raw::BIN;
use support::*;
use switchyard::demo::origins::{self, Flavor};
use switchyard::gateway::Gateway;
use tokio_util::sync::CancellationToken;

/// `GET /users/ID`: old says `user_name`, new renamed it `username`; on
/// `/users/typed/ID` new keeps the name but makes it a number. Until
/// `fixed`, that is; then new answers as old does.
fn users(flavor: &'static str, fixed: Arc<AtomicBool>) -> Handler {
    Arc::new(move |req: Request<Incoming>| {
        let fixed = fixed.load(Ordering::SeqCst);
        Box::pin(async move {
            let path = req.uri().path().to_string();
            let id = path.rsplit('/').next().unwrap_or("0").to_string();
            let body = match (flavor, fixed, path.starts_with("/users/typed/")) {
                ("new", false, true) => json!({ "user_name": 5, "id": id }),
                ("new", false, false) => json!({ "username": format!("u{id}"), "id": id }),
                _ => json!({ "user_name": format!("u{id}"), "id": id }),
            };
            json_response(200, body)
        })
    })
}

/// Old and new user services (new renamed a field until `fixed`), and a
/// state directory for the gateway.
struct Users {
    old: Origin,
    new: Origin,
    fixed: Arc<AtomicBool>,
    dir: tempfile::TempDir,
}

impl Users {
    async fn start() -> Users {
        let fixed = Arc::new(AtomicBool::new(false));
        Users {
            old: Origin::start(users("old", fixed.clone())).await,
            new: Origin::start(users("new", fixed.clone())).await,
            fixed,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// The gateway's config: mirroring everything, state and store in `dir`.
    fn yaml(&self) -> String {
        config(&self.old, &self.new, self.dir.path(), "")
    }
}

fn config(old: &Origin, new: &Origin, dir: &std::path::Path, extra: &str) -> String {
    format!(
        "{}rollout: {{ state_file: \"{}/rollout.json\" }}\nshadow: {{ percent: 100 }}\ndiff:\n  noise: {{ repeat_percent: 0 }}\n  store: {{ path: \"{}/diffs.jsonl\" }}\n{extra}",
        backends(old, new),
        dir.display(),
        dir.display()
    )
}

fn counted(g: &Gateway, result: &str) -> f64 {
    metric(g, "switchyard_comparisons_total", &[("result", result)])
}

async fn traffic(g: &Gateway, paths: impl IntoIterator<Item = String>) {
    let c = client();
    for p in paths {
        let a = get(&c, &format!("{}{p}", proxy(g)), &[]).await;
        assert_eq!(a.status, 200, "{p}");
    }
}

async fn admin_call(g: &Gateway, method: Method, path: &str, body: Option<Value>) -> Answer {
    let (headers, payload): (&[(&str, &str)], String) = match &body {
        Some(v) => (&[("content-type", "application/json")], v.to_string()),
        None => (&[], String::new()),
    };
    send(&client(), method, &format!("{}{path}", admin(g)), headers, payload).await
}

/// `YYYY-MM-DDTHH:MM:SSZ` a few seconds from now, as `--until` takes it.
fn soon(secs: u64) -> (String, u64) {
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + secs;
    let text = switchyard::calendar::datetime(at as i64).replace(' ', "T");
    (text, at * 1000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepted_difference_stops_counting_against_the_rollout_and_survives_a_restart() {
    let u = Users::start().await;
    let yaml = u.yaml();
    let g = gateway(&yaml);
    let began = std::time::Instant::now();

    traffic(&g, (0..20).map(|i| format!("/users/{i}"))).await;
    eventually(BACKGROUND, "20 real differences", || counted(&g, "diff") == 20.0).await;

    // The rename is intended: accept both of its sides.
    for field in ["/user_name", "/username"] {
        let a = admin_call(
            &g,
            Method::POST,
            "/diffs/accept",
            Some(json!({ "endpoint": "GET /users/{id}", "field": field, "reason": "renamed in v2", "who": "ana" })),
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.text());
    }
    let listed = admin_call(&g, Method::GET, "/diffs/accepted", None).await.json();
    let kinds: Vec<&str> = listed["accepted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["kinds"][0].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["missing", "extra"],
        "each acceptance covers the kind seen: {listed}"
    );

    traffic(&g, (20..40).map(|i| format!("/users/{i}"))).await;
    eventually(BACKGROUND, "20 accepted", || counted(&g, "accepted") == 20.0).await;
    assert_eq!(counted(&g, "diff"), 20.0, "no new real differences");
    // The guard judges only what is left.
    let seen = g.analysis.diffs.count_since(began);
    assert_eq!((seen.comparisons, seen.real), (40, 20));

    // The same field with its type changed is not what was accepted.
    traffic(&g, (0..3).map(|i| format!("/users/typed/{i}"))).await;
    eventually(BACKGROUND, "type change is real", || counted(&g, "diff") == 23.0).await;

    let report = admin_call(&g, Method::GET, "/report.json", None).await.json();
    let acc = report["accepted"].as_array().unwrap();
    assert_eq!(acc.len(), 2);
    assert_eq!(acc[0]["who"], "ana");
    assert_eq!(acc[0]["reason"], "renamed in v2");
    assert_eq!(acc[0]["covered"], 20);
    assert_eq!(report["headline"]["accepted"], 20);
    let html = admin_call(&g, Method::GET, "/report", None).await.text();
    assert!(html.contains("Accepted differences") && html.contains("renamed in v2"));
    stop(g).await;

    // Acceptances are kept with the rollout state.
    let g = gateway(&yaml);
    let listed = admin_call(&g, Method::GET, "/diffs/accepted", None).await.json();
    assert_eq!(listed["accepted"].as_array().unwrap().len(), 2, "{listed}");

    // One that expires: real again once its time is past.
    let a = admin_call(
        &g,
        Method::POST,
        "/diffs/unaccept",
        Some(json!({ "endpoint": "GET /users/{id}", "field": "/username" })),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let (until, until_ms) = soon(2);
    let a = admin_call(
        &g,
        Method::POST,
        "/diffs/accept",
        Some(json!({ "endpoint": "GET /users/{id}", "field": "/username", "kinds": ["extra"], "reason": "for now", "until": until })),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    traffic(&g, ["/users/50".to_string()]).await;
    eventually(BACKGROUND, "accepted before until", || counted(&g, "accepted") == 1.0).await;
    eventually(std::time::Duration::from_secs(10), "until has passed", || {
        switchyard::rollout::state::now_ms() > until_ms
    })
    .await;
    traffic(&g, ["/users/51".to_string()]).await;
    eventually(BACKGROUND, "real after until", || counted(&g, "diff") == 1.0).await;
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_acceptances_are_refused_with_what_to_do() {
    let u = Users::start().await;
    let g = gateway(&u.yaml());
    traffic(&g, ["/users/1".to_string()]).await;
    eventually(BACKGROUND, "a comparison", || counted(&g, "diff") == 1.0).await;
    for (body, status, says) in [
        (
            json!({ "endpoint": "GET /users/{id}", "field": "/user_name" }),
            400,
            "reason is empty",
        ),
        (
            json!({ "endpoint": "GET /nope", "field": "/a", "reason": "r" }),
            404,
            "endpoints: GET /users/{id}",
        ),
        (
            json!({ "endpoint": "GET /users/{id}", "field": "/id", "reason": "r" }),
            404,
            "no difference has been seen",
        ),
        (
            json!({ "endpoint": "GET /users/{id}", "field": "user_name", "reason": "r" }),
            400,
            "JSON pointer",
        ),
        (
            json!({ "endpoint": "GET /users/{id}", "field": "/user_name", "reason": "r", "until": "2001-01-01" }),
            400,
            "in the past",
        ),
    ] {
        let a = admin_call(&g, Method::POST, "/diffs/accept", Some(body.clone())).await;
        assert_eq!(a.status.as_u16(), status, "{body}: {}", a.text());
        assert!(a.text().contains(says), "{body}: {}", a.text());
    }
    let listed = admin_call(&g, Method::GET, "/diffs/accepted", None).await.json();
    assert!(
        listed["accepted"].as_array().unwrap().is_empty(),
        "nothing changed: {listed}"
    );
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_sample_says_whether_the_fix_worked() {
    let u = Users::start().await;
    let (new, fixed) = (&u.new, &u.fixed);
    let g = gateway(&u.yaml());
    traffic(&g, ["/users/7".to_string()]).await;
    eventually(BACKGROUND, "a difference", || counted(&g, "diff") == 1.0).await;
    let samples = admin_call(&g, Method::GET, "/diffs?field=/user_name", None)
        .await
        .json();
    let id = samples[0]["id"].as_str().unwrap().to_string();

    let shown = admin_call(&g, Method::GET, &format!("/diffs/{id}"), None).await.json();
    assert_eq!(shown["endpoint"], "GET /users/{id}");
    assert_eq!(shown["target"], "/users/7");
    assert!(shown["new"]["body"].as_str().unwrap().contains("username"));

    let before = admin_call(&g, Method::POST, &format!("/diffs/{id}/replay"), None)
        .await
        .json();
    assert_eq!(before["verdict"], "still differs", "{before}");
    let asked = new.count();
    fixed.store(true, Ordering::SeqCst);
    // The CLI, as an engineer types it after deploying the fix.
    let out = Command::new(BIN)
        .args(["replay", &id, "--admin", &admin(&g)])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("no longer differs"), "{text}");
    assert_eq!(new.count(), asked + 1, "the replay asked new once");
    let seen = new.seen();
    let last = seen.last().unwrap();
    assert_eq!(last.path, "/users/7");
    assert_eq!(
        last.headers.get("x-switchyard-shadow").unwrap(),
        "1",
        "backends can tell a replay"
    );

    let show = Command::new(BIN)
        .args(["diff", "show", &id, "--admin", &admin(&g)])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(text.contains("GET /users/7") && text.contains("≠"), "{text}");

    let missing = admin_call(&g, Method::GET, "/diffs/0123456789ab", None).await;
    assert_eq!(missing.status, 404);
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_report_counts_only_what_came_after_it_even_after_a_restart() {
    let u = Users::start().await;
    let yaml = u.yaml();
    let g = gateway(&yaml);
    traffic(&g, (0..10).map(|i| format!("/users/{i}"))).await;
    eventually(BACKGROUND, "10 comparisons", || counted(&g, "diff") == 10.0).await;
    let r = admin_call(&g, Method::POST, "/report/reset", None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let report = admin_call(&g, Method::GET, "/report.json", None).await.json();
    assert_eq!(report["headline"]["comparisons"], 0);
    assert!(report["since_ms"].as_u64().is_some());
    traffic(&g, (0..3).map(|i| format!("/users/{i}"))).await;
    eventually(BACKGROUND, "3 more", || counted(&g, "diff") == 13.0).await;
    // What Prometheus sees keeps counting; the report starts afresh.
    let report = admin_call(&g, Method::GET, "/report.json", None).await.json();
    assert_eq!(report["headline"]["comparisons"], 3);
    stop(g).await;
    let g = gateway(&yaml);
    let report = admin_call(&g, Method::GET, "/report.json", None).await.json();
    assert_eq!(report["headline"]["comparisons"], 3, "the store kept the reset");
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saved_reports_merge_into_one() {
    let u = Users::start().await;
    let (old, new, dir) = (&u.old, &u.new, &u.dir);
    let mut files = Vec::new();
    for (n, sub) in [(4, "a"), (6, "b")] {
        let d = dir.path().join(sub);
        let g = gateway(&config(old, new, &d, ""));
        traffic(&g, (0..n).map(|i| format!("/users/{i}"))).await;
        eventually(BACKGROUND, "comparisons", || counted(&g, "diff") == n as f64).await;
        let path = dir.path().join(format!("{sub}.json"));
        std::fs::write(&path, admin_call(&g, Method::GET, "/report.json", None).await.text()).unwrap();
        files.push(path);
        stop(g).await;
    }
    let out = Command::new(BIN)
        .args(["report", "--format", "json", "--merge"])
        .args(&files)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let merged: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(merged["headline"]["comparisons"], 10);
    assert_eq!(merged["gateways"], 2);
    // Histograms add up (they hold the pairs whose sides went out together).
    let total = |v: &Value| {
        v["endpoints"][0]["latency"]["histograms"]["new"]["total"]
            .as_u64()
            .unwrap()
    };
    let parts: u64 = files
        .iter()
        .map(|f| total(&serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap()))
        .sum();
    assert_eq!(total(&merged), parts);
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{}").unwrap();
    let out = Command::new(BIN)
        .args(["report", "--merge"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a saved JSON report"));
}

/// The demo's three origins: old, its twin, and new with planted changes.
async fn shop() -> (SocketAddr, SocketAddr, SocketAddr, CancellationToken) {
    let stop = CancellationToken::new();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let old = origins::start(Flavor::Old, any, stop.clone()).await.unwrap();
    let twin = origins::start(Flavor::Twin, any, stop.clone()).await.unwrap();
    let new = origins::start(Flavor::New, any, stop.clone()).await.unwrap();
    (old, twin, new, stop)
}

/// Real fields per endpoint in a JSON report.
fn real_fields(report: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for e in report["endpoints"].as_array().unwrap() {
        for f in e["fields"].as_array().unwrap() {
            if f["verdict"] == "real" {
                out.push(format!(
                    "{} {}",
                    e["endpoint"].as_str().unwrap(),
                    f["field"].as_str().unwrap()
                ));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_har_file_replayed_offline_finds_exactly_the_planted_differences() {
    let (old, twin, new, stop) = shop().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("rules.yaml");
    std::fs::write(
        &cfg,
        "backends: { old: { url: 'http://127.0.0.1:1' }, new: { url: 'http://127.0.0.1:2' } }\ndiff: { unordered_arrays: [\"/tags\"] }\n",
    )
    .unwrap();
    let har = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/shop.har");
    let out_json = dir.path().join("report.json");
    let run = move |max: &str| {
        let out = std::process::Command::new(BIN)
            .args(["replay", "--file", har, "-c"])
            .arg(&cfg)
            .args(["--old", &format!("http://{old}"), "--new", &format!("http://{new}")])
            .args(["--twin", &format!("http://{twin}"), "--max-diff-rate", max, "--report"])
            .arg(&out_json)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, stderr) = tokio::task::spawn_blocking(move || run("1")).await.unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("7 requests (HAR)"), "{stderr}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(
        real_fields(&report),
        [
            "GET /orders/{id} body:/error",
            "GET /orders/{id} body:/id",
            "GET /orders/{id} body:/items",
            "GET /orders/{id} body:/status",
            "GET /orders/{id} status",
            "GET /search body:/next_cursor",
            "GET /users/{id} body:/user_name",
            "GET /users/{id} body:/username",
            "GET /users/{id}/orders body:/orders/*/total",
        ],
        "{report}"
    );
    // The timestamps and trace ids every answer carries are noise, not real.
    assert_eq!(report["headline"]["comparisons"], 7);
    let out_json = dir.path().join("report.json");
    let (code, stderr) = tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(BIN)
            .args(["replay", "--file", har, "--max-diff-rate", "0.1", "--report"])
            .arg(&out_json)
            .args(["--old", &format!("http://{old}"), "--new", &format!("http://{new}")])
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    })
    .await
    .unwrap();
    assert_eq!(
        code,
        Some(1),
        "real differences above --max-diff-rate fail the run: {stderr}"
    );
    assert!(stderr.contains("exceed --max-diff-rate"), "{stderr}");
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_written_by_the_gateway_replays_offline() {
    let (old, twin, new, stop_origins) = shop().await;
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("capture.jsonl");
    let g = gateway(&format!(
        "backends:\n  old: {{ url: \"http://{old}\" }}\n  new: {{ url: \"http://{new}\" }}\ncapture: {{ path: \"{}\", percent: 100, methods: [GET, POST], max_body_bytes: 64 }}\n",
        capture.display()
    ));
    let c = client();
    for p in ["/users/3", "/users/4/orders", "/search?q=x"] {
        get(&c, &format!("{}{p}", proxy(&g)), &[("authorization", "Bearer secret")]).await;
    }
    send(
        &c,
        Method::POST,
        &format!("{}/health", proxy(&g)),
        &[("content-type", "application/json")],
        "{\"ping\":1}",
    )
    .await;
    // Over max_body_bytes: forwarded whole, not recorded.
    let big = "x".repeat(1000);
    let a = send(&c, Method::POST, &format!("{}/health", proxy(&g)), &[], big.clone()).await;
    assert_eq!(a.status, 200);
    let written = || metric(&g, "switchyard_captured_requests_total", &[("result", "written")]);
    eventually(BACKGROUND, "4 records written", || written() == 4.0).await;
    assert_eq!(
        metric(&g, "switchyard_captured_requests_total", &[("result", "skipped_body")]),
        1.0
    );
    let text = std::fs::read_to_string(&capture).unwrap();
    assert_eq!(text.lines().count(), 4, "{text}");
    assert!(!text.contains("secret"), "credentials are redacted: {text}");
    assert!(
        text.contains("[redacted]") && text.contains("{\\\"ping\\\":1}"),
        "{text}"
    );
    stop(g).await;

    struct Quiet;
    impl switchyard::replay::offline::Progress for Quiet {
        fn start(&self, _: usize) {}
        fn advance(&self, _: usize, _: usize) {}
        fn finish(&self) {}
    }
    let outcome = switchyard::replay::offline::run(
        &switchyard::replay::offline::OfflineArgs {
            file: capture,
            old: format!("http://{old}"),
            new: format!("http://{new}"),
            twin: Some(format!("http://{twin}")),
            config: None,
            rate: Some(200.0),
            concurrency: 2,
        },
        &Quiet,
    )
    .await
    .unwrap();
    assert_eq!(outcome.requests, 4);
    assert_eq!(outcome.failed, 0, "{:?}", outcome.failures);
    let report = serde_json::to_value(&outcome.report).unwrap();
    let real = real_fields(&report);
    assert!(real.contains(&"GET /users/{id} body:/username".to_string()), "{real:?}");
    assert!(real.contains(&"GET /search body:/next_cursor".to_string()), "{real:?}");
    stop_origins.cancel();
}
