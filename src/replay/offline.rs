//! `switchyard replay --file`: diff recorded traffic (a capture file or a
//! HAR export) between two systems before any live traffic reaches new.
//! Each request goes to old, new (and the twin) at a bounded concurrency
//! and rate, is compared by the same engine and rules as live mirrors, and
//! ends in the same report. The exit code says whether real differences
//! stayed within `--max-diff-rate`, for a CI pipeline.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::engine::{Replayed, Replayer};
use super::file::{read_file, FileKind};
use super::recorded::Recorded;
use crate::config::Config;
use crate::report::collector::Collector;
use crate::report::model::{Backends, Context, Report};
use crate::rollout::state::now_ms;

pub struct OfflineArgs {
    pub file: PathBuf,
    pub old: String,
    pub new: String,
    pub twin: Option<String>,
    /// Diff rules, endpoints, timeouts and backend TLS from this config.
    pub config: Option<PathBuf>,
    /// Requests started per second at most.
    pub rate: Option<f64>,
    pub concurrency: usize,
}

/// What one replay run found.
pub struct Outcome {
    pub kind: FileKind,
    pub requests: usize,
    pub report: Report,
    /// Requests that could not be compared, with why (the first few).
    pub failures: Vec<String>,
    pub failed: usize,
}

impl Outcome {
    /// Real differences per comparison made.
    pub fn diff_rate(&self) -> f64 {
        let h = &self.report.headline;
        if h.comparisons == 0 {
            0.0
        } else {
            h.real_diffs as f64 / h.comparisons as f64
        }
    }
}

/// How a run shows its progress.
pub trait Progress: Send + Sync {
    fn start(&self, total: usize);
    fn advance(&self, done: usize, failed: usize);
    fn finish(&self);
}

/// The config replays are judged by: `path`'s rules with the given
/// backends, or the defaults.
pub fn config_for(path: Option<&Path>, old: &str, new: &str, twin: Option<&str>) -> Result<Config, String> {
    let mut config = match path {
        Some(p) => Config::load(p).map_err(|e| e.to_string())?,
        None => Config::from_yaml(
            "backends: { old: { url: 'http://127.0.0.1:1' }, new: { url: 'http://127.0.0.1:2' } }\n",
            "<replay>",
        )
        .map_err(|e| e.to_string())?,
    };
    config.backends.old.url = old.to_string();
    config.backends.new.url = new.to_string();
    config.backends.old_twin = twin.map(|url| {
        let mut t = config.backends.old.clone();
        t.url = url.to_string();
        t
    });
    // Checked again as a whole: a bad URL is named like any config error.
    let text = serde_yaml::to_string(&config).map_err(|e| format!("cannot restate the config: {e}"))?;
    Config::from_yaml(&text, "--old/--new/--twin").map_err(|e| e.to_string())
}

pub async fn run(args: &OfflineArgs, progress: &dyn Progress) -> Result<Outcome, String> {
    if args.concurrency == 0 {
        return Err("--concurrency must be at least 1".into());
    }
    if let Some(r) = args.rate {
        if !(r.is_finite() && r > 0.0) {
            return Err(format!(
                "--rate must be a positive number of requests per second, got {r}"
            ));
        }
    }
    let (requests, kind) = read_file(&args.file)?;
    let config = config_for(args.config.as_deref(), &args.old, &args.new, args.twin.as_deref())?;
    let replayer = Arc::new(Replayer::new(&config)?);
    let mut collector = Collector::new(&config);
    let total = requests.len();
    progress.start(total);

    let permits = Arc::new(Semaphore::new(args.concurrency));
    let mut tick = args
        .rate
        .map(|r| tokio::time::interval(Duration::from_secs_f64(1.0 / r)));
    let mut running: JoinSet<(Recorded, Replayed)> = JoinSet::new();
    let (mut done, mut failed) = (0, 0);
    let mut failures = Vec::new();
    let mut finish = |r: Recorded, replayed: Replayed, collector: &mut Collector| {
        done += 1;
        match replayed {
            Ok(pair) => {
                collector.ingest(&pair, now_ms(), &[]);
            }
            Err(e) => {
                failed += 1;
                let name = if r.route.is_empty() { "default" } else { &r.route };
                collector.record_error(name, &r.method, &r.target, now_ms());
                if failures.len() < 10 {
                    failures.push(format!("{} {}: {e}", r.method, r.target));
                }
            }
        }
        progress.advance(done, failed);
    };
    for r in requests {
        if let Some(t) = tick.as_mut() {
            t.tick().await;
        }
        let permit = permits.clone().acquire_owned().await.map_err(|e| e.to_string())?;
        let replayer = replayer.clone();
        running.spawn(async move {
            let out = replayer.replay(&r).await;
            drop(permit);
            (r, out)
        });
        while let Some(Ok((r, out))) = running.try_join_next() {
            finish(r, out, &mut collector);
        }
    }
    while let Some(joined) = running.join_next().await {
        let (r, out) = joined.map_err(|e| format!("a replay task failed: {e}"))?;
        finish(r, out, &mut collector);
    }
    progress.finish();
    let report = Report::build(
        &collector.tallies(),
        Context {
            generated_ms: now_ms(),
            served_old: 0,
            served_new: 0,
            percent: 0.0,
            phase: "offline replay".into(),
            backends: Backends {
                old: args.old.clone(),
                new: args.new.clone(),
                old_twin: args.twin.clone(),
            },
            guard: Default::default(),
            accepted: Vec::new(),
            changes: Vec::new(),
            model: collector.model(),
            window_from_ms: None,
            gateways: 1,
        },
    );
    Ok(Outcome {
        kind,
        requests: total,
        report,
        failures,
        failed,
    })
}

/// The report in the format its file name asks for: `.html`, `.json`,
/// anything else as text.
pub fn render_for(path: &Path, report: &Report) -> String {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html" | "htm") => crate::report::html::render(report),
        Some("json") => serde_json::to_string_pretty(report).unwrap_or_default() + "\n",
        _ => crate::report::text::render(report),
    }
}
