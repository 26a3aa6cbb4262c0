//! `rollout.fallback`: a request new fails is answered by old.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FallbackConfig {
    /// Which failures of new are retried on old.
    #[serde(default = "on")]
    pub on: Vec<FallbackOn>,
    /// Only these methods (idempotent ones: the request is sent twice).
    #[serde(default = "methods")]
    pub methods: Vec<String>,
    /// The most of new's requests (in the guard's window) that may fall
    /// back; beyond it new's error reaches the client, so a dead new cannot
    /// silently double old's load.
    #[serde(default = "max_share")]
    pub max_share: f64,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FallbackOn {
    /// new could not be connected to (refused, unreachable, TLS).
    ConnectError,
    /// new did not answer within its timeout.
    Timeout,
    /// new answered 5xx (its answer is dropped unread).
    #[serde(rename = "5xx")]
    ServerError,
}

impl FallbackOn {
    pub const fn as_str(self) -> &'static str {
        match self {
            FallbackOn::ConnectError => "connect_error",
            FallbackOn::Timeout => "timeout",
            FallbackOn::ServerError => "5xx",
        }
    }
}

fn on() -> Vec<FallbackOn> {
    vec![FallbackOn::ConnectError, FallbackOn::Timeout, FallbackOn::ServerError]
}

fn methods() -> Vec<String> {
    ["GET", "HEAD", "OPTIONS"].into_iter().map(String::from).collect()
}

fn max_share() -> f64 {
    0.05
}
