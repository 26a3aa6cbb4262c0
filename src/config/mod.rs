//! Configuration: the YAML schema, its defaults, and validation with the YAML
//! path and line of every problem.
//!
//! Loading is two passes. serde (through `serde_path_to_error`) turns the text
//! into typed structs and stops at the first shape error (an unknown key, a
//! string where a number belongs), which it reports with path and line. Then
//! [`validate`] collects *every* semantic problem at once, and [`locate`]
//! finds each one's line, so `switchyard check` shows them all in one go.

pub mod cidr;
pub mod depth;
pub mod duration;
pub mod locate;
pub mod schema;
pub mod sticky;
pub mod validate;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::Path;

pub use duration::HumanDuration;
pub use schema::*;
pub use sticky::StickyKey;

/// One problem in a config file, with enough to find it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (or `<inline>`).
    pub source: String,
    pub line: Option<usize>,
    /// YAML path, e.g. `routes[0].rollout.percent`; empty for the whole file.
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.source)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if self.path.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in one config file.
#[derive(Clone, Debug, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let source = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                source: source.clone(),
                line: None,
                path: String::new(),
                message: format!("cannot read the config file: {e}"),
            }])
        })?;
        Self::from_yaml(&text, &source)
    }

    /// Parses and validates config text; `source` names it in errors.
    pub fn from_yaml(text: &str, source: &str) -> Result<Config, ConfigErrors> {
        let config = parse(text, source)?;
        let findings = validate::validate(&config);
        if findings.is_empty() {
            return Ok(config);
        }
        let index = locate::LineIndex::new(text);
        Err(ConfigErrors(
            findings
                .into_iter()
                .map(|f| ConfigError {
                    source: source.to_string(),
                    line: index.line_of(&f.path),
                    path: f.path,
                    message: f.message,
                })
                .collect(),
        ))
    }

    /// The admin bearer token, from `admin.token` or `admin.token_file`;
    /// `None` when neither is set, or the file cannot be read (the CLI's
    /// use: a default, never a decision).
    pub fn admin_token(&self) -> Option<String> {
        self.resolve_admin_token().ok().flatten()
    }

    /// The admin token as the gateway must know it: a token file that is
    /// configured but unreadable or too short is an error, never "no token"
    /// (that would open the API).
    pub fn resolve_admin_token(&self) -> Result<Option<String>, String> {
        if let Some(t) = &self.admin.token {
            return Ok(Some(t.trim().to_string()));
        }
        let Some(path) = self.admin.token_file.as_ref() else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("admin.token_file: cannot read {}: {e}", path.display()))?;
        let token = text.trim();
        if token.len() < 8 {
            return Err(format!(
                "admin.token_file: {} holds a token shorter than 8 characters",
                path.display()
            ));
        }
        Ok(Some(token.to_string()))
    }
}

fn parse(text: &str, source: &str) -> Result<Config, ConfigErrors> {
    if let Some(line) = depth::too_deep(text) {
        return Err(ConfigErrors(vec![ConfigError {
            source: source.to_string(),
            line: Some(line),
            path: String::new(),
            message: format!(
                "brackets nested deeper than {} levels; no config needs that many (is this the right file?)",
                depth::MAX_NESTING
            ),
        }]));
    }
    let de = serde_yaml::Deserializer::from_str(text);
    let first = match serde_path_to_error::deserialize::<_, Config>(de) {
        Ok(config) => return Ok(config),
        Err(err) => err,
    };
    let lines = locate::LineIndex::new(text);
    let mut errors = vec![describe(first, source, Some(&lines))];
    // serde stops at the first error. An unknown key (a typo) is the
    // common one and says nothing about the rest: drop it and read on, so
    // every misspelt key is reported at once.
    if errors[0].message.starts_with("unknown field") {
        if let Ok(mut value) = serde_yaml::from_str::<serde_yaml::Value>(text) {
            for _ in 0..64 {
                let Some(last) = errors.last().filter(|e| e.message.starts_with("unknown field")) else {
                    break;
                };
                if !remove_at(&mut value, &last.path) {
                    break;
                }
                match serde_path_to_error::deserialize::<_, Config>(value.clone()) {
                    Ok(_) => break,
                    Err(err) => errors.push(describe(err, source, Some(&lines))),
                }
            }
        }
    }
    Err(ConfigErrors(errors))
}

/// One parse error as shown: its path, its line, and serde's message cut
/// to what the operator needs.
fn describe(
    err: serde_path_to_error::Error<serde_yaml::Error>,
    source: &str,
    lines: Option<&locate::LineIndex>,
) -> ConfigError {
    let path = err.path().to_string();
    let inner = err.into_inner();
    let path = if path == "." { String::new() } else { path };
    let line = inner
        .location()
        .map(|l| l.line())
        .or_else(|| lines.and_then(|l| l.line_of(&path)));
    let mut message = inner.to_string();
    // serde_yaml appends " at line N column M" (the line is shown up
    // front) and prefixes its own, shorter path (ours is shown instead).
    if let Some(cut) = message.find(" at line ") {
        message.truncate(cut);
    }
    if let Some((prefix, rest)) = message.split_once(": ") {
        if !prefix.contains(' ') && !prefix.is_empty() {
            message = rest.to_string();
        }
    }
    if let Some(number) = out_of_range(&message) {
        message = format!("number out of range: {number} is too large for this key");
    }
    ConfigError {
        source: source.to_string(),
        line,
        path,
        message,
    }
}

/// Removes the key at `path` (`routes[1].rollout.precent`) from `value`.
fn remove_at(value: &mut serde_yaml::Value, path: &str) -> bool {
    let mut node = value;
    let mut segments: Vec<&str> = path.split('.').collect();
    let Some(last) = segments.pop() else {
        return false;
    };
    for segment in segments {
        let (key, indexes) = split_indexes(segment);
        let Some(next) = node.get_mut(key) else {
            return false;
        };
        node = next;
        for i in indexes {
            let Some(next) = node.get_mut(i) else {
                return false;
            };
            node = next;
        }
    }
    let (key, indexes) = split_indexes(last);
    if !indexes.is_empty() {
        return false;
    }
    node.as_mapping_mut().and_then(|m| m.remove(key)).is_some()
}

/// `routes[1][2]` → (`routes`, [1, 2]).
fn split_indexes(segment: &str) -> (&str, Vec<usize>) {
    let mut parts = segment.split('[');
    let key = parts.next().unwrap_or("");
    let indexes = parts
        .filter_map(|p| p.strip_suffix(']').and_then(|n| n.parse().ok()))
        .collect();
    (key, indexes)
}

/// A number too large for its type reaches serde as a string (YAML has no
/// infinite literals); say what it is rather than "invalid type: string".
fn out_of_range(message: &str) -> Option<&str> {
    // Integers past u64 arrive as u128 ("integer `N` as u128").
    if let Some(rest) = message.strip_prefix("invalid type: integer `") {
        let (value, tail) = rest.split_once('`')?;
        return tail.starts_with(" as u128, expected").then_some(value);
    }
    let rest = message.strip_prefix("invalid type: string \"")?;
    let (value, expected) = rest.split_once("\", expected ")?;
    let numeric = matches!(
        expected,
        "f64" | "f32" | "u64" | "u32" | "u16" | "usize" | "i64" | "a number"
    );
    let looks_like_number = value.parse::<f64>().is_ok_and(|v| v.is_infinite())
        || (!value.is_empty() && value.trim_start_matches(['-', '+']).bytes().all(|b| b.is_ascii_digit()));
    (numeric && looks_like_number).then_some(value)
}
