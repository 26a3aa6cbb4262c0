//! The snapshot: the config, its compiled routes and the rollout state, as
//! one immutable value behind an `ArcSwap`. A request loads it once, with a
//! single atomic operation, and sees one consistent world for its whole life;
//! a rollback or a reload builds a new snapshot and swaps it in.

use std::sync::Arc;

use arc_swap::ArcSwap;
use http::HeaderName;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::rollout::state::RolloutState;
use crate::route::{Route, RouteTable};

pub struct Snapshot {
    pub config: Arc<Config>,
    pub routes: Arc<RouteTable>,
    pub rollout: RolloutState,
    /// Changes whenever backends may have changed, so workers rebuild pools.
    pub generation: u64,
    pub seed: u64,
    pub force_header: HeaderName,
}

impl Snapshot {
    pub fn build(
        config: Arc<Config>,
        rollout: RolloutState,
        generation: u64,
        metrics: &Metrics,
    ) -> Result<Self, String> {
        let routes = Arc::new(RouteTable::build(&config, metrics)?);
        Ok(Self {
            seed: crate::split::seed(&config.rollout.salt),
            force_header: HeaderName::from_bytes(config.rollout.force_header.as_bytes()).map_err(|e| e.to_string())?,
            config,
            routes,
            rollout,
            generation,
        })
    }

    /// The same config and routes with another rollout state.
    pub fn with_rollout(&self, rollout: RolloutState) -> Self {
        Self {
            config: self.config.clone(),
            routes: self.routes.clone(),
            rollout,
            generation: self.generation,
            seed: self.seed,
            force_header: self.force_header.clone(),
        }
    }

    pub fn percent_for(&self, route: &Route) -> f64 {
        self.rollout.percent_for(route.percent)
    }
}

/// The shared cell every request reads from.
pub type SnapshotCell = Arc<ArcSwap<Snapshot>>;
