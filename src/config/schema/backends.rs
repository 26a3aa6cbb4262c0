//! The two systems behind the gateway (and old's twin), and how each is reached.

use serde::{Deserialize, Serialize};

use super::{defaults, BackendProtocol, BackendTls};
use crate::config::HumanDuration;

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Backends {
    pub old: BackendConfig,
    pub new: BackendConfig,
    /// A second copy of `old`: what old disagrees with itself on is noise.
    #[serde(default)]
    pub old_twin: Option<BackendConfig>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HostHeader {
    /// Send the client's `Host` unchanged (virtual hosts behind the backend keep working).
    #[default]
    Preserve,
    /// Send the backend URL's authority as `Host`.
    Rewrite,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// `http://host:port[/prefix]` or `https://…`.
    pub url: String,
    #[serde(default)]
    pub host: HostHeader,
    #[serde(default = "defaults::connect_timeout")]
    pub connect_timeout: HumanDuration,
    /// Time from sending the request to receiving the response head.
    #[serde(default = "defaults::request_timeout")]
    pub timeout: HumanDuration,
    /// Longest wait for the next bytes of a response body.
    #[serde(default = "defaults::read_timeout")]
    pub read_timeout: HumanDuration,
    /// How long an unused pooled connection is kept.
    #[serde(default = "defaults::idle_timeout")]
    pub idle_timeout: HumanDuration,
    /// Idle connections kept per worker.
    #[serde(default = "defaults::max_idle")]
    pub max_idle_connections: usize,
    /// The HTTP version spoken to this backend.
    #[serde(default)]
    pub protocol: BackendProtocol,
    /// Older spelling of `protocol: http2`, still accepted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub http2: bool,
    /// How an `https://` backend is verified, and the client certificate.
    #[serde(default)]
    pub tls: Option<BackendTls>,
    /// Connections to this backend open at once for live traffic, across
    /// every worker (HTTP/2: requests in flight). Mirrors have their own
    /// budget, `shadow.max_connections`.
    #[serde(default = "defaults::backend_max_connections")]
    pub max_connections: usize,
    /// How long a request waits for a connection once `max_connections` are
    /// open, before it is answered 503.
    #[serde(default = "defaults::queue_timeout")]
    pub queue_timeout: HumanDuration,
}

impl BackendConfig {
    /// The protocol in force, with the older `http2: true` folded in.
    pub fn protocol(&self) -> BackendProtocol {
        if self.http2 {
            BackendProtocol::Http2
        } else {
            self.protocol
        }
    }

    /// What `tls:` says, for the TLS client (all defaults without it).
    pub fn trust(&self) -> crate::tls::backend::Trust<'_> {
        self.tls.as_ref().map(BackendTls::trust).unwrap_or_default()
    }

    /// Whether the URL says `https://`.
    pub fn is_https(&self) -> bool {
        self.url.get(..8).is_some_and(|s| s.eq_ignore_ascii_case("https://"))
    }
}
