//! Where the rollout starts: this instance's saved state (the state file
//! and its rollback slot), or the fleet store's, and the controller that
//! owns it from then on.

use std::sync::Arc;

use super::{Options, StartError};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::rollout::controller::Controller;
use crate::rollout::fleet::Fleet;
use crate::rollout::persist::{self, Loaded, RollbackSlot};
use crate::rollout::state::{now_ms, Change, RolloutState};
use crate::snapshot::Snapshot;

/// The rollout's snapshot and its only writer: from the fleet store with
/// one, else from this instance's own state.
pub(super) fn rollout_controller(
    config: &Arc<Config>,
    metrics: &Metrics,
    local: RolloutState,
    slot: Option<RollbackSlot>,
    fleet: Option<&Fleet>,
) -> Result<(Arc<Controller>, crate::snapshot::SnapshotCell), StartError> {
    let start = match fleet {
        Some(f) => f
            .start_state(local, config.rollout.state_file.as_deref())
            .map_err(StartError::Setup)?,
        None => crate::rollout::fleet::Start {
            state: local,
            epoch: 0,
            rollback_pending: false,
        },
    };
    let snapshot = Snapshot::build(config.clone(), start.state, 0, metrics).map_err(StartError::Setup)?;
    let cell = Arc::new(crate::snapshot::Published::new(snapshot));
    let mut controller = Controller::new(cell.clone(), metrics.clone(), slot);
    if let Some(f) = fleet {
        controller = controller.with_store(f.store.clone(), start.epoch);
    }
    let controller = Arc::new(controller);
    if start.rollback_pending {
        controller.hold_rollback();
    }
    Ok((controller, cell))
}

/// The rollout state to start from, and the rollback slot beside the state
/// file. A state file that cannot be written refuses the start: the first
/// rollback must not be the moment that is found out.
pub(super) fn restore(config: &Config, opts: &Options) -> Result<(RolloutState, Option<RollbackSlot>), StartError> {
    let initial = RolloutState::initial(config.rollout.percent);
    let Some(path) = &config.rollout.state_file else {
        return Ok((initial, None));
    };
    persist::check_writable(path)?;
    let slot = RollbackSlot::prepare(path)?;
    if opts.reset_state {
        // Saved with a change of its own, so an older rollback in the slot
        // cannot come back at the next restart.
        let mut fresh = initial;
        fresh.last_change = Some(Change {
            who: "switchyard serve --reset-state".into(),
            why: "state reset at start".into(),
            at_ms: now_ms(),
            from_percent: fresh.percent,
            to_percent: fresh.percent,
            from_phase: fresh.phase,
            to_phase: fresh.phase,
        });
        persist::save(path, &fresh)?;
        return Ok((fresh, Some(slot)));
    }
    let state = match persist::load(path)? {
        Some(Loaded { state, from_slot: true }) => {
            tracing::warn!(
                path = %path.display(),
                slot = %persist::slot_path(path).display(),
                "the last run rolled back but could not write the state file; starting rolled back, from the rollback slot"
            );
            if let Err(e) = persist::save(path, &state) {
                tracing::error!(error = %e, "the state file still cannot be written");
            }
            state
        }
        Some(Loaded { state, .. }) => {
            tracing::info!(path = %path.display(), percent = state.percent, phase = state.phase.as_str(), "rollout state restored");
            state
        }
        None => initial,
    };
    Ok((state, Some(slot)))
}
