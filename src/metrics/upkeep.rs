//! The gateway's own upkeep: config reloads, the state file, the diff
//! store and the log writers.

use prometheus::{IntCounter, IntCounterVec, Registry};

use super::{counter, plain_counter};

#[derive(Clone)]
pub struct UpkeepMetrics {
    pub config_reloads: IntCounterVec,
    pub state_persist_failures: IntCounter,
    pub diff_store_write_failures: IntCounter,
    pub log_lines_dropped: IntCounterVec,
}

impl UpkeepMetrics {
    pub(super) fn new(r: &Registry) -> Self {
        let m = Self {
            config_reloads: counter(
                r,
                "switchyard_config_reloads_total",
                "Config reloads, by result.",
                &["result"],
            ),
            state_persist_failures: plain_counter(
                r,
                "switchyard_state_persist_failures_total",
                "Rollout state changes that could not be written to the state file.",
            ),
            diff_store_write_failures: plain_counter(
                r,
                "switchyard_diff_store_write_failures_total",
                "Records that could not be appended to the diff store.",
            ),
            log_lines_dropped: counter(
                r,
                "switchyard_log_lines_dropped_total",
                "Log lines dropped because the log writer fell behind, by sink.",
                &["sink"],
            ),
        };
        for sink in ["log", "access"] {
            m.log_lines_dropped.with_label_values(&[sink]);
        }
        m
    }

    /// Brings `switchyard_log_lines_dropped_total` up to the log writers'
    /// own counts (they live outside the registry).
    pub fn sync_log_drops(&self) {
        for (sink, dropped) in crate::logging::dropped_lines() {
            let c = self.log_lines_dropped.with_label_values(&[sink]);
            let known = c.get();
            if dropped > known {
                c.inc_by(dropped - known);
            }
        }
    }
}
