//! Logs: level, format and the access log.

use serde::{Deserialize, Serialize};

use super::defaults;

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
