//! The automatic guard: while the rollout is progressing, it judges `new`
//! against `old` over a sliding window and rolls back (or pauses) on its own
//! when new is worse, or advances the step plan when new has held up for
//! `step_every`.
//!
//! Three checks, each judged only with enough data:
//! - error rate: new's 5xx rate minus old's, against `max_error_rate_increase`;
//! - latency: a one-sided Mann–Whitney U test (new slower, at `confidence`)
//!   *and* an effect-size floor (`max_latency_ratio` on the median or p99),
//!   so a statistically clear but tiny slowdown does not trip it;
//! - diffs: the rate of real (non-noise) differences, when mirroring is on.

use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::controller::{Actor, Controller, RollbackReason};
use super::sink::LiveSample;
use super::state::{now_ms, Phase};
use super::stats;
use super::window::{Observation, Window};
use crate::compare::DiffWindow;
use crate::config::{GuardAction, GuardConfig, LatencyStatistic};
use crate::metrics::Metrics;

/// How often the sink is drained, whatever the check interval.
const DRAIN_EVERY: Duration = Duration::from_millis(100);
/// Latencies per side given to the U test at most (the most recent).
const MAX_TEST_SAMPLES: usize = 5_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckState {
    Pass,
    Fail,
    /// Not enough data yet.
    Pending,
    /// Not applicable (no mirroring for the diff check).
    Skipped,
}

#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub state: CheckState,
    pub value: Option<f64>,
    pub threshold: f64,
    pub detail: String,
}

/// What `/status` shows of the guard.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GuardReport {
    pub enabled: bool,
    pub last_run_ms: Option<u64>,
    pub requests_old: usize,
    pub requests_new: usize,
    pub checks: Vec<Check>,
    /// The last thing the guard did, and when.
    pub last_action: Option<String>,
}

pub struct Guard {
    controller: Arc<Controller>,
    rx: Receiver<LiveSample>,
    window: Window,
    diffs: Option<Arc<DiffWindow>>,
    metrics: Metrics,
    report: Arc<Mutex<GuardReport>>,
    seen_change: Option<u64>,
}

fn error_rate(q: &std::collections::VecDeque<Observation>) -> f64 {
    if q.is_empty() {
        return 0.0;
    }
    q.iter().filter(|o| o.error).count() as f64 / q.len() as f64
}

fn recent_latencies(q: &std::collections::VecDeque<Observation>) -> Vec<f64> {
    q.iter().rev().take(MAX_TEST_SAMPLES).map(|o| o.latency_s).collect()
}

/// Judges the window; pure apart from the diff window's clock.
pub fn judge(cfg: &GuardConfig, window: &Window, diffs: Option<(u64, u64)>) -> Vec<Check> {
    let (n_old, n_new) = (window.old.len() as u64, window.new.len() as u64);
    let enough = n_old >= cfg.min_requests && n_new >= cfg.min_requests;
    let pending = |name, threshold| Check {
        name,
        state: CheckState::Pending,
        value: None,
        threshold,
        detail: format!(
            "waiting for {} requests on each side (old {n_old}, new {n_new})",
            cfg.min_requests
        ),
    };
    let mut checks = Vec::with_capacity(3);

    if enough {
        let (eo, en) = (error_rate(&window.old), error_rate(&window.new));
        let increase = en - eo;
        checks.push(Check {
            name: "error_rate",
            state: if increase > cfg.max_error_rate_increase {
                CheckState::Fail
            } else {
                CheckState::Pass
            },
            value: Some(increase),
            threshold: cfg.max_error_rate_increase,
            detail: format!("new {:.2}% vs old {:.2}% 5xx", en * 100.0, eo * 100.0),
        });

        let mut old_l = recent_latencies(&window.old);
        let mut new_l = recent_latencies(&window.new);
        let mw = stats::mann_whitney_greater(&old_l, &new_l);
        let q = match cfg.latency_statistic {
            LatencyStatistic::P50 => 0.5,
            LatencyStatistic::P99 => 0.99,
        };
        let (qo, qn) = (stats::quantile(&mut old_l, q), stats::quantile(&mut new_l, q));
        let ratio = match (qo, qn) {
            (Some(o), Some(n)) if o > 0.0 => n / o,
            _ => 1.0,
        };
        let p = mw.map_or(1.0, |m| m.p_value);
        let significant = p < 1.0 - cfg.confidence;
        let fail = significant && ratio > cfg.max_latency_ratio;
        checks.push(Check {
            name: "latency",
            state: if fail { CheckState::Fail } else { CheckState::Pass },
            value: Some(ratio),
            threshold: cfg.max_latency_ratio,
            detail: format!(
                "{} new {:.2} ms vs old {:.2} ms (×{ratio:.2}); Mann–Whitney p = {p:.4} ({} at {:.0}% confidence)",
                match cfg.latency_statistic {
                    LatencyStatistic::P50 => "p50",
                    LatencyStatistic::P99 => "p99",
                },
                qn.unwrap_or(0.0) * 1000.0,
                qo.unwrap_or(0.0) * 1000.0,
                if significant { "slower" } else { "not slower" },
                cfg.confidence * 100.0
            ),
        });
    } else {
        checks.push(pending("error_rate", cfg.max_error_rate_increase));
        checks.push(pending("latency", cfg.max_latency_ratio));
    }

    checks.push(match diffs {
        None => Check {
            name: "diff_rate",
            state: CheckState::Skipped,
            value: None,
            threshold: cfg.max_diff_rate,
            detail: "mirroring is off".into(),
        },
        Some((n, _)) if n < cfg.min_comparisons => Check {
            name: "diff_rate",
            state: CheckState::Pending,
            value: None,
            threshold: cfg.max_diff_rate,
            detail: format!("waiting for {} comparisons ({n} so far)", cfg.min_comparisons),
        },
        Some((n, d)) => {
            let rate = d as f64 / n as f64;
            Check {
                name: "diff_rate",
                state: if rate > cfg.max_diff_rate {
                    CheckState::Fail
                } else {
                    CheckState::Pass
                },
                value: Some(rate),
                threshold: cfg.max_diff_rate,
                detail: format!("{d} real differences in {n} comparisons"),
            }
        }
    });
    checks
}

impl Guard {
    pub fn new(
        controller: Arc<Controller>,
        rx: Receiver<LiveSample>,
        diffs: Option<Arc<DiffWindow>>,
        metrics: Metrics,
        report: Arc<Mutex<GuardReport>>,
    ) -> Self {
        let cfg = controller.snapshot().config.rollout.guard.clone();
        let window = Window::new(cfg.window.get());
        report.lock().unwrap_or_else(|p| p.into_inner()).enabled = cfg.enabled;
        Self {
            controller,
            rx,
            window,
            diffs,
            metrics,
            report,
            seen_change: None,
        }
    }

    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut last_check = Instant::now();
        let mut tick = tokio::time::interval(DRAIN_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = Instant::now();
            self.window.drain(&self.rx, now);
            let interval = self.controller.snapshot().config.rollout.guard.interval.get();
            if now.duration_since(last_check) >= interval {
                last_check = now;
                self.evaluate(now);
            }
        }
    }

    /// One round of checks, and the action they call for.
    pub fn evaluate(&mut self, now: Instant) {
        let snap = self.controller.snapshot();
        let cfg = &snap.config.rollout.guard;
        self.window.set_span(cfg.window.get());
        self.window.trim(now);

        // A new step (or any change) is judged on requests split after it:
        // those taken since the change are kept, the ones before forgotten.
        let change = snap.rollout.last_change.as_ref().map(|c| c.at_ms);
        if change != self.seen_change {
            self.seen_change = change;
            let ago = Duration::from_millis(now_ms().saturating_sub(change.unwrap_or(0)));
            let at = now.checked_sub(ago).unwrap_or(now);
            self.window.forget_before(at);
            if let Some(d) = &self.diffs {
                d.forget_before(at);
            }
        }

        let mirroring = snap.config.shadow.percent > 0.0
            || snap.config.routes.iter().any(|r| r.shadow.percent.unwrap_or(0.0) > 0.0);
        let diffs = match (&self.diffs, mirroring) {
            (Some(d), true) => Some(d.count_since(now.checked_sub(cfg.window.get()).unwrap_or(now))),
            _ => None,
        };
        let checks = judge(cfg, &self.window, diffs);
        for c in &checks {
            self.metrics
                .guard_threshold
                .with_label_values(&[c.name])
                .set(c.threshold);
            if let Some(v) = c.value {
                self.metrics.guard_value.with_label_values(&[c.name]).set(v);
            }
        }

        let mut action = None;
        let active = cfg.enabled && snap.rollout.phase == Phase::Progressing;
        if active {
            if let Some(failed) = checks.iter().find(|c| c.state == CheckState::Fail) {
                let why = format!("guard: {} failed: {}", failed.name, failed.detail);
                let actor = Actor::new("guard", why.clone());
                let result = match cfg.action {
                    GuardAction::Rollback => self.controller.rollback(&actor, RollbackReason::Guard),
                    GuardAction::Pause => self.controller.pause(&actor),
                };
                tracing::warn!(target: "switchyard::guard", check = failed.name, value = ?failed.value, threshold = failed.threshold, action = ?cfg.action, "guard tripped");
                if let Err(e) = result {
                    tracing::error!(error = %e, "guard action failed");
                }
                action = Some(why);
            } else if let Some(every) = snap.config.rollout.step_every {
                let held = snap
                    .rollout
                    .step_since_ms
                    .is_some_and(|since| now_ms().saturating_sub(since) >= every.get().as_millis() as u64);
                let all_good = checks
                    .iter()
                    .all(|c| matches!(c.state, CheckState::Pass | CheckState::Skipped));
                if held && all_good {
                    match self
                        .controller
                        .step(&Actor::new("guard", format!("checks passed for {every}")))
                    {
                        Ok(s) => action = Some(format!("advanced to {}%", s.percent)),
                        Err(e) => tracing::debug!(error = %e, "no further step"),
                    }
                }
            }
        }

        let mut r = self.report.lock().unwrap_or_else(|p| p.into_inner());
        r.enabled = cfg.enabled;
        r.last_run_ms = Some(now_ms());
        r.requests_old = self.window.old.len();
        r.requests_new = self.window.new.len();
        r.checks = checks;
        if let Some(a) = action {
            r.last_action = Some(a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::side::Side;

    fn window(old: &[(f64, bool)], new: &[(f64, bool)]) -> Window {
        let mut w = Window::new(Duration::from_secs(60));
        let at = Instant::now();
        for (l, e) in old {
            w.push(
                Side::Old,
                Observation {
                    at,
                    latency_s: *l,
                    error: *e,
                },
            );
        }
        for (l, e) in new {
            w.push(
                Side::New,
                Observation {
                    at,
                    latency_s: *l,
                    error: *e,
                },
            );
        }
        w
    }

    fn cfg() -> GuardConfig {
        GuardConfig {
            min_requests: 50,
            ..GuardConfig::default()
        }
    }

    fn spread(n: usize, base: f64, err_every: usize) -> Vec<(f64, bool)> {
        (0..n)
            .map(|i| {
                (
                    base * (1.0 + (i % 10) as f64 / 20.0),
                    err_every > 0 && i % err_every == 0,
                )
            })
            .collect()
    }

    fn state(checks: &[Check], name: &str) -> CheckState {
        checks.iter().find(|c| c.name == name).unwrap().state
    }

    #[test]
    fn pending_until_both_sides_have_enough() {
        let w = window(&spread(100, 0.01, 0), &spread(10, 0.01, 0));
        let c = judge(&cfg(), &w, None);
        assert_eq!(state(&c, "error_rate"), CheckState::Pending);
        assert_eq!(state(&c, "latency"), CheckState::Pending);
        assert_eq!(state(&c, "diff_rate"), CheckState::Skipped);
    }

    #[test]
    fn identical_sides_pass() {
        let w = window(&spread(500, 0.01, 0), &spread(500, 0.01, 0));
        let c = judge(&cfg(), &w, Some((100, 0)));
        assert!(c.iter().all(|c| c.state == CheckState::Pass), "{c:?}");
    }

    #[test]
    fn five_percent_errors_fail() {
        let w = window(&spread(500, 0.01, 0), &spread(500, 0.01, 20));
        assert_eq!(state(&judge(&cfg(), &w, None), "error_rate"), CheckState::Fail);
    }

    #[test]
    fn thirty_percent_slower_fails_but_five_percent_does_not() {
        let w = window(&spread(500, 0.01, 0), &spread(500, 0.013, 0));
        assert_eq!(state(&judge(&cfg(), &w, None), "latency"), CheckState::Fail);
        let w = window(&spread(500, 0.01, 0), &spread(500, 0.0105, 0));
        assert_eq!(
            state(&judge(&cfg(), &w, None), "latency"),
            CheckState::Pass,
            "under the effect-size floor"
        );
    }

    #[test]
    fn diff_rate_fails_above_threshold() {
        let w = window(&spread(500, 0.01, 0), &spread(500, 0.01, 0));
        assert_eq!(
            state(&judge(&cfg(), &w, Some((100, 20))), "diff_rate"),
            CheckState::Fail
        );
        assert_eq!(
            state(&judge(&cfg(), &w, Some((10, 10))), "diff_rate"),
            CheckState::Pending
        );
    }
}
