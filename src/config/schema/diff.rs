//! Comparison rules, the noise model and the diff store.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::defaults;

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
    #[serde(default)]
    pub grpc: GrpcDiffConfig,
}

/// `diff.grpc:` — how gRPC messages are read for comparison.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcDiffConfig {
    /// A `FileDescriptorSet` (`protoc --include_imports --descriptor_set_out`):
    /// messages of the services it describes are decoded and compared field
    /// by field; without it they are compared as bytes.
    #[serde(default)]
    pub descriptor_set: Option<std::path::PathBuf>,
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
            grpc: GrpcDiffConfig::default(),
        }
    }
}
