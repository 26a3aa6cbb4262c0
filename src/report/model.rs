//! The report as data: what `/report.json` returns and what the HTML and
//! text renderings draw. Built from [`Tallies`] (a value the collector hands
//! out) and a [`Context`] (the rollout as it stands), never from a running
//! gateway; endpoints worst first, fields real first.
//!
//! A report keeps every count it was built from (histograms included), so
//! reports merge exactly: [`Report::merge`] turns each back into tallies,
//! adds them, and builds the report of the whole.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::accept::Acceptance;
use super::collector::OVERFLOW;
use super::latency::Latency;
use super::sample::{Sample, REDACTED};
use super::tally::{EndpointStats, FieldStats, Minute, NoiseModel, Results, Tallies};
use crate::diff::Kind;
use crate::rollout::guard::GuardReport;
use crate::rollout::state::Change;

/// Samples shown per field.
pub const SAMPLES_SHOWN: usize = 5;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Headline {
    pub served_old: u64,
    pub served_new: u64,
    /// Comparisons made: real, accepted, noise, ignored and identical.
    pub comparisons: u64,
    pub real_diffs: u64,
    #[serde(default)]
    pub accepted: u64,
    pub noise: u64,
    pub ignored: u64,
    pub matched: u64,
    /// Pairs that could not be compared (a side failed).
    pub errors: u64,
    pub percent: f64,
    pub phase: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
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

/// The histograms the quantiles come from, kept for merging.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Histograms {
    pub old: Latency,
    pub new: Latency,
    pub twin: Latency,
    /// Old on the pairs the twin is counted on.
    #[serde(default)]
    pub old_with_twin: Latency,
    /// To the body's last bytes, where both ends were stamped.
    #[serde(default)]
    pub old_end: Latency,
    #[serde(default)]
    pub new_end: Latency,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LatencyReport {
    pub old: Quantiles,
    pub new: Quantiles,
    /// The noise baseline (old's twin), when there is one.
    pub twin: Option<Quantiles>,
    /// new / old at p50 and p99.
    pub ratio_p50: Option<f64>,
    pub ratio_p99: Option<f64>,
    /// twin / old at p50 and p99, on the pairs where the two went out
    /// together: what timing alone makes of two equal backends. new / old
    /// means little where this is far from 1.
    pub baseline_ratio_p50: Option<f64>,
    pub baseline_ratio_p99: Option<f64>,
    /// To the body's last bytes (plain HTTP/1.1 backends, stamped by the
    /// kernel on both sides): old, new, and new / old.
    #[serde(default)]
    pub end: Option<EndLatency>,
    /// Histogram of both sides on shared bins, for the chart.
    pub bins_ms: Vec<f64>,
    pub old_counts: Vec<u64>,
    pub new_counts: Vec<u64>,
    pub histograms: Histograms,
    /// Pairs left out of the latencies: their sides went out more than
    /// `SAME_INSTANT` apart (the mirrors' threads ran late).
    #[serde(default)]
    pub untimed: u64,
}

/// Time to the body's last bytes of both sides.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EndLatency {
    pub old: Quantiles,
    pub new: Quantiles,
    pub ratio_p50: Option<f64>,
    pub ratio_p99: Option<f64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldVerdict {
    /// Differs clearly more often than old differs from itself.
    Real,
    /// Differs, but as an engineer accepted it would.
    Accepted,
    /// Differs about as often as old differs from itself.
    Noise,
    /// Matched an ignore rule.
    Ignored,
}

impl FieldVerdict {
    fn rank(self) -> u8 {
        match self {
            FieldVerdict::Real => 0,
            FieldVerdict::Accepted => 1,
            FieldVerdict::Noise => 2,
            FieldVerdict::Ignored => 3,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SampleView {
    #[serde(flatten)]
    pub sample: Sample,
    pub curl_old: String,
    pub curl_new: String,
}

impl SampleView {
    /// A sample with the commands that replay it against each backend.
    pub fn new(sample: &Sample, backends: &Backends) -> Self {
        Self {
            curl_old: curl(sample, &backends.old),
            curl_new: curl(sample, &backends.new),
            sample: sample.clone(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FieldReport {
    pub field: String,
    pub verdict: FieldVerdict,
    pub kinds: Vec<(Kind, u64)>,
    pub raw: u64,
    pub noise: u64,
    pub ignored: u64,
    #[serde(default)]
    pub accepted: u64,
    /// Share of comparisons where old and new differed here.
    pub rate: f64,
    /// Share of baseline comparisons where old differed from itself here.
    pub noise_rate: f64,
    pub samples: Vec<SampleView>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
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
    /// This endpoint's comparisons per minute.
    #[serde(default)]
    pub timeline: Vec<Point>,
}

/// Comparisons of one minute.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Point {
    pub start_ms: u64,
    #[serde(flatten)]
    pub results: Results,
    pub compared: u64,
    pub diff_rate: f64,
}

impl Point {
    /// The minute this point was drawn from.
    pub fn minute(&self) -> Minute {
        Minute {
            start_ms: self.start_ms,
            results: self.results.clone(),
        }
    }

    fn of(m: &Minute) -> Self {
        let compared = m.results.compared();
        Self {
            start_ms: m.start_ms,
            compared,
            diff_rate: share(m.results.diff, compared),
            results: m.results.clone(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Backends {
    pub old: String,
    pub new: String,
    pub old_twin: Option<String>,
}

/// An acceptance and how many differences it has covered.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AcceptedView {
    #[serde(flatten)]
    pub acceptance: Acceptance,
    pub covered: u64,
    pub in_force: bool,
}

/// What a report says beside the counts: the rollout as it stands.
#[derive(Clone, Debug)]
pub struct Context {
    pub generated_ms: u64,
    pub served_old: u64,
    pub served_new: u64,
    pub percent: f64,
    pub phase: String,
    pub backends: Backends,
    pub guard: GuardReport,
    pub accepted: Vec<Acceptance>,
    /// Rollout changes, oldest first, for the charts' markers.
    pub changes: Vec<Change>,
    pub model: NoiseModel,
    /// Count only from this time on (minute resolution; see [`Report::since_ms`]).
    pub window_from_ms: Option<u64>,
    /// How many gateways' reports this is.
    pub gateways: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub generated_ms: u64,
    /// Counts begin here: the last reset, or the `since` asked for. With
    /// `since`, comparison counts, timelines and samples start there (to
    /// the minute); field counts and latency cover everything since reset.
    pub since_ms: Option<u64>,
    #[serde(default)]
    pub window_from_ms: Option<u64>,
    /// How many gateways' reports were merged into this one.
    #[serde(default = "one")]
    pub gateways: u32,
    pub headline: Headline,
    pub backends: Backends,
    pub noise_model: NoiseModel,
    pub endpoints: Vec<EndpointReport>,
    pub timeline: Vec<Point>,
    #[serde(default)]
    pub changes: Vec<Change>,
    #[serde(default)]
    pub accepted: Vec<AcceptedView>,
    /// The guard's checks at its last look, with their evidence.
    pub guard: GuardReport,
}

fn one() -> u32 {
    1
}

fn share(n: u64, of: u64) -> f64 {
    if of == 0 {
        0.0
    } else {
        n as f64 / of as f64
    }
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

/// A `curl` command that sends the sample's request to `base`. Redacted
/// headers are left out: the command must not carry a placeholder as a
/// credential.
pub fn curl(sample: &Sample, base: &str) -> String {
    let mut cmd = format!(
        "curl -sS -i -X {} {}",
        sample.method,
        shell_quote(&format!("{}{}", base.trim_end_matches('/'), sample.target))
    );
    for (k, v) in &sample.headers {
        let skip = v == REDACTED
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

fn field_report(e: &EndpointStats, name: &str, f: &FieldStats, ctx: &Context) -> FieldReport {
    let (rate, noise_rate) = e.rates(f);
    let verdict = if f.raw == 0 && f.accepted > 0 {
        FieldVerdict::Accepted
    } else if f.raw == 0 && f.ignored > 0 {
        FieldVerdict::Ignored
    } else if ctx.model.is_real(f.raw, e.compared, f.noise, e.baseline) {
        FieldVerdict::Real
    } else {
        FieldVerdict::Noise
    };
    let from = ctx.window_from_ms.unwrap_or(0);
    FieldReport {
        field: name.to_string(),
        verdict,
        kinds: f.kinds.iter().map(|(k, n)| (*k, *n)).collect(),
        raw: f.raw,
        noise: f.noise,
        ignored: f.ignored,
        accepted: f.accepted,
        rate,
        noise_rate,
        samples: f
            .samples
            .iter()
            .rev()
            .filter(|s| s.at_ms >= from)
            .take(SAMPLES_SHOWN)
            .map(|s| SampleView::new(s, &ctx.backends))
            .collect(),
    }
}

fn latency_report(e: &EndpointStats) -> LatencyReport {
    let (bins_ms, old_counts, new_counts) = Latency::shared_bins(&e.latency_old, &e.latency_new, 24);
    let (old, new) = (quantiles(&e.latency_old), quantiles(&e.latency_new));
    let twin = (e.latency_twin.total > 0).then(|| quantiles(&e.latency_twin));
    let (tw50, tw99) = twin.as_ref().map_or((None, None), |t| (t.p50_ms, t.p99_ms));
    let with_twin = quantiles(&e.latency_old_with_twin);
    let end = (e.latency_new_end.total > 0).then(|| {
        let (old, new) = (quantiles(&e.latency_old_end), quantiles(&e.latency_new_end));
        EndLatency {
            ratio_p50: ratio(old.p50_ms, new.p50_ms),
            ratio_p99: ratio(old.p99_ms, new.p99_ms),
            old,
            new,
        }
    });
    LatencyReport {
        end,
        ratio_p50: ratio(old.p50_ms, new.p50_ms),
        ratio_p99: ratio(old.p99_ms, new.p99_ms),
        baseline_ratio_p50: ratio(with_twin.p50_ms, tw50),
        baseline_ratio_p99: ratio(with_twin.p99_ms, tw99),
        old,
        new,
        twin,
        bins_ms,
        old_counts,
        new_counts,
        histograms: Histograms {
            old: e.latency_old.clone(),
            new: e.latency_new.clone(),
            twin: e.latency_twin.clone(),
            old_with_twin: e.latency_old_with_twin.clone(),
            old_end: e.latency_old_end.clone(),
            new_end: e.latency_new_end.clone(),
        },
        untimed: e.untimed,
    }
}

/// The minutes of a timeline a report shows, and, with a `since` window,
/// the counts of those minutes (the window's comparisons).
fn window(timeline: &std::collections::VecDeque<Minute>, ctx: &Context) -> (Vec<Point>, Option<Results>) {
    let points: Vec<Point> = timeline
        .iter()
        .filter(|m| ctx.window_from_ms.is_none_or(|from| m.start_ms + 60_000 > from))
        .map(Point::of)
        .collect();
    let counts = ctx.window_from_ms.map(|_| {
        points.iter().fold(Results::default(), |mut r, p| {
            r.merge(&p.results);
            r
        })
    });
    (points, counts)
}

fn endpoint_report(name: &str, e: &EndpointStats, ctx: &Context) -> EndpointReport {
    let mut fields: Vec<FieldReport> = e
        .fields
        .iter()
        .filter(|(_, f)| f.raw > 0 || f.ignored > 0 || f.noise > 0 || f.accepted > 0)
        .map(|(n, f)| field_report(e, n, f, ctx))
        .collect();
    fields.sort_by(|a, b| {
        a.verdict
            .rank()
            .cmp(&b.verdict.rank())
            .then(b.rate.total_cmp(&a.rate))
            .then(a.field.cmp(&b.field))
    });
    let (timeline, in_window) = window(&e.timeline, ctx);
    let results = in_window.unwrap_or_else(|| e.results.clone());
    let compared = match ctx.window_from_ms {
        Some(_) => results.compared(),
        None => e.compared,
    };
    EndpointReport {
        endpoint: name.to_string(),
        route: e.route.clone(),
        compared,
        baseline: e.baseline,
        diff_rate: share(results.diff, compared),
        noise_rate: share(results.noise, compared),
        results,
        latency: latency_report(e),
        fields,
        timeline,
    }
}

impl Report {
    /// The report of `tallies` as the rollout stands in `ctx`.
    pub fn build(tallies: &Tallies, ctx: Context) -> Report {
        let mut endpoints: Vec<EndpointReport> = tallies
            .endpoints
            .iter()
            .map(|(name, e)| endpoint_report(name, e, &ctx))
            .filter(|e| ctx.window_from_ms.is_none() || e.compared + e.results.error > 0)
            .collect();
        endpoints.sort_by(|a, b| {
            (a.endpoint == OVERFLOW)
                .cmp(&(b.endpoint == OVERFLOW))
                .then(b.diff_rate.total_cmp(&a.diff_rate))
                .then(b.compared.cmp(&a.compared))
                .then(a.endpoint.cmp(&b.endpoint))
        });
        let (timeline, in_window) = window(&tallies.timeline, &ctx);
        let t = in_window.unwrap_or_else(|| tallies.totals.clone());
        let accepted = ctx
            .accepted
            .iter()
            .map(|a| AcceptedView {
                covered: tallies
                    .endpoints
                    .get(&a.endpoint)
                    .and_then(|e| e.fields.get(&a.field))
                    .map_or(0, |f| f.accepted),
                in_force: a.in_force(ctx.generated_ms),
                acceptance: a.clone(),
            })
            .collect();
        let since_ms = match (tallies.since_ms, ctx.window_from_ms) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        Report {
            generated_ms: ctx.generated_ms,
            since_ms,
            window_from_ms: ctx.window_from_ms,
            gateways: ctx.gateways,
            headline: Headline {
                served_old: ctx.served_old,
                served_new: ctx.served_new,
                comparisons: t.compared(),
                real_diffs: t.diff,
                accepted: t.accepted,
                noise: t.noise,
                ignored: t.ignored,
                matched: t.matched,
                errors: t.error,
                percent: ctx.percent,
                phase: ctx.phase,
            },
            backends: ctx.backends,
            noise_model: ctx.model,
            endpoints,
            timeline,
            changes: ctx.changes,
            accepted,
            guard: ctx.guard,
        }
    }
}

/// Stored samples, newest first, optionally for one endpoint and field.
pub fn samples(
    endpoints: &BTreeMap<String, EndpointStats>,
    backends: &Backends,
    endpoint: Option<&str>,
    field: Option<&str>,
    limit: usize,
) -> Vec<serde_json::Value> {
    let mut out: Vec<(u64, serde_json::Value)> = Vec::new();
    for (name, e) in endpoints {
        if endpoint.is_some_and(|want| want != name) {
            continue;
        }
        for (fname, f) in &e.fields {
            if field.is_some_and(|want| want != fname && format!("body:{want}") != *fname) {
                continue;
            }
            for s in &f.samples {
                let mut v = serde_json::to_value(SampleView::new(s, backends)).unwrap_or_default();
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
