//! The report as one self-contained HTML page: inline CSS and SVG charts, no
//! script and no external asset, so it works offline and can be saved or
//! attached to a ticket. Everything that came from traffic is escaped.

use std::fmt::Write;

use similar::{ChangeTag, TextDiff};

use super::charts::{latency_svg, rate_svg};
use super::escape::escape;
use super::model::{AcceptedView, EndpointReport, FieldReport, FieldVerdict, Report, SampleView};
use crate::calendar::datetime;

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
main{padding:20px 28px;max-width:1400px;box-sizing:border-box}
section.endpoint{overflow:hidden}
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
.sides{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:10px;max-width:100%}
.sides pre{overflow:auto;white-space:pre}
table.fields{table-layout:fixed}table.fields td{overflow-wrap:anywhere}
table.fields td:last-child{overflow:hidden}
.quiet{color:#98a2b3;background:#f2f4f7}
.accepted{background:#e0eaff;color:#1d4ed8}
tr.expired td{color:#98a2b3}
details.folded>summary{color:#5b6577;margin:4px 0}
.chart{overflow-x:auto}
#generated{font-size:12px}
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
        "<header><h1>Switchyard diff report</h1><p>old <code>{}</code> vs new <code>{}</code>{} · rollout {}% · phase {}</p><p id=\"generated\">generated {}{}{}</p></header><main>",
        escape(&r.backends.old),
        escape(&r.backends.new),
        r.backends.old_twin.as_ref().map_or(String::new(), |t| format!(" · noise baseline <code>{}</code>", escape(t))),
        hl.percent,
        escape(&hl.phase),
        datetime((r.generated_ms / 1000) as i64),
        r.since_ms.map_or(String::new(), |t| format!(" · counting since {}", datetime((t / 1000) as i64))),
        if r.gateways > 1 { format!(" · {} gateways merged", r.gateways) } else { String::new() }
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
    card(&mut h, "", hl.accepted.to_string(), "accepted");
    card(&mut h, "", hl.noise.to_string(), "noise only");
    card(&mut h, "", hl.ignored.to_string(), "ignored only");
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

    accepted_section(&mut h, &r.accepted);

    h.push_str("<h2>Real differences over time</h2><div class=\"chart\">");
    h.push_str(&rate_svg(
        &r.timeline,
        &r.changes,
        900.0,
        170.0,
        "real difference rate per minute",
    ));
    h.push_str("</div><p class=\"muted legend\">per minute (UTC); dashed lines are rollout changes</p>");

    h.push_str("<h2>Endpoints, worst first</h2><table id=\"endpoints\"><thead><tr><th>endpoint</th><th>route</th><th>compared</th><th>real diff rate</th><th>noise rate</th><th>p50 old / new (ms)</th><th>p95 old / new</th><th>p99 old / new</th><th>new/old p50</th><th>new/old p99</th><th title=\"old's twin / old: what timing alone makes of two equal backends\">baseline p50 / p99</th><th title=\"time to the body's last bytes, new / old\">to body end p50 / p99</th></tr></thead><tbody>");
    for (i, e) in r.endpoints.iter().enumerate() {
        let l = &e.latency;
        let _ = write!(
            h,
            "<tr><td><a href=\"#ep{i}\"><code>{}</code></a></td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{} / {}</td><td class=\"n\">{} / {}</td><td class=\"n\">{} / {}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{} / {}</td><td class=\"n\">{} / {}</td></tr>",
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
            ratio(l.ratio_p99),
            ratio(l.baseline_ratio_p50),
            ratio(l.baseline_ratio_p99),
            ratio(l.end.as_ref().and_then(|x| x.ratio_p50)),
            ratio(l.end.as_ref().and_then(|x| x.ratio_p99))
        );
    }
    if r.endpoints.is_empty() {
        h.push_str("<tr><td colspan=\"12\" class=\"muted\">No comparisons yet: mirrored requests appear here once both sides have answered (is <code>shadow.percent</code> above 0?).</td></tr>");
    }
    h.push_str("</tbody></table>");

    for (i, e) in r.endpoints.iter().enumerate() {
        endpoint_section(&mut h, i, e, r);
    }
    h.push_str("<p class=\"muted\">Noise is what old disagrees with itself on (old vs old_twin, or old asked twice). A field is a <span class=\"tag real\">real</span> difference only when old and new differ there clearly more often than old differs from itself.</p>");
    h.push_str("</main></body></html>\n");
    h
}

fn endpoint_section(h: &mut String, i: usize, e: &EndpointReport, r: &Report) {
    let _ = write!(
        h,
        "<section class=\"endpoint\" id=\"ep{i}\"><h3>{}</h3><p class=\"muted\">route {} · {} comparisons ({} with a noise baseline) · {} real · {} accepted · {} noise · {} ignored · {} identical · {} errors</p>",
        escape(&e.endpoint),
        escape(&e.route),
        e.compared,
        e.baseline,
        e.results.diff,
        e.results.accepted,
        e.results.noise,
        e.results.ignored,
        e.results.matched,
        e.results.error
    );
    h.push_str("<div class=\"charts\">");
    h.push_str(&latency_svg(e));
    let _ = write!(
        h,
        "<figure>{}<figcaption class=\"legend\">real differences per minute</figcaption></figure>",
        rate_svg(
            &e.timeline,
            &r.changes,
            420.0,
            150.0,
            "real difference rate of this endpoint per minute"
        )
    );
    h.push_str("</div>");
    if e.fields.is_empty() {
        h.push_str("<p>No differences.</p></section>");
        return;
    }
    // Real and accepted fields first; noise and ignored ones folded under them.
    let (shown, folded): (Vec<&FieldReport>, Vec<&FieldReport>) = e
        .fields
        .iter()
        .partition(|f| matches!(f.verdict, FieldVerdict::Real | FieldVerdict::Accepted));
    let quiet: Vec<String> = folded
        .iter()
        .filter_map(|f| f.field.strip_prefix("body:").and_then(|p| p.rsplit('/').next()))
        .filter(|leaf| *leaf != "*")
        .map(|leaf| format!("\"{leaf}\":"))
        .collect();
    let head = "<table class=\"fields\"><colgroup><col style=\"width:22%\"><col style=\"width:8%\"><col style=\"width:14%\"><col style=\"width:7%\"><col style=\"width:7%\"><col></colgroup><thead><tr><th>field</th><th>verdict</th><th>difference</th><th>rate</th><th>noise rate</th><th>samples</th></tr></thead><tbody>";
    if !shown.is_empty() {
        h.push_str(head);
        for f in &shown {
            field_row(h, f, &quiet);
        }
        h.push_str("</tbody></table>");
    }
    if !folded.is_empty() {
        let _ = write!(
            h,
            "<details class=\"folded\"{}><summary>{} noise and ignored field{} (old differs from itself there as often, or a rule ignores it)</summary>{head}",
            if shown.is_empty() { " open" } else { "" },
            folded.len(),
            if folded.len() == 1 { "" } else { "s" }
        );
        for f in &folded {
            field_row(h, f, &quiet);
        }
        h.push_str("</tbody></table></details>");
    }
    h.push_str("</section>");
}

/// Acceptances: what, who, why, when, until when, and how much they covered.
fn accepted_section(h: &mut String, accepted: &[AcceptedView]) {
    if accepted.is_empty() {
        return;
    }
    h.push_str("<h2>Accepted differences</h2><table id=\"accepted\"><thead><tr><th>endpoint</th><th>field</th><th>kinds</th><th>why</th><th>who</th><th>when</th><th>until</th><th>covered</th></tr></thead><tbody>");
    for a in accepted {
        let x = &a.acceptance;
        let kinds: Vec<&str> = x.kinds.iter().map(|k| k.as_str()).collect();
        let _ = write!(
            h,
            "<tr{}><td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td></tr>",
            if a.in_force { "" } else { " class=\"expired\"" },
            escape(&x.endpoint),
            escape(&x.field),
            escape(&kinds.join(", ")),
            escape(&x.reason),
            escape(&x.who),
            datetime((x.at_ms / 1000) as i64),
            x.until_ms.map_or("–".into(), |u| {
                format!(
                    "{}{}",
                    datetime((u / 1000) as i64),
                    if a.in_force { "" } else { " (expired)" }
                )
            }),
            a.covered
        );
    }
    h.push_str("</tbody></table>");
}

fn field_row(h: &mut String, f: &FieldReport, quiet: &[String]) {
    let (class, label) = match f.verdict {
        FieldVerdict::Real => ("real", "real"),
        FieldVerdict::Accepted => ("accepted", "accepted"),
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
        sample(h, s, quiet);
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

/// One sample: the two bodies side by side, changed lines marked, and
/// changed lines of noise fields (`quiet`, as `"name":`) greyed.
fn sample(h: &mut String, sv: &SampleView, quiet: &[String]) {
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
        "<p class=\"muted\">sample <code>{}</code> · request id <code>{}</code> · {} <code>{}</code>{}</p>",
        escape(&s.id),
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
            ChangeTag::Delete | ChangeTag::Insert => {
                let raw = change.value().trim_start();
                let class = if quiet.iter().any(|q| raw.starts_with(q.as_str())) {
                    "quiet"
                } else if change.tag() == ChangeTag::Delete {
                    "del"
                } else {
                    "ins"
                };
                let side = if change.tag() == ChangeTag::Delete {
                    &mut left
                } else {
                    &mut right
                };
                let _ = write!(side, "<span class=\"{class}\">{line}</span>");
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
        "<h4>Reproduce</h4><pre>switchyard replay {}</pre><pre>{}</pre><pre>{}</pre></details>",
        escape(&s.id),
        escape(&sv.curl_old),
        escape(&sv.curl_new)
    );
}

/// The guard's checks: where each stands and how far from a decision.
/// `s` is markup this module made, but its texts came from checks: escape
/// them and keep the tags.
fn escape_keep_markup(s: &str) -> String {
    let (open, close) = ("<br><span class=\"muted\">", "</span>");
    match s.strip_prefix(open).and_then(|r| r.strip_suffix(close)) {
        Some(inner) => format!("{open}{}{close}", escape(inner)),
        None => escape(s),
    }
}

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
        let explained = c.explain.as_ref().map_or(String::new(), |x| {
            let effect = x.effect.as_ref().map_or(String::new(), |e| {
                let show = |v: f64| match e.unit.as_str() {
                    "ratio" => format!("×{v:.3}"),
                    "points" => format!("{v:+.2} pts"),
                    _ => format!("{:.2}%", v * 100.0),
                };
                format!(" · {} {} [{}, {}]", e.name, show(e.value), show(e.low), show(e.high))
            });
            let p = x
                .p_value
                .map_or(String::new(), |p| format!(" · p {p:.2e} ({})", x.test));
            format!(
                "<br><span class=\"muted\">{}{} · n old {} / new {}{effect}{p}</span>",
                match x.verdict {
                    crate::rollout::explain::Verdict::Pass => "pass",
                    crate::rollout::explain::Verdict::Fail => "fail",
                    crate::rollout::explain::Verdict::Inconclusive => "inconclusive",
                },
                x.because.as_deref().map_or(String::new(), |b| format!(": {b}")),
                x.samples_old,
                x.samples_new,
            )
        });
        let _ = write!(
            h,
            "<tr><td><code>{}</code></td><td class=\"state-{state}\">{}</td><td class=\"n\">{evidence}</td><td>{progress}</td><td>{}{}</td></tr>",
            c.name,
            state.replace('_', " "),
            escape(&c.detail),
            escape_keep_markup(&explained)
        );
    }
    h.push_str("</tbody></table>");
}
