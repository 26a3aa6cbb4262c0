//! The controller: the only writer of the rollout state. Every change (an
//! SRE's call, the guard, the step plan, a reload) goes through here, is
//! serialised, recorded with who/why/when, persisted, logged as one line,
//! exported as metrics, and published by swapping the snapshot.
//!
//! A rollback swaps first and persists second: traffic must leave `new`
//! even if the disk is full. If the state file cannot take it, the rollback
//! still stands, is written into the rollback slot (see `persist`) so a
//! restart keeps it, and is shown as `persisted: false` until a later change
//! is saved. Every other change persists first, so a failed write changes
//! nothing.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::persist::{self, PersistError, RollbackSlot};
use super::state::{now_ms, Change, Phase, RolloutState};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::report::accept::Acceptance;
use crate::snapshot::{Snapshot, SnapshotCell};

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The request makes no sense (400).
    #[error("{0}")]
    Invalid(String),
    /// Not possible in the current phase (409).
    #[error("{0}")]
    Conflict(String),
    /// What the call names does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// The state could not be saved (500).
    #[error(transparent)]
    Persist(#[from] PersistError),
}

/// Who asks for a change, and why.
#[derive(Clone, Debug)]
pub struct Actor {
    pub who: String,
    pub why: String,
}

impl Actor {
    pub fn new(who: impl Into<String>, why: impl Into<String>) -> Self {
        Self {
            who: who.into(),
            why: why.into(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RollbackReason {
    Manual,
    Guard,
}

impl RollbackReason {
    pub const fn as_str(self) -> &'static str {
        match self {
            RollbackReason::Manual => "manual",
            RollbackReason::Guard => "guard",
        }
    }
}

pub struct Controller {
    cell: SnapshotCell,
    metrics: Metrics,
    write: Mutex<()>,
    generation: AtomicU64,
    /// Where a rollback goes when the state file cannot take it.
    slot: Option<RollbackSlot>,
    /// The current state is the one the state file holds.
    persisted: AtomicBool,
    /// The last changes of this run, oldest first, for the report's chart
    /// markers and the status view.
    history: Mutex<std::collections::VecDeque<Change>>,
}

/// Changes remembered in [`Controller::history`].
const HISTORY: usize = 64;

fn validate_percent(p: f64) -> Result<(), ControlError> {
    if !p.is_finite() || !(0.0..=100.0).contains(&p) {
        return Err(ControlError::Invalid(format!(
            "percent must be a number from 0 to 100, got {p}"
        )));
    }
    Ok(())
}

/// Index of the highest step at or below `percent`.
fn step_at(steps: &[f64], percent: f64) -> Option<usize> {
    steps.iter().rposition(|s| *s <= percent)
}

impl Controller {
    pub fn new(cell: SnapshotCell, metrics: Metrics, slot: Option<RollbackSlot>) -> Self {
        let snap = cell.load();
        metrics.set_rollout(snap.rollout.percent, snap.rollout.phase.as_str());
        let generation = snap.generation;
        Self {
            cell,
            metrics,
            write: Mutex::new(()),
            generation: AtomicU64::new(generation),
            slot,
            persisted: AtomicBool::new(true),
            history: Mutex::new(snap.rollout.last_change.iter().cloned().collect()),
        }
    }

    /// The changes of this run (and the last one before it), oldest first.
    pub fn history(&self) -> Vec<Change> {
        self.history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    fn remember(&self, change: &Change) {
        let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        if h.len() >= HISTORY {
            h.pop_front();
        }
        h.push_back(change.clone());
    }

    /// Replaces the accepted differences (the rollout itself unchanged, its
    /// last change kept): persisted first, then published.
    fn commit_accepted<F>(&self, change: F) -> Result<Vec<Acceptance>, ControlError>
    where
        F: FnOnce(&[Acceptance]) -> Result<Vec<Acceptance>, ControlError>,
    {
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let snap = self.cell.load_full();
        let mut next = snap.rollout.clone();
        next.accepted = change(&snap.rollout.accepted)?;
        if let Some(path) = &snap.config.rollout.state_file {
            if let Err(e) = persist::save(path, &next) {
                self.metrics.upkeep.state_persist_failures.inc();
                return Err(e.into());
            }
            self.persisted.store(true, Ordering::SeqCst);
        }
        let accepted = next.accepted.clone();
        self.cell.store(Arc::new(snap.with_rollout(next)));
        Ok(accepted)
    }

    /// Accepts a difference as intended; one for the same endpoint and
    /// field is replaced.
    pub fn accept(&self, acceptance: Acceptance) -> Result<Vec<Acceptance>, ControlError> {
        let (who, why) = (acceptance.who.clone(), acceptance.reason.clone());
        let (endpoint, field) = (acceptance.endpoint.clone(), acceptance.field.clone());
        let kinds: Vec<&str> = acceptance.kinds.iter().map(|k| k.as_str()).collect();
        let kinds = kinds.join(",");
        let out = self.commit_accepted(|prev| {
            let mut next: Vec<Acceptance> = prev
                .iter()
                .filter(|a| !(a.endpoint == acceptance.endpoint && a.field == acceptance.field))
                .cloned()
                .collect();
            next.push(acceptance);
            Ok(next)
        })?;
        tracing::info!(target: "switchyard::rollout", %who, %why, %endpoint, %field, %kinds, "difference accepted");
        Ok(out)
    }

    /// Withdraws an acceptance; 404-worthy when there is none.
    pub fn unaccept(&self, endpoint: &str, field: &str, who: &str) -> Result<Vec<Acceptance>, ControlError> {
        let out = self.commit_accepted(|prev| {
            if !prev.iter().any(|a| a.endpoint == endpoint && a.field == field) {
                let known: Vec<String> = prev.iter().map(|a| format!("{} {}", a.endpoint, a.field)).collect();
                return Err(ControlError::NotFound(format!(
                    "no accepted difference at {field} of {endpoint}; accepted now: {}",
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join("; ")
                    }
                )));
            }
            Ok(prev
                .iter()
                .filter(|a| !(a.endpoint == endpoint && a.field == field))
                .cloned()
                .collect())
        })?;
        tracing::info!(target: "switchyard::rollout", %who, %endpoint, %field, "acceptance withdrawn");
        Ok(out)
    }

    /// Whether the current state is saved in the state file (false after a
    /// rollback the disk would not take, until a change is saved again).
    pub fn persisted(&self) -> bool {
        self.persisted.load(Ordering::SeqCst)
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.cell.load_full()
    }

    pub fn state(&self) -> RolloutState {
        self.cell.load().rollout.clone()
    }

    /// Applies `change` to the current state under the write lock.
    fn commit<F>(&self, actor: &Actor, swap_first: bool, change: F) -> Result<RolloutState, ControlError>
    where
        F: FnOnce(&RolloutState, &Config) -> Result<RolloutState, ControlError>,
    {
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let snap = self.cell.load_full();
        let prev = &snap.rollout;
        let mut next = change(prev, &snap.config)?;
        let now = now_ms();
        if next.percent != prev.percent || next.step != prev.step || next.phase != prev.phase {
            next.step_since_ms = Some(now);
        }
        next.last_change = Some(Change {
            who: actor.who.clone(),
            why: actor.why.clone(),
            at_ms: now,
            from_percent: prev.percent,
            to_percent: next.percent,
            from_phase: prev.phase,
            to_phase: next.phase,
        });
        let path = snap.config.rollout.state_file.clone();
        let publish = |state: &RolloutState| {
            self.cell.store(Arc::new(snap.with_rollout(state.clone())));
            self.metrics.set_rollout(state.percent, state.phase.as_str());
        };
        if swap_first {
            publish(&next);
        }
        if let Some(path) = &path {
            match persist::save(path, &next) {
                Ok(()) => self.persisted.store(true, Ordering::SeqCst),
                Err(e) => {
                    self.metrics.upkeep.state_persist_failures.inc();
                    if !swap_first {
                        tracing::error!(error = %e, "rollout change refused: the state file cannot be written; nothing changed");
                        return Err(e.into());
                    }
                    // The rollback stands: traffic has left new already.
                    self.persisted.store(false, Ordering::SeqCst);
                    match self.slot.as_ref().map(|s| s.record(&next)) {
                        Some(Ok(())) => tracing::error!(
                            error = %e,
                            slot = %persist::slot_path(path).display(),
                            "rollback in force but the state file cannot be written; it is recorded in the rollback slot, so a restart stays rolled back"
                        ),
                        Some(Err(slot_error)) => tracing::error!(
                            error = %e,
                            slot_error = %slot_error,
                            "rollback in force but neither the state file nor the rollback slot could be written: a restart would come back at the state file's percent"
                        ),
                        None => tracing::error!(error = %e, "rollback in force but the state file cannot be written"),
                    }
                }
            }
        }
        if !swap_first {
            publish(&next);
        }
        if let Some(change) = &next.last_change {
            self.remember(change);
        }
        tracing::info!(
            target: "switchyard::rollout",
            who = %actor.who,
            why = %actor.why,
            from_percent = prev.percent,
            to_percent = next.percent,
            from_phase = prev.phase.as_str(),
            to_phase = next.phase.as_str(),
            step = ?next.step,
            "rollout changed"
        );
        Ok(next)
    }

    /// Sets the share of `new`. 0 < p < 100 is `progressing`, 100 is
    /// `promoted`, 0 is `idle`; a paused plan stays paused.
    pub fn set_percent(&self, percent: f64, actor: &Actor) -> Result<RolloutState, ControlError> {
        validate_percent(percent)?;
        self.commit(actor, false, |prev, cfg| {
            let phase = if percent >= 100.0 {
                Phase::Promoted
            } else if prev.phase == Phase::Paused {
                Phase::Paused
            } else if percent <= 0.0 {
                Phase::Idle
            } else {
                Phase::Progressing
            };
            Ok(RolloutState {
                percent,
                phase,
                step: step_at(&cfg.rollout.steps, percent),
                ..prev.clone()
            })
        })
    }

    /// Moves to the next step of the plan.
    pub fn step(&self, actor: &Actor) -> Result<RolloutState, ControlError> {
        self.commit(actor, false, |prev, cfg| {
            let steps = &cfg.rollout.steps;
            if steps.is_empty() {
                return Err(ControlError::Conflict(
                    "rollout.steps is empty; set a percent instead".into(),
                ));
            }
            let current = if prev.phase == Phase::RolledBack {
                0.0
            } else {
                prev.percent
            };
            let Some(idx) = steps.iter().position(|s| *s > current) else {
                return Err(ControlError::Conflict(format!("already at the last step ({current}%)")));
            };
            let percent = steps[idx];
            Ok(RolloutState {
                percent,
                phase: if percent >= 100.0 {
                    Phase::Promoted
                } else {
                    Phase::Progressing
                },
                step: Some(idx),
                ..prev.clone()
            })
        })
    }

    pub fn pause(&self, actor: &Actor) -> Result<RolloutState, ControlError> {
        self.commit(actor, false, |prev, _| match prev.phase {
            Phase::Progressing | Phase::Idle => Ok(RolloutState {
                phase: Phase::Paused,
                ..prev.clone()
            }),
            other => Err(ControlError::Conflict(format!("cannot pause while {other}"))),
        })
    }

    pub fn resume(&self, actor: &Actor) -> Result<RolloutState, ControlError> {
        self.commit(actor, false, |prev, _| match prev.phase {
            Phase::Paused => Ok(RolloutState {
                phase: if prev.percent >= 100.0 {
                    Phase::Promoted
                } else {
                    Phase::Progressing
                },
                ..prev.clone()
            }),
            other => Err(ControlError::Conflict(format!(
                "cannot resume while {other}; only a paused rollout resumes"
            ))),
        })
    }

    pub fn promote(&self, actor: &Actor) -> Result<RolloutState, ControlError> {
        self.commit(actor, false, |prev, cfg| {
            Ok(RolloutState {
                percent: 100.0,
                phase: Phase::Promoted,
                step: step_at(&cfg.rollout.steps, 100.0),
                ..prev.clone()
            })
        })
    }

    /// Emergency stop: `new` serves nothing, on every route, from the next
    /// request on. The snapshot is swapped before the state is written.
    pub fn rollback(&self, actor: &Actor, reason: RollbackReason) -> Result<RolloutState, ControlError> {
        // Counted first: by the time anyone sees the new phase, the rollback
        // is in the metric too (and it counts even if persisting fails,
        // since traffic leaves new regardless).
        self.metrics
            .rollout
            .rollbacks
            .with_label_values(&[reason.as_str()])
            .inc();
        self.commit(actor, true, |prev, _| {
            Ok(RolloutState {
                percent: 0.0,
                phase: Phase::RolledBack,
                step: None,
                ..prev.clone()
            })
        })
    }

    /// Swaps in a new config, keeping the rollout state. Backend pools are
    /// rebuilt only when backends changed.
    pub fn reload(&self, config: Config) -> Result<(), String> {
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let snap = self.cell.load_full();
        let backends_changed =
            serde_json::to_string(&config.backends).ok() != serde_json::to_string(&snap.config.backends).ok();
        let generation = if backends_changed {
            self.generation.fetch_add(1, Ordering::SeqCst) + 1
        } else {
            snap.generation
        };
        let fresh = Snapshot::build(Arc::new(config), snap.rollout.clone(), generation, &self.metrics)?;
        self.cell.store(Arc::new(fresh));
        tracing::info!(backends_changed, "config reloaded");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn controller(extra: &str) -> (Controller, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let yaml = format!(
            "backends: {{ old: {{ url: 'http://127.0.0.1:1' }}, new: {{ url: 'http://127.0.0.1:2' }} }}\nrollout: {{ state_file: '{}', steps: [1, 5, 25, 50, 100] }}\n{extra}",
            dir.path().join("s.json").display()
        );
        let cfg = Arc::new(Config::from_yaml(&yaml, "t").unwrap());
        let m = Metrics::new();
        let snap = Snapshot::build(cfg, RolloutState::initial(0.0), 0, &m).unwrap();
        let slot = persist::RollbackSlot::prepare(&dir.path().join("s.json")).unwrap();
        (
            Controller::new(Arc::new(crate::snapshot::Published::new(snap)), m, Some(slot)),
            dir,
        )
    }

    fn sre() -> Actor {
        Actor::new("sre", "test")
    }

    #[test]
    fn steps_walk_the_plan_to_promoted() {
        let (c, _d) = controller("");
        let mut seen = Vec::new();
        loop {
            match c.step(&sre()) {
                Ok(s) => seen.push((s.percent, s.phase)),
                Err(ControlError::Conflict(m)) => {
                    assert!(m.contains("last step"));
                    break;
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(
            seen,
            vec![
                (1.0, Phase::Progressing),
                (5.0, Phase::Progressing),
                (25.0, Phase::Progressing),
                (50.0, Phase::Progressing),
                (100.0, Phase::Promoted)
            ]
        );
    }

    #[test]
    fn rollback_records_and_persists() {
        let (c, d) = controller("");
        c.set_percent(25.0, &sre()).unwrap();
        let s = c
            .rollback(&Actor::new("pager", "5xx spike"), RollbackReason::Manual)
            .unwrap();
        assert_eq!((s.percent, s.phase), (0.0, Phase::RolledBack));
        let change = s.last_change.unwrap();
        assert_eq!(
            (change.who.as_str(), change.why.as_str(), change.from_percent),
            ("pager", "5xx spike", 25.0)
        );
        let saved = persist::load(&d.path().join("s.json")).unwrap().unwrap();
        assert_eq!(saved.state.phase, Phase::RolledBack);
        assert_eq!(c.metrics.rollout.rollbacks.with_label_values(&["manual"]).get(), 1);
        // After a rollback, step starts again from the first step.
        assert_eq!(c.step(&sre()).unwrap().percent, 1.0);
    }

    #[test]
    fn bad_percent_changes_nothing() {
        let (c, _d) = controller("");
        c.set_percent(5.0, &sre()).unwrap();
        let before = c.state();
        for bad in [-1.0, 100.5, f64::NAN, f64::INFINITY] {
            assert!(matches!(c.set_percent(bad, &sre()), Err(ControlError::Invalid(_))));
        }
        assert_eq!(c.state(), before);
    }

    #[test]
    fn pause_and_resume() {
        let (c, _d) = controller("");
        c.step(&sre()).unwrap();
        assert_eq!(c.pause(&sre()).unwrap().phase, Phase::Paused);
        assert!(matches!(c.pause(&sre()), Err(ControlError::Conflict(_))));
        // A manual percent keeps the plan paused.
        assert_eq!(c.set_percent(10.0, &sre()).unwrap().phase, Phase::Paused);
        assert_eq!(c.resume(&sre()).unwrap().phase, Phase::Progressing);
        assert!(matches!(c.resume(&sre()), Err(ControlError::Conflict(_))));
        assert_eq!(c.promote(&sre()).unwrap().phase, Phase::Promoted);
    }

    #[test]
    fn failed_persist_leaves_state_unchanged_except_for_rollback() {
        let (c, d) = controller("");
        c.set_percent(5.0, &sre()).unwrap();
        // Make the state directory unwritable by replacing it with a file.
        let blocker = d
            .path()
            .join("s.json.tmp.".to_string() + &std::process::id().to_string());
        std::fs::create_dir_all(&blocker).unwrap();
        assert!(matches!(c.set_percent(50.0, &sre()), Err(ControlError::Persist(_))));
        assert_eq!(c.state().percent, 5.0);
        assert!(c.persisted(), "a refused change leaves the saved state true");
        let rolled = c.rollback(&sre(), RollbackReason::Manual).unwrap();
        assert_eq!(
            rolled.phase,
            Phase::RolledBack,
            "traffic leaves new even when the disk fails"
        );
        assert!(!c.persisted());
        assert_eq!(c.metrics.upkeep.state_persist_failures.get(), 2);
        // The slot holds it, so a restart stays rolled back.
        let loaded = persist::load(&d.path().join("s.json")).unwrap().unwrap();
        assert!(loaded.from_slot);
        assert_eq!(loaded.state.phase, Phase::RolledBack);
        std::fs::remove_dir(&blocker).unwrap();
        c.step(&sre()).unwrap();
        assert!(c.persisted(), "the next saved change is persisted again");
    }
}
