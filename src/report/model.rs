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
    LatencyReport {
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
        },
        untimed: e.untimed,
    }
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
    let timeline: Vec<Point> = e
        .timeline
        .iter()
        .filter(|m| ctx.window_from_ms.is_none_or(|from| m.start_ms + 60_000 > from))
        .map(Point::of)
        .collect();
    // Within a window, the counts are the window's minutes.
    let results = match ctx.window_from_ms {
        Some(_) => timeline.iter().fold(Results::default(), |mut r, p| {
            r.merge(&p.results);
            r
        }),
        None => e.results.clone(),
    };
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
        let timeline: Vec<Point> = tallies
            .timeline
            .iter()
            .filter(|m| ctx.window_from_ms.is_none_or(|from| m.start_ms + 60_000 > from))
            .map(Point::of)
            .collect();
        let t = match ctx.window_from_ms {
            Some(_) => timeline.iter().fold(Results::default(), |mut r, p| {
                r.merge(&p.results);
                r
            }),
            None => tallies.totals.clone(),
        };
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

    /// The counts this report was built from. Exact for a report built
    /// without a `since` window.
    pub fn tallies(&self) -> Tallies {
        let mut endpoints = BTreeMap::new();
        for e in &self.endpoints {
            let fields = e
                .fields
                .iter()
                .map(|f| {
                    let stats = FieldStats {
                        raw: f.raw,
                        noise: f.noise,
                        ignored: f.ignored,
                        accepted: f.accepted,
                        kinds: f.kinds.iter().copied().collect(),
                        samples: f.samples.iter().rev().map(|s| s.sample.clone()).collect(),
                    };
                    (f.field.clone(), stats)
                })
                .collect();
            let stats = EndpointStats {
                route: e.route.clone(),
                compared: e.compared,
                baseline: e.baseline,
                results: e.results.clone(),
                fields,
                latency_old: e.latency.histograms.old.clone(),
                latency_new: e.latency.histograms.new.clone(),
                latency_twin: e.latency.histograms.twin.clone(),
                latency_old_with_twin: e.latency.histograms.old_with_twin.clone(),
                untimed: e.latency.untimed,
                timeline: e
                    .timeline
                    .iter()
                    .map(|p| Minute {
                        start_ms: p.start_ms,
                        results: p.results.clone(),
                    })
                    .collect(),
            };
            endpoints.insert(e.endpoint.clone(), stats);
        }
        let h = &self.headline;
        Tallies {
            endpoints,
            totals: Results {
                matched: h.matched,
                diff: h.real_diffs,
                accepted: h.accepted,
                noise: h.noise,
                ignored: h.ignored,
                error: h.errors,
            },
            timeline: self
                .timeline
                .iter()
                .map(|p| Minute {
                    start_ms: p.start_ms,
                    results: p.results.clone(),
                })
                .collect(),
            since_ms: self.since_ms,
            samples_per_field: SAMPLES_SHOWN,
        }
    }

    /// Several reports (several gateways, or saved reports of one) as one:
    /// counts and histograms added exactly, samples capped, the rollout as
    /// the newest report saw it.
    pub fn merge(reports: &[Report]) -> Result<Report, String> {
        let Some(newest) = reports.iter().max_by_key(|r| r.generated_ms) else {
            return Err("no reports to merge".into());
        };
        if let Some(r) = reports.iter().find(|r| r.window_from_ms.is_some()) {
            return Err(format!(
                "a report made with since={} counts only part of its fields and cannot be merged exactly; save reports without --since",
                r.window_from_ms.unwrap_or_default()
            ));
        }
        let mut tallies = Tallies {
            samples_per_field: SAMPLES_SHOWN,
            ..Tallies::default()
        };
        let mut accepted: Vec<Acceptance> = Vec::new();
        let mut changes: Vec<Change> = Vec::new();
        let (mut served_old, mut served_new, mut gateways) = (0, 0, 0);
        for r in reports {
            tallies.merge(&r.tallies());
            served_old += r.headline.served_old;
            served_new += r.headline.served_new;
            gateways += r.gateways;
            for a in &r.accepted {
                if !accepted.iter().any(|b| b == &a.acceptance) {
                    accepted.push(a.acceptance.clone());
                }
            }
            for c in &r.changes {
                if !changes.contains(c) {
                    changes.push(c.clone());
                }
            }
        }
        changes.sort_by_key(|c| c.at_ms);
        Ok(Report::build(
            &tallies,
            Context {
                generated_ms: newest.generated_ms,
                served_old,
                served_new,
                percent: newest.headline.percent,
                phase: newest.headline.phase.clone(),
                backends: newest.backends.clone(),
                guard: newest.guard.clone(),
                accepted,
                changes,
                model: newest.noise_model,
                window_from_ms: None,
                gateways,
            },
        ))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::Exchange;
    use crate::report::collector::Collector;
    use bytes::Bytes;
    use proptest::prelude::*;
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    fn config() -> crate::config::Config {
        crate::config::Config::from_yaml(
            "backends: { old: { url: 'http://127.0.0.1:1' }, new: { url: 'http://127.0.0.1:2' } }\n",
            "t",
        )
        .unwrap()
    }

    fn ex(body: String, ms: u64, status: u16) -> Exchange {
        let mut headers = http::HeaderMap::new();
        headers.insert("content-type", "application/json".parse().unwrap());
        Exchange {
            status,
            headers,
            body: Bytes::from(body),
            truncated: false,
            latency: Duration::from_micros(ms),
        }
    }

    /// One request of a made-up stream: which endpoint, which fields
    /// differ, latencies, and whether there is a twin.
    #[derive(Clone, Debug)]
    struct Call {
        endpoint: u8,
        a: u8,
        b: u8,
        twin: bool,
        old_us: u64,
        new_us: u64,
        minute: u64,
    }

    fn pair(c: &Call) -> crate::shadow::Pair {
        let body = |a: u8, b: u8| format!(r#"{{"a":{a},"b":{b},"c":1}}"#);
        crate::shadow::Pair {
            route: Arc::from("default"),
            rules: Arc::new(crate::diff::rules::DiffRules::default()),
            method: http::Method::GET,
            target: format!("/e{}/{}", c.endpoint, c.a),
            request_headers: http::HeaderMap::new(),
            request_body: Bytes::new(),
            request_id: format!("r{}-{}-{}", c.endpoint, c.a, c.b),
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(c.minute * 60),
            live: crate::side::Side::Old,
            old: ex(body(0, 0), c.old_us, 200),
            new: ex(body(c.a % 3, c.b % 2), c.new_us, if c.b == 7 { 500 } else { 200 }),
            twin: c.twin.then(|| ex(body(0, c.b % 2), c.old_us + 5, 200)),
            timed: crate::shadow::Timed {
                pair: c.a != 5,
                twin: true,
                twin_with_mirror: c.a != 4,
            },
            hold: crate::proxy::budget::Budget::new(0).hold(),
        }
    }

    fn report_of(calls: &[Call]) -> Report {
        let mut c = Collector::new(&config());
        for call in calls {
            c.ingest(&pair(call), call.minute * 60_000, &[]);
        }
        Report::build(
            &c.tallies(),
            Context {
                generated_ms: 1,
                served_old: calls.len() as u64,
                served_new: 0,
                percent: 0.0,
                phase: "idle".into(),
                backends: Backends {
                    old: "http://o".into(),
                    new: "http://n".into(),
                    old_twin: None,
                },
                guard: Default::default(),
                accepted: Vec::new(),
                changes: Vec::new(),
                model: c.model(),
                window_from_ms: None,
                gateways: 1,
            },
        )
    }

    /// What does not depend on the order comparisons came in: counts per
    /// endpoint and field, field verdicts, histograms, comparisons per
    /// minute. (Whether one comparison was `diff` or `noise` was judged
    /// with the counts of its moment, so those add up instead.)
    fn order_free(r: &Report) -> Vec<String> {
        let mut out = vec![format!("{} {}", r.headline.comparisons, r.headline.errors)];
        for e in &r.endpoints {
            let minutes: Vec<(u64, u64)> = e.timeline.iter().map(|p| (p.start_ms, p.compared)).collect();
            out.push(format!(
                "{} {} {} {:?} {:?} {:?}",
                e.endpoint, e.compared, e.baseline, e.latency.histograms, minutes, e.latency.new
            ));
            for f in &e.fields {
                out.push(format!(
                    "{} {} {:?} {} {} {} {} {:?} {} {}",
                    e.endpoint,
                    f.field,
                    f.verdict,
                    f.raw,
                    f.noise,
                    f.ignored,
                    f.accepted,
                    f.kinds,
                    f.rate,
                    f.noise_rate
                ));
            }
        }
        // Endpoints are ordered by their diff rate, which is judged as above.
        out.sort();
        out
    }

    fn results(r: &Report) -> Vec<(String, Results)> {
        r.endpoints
            .iter()
            .map(|e| (e.endpoint.clone(), e.results.clone()))
            .collect()
    }

    fn call() -> impl Strategy<Value = Call> {
        (
            0u8..4,
            0u8..6,
            0u8..8,
            any::<bool>(),
            50u64..50_000,
            50u64..50_000,
            0u64..5,
        )
            .prop_map(|(endpoint, a, b, twin, old_us, new_us, minute)| Call {
                endpoint,
                a,
                b,
                twin,
                old_us,
                new_us,
                minute,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// The merge of the reports of a split stream is the report of the
        /// whole stream: counts, verdicts, rates and histograms exact.
        #[test]
        fn merging_the_parts_gives_the_whole(mut calls in prop::collection::vec(call(), 1..120), cut in 0usize..120) {
            calls.sort_by_key(|c| c.minute);
            let cut = cut.min(calls.len());
            let whole = report_of(&calls);
            let parts = [report_of(&calls[..cut]), report_of(&calls[cut..])];
            let merged = Report::merge(&parts).unwrap();
            prop_assert_eq!(merged.gateways, 2);
            prop_assert_eq!(order_free(&merged), order_free(&whole));
            // The verdicts of each part add up exactly.
            for (name, got) in results(&merged) {
                let mut want = Results::default();
                for p in &parts {
                    if let Some((_, r)) = results(p).into_iter().find(|(n, _)| *n == name) {
                        want.merge(&r);
                    }
                }
                prop_assert_eq!(got, want);
            }
        }
    }

    #[test]
    fn a_saved_report_reads_back_and_merges_with_itself() {
        let calls: Vec<Call> = (0..40)
            .map(|i| Call {
                endpoint: (i % 3) as u8,
                a: (i % 5) as u8,
                b: (i % 8) as u8,
                twin: i % 2 == 0,
                old_us: 900 + i,
                new_us: 1500 + i,
                minute: i / 10,
            })
            .collect();
        let r = report_of(&calls);
        let text = serde_json::to_string(&r).unwrap();
        let back: Report = serde_json::from_str(&text).unwrap();
        assert_eq!(back, r);
        let twice = Report::merge(&[back.clone(), back]).unwrap();
        assert_eq!(twice.headline.comparisons, 2 * r.headline.comparisons);
        let e = &twice.endpoints[0];
        let one = r.endpoints.iter().find(|x| x.endpoint == e.endpoint).unwrap();
        assert_eq!(e.latency.histograms.old.total, 2 * one.latency.histograms.old.total);
        // Quantiles of a histogram added to itself do not move.
        assert_eq!(e.latency.old.p50_ms, one.latency.old.p50_ms);
    }
}
