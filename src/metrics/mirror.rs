//! Mirrors and what became of them: requests to the other side, the
//! comparisons of their answers, the bounds that shed them, and the
//! capture of live requests.

use std::sync::Arc;

use prometheus::{HistogramVec, IntCounter, IntCounterVec, IntGauge, Registry};

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

/// A mirrored route's `switchyard_shadow_requests_total` series (and its
/// comparison results), resolved once when the route is built: they exist
/// at zero from the start, and counting one costs no label lookup on the
/// live path.
#[derive(Clone)]
pub struct MirrorCounters {
    series: Arc<[[IntCounter; SHADOW_OUTCOMES.len()]; MIRROR_BACKENDS.len()]>,
}

impl MirrorCounters {
    pub fn new(m: &super::Metrics, route: &str) -> Self {
        for result in COMPARISON_RESULTS {
            m.mirror.comparisons.with_label_values(&[route, result]);
        }
        Self {
            series: Arc::new(MIRROR_BACKENDS.map(|b| {
                std::array::from_fn(|i| {
                    m.mirror
                        .shadow_requests
                        .with_label_values(&[b, route, SHADOW_OUTCOMES[i]])
                })
            })),
        }
    }

    /// Counts one outcome (names from [`MIRROR_BACKENDS`], [`SHADOW_OUTCOMES`]).
    pub fn inc(&self, backend: &str, outcome: &str) {
        let b = MIRROR_BACKENDS.iter().position(|x| *x == backend);
        let o = SHADOW_OUTCOMES.iter().position(|x| *x == outcome);
        debug_assert!(b.is_some() && o.is_some(), "unknown mirror series {backend}/{outcome}");
        if let (Some(b), Some(o)) = (b, o) {
            self.series[b][o].inc();
        }
    }
}
