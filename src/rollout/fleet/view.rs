//! What this instance knows of the fleet, as `/status` shows it: whether
//! the store answers, the members and the epoch each applied, who runs the
//! guard, and how long the last change took to reach everyone.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::config::EtcdConfig;
use crate::rollout::checks::GuardReport;
use crate::rollout::state::now_ms;

/// One instance, as it registered itself under `PREFIX/instances/ID`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub id: String,
    /// Its admin API, as the other instances reach it.
    pub admin: String,
    pub proxy: String,
    pub version: String,
    /// The epoch it applied, and when (Unix ms, its clock).
    pub epoch: u64,
    pub applied_at_ms: u64,
    pub ready: bool,
    pub started_ms: u64,
}

/// How long one change took to reach every instance.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Convergence {
    pub epoch: u64,
    pub seconds: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct View {
    pub id: String,
    pub advertise: String,
    pub proxy: String,
    pub endpoints: Vec<String>,
    pub prefix: String,
    pub store_up: bool,
    /// Since when the store answers (or has not), Unix ms.
    pub store_since_ms: u64,
    pub store_error: Option<String>,
    pub members: BTreeMap<String, Member>,
    pub leader: Option<String>,
    pub leading: bool,
    /// The guard's report as its leader published it.
    #[serde(skip)]
    pub guard: Option<GuardReport>,
    pub last_convergence: Option<Convergence>,
    pub ready_without_store: bool,
}

pub struct FleetView(Mutex<View>);

impl FleetView {
    pub fn new(id: String, advertise: String, proxy: String, cfg: &EtcdConfig) -> Self {
        Self(Mutex::new(View {
            id,
            advertise,
            proxy,
            endpoints: cfg.endpoints.clone(),
            prefix: cfg.prefix.clone(),
            store_up: false,
            store_since_ms: now_ms(),
            store_error: None,
            members: BTreeMap::new(),
            leader: None,
            leading: false,
            guard: None,
            last_convergence: None,
            ready_without_store: cfg.ready_without_store,
        }))
    }

    pub fn read<T>(&self, f: impl FnOnce(&View) -> T) -> T {
        f(&self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn write<T>(&self, f: impl FnOnce(&mut View) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn id(&self) -> String {
        self.read(|v| v.id.clone())
    }

    /// The store answered; returns whether it had not before.
    pub fn store_answered(&self) -> bool {
        self.write(|v| {
            let back = !v.store_up;
            if back {
                v.store_up = true;
                v.store_since_ms = now_ms();
                v.store_error = None;
            }
            back
        })
    }

    /// The store did not answer; returns whether it had before.
    pub fn store_failed(&self, error: &str) -> bool {
        self.write(|v| {
            let lost = v.store_up || v.store_error.is_none();
            if v.store_up {
                v.store_since_ms = now_ms();
            }
            v.store_up = false;
            v.store_error = Some(error.to_string());
            lost
        })
    }

    pub fn store_up(&self) -> bool {
        self.read(|v| v.store_up)
    }

    /// Whether `/readyz` may say ready, as far as the store goes.
    pub fn ready(&self) -> bool {
        self.read(|v| v.store_up || v.ready_without_store)
    }

    pub fn members(&self) -> Vec<Member> {
        self.read(|v| v.members.values().cloned().collect())
    }

    pub fn leading(&self) -> bool {
        self.read(|v| v.leading)
    }

    /// The fleet as `/status` shows it, with the epoch this instance runs.
    pub fn status(&self, epoch: u64) -> serde_json::Value {
        self.read(|v| {
            let behind: Vec<&str> = v
                .members
                .values()
                .filter(|m| m.epoch < epoch)
                .map(|m| m.id.as_str())
                .collect();
            serde_json::json!({
                "instance": v.id,
                "epoch": epoch,
                "store": {
                    "kind": "etcd",
                    "endpoints": v.endpoints,
                    "prefix": v.prefix,
                    "up": v.store_up,
                    "since_ms": v.store_since_ms,
                    "error": v.store_error,
                },
                "leader": v.leader,
                "leading": v.leading,
                "converged": behind.is_empty() && !v.members.is_empty(),
                "behind": behind,
                "last_convergence": v.last_convergence,
                "instances": v.members.values().collect::<Vec<_>>(),
            })
        })
    }
}
