//! The request modules a chain can hold: the rate limiter and the rules.

use serde::{Deserialize, Serialize};

use super::defaults;
use crate::config::{HumanDuration, StickyKey};

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
