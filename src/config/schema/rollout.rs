//! The rollout: the split, the step plan, and the guard that judges new.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::defaults;
use super::yes;
use crate::config::{HumanDuration, StickyKey};

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutConfig {
    /// Initial share of live traffic served by `new`; a saved state file wins.
    #[serde(default)]
    pub percent: f64,
    #[serde(default = "defaults::sticky")]
    pub sticky: StickyKey,
    /// Mixed into the sticky hash: a new salt picks a new first cohort.
    #[serde(default = "defaults::salt")]
    pub salt: String,
    /// Request header whose value `old` or `new` pins the request.
    #[serde(default = "defaults::force_header")]
    pub force_header: String,
    /// Client addresses or CIDRs that may pin with the force header; unset
    /// means anyone. A rollback overrides a pin to new either way.
    #[serde(default)]
    pub force_from: Option<Vec<String>>,
    /// Where rollout state is persisted; without it a restart forgets changes.
    #[serde(default)]
    pub state_file: Option<PathBuf>,
    /// The step plan, ascending: percents, or steps that pause or hold
    /// for their own time.
    #[serde(default = "defaults::steps")]
    pub steps: Vec<super::Step>,
    /// Hold time per step before the guard advances the plan by itself.
    #[serde(default)]
    pub step_every: Option<HumanDuration>,
    #[serde(default)]
    pub guard: GuardConfig,
    /// A shared store for the rollout (several gateways, one rollout).
    #[serde(default)]
    pub store: Option<super::RolloutStoreConfig>,
    /// Notifications of the rollout's changes, and gates it waits on.
    #[serde(default)]
    pub webhooks: Vec<super::WebhookConfig>,
    /// A request new fails, answered by old instead.
    #[serde(default)]
    pub fallback: Option<super::FallbackConfig>,
}

impl Default for RolloutConfig {
    fn default() -> Self {
        Self {
            percent: 0.0,
            sticky: defaults::sticky(),
            salt: defaults::salt(),
            force_header: defaults::force_header(),
            force_from: None,
            state_file: None,
            steps: defaults::steps(),
            step_every: None,
            guard: GuardConfig::default(),
            store: None,
            webhooks: Vec::new(),
            fallback: None,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum GuardAction {
    #[default]
    Rollback,
    Pause,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LatencyStatistic {
    #[default]
    P50,
    P99,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GuardConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// How often the checks run.
    #[serde(default = "defaults::guard_interval")]
    pub interval: HumanDuration,
    /// The longest one test runs: a step held longer starts a new test, so
    /// a problem that appears late is not diluted by what came before.
    #[serde(default = "defaults::guard_window")]
    pub window: HumanDuration,
    /// Requests each side needs in a test before anything is judged.
    #[serde(default = "defaults::min_requests")]
    pub min_requests: u64,
    /// Largest tolerated (new error rate − old error rate), as a fraction.
    #[serde(default = "defaults::max_error_rate_increase")]
    pub max_error_rate_increase: f64,
    /// Largest tolerated new/old latency ratio on `latency_statistic`.
    #[serde(default = "defaults::max_latency_ratio")]
    pub max_latency_ratio: f64,
    #[serde(default)]
    pub latency_statistic: LatencyStatistic,
    /// New's latency statistic must also be this much above old's to fail:
    /// a ratio on sub-millisecond medians is a scheduling hiccup.
    #[serde(default = "defaults::min_latency_increase")]
    pub min_latency_increase: HumanDuration,
    /// The chance that the guard fails a rollout of identical backends, over
    /// the whole rollout (every check, every look, every step).
    #[serde(default = "defaults::false_alarm_rate")]
    pub false_alarm_rate: f64,
    /// Replaced by `false_alarm_rate`; kept only to say so.
    #[serde(default, skip_serializing)]
    pub confidence: Option<f64>,
    /// Largest tolerated rate of real (non-noise) differences.
    #[serde(default = "defaults::max_diff_rate")]
    pub max_diff_rate: f64,
    /// Comparisons needed before the diff rate is judged.
    #[serde(default = "defaults::min_comparisons")]
    pub min_comparisons: u64,
    #[serde(default)]
    pub action: GuardAction,
    /// Looks in a row with a failing check before the guard acts: one noisy
    /// look does not roll back.
    #[serde(default = "one")]
    pub consecutive_failures: u32,
}

fn one() -> u32 {
    1
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: defaults::guard_interval(),
            window: defaults::guard_window(),
            min_requests: defaults::min_requests(),
            max_error_rate_increase: defaults::max_error_rate_increase(),
            max_latency_ratio: defaults::max_latency_ratio(),
            latency_statistic: LatencyStatistic::P50,
            min_latency_increase: defaults::min_latency_increase(),
            false_alarm_rate: defaults::false_alarm_rate(),
            confidence: None,
            max_diff_rate: defaults::max_diff_rate(),
            min_comparisons: defaults::min_comparisons(),
            action: GuardAction::Rollback,
            consecutive_failures: 1,
        }
    }
}
