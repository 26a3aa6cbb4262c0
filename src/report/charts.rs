//! The report's charts as inline SVG: latency histograms of old and new,
//! and the real-difference rate over time with its axes and the rollout's
//! changes marked where they happened.

use std::fmt::Write;

use super::escape::escape;
use super::model::{EndpointReport, Point};
use crate::rollout::state::Change;

const MUTED: &str = "#5b6577";

fn pct(x: f64) -> String {
    if x >= 0.1 {
        format!("{:.0}%", x * 100.0)
    } else {
        format!("{:.1}%", x * 100.0)
    }
}

/// `HH:MM` (UTC) of a Unix time in ms.
fn clock(ms: u64) -> String {
    // `YYYY-MM-DD HH:MM:SSZ`
    crate::calendar::datetime((ms / 1000) as i64)[11..16].to_string()
}

/// Overlaid histograms of old and new latency on shared log bins.
pub fn latency_svg(e: &EndpointReport) -> String {
    let l = &e.latency;
    let (w, hgt, pad) = (420.0, 150.0, 28.0);
    let mut s = format!(
        "<figure><svg class=\"latency\" width=\"{w}\" height=\"{hgt}\" viewBox=\"0 0 {w} {hgt}\" role=\"img\" aria-label=\"latency distribution of old and new\">"
    );
    let n = l.bins_ms.len();
    let max = l
        .old_counts
        .iter()
        .chain(&l.new_counts)
        .copied()
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let _ = write!(
        s,
        "<line x1=\"{pad}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#98a2b3\"/>",
        hgt - pad,
        w - 8.0,
        hgt - pad
    );
    if n > 0 {
        let slot = (w - pad - 8.0) / n as f64;
        for i in 0..n {
            let x = pad + i as f64 * slot;
            for (k, (counts, color)) in [(&l.old_counts, "#5b8def"), (&l.new_counts, "#f79009")]
                .into_iter()
                .enumerate()
            {
                let v = counts.get(i).copied().unwrap_or(0) as f64;
                let bh = (hgt - pad - 10.0) * v / max;
                let _ = write!(
                    s,
                    "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"{color}\" opacity=\"0.85\"><title>{} ≤ {:.2} ms: {}</title></rect>",
                    x + k as f64 * slot / 2.0,
                    hgt - pad - bh,
                    (slot / 2.0 - 1.0).max(1.0),
                    if k == 0 { "old" } else { "new" },
                    l.bins_ms[i],
                    v
                );
            }
        }
        let _ = write!(
            s,
            "<text x=\"{pad}\" y=\"{}\" font-size=\"10\" fill=\"#5b6577\">{:.2} ms</text>",
            hgt - 12.0,
            l.bins_ms[0]
        );
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" font-size=\"10\" fill=\"#5b6577\" text-anchor=\"end\">{:.2} ms</text>",
            w - 8.0,
            hgt - 12.0,
            l.bins_ms[n - 1]
        );
    } else {
        let _ = write!(
            s,
            "<text x=\"{pad}\" y=\"{}\" font-size=\"12\" fill=\"#5b6577\">no latency samples</text>",
            hgt / 2.0
        );
    }
    s.push_str("</svg><figcaption class=\"legend\">latency<i style=\"background:#5b8def\"></i>old<i style=\"background:#f79009\"></i>new</figcaption></figure>");
    s
}

/// The real-difference rate per minute on a time axis, with the y axis
/// labelled, the first, middle and last minute named (UTC), and each
/// rollout change in range drawn as a dashed line that says what changed.
pub fn rate_svg(points: &[Point], changes: &[Change], w: f64, hgt: f64, label: &str) -> String {
    let (left, bottom, top, right) = (42.0, 22.0, 10.0, 10.0);
    let plot_w = w - left - right;
    let plot_h = hgt - top - bottom;
    let mut s = format!(
        "<svg class=\"timeline\" width=\"{w}\" height=\"{hgt}\" viewBox=\"0 0 {w} {hgt}\" role=\"img\" aria-label=\"{}\">",
        escape(label)
    );
    let max = points.iter().map(|p| p.diff_rate).fold(0.0_f64, f64::max).max(0.01);
    let y_of = |rate: f64| top + plot_h - plot_h * rate / max;
    // Axes and y labels at 0, half and the top.
    let _ = write!(
        s,
        "<line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{:.1}\" stroke=\"#98a2b3\"/><line x1=\"{left}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#98a2b3\"/>",
        top + plot_h,
        top + plot_h,
        left + plot_w,
        top + plot_h
    );
    for frac in [0.0, 0.5, 1.0] {
        let y = y_of(max * frac);
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" fill=\"{MUTED}\" text-anchor=\"end\">{}</text><line x1=\"{left}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#eef1f5\"/>",
            left - 4.0,
            y + 3.0,
            pct(max * frac),
            left + plot_w
        );
    }
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" fill=\"{MUTED}\">no comparisons yet</text></svg>",
            left + 10.0,
            top + plot_h / 2.0
        );
        return s;
    };
    let (t0, t1) = (first.start_ms, last.start_ms + 60_000);
    let span = (t1 - t0).max(60_000) as f64;
    let x_of = |t: u64| left + plot_w * (t.saturating_sub(t0)) as f64 / span;
    for t in [t0, t0 + (t1 - t0) / 2, t1] {
        let anchor = if t == t0 {
            "start"
        } else if t == t1 {
            "end"
        } else {
            "middle"
        };
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" fill=\"{MUTED}\" text-anchor=\"{anchor}\">{}</text>",
            x_of(t),
            hgt - 6.0,
            clock(t)
        );
    }
    for c in changes.iter().filter(|c| c.at_ms >= t0 && c.at_ms <= t1) {
        let x = x_of(c.at_ms);
        let _ = write!(
            s,
            "<g class=\"change\"><line x1=\"{x:.1}\" y1=\"{top}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#175cd3\" stroke-dasharray=\"4 3\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" fill=\"#175cd3\">{}%</text><title>{} {}: {}% → {}% ({})</title></g>",
            top + plot_h,
            x + 3.0,
            top + 10.0,
            c.to_percent,
            clock(c.at_ms),
            escape(&c.who),
            c.from_percent,
            c.to_percent,
            escape(&c.why)
        );
    }
    // Each minute as a point at its middle, joined.
    let coords: Vec<(f64, f64)> = points
        .iter()
        .map(|p| (x_of(p.start_ms + 30_000), y_of(p.diff_rate)))
        .collect();
    let line: Vec<String> = coords.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
    let _ = write!(
        s,
        "<polyline fill=\"none\" stroke=\"#b42318\" stroke-width=\"2\" points=\"{}\"/>",
        line.join(" ")
    );
    for (p, (x, y)) in points.iter().zip(&coords) {
        let _ = write!(
            s,
            "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"2.5\" fill=\"#b42318\"><title>{}: {} of {} comparisons differ ({} accepted)</title></circle>",
            clock(p.start_ms),
            p.results.diff,
            p.compared,
            p.results.accepted
        );
    }
    s.push_str("</svg>");
    s
}
