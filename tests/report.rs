//! What engineers and Prometheus see: the metrics exposition, the report
//! (HTML, JSON, samples), redaction and escaping, and the diff store.

mod support;

use std::sync::Arc;
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use support::*;
use switchyard::gateway::Gateway;

async fn scrape(g: &Gateway) -> String {
    get(&client(), &format!("{}/metrics", admin(g)), &[]).await.text()
}

fn series(exposition: &str) -> usize {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .count()
}

fn comparisons(g: &Gateway) -> f64 {
    metric(g, "switchyard_comparisons_total", &[])
}

/// Echoes the request's path and body back inside JSON, plus a field that
/// differs by flavor.
fn echo(flavor: &'static str) -> Handler {
    Arc::new(move |req: Request<Incoming>| {
        Box::pin(async move {
            let path = req.uri().path().to_string();
            json_response(
                200,
                serde_json::json!({ "path": path, "flavor": flavor, "note": "<script>alert('body')</script>" }),
            )
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_cover_the_contract_with_proxy_buckets() {
    let (old, new) = (Origin::start(echo("a")).await, Origin::start(echo("b")).await);
    let refusing = Refusing::new();
    let dead = refusing.addr;
    let g = gateway(&format!(
        "backends:\n  old: {{ url: \"{}\" }}\n  new: {{ url: \"{}\" }}\n  old_twin: {{ url: \"http://{dead}\" }}\nshadow: {{ percent: 100 }}\nmodules:\n  - rate_limit: {{ rate: 1000 }}\n",
        old.url(),
        new.url()
    ));
    let c = client();
    for i in 0..5 {
        get(&c, &format!("{}/u/{i}", proxy(&g)), &[]).await;
    }
    eventually(BACKGROUND, "comparisons", || comparisons(&g) == 5.0).await;
    g.controller
        .rollback(
            &switchyard::rollout::controller::Actor::new("t", "t"),
            switchyard::rollout::controller::RollbackReason::Manual,
        )
        .unwrap();
    let text = scrape(&g).await;
    for name in [
        "switchyard_requests_total{backend=\"old\",code_class=\"2xx\",route=\"default\"} 5",
        "switchyard_request_duration_seconds_bucket{backend=\"old\",route=\"default\",le=\"0.0001\"}",
        "switchyard_request_duration_seconds_bucket{backend=\"old\",route=\"default\",le=\"10\"}",
        "switchyard_shadow_requests_total{backend=\"new\",outcome=\"completed\",route=\"default\"} 5",
        "switchyard_shadow_requests_total{backend=\"old_twin\",outcome=\"error\",route=\"default\"} 5",
        "switchyard_comparisons_total{result=\"diff\",route=\"default\"} 5",
        "switchyard_pair_duration_seconds_count{backend=\"new\",route=\"default\"} 5",
        "switchyard_rollout_percent 0",
        "switchyard_rollout_phase{phase=\"rolled_back\"} 1",
        "switchyard_rollout_phase{phase=\"idle\"} 0",
        "switchyard_rollbacks_total{reason=\"manual\"} 1",
        "switchyard_rollbacks_total{reason=\"guard\"} 0",
        "switchyard_module_decisions_total{decision=\"allowed\",module=\"rate_limit\",route=\"default\"} 5",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_cpu_seconds_total",
    ] {
        assert!(text.contains(name), "missing {name}");
    }
    stop(g).await;

    // Upstream errors are counted by kind.
    let g = gateway(&format!(
        "backends:\n  old: {{ url: \"http://{dead}\" }}\n  new: {{ url: \"{}\" }}\n",
        new.url()
    ));
    get(&c, &format!("{}/x", proxy(&g)), &[]).await;
    assert!(scrape(&g)
        .await
        .contains("switchyard_upstream_errors_total{backend=\"old\",kind=\"connect\"} 1"));
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_distinct_paths_add_no_series() {
    let (old, new) = (Origin::start(echo("a")).await, Origin::start(echo("b")).await);
    let g = gateway(&format!(
        "{}shadow: {{ percent: 100 }}\nrollout: {{ percent: 50, sticky: none }}\n",
        backends(&old, &new)
    ));
    let c = client();
    for i in 0..50 {
        get(&c, &format!("{}/warm/{i}", proxy(&g)), &[]).await;
    }
    eventually(BACKGROUND, "warm-up compared", || comparisons(&g) == 50.0).await;
    let before = series(&scrape(&g).await);
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let (c, p) = (c.clone(), proxy(&g));
            tokio::spawn(async move {
                for i in 0..1250 {
                    let id = t * 1250 + i;
                    get(
                        &c,
                        &format!("{p}/p{id}/x{id}?user={id}"),
                        &[("x-user-id", &format!("u{id}")), ("x-custom", &format!("v{id}"))],
                    )
                    .await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    // Under this load mirrors lose to live traffic and some are shed (they
    // run at the lowest CPU priority); every one must still be accounted for.
    let mirrors = |outcome: &str| {
        ["old", "new"]
            .iter()
            .map(|b| {
                metric(
                    &g,
                    "switchyard_shadow_requests_total",
                    &[("backend", b), ("outcome", outcome)],
                )
            })
            .sum::<f64>()
    };
    let outcomes = || {
        switchyard::metrics::SHADOW_OUTCOMES
            .iter()
            .map(|o| format!("{o}={}", mirrors(o)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !(mirrors("completed") + mirrors("dropped") == 10_050.0 && comparisons(&g) == mirrors("completed")) {
        assert!(
            std::time::Instant::now() < deadline,
            "not every mirror was compared or shed: {}; comparisons {}",
            outcomes(),
            comparisons(&g)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = scrape(&g).await;
    assert_eq!(series(&after), before, "new series appeared");
    assert!(!after.contains("p9999"));
    stop(g).await;
}

/// promtool, which this test needs: its absence is a failure that says how
/// to get it, never a silent pass.
fn promtool() -> &'static str {
    let found = std::process::Command::new("promtool").arg("--version").output().is_ok();
    assert!(
        found,
        "promtool is needed: run `bash .ci/run` (it installs Debian's prometheus package), or apt-get install prometheus"
    );
    "promtool"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_a_real_scrape() {
    let promtool = promtool();
    let (old, new) = (Origin::start(echo("a")).await, Origin::start(echo("b")).await);
    let g = gateway(&format!(
        "{}shadow: {{ percent: 100 }}\nrollout: {{ percent: 50, sticky: none }}\n",
        backends(&old, &new)
    ));
    for i in 0..20 {
        get(&client(), &format!("{}/x/{i}", proxy(&g)), &[]).await;
    }
    let text = scrape(&g).await;
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_sees_requests_rise_on_both_backends() {
    // The prometheus package brings both promtool and the server.
    promtool();
    let (old, new) = (Origin::start(echo("a")).await, Origin::start(echo("b")).await);
    let g = gateway(&format!(
        "{}rollout: {{ percent: 50, sticky: none }}\n",
        backends(&old, &new)
    ));
    let dir = tempfile::tempdir().unwrap();
    let web = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\nscrape_configs:\n  - job_name: switchyard\n    static_configs: [{{ targets: [\"{}\"] }}]\n",
            g.admin_addr
        ),
    )
    .unwrap();
    let mut prom = std::process::Command::new("prometheus")
        .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address={web}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start prometheus");
    let c = client();
    let query = format!("http://{web}/api/v1/query?query=sum%20by%20(backend)%20(switchyard_requests_total)");
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let mut sent = 0;
    let result = loop {
        for _ in 0..20 {
            get(&c, &format!("{}/x", proxy(&g)), &[]).await;
            sent += 1;
        }
        let req = Request::get(&query)
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        if let Ok(resp) = c.request(req).await {
            let body = http_body_util::BodyExt::collect(resp.into_body())
                .await
                .unwrap()
                .to_bytes();
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
                let rows = v["data"]["result"].as_array().cloned().unwrap_or_default();
                let value = |b: &str| {
                    rows.iter()
                        .find(|r| r["metric"]["backend"] == b)
                        .and_then(|r| r["value"][1].as_str().and_then(|s| s.parse::<f64>().ok()))
                        .unwrap_or(0.0)
                };
                if value("old") > 0.0 && value("new") > 0.0 {
                    break (value("old"), value("new"));
                }
            }
        }
        if std::time::Instant::now() > deadline {
            let _ = prom.kill();
            panic!("Prometheus never saw both backends (sent {sent})");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let _ = prom.kill();
    let _ = prom.wait();
    assert!(result.0 + result.1 <= sent as f64);
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_escapes_traffic_and_redacts_secrets() {
    let (old, new) = (Origin::start(echo("a")).await, Origin::start(echo("b")).await);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("diffs.jsonl");
    let g = gateway(&format!(
        "{}shadow: {{ percent: 100 }}\ndiff: {{ redact_headers: [x-api-key], store: {{ path: \"{}\" }} }}\n",
        backends(&old, &new),
        store.display()
    ));
    let c = client();
    let evil = "/search/%3Cscript%3Ealert(1)%3C/script%3E/'onmouseover='x";
    for _ in 0..3 {
        get(
            &c,
            &format!("{}{evil}", proxy(&g)),
            &[
                ("x-evil", "<script>alert('header')</script>"),
                ("authorization", "Bearer top-secret-1"),
                ("cookie", "sid=top-secret-2"),
                ("x-api-key", "top-secret-3"),
            ],
        )
        .await;
    }
    eventually(BACKGROUND, "3 comparisons", || comparisons(&g) == 3.0).await;
    let html = get(&c, &format!("{}/report", admin(&g)), &[]).await;
    assert_eq!(html.header("content-type"), Some("text/html; charset=utf-8"));
    let page = html.text();
    assert!(!page.contains("<script"), "raw markup from traffic reached the page");
    assert!(
        !page.contains("'onmouseover='"),
        "a quote from a path reached the page raw"
    );
    assert!(page.contains("&#39;onmouseover=&#39;x"), "the path is shown, escaped");
    assert!(
        page.contains("&lt;script&gt;alert(&#39;header&#39;)"),
        "the header is shown, escaped"
    );
    assert!(
        page.contains("&lt;script&gt;alert(&#39;body&#39;)"),
        "the body is shown, escaped"
    );
    assert!(page.contains("<svg class=\"latency\""));
    assert!(page.contains("<svg class=\"timeline\""));
    assert!(page.contains("curl -sS -i -X GET"));
    let json = get(&c, &format!("{}/report.json", admin(&g)), &[]).await.text();
    let diffs = get(&c, &format!("{}/diffs", admin(&g)), &[]).await.text();
    stop(g).await;
    let stored = std::fs::read_to_string(&store).unwrap();
    for (what, text) in [("html", &page), ("json", &json), ("diffs", &diffs), ("store", &stored)] {
        for secret in ["top-secret-1", "top-secret-2", "top-secret-3"] {
            assert!(!text.contains(secret), "{secret} leaked into {what}");
        }
        assert!(text.contains("[redacted]"), "{what} shows redaction");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_json_diffs_and_the_store_agree_across_a_restart() {
    let (old, new) = (Origin::start(echo("a")).await, Origin::start(echo("b")).await);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("diffs.jsonl");
    let yaml = format!(
        "{}shadow: {{ percent: 100 }}\ndiff: {{ samples_per_field: 4, store: {{ path: \"{}\" }} }}\n",
        backends(&old, &new),
        store.display()
    );
    let g = gateway(&yaml);
    let c = client();
    for i in 0..30 {
        get(&c, &format!("{}/users/{i}", proxy(&g)), &[]).await;
    }
    eventually(BACKGROUND, "30 comparisons", || comparisons(&g) == 30.0).await;
    let before = get(&c, &format!("{}/report.json", admin(&g)), &[]).await.json();
    let ep = &before["endpoints"][0];
    assert_eq!(ep["endpoint"], "GET /users/{id}");
    assert_eq!(ep["compared"], 30);
    let flavor = ep["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["field"] == "body:/flavor")
        .unwrap();
    assert_eq!(flavor["verdict"], "real");
    assert_eq!(flavor["samples"].as_array().unwrap().len(), 4);
    assert!(flavor["samples"][0]["curl_old"]
        .as_str()
        .unwrap()
        .starts_with(&format!("curl -sS -i -X GET '{}/users/", old.url())));

    let samples = get(
        &c,
        &format!(
            "{}/diffs?endpoint=GET%20/users/%7Bid%7D&field=body:/flavor&limit=2",
            admin(&g)
        ),
        &[],
    )
    .await;
    let samples = samples.json();
    assert_eq!(samples.as_array().unwrap().len(), 2);
    assert!(samples
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["field"] == "body:/flavor" && s["endpoint"] == "GET /users/{id}"));
    assert_eq!(get(&c, &format!("{}/diffs?limit=0", admin(&g)), &[]).await.status, 400);
    stop(g).await;

    // Every line of the store is a JSON object (jq reads it).
    let text = std::fs::read_to_string(&store).unwrap();
    let records: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records.iter().filter(|r| r["type"] == "diff").count(), 30);
    assert!(records.iter().any(|r| r["type"] == "tally"));

    let g = gateway(&yaml);
    let after = get(&c, &format!("{}/report.json", admin(&g)), &[]).await.json();
    assert_eq!(after["endpoints"][0]["compared"], 30);
    assert_eq!(after["headline"]["real_diffs"], before["headline"]["real_diffs"]);
    let flavor = after["endpoints"][0]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["field"] == "body:/flavor")
        .unwrap();
    assert_eq!(flavor["verdict"], "real");
    assert_eq!(
        flavor["samples"].as_array().unwrap().len(),
        4,
        "samples came back from the store"
    );
    stop(g).await;
}
