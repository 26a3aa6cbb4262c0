//! A running gateway's report: takes the collector's tallies and the
//! rollout as it stands, and hands both to [`Report::build`]. The report
//! itself knows nothing of where its figures came from.

use std::sync::Mutex;

use super::model::{Backends, Context, Report};
use super::tally::NoiseModel;
use crate::compare::Analysis;
use crate::metrics::Metrics;
use crate::rollout::controller::Controller;
use crate::rollout::guard::GuardReport;
use crate::rollout::state::now_ms;

/// The parts of a running gateway a report reads. The admin API and the
/// demo each hand theirs in.
pub struct Sources<'a> {
    pub controller: &'a Controller,
    pub metrics: &'a Metrics,
    pub analysis: &'a Analysis,
    pub guard: &'a Mutex<GuardReport>,
}

impl Sources<'_> {
    pub fn backends(&self) -> Backends {
        let snap = self.controller.snapshot();
        Backends {
            old: snap.config.backends.old.url.clone(),
            new: snap.config.backends.new.url.clone(),
            old_twin: snap.config.backends.old_twin.as_ref().map(|b| b.url.clone()),
        }
    }

    /// The report now; with `from_ms`, of what happened since then.
    pub fn report(&self, from_ms: Option<u64>) -> Report {
        let snap = self.controller.snapshot();
        let (served_old, served_new) = self.metrics.served();
        let (tallies, model) = {
            let c = self.analysis.collector.lock().unwrap_or_else(|p| p.into_inner());
            (c.tallies(), c.model())
        };
        let guard = self.guard.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Report::build(
            &tallies,
            Context {
                generated_ms: now_ms(),
                served_old,
                served_new,
                percent: snap.rollout.percent,
                phase: snap.rollout.phase.as_str().to_string(),
                backends: self.backends(),
                guard,
                accepted: snap.rollout.accepted.clone(),
                changes: self.controller.history(),
                model,
                window_from_ms: from_ms,
                gateways: 1,
            },
        )
    }

    /// Stored samples, newest first (`GET /diffs`).
    pub fn samples(&self, endpoint: Option<&str>, field: Option<&str>, limit: usize) -> Vec<serde_json::Value> {
        let backends = self.backends();
        let c = self.analysis.collector.lock().unwrap_or_else(|p| p.into_inner());
        super::model::samples(&c.endpoints, &backends, endpoint, field, limit)
    }

    pub fn noise_model(&self) -> NoiseModel {
        self.analysis
            .collector
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .model()
    }
}
