//! The automatic guard: while the rollout is progressing, it judges `new`
//! against `old` and rolls back (or pauses) on its own when new is worse,
//! or advances the step plan when new has held up for `step_every`.
//!
//! Every step is one sequential test (see [`super::sequential`] for why the
//! false-alarm rate then holds over the whole rollout, however often the
//! guard looks): what each side saw since the step began is accumulated in
//! [`Arms`], judged every `interval` by [`super::checks`]. A step held
//! longer than `window` starts a new test, so a problem that appears late
//! is not diluted by hours of good traffic.

use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::arms::Arms;
use super::checks::{judge, TestInfo};
pub use super::checks::{Check, CheckState};
use super::controller::{Actor, Controller, RollbackReason};
use super::sink::LiveSample;
use super::state::{now_ms, Phase, RolloutState};
use crate::compare::DiffWindow;
use crate::config::GuardAction;
use crate::metrics::Metrics;

/// How often the sink is drained and the state looked at, whatever the
/// check interval.
const DRAIN_EVERY: Duration = Duration::from_millis(100);
/// Samples kept after they were counted, so that a test begun by a change
/// seen a little late still gets every request split after it.
const RECENT: Duration = Duration::from_secs(2);
const RECENT_MAX: usize = 200_000;

/// What `/status` and the report show of the guard.
#[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
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
}

pub struct Guard {
    controller: Arc<Controller>,
    rx: Receiver<LiveSample>,
    arms: Arms,
    recent: std::collections::VecDeque<LiveSample>,
    /// The current test's number in the rollout (0: none begun).
    test: u32,
    looks: u32,
    test_since_ms: u64,
    /// A reading was beyond its margin at the last look: the test runs on
    /// past `window`.
    suspect: bool,
    diffs: Option<Arc<DiffWindow>>,
    metrics: Metrics,
    report: Arc<Mutex<GuardReport>>,
    seen_change: Option<u64>,
}

/// A change that ends a rollout (or is not one): the next raise starts a
/// new rollout with the whole false-alarm budget.
fn ends_rollout(state: &RolloutState) -> bool {
    state.percent <= 0.0 || matches!(state.phase, Phase::RolledBack | Phase::Promoted)
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
        report.lock().unwrap_or_else(|p| p.into_inner()).enabled = cfg.enabled;
        Self {
            controller,
            rx,
            arms: Arms::new(Instant::now()),
            recent: std::collections::VecDeque::new(),
            test: 0,
            looks: 0,
            test_since_ms: now_ms(),
            suspect: false,
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
            self.take_samples(now);
            self.follow_changes(now);
            let interval = self.controller.snapshot().config.rollout.guard.interval.get();
            if now.duration_since(last_check) >= interval {
                last_check = now;
                self.evaluate();
            }
        }
    }

    /// Counts what waits in the sink, and keeps it a little while.
    fn take_samples(&mut self, now: Instant) {
        while let Ok(s) = self.rx.try_recv() {
            self.arms.record(s.side, s.at, s.latency.as_secs_f64(), s.error);
            if self.recent.len() >= RECENT_MAX {
                self.recent.pop_front();
            }
            self.recent.push_back(s);
        }
        let keep_from = now.checked_sub(RECENT);
        while let (Some(s), Some(from)) = (self.recent.front(), keep_from) {
            if s.at >= from {
                break;
            }
            self.recent.pop_front();
        }
    }

    /// Begins a new test at every rollout change, and when the current one
    /// has run for `window` with no check suspect.
    fn follow_changes(&mut self, now: Instant) {
        let snap = self.controller.snapshot();
        let change = snap.rollout.last_change.as_ref().map(|c| c.at_ms);
        if change != self.seen_change {
            self.seen_change = change;
            let at_ms = change.unwrap_or_else(now_ms);
            let ago = Duration::from_millis(now_ms().saturating_sub(at_ms));
            let at = now.checked_sub(ago).unwrap_or(now);
            // A change that ends the rollout resets the budget's count.
            let number = if ends_rollout(&snap.rollout) { 0 } else { self.test + 1 };
            self.begin_test(number, at, at_ms);
        } else if self.test > 0
            && !self.suspect
            && now.duration_since(self.arms.since) >= snap.config.rollout.guard.window.get()
        {
            // Ending a test that has not failed, whenever, costs nothing of
            // its guarantee; the next test starts on fresh data.
            self.begin_test(self.test + 1, now, now_ms());
        } else if self.test == 0 && !ends_rollout(&snap.rollout) {
            // The gateway started with a rollout under way.
            self.test = 1;
        }
    }

    /// Starts test number `number` with the requests split from `at` on.
    fn begin_test(&mut self, number: u32, at: Instant, at_ms: u64) {
        self.test = number;
        self.looks = 0;
        self.test_since_ms = at_ms;
        self.arms = Arms::new(at);
        for s in &self.recent {
            self.arms.record(s.side, s.at, s.latency.as_secs_f64(), s.error);
        }
        if let Some(d) = &self.diffs {
            d.forget_before(at);
        }
    }

    /// One look at the current test (its samples taken and its changes
    /// followed just before), and the action it calls for.
    fn evaluate(&mut self) {
        let snap = self.controller.snapshot();
        let cfg = &snap.config.rollout.guard;
        self.looks += 1;

        let mirroring = snap.config.shadow.percent > 0.0
            || snap.config.routes.iter().any(|r| r.shadow.percent.unwrap_or(0.0) > 0.0);
        let compared = match (&self.diffs, mirroring) {
            (Some(d), true) => Some(d.count_since(self.arms.since)),
            _ => None,
        };
        let test = TestInfo {
            number: self.test.max(1),
            looks: self.looks,
        };
        let checks = judge(cfg, &self.arms, compared, test);
        self.suspect = checks.iter().any(|c| c.state.beyond_margin());
        for c in &checks {
            self.metrics
                .rollout
                .guard_threshold
                .with_label_values(&[c.name.0])
                .set(c.threshold);
            if let Some(v) = c.value {
                self.metrics.rollout.guard_value.with_label_values(&[c.name.0]).set(v);
            }
            self.metrics
                .rollout
                .guard_progress
                .with_label_values(&[c.name.0])
                .set(c.progress.unwrap_or(0.0));
        }

        let mut action = None;
        let active = cfg.enabled && snap.rollout.phase == Phase::Progressing;
        if active {
            if let Some(failed) = checks.iter().find(|c| c.state == CheckState::Fail) {
                let why = format!(
                    "guard: {} failed at look {} of test {}: {}",
                    failed.name, test.looks, test.number, failed.detail
                );
                let actor = Actor::new("guard", why.clone());
                let result = match cfg.action {
                    GuardAction::Rollback => self.controller.rollback(&actor, RollbackReason::Guard),
                    GuardAction::Pause => self.controller.pause(&actor),
                };
                tracing::warn!(target: "switchyard::guard", check = failed.name.0, value = ?failed.value, threshold = failed.threshold, evidence = ?failed.evidence, needed = ?failed.needed, looks = test.looks, test = test.number, action = ?cfg.action, "guard tripped");
                if let Err(e) = result {
                    tracing::error!(error = %e, "guard action failed");
                }
                action = Some(why);
            } else if let Some(every) = snap.config.rollout.step_every {
                let held = snap
                    .rollout
                    .step_since_ms
                    .is_some_and(|since| now_ms().saturating_sub(since) >= every.get().as_millis() as u64);
                // A suspect check holds the plan, and one above its margin
                // holds it before 100 %: more traffic settles it either way.
                let next = snap.config.rollout.steps.iter().find(|s| **s > snap.rollout.percent);
                let last = next.is_none_or(|n| *n >= 100.0);
                let all_good = checks.iter().all(|c| c.state.lets_advance(last));
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
        r.requests_old = self.arms.old.requests;
        r.requests_new = self.arms.new.requests;
        r.test = Some(test);
        r.test_since_ms = Some(self.test_since_ms);
        r.false_alarm_rate = cfg.false_alarm_rate;
        r.checks = checks;
        if let Some(a) = action {
            r.last_action = Some(a);
        }
    }
}
