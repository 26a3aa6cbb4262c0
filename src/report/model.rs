//! The report as data: what `/report.json` returns and what the HTML and
//! text renderings draw. Built on demand from the collector, the metrics and
//! the rollout state; endpoints worst first, fields real first.

use serde::Serialize;

use super::collector::{Collector, EndpointStats, FieldStats, Results, Sample, OVERFLOW};
use super::latency::Latency;
use crate::diff::Kind;

#[derive(Clone, Debug, Serialize)]
pub struct Headline {
    pub served_old: u64,
    pub served_new: u64,
    pub comparisons: u64,
    pub real_diffs: u64,
    pub noise: u64,
    pub ignored: u64,
    pub matched: u64,
    pub errors: u64,
    pub percent: f64,
    pub phase: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Quantiles {
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

fn quantiles(l: &Latency) -> Quantiles {
    Quantiles {
        p50_ms: l.quantile_ms(0.5),
        p95_ms: l.quantile_ms(0.95),
        p99_ms: l.quantile_ms(0.99),
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct LatencyReport {
    pub old: Quantiles,
    pub new: Quantiles,
    /// new / old at p50 and p99.
    pub ratio_p50: Option<f64>,
    pub ratio_p99: Option<f64>,
    /// Histogram of both sides on shared bins, for the chart.
    pub bins_ms: Vec<f64>,
    pub old_counts: Vec<u64>,
    pub new_counts: Vec<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldVerdict {
    /// Differs clearly more often than old differs from itself.
    Real,
    /// Differs about as often as old differs from itself.
    Noise,
    /// Matched an ignore rule.
    Ignored,
}

#[derive(Clone, Debug, Serialize)]
pub struct SampleView {
    #[serde(flatten)]
    pub sample: Sample,
    pub curl_old: String,
    pub curl_new: String,
}

impl SampleView {
    /// A sample with the commands that replay it against each backend.
    fn new(sample: &Sample, old: &str, new: &str, redacted: &dyn Fn(&str) -> bool) -> Self {
        Self {
            curl_old: curl(sample, old, redacted),
            curl_new: curl(sample, new, redacted),
            sample: sample.clone(),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct FieldReport {
    pub field: String,
    pub verdict: FieldVerdict,
    pub kinds: Vec<(Kind, u64)>,
    pub raw: u64,
    pub noise: u64,
    pub ignored: u64,
    /// Share of comparisons where old and new differed here.
    pub rate: f64,
    /// Share of baseline comparisons where old differed from itself here.
    pub noise_rate: f64,
    pub samples: Vec<SampleView>,
}

#[derive(Clone, Debug, Serialize)]
pub struct EndpointReport {
    pub endpoint: String,
    pub route: String,
    pub compared: u64,
    pub baseline: u64,
    pub results: Results,
    /// Share of comparisons with a real difference.
    pub diff_rate: f64,
    /// Share of comparisons whose only differences were noise.
    pub noise_rate: f64,
    pub latency: LatencyReport,
    pub fields: Vec<FieldReport>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Point {
    pub start_ms: u64,
    pub compared: u64,
    pub diff: u64,
    pub diff_rate: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Backends {
    pub old: String,
    pub new: String,
    pub old_twin: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub generated_ms: u64,
    pub headline: Headline,
    pub backends: Backends,
    pub endpoints: Vec<EndpointReport>,
    pub timeline: Vec<Point>,
    /// The guard's checks at its last look, with their evidence.
    pub guard: crate::rollout::guard::GuardReport,
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(old), Some(new)) if old > 0.0 => Some(new / old),
        _ => None,
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A `curl` command that sends the sample's request to `base`.
pub fn curl(sample: &Sample, base: &str, redacted: &dyn Fn(&str) -> bool) -> String {
    let mut cmd = format!(
        "curl -sS -i -X {} {}",
        sample.method,
        shell_quote(&format!("{}{}", base.trim_end_matches('/'), sample.target))
    );
    for (k, v) in &sample.headers {
        let skip = redacted(k)
            || matches!(
                k.as_str(),
                "content-length"
                    | "x-forwarded-for"
                    | "x-forwarded-proto"
                    | "x-forwarded-host"
                    | "via"
                    | "x-switchyard-shadow"
            );
        if !skip {
            cmd.push_str(" -H ");
            cmd.push_str(&shell_quote(&format!("{k}: {v}")));
        }
    }
    if !sample.request_body.is_empty() {
        cmd.push_str(" --data-binary ");
        cmd.push_str(&shell_quote(&sample.request_body));
    }
    cmd
}

fn field_report(
    e: &EndpointStats,
    name: &str,
    f: &FieldStats,
    c: &Collector,
    backends: &Backends,
    max_samples: usize,
) -> FieldReport {
    let (rate, noise_rate) = e.rates(f);
    let verdict = if f.raw == 0 && f.ignored > 0 {
        FieldVerdict::Ignored
    } else if c.model().is_real(f.raw, e.compared, f.noise, e.baseline) {
        FieldVerdict::Real
    } else {
        FieldVerdict::Noise
    };
    let redacted = |h: &str| c.is_redacted(h);
    FieldReport {
        field: name.to_string(),
        verdict,
        kinds: f.kinds.iter().map(|(k, n)| (*k, *n)).collect(),
        raw: f.raw,
        noise: f.noise,
        ignored: f.ignored,
        rate,
        noise_rate,
        samples: f
            .samples
            .iter()
            .rev()
            .take(max_samples)
            .map(|s| SampleView::new(s, &backends.old, &backends.new, &redacted))
            .collect(),
    }
}

/// What a report is built from: the parts of a running gateway it reads.
/// The admin API and the demo each hand theirs in, so the report depends
/// on neither.
pub struct Sources<'a> {
    pub controller: &'a crate::rollout::controller::Controller,
    pub metrics: &'a crate::metrics::Metrics,
    pub analysis: &'a crate::compare::Analysis,
    pub guard: &'a std::sync::Mutex<crate::rollout::guard::GuardReport>,
}

/// Builds the whole report.
pub fn build(src: &Sources<'_>) -> Report {
    let Sources {
        controller,
        metrics,
        analysis,
        guard,
    } = *src;
    let guard = guard.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let snap = controller.snapshot();
    let backends = Backends {
        old: snap.config.backends.old.url.clone(),
        new: snap.config.backends.new.url.clone(),
        old_twin: snap.config.backends.old_twin.as_ref().map(|b| b.url.clone()),
    };
    let (served_old, served_new) = served(metrics);
    let c = analysis.collector.lock().unwrap_or_else(|p| p.into_inner());
    let mut endpoints: Vec<EndpointReport> = c
        .endpoints
        .iter()
        .map(|(name, e)| {
            let mut fields: Vec<FieldReport> = e
                .fields
                .iter()
                .filter(|(_, f)| f.raw > 0 || f.ignored > 0 || f.noise > 0)
                .map(|(n, f)| field_report(e, n, f, &c, &backends, 5))
                .collect();
            fields.sort_by(|a, b| {
                let rank = |v: FieldVerdict| match v {
                    FieldVerdict::Real => 0,
                    FieldVerdict::Noise => 1,
                    FieldVerdict::Ignored => 2,
                };
                rank(a.verdict)
                    .cmp(&rank(b.verdict))
                    .then(b.rate.total_cmp(&a.rate))
                    .then(a.field.cmp(&b.field))
            });
            let (bins_ms, old_counts, new_counts) = Latency::shared_bins(&e.latency_old, &e.latency_new, 24);
            let (old, new) = (quantiles(&e.latency_old), quantiles(&e.latency_new));
            let per = |n: u64| {
                if e.compared == 0 {
                    0.0
                } else {
                    n as f64 / e.compared as f64
                }
            };
            EndpointReport {
                endpoint: name.clone(),
                route: e.route.clone(),
                compared: e.compared,
                baseline: e.baseline,
                results: e.results.clone(),
                diff_rate: per(e.results.diff),
                noise_rate: per(e.results.noise),
                latency: LatencyReport {
                    ratio_p50: ratio(old.p50_ms, new.p50_ms),
                    ratio_p99: ratio(old.p99_ms, new.p99_ms),
                    old,
                    new,
                    bins_ms,
                    old_counts,
                    new_counts,
                },
                fields,
            }
        })
        .collect();
    endpoints.sort_by(|a, b| {
        (a.endpoint == OVERFLOW)
            .cmp(&(b.endpoint == OVERFLOW))
            .then(b.diff_rate.total_cmp(&a.diff_rate))
            .then(b.compared.cmp(&a.compared))
            .then(a.endpoint.cmp(&b.endpoint))
    });
    let t = &c.totals;
    Report {
        guard,
        generated_ms: crate::rollout::state::now_ms(),
        headline: Headline {
            served_old,
            served_new,
            comparisons: t.matched + t.diff + t.noise + t.ignored,
            real_diffs: t.diff,
            noise: t.noise,
            ignored: t.ignored,
            matched: t.matched,
            errors: t.error,
            percent: snap.rollout.percent,
            phase: snap.rollout.phase.as_str().to_string(),
        },
        backends,
        endpoints,
        timeline: c
            .timeline
            .iter()
            .map(|m| Point {
                start_ms: m.start_ms,
                compared: m.compared,
                diff: m.diff,
                diff_rate: if m.compared == 0 {
                    0.0
                } else {
                    m.diff as f64 / m.compared as f64
                },
            })
            .collect(),
    }
}

/// Live requests served per side, from the metrics.
fn served(metrics: &crate::metrics::Metrics) -> (u64, u64) {
    let mut old = 0;
    let mut new = 0;
    for family in metrics.registry.gather() {
        if family.get_name() != "switchyard_requests_total" {
            continue;
        }
        for m in family.get_metric() {
            let backend = m
                .get_label()
                .iter()
                .find(|l| l.get_name() == "backend")
                .map(|l| l.get_value().to_string());
            let v = m.get_counter().get_value() as u64;
            match backend.as_deref() {
                Some("old") => old += v,
                Some("new") => new += v,
                _ => {}
            }
        }
    }
    (old, new)
}

/// Stored samples, newest first, optionally for one endpoint and field.
pub fn samples(src: &Sources<'_>, endpoint: Option<&str>, field: Option<&str>, limit: usize) -> Vec<serde_json::Value> {
    let snap = src.controller.snapshot();
    let c = src.analysis.collector.lock().unwrap_or_else(|p| p.into_inner());
    let redacted = |h: &str| c.is_redacted(h);
    let mut out: Vec<(u64, serde_json::Value)> = Vec::new();
    for (name, e) in &c.endpoints {
        if endpoint.is_some_and(|want| want != name) {
            continue;
        }
        for (fname, f) in &e.fields {
            if field.is_some_and(|want| want != fname && format!("body:{want}") != *fname) {
                continue;
            }
            for s in &f.samples {
                let backends = &snap.config.backends;
                let view = SampleView::new(s, &backends.old.url, &backends.new.url, &redacted);
                let mut v = serde_json::to_value(view).unwrap_or_default();
                if let Some(obj) = v.as_object_mut() {
                    obj.insert("endpoint".into(), name.clone().into());
                    obj.insert("field".into(), fname.clone().into());
                }
                out.push((s.at_ms, v));
            }
        }
    }
    out.sort_by_key(|s| std::cmp::Reverse(s.0));
    out.into_iter().take(limit).map(|(_, v)| v).collect()
}
