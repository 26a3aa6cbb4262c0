//! Mirrors and what became of them: requests to the other side, the
//! comparisons of their answers, the bounds that shed them, and the
//! capture of live requests.

use std::sync::Arc;

use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, Registry};

use super::{counter, histogram};

/// Every `outcome` of `switchyard_shadow_requests_total`.
pub const SHADOW_OUTCOMES: &[&str] = &[
    "completed",
    "truncated",
    "dropped",
    "skipped_body",
    "error",
    "timeout",
    "cancelled",
    "skipped_upgrade",
    "skipped_stream",
];

/// Every `result` of `switchyard_comparisons_total`.
pub const COMPARISON_RESULTS: &[&str] = &["match", "diff", "accepted", "noise", "ignored", "error", "dropped"];

/// Every `result` of `switchyard_captured_requests_total`.
pub const CAPTURE_RESULTS: &[&str] = &["written", "dropped", "skipped_body", "failed"];

#[derive(Clone)]
pub struct MirrorMetrics {
    pub shadow_requests: IntCounterVec,
    pub comparisons: IntCounterVec,
    pub pair_duration: HistogramVec,
    pub shadow_drops: IntCounterVec,
    pub shadow_buffered_bytes: IntGauge,
    /// Requests offered to `capture:`, by what became of them.
    pub captured: IntCounterVec,
}

impl MirrorMetrics {
    pub(super) fn new(r: &Registry) -> Self {
        let m = Self {
            shadow_requests: counter(
                r,
                "switchyard_shadow_requests_total",
                "Mirrored requests, by target side and outcome.",
                &["backend", "route", "outcome"],
            ),
            comparisons: counter(
                r,
                "switchyard_comparisons_total",
                "Comparisons of old and new answers, by result.",
                &["route", "result"],
            ),
            pair_duration: histogram(
                r,
                "switchyard_pair_duration_seconds",
                "Latency of both sides of mirrored pairs.",
                &["backend", "route"],
            ),
            shadow_drops: counter(
                r,
                "switchyard_shadow_drops_total",
                "Mirrors or comparisons shed by a bound, by the bound that shed them.",
                &["reason"],
            ),
            shadow_buffered_bytes: {
                let g = IntGauge::new(
                    "switchyard_shadow_buffered_bytes",
                    "Bytes of mirrored bodies held now (read ahead, copied, being read, queued for analysis).",
                )
                .expect("metric definition");
                r.register(Box::new(g.clone())).expect("metric registered once");
                g
            },
            captured: counter(
                r,
                "switchyard_captured_requests_total",
                "Live requests sampled by capture:, by what became of them (written, dropped when the writer fell behind, skipped_body when the body was over max_body_bytes, failed to write).",
                &["result"],
            ),
        };
        for result in CAPTURE_RESULTS {
            m.captured.with_label_values(&[result]);
        }
        m
    }
}

/// Where mirrors go, as the `backend` label says it.
pub const MIRROR_BACKENDS: [&str; 4] = ["old", "new", "old_twin", "old_repeat"];

/// The sides a pair's latencies are observed under, resolved per route.
const PAIR_SIDES: [&str; 2] = ["old", "new"];

/// A mirrored route's `switchyard_shadow_requests_total` series, its
/// comparison results and its pair latencies, resolved once when the route
/// is built: they exist at zero from the start, and counting one costs no
/// label lookup (two hashes, a lock and a map search each) per mirror.
#[derive(Clone)]
pub struct MirrorCounters {
    series: Arc<Series>,
}

struct Series {
    requests: [[IntCounter; SHADOW_OUTCOMES.len()]; MIRROR_BACKENDS.len()],
    comparisons: [IntCounter; COMPARISON_RESULTS.len()],
    pair_duration: [Histogram; PAIR_SIDES.len()],
    /// For a side beyond [`PAIR_SIDES`], looked up by label.
    pair_duration_by_label: HistogramVec,
    route: Arc<str>,
}

impl MirrorCounters {
    pub fn new(m: &super::Metrics, route: &str) -> Self {
        Self {
            series: Arc::new(Series {
                requests: MIRROR_BACKENDS.map(|b| {
                    std::array::from_fn(|i| {
                        m.mirror
                            .shadow_requests
                            .with_label_values(&[b, route, SHADOW_OUTCOMES[i]])
                    })
                }),
                comparisons: std::array::from_fn(|i| {
                    m.mirror.comparisons.with_label_values(&[route, COMPARISON_RESULTS[i]])
                }),
                pair_duration: PAIR_SIDES.map(|b| m.mirror.pair_duration.with_label_values(&[b, route])),
                pair_duration_by_label: m.mirror.pair_duration.clone(),
                route: route.into(),
            }),
        }
    }

    /// Counts one outcome (names from [`MIRROR_BACKENDS`], [`SHADOW_OUTCOMES`]).
    pub fn inc(&self, backend: &str, outcome: &str) {
        let b = MIRROR_BACKENDS.iter().position(|x| *x == backend);
        let o = SHADOW_OUTCOMES.iter().position(|x| *x == outcome);
        debug_assert!(b.is_some() && o.is_some(), "unknown mirror series {backend}/{outcome}");
        if let (Some(b), Some(o)) = (b, o) {
            self.series.requests[b][o].inc();
        }
    }

    /// Counts one comparison result (a name from [`COMPARISON_RESULTS`]).
    pub fn compared(&self, result: &str) {
        let r = COMPARISON_RESULTS.iter().position(|x| *x == result);
        debug_assert!(r.is_some(), "unknown comparison result {result}");
        if let Some(r) = r {
            self.series.comparisons[r].inc();
        }
    }

    /// Observes one side's latency in a pair.
    pub fn observe_pair(&self, backend: &str, seconds: f64) {
        match PAIR_SIDES.iter().position(|x| *x == backend) {
            Some(i) => self.series.pair_duration[i].observe(seconds),
            None => self
                .series
                .pair_duration_by_label
                .with_label_values(&[backend, &self.series.route])
                .observe(seconds),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str, starts: &str) -> String {
        text.lines()
            .find(|l| l.starts_with(starts))
            .unwrap_or_else(|| panic!("no line starting {starts} in\n{text}"))
            .to_string()
    }

    #[test]
    fn resolved_series_count_under_their_own_labels() {
        let m = crate::metrics::Metrics::new();
        let pay = MirrorCounters::new(&m, "pay");
        let _other = MirrorCounters::new(&m, "search");
        let text = m.render();
        // Resolved at the route's build: every series is there at zero.
        assert!(text.contains(r#"switchyard_comparisons_total{result="diff",route="pay"} 0"#));
        assert!(text.contains(r#"switchyard_pair_duration_seconds_count{backend="new",route="pay"} 0"#));

        pay.compared("diff");
        pay.compared("diff");
        pay.compared("match");
        pay.observe_pair("old", 0.002);
        pay.observe_pair("new", 0.003);
        pay.observe_pair("new", 0.004);
        // A side beyond the resolved two is still counted, by its label.
        pay.observe_pair("old_twin", 0.005);
        pay.inc("new", "completed");
        let text = m.render();
        for (series, want) in [
            (r#"switchyard_comparisons_total{result="diff",route="pay"}"#, "2"),
            (r#"switchyard_comparisons_total{result="match",route="pay"}"#, "1"),
            (r#"switchyard_comparisons_total{result="diff",route="search"}"#, "0"),
            (
                r#"switchyard_pair_duration_seconds_count{backend="old",route="pay"}"#,
                "1",
            ),
            (
                r#"switchyard_pair_duration_seconds_count{backend="new",route="pay"}"#,
                "2",
            ),
            (
                r#"switchyard_pair_duration_seconds_count{backend="old_twin",route="pay"}"#,
                "1",
            ),
            (
                r#"switchyard_pair_duration_seconds_count{backend="new",route="search"}"#,
                "0",
            ),
            (
                r#"switchyard_shadow_requests_total{backend="new",outcome="completed",route="pay"}"#,
                "1",
            ),
        ] {
            assert_eq!(line(&text, series).rsplit(' ').next(), Some(want), "{series}");
        }
    }
}
