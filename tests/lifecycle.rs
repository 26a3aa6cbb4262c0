//! Behind a load balancer: a SIGTERM that lets the balancer notice before
//! the listeners close (`server.shutdown_delay`), and a config file that is
//! watched (`server.watch_config`, a Kubernetes ConfigMap update).

mod support;

use std::time::{Duration, Instant};

use support::raw::Running;
use support::{backends, client, eventually, gateway_from_file, get, metric, proxy, Origin};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_sigterm_readyz_fails_at_once_but_requests_are_served_for_the_delay() {
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("g.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen: \"127.0.0.1:0\"\nadmin: {{ listen: \"127.0.0.1:0\" }}\nserver: {{ workers: 1, shutdown_delay: \"6s\" }}\n{}",
            backends(&old, &new)
        ),
    )
    .unwrap();
    let g = Running::start(&cfg, &[], true).unwrap();
    let c = client();
    assert_eq!(get(&c, &format!("{}/readyz", g.admin_url()), &[]).await.status, 200);
    let term = Instant::now();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &g.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        if get(&c, &format!("{}/readyz", g.admin_url()), &[]).await.status == 503 {
            break;
        }
        assert!(Instant::now() < deadline, "/readyz still 200 after SIGTERM");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The balancer has not noticed yet: new connections are still served.
    let fresh = client();
    let a = get(&fresh, &format!("{}/x", g.proxy_url()), &[]).await;
    assert_eq!(a.status, 200, "a request during shutdown_delay was not served");
    assert!(
        term.elapsed() < Duration::from_secs(6),
        "the check itself took the whole delay"
    );
    // Then it stops, after the delay and not before.
    let mut g = g;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = g.child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(Instant::now() < deadline, "still running 15 s after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        term.elapsed() >= Duration::from_secs(6),
        "stopped after {:?}",
        term.elapsed()
    );
    assert!(g.log().iter().any(|l| l.contains("server.shutdown_delay")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_config_file_reloads_when_it_changes_and_a_bad_one_changes_nothing() {
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.yaml");
    let base = format!(
        "listen: \"127.0.0.1:0\"\nadmin: {{ listen: \"127.0.0.1:0\" }}\n{}",
        backends(&old, &new)
    );
    std::fs::write(&path, format!("{base}server: {{ workers: 1, watch_config: true }}\n")).unwrap();
    let g = gateway_from_file(&path);
    let c = client();
    let served_by = |a: &support::Answer| a.header("x-switchyard-served-by").map(str::to_string);
    assert_eq!(
        served_by(&get(&c, &format!("{}/x", proxy(&g)), &[]).await).as_deref(),
        Some("old")
    );

    // A ConfigMap update: the file is replaced by a new one.
    let next = dir.path().join("next.yaml");
    std::fs::write(
        &next,
        format!("{base}server: {{ workers: 1, watch_config: true, served_by_header: false }}\n"),
    )
    .unwrap();
    std::fs::rename(&next, &path).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if served_by(&get(&c, &format!("{}/x", proxy(&g)), &[]).await).is_none() {
            break;
        }
        assert!(Instant::now() < deadline, "the changed file was not reloaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        metric(&g, "switchyard_config_reloads_total", &[("result", "applied")]),
        1.0
    );

    // A broken file is refused, logged and counted; the running config stays.
    std::fs::write(
        &path,
        format!("{base}server: {{ workers: 1, watch_config: true, precent: 5 }}\n"),
    )
    .unwrap();
    eventually(Duration::from_secs(10), "the broken file refused", || {
        metric(&g, "switchyard_config_reloads_total", &[("result", "rejected")]) == 1.0
    })
    .await;
    assert!(served_by(&get(&c, &format!("{}/x", proxy(&g)), &[]).await).is_none());
    g.shutdown();
}
