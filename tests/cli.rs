//! The `switchyard` binary as an operator uses it: `check`, `serve` with
//! signals and restarts, and the admin client commands.

mod support;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::*;
use switchyard::rollout::controller::Actor;

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("SWITCHYARD_ADMIN_TOKEN")
        .env_remove("SWITCHYARD_CONFIG")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

struct Served {
    child: Child,
    proxy: u16,
    admin: u16,
}

impl Served {
    fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin)
    }

    fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_config(dir: &Path, old: &Origin, new: &Origin, proxy: u16, admin: u16, extra: &str) -> std::path::PathBuf {
    let path = dir.join("switchyard.yaml");
    std::fs::write(
        &path,
        format!(
            "listen: \"127.0.0.1:{proxy}\"\nadmin: {{ listen: \"127.0.0.1:{admin}\" }}\n{}rollout:\n  percent: 10\n  sticky: \"header:x-user-id\"\n  state_file: \"{}\"\nlogging: {{ level: warn }}\n{extra}",
            backends(old, new),
            dir.join("state/rollout.json").display()
        ),
    )
    .unwrap();
    path
}

async fn serve(config: &Path, extra_args: &[&str]) -> Served {
    let text = std::fs::read_to_string(config).unwrap();
    let port = |key: &str| -> u16 {
        let line = text.lines().find(|l| l.contains(key)).unwrap();
        let after = line.split("127.0.0.1:").nth(1).unwrap();
        after
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect::<String>()
            .parse()
            .unwrap()
    };
    let (proxy, admin) = (port("listen: \"127"), port("admin:"));
    let mut args = vec!["serve", "-c", config.to_str().unwrap()];
    args.extend_from_slice(extra_args);
    let child = Command::new(BIN)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let served = Served { child, proxy, admin };
    let c = client();
    let url = format!("{}/readyz", served.admin_url());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let req = http::Request::get(&url)
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        if let Ok(r) = c.request(req).await {
            if r.status() == 200 {
                return served;
            }
        }
        assert!(Instant::now() < deadline, "switchyard serve did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn check_accepts_the_example_and_reports_every_error_with_its_line() {
    let o = run(&["check", "config/switchyard.yaml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("config/switchyard.yaml: OK\n"));
    assert!(stdout(&o).contains("route payments"));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "backends:\n  old: { url: \"http://a:1\" }\n  new: { url: \"http://b:1\" }\nrollout:\n  percent: 150\nshadow:\n  percent: -3\n").unwrap();
    let o = run(&["check", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("bad.yaml: 2 errors"), "{e}");
    assert!(
        e.contains("bad.yaml:5: rollout.percent: percent must be between 0 and 100, got 150"),
        "{e}"
    );
    assert!(
        e.contains("bad.yaml:7: shadow.percent: percent must be between 0 and 100, got -3"),
        "{e}"
    );

    let o = run(&["check", "/nonexistent.yaml"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("/nonexistent.yaml: cannot read the config file"));
}

#[test]
fn check_describes_certificates_and_warns_about_unverified_backends() {
    let dir = tempfile::tempdir().unwrap();
    let cert =
        rcgen::generate_simple_self_signed(vec!["shop.example".to_string(), "*.shop.example".to_string()]).unwrap();
    let (c, k) = (dir.path().join("shop.pem"), dir.path().join("shop.key"));
    std::fs::write(&c, cert.cert.pem()).unwrap();
    std::fs::write(&k, cert.signing_key.serialize_pem()).unwrap();
    let config = dir.path().join("tls.yaml");
    std::fs::write(
        &config,
        format!(
            "tls:\n  listen: \"127.0.0.1:8443\"\n  certificates: [{{ cert_file: \"{}\", key_file: \"{}\" }}]\nbackends:\n  old: {{ url: \"http://a:1\" }}\n  new: {{ url: \"https://b\", tls: {{ insecure_skip_verify: true }} }}\n",
            c.display(),
            k.display()
        ),
    )
    .unwrap();
    let o = run(&["check", config.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("tls           127.0.0.1:8443 (TLS 1.2 and up; h2, http/1.1)"),
        "{out}"
    );
    assert!(
        out.contains("certificate shop.example covers shop.example, *.shop.example; expires "),
        "{out}"
    );
    assert!(
        out.contains("WARNING: backends.new.tls.insecure_skip_verify is on"),
        "{out}"
    );
    assert!(out.contains("new           https://b  (auto)"), "{out}");
}

#[test]
fn every_shipped_config_passes_check() {
    let mut files: Vec<String> = std::fs::read_dir("config")
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .filter(|p| p.ends_with(".yaml"))
        .collect();
    files.sort();
    let mut args = vec!["check"];
    args.extend(files.iter().map(String::as_str));
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_survives_kill_9_and_restart() {
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let dir = tempfile::tempdir().unwrap();
    let (p, a) = (free_port(), free_port());
    let cfg = write_config(dir.path(), &old, &new, p, a, "");
    let s = serve(&cfg, &[]).await;
    let admin = s.admin_url();

    let o = run(&[
        "rollout",
        "set",
        "50",
        "--admin",
        &admin,
        "--reason",
        "canary looks fine",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("rollout   50% of live traffic to new\nphase     progressing\n"),
        "{}",
        stdout(&o)
    );
    let o = run(&["rollback", "--admin", &admin]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("ROLLED BACK"), "{}", stdout(&o));
    s.kill9();

    // Restarted with the same config: the rollback stands, whatever the config says.
    let s = serve(&cfg, &[]).await;
    let o = run(&["status", "--json", "--admin", &s.admin_url()]);
    let st: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(st["phase"], "rolled_back");
    assert_eq!(st["percent"], 0.0);
    let c = client();
    for u in 0..50 {
        let ans = get(
            &c,
            &format!("http://127.0.0.1:{}/x", s.proxy),
            &[("x-user-id", &format!("u{u}"))],
        )
        .await;
        assert_eq!(ans.header("x-switchyard-served-by"), Some("old"));
    }
    let o = run(&["status", "--admin", &s.admin_url()]);
    assert!(stdout(&o).contains("phase     rolled_back"), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("(cli): switchyard rollback (50% → 0%)"),
        "{}",
        stdout(&o)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_state_file_stops_startup_unless_reset() {
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let dir = tempfile::tempdir().unwrap();
    let (p, a) = (free_port(), free_port());
    let cfg = write_config(dir.path(), &old, &new, p, a, "");
    std::fs::create_dir_all(dir.path().join("state")).unwrap();
    std::fs::write(dir.path().join("state/rollout.json"), "{\"percent\": 5,").unwrap();
    let o = run(&["serve", "-c", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("rollout state file") && e.contains("is corrupt") && e.contains("--reset-state"),
        "{e}"
    );

    let s = serve(&cfg, &["--reset-state"]).await;
    let o = run(&["status", "--json", "--admin", &s.admin_url()]);
    let st: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(st["percent"], 10.0, "started from the config's percent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_and_sigterm_stops_cleanly() {
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let dir = tempfile::tempdir().unwrap();
    let (p, a) = (free_port(), free_port());
    let cfg = write_config(dir.path(), &old, &new, p, a, "");
    let mut s = serve(&cfg, &[]).await;
    let c = client();
    let status_routes = |v: &serde_json::Value| -> Vec<String> {
        v["routes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect()
    };
    let st = get(&c, &format!("{}/status", s.admin_url()), &[]).await.json();
    assert_eq!(status_routes(&st), vec!["default"]);

    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        format!("{text}routes:\n  - name: pay\n    match: {{ path_prefix: /pay }}\n    rollout: {{ percent: 0 }}\n"),
    )
    .unwrap();
    let pid = s.child.id().to_string();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = get(&c, &format!("{}/status", s.admin_url()), &[]).await.json();
        if status_routes(&st) == vec!["pay", "default"] {
            break;
        }
        assert!(Instant::now() < deadline, "SIGHUP did not reload");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A broken edit is refused; the gateway keeps serving.
    std::fs::write(&cfg, "listen: [").unwrap();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    let o = run(&["reload", "--admin", &s.admin_url()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("the new config was rejected"), "{}", stderr(&o));
    assert_eq!(
        get(&c, &format!("http://127.0.0.1:{}/x", s.proxy), &[]).await.status,
        200
    );

    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(code) = s.child.try_wait().unwrap() {
            assert!(code.success(), "exit {code}");
            break;
        }
        assert!(Instant::now() < deadline, "SIGTERM did not stop the gateway");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_commands_report_failures_clearly() {
    let o = run(&["rollout", "set", "lots", "--admin", "http://127.0.0.1:1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("\"lots\" is not a percent"));

    let refusing = Refusing::new();
    let dead = refusing.addr;
    let o = run(&["status", "--admin", &format!("http://{dead}")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot reach the admin API"), "{}", stderr(&o));

    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let dir = tempfile::tempdir().unwrap();
    let (p, a) = (free_port(), free_port());
    let cfg = write_config(dir.path(), &old, &new, p, a, "");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        &format!("admin: {{ listen: \"127.0.0.1:{a}\" }}"),
        &format!("admin: {{ listen: \"127.0.0.1:{a}\", token: \"t0ken-t0ken\" }}"),
    );
    std::fs::write(&cfg, text).unwrap();
    let s = serve(&cfg, &[]).await;
    let o = run(&["rollout", "set", "30", "--admin", &s.admin_url()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("401 Unauthorized: this call needs the admin token")
            && stderr(&o).contains("--token, SWITCHYARD_ADMIN_TOKEN, or -c CONFIG"),
        "{}",
        stderr(&o)
    );
    let o = run(&[
        "rollout",
        "set",
        "30",
        "--admin",
        &s.admin_url(),
        "--token",
        "wrong-token",
    ]);
    assert!(
        stderr(&o).contains("401 Unauthorized: the admin token given does not match"),
        "a wrong token is told apart from a missing one: {}",
        stderr(&o)
    );
    let o = run(&[
        "rollout",
        "set",
        "101",
        "--admin",
        &s.admin_url(),
        "--token",
        "t0ken-t0ken",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("400 Bad Request: percent must be a number from 0 to 100, got 101"),
        "{}",
        stderr(&o)
    );
    // The token can also come from the config file.
    let o = run(&["rollout", "step", "-c", cfg.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&["rollout", "pause", "-c", cfg.to_str().unwrap()]);
    assert!(stdout(&o).contains("phase     paused"), "{}", stdout(&o));
    let o = run(&["rollout", "resume", "-c", cfg.to_str().unwrap()]);
    assert!(stdout(&o).contains("phase     progressing"), "{}", stdout(&o));
    let o = run(&["rollout", "promote", "-c", cfg.to_str().unwrap()]);
    assert!(
        stdout(&o).contains("rollout   100% of live traffic to new"),
        "{}",
        stdout(&o)
    );
    for format in ["text", "json", "html"] {
        let o = run(&["report", "--format", format, "-c", cfg.to_str().unwrap()]);
        assert!(o.status.success(), "{format}: {}", stderr(&o));
        let out = stdout(&o);
        match format {
            "json" => assert!(serde_json::from_str::<serde_json::Value>(&out).unwrap()["headline"].is_object()),
            "html" => assert!(out.starts_with("<!doctype html>")),
            _ => assert!(out.starts_with("rollout 100% (promoted)"), "{out}"),
        }
    }
}

/// `logging.level` quiets the log, not the access log: at `warn` every
/// request still gets its line (it once got none: the level filtered both).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_access_log_has_one_line_per_request() {
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let dir = tempfile::tempdir().unwrap();
    let (p, a) = (free_port(), free_port());
    let cfg = write_config(dir.path(), &old, &new, p, a, "");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "logging: { level: warn }",
        "logging: { level: warn, format: json, access_log: true }",
    );
    std::fs::write(&cfg, text).unwrap();
    let log = dir.path().join("stderr.log");
    let child = Command::new(BIN)
        .args(["serve", "-c", cfg.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let s = Served {
        child,
        proxy: p,
        admin: a,
    };
    let c = client();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let req = http::Request::get(format!("{}/readyz", s.admin_url()))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        if c.request(req).await.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let answer = get(&c, &format!("http://127.0.0.1:{p}/users/7?x=1"), &[("x-user-id", "u1")]).await;
    assert_eq!(answer.status, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    let line = loop {
        let text = std::fs::read_to_string(&log).unwrap();
        if let Some(l) = text.lines().find(|l| l.contains("switchyard::access")) {
            break l.to_string();
        }
        assert!(Instant::now() < deadline, "no access log line in:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["method"], "GET");
    assert_eq!(v["path"], "/users/7");
    assert_eq!(v["route"], "default");
    assert_eq!(v["side"], "old");
    assert_eq!(v["status"], 200);
    assert_eq!(v["bytes"], answer.body.len() as u64);
    assert_eq!(v["complete"], true);
    assert!(v["latency_ms"].as_f64().unwrap() > 0.0);
    let text = std::fs::read_to_string(&log).unwrap();
    let chatty: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("\"INFO\"") && !l.contains("switchyard::access"))
        .collect();
    assert!(chatty.is_empty(), "info lines at level warn: {chatty:?}");
}

/// `switchyard rollback --admin http://PROXY` (the proxy port, an easy slip
/// in an incident) reaches no backend and says where the admin API is; a
/// server that is no Switchyard at all is named as such.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_pointed_at_the_proxy_port_changes_nothing_and_says_where_the_admin_api_is() {
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("g.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen: \"127.0.0.1:0\"\nadmin: {{ listen: \"127.0.0.1:0\" }}\nserver: {{ workers: 1 }}\n{}rollout: {{ percent: 25 }}\n",
            backends(&old, &new)
        ),
    )
    .unwrap();
    let g = support::raw::Running::start(&cfg, &[], false).unwrap();
    let o = run(&["rollback", "--admin", &g.proxy_url()]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.contains("not its admin API") && err.contains(&g.admin.port().to_string()),
        "names the admin API's address: {err}"
    );
    assert_eq!(old.count() + new.count(), 0, "no backend saw the call");
    let status = run(&["status", "--json", "--admin", &g.admin_url()]);
    let status: serde_json::Value = serde_json::from_str(&stdout(&status)).unwrap();
    assert_eq!(status["percent"], serde_json::json!(25.0), "nothing rolled back");

    // An origin that is not Switchyard: refused as such, whatever it says.
    let o = run(&["status", "--admin", &old.url()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("is not a Switchyard admin API"), "{}", stderr(&o));
}

/// A backend that refuses connections is named in the log line, with the
/// system's reason; the client's 502 names neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_failure_is_logged_with_the_address_and_the_reason() {
    let old = Origin::named("old").await;
    let dead = Refusing::new();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("g.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen: \"127.0.0.1:0\"\nadmin: {{ listen: \"127.0.0.1:0\" }}\nserver: {{ workers: 1 }}\nbackends: {{ old: {{ url: \"{}\" }}, new: {{ url: \"{}\" }} }}\nrollout: {{ percent: 100 }}\n",
            old.url(),
            dead.url()
        ),
    )
    .unwrap();
    let g = support::raw::Running::start(&cfg, &[], true).unwrap();
    let a = get(&client(), &format!("{}/x", g.proxy_url()), &[]).await;
    assert_eq!(a.status, 502);
    assert!(
        !a.text().contains(&dead.addr.to_string()),
        "the client is not told the backend's address"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = g.log();
        if let Some(line) = log.iter().find(|l| l.contains("upstream request failed")) {
            assert!(line.contains(&dead.addr.to_string()), "{line}");
            assert!(line.contains("refused"), "the OS's reason: {line}");
            break;
        }
        assert!(Instant::now() < deadline, "no log line: {log:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `status --watch` draws a frame a second and follows a change; piped, the
/// frames follow each other under a time line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_watch_redraws_and_follows_a_change() {
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let g = gateway(&format!(
        "{}rollout: {{ steps: [1, 5, {{ percent: 25, pause: true }}, 100] }}\n",
        backends(&old, &new)
    ));
    let mut child = Command::new(BIN)
        .args(["status", "--watch", "--admin", &admin(&g)])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let rx = support::raw::stdout_lines(&mut child);
    let next_frame = |rx: &std::sync::mpsc::Receiver<String>| -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut frame = Vec::new();
        loop {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("a frame every second");
            if line.starts_with("── ") && !frame.is_empty() {
                return frame.join("\n");
            }
            frame.push(line);
        }
    };
    let first = next_frame(&rx);
    assert!(first.contains("rollout   0% of live traffic to new"), "{first}");
    assert!(first.contains("steps     1% ─ 5% ─ 25% (pause) ─ 100%"), "{first}");
    for _ in 0..3 {
        g.controller.step(&Actor::new("sre", "next")).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let frame = loop {
        let f = next_frame(&rx);
        if f.contains("rollout   25%") {
            break f;
        }
        assert!(Instant::now() < deadline, "never showed the change: {f}");
    };
    assert!(frame.contains("[25% (pause)]"), "the current step is marked: {frame}");
    assert!(frame.contains("phase     paused"), "{frame}");
    assert!(
        frame.contains("recent changes") && frame.contains("sre (next)"),
        "{frame}"
    );
    let _ = child.kill();
    let _ = child.wait();
    g.shutdown();
}
