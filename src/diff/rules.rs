//! What the comparison should not count: ignored headers and fields, arrays
//! whose order is meaningless, and numeric tolerance. Resolved once per route
//! when the snapshot is built, then shared read-only.

use std::collections::HashSet;

use super::pointer;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `*`: exactly one segment.
    One,
    /// `**`: any number of segments, including none.
    Any,
}

/// A JSON Pointer with globs: `/meta/request_id`, `/items/*/ts`, `/**/trace`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PointerPattern {
    text: String,
    segments: Vec<Segment>,
}

impl PointerPattern {
    pub fn parse(text: &str) -> Result<Self, String> {
        let tokens = pointer::split(text)?;
        let segments = tokens
            .into_iter()
            .map(|t| match t.as_str() {
                "*" => Segment::One,
                "**" => Segment::Any,
                _ => Segment::Literal(t),
            })
            .collect();
        Ok(Self {
            text: text.to_string(),
            segments,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the pointer (given as escaped tokens) matches.
    pub fn matches<'a, I>(&self, tokens: I) -> bool
    where
        I: IntoIterator<Item = &'a str>,
    {
        let tokens: Vec<&str> = tokens.into_iter().collect();
        glob(&self.segments, &tokens)
    }

    /// Whether a pointer string matches.
    pub fn matches_pointer(&self, p: &str) -> bool {
        match p.strip_prefix('/') {
            Some(rest) => glob(&self.segments, &rest.split('/').collect::<Vec<_>>()),
            None => p.is_empty() && self.segments.is_empty(),
        }
    }
}

fn glob(pattern: &[Segment], tokens: &[&str]) -> bool {
    match pattern.split_first() {
        None => tokens.is_empty(),
        Some((Segment::Any, rest)) => (0..=tokens.len()).any(|skip| glob(rest, &tokens[skip..])),
        Some((seg, rest)) => match tokens.split_first() {
            None => false,
            Some((tok, more)) => {
                let ok = match seg {
                    Segment::One => true,
                    Segment::Literal(l) => literal_eq(l, tok),
                    Segment::Any => unreachable!(),
                };
                ok && glob(rest, more)
            }
        },
    }
}

/// Compares an unescaped literal with a token that may still be escaped.
fn literal_eq(literal: &str, token: &str) -> bool {
    if !token.contains('~') {
        return literal == token;
    }
    let mut escaped = String::with_capacity(token.len());
    pointer::escape_into(&mut escaped, literal);
    escaped == token
}

/// The rules one comparison runs under.
#[derive(Clone, Debug, Default)]
pub struct DiffRules {
    /// Lowercase header names not compared.
    pub ignore_headers: HashSet<String>,
    pub ignore_fields: Vec<PointerPattern>,
    pub unordered_arrays: Vec<PointerPattern>,
    pub float_tolerance: f64,
    /// gRPC services' descriptors, to compare messages field by field.
    pub grpc: Option<std::sync::Arc<super::grpc::GrpcSchema>>,
}

impl DiffRules {
    /// Builds rules from already validated patterns.
    pub fn new(
        ignore_headers: impl IntoIterator<Item = String>,
        ignore_fields: &[String],
        unordered_arrays: &[String],
        float_tolerance: f64,
    ) -> Result<Self, String> {
        let parse_all = |list: &[String]| {
            list.iter()
                .map(|p| PointerPattern::parse(p))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Self {
            ignore_headers: ignore_headers.into_iter().map(|h| h.to_ascii_lowercase()).collect(),
            ignore_fields: parse_all(ignore_fields)?,
            unordered_arrays: parse_all(unordered_arrays)?,
            float_tolerance,
            grpc: None,
        })
    }

    pub fn with_grpc(mut self, grpc: Option<std::sync::Arc<super::grpc::GrpcSchema>>) -> Self {
        self.grpc = grpc;
        self
    }

    pub fn is_ignored_header(&self, name: &str) -> bool {
        self.ignore_headers.contains(name)
    }

    pub fn is_ignored_field<'a>(&self, tokens: impl Iterator<Item = &'a str> + Clone) -> bool {
        self.ignore_fields.iter().any(|p| p.matches(tokens.clone()))
    }

    pub fn is_unordered<'a>(&self, tokens: impl Iterator<Item = &'a str> + Clone) -> bool {
        self.unordered_arrays.iter().any(|p| p.matches(tokens.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, pointer: &str) -> bool {
        PointerPattern::parse(pattern).unwrap().matches_pointer(pointer)
    }

    #[test]
    fn literal_patterns_match_exactly() {
        assert!(m("/meta/request_id", "/meta/request_id"));
        assert!(!m("/meta/request_id", "/meta/request_id/x"));
        assert!(!m("/meta/request_id", "/meta"));
        assert!(m("", ""));
    }

    #[test]
    fn star_matches_one_segment() {
        assert!(m("/items/*/ts", "/items/0/ts"));
        assert!(m("/items/*/ts", "/items/abc/ts"));
        assert!(!m("/items/*/ts", "/items/ts"));
        assert!(!m("/items/*/ts", "/items/0/1/ts"));
    }

    #[test]
    fn double_star_matches_any_depth() {
        assert!(m("/**/ts", "/ts"));
        assert!(m("/**/ts", "/a/b/c/ts"));
        assert!(!m("/**/ts", "/a/b/c/tsx"));
        assert!(m("/a/**", "/a"));
        assert!(m("/a/**", "/a/b/c"));
        assert!(m("/a/**/z", "/a/z"));
    }

    #[test]
    fn escaped_segments_compare_unescaped() {
        assert!(m("/a~1b/m~0n", "/a~1b/m~0n"));
        assert!(!m("/a~1b", "/a/b"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert!(PointerPattern::parse("meta/x").is_err());
        assert!(PointerPattern::parse("/a~9").is_err());
    }
}
