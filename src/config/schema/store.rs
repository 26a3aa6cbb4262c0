//! `rollout.store`: where the rollout state lives when several gateways
//! share one rollout. Without it each gateway keeps its own (`state_file`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::HumanDuration;

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RolloutStoreConfig {
    pub etcd: EtcdConfig,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EtcdConfig {
    /// etcd's client URLs (`http://` or `https://`), any of the cluster.
    pub endpoints: Vec<String>,
    /// Every key of this rollout starts with it: one prefix per migration.
    pub prefix: String,
    #[serde(default)]
    pub username: Option<String>,
    /// File whose trimmed content is the password of `username`.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// CA that signed etcd's certificate (https endpoints).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key, when etcd asks for one.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Longest wait to connect, and for any one call to etcd.
    #[serde(default = "dial_timeout")]
    pub dial_timeout: HumanDuration,
    /// This instance's registration, and the guard's leadership, live this
    /// long without word from it: a dead instance leaves the fleet (and a
    /// dead leader hands the guard over) within it.
    #[serde(default = "lease_ttl")]
    pub lease_ttl: HumanDuration,
    /// This instance's name in the fleet; default `HOST:ADMIN_PORT`.
    #[serde(default)]
    pub instance: Option<String>,
    /// The admin API's address as the other instances reach it (for the
    /// fleet report); default the admin listener's, or `HOST:PORT` when it
    /// listens on every address.
    #[serde(default)]
    pub advertise: Option<String>,
    /// `/readyz` stays 200 while etcd is unreachable (the gateway serves
    /// with the last state it applied). `false` turns it 503 instead.
    #[serde(default = "super::yes")]
    pub ready_without_store: bool,
}

fn dial_timeout() -> HumanDuration {
    HumanDuration::from_secs(2)
}

fn lease_ttl() -> HumanDuration {
    HumanDuration::from_secs(10)
}
