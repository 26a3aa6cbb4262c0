//! The typed configuration: every key Switchyard accepts, with its default.
//!
//! Every struct denies unknown fields, so a typo (`precent: 5`) is an error
//! rather than a silently disabled guard. Route-level sections mirror the
//! top-level ones with every field optional: what a route omits comes from the
//! top level (resolved in [`crate::snapshot`]).

mod backends;
mod capture;
pub mod defaults;
mod diff;
mod fallback;
mod logging;
mod modules;
mod rollout;
mod routes;
mod server;
mod shadow;
mod steps;
mod store;
mod tls;
mod webhooks;

use serde::{Deserialize, Serialize};

pub use backends::*;
pub use capture::*;
pub use diff::*;
pub use fallback::*;
pub use logging::*;
pub use modules::*;
pub use rollout::*;
pub use routes::*;
pub use server::*;
pub use shadow::*;
pub use steps::{percents, Step};
pub use store::*;
pub use tls::*;
pub use webhooks::*;

fn yes() -> bool {
    true
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address of the plain-text proxy listener, `host:port`; `""` for
    /// none (then `tls.listen` is the only one).
    #[serde(default = "defaults::listen")]
    pub listen: String,
    /// A listener that terminates TLS.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
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
    /// Record a sample of live requests to a file, for offline replay.
    #[serde(default)]
    pub capture: Option<CaptureConfig>,
}
