//! This instance's registration, `PREFIX/instances/ID` under a lease kept
//! alive every third of its TTL, rewritten the moment it applies a new
//! epoch; and the convergence of each change across the fleet.
//!
//! The same lease holds the guard's leadership and this instance's guard
//! window, so an instance that dies takes all three with it after the TTL,
//! and one that stops cleanly revokes it and leaves at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::store::RolloutStore;
use super::view::{Convergence, FleetView, Member};
use crate::metrics::Metrics;
use crate::rollout::controller::Controller;

/// What the fleet's tasks share.
pub struct Context {
    pub store: RolloutStore,
    pub view: Arc<FleetView>,
    pub controller: Arc<Controller>,
    pub metrics: Metrics,
    pub ready: Arc<AtomicBool>,
    /// The leader key was deleted: campaign now.
    pub leader_gone: Notify,
    pub lease: Mutex<Option<Lease>>,
    /// The creation revision of the leader key while this instance holds it.
    pub leadership: Mutex<Option<i64>>,
    pub started_ms: u64,
}

#[derive(Clone, Copy, Debug)]
pub struct Lease {
    pub id: i64,
    /// The last time etcd confirmed it alive.
    pub confirmed: Instant,
}

impl Context {
    pub fn ttl(&self) -> Duration {
        self.controller
            .snapshot()
            .config
            .rollout
            .store
            .as_ref()
            .map_or(Duration::from_secs(10), |s| s.etcd.lease_ttl.get())
    }

    pub fn key(&self, rest: &str) -> String {
        format!("{}/{rest}", self.store.prefix)
    }

    /// The lease, while etcd has confirmed it within its TTL.
    pub fn live_lease(&self) -> Option<i64> {
        let ttl = self.ttl();
        self.lease
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .filter(|l| l.confirmed.elapsed() < ttl)
            .map(|l| l.id)
    }

    /// The fence for the guard's writes, while this instance leads and its
    /// lease is confirmed.
    pub fn leadership(&self) -> Option<(String, i64)> {
        self.live_lease()?;
        let rev = (*self.leadership.lock().unwrap_or_else(|p| p.into_inner()))?;
        Some((self.key("leader"), rev))
    }

    /// The store answered.
    pub fn up(&self) {
        self.metrics.fleet.store_up.set(1);
        if self.view.store_answered() {
            tracing::info!(target: "switchyard::fleet", endpoints = %self.store.etcd.endpoints(), "the fleet store answers");
        }
    }

    /// The store did not answer.
    pub fn down(&self, error: &dyn std::fmt::Display) {
        self.metrics.fleet.store_up.set(0);
        if self.view.store_failed(&error.to_string()) {
            tracing::warn!(target: "switchyard::fleet", %error, "the fleet store is unreachable: serving with the last state applied; only a rollback changes anything until it is back");
        }
    }

    fn record(&self) -> Member {
        let applied = self.controller.applied();
        let (id, advertise, proxy) = self.view.read(|v| (v.id.clone(), v.advertise.clone(), v.proxy.clone()));
        Member {
            id,
            admin: advertise,
            proxy,
            version: env!("CARGO_PKG_VERSION").into(),
            epoch: self.controller.epoch(),
            applied_at_ms: applied.at_ms,
            ready: self.ready.load(Ordering::SeqCst),
            started_ms: self.started_ms,
        }
    }
}

/// Keeps the registration alive and current until `shutdown`.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    let mut written: Option<Member> = None;
    let mut last_renewal = Instant::now() - Duration::from_secs(3600);
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let ttl = ctx.ttl();
        let lease = *ctx.lease.lock().unwrap_or_else(|p| p.into_inner());
        let lease = match lease {
            Some(l) => l.id,
            None => match ctx.store.etcd.grant(ttl).await {
                Ok(id) => {
                    *ctx.lease.lock().unwrap_or_else(|p| p.into_inner()) = Some(Lease {
                        id,
                        confirmed: Instant::now(),
                    });
                    last_renewal = Instant::now();
                    written = None;
                    ctx.up();
                    id
                }
                Err(e) => {
                    ctx.down(&e);
                    backoff.wait(&shutdown).await;
                    continue;
                }
            },
        };
        if last_renewal.elapsed() >= ttl / 3 {
            match ctx.store.etcd.keep_alive(lease).await {
                Ok(left) if left > 0 => {
                    last_renewal = Instant::now();
                    if let Some(l) = ctx.lease.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
                        l.confirmed = Instant::now();
                    }
                    ctx.up();
                }
                Ok(_) => {
                    // The lease lapsed (etcd was away longer than the TTL):
                    // everything under it is gone; register again.
                    tracing::warn!(target: "switchyard::fleet", lease, "this instance's lease lapsed; registering again");
                    *ctx.lease.lock().unwrap_or_else(|p| p.into_inner()) = None;
                    continue;
                }
                Err(e) => {
                    ctx.down(&e);
                    backoff.wait(&shutdown).await;
                    continue;
                }
            }
        }
        let me = ctx.record();
        if written.as_ref() != Some(&me) {
            let value = serde_json::to_vec(&me).unwrap_or_default();
            match ctx
                .store
                .etcd
                .put(&ctx.key(&format!("instances/{}", me.id)), value, lease)
                .await
            {
                Ok(_) => {
                    written = Some(me);
                    ctx.up();
                }
                Err(e) => {
                    ctx.down(&e);
                    backoff.wait(&shutdown).await;
                    continue;
                }
            }
        }
        backoff.reset();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ctx.controller.epoch_applied() => {}
            _ = tokio::time::sleep(ttl / 3 / 2) => {}
        }
    }
}

/// Leaves the fleet now: revoking the lease deletes the registration, the
/// guard's leadership and window with it.
pub async fn leave(ctx: &Context) {
    let lease = ctx.lease.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(l) = lease {
        match ctx.store.etcd.revoke(l.id).await {
            Ok(()) => tracing::info!(target: "switchyard::fleet", "left the fleet"),
            Err(e) => {
                tracing::warn!(target: "switchyard::fleet", error = %e, "could not leave the fleet; the registration lapses with its lease")
            }
        }
    }
}

/// After the members or the epoch changed: whether every instance has
/// applied this instance's epoch, and if so how long the change took.
pub fn converge(ctx: &Context) {
    let epoch = ctx.controller.epoch();
    let applied = ctx.controller.applied();
    let state = ctx.controller.state();
    let Some(change_at_ms) = state.last_change.as_ref().map(|c| c.at_ms) else {
        return;
    };
    // Only an epoch that moved the rollout is timed (an accepted
    // difference is an epoch too, but its change is an older one).
    if applied.change_epoch != epoch || epoch == 0 {
        return;
    }
    let leading = ctx.view.leading();
    let done = ctx.view.write(|v| {
        ctx.metrics.fleet.instances.set(v.members.len() as i64);
        if v.members.is_empty()
            || v.members.values().any(|m| m.epoch < epoch)
            || v.last_convergence.is_some_and(|c| c.epoch >= epoch)
        {
            return None;
        }
        let last = v
            .members
            .values()
            .filter(|m| m.epoch == epoch)
            .map(|m| m.applied_at_ms)
            .max()
            .unwrap_or(change_at_ms);
        let seconds = last.saturating_sub(change_at_ms) as f64 / 1000.0;
        v.last_convergence = Some(Convergence { epoch, seconds });
        Some(seconds)
    });
    if let Some(seconds) = done {
        if leading {
            ctx.metrics.fleet.convergence.observe(seconds);
        }
        tracing::debug!(target: "switchyard::fleet", epoch, seconds, "every instance applied the change");
    }
}
