//! JSON Pointers (RFC 6901) as locations of differences, built segment by
//! segment while walking two documents.

use std::fmt::Write;

/// Escapes one reference token: `~` → `~0`, `/` → `~1`.
pub fn escape_into(out: &mut String, token: &str) {
    for c in token.chars() {
        match c {
            '~' => out.push_str("~0"),
            '/' => out.push_str("~1"),
            c => out.push(c),
        }
    }
}

/// Splits a pointer into unescaped tokens; `""` is the whole document.
pub fn split(pointer: &str) -> Result<Vec<String>, String> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let rest = pointer
        .strip_prefix('/')
        .ok_or_else(|| format!("JSON Pointer {pointer:?} must start with '/'"))?;
    rest.split('/')
        .map(|raw| unescape(raw).ok_or_else(|| format!("JSON Pointer {pointer:?} has a '~' not followed by 0 or 1")))
        .collect()
}

fn unescape(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '~' {
            match chars.next() {
                Some('0') => out.push('~'),
                Some('1') => out.push('/'),
                _ => return None,
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// A pointer under construction: push a token when descending, pop when done.
#[derive(Clone, Debug, Default)]
pub struct PointerBuf {
    text: String,
    marks: Vec<usize>,
}

impl PointerBuf {
    pub fn push_key(&mut self, key: &str) {
        self.marks.push(self.text.len());
        self.text.push('/');
        escape_into(&mut self.text, key);
    }

    pub fn push_index(&mut self, index: usize) {
        self.marks.push(self.text.len());
        let _ = write!(self.text, "/{index}");
    }

    pub fn pop(&mut self) {
        if let Some(m) = self.marks.pop() {
            self.text.truncate(m);
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Tokens of the current pointer, unescaped.
    pub fn tokens(&self) -> impl Iterator<Item = &str> + Clone + '_ {
        let ends = self
            .marks
            .iter()
            .skip(1)
            .copied()
            .chain(std::iter::once(self.text.len()));
        self.marks.iter().zip(ends).map(move |(s, e)| &self.text[s + 1..e])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_tilde_and_slash() {
        let mut p = PointerBuf::default();
        p.push_key("a/b");
        p.push_key("m~n");
        p.push_index(3);
        assert_eq!(p.as_str(), "/a~1b/m~0n/3");
        assert_eq!(split(p.as_str()).unwrap(), vec!["a/b", "m~n", "3"]);
        p.pop();
        p.pop();
        assert_eq!(p.as_str(), "/a~1b");
    }

    #[test]
    fn split_rejects_bad_pointers() {
        assert!(split("a/b").unwrap_err().contains("must start with '/'"));
        assert!(split("/a~2").unwrap_err().contains("'~' not followed"));
        assert_eq!(split("").unwrap(), Vec::<String>::new());
        assert_eq!(split("/").unwrap(), vec![String::new()]);
    }

    #[test]
    fn tokens_stay_escaped() {
        let mut p = PointerBuf::default();
        p.push_key("x/y");
        p.push_index(0);
        assert_eq!(p.tokens().collect::<Vec<_>>(), vec!["x~1y", "0"]);
    }
}
