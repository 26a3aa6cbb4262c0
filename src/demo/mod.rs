//! `switchyard demo`: the whole idea on one machine in a minute. Three
//! built-in origins (old, its twin, and new with planted differences), the
//! gateway in front of them with mirroring and the twin on, and a traffic
//! generator with many distinct users, all on loopback.

pub mod origins;
pub mod traffic;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::gateway::{Gateway, Options};
use origins::Flavor;

#[derive(clap::Args, Clone, Debug)]
pub struct DemoArgs {
    /// Port of the gateway's proxy listener (0 picks a free one).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Port of the admin API (0 picks a free one).
    #[arg(long, default_value_t = 9901)]
    pub admin_port: u16,
    /// Stop after sending this many requests.
    #[arg(long)]
    pub requests: Option<u64>,
    /// Stop after this long (e.g. 30s, 5m).
    #[arg(long, value_parser = crate::config::duration::parse)]
    pub duration: Option<Duration>,
    /// Requests per second.
    #[arg(long, default_value_t = 200)]
    pub rate: u64,
    /// Initial share of traffic served by new.
    #[arg(long, default_value_t = 10.0)]
    pub percent: f64,
    /// Walk the step plan automatically (every 5 s) with the guard judging;
    /// the planted differences make the guard roll back.
    #[arg(long)]
    pub rollout_steps: bool,
    /// Keep the gateway and origins up after the traffic stops (with
    /// --requests or --duration), until Ctrl-C.
    #[arg(long)]
    pub stay: bool,
}

impl Default for DemoArgs {
    fn default() -> Self {
        Self {
            port: 0,
            admin_port: 0,
            requests: Some(1000),
            duration: None,
            rate: 500,
            percent: 10.0,
            rollout_steps: false,
            stay: false,
        }
    }
}

/// A running demo: origins and gateway.
pub struct Demo {
    pub gateway: Gateway,
    pub origins: [SocketAddr; 3],
    pub state_dir: PathBuf,
    stop: CancellationToken,
}

/// The gateway config the demo runs with (also a worked example).
pub fn config(args: &DemoArgs, old: SocketAddr, new: SocketAddr, twin: SocketAddr, dir: &std::path::Path) -> String {
    // About 63 % of the demo's answers carry a planted difference: with the
    // plan walking, the usual 5 % limit rolls it back (the point of
    // --rollout-steps); by hand, 90 % lets an SRE's percent stand.
    let (step_every, max_diff_rate) = if args.rollout_steps {
        ("\"5s\"", 0.05)
    } else {
        ("null", 0.9)
    };
    format!(
        r#"listen: "127.0.0.1:{port}"
server: {{ workers: 1, drain_timeout: "2s" }}
admin: {{ listen: "127.0.0.1:{admin}" }}
backends:
  old:      {{ url: "http://{old}" }}
  new:      {{ url: "http://{new}" }}
  old_twin: {{ url: "http://{twin}" }}
rollout:
  percent: {percent}
  sticky: "header:x-user-id"
  state_file: "{dir}/rollout.json"
  steps: [1, 5, 25, 50, 100]
  step_every: {step_every}
  guard:
    interval: "2s"
    window: "30s"
    min_requests: 50
    min_comparisons: 50
    max_diff_rate: {max_diff_rate}
shadow:
  percent: 100
diff:
  unordered_arrays: ["/tags"]
  store: {{ path: "{dir}/diffs.jsonl" }}
logging: {{ level: "warn" }}
"#,
        port = args.port,
        admin = args.admin_port,
        percent = if args.rollout_steps { 0.0 } else { args.percent },
        dir = dir.display(),
    )
}

impl Demo {
    pub async fn start(args: &DemoArgs) -> Result<Demo, String> {
        let stop = CancellationToken::new();
        let any: SocketAddr = "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?;
        let old = origins::start(Flavor::Old, any, stop.clone())
            .await
            .map_err(|e| e.to_string())?;
        let twin = origins::start(Flavor::Twin, any, stop.clone())
            .await
            .map_err(|e| e.to_string())?;
        let new = origins::start(Flavor::New, any, stop.clone())
            .await
            .map_err(|e| e.to_string())?;
        remove_abandoned_state();
        let state_dir = std::env::temp_dir().join(format!(
            "switchyard-demo-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&state_dir).map_err(|e| format!("cannot create {}: {e}", state_dir.display()))?;
        let yaml = config(args, old, new, twin, &state_dir);
        let cfg = Config::from_yaml(&yaml, "<demo>").map_err(|e| e.to_string())?;
        let gateway = Gateway::start(cfg, Options::default()).map_err(|e| match e {
            crate::gateway::StartError::Bind { .. } => format!("{e} (try --port 0 --admin-port 0)"),
            e => e.to_string(),
        })?;
        if args.rollout_steps {
            let actor = crate::rollout::controller::Actor::new("demo", "switchyard demo --rollout-steps");
            gateway.controller.step(&actor).map_err(|e| e.to_string())?;
        }
        Ok(Demo {
            gateway,
            origins: [old, new, twin],
            state_dir,
            stop,
        })
    }

    pub fn proxy_url(&self) -> String {
        format!("http://{}", self.gateway.proxy_addr)
    }

    pub fn admin_url(&self) -> String {
        format!("http://{}", self.gateway.admin_addr)
    }

    /// Waits (up to `timeout`) until every mirrored request has been compared.
    /// Waits until every one of `sent` mirrored requests has ended (its
    /// mirror answered, failed or was shed) and the comparisons stopped
    /// moving, or until `timeout`. On a busy machine the mirrors' threads
    /// (lowest priority) finish well after the traffic: a report printed
    /// at once would show none of them.
    pub async fn settle(&self, sent: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut last = u64::MAX;
        while Instant::now() < deadline {
            let now = self.comparisons();
            if now == last && self.mirrors_ended() >= sent {
                return;
            }
            last = now;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Mirrors that ended, however: counted once each on their target side,
    /// or shed before they began.
    fn mirrors_ended(&self) -> u64 {
        let mut n = 0.0;
        for family in self.gateway.metrics.registry.gather() {
            let wanted = match family.get_name() {
                "switchyard_shadow_requests_total" => ["old", "new"].as_slice(),
                "switchyard_shadow_drops_total" => ["in_flight"].as_slice(),
                _ => continue,
            };
            for m in family.get_metric() {
                if m.get_label()
                    .iter()
                    .any(|l| (l.get_name() == "backend" || l.get_name() == "reason") && wanted.contains(&l.get_value()))
                {
                    n += m.get_counter().get_value();
                }
            }
        }
        n as u64
    }

    pub fn comparisons(&self) -> u64 {
        let c = self
            .gateway
            .analysis
            .collector
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let t = &c.totals;
        t.compared() + t.error
    }

    pub fn real_diffs(&self) -> u64 {
        self.gateway
            .analysis
            .collector
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .totals
            .diff
    }

    pub fn stop(self) {
        self.stop.cancel();
        self.gateway.shutdown();
        self.gateway.join();
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

/// Removes the state directories of demos that are gone (killed before they
/// could clean up): `switchyard-demo-PID-N` whose process no longer runs.
fn remove_abandoned_state() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("switchyard-demo-"))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Ctrl-C or SIGTERM, whichever comes first.
async fn interrupted() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Runs the demo, reporting to `out` a line at a time.
pub async fn run(args: DemoArgs, out: &mut dyn FnMut(String)) -> Result<(), String> {
    let demo = Demo::start(&args).await?;
    let (proxy, admin) = (demo.proxy_url(), demo.admin_url());
    let admin_flag = if args.admin_port == 9901 {
        String::new()
    } else {
        format!(" --admin {admin}")
    };
    let share = if args.rollout_steps { 1.0 } else { args.percent };
    out(format!(
        "Switchyard demo: old, old_twin and new origins on loopback; {share}% of users on new, every request mirrored."
    ));
    out(format!(
        "  proxy    {proxy}      (try: curl -H 'x-user-id: 42' {proxy}/users/42)"
    ));
    out(format!("  report   {admin}/report"));
    out(format!("  metrics  {admin}/metrics"));
    out(format!(
        "  try      switchyard status{admin_flag} · switchyard rollout set 25{admin_flag} · switchyard rollback{admin_flag} · switchyard report{admin_flag}"
    ));
    if args.rollout_steps {
        out("  the plan starts at 1% and advances every 5 s while the guard's checks pass; new's planted differences exceed the guard's 5% diff-rate limit, so expect a rollback within seconds (watch `switchyard status`)".into());
    }

    let progress = Arc::new(traffic::Progress::default());
    let plan = traffic::Plan {
        proxy: proxy.clone(),
        requests: args.requests,
        deadline: args.duration.map(|d| Instant::now() + d),
        rate: args.rate.max(1),
        users: 5000,
        workers: 16,
    };
    let endless = plan.requests.is_none() && plan.deadline.is_none();
    let traffic = tokio::spawn(traffic::run(plan, progress.clone()));
    let started = Instant::now();
    let ctrl_c = interrupted();
    tokio::pin!(ctrl_c);
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    tick.tick().await;
    let mut traffic = Some(traffic);
    let mut interrupted = false;
    loop {
        tokio::select! {
            _ = &mut ctrl_c => {
                interrupted = true;
                out("interrupted: traffic stopped; the report of what was compared follows, then the demo cleans up and exits".into());
                if let Some(t) = traffic.take() {
                    t.abort();
                }
                break;
            }
            _ = tick.tick() => {
                let sent = progress.sent.load(Ordering::Relaxed);
                let phase = demo.gateway.controller.state();
                out(format!(
                    "  {:>5.0}s  sent {sent:>7} ({:>4.0}/s) · served by new {:>6} · comparisons {:>7} · real diffs {:>6} · rollout {}% {}",
                    started.elapsed().as_secs_f64(),
                    sent as f64 / started.elapsed().as_secs_f64(),
                    progress.served_new.load(Ordering::Relaxed),
                    demo.comparisons(),
                    demo.real_diffs(),
                    phase.percent,
                    phase.phase,
                ));
            }
            _ = async { if let Some(t) = traffic.as_mut() { let _ = t.await; } }, if traffic.is_some() => {
                traffic = None;
                if !endless && !args.stay {
                    break;
                }
            }
        }
    }
    // Interrupted, the report is printed with what has been compared.
    let wait = if interrupted {
        Duration::from_secs(2)
    } else {
        Duration::from_secs(30)
    };
    demo.settle(progress.sent.load(Ordering::Relaxed), wait).await;
    if let Some(change) = demo.gateway.controller.state().last_change {
        out(format!(
            "last rollout change: {} by {}: {}",
            change.to_phase, change.who, change.why
        ));
    }
    let report = crate::report::text::render(&demo.gateway.report());
    out(String::new());
    out(report);
    if let Some(t) = traffic {
        t.abort();
    }
    demo.stop();
    Ok(())
}
