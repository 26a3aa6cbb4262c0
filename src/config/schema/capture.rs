//! `capture:` — record a sample of live requests for offline replay.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::defaults;

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureConfig {
    /// JSONL file the requests are appended to (rotated like the diff store).
    pub path: PathBuf,
    /// Share of live requests recorded, 0–100.
    #[serde(default = "defaults::capture_percent")]
    pub percent: f64,
    /// Methods recorded.
    #[serde(default = "defaults::capture_methods")]
    pub methods: Vec<String>,
    /// Request bodies up to this size are recorded; a longer one is read
    /// no further and the request is not recorded (counted as `skipped_body`).
    #[serde(default = "defaults::capture_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Size at which the file is rotated.
    #[serde(default = "defaults::store_max_bytes")]
    pub max_bytes: u64,
    /// Rotated files kept (`path.1` … `path.N`).
    #[serde(default = "defaults::store_max_files")]
    pub max_files: usize,
}
