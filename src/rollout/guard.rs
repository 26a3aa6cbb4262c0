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
//!
//! With a fleet store, every instance counts what it served under the
//! current change and publishes it ([`super::fleet::window`]); one elected
//! instance merges the windows, judges the fleet's figures, and acts
//! through transactions fenced on its leadership. The others show its
//! report.

use std::collections::HashMap;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::arms::Arms;
use super::checks::{judge, TestInfo};
pub use super::checks::{Check, CheckState, GuardReport};
use super::controller::{Actor, ControlError, Controller, Op, RollbackReason};
use super::fleet::members::Context as Fleet;
use super::fleet::window::{self, Window};
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
    /// Looks in a row, in this test, with a failing check.
    failing_looks: u32,
    fleet: Option<Arc<Fleet>>,
    /// The leader's test over the fleet's windows.
    fleet_test: FleetTest,
}

#[derive(Default)]
struct FleetTest {
    /// The change the test judges; `None` until this instance leads.
    change: Option<Option<u64>>,
    /// Each instance's window when the test began.
    baselines: HashMap<String, Window>,
    since: Option<Instant>,
}

/// What a look calls for.
enum Action {
    Rollback(String),
    Pause(String),
    Step(String),
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
            failing_looks: 0,
            fleet: None,
            fleet_test: FleetTest::default(),
        }
    }

    /// Judges the fleet's figures when this instance leads, and publishes
    /// its own window either way.
    pub fn in_fleet(mut self, fleet: Option<Arc<Fleet>>) -> Self {
        self.fleet = fleet;
        self
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
                match self.fleet.clone() {
                    None => {
                        let arms = self.arms.clone();
                        let compared = self.compared(&arms);
                        if let Some(action) = self.look(&arms, compared, Vec::new(), Vec::new()) {
                            self.act(action, None).await;
                        }
                    }
                    Some(fleet) => self.look_at_fleet(&fleet).await,
                }
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
    /// has run for `window` with no check suspect. In a fleet, a test
    /// begins where this instance applied the change (not where it was
    /// made elsewhere), and only the leader starts tests within a change.
    fn follow_changes(&mut self, now: Instant) {
        let snap = self.controller.snapshot();
        let change = snap.rollout.last_change.as_ref().map(|c| c.at_ms);
        if change != self.seen_change {
            self.seen_change = change;
            let at_ms = change.unwrap_or_else(now_ms);
            let at = if self.fleet.is_some() {
                self.controller.applied().at
            } else {
                let ago = Duration::from_millis(now_ms().saturating_sub(at_ms));
                now.checked_sub(ago).unwrap_or(now)
            };
            // A change that ends the rollout resets the budget's count.
            let number = if ends_rollout(&snap.rollout) { 0 } else { self.test + 1 };
            self.begin_test(number, at, at_ms);
        } else if self.fleet.is_none()
            && self.test > 0
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
        self.failing_looks = 0;
        self.test_since_ms = at_ms;
        // What the last test read is not what this one will: shown until
        // its first look, it would pass off the previous step's figures
        // as the new one's.
        {
            let mut r = self.report.lock().unwrap_or_else(|p| p.into_inner());
            r.checks.clear();
            r.requests_old = 0;
            r.requests_new = 0;
            r.test = Some(TestInfo {
                number: number.max(1),
                looks: 0,
            });
            r.test_since_ms = Some(at_ms);
        }
        self.arms = Arms::new(at);
        for s in &self.recent {
            self.arms.record(s.side, s.at, s.latency.as_secs_f64(), s.error);
        }
        if let Some(d) = &self.diffs {
            d.forget_before(at);
        }
    }

    /// What was compared of mirrored requests since `arms` began, when
    /// anything is mirrored.
    fn compared(&self, arms: &Arms) -> Option<crate::compare::Compared> {
        let snap = self.controller.snapshot();
        let mirroring = snap.config.shadow.percent > 0.0
            || snap.config.routes.iter().any(|r| r.shadow.percent.unwrap_or(0.0) > 0.0);
        match (&self.diffs, mirroring) {
            (Some(d), true) => Some(d.count_since(arms.since)),
            _ => None,
        }
    }

    /// One look at the current test, and the action it calls for.
    fn look(
        &mut self,
        arms: &Arms,
        compared: Option<crate::compare::Compared>,
        counted: Vec<String>,
        left_out: Vec<String>,
    ) -> Option<Action> {
        let snap = self.controller.snapshot();
        let cfg = &snap.config.rollout.guard;
        self.looks += 1;
        let test = TestInfo {
            number: self.test.max(1),
            looks: self.looks,
        };
        let mut checks = judge(cfg, arms, compared, test);
        super::explain::annotate(&mut checks, cfg, arms, compared);
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
        let mut note = None;
        let progressing = snap.rollout.phase == Phase::Progressing;
        let not_acting = if !cfg.enabled {
            Some("the guard is off (rollout.guard.enabled: false): its checks are shown, never acted on".to_string())
        } else if !progressing {
            Some(format!(
                "the rollout is {}: the guard acts only while it progresses",
                snap.rollout.phase
            ))
        } else {
            None
        };
        let failed = checks.iter().find(|c| c.state == CheckState::Fail);
        self.failing_looks = if failed.is_some() { self.failing_looks + 1 } else { 0 };
        if let Some(failed) = failed {
            let why = format!(
                "guard: {} failed at look {} of test {}: {}",
                failed.name, test.looks, test.number, failed.detail
            );
            let verb = match cfg.action {
                GuardAction::Rollback => "roll back",
                GuardAction::Pause => "pause",
            };
            let needed = cfg.consecutive_failures.max(1);
            if self.failing_looks < needed {
                note = Some(format!(
                    "{} failed {} look(s) in a row; the guard acts after {needed}: {why}",
                    failed.name, self.failing_looks
                ));
            } else if !cfg.enabled && progressing {
                // A dry run: what the guard would have done, said as such.
                note = Some(format!("would {verb}: {why}"));
                tracing::warn!(target: "switchyard::guard", check = failed.name.0, "guard would act (dry run: rollout.guard.enabled is false)");
            } else if progressing {
                tracing::warn!(target: "switchyard::guard", check = failed.name.0, value = ?failed.value, threshold = failed.threshold, evidence = ?failed.evidence, needed = ?failed.needed, looks = test.looks, test = test.number, action = ?cfg.action, "guard tripped");
                action = Some(match cfg.action {
                    GuardAction::Rollback => Action::Rollback(why),
                    GuardAction::Pause => Action::Pause(why),
                });
            }
        } else if cfg.enabled && progressing {
            if let Some(every) = snap
                .rollout
                .step
                .and_then(|i| snap.config.rollout.steps.get(i))
                .and_then(|s| s.step_every)
                .or(snap.config.rollout.step_every)
            {
                let held = snap
                    .rollout
                    .step_since_ms
                    .is_some_and(|since| now_ms().saturating_sub(since) >= every.get().as_millis() as u64);
                // A suspect check holds the plan, and one above its margin
                // holds it before 100 %: more traffic settles it either way.
                let next = snap
                    .config
                    .rollout
                    .steps
                    .iter()
                    .map(|s| s.percent)
                    .find(|s| *s > snap.rollout.percent);
                let last = next.is_none_or(|n| n >= 100.0);
                let all_good = checks.iter().all(|c| c.state.lets_advance(last));
                if held && all_good {
                    action = Some(Action::Step(format!("checks passed for {every}")));
                }
            }
        }

        let mut r = self.report.lock().unwrap_or_else(|p| p.into_inner());
        r.enabled = cfg.enabled;
        r.last_run_ms = Some(now_ms());
        r.requests_old = arms.old.requests;
        r.requests_new = arms.new.requests;
        r.test = Some(test);
        r.test_since_ms = Some(self.test_since_ms);
        r.false_alarm_rate = cfg.false_alarm_rate;
        r.checks = checks;
        r.not_acting = not_acting;
        r.holding = note;
        r.counted = counted;
        r.left_out = left_out;
        r.leader = self.fleet.as_ref().map(|f| f.view.id());
        action
    }

    fn note(&self, what: String) {
        self.report.lock().unwrap_or_else(|p| p.into_inner()).last_action = Some(what);
    }

    /// Does what a look called for. In a fleet the plan moves only while
    /// `fence` (this instance's leadership) holds; a rollback needs none.
    async fn act(&mut self, action: Action, fence: Option<(&str, i64)>) {
        let guard = |why: &String| Actor::new("guard", why.clone());
        if let (Action::Rollback(why) | Action::Pause(why), Some(hooks)) = (&action, self.controller.webhooks()) {
            let now = self.controller.state();
            let failed = crate::rollout::state::Change {
                who: "guard".into(),
                why: why.clone(),
                at_ms: now_ms(),
                from_percent: now.percent,
                to_percent: now.percent,
                from_phase: now.phase,
                to_phase: now.phase,
            };
            hooks.notify(hooks.notice(crate::config::WebhookEvent::GuardFailed, &failed));
        }
        let result = match &action {
            Action::Rollback(why) => self
                .controller
                .rollback(&guard(why), RollbackReason::Guard)
                .map(|_| why.clone()),
            Action::Pause(why) => self
                .controller
                .change_if(Op::Pause, &guard(why), None, fence)
                .await
                .map(|_| why.clone()),
            Action::Step(why) => self
                .controller
                .change_if(Op::Step, &guard(why), None, fence)
                .await
                .map(|s| format!("advanced to {}%", s.percent)),
        };
        match result {
            Ok(what) => self.note(what),
            Err(ControlError::Conflict(e)) => tracing::debug!(error = %e, "no further step"),
            Err(ControlError::Gated(e)) => {
                // Asked again at the next look.
                self.report.lock().unwrap_or_else(|p| p.into_inner()).holding = Some(e);
            }
            Err(e) => tracing::warn!(target: "switchyard::guard", error = %e, "the guard's action did not take"),
        }
    }

    /// Publishes this instance's window; when it leads, judges the fleet.
    async fn look_at_fleet(&mut self, fleet: &Arc<Fleet>) {
        let mine = Window {
            instance: fleet.view.id(),
            change_at_ms: self.seen_change,
            old: self.arms.old.clone(),
            new: self.arms.new.clone(),
            compared: self.compared(&self.arms),
        };
        if let Err(e) = window::publish(fleet, &mine).await {
            fleet.down(&e);
        }
        let Some(fence) = fleet.leadership() else {
            // Another instance judges: show its report.
            self.fleet_test = FleetTest::default();
            if let Some(r) = fleet.view.read(|v| v.guard.clone()) {
                *self.report.lock().unwrap_or_else(|p| p.into_inner()) = r;
            }
            return;
        };
        let windows = match window::gather(fleet).await {
            Ok(w) => w,
            Err(e) => {
                fleet.down(&e);
                return;
            }
        };
        let snap = self.controller.snapshot();
        let now = Instant::now();
        let rolled_over = self
            .fleet_test
            .since
            .is_some_and(|since| !self.suspect && now.duration_since(since) >= snap.config.rollout.guard.window.get());
        if self.fleet_test.change != Some(self.seen_change) {
            // A new change, or newly leading: the test counts every
            // instance's window of this change from its start.
            if self.fleet_test.change.is_none() {
                // Taking over from another leader: its test number goes on.
                let prior = fleet
                    .view
                    .read(|v| v.guard.as_ref().and_then(|g| g.test.map(|t| t.number)));
                if let Some(n) = prior {
                    if !ends_rollout(&snap.rollout) {
                        self.test = n + 1;
                        self.looks = 0;
                    }
                }
            }
            self.fleet_test = FleetTest {
                change: Some(self.seen_change),
                baselines: HashMap::new(),
                since: Some(now),
            };
        } else if rolled_over {
            self.test += 1;
            self.looks = 0;
            self.test_since_ms = now_ms();
            self.fleet_test.baselines = windows.iter().map(|w| (w.instance.clone(), w.clone())).collect();
            self.fleet_test.since = Some(now);
        }
        let merged = window::merge(&windows, self.seen_change, &self.fleet_test.baselines);
        let arms = Arms {
            since: self.arms.since,
            old: merged.old,
            new: merged.new,
        };
        let action = self.look(&arms, merged.compared, merged.counted, merged.behind);
        if let Some(action) = action {
            self.act(action, Some((fence.0.as_str(), fence.1))).await;
        }
        let report = self.report.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(lease) = fleet.live_lease() {
            let value = serde_json::to_vec(&report).unwrap_or_default();
            if let Err(e) = fleet.store.etcd.put(&fleet.key("guard"), value, lease).await {
                fleet.down(&e);
            }
        }
    }
}
