//! The typed configuration: every key Switchyard accepts, with its default.
//!
//! Every struct denies unknown fields, so a typo (`precent: 5`) is an error
//! rather than a silently disabled guard. Route-level sections mirror the
//! top-level ones with every field optional: what a route omits comes from the
//! top level (resolved in [`crate::snapshot`]).

mod backends;
pub mod defaults;
mod diff;
mod logging;
mod modules;
mod rollout;
mod routes;
mod server;
mod shadow;

use serde::{Deserialize, Serialize};

pub use backends::*;
pub use diff::*;
pub use logging::*;
pub use modules::*;
pub use rollout::*;
pub use routes::*;
pub use server::*;
pub use shadow::*;

fn yes() -> bool {
    true
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address of the proxy listener, `host:port`.
    #[serde(default = "defaults::listen")]
    pub listen: String,
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    pub backends: Backends,
    #[serde(default)]
    pub rollout: RolloutConfig,
    #[serde(default)]
    pub shadow: ShadowConfig,
    #[serde(default)]
    pub diff: DiffConfig,
    /// Modules run on every request, before the route's own.
    #[serde(default)]
    pub modules: Vec<ModuleConfig>,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    #[serde(default)]
    pub logging: LoggingConfig,
}
