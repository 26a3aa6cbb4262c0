//! The controller with a fleet store: changes as transactions on the epoch
//! this instance applied, states from the store applied in epoch order, and
//! a rollback made here held in force until the store has it.

use std::sync::atomic::Ordering;
use std::sync::Mutex;

use super::{Actor, Controller, Op, RollbackReason};
use crate::rollout::error::ControlError;
use crate::rollout::fleet::store::{Cas, RolloutStore};
use crate::rollout::persist;
use crate::rollout::plan::{plan, record};
use crate::rollout::state::{now_ms, Phase, RolloutState};

/// The fleet store, and a rollback made here that has not reached it yet.
pub(super) struct Shared {
    pub(super) store: RolloutStore,
    pub(super) pending: Mutex<Option<RolloutState>>,
    pub(super) wake: tokio::sync::Notify,
    /// A new epoch was applied here (however it came): the registration
    /// says so at once, which is what convergence is timed by.
    pub(super) applied: tokio::sync::Notify,
}

impl Controller {
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
            applied: tokio::sync::Notify::new(),
        });
        self
    }

    pub fn store(&self) -> Option<&RolloutStore> {
        self.shared.as_ref().map(|s| &s.store)
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
        if op.moves_rollout() {
            let snap = self.snapshot();
            let next = plan(&op, &snap.rollout, &snap.config)?;
            self.pass_gates(&snap.rollout, &next, actor).await?;
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
                if op.moves_rollout() {
                    self.announce(&next);
                }
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
        if let Some(shared) = &self.shared {
            shared.applied.notify_one();
        }
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

    /// Waits until this instance applies a new epoch.
    pub async fn epoch_applied(&self) {
        match &self.shared {
            Some(s) => s.applied.notified().await,
            None => std::future::pending::<()>().await,
        }
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
    pub(super) fn mark_unlanded(&self, unlanded: bool) {
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
}
