//! Many gateways, one rollout: the rollout state on etcd.
//!
//! - [`etcd`]: the slice of etcd's v3 API used here;
//! - [`store`]: the rollout record and its transactions (the epoch is its
//!   revision);
//! - [`follow`]: the watch that applies every change on every instance;
//! - [`members`]: this instance's registration under a lease, the fleet's
//!   members, and how fast a change reached all of them;
//! - [`leader`]: which instance runs the guard;
//! - [`reconcile`]: lands a rollback made while the store was away;
//! - [`window`]: the guard's per-instance windows, merged by the leader.
//!
//! Everything here runs on a thread of its own ([`Fleet::start`]), so a
//! slow or absent etcd never holds a worker or the admin API.

pub mod backoff;
pub mod etcd;
pub mod follow;
pub mod leader;
pub mod members;
pub mod reconcile;
pub mod store;
pub mod view;
pub mod window;

use std::sync::Arc;
use std::thread::JoinHandle;

use tokio_util::sync::CancellationToken;

use self::etcd::Etcd;
pub use self::members::Context;
use self::store::{RolloutStore, StoreError};
pub use self::view::{FleetView, Member};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::rollout::controller::Controller;
use crate::rollout::state::{Phase, RolloutState};

/// The fleet's runtime before its thread starts: built first, so the
/// gateway can read the shared state before it serves anything.
pub struct Fleet {
    runtime: tokio::runtime::Runtime,
    pub store: RolloutStore,
    pub view: Arc<FleetView>,
}

/// Where the gateway starts: the state, its epoch, and whether a rollback
/// made here still has to reach the store.
pub struct Start {
    pub state: RolloutState,
    pub epoch: u64,
    pub rollback_pending: bool,
}

impl Fleet {
    /// Connects (lazily) and names this instance.
    pub fn new(config: &Config, admin: std::net::SocketAddr, proxy: String) -> Result<Fleet, String> {
        let Some(store) = &config.rollout.store else {
            return Err("rollout.store is not configured".into());
        };
        let cfg = &store.etcd;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the fleet's event loop: {e}"))?;
        let etcd = runtime.block_on(async { Etcd::new(cfg) }).map_err(|e| e.to_string())?;
        let host = hostname();
        let id = cfg
            .instance
            .clone()
            .unwrap_or_else(|| format!("{host}:{}", admin.port()));
        let advertise = cfg.advertise.clone().unwrap_or_else(|| {
            if admin.ip().is_unspecified() {
                format!("{host}:{}", admin.port())
            } else {
                admin.to_string()
            }
        });
        let view = Arc::new(FleetView::new(id, advertise, proxy, cfg));
        Ok(Fleet {
            runtime,
            store: RolloutStore {
                etcd,
                prefix: cfg.prefix.clone(),
            },
            view,
        })
    }

    /// The state to start from: the store's, or this instance's own (the
    /// state file) when the store is empty or unreachable. A rollback this
    /// instance made and could not land before it stopped still wins.
    pub fn start_state(&self, local: RolloutState, state_file: Option<&std::path::Path>) -> Result<Start, String> {
        let store = self.store.clone();
        // A rollback made here before the restart that never reached the
        // store (the marker beside the state file says so).
        let unlanded = local.phase == Phase::RolledBack
            && state_file.is_some_and(|p| crate::rollout::persist::unlanded_path(p).exists());
        let loaded = self.runtime.block_on(async { store.load().await });
        match loaded {
            Ok(Some((remote, epoch))) => {
                self.view.store_answered();
                if unlanded && remote.phase != Phase::RolledBack {
                    tracing::warn!(target: "switchyard::fleet", epoch, "this instance was rolled back while the fleet store was away; the rollback stands and is written to the store");
                    return Ok(Start {
                        state: local,
                        epoch,
                        rollback_pending: true,
                    });
                }
                Ok(Start {
                    state: remote,
                    epoch,
                    rollback_pending: false,
                })
            }
            Ok(None) => {
                let created = self.runtime.block_on(async { store.cas(0, &local, None).await });
                match created {
                    Ok(store::Cas::Done(epoch)) => {
                        self.view.store_answered();
                        tracing::info!(target: "switchyard::fleet", epoch, percent = local.percent, "the fleet store had no rollout; this instance's is now the fleet's");
                        Ok(Start {
                            state: local,
                            epoch,
                            rollback_pending: false,
                        })
                    }
                    Ok(store::Cas::Lost { state, epoch }) => Ok(Start {
                        state: *state,
                        epoch,
                        rollback_pending: false,
                    }),
                    Err(e) => Ok(self.unreachable(local, unlanded, e)),
                }
            }
            Err(StoreError::Unreadable { key, error }) => Err(format!(
                "{key} in etcd holds no rollout state this version reads ({error}); fix or delete the key (etcdctl del {key})"
            )),
            Err(e) => Ok(self.unreachable(local, unlanded, e)),
        }
    }

    fn unreachable(&self, local: RolloutState, unlanded: bool, e: StoreError) -> Start {
        self.view.store_failed(&e.to_string());
        tracing::warn!(target: "switchyard::fleet", error = %e, percent = local.percent, phase = local.phase.as_str(), "the fleet store is unreachable: serving with this instance's last state until it answers");
        Start {
            rollback_pending: unlanded,
            state: local,
            epoch: 0,
        }
    }

    /// Runs the watch, the registration, the election and the reconciler
    /// on the fleet's own thread until `shutdown`; the context they share
    /// is the guard's and the admin API's handle on the fleet.
    pub fn start(
        self,
        controller: Arc<Controller>,
        metrics: Metrics,
        ready: Arc<std::sync::atomic::AtomicBool>,
        shutdown: CancellationToken,
    ) -> Result<(Arc<Context>, JoinHandle<()>), String> {
        let Fleet { runtime, store, view } = self;
        let ctx = Arc::new(Context {
            store,
            view,
            controller,
            metrics,
            ready,
            leader_gone: tokio::sync::Notify::new(),
            lease: std::sync::Mutex::new(None),
            leadership: std::sync::Mutex::new(None),
            started_ms: crate::rollout::state::now_ms(),
        });
        ctx.metrics.fleet.store_up.set(i64::from(ctx.view.store_up()));
        let shared = ctx.clone();
        let thread = std::thread::Builder::new()
            .name("switchyard-fleet".into())
            .spawn(move || {
                let ctx = shared;
                runtime.block_on(async move {
                    let tasks = [
                        tokio::spawn(follow::run(ctx.clone(), shutdown.clone())),
                        tokio::spawn(members::run(ctx.clone(), shutdown.clone())),
                        tokio::spawn(leader::run(ctx.clone(), shutdown.clone())),
                        tokio::spawn(reconcile::run(ctx.clone(), shutdown.clone())),
                    ];
                    shutdown.cancelled().await;
                    for t in tasks {
                        let _ = t.await;
                    }
                    // Leave the fleet at once rather than after the lease.
                    members::leave(&ctx).await;
                });
            })
            .map_err(|e| format!("cannot start the fleet thread: {e}"))?;
        Ok((ctx, thread))
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
