//! The report as one self-contained HTML page: inline CSS and SVG charts, no
//! script and no external asset, so it works offline and can be saved or
//! attached to a ticket. Everything that came from traffic is escaped.

use std::fmt::Write;

use similar::{ChangeTag, TextDiff};

use super::model::{EndpointReport, FieldReport, FieldVerdict, Point, Report, SampleView};

/// Escapes text for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn pct(x: f64) -> String {
    if x == 0.0 {
        "0%".into()
    } else if x < 0.001 {
        format!("{:.3}%", x * 100.0)
    } else {
        format!("{:.1}%", x * 100.0)
    }
}

fn ms(x: Option<f64>) -> String {
    x.map_or("–".into(), |v| {
        if v < 10.0 {
            format!("{v:.2}")
        } else {
            format!("{v:.0}")
        }
    })
}

fn ratio(x: Option<f64>) -> String {
    x.map_or("–".into(), |v| format!("×{v:.2}"))
}

const STYLE: &str = r#"
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2430;background:#f6f7f9}
header{background:#1d2430;color:#fff;padding:16px 28px}
header h1{margin:0;font-size:20px}header p{margin:4px 0 0;color:#b8c1d1}
main{padding:20px 28px;max-width:1400px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin-bottom:20px}
.card{background:#fff;border:1px solid #dde1e8;border-radius:8px;padding:10px 16px;min-width:120px}
.card b{display:block;font-size:22px}.card span{color:#5b6577;font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.card.bad b{color:#b42318}.card.warn b{color:#b54708}.card.good b{color:#067647}
table{border-collapse:collapse;background:#fff;width:100%;margin:8px 0 16px}
th,td{border-bottom:1px solid #e4e7ec;padding:6px 10px;text-align:left;vertical-align:top}
th{background:#eef1f5;font-weight:600;font-size:12px;text-transform:uppercase;letter-spacing:.03em}
td.n{text-align:right;font-variant-numeric:tabular-nums}
section.endpoint{background:#fff;border:1px solid #dde1e8;border-radius:8px;padding:12px 18px;margin:18px 0}
section.endpoint h3{margin:0 0 6px;font-family:ui-monospace,monospace}
.tag{display:inline-block;border-radius:10px;padding:1px 8px;font-size:12px;font-weight:600}
.real{background:#fee4e2;color:#b42318}.noise{background:#eef1f5;color:#5b6577}.ignored{background:#f2f4f7;color:#98a2b3}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px}
pre{background:#f6f7f9;border:1px solid #e4e7ec;border-radius:6px;padding:8px;overflow:auto;max-height:320px;margin:4px 0}
.sides{display:grid;grid-template-columns:1fr 1fr;gap:10px}
.sides h4{margin:6px 0 2px;font-size:12px;color:#5b6577}
.del{background:#fee4e2}.ins{background:#dcfae6}
details{margin:6px 0}summary{cursor:pointer;color:#175cd3}
.charts{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}
.legend i{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px;border-radius:2px}
.muted{color:#5b6577}
.state-fail{color:#b42318;font-weight:600}.state-suspect,.state-above_margin{color:#b54708;font-weight:600}.state-pass{color:#067647}
.meter{display:inline-block;width:90px;height:8px;background:#eef1f5;border-radius:4px;vertical-align:middle;margin-right:6px}
.meter i{display:block;height:8px;border-radius:4px;background:#b54708}
"#;

/// Renders the whole page.
pub fn render(r: &Report) -> String {
    let mut h = String::with_capacity(64 * 1024);
    let hl = &r.headline;
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>Switchyard diff report</title><style>{STYLE}</style></head><body>"
    );
    let _ = write!(
        h,
        "<header><h1>Switchyard diff report</h1><p>old <code>{}</code> vs new <code>{}</code>{} · rollout {}% · phase {}</p></header><main>",
        escape(&r.backends.old),
        escape(&r.backends.new),
        r.backends.old_twin.as_ref().map_or(String::new(), |t| format!(" · noise baseline <code>{}</code>", escape(t))),
        hl.percent,
        escape(&hl.phase)
    );
    let card = |h: &mut String, class: &str, value: String, label: &str| {
        let _ = write!(
            h,
            "<div class=\"card {class}\"><b>{value}</b><span>{label}</span></div>"
        );
    };
    h.push_str("<div class=\"cards\" id=\"headline\">");
    card(&mut h, "", hl.served_old.to_string(), "served by old");
    card(&mut h, "", hl.served_new.to_string(), "served by new");
    card(&mut h, "", hl.comparisons.to_string(), "comparisons");
    card(
        &mut h,
        if hl.real_diffs > 0 { "bad" } else { "good" },
        hl.real_diffs.to_string(),
        "real diffs",
    );
    card(&mut h, "", hl.noise.to_string(), "noise only");
    card(&mut h, "", hl.matched.to_string(), "identical");
    card(
        &mut h,
        if hl.errors > 0 { "warn" } else { "" },
        hl.errors.to_string(),
        "errors",
    );
    card(&mut h, "", format!("{}%", hl.percent), "rollout");
    card(&mut h, "", escape(&hl.phase), "phase");
    h.push_str("</div>");

    guard_section(&mut h, &r.guard);

    h.push_str("<h2>Diff rate over time</h2>");
    h.push_str(&timeline_svg(&r.timeline));

    h.push_str("<h2>Endpoints, worst first</h2><table id=\"endpoints\"><thead><tr><th>endpoint</th><th>route</th><th>compared</th><th>real diff rate</th><th>noise rate</th><th>p50 old / new (ms)</th><th>p95 old / new</th><th>p99 old / new</th><th>new/old p50</th><th>new/old p99</th></tr></thead><tbody>");
    for (i, e) in r.endpoints.iter().enumerate() {
        let l = &e.latency;
        let _ = write!(
            h,
            "<tr><td><a href=\"#ep{i}\"><code>{}</code></a></td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{} / {}</td><td class=\"n\">{} / {}</td><td class=\"n\">{} / {}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            escape(&e.endpoint),
            escape(&e.route),
            e.compared,
            pct(e.diff_rate),
            pct(e.noise_rate),
            ms(l.old.p50_ms),
            ms(l.new.p50_ms),
            ms(l.old.p95_ms),
            ms(l.new.p95_ms),
            ms(l.old.p99_ms),
            ms(l.new.p99_ms),
            ratio(l.ratio_p50),
            ratio(l.ratio_p99)
        );
    }
    if r.endpoints.is_empty() {
        h.push_str("<tr><td colspan=\"10\" class=\"muted\">No comparisons yet: mirrored requests appear here once both sides have answered (is <code>shadow.percent</code> above 0?).</td></tr>");
    }
    h.push_str("</tbody></table>");

    for (i, e) in r.endpoints.iter().enumerate() {
        endpoint_section(&mut h, i, e);
    }
    h.push_str("<p class=\"muted\">Noise is what old disagrees with itself on (old vs old_twin, or old asked twice). A field is a <span class=\"tag real\">real</span> difference only when old and new differ there clearly more often than old differs from itself.</p>");
    h.push_str("</main></body></html>\n");
    h
}

fn endpoint_section(h: &mut String, i: usize, e: &EndpointReport) {
    let _ = write!(
        h,
        "<section class=\"endpoint\" id=\"ep{i}\"><h3>{}</h3><p class=\"muted\">route {} · {} comparisons ({} with a noise baseline) · {} real · {} noise · {} identical · {} errors</p>",
        escape(&e.endpoint),
        escape(&e.route),
        e.compared,
        e.baseline,
        e.results.diff,
        e.results.noise,
        e.results.matched,
        e.results.error
    );
    h.push_str("<div class=\"charts\">");
    h.push_str(&latency_svg(e));
    h.push_str("</div>");
    if e.fields.is_empty() {
        h.push_str("<p>No differences.</p></section>");
        return;
    }
    h.push_str("<table class=\"fields\"><thead><tr><th>field</th><th>verdict</th><th>difference</th><th>rate</th><th>noise rate</th><th>samples</th></tr></thead><tbody>");
    for f in &e.fields {
        field_row(h, f);
    }
    h.push_str("</tbody></table></section>");
}

fn field_row(h: &mut String, f: &FieldReport) {
    let (class, label) = match f.verdict {
        FieldVerdict::Real => ("real", "real"),
        FieldVerdict::Noise => ("noise", "noise"),
        FieldVerdict::Ignored => ("ignored", "ignored"),
    };
    let kinds: Vec<String> = f.kinds.iter().map(|(k, n)| format!("{} ×{n}", k.as_str())).collect();
    let _ = write!(
        h,
        "<tr><td><code>{}</code></td><td><span class=\"tag {class}\">{label}</span></td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>",
        escape(&f.field),
        escape(&kinds.join(", ")),
        pct(f.rate),
        pct(f.noise_rate)
    );
    for s in &f.samples {
        sample(h, s);
    }
    if f.samples.is_empty() {
        h.push_str("<span class=\"muted\">–</span>");
    }
    h.push_str("</td></tr>");
}

fn pretty(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| body.to_string())
}

fn sample(h: &mut String, sv: &SampleView) {
    let s = &sv.sample;
    let d = &s.difference;
    let _ = write!(
        h,
        "<details><summary><code>{} {}</code> · {} → {}</summary>",
        escape(&s.method),
        escape(&s.target),
        escape(d.left.as_deref().unwrap_or("(absent)")),
        escape(d.right.as_deref().unwrap_or("(absent)"))
    );
    let _ = write!(
        h,
        "<p class=\"muted\">request id <code>{}</code> · {} <code>{}</code>{}</p>",
        escape(&s.request_id),
        escape(d.kind.as_str()),
        escape(&d.location),
        d.detail
            .as_ref()
            .map_or(String::new(), |x| format!("<pre>{}</pre>", escape(x)))
    );
    let (old, new) = (pretty(&s.old.body), pretty(&s.new.body));
    let diff = TextDiff::from_lines(&old, &new);
    let (mut left, mut right) = (String::new(), String::new());
    for change in diff.iter_all_changes() {
        let line = escape(change.value());
        match change.tag() {
            ChangeTag::Equal => {
                left.push_str(&line);
                right.push_str(&line);
            }
            ChangeTag::Delete => {
                let _ = write!(left, "<span class=\"del\">{line}</span>");
            }
            ChangeTag::Insert => {
                let _ = write!(right, "<span class=\"ins\">{line}</span>");
            }
        }
    }
    let _ = write!(
        h,
        "<div class=\"sides\"><div><h4>old · {} · {:.1} ms</h4><pre>{left}</pre></div><div><h4>new · {} · {:.1} ms</h4><pre>{right}</pre></div></div>",
        s.old.status, s.old.latency_ms, s.new.status, s.new.latency_ms
    );
    let mut request = format!("{} {}\n", s.method, s.target);
    for (k, v) in &s.headers {
        let _ = writeln!(request, "{k}: {v}");
    }
    if !s.request_body.is_empty() {
        let _ = write!(request, "\n{}", s.request_body);
    }
    let _ = write!(h, "<h4>Request</h4><pre>{}</pre>", escape(&request));
    let _ = write!(
        h,
        "<h4>Reproduce</h4><pre>{}</pre><pre>{}</pre></details>",
        escape(&sv.curl_old),
        escape(&sv.curl_new)
    );
}

/// Overlaid histograms of old and new latency on shared log bins.
fn latency_svg(e: &EndpointReport) -> String {
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

/// Real-difference rate per minute.
fn timeline_svg(points: &[Point]) -> String {
    let (w, hgt, pad) = (900.0, 160.0, 34.0);
    let mut s = format!(
        "<svg class=\"timeline\" width=\"{w}\" height=\"{hgt}\" viewBox=\"0 0 {w} {hgt}\" role=\"img\" aria-label=\"real difference rate per minute\">"
    );
    let _ = write!(
        s,
        "<line x1=\"{pad}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#98a2b3\"/>",
        hgt - pad,
        w - 8.0,
        hgt - pad
    );
    let _ = write!(
        s,
        "<line x1=\"{pad}\" y1=\"8\" x2=\"{pad}\" y2=\"{}\" stroke=\"#98a2b3\"/>",
        hgt - pad
    );
    let max = points.iter().map(|p| p.diff_rate).fold(0.0_f64, f64::max).max(0.01);
    let _ = write!(
        s,
        "<text x=\"2\" y=\"14\" font-size=\"10\" fill=\"#5b6577\">{}</text>",
        pct(max)
    );
    if points.is_empty() {
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" font-size=\"12\" fill=\"#5b6577\">no comparisons yet</text>",
            pad + 10.0,
            hgt / 2.0
        );
    } else {
        let step = if points.len() > 1 {
            (w - pad - 8.0) / (points.len() - 1) as f64
        } else {
            0.0
        };
        let coords: Vec<String> = points
            .iter()
            .enumerate()
            .map(|(i, p)| {
                format!(
                    "{:.1},{:.1}",
                    pad + i as f64 * step,
                    hgt - pad - (hgt - pad - 12.0) * p.diff_rate / max
                )
            })
            .collect();
        let _ = write!(
            s,
            "<polyline fill=\"none\" stroke=\"#b42318\" stroke-width=\"2\" points=\"{}\"/>",
            coords.join(" ")
        );
        for (i, p) in points.iter().enumerate() {
            let _ = write!(
                s,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"#b42318\"><title>{} of {} comparisons differ</title></circle>",
                pad + i as f64 * step,
                hgt - pad - (hgt - pad - 12.0) * p.diff_rate / max,
                p.diff,
                p.compared
            );
        }
        let _ = write!(
            s,
            "<text x=\"{pad}\" y=\"{}\" font-size=\"10\" fill=\"#5b6577\">{} min ago</text>",
            hgt - 12.0,
            points.len().saturating_sub(1)
        );
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" font-size=\"10\" fill=\"#5b6577\" text-anchor=\"end\">now</text>",
            w - 8.0,
            hgt - 12.0
        );
    }
    s.push_str("</svg>");
    s
}

/// The guard's checks: where each stands and how far from a decision.
fn guard_section(h: &mut String, g: &crate::rollout::guard::GuardReport) {
    let _ = write!(h, "<h2>Guard</h2><p class=\"muted\" id=\"guard-test\">");
    match g.test {
        Some(t) => {
            let _ = write!(
                h,
                "{} · test {} of this rollout (each step is one), look {} · old {} / new {} requests since it began · false alarms held to {} per rollout, every look counted",
                if g.enabled {
                    "on (it acts while the phase is progressing)"
                } else {
                    "off: judging, never acting"
                },
                t.number,
                t.looks,
                g.requests_old,
                g.requests_new,
                g.false_alarm_rate
            );
        }
        None => h.push_str("no look taken yet"),
    }
    h.push_str("</p>");
    if g.checks.is_empty() {
        return;
    }
    h.push_str("<table id=\"guard\"><thead><tr><th>check</th><th>state</th><th>evidence / needed</th><th>to a failure</th><th>reading</th></tr></thead><tbody>");
    for c in &g.checks {
        let state = c.state.as_str();
        let evidence = match (c.evidence, c.needed) {
            (Some(e), Some(n)) => format!(
                "×{} / ×{}",
                crate::rollout::checks::short(e),
                crate::rollout::checks::short(n)
            ),
            _ => "-".into(),
        };
        let progress = c.progress.map_or("-".into(), |p| {
            format!(
                "<span class=\"meter\"><i style=\"width:{:.0}%\"></i></span>{:.0}%",
                (p * 100.0).min(100.0),
                p * 100.0
            )
        });
        let _ = write!(
            h,
            "<tr><td><code>{}</code></td><td class=\"state-{state}\">{}</td><td class=\"n\">{evidence}</td><td>{progress}</td><td>{}</td></tr>",
            c.name,
            state.replace('_', " "),
            escape(&c.detail)
        );
    }
    h.push_str("</tbody></table>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
    }
}
