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

use self::shared::Shared;

pub use super::error::ControlError;
use super::persist::{self, RollbackSlot};
use super::plan::{plan, record};
pub use super::plan::{Actor, Op};
use super::state::{now_ms, Change, Phase, RolloutState};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::report::accept::Acceptance;
use crate::snapshot::{Snapshot, SnapshotCell};

mod shared;
#[cfg(test)]
mod tests;

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
    /// Notifications and gates, once the gateway has started them.
    webhooks: std::sync::OnceLock<crate::rollout::webhooks::Shared>,
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
            webhooks: std::sync::OnceLock::new(),
        }
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

    /// Local changes (no fleet store).
    fn change_here(&self, op: &Op, actor: &Actor) -> Result<RolloutState, ControlError> {
        if op.moves_rollout() {
            return self.commit(op, actor, false);
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
    fn commit(&self, op: &Op, actor: &Actor, swap_first: bool) -> Result<RolloutState, ControlError> {
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let snap = self.cell.load_full();
        let prev = &snap.rollout;
        let next = record(prev, plan(op, prev, &snap.config)?, actor, now_ms());
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
        self.log_change(op, actor, prev, &next);
        self.announce(&next);
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
        let current = self.state();
        if current.phase == Phase::RolledBack {
            // Already in force: repeating it records nothing (the first
            // rollback's who and why stay), counts nothing, and — in a fleet,
            // where this instance may not have heard of a later raise — has
            // the reconciler make sure the store is rolled back too.
            if let Some(shared) = &self.shared {
                *shared.pending.lock().unwrap_or_else(|p| p.into_inner()) = Some(current.clone());
                shared.wake.notify_one();
            }
            tracing::info!(target: "switchyard::rollout", who = %actor.who, "rollback asked for while already rolled back: nothing to change");
            return Ok(current);
        }
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
        let next = self.commit(&Op::Rollback, actor, true)?;
        if let Some(shared) = &self.shared {
            *shared.pending.lock().unwrap_or_else(|p| p.into_inner()) = Some(next.clone());
            self.mark_unlanded(true);
            shared.wake.notify_one();
        }
        Ok(next)
    }

    /// Sends this instance's changes to the hooks, and asks their gates.
    pub fn set_webhooks(&self, hooks: crate::rollout::webhooks::Shared) {
        let _ = self.webhooks.set(hooks);
    }

    pub fn webhooks(&self) -> Option<&crate::rollout::webhooks::Shared> {
        self.webhooks.get()
    }

    /// Tells the hooks of a change made here (changes made elsewhere in a
    /// fleet are told by the instance that made them).
    fn announce(&self, state: &RolloutState) {
        if let (Some(w), Some(change)) = (self.webhooks.get(), &state.last_change) {
            w.notify(w.notice(crate::rollout::webhooks::event_of(change), change));
        }
    }

    /// Asks the gates of a move from `prev` to `next`; an SRE's `--force`
    /// passes them (and says so in the change's why).
    async fn pass_gates(&self, prev: &RolloutState, next: &RolloutState, actor: &Actor) -> Result<(), ControlError> {
        let Some(w) = self.webhooks.get() else {
            return Ok(());
        };
        let events: Vec<_> = crate::rollout::webhooks::gates_for(prev, next)
            .into_iter()
            .filter(|e| w.gates_on(*e))
            .collect();
        if events.is_empty() || actor.force {
            w.gates.set(None);
            return Ok(());
        }
        match w.gate(&events, prev, next, &actor.who, &actor.why).await {
            Ok(()) => {
                w.gates.set(None);
                Ok(())
            }
            Err(waiting) => {
                let new_wait = w
                    .gates
                    .get()
                    .is_none_or(|x| x.gate != waiting.gate || x.to_percent != waiting.to_percent);
                let message = format!(
                    "waiting on gate {} ({}) before {}%: its last answer was {}; nothing changed. The guard asks again at every look; an SRE passes it with --force",
                    waiting.gate, waiting.event, waiting.to_percent, waiting.last_answer
                );
                w.gates.set(Some(waiting));
                if new_wait {
                    let change = Change {
                        who: actor.who.clone(),
                        why: message.clone(),
                        at_ms: now_ms(),
                        from_percent: prev.percent,
                        to_percent: next.percent,
                        from_phase: prev.phase,
                        to_phase: next.phase,
                    };
                    w.notify(w.notice(crate::config::WebhookEvent::GateWaiting, &change));
                    tracing::info!(target: "switchyard::rollout", who = %actor.who, %message, "rollout waits on a gate");
                }
                Err(ControlError::Gated(message))
            }
        }
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
