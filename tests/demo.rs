//! `switchyard demo` tells the truth: its report lists exactly the planted
//! differences, and the per-response timestamp and trace id come out as noise.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use support::*;
use switchyard::demo::{Demo, DemoArgs};

fn fields_by_verdict(report: &serde_json::Value, verdict: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    for e in report["endpoints"].as_array().unwrap() {
        let set: BTreeSet<String> = e["fields"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["verdict"] == verdict)
            .map(|f| f["field"].as_str().unwrap().to_string())
            .collect();
        if !set.is_empty() {
            out.insert(e["endpoint"].as_str().unwrap().to_string(), set);
        }
    }
    out
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_report_lists_exactly_the_planted_differences() {
    let args = DemoArgs {
        requests: Some(3000),
        ..DemoArgs::default()
    };
    let demo = Demo::start(&args).await.unwrap();
    let progress = std::sync::Arc::new(switchyard::demo::traffic::Progress::default());
    switchyard::demo::traffic::run(
        switchyard::demo::traffic::Plan {
            proxy: demo.proxy_url(),
            requests: args.requests,
            deadline: None,
            rate: 1000,
            users: 5000,
            workers: 16,
        },
        progress.clone(),
    )
    .await;
    // Mirrors run at the lowest CPU priority: on a busy machine they are
    // the last to get a core, and many may be shed by the shadow side's
    // bounds (on a 2-core machine running other tests, most of them). Every
    // one is accounted for: it ends in a comparison result (`dropped` among
    // them, when the analysis queue is full), or is shed before one. The
    // mirror goes to the side that did not serve: new, or old for users
    // already on new.
    let shed = || {
        ["old", "new"]
            .iter()
            .map(|b| {
                metric(
                    &demo.gateway,
                    "switchyard_shadow_requests_total",
                    &[("backend", b), ("outcome", "dropped")],
                ) as u64
            })
            .sum::<u64>()
    };
    let compared = || metric(&demo.gateway, "switchyard_comparisons_total", &[]) as u64;
    eventually(Duration::from_secs(120), "every request compared or shed", || {
        compared() + shed() == 3000
    })
    .await;
    // The report is judged on what was compared, which must be enough.
    assert!(
        demo.comparisons() >= 300,
        "only {} of 3000 requests were compared",
        demo.comparisons()
    );
    let report = get(&client(), &format!("{}/report.json", demo.admin_url()), &[])
        .await
        .json();

    let real = fields_by_verdict(&report, "real");
    let want: BTreeMap<String, BTreeSet<String>> = [
        ("GET /users/{id}", set(&["body:/user_name", "body:/username"])),
        ("GET /users/{id}/orders", set(&["body:/orders/*/total"])),
        // The planted 404: the status, and the 404 body in place of the order.
        (
            "GET /orders/{id}",
            set(&["status", "body:/error", "body:/id", "body:/items", "body:/status"]),
        ),
        ("GET /search", set(&["body:/next_cursor"])),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(real, want, "real differences");

    // The noise every response carries is classified as noise everywhere.
    let noise = fields_by_verdict(&report, "noise");
    for ep in [
        "GET /users/{id}",
        "GET /users/{id}/orders",
        "GET /orders/{id}",
        "GET /search",
        "GET /health",
    ] {
        let n = noise.get(ep).unwrap_or_else(|| panic!("no noise on {ep}"));
        assert!(
            n.contains("body:/meta/generated_at") && n.contains("body:/meta/trace_id"),
            "{ep}: {n:?}"
        );
    }
    // Reordered tags are declared unordered: nothing reported.
    let search = report["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["endpoint"] == "GET /search")
        .unwrap();
    assert!(search["fields"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["field"] != "body:/tags"));
    // The slow endpoint shows it: +30 % of a 10 ms answer. Other tests share
    // the machine and add their own delay to both sides alike, so the check
    // is on the gap as well as the ratio. It holds on a saturated machine
    // too (3 of 3 with both cores spun; it failed 6 of 8 busy runs when the
    // mirrors were timed by their starved reader): each side is timed by
    // the kernel from its own write, and a mirrored new whose old went out
    // apart from it is held against old's twin, sent with it.
    let (old_p50, new_p50) = (
        search["latency"]["old"]["p50_ms"].as_f64().unwrap(),
        search["latency"]["new"]["p50_ms"].as_f64().unwrap(),
    );
    assert!(
        new_p50 / old_p50 > 1.1 && new_p50 - old_p50 > 1.5,
        "search p50 old {old_p50} ms, new {new_p50} ms"
    );
    // /health has nothing real.
    assert!(!real.contains_key("GET /health"));
    assert_eq!(progress.failed.load(std::sync::atomic::Ordering::Relaxed), 0);
    tokio::task::spawn_blocking(move || demo.stop()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_command_runs_to_completion() {
    let out = tokio::task::spawn_blocking(|| {
        std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args([
                "demo",
                "--port",
                "0",
                "--admin-port",
                "0",
                "--requests",
                "600",
                "--rate",
                "600",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("  proxy    http://127.0.0.1:"), "{text}");
    assert!(text.contains("  report   http://127.0.0.1:"));
    assert!(text.contains("/report"));
    assert!(text.contains("  metrics  http://127.0.0.1:"));
    assert!(text.contains("switchyard rollout set 25"));
    assert!(text.contains("REAL  body:/user_name"), "{text}");
    assert!(text.lines().count() < 60, "the demo floods the terminal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_rollout_steps_the_guard_rolls_back_the_demo() {
    let args = DemoArgs {
        rollout_steps: true,
        ..DemoArgs::default()
    };
    let demo = Demo::start(&args).await.unwrap();
    assert_eq!(demo.gateway.controller.state().percent, 1.0);
    let progress = std::sync::Arc::new(switchyard::demo::traffic::Progress::default());
    let plan = switchyard::demo::traffic::Plan {
        proxy: demo.proxy_url(),
        requests: Some(20_000),
        deadline: Some(std::time::Instant::now() + Duration::from_secs(30)),
        rate: 500,
        users: 5000,
        workers: 8,
    };
    let traffic = tokio::spawn(switchyard::demo::traffic::run(plan, progress));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let s = demo.gateway.controller.state();
        if s.phase == switchyard::rollout::state::Phase::RolledBack {
            let why = s.last_change.unwrap().why;
            assert!(why.starts_with("guard: diff_rate failed"), "{why}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the guard never rolled back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    traffic.abort();
    tokio::task::spawn_blocking(move || demo.stop()).await.unwrap();
}

/// README: without `--rollout-steps`, `switchyard rollout set 25` moves
/// traffic and stays. The guard looks several times at 25 % with enough
/// comparisons to judge, and leaves it there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_rollout_steps_a_percent_set_by_hand_stays() {
    let demo = Demo::start(&DemoArgs::default()).await.unwrap();
    let progress = std::sync::Arc::new(switchyard::demo::traffic::Progress::default());
    let plan = switchyard::demo::traffic::Plan {
        proxy: demo.proxy_url(),
        requests: None,
        deadline: Some(std::time::Instant::now() + Duration::from_secs(60)),
        rate: 400,
        users: 5000,
        workers: 8,
    };
    let traffic = tokio::spawn(switchyard::demo::traffic::run(plan, progress));
    let actor = switchyard::rollout::controller::Actor::new("test", "as the README says");
    demo.gateway.controller.set_percent(25.0, &actor).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let s = demo.gateway.controller.state();
        assert_eq!(s.percent, 25.0, "the demo's guard moved it: {:?}", s.last_change);
        let g = demo.gateway.guard.lock().unwrap().clone();
        let judged = g
            .checks
            .iter()
            .find(|c| c.name == "diff_rate")
            .is_some_and(|c| c.value.is_some());
        if judged && g.test.is_some_and(|t| t.looks >= 3) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the guard never judged: {g:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    traffic.abort();
    tokio::task::spawn_blocking(move || demo.stop()).await.unwrap();
}

/// Ctrl-C and SIGTERM stop the traffic at once, say so, print the report
/// and leave nothing behind in the temp directory (nor do demos killed
/// before: their directories go at the next start).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_demo_stops_its_traffic_and_cleans_up() {
    for signal in ["-INT", "-TERM"] {
        let tmp = tempfile::tempdir().unwrap();
        let abandoned = tmp.path().join("switchyard-demo-4000000000-7");
        std::fs::create_dir_all(abandoned.join("x")).unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["demo", "--port", "0", "--admin-port", "0"])
            .env("TMPDIR", tmp.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let rx = support::raw::stdout_lines(&mut child);
        let mut lines = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        // Running, and far enough along that the report has a real
        // difference to show: on a busy machine the first progress line
        // can come before the first comparison.
        let real_diffs = |l: &String| {
            l.split("real diffs")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|n| n > 0)
        };
        while !lines.iter().any(real_diffs) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            lines.push(
                rx.recv_timeout(left)
                    .expect("the demo reports a real difference in its progress within 30 s"),
            );
        }
        assert!(!abandoned.exists(), "a dead demo's state directory is removed at start");
        let ok = std::process::Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(std::time::Instant::now() < deadline, "{signal}: the demo did not exit");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(status.success(), "{signal}: {status}");
        lines.extend(rx.try_iter());
        let text = lines.join("\n");
        assert!(text.contains("interrupted: traffic stopped"), "{signal}: {text}");
        assert!(text.contains("REAL"), "{signal}: the report is printed: {text}");
        let left: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(left.is_empty(), "{signal}: left behind {left:?}");
    }
}
