//! Routes: which requests they take, and what each overrides of the top level.

use serde::{Deserialize, Serialize};

use super::ModuleConfig;
use crate::config::StickyKey;

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The `route` label of every metric for this route.
    pub name: String,
    #[serde(rename = "match", default)]
    pub matcher: RouteMatch,
    #[serde(default)]
    pub rollout: RouteRollout,
    #[serde(default)]
    pub shadow: RouteShadow,
    #[serde(default)]
    pub diff: RouteDiff,
    /// Modules run after the top-level ones, for this route only.
    #[serde(default)]
    pub modules: Vec<ModuleConfig>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteMatch {
    /// Exact host (port ignored); `*.example.com` matches subdomains.
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub path_prefix: Option<String>,
    #[serde(default)]
    pub methods: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRollout {
    /// This route's share for `new`, instead of the global one.
    #[serde(default)]
    pub percent: Option<f64>,
    #[serde(default)]
    pub sticky: Option<StickyKey>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteShadow {
    #[serde(default)]
    pub percent: Option<f64>,
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    #[serde(default)]
    pub max_body_bytes: Option<usize>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteDiff {
    /// Added to the top-level list.
    #[serde(default)]
    pub ignore_headers: Vec<String>,
    /// Added to the top-level list.
    #[serde(default)]
    pub ignore_fields: Vec<String>,
    /// Added to the top-level list.
    #[serde(default)]
    pub unordered_arrays: Vec<String>,
    #[serde(default)]
    pub float_tolerance: Option<f64>,
    /// Path templates naming this route's endpoints, tried before
    /// `diff.endpoints`.
    #[serde(default)]
    pub endpoints: Vec<String>,
}
