//! The CLI's commands about differences: accept, list and show them,
//! replay a stored sample or a whole recorded file, and merge saved reports.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use http::Method;
use serde_json::{json, Value};
use similar::{ChangeTag, TextDiff};

use super::{client, who, AdminArgs};
use switchyard::replay::offline::{self, OfflineArgs, Progress};
use switchyard::report::model::Report;

#[derive(Subcommand, Clone)]
pub enum DiffAction {
    /// Accept a difference as intended: it counts as `accepted`, not against the rollout.
    Accept {
        /// The endpoint as the report names it, e.g. "GET /users/{id}".
        #[arg(long)]
        endpoint: String,
        /// The field: a JSON pointer (/username), status, or header:NAME.
        #[arg(long)]
        field: String,
        /// Last day it applies (YYYY-MM-DD, UTC) or a time (YYYY-MM-DDTHH:MM:SSZ).
        #[arg(long)]
        until: Option<String>,
        /// Kinds of difference to cover (default: those seen at the field so far).
        #[arg(long = "kind")]
        kinds: Vec<String>,
    },
    /// Withdraw an acceptance.
    Unaccept {
        #[arg(long)]
        endpoint: String,
        #[arg(long)]
        field: String,
    },
    /// List accepted differences.
    Accepted,
    /// Show a stored sample: the request, and old's and new's answers side by side.
    Show { id: String },
}

pub fn diff(action: DiffAction, admin: &AdminArgs) -> ExitCode {
    match action {
        DiffAction::Accept {
            endpoint,
            field,
            until,
            kinds,
        } => {
            let Some(reason) = admin.reason.clone().filter(|r| !r.trim().is_empty()) else {
                eprintln!("error: --reason is required: say why this difference is intended (the report shows it)");
                return ExitCode::from(2);
            };
            let mut body = json!({ "endpoint": endpoint, "field": field, "reason": reason, "who": who() });
            if let Some(u) = until {
                body["until"] = u.into();
            }
            if !kinds.is_empty() {
                body["kinds"] = kinds.into();
            }
            client(admin, |c| async move {
                let out = c.call(Method::POST, "/diffs/accept", Some(body)).await?;
                Ok(format_accepted(&serde_json::from_slice(&out).unwrap_or_default()))
            })
        }
        DiffAction::Unaccept { endpoint, field } => {
            let body = json!({ "endpoint": endpoint, "field": field, "who": who() });
            client(admin, |c| async move {
                let out = c.call(Method::POST, "/diffs/unaccept", Some(body)).await?;
                Ok(format_accepted(&serde_json::from_slice(&out).unwrap_or_default()))
            })
        }
        DiffAction::Accepted => client(admin, |c| async move {
            let out = c.call(Method::GET, "/diffs/accepted", None).await?;
            Ok(format_accepted(&serde_json::from_slice(&out).unwrap_or_default()))
        }),
        DiffAction::Show { id } => client(admin, |c| async move {
            let out = c.call(Method::GET, &format!("/diffs/{id}"), None).await?;
            Ok(format_sample(&serde_json::from_slice(&out).unwrap_or_default()))
        }),
    }
}

fn format_accepted(v: &Value) -> String {
    let list = v["accepted"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return "no accepted differences\n".into();
    }
    let mut out = String::new();
    for a in list {
        let kinds: Vec<String> = a["kinds"]
            .as_array()
            .map(|k| k.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        out.push_str(&format!(
            "{}  {}  [{}]  by {}: {}{}{}\n",
            a["endpoint"].as_str().unwrap_or(""),
            a["field"].as_str().unwrap_or(""),
            kinds.join(","),
            a["who"].as_str().unwrap_or(""),
            a["reason"].as_str().unwrap_or(""),
            a["until_ms"]
                .as_u64()
                .map(|u| format!(" (through {})", switchyard::tls::certs::date(((u - 1) / 1000) as i64)))
                .unwrap_or_default(),
            if a["in_force"] == false { " EXPIRED" } else { "" }
        ));
    }
    out
}

/// Pretty JSON when the body is JSON, else the text as it is.
fn pretty(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| body.to_string())
}

fn cell(s: &str, width: usize) -> String {
    let mut out: String = s.chars().take(width).collect();
    let n = out.chars().count();
    out.extend(std::iter::repeat_n(' ', width - n));
    out
}

/// Two texts in two columns; lines that differ are marked `≠`.
pub fn side_by_side(left: &str, right: &str, width: usize) -> String {
    let diff = TextDiff::from_lines(left, right);
    let mut rows: Vec<(String, String, bool)> = Vec::new();
    let (mut dels, mut ins): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
    let flush = |rows: &mut Vec<(String, String, bool)>, dels: &mut Vec<String>, ins: &mut Vec<String>| {
        for i in 0..dels.len().max(ins.len()) {
            rows.push((
                dels.get(i).cloned().unwrap_or_default(),
                ins.get(i).cloned().unwrap_or_default(),
                true,
            ));
        }
        dels.clear();
        ins.clear();
    };
    for change in diff.iter_all_changes() {
        let line = change.value().trim_end_matches('\n').to_string();
        match change.tag() {
            ChangeTag::Equal => {
                flush(&mut rows, &mut dels, &mut ins);
                rows.push((line.clone(), line, false));
            }
            ChangeTag::Delete => dels.push(line),
            ChangeTag::Insert => ins.push(line),
        }
    }
    flush(&mut rows, &mut dels, &mut ins);
    let mut out = String::new();
    for (l, r, differs) in rows {
        out.push_str(&format!(
            "{} {} {}\n",
            cell(&l, width),
            if differs { "≠" } else { "│" },
            r
        ));
    }
    out
}

fn format_sample(v: &Value) -> String {
    let mut out = format!(
        "sample {} · {} · field {} · {}\n\n{} {}\n",
        v["id"].as_str().unwrap_or(""),
        v["endpoint"].as_str().unwrap_or(""),
        v["field"].as_str().unwrap_or(""),
        v["at_ms"]
            .as_u64()
            .map(|ms| switchyard::tls::certs::datetime((ms / 1000) as i64))
            .unwrap_or_default(),
        v["method"].as_str().unwrap_or(""),
        v["target"].as_str().unwrap_or("")
    );
    for h in v["headers"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{}: {}\n",
            h[0].as_str().unwrap_or(""),
            h[1].as_str().unwrap_or("")
        ));
    }
    if let Some(b) = v["request_body"].as_str().filter(|b| !b.is_empty()) {
        out.push_str(&format!("\n{b}\n"));
    }
    let d = &v["difference"];
    out.push_str(&format!(
        "\ndiffers at {} ({}): old {} → new {}\n\n",
        d["location"].as_str().unwrap_or(""),
        d["kind"].as_str().unwrap_or(""),
        d["left"].as_str().unwrap_or("(absent)"),
        d["right"].as_str().unwrap_or("(absent)")
    ));
    let side = |s: &Value| {
        format!(
            "{} · {:.1} ms · {}",
            s["status"],
            s["latency_ms"].as_f64().unwrap_or(0.0),
            s["content_type"].as_str().unwrap_or("")
        )
    };
    let width = 58;
    out.push_str(&format!("{} │ {}\n", cell("OLD", width), "NEW"));
    out.push_str(&format!("{} │ {}\n", cell(&side(&v["old"]), width), side(&v["new"])));
    out.push_str(&side_by_side(
        &pretty(v["old"]["body"].as_str().unwrap_or("")),
        &pretty(v["new"]["body"].as_str().unwrap_or("")),
        width,
    ));
    if v["twin"].is_object() {
        out.push_str(&format!(
            "\nTWIN (old's copy, the noise baseline) {}\n{}\n",
            side(&v["twin"]),
            pretty(v["twin"]["body"].as_str().unwrap_or(""))
        ));
    }
    out.push_str(&format!(
        "\nreplay it now: switchyard replay {}\n",
        v["id"].as_str().unwrap_or("")
    ));
    out
}

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

struct Bar(Option<indicatif::ProgressBar>, std::sync::Mutex<usize>);

impl Progress for Bar {
    fn start(&self, total: usize) {
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
                let total = self.1.lock().map(|t| *t).unwrap_or(0);
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
        Bar(Some(b), std::sync::Mutex::new(0))
    } else {
        Bar(None, std::sync::Mutex::new(0))
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The plain progress lines need the total before the first advance.
    if let Ok((requests, _)) = switchyard::replay::file::read_file(&offline_args.file) {
        if let Ok(mut t) = bar.1.lock() {
            *t = requests.len();
        }
    }
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

/// `report --merge`: saved JSON reports as one.
pub fn merge(files: &[PathBuf], format: super::Format) -> ExitCode {
    let mut reports = Vec::new();
    for f in files {
        let text = match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: cannot read {}: {e}", f.display());
                return ExitCode::from(2);
            }
        };
        match serde_json::from_str::<Report>(&text) {
            Ok(r) => reports.push(r),
            Err(e) => {
                eprintln!(
                    "error: {} is not a saved JSON report ({e}); save one with `switchyard report --format json > FILE`",
                    f.display()
                );
                return ExitCode::from(2);
            }
        }
    }
    match Report::merge(&reports) {
        Ok(r) => {
            print!("{}", super::render(&r, format));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
