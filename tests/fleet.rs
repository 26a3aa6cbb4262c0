//! Many gateways, one rollout: a real etcd on loopback and three
//! `switchyard serve` processes sharing a rollout through it.
//!
//! Needs etcd (`bash .ci/run` installs Debian's etcd-server); without it
//! every test here fails and says so.

mod support;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Method, Request};
use hyper::body::Incoming;
use serde_json::{json, Value};

use support::etcd::Etcd;
use support::raw::Running;
use support::{client, get, json_response, send, Answer, HttpClient, Origin};

/// The lease of every instance: a dead one leaves within it.
const TTL_S: u64 = 2;

struct Fleet {
    etcd: Etcd,
    dir: tempfile::TempDir,
    gateways: Vec<Option<Running>>,
    old: Origin,
    new: Origin,
    extra: String,
    c: HttpClient,
}

impl Fleet {
    async fn start(n: usize, extra: &str) -> Fleet {
        Self::with_origins(n, extra, Origin::named("old").await, Origin::named("new").await).await
    }

    async fn with_origins(n: usize, extra: &str, old: Origin, new: Origin) -> Fleet {
        let mut f = Fleet {
            etcd: Etcd::start(),
            dir: tempfile::tempdir().unwrap(),
            gateways: Vec::new(),
            old,
            new,
            extra: extra.to_string(),
            c: client(),
        };
        for i in 0..n {
            f.gateways.push(None);
            f.launch(i);
        }
        f.wait_all(
            "every instance registered and on one epoch",
            Duration::from_secs(20),
            |s| s["fleet"]["instances"].as_array().is_some_and(|a| a.len() == n) && s["fleet"]["converged"] == true,
        )
        .await;
        f
    }

    fn config(&self, i: usize) -> PathBuf {
        let path = self.dir.path().join(format!("g{i}.yaml"));
        let yaml = format!(
            r#"listen: "127.0.0.1:0"
admin: {{ listen: "127.0.0.1:0" }}
server: {{ workers: 1 }}
backends: {{ old: {{ url: "{old}" }}, new: {{ url: "{new}" }} }}
rollout:
  sticky: "header:x-user"
  state_file: "{state}"
  store: {{ etcd: {{ endpoints: ["{etcd}"], prefix: "/switchyard/test", lease_ttl: "{TTL_S}s", dial_timeout: "1s", instance: "g{i}" }} }}
{extra}
"#,
            old = self.old.url(),
            new = self.new.url(),
            state = self.dir.path().join(format!("state-{i}.json")).display(),
            etcd = self.etcd.url(),
            extra = self.extra,
        );
        std::fs::write(&path, yaml).unwrap();
        path
    }

    fn launch(&mut self, i: usize) {
        let g = Running::start(&self.config(i), &[], true).unwrap_or_else(|e| panic!("g{i}: {e}"));
        self.gateways[i] = Some(g);
    }

    fn g(&self, i: usize) -> &Running {
        self.gateways[i]
            .as_ref()
            .unwrap_or_else(|| panic!("g{i} is not running"))
    }

    fn kill9(&mut self, i: usize) {
        if let Some(g) = self.gateways[i].take() {
            g.kill9();
        }
    }

    fn running(&self) -> Vec<usize> {
        (0..self.gateways.len())
            .filter(|i| self.gateways[*i].is_some())
            .collect()
    }

    async fn status(&self, i: usize) -> Value {
        get(&self.c, &format!("{}/status", self.g(i).admin_url()), &[])
            .await
            .json()
    }

    async fn put_percent(&self, i: usize, percent: f64, epoch: Option<u64>) -> Answer {
        let mut body = json!({ "percent": percent, "who": format!("test via g{i}") });
        if let Some(e) = epoch {
            body["epoch"] = json!(e);
        }
        send(
            &self.c,
            Method::PUT,
            &format!("{}/rollout", self.g(i).admin_url()),
            &[("content-type", "application/json")],
            body.to_string(),
        )
        .await
    }

    async fn post(&self, i: usize, verb: &str) -> Answer {
        send(
            &self.c,
            Method::POST,
            &format!("{}/{verb}", self.g(i).admin_url()),
            &[],
            "",
        )
        .await
    }

    async fn metrics(&self, i: usize) -> String {
        get(&self.c, &format!("{}/metrics", self.g(i).admin_url()), &[])
            .await
            .text()
    }

    /// The side that served user `user` through instance `i`.
    async fn side(&self, i: usize, user: &str) -> String {
        let a = get(&self.c, &format!("{}/x", self.g(i).proxy_url()), &[("x-user", user)]).await;
        assert_eq!(a.status, 200, "g{i}: {}", a.text());
        a.header("x-switchyard-served-by").unwrap_or("?").to_string()
    }

    /// Waits until `cond` holds for the status of every running instance.
    async fn wait_all(&self, what: &str, within: Duration, cond: impl Fn(&Value) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + within;
        loop {
            let mut all = Vec::new();
            for i in self.running() {
                all.push(self.status(i).await);
            }
            if all.iter().all(&cond) {
                return all;
            }
            if Instant::now() > deadline {
                panic!("timed out after {within:?} waiting for: {what}; statuses: {all:#?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn epoch_of(a: &Answer) -> u64 {
    a.json()["fleet"]["epoch"]
        .as_u64()
        .unwrap_or_else(|| panic!("no epoch in {}", a.text()))
}

fn scraped(text: &str, name: &str) -> f64 {
    support::raw::scraped(text, name, &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_on_any_instance_reaches_every_instance_and_users_stay_put() {
    let f = Fleet::start(3, "  guard: { enabled: false }").await;
    let mut seconds = Vec::new();
    let users: Vec<String> = (0..12).map(|u| format!("user-{u}")).collect();
    for p in 1..=100u32 {
        let via = (p as usize) % 3;
        let a = f.put_percent(via, f64::from(p), None).await;
        assert_eq!(a.status, 200, "{}", a.text());
        let epoch = epoch_of(&a);
        let all = f
            .wait_all(
                &format!("{p}% (epoch {epoch}) applied and timed everywhere"),
                Duration::from_secs(10),
                |s| {
                    s["fleet"]["epoch"].as_u64() >= Some(epoch)
                        && s["fleet"]["last_convergence"]["epoch"].as_u64() >= Some(epoch)
                },
            )
            .await;
        assert!(all.iter().all(|s| s["percent"] == json!(f64::from(p))));
        seconds.push(all[0]["fleet"]["last_convergence"]["seconds"].as_f64().unwrap());
        // The split is the same function of the user on every instance.
        for u in &users {
            let sides = [f.side(0, u).await, f.side(1, u).await, f.side(2, u).await];
            assert!(
                sides.iter().all(|s| *s == sides[0]),
                "at {p}%, {u} was served by {sides:?}"
            );
        }
    }
    seconds.sort_by(f64::total_cmp);
    let p50 = seconds[seconds.len() / 2] * 1000.0;
    let p99 = seconds[seconds.len() * 99 / 100] * 1000.0;
    eprintln!(
        "convergence over 100 changes: p50 {p50:.1} ms, p99 {p99:.1} ms, max {:.1} ms",
        seconds[seconds.len() - 1] * 1000.0
    );
    // Observed by whichever instance ran the guard at the time: one per change.
    let mut observed = 0.0;
    for i in 0..3 {
        observed += scraped(&f.metrics(i).await, "switchyard_rollout_convergence_seconds_count");
    }
    assert!(
        observed >= 90.0,
        "convergence observed {observed} times for 100 changes"
    );
    // Everyone is on new at 100 %.
    for u in &users {
        assert_eq!(f.side(1, u).await, "new");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_raises_on_one_epoch_one_wins_and_a_rollback_always_wins() {
    let f = Fleet::start(3, "  guard: { enabled: false }").await;
    let a = f.put_percent(0, 5.0, None).await;
    let epoch = epoch_of(&a);
    f.wait_all("5% everywhere", Duration::from_secs(10), |s| {
        s["fleet"]["epoch"].as_u64() == Some(epoch)
    })
    .await;

    // Two SREs looked at the same epoch and raise at once.
    let (r1, r2) = tokio::join!(f.put_percent(1, 25.0, Some(epoch)), f.put_percent(2, 50.0, Some(epoch)));
    let mut codes = [r1.status.as_u16(), r2.status.as_u16()];
    codes.sort();
    assert_eq!(codes, [200, 409], "{} / {}", r1.text(), r2.text());
    let (won, lost) = if r1.status == 200 { (&r1, &r2) } else { (&r2, &r1) };
    let lost = lost.json();
    assert!(
        lost["error"].as_str().unwrap().contains("nothing was changed"),
        "{lost}"
    );
    assert!(
        lost["current"]["percent"].is_number() && lost["epoch"].is_number(),
        "{lost}"
    );
    let winner = won.json()["percent"].clone();
    let e = epoch_of(won);
    f.wait_all("the winner everywhere", Duration::from_secs(10), |s| {
        s["fleet"]["epoch"].as_u64() == Some(e) && s["percent"] == winner
    })
    .await;

    // A raise racing a rollback: the rollback wins, on every instance.
    for round in 0..10 {
        let base = epoch_of(&f.put_percent(round % 3, 10.0, None).await);
        f.wait_all("10% everywhere", Duration::from_secs(10), |s| {
            s["fleet"]["epoch"].as_u64() >= Some(base)
        })
        .await;
        let raiser = (round + 1) % 3;
        let roller = (round + 2) % 3;
        let (raise, back) = tokio::join!(f.put_percent(raiser, 60.0, None), f.post(roller, "rollback"));
        assert_eq!(back.status, 200, "{}", back.text());
        assert!([200, 409].contains(&raise.status.as_u16()), "{}", raise.text());
        f.wait_all(
            &format!("round {round}: rolled back everywhere"),
            Duration::from_secs(10),
            |s| {
                s["phase"] == "rolled_back"
                    && s["fleet"]["converged"] == true
                    && s["fleet"]["rollback_pending"] == false
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_etcd_down_a_rollback_applies_at_once_and_wins_when_it_is_back() {
    let mut f = Fleet::start(3, "  guard: { enabled: false }").await;
    let epoch = epoch_of(&f.put_percent(0, 100.0, None).await);
    f.wait_all("100% everywhere", Duration::from_secs(10), |s| {
        s["fleet"]["epoch"].as_u64() == Some(epoch)
    })
    .await;

    f.etcd.kill();
    f.wait_all("every instance sees the store down", Duration::from_secs(10), |s| {
        s["fleet"]["store"]["up"] == false
    })
    .await;
    assert_eq!(scraped(&f.metrics(1).await, "switchyard_store_up"), 0.0);
    // Still serving, with the last state applied.
    assert_eq!(f.side(1, "u1").await, "new");

    let back = f.post(0, "rollback").await;
    assert_eq!(back.status, 200, "{}", back.text());
    for u in ["u1", "u2", "u3", "u4"] {
        assert_eq!(
            f.side(0, u).await,
            "old",
            "the rollback applies on its instance at once"
        );
    }
    let s0 = f.status(0).await;
    assert_eq!(s0["fleet"]["rollback_pending"], true, "{s0:#}");
    assert_eq!(scraped(&f.metrics(0).await, "switchyard_rollback_pending"), 1.0);
    // Nothing but a rollback changes while the store is away.
    let raise = f.put_percent(1, 50.0, None).await;
    assert_eq!(raise.status, 503, "{}", raise.text());
    assert!(raise.text().contains("nothing changed"), "{}", raise.text());
    assert_eq!(f.status(1).await["percent"], json!(100.0));

    // Restarted before the store is back, it is still rolled back, and
    // still owes the store its rollback.
    f.kill9(0);
    f.launch(0);
    assert_eq!(f.side(0, "u1").await, "old");
    assert_eq!(f.status(0).await["fleet"]["rollback_pending"], true);

    f.etcd.restart();
    f.wait_all(
        "every instance rolled back once etcd is back",
        Duration::from_secs(20),
        |s| {
            s["phase"] == "rolled_back"
                && s["fleet"]["store"]["up"] == true
                && s["fleet"]["rollback_pending"] == false
                && s["fleet"]["converged"] == true
        },
    )
    .await;
    for i in 0..3 {
        assert_eq!(f.side(i, "u1").await, "old");
        assert_eq!(scraped(&f.metrics(i).await, "switchyard_store_up"), 1.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instance_leaves_after_its_lease_and_rejoins_at_the_current_epoch() {
    let mut f = Fleet::start(3, "  guard: { enabled: false }").await;
    f.kill9(2);
    let killed = Instant::now();
    f.wait_all("g2 gone from the fleet", Duration::from_secs(TTL_S + 8), |s| {
        s["fleet"]["instances"]
            .as_array()
            .is_some_and(|a| a.iter().all(|m| m["id"] != "g2"))
    })
    .await;
    eprintln!(
        "g2 left the fleet {:?} after kill -9 (lease {TTL_S} s)",
        killed.elapsed()
    );
    let epoch = epoch_of(&f.put_percent(0, 25.0, None).await);
    f.launch(2);
    let all = f
        .wait_all("g2 back, on the current epoch", Duration::from_secs(10), |s| {
            s["fleet"]["instances"].as_array().is_some_and(|a| a.len() == 3) && s["fleet"]["converged"] == true
        })
        .await;
    for s in &all {
        assert_eq!(s["fleet"]["epoch"].as_u64(), Some(epoch), "{s:#}");
        assert_eq!(s["percent"], json!(25.0));
    }
    // What an SRE reads.
    let out = std::process::Command::new(support::raw::BIN)
        .args(["status", "--admin", &f.g(0).admin_url()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("fleet     epoch {epoch}, store up")), "{text}");
    assert!(text.contains("every instance applied this epoch"), "{text}");
    for id in ["g0", "g1", "g2"] {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(id)),
            "{id} listed:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_runs_on_one_instance_moves_when_it_dies_and_judges_the_whole_fleet() {
    // new fails every request: the fleet's guard must roll it back.
    let failing = Origin::start(Arc::new(|_req: Request<Incoming>| {
        Box::pin(async { json_response(500, json!({ "error": "broken" })) })
    }))
    .await;
    let extra = "  guard: { interval: \"200ms\", min_requests: 20, max_error_rate_increase: 0.05 }";
    let mut f = Fleet::with_origins(3, extra, Origin::named("old").await, failing).await;
    let all = f
        .wait_all("one leader, known to all", Duration::from_secs(10), |s| {
            s["fleet"]["leader"].is_string()
        })
        .await;
    let leader = all[0]["fleet"]["leader"].as_str().unwrap().to_string();
    assert!(all.iter().all(|s| s["fleet"]["leader"] == leader.as_str()));
    assert_eq!(all.iter().filter(|s| s["fleet"]["leading"] == true).count(), 1);
    let dead: usize = leader.trim_start_matches('g').parse().unwrap();
    let killed = Instant::now();
    f.kill9(dead);
    let all = f
        .wait_all("another instance runs the guard", Duration::from_secs(TTL_S + 8), |s| {
            s["fleet"]["leader"].is_string() && s["fleet"]["leader"] != leader.as_str()
        })
        .await;
    let took = killed.elapsed();
    eprintln!(
        "the guard moved from {leader} to {} in {took:?} (lease {TTL_S} s)",
        all[0]["fleet"]["leader"]
    );
    assert!(took < Duration::from_secs(TTL_S + 4), "took {took:?}");

    // Traffic only through the instance that does not run the guard: the
    // leader can only judge it from that instance's window.
    let new_leader = all[0]["fleet"]["leader"].as_str().unwrap().to_string();
    let leader_i: usize = new_leader.trim_start_matches('g').parse().unwrap();
    let other = f.running().into_iter().find(|i| *i != leader_i).unwrap();
    let epoch = epoch_of(&f.put_percent(other, 50.0, None).await);
    f.wait_all("50% everywhere", Duration::from_secs(10), |s| {
        s["fleet"]["epoch"].as_u64() >= Some(epoch)
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut n = 0;
    loop {
        for _ in 0..5 {
            let user = format!("u{n}");
            let _ = get(&f.c, &format!("{}/x", f.g(other).proxy_url()), &[("x-user", &user)]).await;
            n += 1;
        }
        let s = f.status(leader_i).await;
        if s["phase"] == "rolled_back" {
            assert_eq!(s["last_change"]["who"], "guard", "{s:#}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the fleet's guard did not act on 100% errors: {s:#}"
        );
    }
    // Every instance shows what the leader did and why: it judged requests
    // it never served, from the other instance's window.
    let all = f
        .wait_all("the guard's action shown everywhere", Duration::from_secs(10), |s| {
            s["guard"]["last_action"]
                .as_str()
                .is_some_and(|a| a.starts_with("guard: error_rate failed"))
        })
        .await;
    for s in &all {
        assert_eq!(s["guard"]["leader"], new_leader.as_str(), "{s:#}");
    }
    let served_by_leader = support::raw::scraped(&f.metrics(leader_i).await, "switchyard_requests_total", &[]);
    assert_eq!(served_by_leader, 0.0, "the leader served nothing itself");
    let served_by_other = support::raw::scraped(
        &f.metrics(other).await,
        "switchyard_requests_total",
        &[("backend", "new")],
    );
    assert!(served_by_other >= 20.0, "{served_by_other}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_report_is_the_sum_of_the_instances_reports() {
    let f = Fleet::start(3, "  guard: { enabled: false }\nshadow: { percent: 100 }").await;
    let sent = [12usize, 7, 4];
    for (i, n) in sent.iter().enumerate() {
        for k in 0..*n {
            let a = get(&f.c, &format!("{}/item/{k}", f.g(i).proxy_url()), &[("x-user", "u")]).await;
            assert_eq!(a.status, 200);
        }
    }
    let mut reports = Vec::new();
    for (i, n) in sent.iter().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = get(&f.c, &format!("{}/report.json", f.g(i).admin_url()), &[])
                .await
                .json();
            if r["headline"]["comparisons"].as_u64() == Some(*n as u64) {
                reports.push(r);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "g{i} compared {} of {n}",
                r["headline"]["comparisons"]
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let fleet = get(&f.c, &format!("{}/report.json?scope=fleet", f.g(1).admin_url()), &[]).await;
    assert_eq!(fleet.status, 200, "{}", fleet.text());
    let fleet = fleet.json();
    let sum = |key: &str| {
        reports
            .iter()
            .map(|r| r["headline"][key].as_u64().unwrap())
            .sum::<u64>()
    };
    for key in [
        "comparisons",
        "real_diffs",
        "matched",
        "served_old",
        "served_new",
        "errors",
    ] {
        assert_eq!(fleet["headline"][key].as_u64(), Some(sum(key)), "{key}");
    }
    assert_eq!(fleet["gateways"], json!(3));
    // Exactly the merge of the three, endpoint by endpoint.
    let parts: Vec<switchyard::report::model::Report> = reports
        .iter()
        .map(|r| serde_json::from_value(r.clone()).unwrap())
        .collect();
    let merged = serde_json::to_value(switchyard::report::model::Report::merge(&parts).unwrap()).unwrap();
    assert_eq!(fleet["endpoints"], merged["endpoints"]);
    // And through the CLI.
    let out = std::process::Command::new(support::raw::BIN)
        .args(["report", "--fleet", "--format", "json", "--admin", &f.g(2).admin_url()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cli["headline"]["comparisons"].as_u64(), Some(sum("comparisons")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_its_store_an_instance_serves_says_so_and_is_unready_only_when_asked() {
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on port 1: the store is down from the start.
    let config = |name: &str, extra: &str| {
        let path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(
            &path,
            format!(
                r#"listen: "127.0.0.1:0"
admin: {{ listen: "127.0.0.1:0" }}
server: {{ workers: 1 }}
backends: {{ old: {{ url: "{}" }}, new: {{ url: "{}" }} }}
rollout:
  percent: 100
  store: {{ etcd: {{ endpoints: ["http://127.0.0.1:1"], prefix: "/switchyard/down", dial_timeout: "300ms"{extra} }} }}
"#,
                old.url(),
                new.url()
            ),
        )
        .unwrap();
        path
    };
    let c = client();
    let serving = Running::start(&config("serving", ""), &[], true).unwrap();
    let strict = Running::start(&config("strict", ", ready_without_store: false"), &[], true).unwrap();

    let status = get(&c, &format!("{}/status", serving.admin_url()), &[]).await.json();
    assert_eq!(status["fleet"]["store"]["up"], false, "{status:#}");
    assert!(
        status["fleet"]["store"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("127.0.0.1:1")),
        "{status:#}"
    );
    let metrics = get(&c, &format!("{}/metrics", serving.admin_url()), &[]).await.text();
    assert_eq!(scraped(&metrics, "switchyard_store_up"), 0.0);
    // Serving with its own state, and ready unless told otherwise.
    let a = get(&c, &format!("{}/x", serving.proxy_url()), &[]).await;
    assert_eq!(a.header("x-switchyard-served-by"), Some("new"));
    assert_eq!(
        get(&c, &format!("{}/readyz", serving.admin_url()), &[]).await.status,
        200
    );
    let r = get(&c, &format!("{}/readyz", strict.admin_url()), &[]).await;
    assert_eq!(r.status, 503);
    assert!(r.text().contains("ready_without_store"), "{}", r.text());
    // The CLI says the store is unreachable and what still works.
    let out = std::process::Command::new(support::raw::BIN)
        .args(["status", "--admin", &serving.admin_url()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("store UNREACHABLE"), "{text}");
    // A rollback still applies here.
    let back = send(&c, Method::POST, &format!("{}/rollback", serving.admin_url()), &[], "").await;
    assert_eq!(back.status, 200, "{}", back.text());
    let a = get(&c, &format!("{}/x", serving.proxy_url()), &[]).await;
    assert_eq!(a.header("x-switchyard-served-by"), Some("old"));
}

/// One gateway on `etcd` with `store` keys added, set to 5 %.
async fn one_gateway_sets_a_percent(etcd_url: &str, store: &str) -> (Running, Value) {
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.yaml");
    std::fs::write(
        &path,
        format!(
            r#"listen: "127.0.0.1:0"
admin: {{ listen: "127.0.0.1:0" }}
server: {{ workers: 1 }}
backends: {{ old: {{ url: "{}" }}, new: {{ url: "{}" }} }}
rollout:
  guard: {{ enabled: false }}
  store: {{ etcd: {{ endpoints: ["{etcd_url}"], prefix: "/switchyard/secure", dial_timeout: "2s"{store} }} }}
"#,
            old.url(),
            new.url()
        ),
    )
    .unwrap();
    let g = Running::start(&path, &[], true).unwrap();
    let c = client();
    let a = send(
        &c,
        Method::PUT,
        &format!("{}/rollout", g.admin_url()),
        &[("content-type", "application/json")],
        r#"{"percent": 5}"#,
    )
    .await;
    let status = get(&c, &format!("{}/status", g.admin_url()), &[]).await.json();
    assert_eq!(a.status, 200, "{}\n{status:#}", a.text());
    (g, status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_is_reached_over_mutual_tls() {
    let ca = support::tls::TestCa::new();
    let server = ca.issue("etcd", &["127.0.0.1"]);
    let client_cert = ca.issue("gateway", &["switchyard"]);
    let etcd = Etcd::start_tls(support::etcd::Tls {
        cert_file: server.cert_file.clone(),
        key_file: server.key_file.clone(),
        ca_file: ca.ca_file.clone(),
    });
    let store = format!(
        r#", ca_file: "{}", cert_file: "{}", key_file: "{}""#,
        ca.ca_file.display(),
        client_cert.cert_file.display(),
        client_cert.key_file.display()
    );
    let (_g, status) = one_gateway_sets_a_percent(&etcd.url(), &store).await;
    assert_eq!(status["fleet"]["store"]["up"], true, "{status:#}");
    assert!(status["fleet"]["epoch"].as_u64().unwrap() > 0);
    assert_eq!(status["percent"], json!(5.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_is_reached_with_a_username_and_password() {
    let etcd = Etcd::start();
    etcd.ctl(&["user", "add", "root:s3cret-root"]);
    etcd.ctl(&["user", "add", "gateway:s3cret-gw"]);
    etcd.ctl(&["role", "add", "switchyard"]);
    etcd.ctl(&[
        "role",
        "grant-permission",
        "switchyard",
        "--prefix=true",
        "readwrite",
        "/switchyard/",
    ]);
    etcd.ctl(&["user", "grant-role", "gateway", "switchyard"]);
    etcd.ctl(&["auth", "enable"]);
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("password");
    std::fs::write(&password, "s3cret-gw\n").unwrap();
    let store = format!(r#", username: gateway, password_file: "{}""#, password.display());
    let (_g, status) = one_gateway_sets_a_percent(&etcd.url(), &store).await;
    assert_eq!(status["fleet"]["store"]["up"], true, "{status:#}");
    // It is in etcd, where only an authenticated client can read it.
    let stored = etcd.ctl(&[
        "--user",
        "root:s3cret-root",
        "get",
        "/switchyard/secure/rollout",
        "--print-value-only",
    ]);
    let state: Value = serde_json::from_str(stored.trim()).unwrap();
    assert_eq!(state["percent"], json!(5.0));
}
