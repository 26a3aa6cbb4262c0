//! The report as a compact table for a terminal (`switchyard report`).

use std::fmt::Write;

use super::model::{FieldVerdict, Report};

fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(n.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

fn ms(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{v:.1}"))
}

pub fn render(r: &Report) -> String {
    let h = &r.headline;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "rollout {}% ({}) · served old {} new {} · generated {}{}",
        h.percent,
        h.phase,
        h.served_old,
        h.served_new,
        crate::calendar::datetime((r.generated_ms / 1000) as i64),
        r.since_ms.map_or(String::new(), |t| format!(
            " · since {}",
            crate::calendar::datetime((t / 1000) as i64)
        ))
    );
    // The parts add up to the whole: every comparison is exactly one of these.
    let _ = writeln!(
        out,
        "{} comparisons = {} real diff + {} accepted + {} noise + {} ignored + {} identical; {} pairs could not be compared",
        h.comparisons, h.real_diffs, h.accepted, h.noise, h.ignored, h.matched, h.errors
    );
    for a in &r.accepted {
        let x = &a.acceptance;
        let _ = writeln!(
            out,
            "accepted: {} {} ({} covered) by {}: {}{}",
            x.endpoint,
            x.field,
            a.covered,
            x.who,
            x.reason,
            if a.in_force { "" } else { " [expired]" }
        );
    }
    if let Some(t) = r.guard.test {
        let _ = writeln!(
            out,
            "guard: test {} of this rollout, look {}; false alarms held to {} per rollout",
            t.number, t.looks, r.guard.false_alarm_rate
        );
        for c in &r.guard.checks {
            let state = c.state.as_str();
            let _ = writeln!(
                out,
                "  {:<13} {:<12} {:>4} {}",
                c.name,
                state,
                c.progress.map_or("-".into(), |p| format!("{:.0}%", p * 100.0)),
                c.detail
            );
        }
    }
    if r.endpoints.is_empty() {
        out.push_str("no comparisons yet\n");
        return out;
    }
    let _ = writeln!(
        out,
        "\n{:<36} {:>7} {:>7} {:>7} {:>15} {:>7} {:>9}",
        "ENDPOINT", "COMPARED", "DIFF", "NOISE", "P50 OLD/NEW ms", "×P50", "BASELINE"
    );
    for e in &r.endpoints {
        let _ = writeln!(
            out,
            "{:<36} {:>8} {:>6.1}% {:>6.1}% {:>15} {:>7} {:>9}",
            cut(&e.endpoint, 36),
            e.compared,
            e.diff_rate * 100.0,
            e.noise_rate * 100.0,
            format!("{}/{}", ms(e.latency.old.p50_ms), ms(e.latency.new.p50_ms)),
            e.latency.ratio_p50.map_or("-".into(), |x| format!("{x:.2}")),
            e.latency.baseline_ratio_p50.map_or("-".into(), |x| format!("{x:.2}"))
        );
        for f in e.fields.iter().filter(|f| f.verdict != FieldVerdict::Ignored) {
            let kinds: Vec<&str> = f.kinds.iter().map(|(k, _)| k.as_str()).collect();
            let _ = writeln!(
                out,
                "  {:<5} {:<40} {:<18} {:>6.1}% (noise {:.1}%)",
                match f.verdict {
                    FieldVerdict::Real => "REAL",
                    FieldVerdict::Accepted => "ok",
                    _ => "noise",
                },
                cut(&f.field, 40),
                cut(&kinds.join(","), 18),
                f.rate * 100.0,
                f.noise_rate * 100.0
            );
        }
    }
    out
}
