//! `switchyard status --watch`: the rollout as a live view, redrawn in
//! place every second (as `kubectl argo rollouts get rollout --watch`):
//! percent and phase, the step plan with the current step marked, each
//! guard check and its verdict, the last changes, and the fleet.
//!
//! On a terminal each frame replaces the last; piped, frames follow each
//! other under a time line, so a log of a watch reads top to bottom.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use http::Method;
use switchyard::admin::client::{format_status, AdminClient, ClientError};

const EVERY: Duration = Duration::from_secs(1);

pub async fn run(client: AdminClient) -> Result<String, ClientError> {
    let terminal = std::io::stdout().is_terminal();
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(String::new()),
            _ = tick.tick() => {}
        }
        let frame = match client.call(Method::GET, "/status", None).await {
            Ok(body) => match serde_json::from_slice::<serde_json::Value>(&body) {
                Ok(v) => render(&v),
                Err(e) => format!("the admin API answered something that is not its status: {e}\n"),
            },
            // A gateway restarting is a moment, not the end of the watch.
            Err(ClientError::Unreachable { url, detail }) => {
                format!("cannot reach the admin API at {url}: {detail} (retrying every second; Ctrl-C to stop)\n")
            }
            Err(e) => return Err(e),
        };
        let now = clock();
        let mut out = std::io::stdout().lock();
        let _ = if terminal {
            // Home, clear, frame: one redraw, no scrolling.
            write!(
                out,
                "\x1b[H\x1b[2J{now}  switchyard status --watch (Ctrl-C to stop)\n\n{frame}"
            )
        } else {
            write!(out, "── {now} ──\n{frame}\n")
        };
        let _ = out.flush();
    }
}

/// One frame: the status as `switchyard status` prints it, the plan drawn
/// with the current step, and the last changes.
pub fn render(v: &serde_json::Value) -> String {
    let mut out = String::new();
    out.push_str(&plan_line(v));
    out.push_str(&format_status(v));
    let changes = v.get("recent_changes").and_then(|c| c.as_array());
    if let Some(changes) = changes.filter(|c| !c.is_empty()) {
        out.push_str("recent changes (newest last)\n");
        let now = switchyard::rollout::state::now_ms();
        for c in changes {
            let at = c.get("at_ms").and_then(|x| x.as_u64()).unwrap_or(0);
            out.push_str(&format!(
                "  {:>6}s ago  {:>5}% → {:<5}% {:<12} {} ({})\n",
                now.saturating_sub(at) / 1000,
                c.get("from_percent").and_then(|x| x.as_f64()).unwrap_or(0.0),
                c.get("to_percent").and_then(|x| x.as_f64()).unwrap_or(0.0),
                c.get("to_phase").and_then(|x| x.as_str()).unwrap_or("-"),
                c.get("who").and_then(|x| x.as_str()).unwrap_or("-"),
                c.get("why").and_then(|x| x.as_str()).unwrap_or("-"),
            ));
        }
    }
    out
}

/// `steps     1 ─ 5 ─ [25 ⏸] ─ 50 ─ 100`: the plan, the current step in brackets.
fn plan_line(v: &serde_json::Value) -> String {
    let Some(steps) = v.get("steps").and_then(|s| s.as_array()) else {
        return String::new();
    };
    let current = v.get("step").and_then(|s| s.as_u64()).map(|s| s as usize);
    let drawn: Vec<String> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let (percent, pause) = match s.as_f64() {
                Some(p) => (p, false),
                None => (
                    s.get("percent").and_then(|p| p.as_f64()).unwrap_or(0.0),
                    s.get("pause").and_then(|p| p.as_bool()).unwrap_or(false),
                ),
            };
            let label = format!("{percent}%{}", if pause { " (pause)" } else { "" });
            if current == Some(i) {
                format!("[{label}]")
            } else {
                label
            }
        })
        .collect();
    format!("steps     {}\n", drawn.join(" ─ "))
}

fn clock() -> String {
    let secs = switchyard::rollout::state::now_ms() / 1000;
    format!("{:02}:{:02}:{:02} UTC", secs / 3600 % 24, secs / 60 % 60, secs % 60)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_plan_marks_the_current_step_and_pauses() {
        let v = serde_json::json!({
            "steps": [1.0, 5.0, {"percent": 25.0, "pause": true}, 100.0],
            "step": 2,
            "percent": 25.0,
            "phase": "paused",
            "recent_changes": [{"at_ms": 0, "from_percent": 5.0, "to_percent": 25.0, "to_phase": "paused", "who": "guard", "why": "checks passed for 5s"}],
        });
        let frame = super::render(&v);
        assert!(
            frame.starts_with("steps     1% ─ 5% ─ [25% (pause)] ─ 100%\n"),
            "{frame}"
        );
        assert!(frame.contains("phase     paused"), "{frame}");
        assert!(frame.contains("recent changes"), "{frame}");
        assert!(frame.contains("guard (checks passed for 5s)"), "{frame}");
    }
}
