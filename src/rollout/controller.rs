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
//!
//! With a fleet store (`rollout.store`), the store is the truth and the
//! state file a cache: a change is a transaction on the epoch this instance
//! last applied ([`Controller::change`]), published here once it is written;
//! changes made elsewhere arrive through [`Controller::apply_remote`]. A
//! rollback still swaps first, then is written to the store until it lands
//! (the fleet's reconciler), and no state from the store that is not rolled
//! back is applied meanwhile: a rollback never waits for a quorum and never
//! loses a race.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::fleet::store::{Cas, RolloutStore};
use super::persist::{self, PersistError, RollbackSlot};
pub use super::plan::Op;
use super::plan::{plan, record};
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
    /// Another change reached the fleet store first (409, with the state
    /// as it is now).
    #[error("{message}")]
    Lost {
        message: String,
        current: Box<RolloutState>,
        epoch: u64,
    },
    /// What the call names does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// The state could not be saved (500).
    #[error(transparent)]
    Persist(#[from] PersistError),
    /// The fleet store cannot be reached: nothing changed (503).
    #[error("{0}")]
    Unavailable(String),
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

/// When this instance applied the rollout's last change: the guard's
/// tests start there, so requests split under the previous percent are
/// never judged as the new one.
#[derive(Clone, Copy, Debug)]
pub struct Applied {
    /// The change's time as recorded (its identity across the fleet).
    pub change_at_ms: Option<u64>,
    pub at: Instant,
    /// The same moment, Unix ms.
    pub at_ms: u64,
    /// The epoch in force here now, and the one that brought the change.
    pub epoch: u64,
    pub change_epoch: u64,
}

/// The fleet store, and a rollback made here that has not reached it yet.
struct Shared {
    store: RolloutStore,
    pending: Mutex<Option<RolloutState>>,
    wake: tokio::sync::Notify,
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
    /// The fleet store's revision of the state in force (0 without one).
    epoch: AtomicU64,
    applied: Mutex<Applied>,
    shared: Option<Shared>,
}

/// Changes remembered in [`Controller::history`].
const HISTORY: usize = 64;

impl Controller {
    pub fn new(cell: SnapshotCell, metrics: Metrics, slot: Option<RollbackSlot>) -> Self {
        let snap = cell.load();
        metrics.set_rollout(snap.rollout.percent, snap.rollout.phase.as_str());
        let generation = snap.generation;
        Self {
            applied: Mutex::new(Applied {
                change_at_ms: snap.rollout.last_change.as_ref().map(|c| c.at_ms),
                at: Instant::now(),
                at_ms: now_ms(),
                epoch: 0,
                change_epoch: 0,
            }),
            cell,
            metrics,
            write: Mutex::new(()),
            generation: AtomicU64::new(generation),
            slot,
            persisted: AtomicBool::new(true),
            history: Mutex::new(snap.rollout.last_change.iter().cloned().collect()),
            epoch: AtomicU64::new(0),
            shared: None,
        }
    }

    /// Shares the rollout through `store`, whose state in force is at `epoch`.
    pub fn with_store(mut self, store: RolloutStore, epoch: u64) -> Self {
        self.epoch.store(epoch, Ordering::SeqCst);
        self.metrics.fleet.epoch.set(epoch as i64);
        let applied = self.applied.get_mut().unwrap_or_else(|p| p.into_inner());
        applied.epoch = epoch;
        applied.change_epoch = epoch;
        self.shared = Some(Shared {
            store,
            pending: Mutex::new(None),
            wake: tokio::sync::Notify::new(),
        });
        self
    }

    pub fn store(&self) -> Option<&RolloutStore> {
        self.shared.as_ref().map(|s| &s.store)
    }

    /// The fleet store's revision of the state in force.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    pub fn applied(&self) -> Applied {
        *self.applied.lock().unwrap_or_else(|p| p.into_inner())
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
        if h.back() == Some(change) {
            return;
        }
        if h.len() >= HISTORY {
            h.pop_front();
        }
        h.push_back(change.clone());
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

    /// Swaps in `state` (the write lock held), and notes when its change
    /// was applied here.
    fn publish(&self, snap: &Snapshot, state: &RolloutState) {
        self.cell.store(Arc::new(snap.with_rollout(state.clone())));
        self.metrics.set_rollout(state.percent, state.phase.as_str());
        let change_at_ms = state.last_change.as_ref().map(|c| c.at_ms);
        let mut applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        applied.epoch = self.epoch();
        if applied.change_at_ms != change_at_ms {
            applied.change_at_ms = change_at_ms;
            applied.at = Instant::now();
            applied.at_ms = now_ms();
            applied.change_epoch = applied.epoch;
        }
        drop(applied);
        if let Some(change) = &state.last_change {
            self.remember(change);
        }
    }

    /// Applies `op`: here, or as a transaction on the fleet store.
    pub async fn change(&self, op: Op, actor: &Actor) -> Result<RolloutState, ControlError> {
        self.change_if(op, actor, None, None).await
    }

    /// As [`Controller::change`], with preconditions on the fleet store:
    /// the state is still at `expect` (the epoch the caller saw; default the
    /// one applied here), and `fence` (a key and its creation revision: the
    /// guard's leadership) still holds.
    pub async fn change_if(
        &self,
        op: Op,
        actor: &Actor,
        expect: Option<u64>,
        fence: Option<(&str, i64)>,
    ) -> Result<RolloutState, ControlError> {
        if let Op::Rollback = op {
            return self.rollback(actor, RollbackReason::Manual);
        }
        let Some(shared) = &self.shared else {
            return self.change_here(&op, actor);
        };
        if shared.pending.lock().unwrap_or_else(|p| p.into_inner()).is_some() {
            return Err(ControlError::Unavailable(format!(
                "a rollback made on this instance has not reached the fleet store (etcd at {}) yet; nothing else changes until it has (see /status)",
                shared.store.etcd.endpoints()
            )));
        }
        let snap = self.cell.load_full();
        let epoch = self.epoch();
        if let Some(seen) = expect.filter(|e| *e != epoch) {
            let message = format!(
                "the rollout is at epoch {epoch}, not {seen} as this call expects: it changed since you looked ({}% {}); nothing was changed by this call",
                snap.rollout.percent, snap.rollout.phase
            );
            self.metrics.fleet.conflicts.inc();
            return Err(ControlError::Lost {
                message,
                current: Box::new(snap.rollout.clone()),
                epoch,
            });
        }
        let next = plan(&op, &snap.rollout, &snap.config)?;
        let next = if op.moves_rollout() {
            record(&snap.rollout, next, actor, now_ms())
        } else {
            next
        };
        match shared.store.cas(epoch, &next, fence).await {
            Ok(Cas::Done(written)) => {
                self.apply_remote(next.clone(), written);
                self.log_change(&op, actor, &snap.rollout, &next);
                Ok(next)
            }
            Ok(Cas::Lost { state, epoch: now_at }) => {
                self.metrics.fleet.conflicts.inc();
                let message = format!(
                    "the rollout changed before this call reached the fleet store: it is now {}% {} (epoch {now_at}, last change by {}); nothing was changed by this call: look again and retry",
                    state.percent,
                    state.phase,
                    state.last_change.as_ref().map_or("nobody", |c| c.who.as_str()),
                );
                self.apply_remote((*state).clone(), now_at);
                Err(ControlError::Lost {
                    message,
                    current: state,
                    epoch: now_at,
                })
            }
            Err(e) => Err(ControlError::Unavailable(format!(
                "the fleet store is unreachable ({e}); nothing changed. A rollback still works: it applies here at once and reaches the fleet when the store is back"
            ))),
        }
    }

    fn log_change(&self, op: &Op, actor: &Actor, prev: &RolloutState, next: &RolloutState) {
        match op {
            Op::Accept(a) => {
                let kinds: Vec<&str> = a.kinds.iter().map(|k| k.as_str()).collect();
                tracing::info!(target: "switchyard::rollout", who = %a.who, why = %a.reason, endpoint = %a.endpoint, field = %a.field, kinds = %kinds.join(","), "difference accepted");
            }
            Op::Unaccept { endpoint, field } => {
                tracing::info!(target: "switchyard::rollout", who = %actor.who, %endpoint, %field, "acceptance withdrawn");
            }
            _ => tracing::info!(
                target: "switchyard::rollout",
                who = %actor.who,
                why = %actor.why,
                from_percent = prev.percent,
                to_percent = next.percent,
                from_phase = prev.phase.as_str(),
                to_phase = next.phase.as_str(),
                step = ?next.step,
                epoch = self.epoch(),
                "rollout changed"
            ),
        }
    }

    /// Applies a state the fleet store holds at `epoch`. Older epochs are
    /// ignored, and so is anything but a rollback while a rollback made
    /// here has not landed. Returns whether it was applied.
    pub fn apply_remote(&self, state: RolloutState, epoch: u64) -> bool {
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        if epoch <= self.epoch() {
            return false;
        }
        if let Some(shared) = &self.shared {
            if state.phase != Phase::RolledBack && shared.pending.lock().unwrap_or_else(|p| p.into_inner()).is_some() {
                tracing::info!(target: "switchyard::rollout", epoch, percent = state.percent, "a change from the fleet store waits: this instance's rollback has not landed yet and wins");
                return false;
            }
        }
        let snap = self.cell.load_full();
        let moved = snap.rollout.last_change != state.last_change;
        self.epoch.store(epoch, Ordering::SeqCst);
        self.metrics.fleet.epoch.set(epoch as i64);
        self.publish(&snap, &state);
        // The state file is this instance's cache of the store: a restart
        // that cannot reach etcd comes back where the fleet was.
        if let Some(path) = &snap.config.rollout.state_file {
            match persist::save(path, &state) {
                Ok(()) => self.persisted.store(true, Ordering::SeqCst),
                Err(e) => {
                    self.metrics.upkeep.state_persist_failures.inc();
                    tracing::warn!(error = %e, "the fleet's rollout state is applied but the local cache (state_file) cannot be written");
                }
            }
        }
        if moved {
            if let Some(c) = &state.last_change {
                tracing::info!(target: "switchyard::rollout", who = %c.who, why = %c.why, from_percent = c.from_percent, to_percent = c.to_percent, to_phase = c.to_phase.as_str(), epoch, "rollout change applied from the fleet store");
            }
        }
        true
    }

    /// The rollback made here that the fleet store has not taken yet.
    pub fn pending_rollback(&self) -> Option<RolloutState> {
        self.shared
            .as_ref()
            .and_then(|s| s.pending.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }

    /// Waits until a rollback is pending (the reconciler's cue).
    pub async fn rollback_waiting(&self) {
        if let Some(s) = &self.shared {
            s.wake.notified().await;
        } else {
            std::future::pending::<()>().await;
        }
    }

    /// Holds the state in force (a rollback from before a restart) as a
    /// rollback still to land in the store.
    pub fn hold_rollback(&self) {
        if let Some(s) = &self.shared {
            *s.pending.lock().unwrap_or_else(|p| p.into_inner()) = Some(self.state());
            s.wake.notify_one();
        }
    }

    /// The pending rollback reached the store at `epoch`.
    pub fn rollback_landed(&self, state: RolloutState, epoch: u64) {
        if let Some(s) = &self.shared {
            *s.pending.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        self.apply_remote(state, epoch);
        self.mark_unlanded(false);
    }

    /// Notes beside the state file whether a rollback made here still has
    /// to reach the store, so a restart before it has still lands it.
    fn mark_unlanded(&self, unlanded: bool) {
        let Some(path) = self.cell.load().config.rollout.state_file.clone() else {
            return;
        };
        let marker = persist::unlanded_path(&path);
        let result = if unlanded {
            std::fs::write(
                &marker,
                b"a rollback made on this instance has not reached the fleet store yet\n",
            )
        } else {
            match std::fs::remove_file(&marker) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                other => other,
            }
        };
        if let Err(e) = result {
            tracing::warn!(marker = %marker.display(), error = %e, "cannot note whether a rollback has reached the fleet store; a restart before it lands may not land it");
        }
    }

    /// Local changes (no fleet store).
    fn change_here(&self, op: &Op, actor: &Actor) -> Result<RolloutState, ControlError> {
        if op.moves_rollout() {
            return self.commit(actor, false, |prev, cfg| plan(op, prev, cfg));
        }
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let snap = self.cell.load_full();
        let next = plan(op, &snap.rollout, &snap.config)?;
        if let Some(path) = &snap.config.rollout.state_file {
            if let Err(e) = persist::save(path, &next) {
                self.metrics.upkeep.state_persist_failures.inc();
                return Err(e.into());
            }
            self.persisted.store(true, Ordering::SeqCst);
        }
        self.cell.store(Arc::new(snap.with_rollout(next.clone())));
        self.log_change(op, actor, &snap.rollout, &next);
        Ok(next)
    }

    /// Accepts a difference as intended; one for the same endpoint and
    /// field is replaced.
    pub async fn accept(&self, acceptance: Acceptance) -> Result<Vec<Acceptance>, ControlError> {
        let actor = Actor::new(acceptance.who.clone(), acceptance.reason.clone());
        Ok(self.change(Op::Accept(Box::new(acceptance)), &actor).await?.accepted)
    }

    /// Withdraws an acceptance; 404-worthy when there is none.
    pub async fn unaccept(&self, endpoint: &str, field: &str, who: &str) -> Result<Vec<Acceptance>, ControlError> {
        let op = Op::Unaccept {
            endpoint: endpoint.into(),
            field: field.into(),
        };
        Ok(self.change(op, &Actor::new(who, "withdrawn")).await?.accepted)
    }

    /// Applies `change` to the current state under the write lock.
    fn commit<F>(&self, actor: &Actor, swap_first: bool, change: F) -> Result<RolloutState, ControlError>
    where
        F: FnOnce(&RolloutState, &Config) -> Result<RolloutState, ControlError>,
    {
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let snap = self.cell.load_full();
        let prev = &snap.rollout;
        let next = record(prev, change(prev, &snap.config)?, actor, now_ms());
        let path = snap.config.rollout.state_file.clone();
        if swap_first {
            self.publish(&snap, &next);
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
            self.publish(&snap, &next);
        }
        self.log_change(&Op::Step, actor, prev, &next);
        Ok(next)
    }

    /// Sets the share of `new`. 0 < p < 100 is `progressing`, 100 is
    /// `promoted`, 0 is `idle`; a paused plan stays paused. Local only: with
    /// a fleet store, use [`Controller::change`].
    pub fn set_percent(&self, percent: f64, actor: &Actor) -> Result<RolloutState, ControlError> {
        self.change_here(&Op::SetPercent(percent), actor)
    }

    /// Moves to the next step of the plan (local only, as `set_percent`).
    pub fn step(&self, actor: &Actor) -> Result<RolloutState, ControlError> {
        self.change_here(&Op::Step, actor)
    }

    pub fn pause(&self, actor: &Actor) -> Result<RolloutState, ControlError> {
        self.change_here(&Op::Pause, actor)
    }

    pub fn resume(&self, actor: &Actor) -> Result<RolloutState, ControlError> {
        self.change_here(&Op::Resume, actor)
    }

    pub fn promote(&self, actor: &Actor) -> Result<RolloutState, ControlError> {
        self.change_here(&Op::Promote, actor)
    }

    /// Emergency stop: `new` serves nothing, on every route, from the next
    /// request on. The snapshot is swapped before the state is written,
    /// here and, with a fleet store, before the store hears of it.
    pub fn rollback(&self, actor: &Actor, reason: RollbackReason) -> Result<RolloutState, ControlError> {
        // Counted first: by the time anyone sees the new phase, the rollback
        // is in the metric too (and it counts even if persisting fails,
        // since traffic leaves new regardless).
        self.metrics
            .rollout
            .rollbacks
            .with_label_values(&[reason.as_str()])
            .inc();
        // Marked pending before the swap, so no state from the store can
        // slip in between and undo it.
        if let Some(shared) = &self.shared {
            *shared.pending.lock().unwrap_or_else(|p| p.into_inner()) = Some(self.state());
        }
        let next = self.commit(actor, true, |prev, cfg| plan(&Op::Rollback, prev, cfg))?;
        if let Some(shared) = &self.shared {
            *shared.pending.lock().unwrap_or_else(|p| p.into_inner()) = Some(next.clone());
            self.mark_unlanded(true);
            shared.wake.notify_one();
        }
        Ok(next)
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
