//! The fleet store: whether it is reachable, the epoch this instance
//! applied, how fast changes reach every instance, and who runs the guard.
//! Registered only when `rollout.store` is configured: a gateway on its
//! own exports none of them rather than a `store_up` that means nothing.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Registry};

#[derive(Clone)]
pub struct FleetMetrics {
    pub store_up: IntGauge,
    pub epoch: IntGauge,
    pub convergence: Histogram,
    pub leader: IntGauge,
    pub instances: IntGauge,
    pub conflicts: IntCounter,
    pub rollbacks_pending: IntGauge,
}

fn gauge(name: &str, help: &str) -> IntGauge {
    IntGauge::new(name, help).expect("metric definition")
}

impl FleetMetrics {
    pub(super) fn new() -> Self {
        Self {
            store_up: gauge("switchyard_store_up", "1 while the fleet store (etcd) answers, 0 when it does not."),
            epoch: gauge(
                "switchyard_rollout_epoch",
                "The fleet store's revision of the rollout state this instance applied.",
            ),
            convergence: Histogram::with_opts(
                HistogramOpts::new(
                    "switchyard_rollout_convergence_seconds",
                    "From a rollout change to the moment every instance of the fleet applied it (observed by the guard's leader).",
                )
                .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            )
            .expect("metric definition"),
            leader: gauge("switchyard_guard_leader", "1 on the instance that runs the fleet's guard."),
            instances: gauge("switchyard_fleet_instances", "Instances registered in the fleet store."),
            conflicts: IntCounter::new(
                "switchyard_rollout_conflicts_total",
                "Changes refused because another reached the fleet store first (409).",
            )
            .expect("metric definition"),
            rollbacks_pending: gauge(
                "switchyard_rollback_pending",
                "1 while a rollback made here has not reached the fleet store.",
            ),
        }
    }

    pub(super) fn register(&self, r: &Registry) {
        let _ = r.register(Box::new(self.store_up.clone()));
        let _ = r.register(Box::new(self.epoch.clone()));
        let _ = r.register(Box::new(self.convergence.clone()));
        let _ = r.register(Box::new(self.leader.clone()));
        let _ = r.register(Box::new(self.instances.clone()));
        let _ = r.register(Box::new(self.conflicts.clone()));
        let _ = r.register(Box::new(self.rollbacks_pending.clone()));
    }
}
