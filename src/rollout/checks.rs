//! The guard's three checks, judged on what each side has seen since the
//! current test began. Pure: the same arms give the same checks, which is
//! what lets the tests simulate thousands of rollouts without a network.
//!
//! Each check asks one question, "is new worse than the margin allows?",
//! with a margin that says how much worse matters:
//! - error rate: new's 5xx rate above old's by more than
//!   `max_error_rate_increase` (absolute);
//! - latency: new slower than both old × `max_latency_ratio` and old +
//!   `min_latency_increase`. For p50 the test is on mean log latency (a
//!   slowdown is a shift there, and the tail is tamed); for p99 it counts
//!   how many of new's requests lie above old's p99 so raised (at most 1 %
//!   when new is within it). Sub-millisecond medians a scheduling hiccup
//!   apart never fail;
//! - mirrored errors: on the same mirrored requests, new answered 5xx
//!   where old did not, more often than the reverse by more than
//!   `max_error_rate_increase`. A paired test: no mix of methods or users
//!   can bias it, and with every request mirrored it sees new's errors from
//!   the first percent of a rollout on;
//! - diffs: real (non-noise) differences in more than `max_diff_rate` of
//!   comparisons.
//!
//! Each is a sequential test ([`super::sequential`]): it fails when the
//! evidence reaches what this test's share of `false_alarm_rate` demands.
//! Between a pass and a failure: a reading beyond its margin is
//! `above_margin` while the evidence is under half of what a failure
//! needs (the plan may take its next step, never the one to 100 %), and
//! `suspect` from halfway on (the plan holds). Either way the test is not
//! restarted, so the evidence keeps building until the reading comes back
//! within its margin or the test decides.

use serde::{Deserialize, Serialize};

use super::arms::Arms;
use super::sequential::{self, Evidence};
use crate::compare::Compared;
use crate::config::{GuardConfig, LatencyStatistic};

/// The checks sharing a test's false-alarm budget.
pub const CHECKS: u32 = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckState {
    Pass,
    /// The reading is beyond the margin on less than half the evidence a
    /// failure needs: the plan may take its next step, but not to 100 %.
    AboveMargin,
    /// The reading is beyond the margin and the evidence at least halfway
    /// to a failure: the plan holds its step, and its test runs on, until
    /// the reading comes back within the margin or the test decides.
    Suspect,
    Fail,
    /// Not enough data yet.
    Pending,
    /// Not applicable (no mirroring for the diff check).
    Skipped,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub name: CheckName,
    pub state: CheckState,
    /// The reading: the error-rate increase, the latency ratio, the diff rate.
    pub value: Option<f64>,
    /// The margin the reading is held to.
    pub threshold: f64,
    /// Λ: how many times likelier the data are if new is worse than the
    /// margin than if it is at it.
    pub evidence: Option<f64>,
    /// The Λ at which this check fails in this test (1/α).
    pub needed: Option<f64>,
    /// ln Λ / ln(1/α): the way to a failure, 1 or more fails.
    pub progress: Option<f64>,
    pub detail: String,
    /// Samples, p-value, effect size and verdict, for a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explain: Option<Box<super::explanation::Explanation>>,
}

/// A check's name: `error_rate`, `latency`, `diff_rate`, `mirror_errors`.
/// Read back from a saved report as one of those (anything else is
/// `unknown`), so it stays a `&'static str` for metric labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct CheckName(pub &'static str);

const NAMES: &[&str] = &["error_rate", "latency", "diff_rate", "mirror_errors"];

impl<'de> Deserialize<'de> for CheckName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Ok(CheckName(
            NAMES.iter().find(|n| **n == name).copied().unwrap_or("unknown"),
        ))
    }
}

impl std::ops::Deref for CheckName {
    type Target = str;
    fn deref(&self) -> &str {
        self.0
    }
}

impl PartialEq<&str> for CheckName {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl std::fmt::Display for CheckName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// What `/status` and the report show of the guard.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GuardReport {
    pub enabled: bool,
    pub last_run_ms: Option<u64>,
    /// Requests each side served in the current test.
    pub requests_old: u64,
    pub requests_new: u64,
    /// The current test: its number in the rollout and the looks taken.
    pub test: Option<TestInfo>,
    /// When the current test began (Unix ms).
    pub test_since_ms: Option<u64>,
    /// The chance of a false rollback the whole rollout is held to.
    pub false_alarm_rate: f64,
    pub checks: Vec<Check>,
    /// The last thing the guard did, and when.
    pub last_action: Option<String>,
    /// Why the guard would not act on a failing check now (the rollout is
    /// not progressing, or the guard is off); `None` while it would.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_acting: Option<String>,
    /// What a failing check would have the guard do that it holds back:
    /// a dry run (`would roll back: …`), or fewer failing looks in a row
    /// than `consecutive_failures`. Cleared by a look with no failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holding: Option<String>,
    /// With a fleet store: the instance that judged, and the instances
    /// whose windows it counted and left out (still on an older change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub counted: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<String>,
}

/// Which test of the rollout this is, and how often it has been looked at.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TestInfo {
    /// 1 for the rollout's first test (its first step), then 2, 3, …
    pub number: u32,
    /// Looks taken in this test, this one included.
    pub looks: u32,
}

impl CheckState {
    /// The name `/status`, the report and `switchyard status` show.
    pub const fn as_str(self) -> &'static str {
        match self {
            CheckState::Pass => "pass",
            CheckState::AboveMargin => "above_margin",
            CheckState::Suspect => "suspect",
            CheckState::Fail => "fail",
            CheckState::Pending => "pending",
            CheckState::Skipped => "skipped",
        }
    }

    /// Whether the plan may take its next step with this reading; `last`:
    /// the next step is to 100 %.
    pub fn lets_advance(self, last: bool) -> bool {
        match self {
            CheckState::Pass | CheckState::Skipped => true,
            CheckState::AboveMargin => !last,
            CheckState::Suspect | CheckState::Fail | CheckState::Pending => false,
        }
    }

    /// Whether the reading is beyond its margin (the test then runs on).
    pub fn beyond_margin(self) -> bool {
        matches!(self, CheckState::AboveMargin | CheckState::Suspect | CheckState::Fail)
    }
}

impl TestInfo {
    pub fn alpha(&self, cfg: &GuardConfig) -> f64 {
        sequential::alpha(cfg.false_alarm_rate, self.number, CHECKS)
    }
}

fn with_evidence(name: &'static str, value: f64, threshold: f64, beyond: bool, e: Evidence, detail: String) -> Check {
    // Rolled back only on evidence. Beyond the margin on less than half
    // the evidence a failure needs, the plan may still take its next step
    // (a handful of requests at 1 % cannot tell, and waiting there would
    // hold the rollout for minutes; the next step brings data faster), but
    // never to 100 %. Halfway there, the plan holds.
    let state = if beyond && e.decided() {
        CheckState::Fail
    } else if beyond && e.log_lr >= e.needed / 2.0 {
        CheckState::Suspect
    } else if beyond {
        CheckState::AboveMargin
    } else {
        CheckState::Pass
    };
    Check {
        name: CheckName(name),
        state,
        value: Some(value),
        threshold,
        evidence: Some(e.likelihood_ratio()),
        needed: Some(e.threshold()),
        progress: Some((e.log_lr / e.needed).max(0.0)),
        explain: None,
        detail: format!(
            "{detail}; evidence ×{} of ×{} needed",
            short(e.likelihood_ratio()),
            short(e.threshold())
        ),
    }
}

fn waiting(name: &'static str, threshold: f64, detail: String) -> Check {
    Check {
        name: CheckName(name),
        state: CheckState::Pending,
        value: None,
        threshold,
        evidence: None,
        needed: None,
        progress: None,
        detail,
        explain: None,
    }
}

/// A number for a line of text: 0.42, 12, 3.1k, 2.0e9.
pub fn short(x: f64) -> String {
    match x {
        x if x < 10.0 => format!("{x:.2}"),
        x if x < 1e4 => format!("{x:.0}"),
        x if x < 1e6 => format!("{:.1}k", x / 1e3),
        x => format!("{x:.1e}"),
    }
}

fn error_rate(cfg: &GuardConfig, arms: &Arms, alpha: f64) -> Check {
    let (o, n) = (&arms.old, &arms.new);
    let (eo, en) = (o.errors as f64 / o.requests as f64, n.errors as f64 / n.requests as f64);
    let margin = cfg.max_error_rate_increase;
    // Agresti–Caffo: with few errors the raw rates would claim certainty.
    let (increase, variance) = sequential::difference_of_rates((n.errors, n.requests), (o.errors, o.requests));
    let e = sequential::look(increase, variance, margin, (2.0 * margin).max(0.01), alpha);
    with_evidence(
        "error_rate",
        increase,
        margin,
        increase > margin,
        e,
        format!(
            "new {:.2}% ({} of {}) vs old {:.2}% ({} of {}) 5xx, {:.2} points allowed",
            en * 100.0,
            n.errors,
            n.requests,
            eo * 100.0,
            o.errors,
            o.requests,
            margin * 100.0
        ),
    )
}

fn latency(cfg: &GuardConfig, arms: &Arms, alpha: f64) -> Check {
    let (q, label) = match cfg.latency_statistic {
        LatencyStatistic::P50 => (0.5, "p50"),
        LatencyStatistic::P99 => (0.99, "p99"),
    };
    let (o, n) = (&arms.old.latencies, &arms.new.latencies);
    // The quantile needs about ten requests beyond it on each side.
    let need = (10.0_f64 / (1.0 - q)).round() as u64;
    if o.total() < need || n.total() < need {
        return waiting(
            "latency",
            cfg.max_latency_ratio,
            format!(
                "{label} needs {need} requests on each side (old {}, new {})",
                o.total(),
                n.total()
            ),
        );
    }
    let (qo, qn) = (o.quantile(q).unwrap_or(0.0), n.quantile(q).unwrap_or(0.0));
    let floor = cfg.min_latency_increase.get().as_secs_f64();
    let ratio = if qo > 0.0 { qn / qo } else { 1.0 };
    let reading = format!(
        "{label} new {:.2} ms vs old {:.2} ms (×{ratio:.2}, {:+.2} ms); allowed ×{} or +{}, whichever is more",
        qn * 1e3,
        qo * 1e3,
        (qn - qo) * 1e3,
        cfg.max_latency_ratio,
        cfg.min_latency_increase,
    );
    match cfg.latency_statistic {
        LatencyStatistic::P50 => {
            // On the log scale a slowdown is a shift, latency's long tail is
            // tamed, and the median of a log-symmetric spread is its
            // geometric mean: the test is on the difference of mean logs.
            let (lo, ln) = (o.ln_mean(), n.ln_mean());
            let margin = cfg.max_latency_ratio.ln().max((1.0 + floor / lo.exp()).ln());
            let variance = n.ln_variance() / n.total() as f64 + o.ln_variance() / o.total() as f64;
            let e = sequential::look(ln - lo, variance, margin, 0.1, alpha);
            with_evidence(
                "latency",
                ratio,
                cfg.max_latency_ratio,
                ln - lo > margin,
                e,
                format!(
                    "{reading}; geometric mean ×{:.2}, ×{:.2} allowed",
                    (ln - lo).exp(),
                    margin.exp()
                ),
            )
        }
        LatencyStatistic::P99 => {
            // Within the margin, at most 1 % of new's requests lie above the
            // bar old's p99 sets.
            let bar = (qo * cfg.max_latency_ratio).max(qo + floor);
            let share = n.above(bar) as f64 / n.total() as f64;
            let variance = q * (1.0 - q) * (1.0 / n.total() as f64 + 1.0 / o.total() as f64);
            let e = sequential::look(share - (1.0 - q), variance, 0.0, 1.0 - q, alpha);
            with_evidence(
                "latency",
                ratio,
                cfg.max_latency_ratio,
                qn > bar,
                e,
                format!(
                    "{reading}; {:.2}% of new above {:.2} ms, 1% allowed",
                    share * 100.0,
                    bar * 1e3
                ),
            )
        }
    }
}

/// What was compared, when there is enough of it; else the check as
/// skipped (nothing mirrored) or pending.
fn enough_compared(
    cfg: &GuardConfig,
    name: &'static str,
    margin: f64,
    compared: Option<Compared>,
) -> Result<Compared, Box<Check>> {
    let Some(c) = compared else {
        return Err(Box::new(Check {
            state: CheckState::Skipped,
            ..waiting(name, margin, "mirroring is off".into())
        }));
    };
    if c.comparisons < cfg.min_comparisons {
        return Err(Box::new(waiting(
            name,
            margin,
            format!(
                "waiting for {} comparisons ({} so far)",
                cfg.min_comparisons, c.comparisons
            ),
        )));
    }
    Ok(c)
}

fn mirror_errors(cfg: &GuardConfig, compared: Option<Compared>, alpha: f64) -> Check {
    let margin = cfg.max_error_rate_increase;
    let c = match enough_compared(cfg, "mirror_errors", margin, compared) {
        Ok(c) => c,
        Err(check) => return *check,
    };
    let n = c.comparisons;
    let (b, r) = (c.new_only_errors as f64, c.old_only_errors as f64);
    let nf = n as f64;
    let increase = (b - r) / nf;
    // The variance of a mean of −1/0/+1 per pair; one discordant pair
    // added so that none seen is not certainty.
    let variance = (((b + r + 1.0) / nf) - increase * increase).max(1.0 / nf) / nf;
    let e = sequential::look(increase, variance, margin, (2.0 * margin).max(0.01), alpha);
    with_evidence(
        "mirror_errors",
        increase,
        margin,
        increase > margin,
        e,
        format!(
            "on the same {n} requests, new alone answered 5xx {} times, old alone {} ({:+.2} points, {:.2} allowed)",
            c.new_only_errors,
            c.old_only_errors,
            increase * 100.0,
            margin * 100.0
        ),
    )
}

fn diff_rate(cfg: &GuardConfig, compared: Option<Compared>, alpha: f64) -> Check {
    let margin = cfg.max_diff_rate;
    let c = match enough_compared(cfg, "diff_rate", margin, compared) {
        Ok(c) => c,
        Err(check) => return *check,
    };
    let (n, d) = (c.comparisons, c.real);
    let rate = d as f64 / n as f64;
    let p = sequential::smoothed(d, n).max(margin);
    let e = sequential::look(
        rate,
        sequential::proportion_variance(p, n),
        margin,
        margin.max(0.01),
        alpha,
    );
    with_evidence(
        "diff_rate",
        rate,
        margin,
        rate > margin,
        e,
        format!(
            "{d} real differences in {n} comparisons ({:.2}%, {:.2}% allowed)",
            rate * 100.0,
            margin * 100.0
        ),
    )
}

/// Judges the current test. `compared` is what the mirrors compared since
/// it began, or `None` when nothing is mirrored.
pub fn judge(cfg: &GuardConfig, arms: &Arms, compared: Option<Compared>, test: TestInfo) -> Vec<Check> {
    let alpha = test.alpha(cfg);
    let (n_old, n_new) = (arms.old.requests, arms.new.requests);
    let mut checks = Vec::with_capacity(CHECKS as usize);
    if n_old >= cfg.min_requests.max(1) && n_new >= cfg.min_requests.max(1) {
        checks.push(error_rate(cfg, arms, alpha));
        checks.push(latency(cfg, arms, alpha));
    } else {
        let detail = format!(
            "waiting for {} requests on each side (old {n_old}, new {n_new})",
            cfg.min_requests
        );
        checks.push(waiting("error_rate", cfg.max_error_rate_increase, detail.clone()));
        checks.push(waiting("latency", cfg.max_latency_ratio, detail));
    }
    checks.push(mirror_errors(cfg, compared, alpha));
    checks.push(diff_rate(cfg, compared, alpha));
    checks
}

#[cfg(test)]
mod tests;
