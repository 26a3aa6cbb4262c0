//! The snapshot: the config, its compiled routes and the rollout state, as
//! one immutable value behind an `ArcSwap`. A request loads it once, with a
//! single atomic operation, and sees one consistent world for its whole life;
//! a rollback or a reload builds a new snapshot and swaps it in.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::HeaderName;

use crate::config::cidr::Ranges;
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
    /// Read once from `admin.token` or `admin.token_file` when the snapshot
    /// is built (start, reload): a file that vanishes later changes nothing.
    pub admin_token: Option<Arc<str>>,
    /// Peers whose forwarding headers are believed.
    pub trusted_proxies: Ranges,
    /// Who may pin with the force header; `None` is anyone.
    pub force_from: Option<Ranges>,
}

impl Snapshot {
    pub fn build(
        config: Arc<Config>,
        rollout: RolloutState,
        generation: u64,
        metrics: &Metrics,
    ) -> Result<Self, String> {
        let routes = Arc::new(RouteTable::build(&config, metrics)?);
        let admin_token = config.resolve_admin_token()?.map(Arc::from);
        Ok(Self {
            admin_token,
            trusted_proxies: Ranges::new(&config.server.trusted_proxies),
            force_from: config.rollout.force_from.as_deref().map(Ranges::new),
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
            admin_token: self.admin_token.clone(),
            trusted_proxies: self.trusted_proxies.clone(),
            force_from: self.force_from.clone(),
        }
    }

    pub fn percent_for(&self, route: &Route) -> f64 {
        self.rollout.percent_for(route.percent)
    }
}

/// Where the current snapshot is published, with a version that moves on
/// every store. Workers keep their own handle on the current snapshot and
/// check the version (one atomic load) per request, so the snapshot's shared
/// reference count is not bounced between cores on every request.
pub struct Published {
    cell: ArcSwap<Snapshot>,
    version: AtomicU64,
}

impl Published {
    pub fn new(snapshot: Snapshot) -> Self {
        Self {
            cell: ArcSwap::from_pointee(snapshot),
            version: AtomicU64::new(0),
        }
    }

    pub fn load(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.cell.load()
    }

    pub fn load_full(&self) -> Arc<Snapshot> {
        self.cell.load_full()
    }

    /// Publishes a snapshot; the version moves after, so whoever sees the new
    /// version finds the new snapshot.
    pub fn store(&self, snapshot: Arc<Snapshot>) {
        self.cell.store(snapshot);
        self.version.fetch_add(1, Ordering::SeqCst);
    }

    pub fn version(&self) -> u64 {
        self.version.load(Ordering::SeqCst)
    }
}

/// The shared cell every request reads from.
pub type SnapshotCell = Arc<Published>;

/// A worker's handle on the snapshot of a given version.
pub struct Current {
    pub version: u64,
    pub snapshot: Arc<Snapshot>,
}

/// A worker's cache of the current snapshot.
pub struct WorkerView {
    current: ArcSwap<Current>,
}

impl WorkerView {
    pub fn new(cell: &Published) -> Self {
        Self {
            current: ArcSwap::from_pointee(Current {
                version: cell.version(),
                snapshot: cell.load_full(),
            }),
        }
    }

    /// The snapshot a request works with: this worker's copy, refreshed when
    /// the published version has moved.
    pub fn get(&self, cell: &Published) -> Arc<Current> {
        let version = cell.version();
        let current = self.current.load_full();
        if current.version == version {
            return current;
        }
        let fresh = Arc::new(Current {
            version,
            snapshot: cell.load_full(),
        });
        self.current.store(fresh.clone());
        fresh
    }
}
