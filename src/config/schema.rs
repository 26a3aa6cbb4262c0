//! The typed configuration: every key Switchyard accepts, with its default.
//!
//! Every struct denies unknown fields, so a typo (`precent: 5`) is an error
//! rather than a silently disabled guard. Route-level sections mirror the
//! top-level ones with every field optional: what a route omits comes from the
//! top level (resolved in [`crate::snapshot`]).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::duration::HumanDuration;
use super::sticky::StickyKey;

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
    /// File whose trimmed content is the bearer token.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: defaults::admin_listen(),
            token: None,
            token_file: None,
        }
    }
}

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
    /// `http://host:port[/prefix]`.
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
    /// Speak HTTP/2 with prior knowledge (h2c) to this backend.
    #[serde(default)]
    pub http2: bool,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutConfig {
    /// Initial share of live traffic served by `new`; a saved state file wins.
    #[serde(default)]
    pub percent: f64,
    #[serde(default = "defaults::sticky")]
    pub sticky: StickyKey,
    /// Mixed into the sticky hash: a new salt picks a new first cohort.
    #[serde(default = "defaults::salt")]
    pub salt: String,
    /// Request header whose value `old` or `new` pins the request.
    #[serde(default = "defaults::force_header")]
    pub force_header: String,
    /// Where rollout state is persisted; without it a restart forgets changes.
    #[serde(default)]
    pub state_file: Option<PathBuf>,
    /// The step plan, in percent, ascending.
    #[serde(default = "defaults::steps")]
    pub steps: Vec<f64>,
    /// Hold time per step before the guard advances the plan by itself.
    #[serde(default)]
    pub step_every: Option<HumanDuration>,
    #[serde(default)]
    pub guard: GuardConfig,
}

impl Default for RolloutConfig {
    fn default() -> Self {
        Self {
            percent: 0.0,
            sticky: defaults::sticky(),
            salt: defaults::salt(),
            force_header: defaults::force_header(),
            state_file: None,
            steps: defaults::steps(),
            step_every: None,
            guard: GuardConfig::default(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum GuardAction {
    #[default]
    Rollback,
    Pause,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LatencyStatistic {
    #[default]
    P50,
    P99,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GuardConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// How often the checks run.
    #[serde(default = "defaults::guard_interval")]
    pub interval: HumanDuration,
    /// The sliding window judged at each check.
    #[serde(default = "defaults::guard_window")]
    pub window: HumanDuration,
    /// Requests each side needs in the window before anything is judged.
    #[serde(default = "defaults::min_requests")]
    pub min_requests: u64,
    /// Largest tolerated (new error rate − old error rate), as a fraction.
    #[serde(default = "defaults::max_error_rate_increase")]
    pub max_error_rate_increase: f64,
    /// Largest tolerated new/old latency ratio on `latency_statistic`.
    #[serde(default = "defaults::max_latency_ratio")]
    pub max_latency_ratio: f64,
    #[serde(default)]
    pub latency_statistic: LatencyStatistic,
    /// Confidence of the Mann–Whitney test that new is slower.
    #[serde(default = "defaults::confidence")]
    pub confidence: f64,
    /// Largest tolerated rate of real (non-noise) differences.
    #[serde(default = "defaults::max_diff_rate")]
    pub max_diff_rate: f64,
    /// Comparisons needed before the diff rate is judged.
    #[serde(default = "defaults::min_comparisons")]
    pub min_comparisons: u64,
    #[serde(default)]
    pub action: GuardAction,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: defaults::guard_interval(),
            window: defaults::guard_window(),
            min_requests: defaults::min_requests(),
            max_error_rate_increase: defaults::max_error_rate_increase(),
            max_latency_ratio: defaults::max_latency_ratio(),
            latency_statistic: LatencyStatistic::P50,
            confidence: defaults::confidence(),
            max_diff_rate: defaults::max_diff_rate(),
            min_comparisons: defaults::min_comparisons(),
            action: GuardAction::Rollback,
        }
    }
}

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
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NoiseConfig {
    /// A field is a real difference only if raw rate > noise rate × (1 + this).
    #[serde(default = "defaults::relative_threshold")]
    pub relative_threshold: f64,
    /// …and raw rate − noise rate > this.
    #[serde(default = "defaults::absolute_threshold")]
    pub absolute_threshold: f64,
    /// Without `old_twin`: share of mirrored safe requests (GET, HEAD,
    /// OPTIONS) sent to `old` a second time, to learn what old disagrees
    /// with itself on.
    #[serde(default = "defaults::repeat_percent")]
    pub repeat_percent: f64,
}

impl Default for NoiseConfig {
    fn default() -> Self {
        Self {
            relative_threshold: defaults::relative_threshold(),
            absolute_threshold: defaults::absolute_threshold(),
            repeat_percent: defaults::repeat_percent(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// JSONL file that every real difference is appended to.
    pub path: PathBuf,
    /// Size at which the file is rotated.
    #[serde(default = "defaults::store_max_bytes")]
    pub max_bytes: u64,
    /// Rotated files kept (`path.1` … `path.N`).
    #[serde(default = "defaults::store_max_files")]
    pub max_files: usize,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DiffConfig {
    /// Header names never compared.
    #[serde(default = "defaults::ignore_headers")]
    pub ignore_headers: Vec<String>,
    /// JSON Pointer patterns (`*` one segment, `**` any depth) never compared.
    #[serde(default)]
    pub ignore_fields: Vec<String>,
    /// JSON Pointer patterns of arrays whose order does not matter.
    #[serde(default)]
    pub unordered_arrays: Vec<String>,
    /// Numbers closer than this (absolute) are equal.
    #[serde(default)]
    pub float_tolerance: f64,
    /// Headers replaced by `[redacted]` before anything is stored or shown.
    #[serde(default)]
    pub redact_headers: Vec<String>,
    /// Path templates (`/users/{id}/orders`) that name endpoints.
    #[serde(default)]
    pub endpoints: Vec<String>,
    #[serde(default)]
    pub noise: NoiseConfig,
    /// Samples kept in memory per endpoint and field.
    #[serde(default = "defaults::samples_per_field")]
    pub samples_per_field: usize,
    /// Distinct endpoints tracked; the rest share one overflow bucket.
    #[serde(default = "defaults::max_endpoints")]
    pub max_endpoints: usize,
    #[serde(default)]
    pub store: Option<StoreConfig>,
}

impl Default for DiffConfig {
    fn default() -> Self {
        Self {
            ignore_headers: defaults::ignore_headers(),
            ignore_fields: Vec::new(),
            unordered_arrays: Vec::new(),
            float_tolerance: 0.0,
            redact_headers: Vec::new(),
            endpoints: Vec::new(),
            noise: NoiseConfig::default(),
            samples_per_field: defaults::samples_per_field(),
            max_endpoints: defaults::max_endpoints(),
            store: None,
        }
    }
}

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

/// One module in a chain: a single-key map naming the module
/// (`- rate_limit: {...}`). Deserialized by hand because serde_yaml wants
/// YAML tags for enums; this keeps the map form and the error paths.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModuleConfig {
    RateLimit(RateLimitConfig),
    Rules(Vec<RuleConfig>),
}

/// Names of every module, as written in the config.
pub const MODULE_NAMES: &[&str] = &["rate_limit", "rules"];

impl<'de> Deserialize<'de> for ModuleConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = ModuleConfig;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a module: a map with one key, `rate_limit` or `rules`")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<ModuleConfig, A::Error> {
                use serde::de::Error;
                let name: String = map
                    .next_key()?
                    .ok_or_else(|| A::Error::custom("a module needs a name: `rate_limit` or `rules`"))?;
                let module = match name.as_str() {
                    "rate_limit" => ModuleConfig::RateLimit(map.next_value()?),
                    "rules" => ModuleConfig::Rules(map.next_value()?),
                    other => return Err(A::Error::unknown_variant(other, MODULE_NAMES)),
                };
                if let Some(extra) = map.next_key::<String>()? {
                    return Err(A::Error::custom(format!(
                        "one module per list item: `{extra}` must be its own `- {extra}: ...` entry"
                    )));
                }
                Ok(module)
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Whose budget a request spends: like `rollout.sticky`, or `global`.
    #[serde(default = "defaults::rate_key")]
    pub key: StickyKey,
    /// Requests allowed per `per`, sustained.
    pub rate: f64,
    #[serde(default = "defaults::rate_per")]
    pub per: HumanDuration,
    /// Requests allowed at once after a quiet spell; defaults to `rate`.
    #[serde(default)]
    pub burst: Option<f64>,
    /// Keys tracked at once; the idlest is forgotten first.
    #[serde(default = "defaults::max_keys")]
    pub max_keys: usize,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RuleAction {
    /// Answer 403 (or `status`) without reaching any backend.
    #[default]
    Block,
    /// Let the request through, count it, and log the rule name.
    Tag,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub name: String,
    #[serde(default)]
    pub action: RuleAction,
    /// Status of a block; 403 unless set.
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(rename = "match")]
    pub matcher: RuleMatch,
}

/// Every condition given must hold.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleMatch {
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    #[serde(default)]
    pub path_exact: Option<String>,
    #[serde(default)]
    pub path_prefix: Option<String>,
    #[serde(default)]
    pub path_regex: Option<String>,
    /// Header that must be present.
    #[serde(default)]
    pub header_present: Option<String>,
    #[serde(default)]
    pub header: Option<NamedPattern>,
    #[serde(default)]
    pub query: Option<NamedPattern>,
    /// Declared body size (`Content-Length`) above this many bytes; a
    /// chunked body is cut off at this size.
    #[serde(default)]
    pub body_larger_than: Option<u64>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NamedPattern {
    pub name: String,
    pub regex: String,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingConfig {
    /// A tracing filter: `info`, `debug`, `switchyard=debug,hyper=warn`…
    #[serde(default = "defaults::log_level")]
    pub level: String,
    #[serde(default)]
    pub format: LogFormat,
    /// One line per request on target `switchyard::access`.
    #[serde(default)]
    pub access_log: bool,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            level: defaults::log_level(),
            format: LogFormat::Text,
            access_log: false,
        }
    }
}

/// Every default in one place, so the reference docs can quote them.
pub mod defaults {
    use super::*;

    pub fn listen() -> String {
        "127.0.0.1:8080".into()
    }
    pub fn admin_listen() -> String {
        "127.0.0.1:9901".into()
    }
    pub fn max_connections() -> usize {
        10_000
    }
    pub fn header_read_timeout() -> HumanDuration {
        HumanDuration::from_secs(10)
    }
    pub fn max_header_bytes() -> usize {
        16 * 1024
    }
    pub fn max_headers() -> usize {
        100
    }
    pub fn drain_timeout() -> HumanDuration {
        HumanDuration::from_secs(30)
    }
    pub fn http2_max_streams() -> u32 {
        256
    }
    pub fn connect_timeout() -> HumanDuration {
        HumanDuration::from_secs(1)
    }
    pub fn request_timeout() -> HumanDuration {
        HumanDuration::from_secs(30)
    }
    pub fn idle_timeout() -> HumanDuration {
        HumanDuration::from_secs(90)
    }
    pub fn read_timeout() -> HumanDuration {
        HumanDuration::from_secs(60)
    }
    pub fn max_idle() -> usize {
        512
    }
    pub fn sticky() -> StickyKey {
        StickyKey::ClientIp
    }
    pub fn rate_key() -> StickyKey {
        StickyKey::ClientIp
    }
    pub fn salt() -> String {
        "switchyard".into()
    }
    pub fn force_header() -> String {
        "x-switchyard-backend".into()
    }
    pub fn steps() -> Vec<f64> {
        vec![1.0, 5.0, 25.0, 50.0, 100.0]
    }
    pub fn guard_interval() -> HumanDuration {
        HumanDuration::from_secs(10)
    }
    pub fn guard_window() -> HumanDuration {
        HumanDuration::from_secs(300)
    }
    pub fn min_requests() -> u64 {
        100
    }
    pub fn max_error_rate_increase() -> f64 {
        0.01
    }
    pub fn max_latency_ratio() -> f64 {
        1.2
    }
    pub fn confidence() -> f64 {
        0.98
    }
    pub fn max_diff_rate() -> f64 {
        0.05
    }
    pub fn min_comparisons() -> u64 {
        50
    }
    pub fn shadow_methods() -> Vec<String> {
        vec!["GET".into(), "HEAD".into(), "OPTIONS".into()]
    }
    pub fn max_body_bytes() -> usize {
        1024 * 1024
    }
    pub fn max_response_bytes() -> usize {
        4 * 1024 * 1024
    }
    pub fn max_in_flight() -> usize {
        1024
    }
    pub fn shadow_timeout() -> HumanDuration {
        HumanDuration::from_secs(5)
    }
    pub fn queue() -> usize {
        4096
    }
    pub fn relative_threshold() -> f64 {
        0.2
    }
    pub fn absolute_threshold() -> f64 {
        0.0003
    }
    pub fn repeat_percent() -> f64 {
        10.0
    }
    pub fn store_max_bytes() -> u64 {
        64 * 1024 * 1024
    }
    pub fn store_max_files() -> usize {
        5
    }
    pub fn ignore_headers() -> Vec<String> {
        [
            "date",
            "server",
            "x-request-id",
            "content-length",
            "connection",
            "keep-alive",
            "transfer-encoding",
            "content-encoding",
            "vary",
            "etag",
            "last-modified",
            "age",
            "expires",
            "set-cookie",
            "via",
            "x-switchyard-served-by",
        ]
        .into_iter()
        .map(String::from)
        .collect()
    }
    pub fn samples_per_field() -> usize {
        20
    }
    pub fn max_endpoints() -> usize {
        500
    }
    pub fn rate_per() -> HumanDuration {
        HumanDuration::from_secs(1)
    }
    pub fn max_keys() -> usize {
        100_000
    }
    pub fn log_level() -> String {
        "info".into()
    }
}
