//! The listeners' side: limits and timeouts of client connections, and the
//! admin API's address and credentials.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::defaults;
use super::yes;
use crate::config::HumanDuration;

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Event-loop threads, each with its own `SO_REUSEPORT` listener and
    /// upstream pools; 0 means one per CPU.
    #[serde(default)]
    pub workers: usize,
    /// Connections served at once; further ones wait in the kernel backlog.
    #[serde(default = "defaults::max_connections")]
    pub max_connections: usize,
    /// Time a client has to send a complete request head (slowloris guard).
    #[serde(default = "defaults::header_read_timeout")]
    pub header_read_timeout: HumanDuration,
    /// Largest request head, in bytes (HTTP/1 read buffer, HTTP/2 header list).
    #[serde(default = "defaults::max_header_bytes")]
    pub max_header_bytes: usize,
    /// Most header fields in one HTTP/1 request.
    #[serde(default = "defaults::max_headers")]
    pub max_headers: usize,
    /// Time in-flight requests get to finish after SIGTERM/SIGINT.
    #[serde(default = "defaults::drain_timeout")]
    pub drain_timeout: HumanDuration,
    /// Concurrent streams per HTTP/2 connection.
    #[serde(default = "defaults::http2_max_streams")]
    pub http2_max_concurrent_streams: u32,
    /// Add `x-switchyard-served-by: old|new` to responses.
    #[serde(default = "yes")]
    pub served_by_header: bool,
    /// Add `Via` to forwarded requests and to responses.
    #[serde(default = "yes")]
    pub via: bool,
    /// Peers (addresses or CIDRs) whose `X-Forwarded-*` headers are kept and
    /// appended to, and whose `X-Forwarded-For` names the client. Everyone
    /// else's are replaced with what the gateway itself saw.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Longest wait for the next bytes of a client's request body; past it
    /// the client gets 408 (its fault, never a backend's).
    #[serde(default = "defaults::client_body_timeout")]
    pub client_body_timeout: HumanDuration,
    /// An upgraded connection (WebSocket) with no bytes either way for
    /// this long is closed.
    #[serde(default = "defaults::upgrade_idle_timeout")]
    pub upgrade_idle_timeout: HumanDuration,
    /// After SIGTERM, `/readyz` turns 503 at once but the listeners keep
    /// accepting this long, so a load balancer stops sending first.
    #[serde(default)]
    pub shutdown_delay: HumanDuration,
    /// Reload when the config file changes (a Kubernetes ConfigMap update),
    /// validated as on SIGHUP.
    #[serde(default)]
    pub watch_config: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            workers: 0,
            max_connections: defaults::max_connections(),
            header_read_timeout: defaults::header_read_timeout(),
            max_header_bytes: defaults::max_header_bytes(),
            max_headers: defaults::max_headers(),
            drain_timeout: defaults::drain_timeout(),
            http2_max_concurrent_streams: defaults::http2_max_streams(),
            served_by_header: true,
            via: true,
            trusted_proxies: Vec::new(),
            client_body_timeout: defaults::client_body_timeout(),
            upgrade_idle_timeout: defaults::upgrade_idle_timeout(),
            shutdown_delay: HumanDuration::default(),
            watch_config: false,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    #[serde(default = "defaults::admin_listen")]
    pub listen: String,
    /// Bearer token for mutations. Prefer `token_file` outside a laptop.
    #[serde(default)]
    pub token: Option<String>,
    /// File whose trimmed content is the bearer token; read at start and on
    /// reload (an unreadable file refuses the start or keeps the last token).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Paths anyone may `GET` even when a token is set; every other read
    /// (the report, stored samples) needs the token too.
    #[serde(default = "defaults::admin_open_paths")]
    pub open_paths: Vec<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: defaults::admin_listen(),
            token: None,
            token_file: None,
            open_paths: defaults::admin_open_paths(),
        }
    }
}
