//! The rollout and its guard: where the percent and phase stand, the
//! rollbacks, and each guard check's reading.

use prometheus::{Gauge, GaugeVec, IntCounter, IntCounterVec, Registry};

use super::{counter, gauge_vec};

/// Phases as exported by the one-hot `switchyard_rollout_phase` gauge.
pub const PHASES: &[&str] = &["idle", "progressing", "paused", "promoted", "rolled_back"];

#[derive(Clone)]
pub struct RolloutMetrics {
    pub percent: Gauge,
    pub phase: GaugeVec,
    pub rollbacks: IntCounterVec,
    pub guard_value: GaugeVec,
    pub guard_threshold: GaugeVec,
    pub guard_progress: GaugeVec,
    pub samples_dropped: IntCounter,
    pub webhook_deliveries: IntCounterVec,
}

impl RolloutMetrics {
    pub(super) fn new(r: &Registry) -> Self {
        let percent = Gauge::new(
            "switchyard_rollout_percent",
            "Share of live traffic served by new, in percent.",
        )
        .expect("metric definition");
        r.register(Box::new(percent.clone())).expect("metric registered once");
        let samples_dropped = IntCounter::new(
            "switchyard_guard_samples_dropped_total",
            "Live request samples the guard could not take because its queue was full.",
        )
        .expect("metric definition");
        r.register(Box::new(samples_dropped.clone()))
            .expect("metric registered once");
        let m = Self {
            percent,
            phase: gauge_vec(r, "switchyard_rollout_phase", "Rollout phase, one-hot.", &["phase"]),
            rollbacks: counter(r, "switchyard_rollbacks_total", "Rollbacks, by reason.", &["reason"]),
            guard_value: gauge_vec(
                r,
                "switchyard_guard_check_value",
                "Latest value measured by each guard check.",
                &["check"],
            ),
            guard_threshold: gauge_vec(
                r,
                "switchyard_guard_check_threshold",
                "Threshold of each guard check.",
                &["check"],
            ),
            guard_progress: gauge_vec(
                r,
                "switchyard_guard_check_evidence",
                "How far each guard check is from failing the current test: ln(evidence) / ln(evidence needed); 1 or more fails.",
                &["check"],
            ),
            samples_dropped,
            webhook_deliveries: counter(
                r,
                "switchyard_webhook_deliveries_total",
                "Webhook calls, by hook and result: delivered, failed (after retries), dropped (queue full), passed and refused (gates).",
                &["name", "result"],
            ),
        };
        for phase in PHASES {
            m.phase.with_label_values(&[phase]).set(0.0);
        }
        for reason in ["manual", "guard"] {
            m.rollbacks.with_label_values(&[reason]);
        }
        m
    }

    /// Sets the one-hot phase gauge and the percent gauge.
    pub fn set(&self, percent: f64, phase: &str) {
        self.percent.set(percent);
        for p in PHASES {
            self.phase
                .with_label_values(&[p])
                .set(if *p == phase { 1.0 } else { 0.0 });
        }
    }
}
