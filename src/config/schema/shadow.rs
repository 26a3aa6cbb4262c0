//! Mirroring: which requests are also sent to the other side, and the
//! bounds that keep mirrors off the live path's back.

use serde::{Deserialize, Serialize};

use super::defaults;
use crate::config::HumanDuration;

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowConfig {
    /// Share of eligible requests also sent to the other side.
    #[serde(default)]
    pub percent: f64,
    /// Methods that may be mirrored; writes only when listed here.
    #[serde(default = "defaults::shadow_methods")]
    pub methods: Vec<String>,
    /// Largest request body buffered to send to both sides.
    #[serde(default = "defaults::max_body_bytes")]
    pub max_body_bytes: usize,
    /// Largest response body kept from each side for the comparison.
    #[serde(default = "defaults::max_response_bytes")]
    pub max_response_bytes: usize,
    /// Shadow requests in flight at once; beyond it they are dropped and counted.
    #[serde(default = "defaults::max_in_flight")]
    pub max_in_flight: usize,
    /// Deadline for a whole shadow exchange.
    #[serde(default = "defaults::shadow_timeout")]
    pub timeout: HumanDuration,
    /// Comparisons queued for analysis; beyond it they are dropped and counted.
    #[serde(default = "defaults::queue")]
    pub queue: usize,
    /// Bytes of every mirrored body held at once: request bodies read ahead,
    /// response bodies being read or copied, and pairs queued for analysis.
    /// A mirror that would go past it is dropped and counted.
    #[serde(default = "defaults::max_buffered_bytes")]
    pub max_buffered_bytes: usize,
    /// Connections each backend gets for mirrors, apart from live traffic's.
    #[serde(default = "defaults::shadow_max_connections")]
    pub max_connections: usize,
    /// Threads that send mirrors; they run at the lowest CPU priority, so
    /// under contention the live workers are served first.
    #[serde(default = "defaults::shadow_workers")]
    pub workers: usize,
}

impl Default for ShadowConfig {
    fn default() -> Self {
        Self {
            percent: 0.0,
            methods: defaults::shadow_methods(),
            max_body_bytes: defaults::max_body_bytes(),
            max_response_bytes: defaults::max_response_bytes(),
            max_in_flight: defaults::max_in_flight(),
            timeout: defaults::shadow_timeout(),
            queue: defaults::queue(),
            max_buffered_bytes: defaults::max_buffered_bytes(),
            max_connections: defaults::shadow_max_connections(),
            workers: defaults::shadow_workers(),
        }
    }
}
