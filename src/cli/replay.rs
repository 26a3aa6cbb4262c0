//! `switchyard replay`: a stored sample sent to both systems again (through
//! the running gateway), or a capture or HAR file diffed offline with a
//! progress bar on a terminal and an exit code for CI.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use http::Method;
use serde_json::Value;

use super::{client, AdminArgs};
use switchyard::replay::offline::{self, OfflineArgs, Progress};

#[derive(Args, Clone)]
pub struct ReplayArgs {
    /// A stored sample's id (from the report or `switchyard diff show`): replay it against the running gateway's old and new.
    pub id: Option<String>,
    /// A capture file (JSONL) or a HAR 1.2 file to replay offline.
    #[arg(long, conflicts_with = "id")]
    pub file: Option<PathBuf>,
    /// Old system's base URL (with --file).
    #[arg(long, requires = "file")]
    pub old: Option<String>,
    /// New system's base URL (with --file).
    #[arg(long, requires = "file")]
    pub new: Option<String>,
    /// A second copy of old, the noise baseline (with --file).
    #[arg(long, requires = "file")]
    pub twin: Option<String>,
    /// Requests started per second at most.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Requests in flight at most.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Write the report here: .html, .json, or text (default: text on stdout).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Exit 1 when real differences per comparison exceed this (0–1).
    #[arg(long)]
    pub max_diff_rate: Option<f64>,
}

/// A progress bar on a terminal, else a plain line per tenth (the total
/// is known from `start`).
struct Bar(Option<indicatif::ProgressBar>, std::sync::atomic::AtomicUsize);

impl Progress for Bar {
    fn start(&self, total: usize) {
        self.1.store(total, std::sync::atomic::Ordering::Relaxed);
        if let Some(b) = &self.0 {
            b.set_length(total as u64);
        } else {
            eprintln!("replaying {total} requests");
        }
    }
    fn advance(&self, done: usize, failed: usize) {
        match &self.0 {
            Some(b) => {
                b.set_position(done as u64);
                b.set_message(format!("{failed} failed"));
            }
            None => {
                // Plain lines, one per tenth, when stderr is not a terminal.
                let total = self.1.load(std::sync::atomic::Ordering::Relaxed);
                if total > 0 && (done * 10 / total) != ((done - 1) * 10 / total) {
                    eprintln!("replayed {done}/{total} ({failed} failed)");
                }
            }
        }
    }
    fn finish(&self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}

pub fn replay(args: ReplayArgs, admin: &AdminArgs) -> ExitCode {
    if let Some(id) = args.id {
        return client(admin, |c| async move {
            let out = c.call(Method::POST, &format!("/diffs/{id}/replay"), None).await?;
            let v: Value = serde_json::from_slice(&out).unwrap_or_default();
            let mut s = format!(
                "{}: {} at {} of {} (old {} in {:.1} ms, new {} in {:.1} ms)\n",
                id,
                v["verdict"].as_str().unwrap_or(""),
                v["field"].as_str().unwrap_or(""),
                v["endpoint"].as_str().unwrap_or(""),
                v["old"]["status"],
                v["old"]["latency_ms"].as_f64().unwrap_or(0.0),
                v["new"]["status"],
                v["new"]["latency_ms"].as_f64().unwrap_or(0.0),
            );
            for d in v["differences"].as_array().into_iter().flatten() {
                s.push_str(&format!(
                    "  {} {} ({}): old {} → new {}\n",
                    match d["verdict"].as_str() {
                        Some("accepted") => "accepted",
                        Some("noise") => "noise   ",
                        _ => "REAL    ",
                    },
                    d["field"].as_str().unwrap_or(""),
                    d["kind"].as_str().unwrap_or(""),
                    d["old"].as_str().unwrap_or("(absent)"),
                    d["new"].as_str().unwrap_or("(absent)"),
                ));
            }
            Ok(s)
        });
    }
    let (Some(file), Some(old), Some(new)) = (args.file, args.old, args.new) else {
        eprintln!("error: give a sample id (switchyard replay ID), or --file FILE --old URL --new URL");
        return ExitCode::from(2);
    };
    if let Some(r) = args.max_diff_rate {
        if !(0.0..=1.0).contains(&r) {
            eprintln!("error: --max-diff-rate is a share from 0 to 1 (e.g. 0.01 for 1 %), got {r}");
            return ExitCode::from(2);
        }
    }
    let offline_args = OfflineArgs {
        file,
        old,
        new,
        twin: args.twin,
        config: admin.config.clone(),
        rate: args.rate,
        concurrency: args.concurrency,
    };
    let bar = if std::io::stderr().is_terminal() {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} requests · {msg} · {eta} left")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Bar(Some(b), std::sync::atomic::AtomicUsize::new(0))
    } else {
        Bar(None, std::sync::atomic::AtomicUsize::new(0))
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = match rt.block_on(offline::run(&offline_args, &bar)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let h = &outcome.report.headline;
    match &args.report {
        Some(path) => {
            if let Err(e) = std::fs::write(path, offline::render_for(path, &outcome.report)) {
                eprintln!("error: cannot write the report to {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
            eprintln!("report written to {}", path.display());
        }
        None => print!("{}", switchyard::report::text::render(&outcome.report)),
    }
    eprintln!(
        "{} requests ({}): {} compared, {} real differences ({:.2} %), {} accepted, {} noise, {} could not be compared",
        outcome.requests,
        match outcome.kind {
            switchyard::replay::file::FileKind::Har => "HAR",
            switchyard::replay::file::FileKind::Capture => "capture",
        },
        h.comparisons,
        h.real_diffs,
        outcome.diff_rate() * 100.0,
        h.accepted,
        h.noise,
        outcome.failed
    );
    for f in &outcome.failures {
        eprintln!("  could not compare {f}");
    }
    if h.comparisons == 0 {
        eprintln!("error: nothing could be compared; check that --old and --new answer");
        return ExitCode::FAILURE;
    }
    match args.max_diff_rate {
        Some(max) if outcome.diff_rate() > max => {
            eprintln!(
                "FAIL: real differences {:.2} % exceed --max-diff-rate {:.2} %",
                outcome.diff_rate() * 100.0,
                max * 100.0
            );
            ExitCode::FAILURE
        }
        _ => ExitCode::SUCCESS,
    }
}
