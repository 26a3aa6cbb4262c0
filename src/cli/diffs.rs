//! The CLI's commands about differences: accept, list and show them, and
//! merge saved reports. Replays are in [`super::replay`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use http::Method;
use serde_json::{json, Value};
use similar::{ChangeTag, TextDiff};

use super::{client, who, AdminArgs};
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
                .map(|u| format!(" (through {})", switchyard::calendar::date(((u - 1) / 1000) as i64)))
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
            .map(|ms| switchyard::calendar::datetime((ms / 1000) as i64))
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
