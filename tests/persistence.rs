//! Failures of the machine under the gateway are loud, and lose nothing
//! they need not: a state file that cannot be written refuses the start; a
//! rollback the disk will not take still stands, says so, and survives a
//! crash; the diff store keeps whole lines and logs its failures once a
//! minute; a second gateway on the same address is refused; and a log pipe
//! nobody reads never stalls a worker.
//!
//! A disk that refuses writes is made with a file-size limit (`prlimit`,
//! util-linux) on the running process, with SIGXFSZ ignored so a write past
//! it fails with EFBIG instead of killing the process.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::raw::{scraped, Running, BIN};
use support::*;

fn config(dir: &Path, old: &Origin, new: &Origin, extra: &str) -> std::path::PathBuf {
    let path = dir.join("switchyard.yaml");
    std::fs::write(
        &path,
        format!(
            "listen: \"127.0.0.1:0\"\nadmin: {{ listen: \"127.0.0.1:0\" }}\n{}{extra}",
            backends(old, new)
        ),
    )
    .unwrap();
    path
}

/// `switchyard serve` with SIGXFSZ ignored, so that a file-size limit set
/// later makes writes fail instead of killing it.
fn serve_limitable(config: &Path) -> Running {
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(format!("trap '' XFSZ; exec {BIN} serve -c {}", config.display()));
    Running::spawn(cmd, true).unwrap()
}

/// Sets the soft file-size limit of a running process.
fn limit_file_size(pid: u32, bytes: u64) {
    let out = Command::new("prlimit")
        .arg("--pid")
        .arg(pid.to_string())
        .arg(format!("--fsize={bytes}:"))
        .output()
        .expect("prlimit (util-linux) is needed: apt-get install util-linux");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

async fn admin_json(r: &Running, method: http::Method, path: &str, body: &str) -> Answer {
    send(
        &client(),
        method,
        &format!("{}{path}", r.admin_url()),
        &[("content-type", "application/json")],
        body.to_string(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_file_that_cannot_be_written_refuses_the_start() {
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("not-a-dir"), "x").unwrap();
    let cfg = config(
        dir.path(),
        &old,
        &new,
        &format!(
            "rollout: {{ state_file: \"{}\" }}\n",
            dir.path().join("not-a-dir/rollout.json").display()
        ),
    );
    let e = Running::start(&cfg, &[], true).err().expect("serve refused to start");
    assert!(e.contains("cannot write rollout state file"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_the_disk_refuses_stands_says_so_and_survives_a_crash() {
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state/rollout.json");
    let cfg = config(
        dir.path(),
        &old,
        &new,
        &format!("rollout: {{ state_file: \"{}\" }}\n", state.display()),
    );
    let r = serve_limitable(&cfg);
    assert_eq!(
        admin_json(&r, http::Method::PUT, "/rollout", "{\"percent\": 25}")
            .await
            .status,
        200
    );
    // From now on no file may grow past 4 KB: the state file's next version
    // (with a long reason) cannot be written; the rollback slot, made at
    // start, is overwritten in place.
    limit_file_size(r.child.id(), 4096);
    let reason = "x".repeat(6000);
    let a = admin_json(
        &r,
        http::Method::POST,
        "/rollback",
        &format!("{{\"reason\": \"{reason}\"}}"),
    )
    .await;
    assert_eq!(a.status, 200, "the rollback stands: {}", a.text());
    let s = a.json();
    assert_eq!(
        (s["phase"].as_str(), s["persisted"].as_bool()),
        (Some("rolled_back"), Some(false))
    );
    let metrics = get(&client(), &format!("{}/metrics", r.admin_url()), &[]).await.text();
    assert_eq!(scraped(&metrics, "switchyard_state_persist_failures_total", &[]), 1.0);
    let served_by = get(
        &client(),
        &format!("{}/x", r.proxy_url()),
        &[("x-switchyard-backend", "new")],
    )
    .await;
    assert_eq!(served_by.header("x-switchyard-served-by"), Some("old"));
    r.kill9();

    // Restarted without the limit: still rolled back, and it says why.
    let r = Running::start(&cfg, &[], true).unwrap();
    let s = get(&client(), &format!("{}/status", r.admin_url()), &[]).await.json();
    assert_eq!(
        (s["percent"].as_f64(), s["phase"].as_str()),
        (Some(0.0), Some("rolled_back")),
        "{s}"
    );
    assert!(
        r.log()
            .iter()
            .any(|l| l.contains("WARN") && l.contains("starting rolled back, from the rollback slot")),
        "{:?}",
        r.log()
    );
    let saved: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(saved["phase"], "rolled_back", "the state file caught up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_diff_store_keeps_whole_lines_and_logs_failures_once_a_minute() {
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("diffs.jsonl");
    let cfg = config(
        dir.path(),
        &old,
        &new,
        &format!(
            "shadow: {{ percent: 100 }}\ndiff: {{ store: {{ path: \"{}\" }} }}\n",
            store.display()
        ),
    );
    let r = serve_limitable(&cfg);
    limit_file_size(r.child.id(), 20_000);
    let c = client();
    for i in 0..200 {
        get(&c, &format!("{}/u/{i}", r.proxy_url()), &[]).await;
    }
    let failures = || async {
        let m = get(&client(), &format!("{}/metrics", r.admin_url()), &[]).await.text();
        scraped(&m, "switchyard_diff_store_write_failures_total", &[])
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while failures().await < 10.0 {
        assert!(std::time::Instant::now() < deadline, "the store never hit the limit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // An append the disk takes only part of is cut back right after: a
    // read in between may see it, so the file is read until it ends whole.
    let whole_by = std::time::Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = std::fs::read_to_string(&store).unwrap();
        if text.ends_with('\n') {
            break text;
        }
        assert!(
            std::time::Instant::now() < whole_by,
            "a torn last line stayed: {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(text.len() <= 20_000);
    for line in text.lines() {
        serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("torn line ({e}): {line}"));
    }
    let logged = r
        .log()
        .iter()
        .filter(|l| l.contains("cannot append to the diff store"))
        .count();
    assert_eq!(logged, 1, "one line a minute, with a count, not one per failure");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_gateway_on_the_same_address_is_refused() {
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let dir = tempfile::tempdir().unwrap();
    let first = Running::start(&config(dir.path(), &old, &new, ""), &[], true).unwrap();
    let second_dir = tempfile::tempdir().unwrap();
    let second = second_dir.path().join("second.yaml");
    std::fs::write(
        &second,
        format!(
            "listen: \"{}\"\nadmin: {{ listen: \"127.0.0.1:0\" }}\n{}",
            first.proxy,
            backends(&old, &new)
        ),
    )
    .unwrap();
    let e = Running::start(&second, &[], true).err().expect("refused");
    assert!(e.contains("another process already listens"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_pipe_nobody_reads_never_stalls_a_worker() {
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &old, &new, "logging: { access_log: true }\n");
    // After the first lines, nobody reads stderr: the pipe (64 KB) fills
    // within a few hundred access lines. Before, every worker then blocked
    // in its next log write, and requests hung.
    let r = Running::start(&cfg, &[], false).unwrap();
    // More lines than the access log's queue holds (2 MB, about 8,000).
    let c = client();
    let tasks: Vec<_> = (0..16)
        .map(|t| {
            let (c, url) = (c.clone(), r.proxy_url());
            tokio::spawn(async move {
                for i in 0..1250 {
                    assert_eq!(get(&c, &format!("{url}/p/{t}/{i}"), &[]).await.status, 200);
                }
            })
        })
        .collect();
    let served = tokio::time::timeout(Duration::from_secs(120), futures_util::future::join_all(tasks)).await;
    assert!(served.is_ok(), "requests stalled behind the log");
    let m = get(&c, &format!("{}/metrics", r.admin_url()), &[]).await.text();
    assert!(
        scraped(&m, "switchyard_log_lines_dropped_total", &[("sink", "access")]) > 0.0,
        "dropped lines are counted"
    );
}
