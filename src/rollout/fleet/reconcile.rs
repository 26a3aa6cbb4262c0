//! Lands a rollback made on this instance in the store: read the state,
//! write it rolled back on that epoch, again on a lost race, with backoff
//! while the store is away. A raise that reached the store first is
//! overwritten (the rollback is the later, and the safer, word); a raise
//! computed before the rollback landed loses its own transaction.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::members::Context;
use super::store::Cas;
use crate::rollout::state::{Change, Phase, RolloutState};

pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(1));
    loop {
        let Some(pending) = ctx.controller.pending_rollback() else {
            ctx.metrics.fleet.rollbacks_pending.set(0);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ctx.controller.rollback_waiting() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            continue;
        };
        ctx.metrics.fleet.rollbacks_pending.set(1);
        let landed = match ctx.store.load().await {
            Ok(Some((current, epoch))) if current.phase == Phase::RolledBack => {
                // Someone else's rollback got there: it is the same word.
                ctx.controller.rollback_landed(current, epoch);
                true
            }
            Ok(found) => {
                let (epoch, next) = match &found {
                    Some((current, epoch)) => (*epoch, on_top(current, &pending)),
                    None => (0, pending.clone()),
                };
                match ctx.store.cas(epoch, &next, None).await {
                    Ok(Cas::Done(written)) => {
                        tracing::info!(target: "switchyard::fleet", epoch = written, "the rollback reached the fleet store");
                        ctx.controller.rollback_landed(next, written);
                        true
                    }
                    Ok(Cas::Lost { .. }) => {
                        backoff.reset();
                        continue;
                    }
                    Err(e) => {
                        ctx.down(&e);
                        false
                    }
                }
            }
            Err(e) => {
                ctx.down(&e);
                false
            }
        };
        if landed {
            ctx.up();
            backoff.reset();
            continue;
        }
        backoff.wait(&shutdown).await;
        if shutdown.is_cancelled() {
            return;
        }
    }
}

/// `current` rolled back as `pending` says: its who, why and when, from
/// where the fleet was.
fn on_top(current: &RolloutState, pending: &RolloutState) -> RolloutState {
    let last_change = pending.last_change.as_ref().map(|c| Change {
        from_percent: current.percent,
        from_phase: current.phase,
        ..c.clone()
    });
    RolloutState {
        percent: 0.0,
        phase: Phase::RolledBack,
        step: None,
        step_since_ms: pending.step_since_ms,
        last_change,
        accepted: current.accepted.clone(),
    }
}
