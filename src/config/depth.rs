//! A linear pre-scan of config text for flow collections (`[`, `{`) nested
//! deeper than any config needs. The YAML parser's cost grows with the
//! square of that depth (200 KB of `[` took minutes), and `check`, `serve`
//! and every reload parse untrusted-length text, so it is refused first.

/// Deeper flow nesting than this is refused; the deepest real config key
/// (`routes[i].modules[j].rules[k].match.header`) needs fewer than 10.
pub const MAX_NESTING: usize = 64;

/// The 1-based line where nesting first goes past [`MAX_NESTING`].
pub fn too_deep(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut line = 1usize;
    // The last character that was not a space or tab on this line, which
    // says whether a bracket or quote here starts a token.
    let mut prev: Option<u8> = None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let at_token_start = depth > 0 || matches!(prev, None | Some(b':' | b'-' | b'?' | b',' | b'[' | b'{'));
        match b {
            b'\n' => {
                line += 1;
                prev = None;
            }
            b' ' | b'\t' | b'\r' => {}
            b'#' if i == 0 || matches!(bytes[i - 1], b' ' | b'\t' | b'\n') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'"' | b'\'' if at_token_start => {
                let quote = b;
                i += 1;
                while i < bytes.len() {
                    match bytes[i] {
                        b'\\' if quote == b'"' => i += 1,
                        b'\n' => line += 1,
                        c if c == quote => {
                            // '' inside single quotes is an escaped quote.
                            if quote == b'\'' && bytes.get(i + 1) == Some(&b'\'') {
                                i += 1;
                            } else {
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
                prev = Some(quote);
            }
            b'[' | b'{' if at_token_start => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Some(line);
                }
                prev = Some(b);
            }
            b']' | b'}' if depth > 0 => {
                depth -= 1;
                prev = Some(b);
            }
            other => prev = Some(other),
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_configs_pass() {
        let yaml = "backends: { old: { url: 'http://a' }, new: { url: \"http://b\" } }\n# a [comment\nrules:\n  - { name: x, match: { path_regex: '^/a[0-9' } }\n  - path_regex: ^/b[unbalanced\n    note: it's [fine]\n";
        assert_eq!(too_deep(yaml), None);
    }

    #[test]
    fn deep_flow_nesting_is_found_at_its_line_in_linear_time() {
        let deep = format!("a: 1\nroutes: {}", "[".repeat(200_000));
        let started = std::time::Instant::now();
        assert_eq!(too_deep(&deep), Some(2));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        let ok = format!("x: {}{}", "[".repeat(MAX_NESTING), "]".repeat(MAX_NESTING));
        assert_eq!(too_deep(&ok), None);
        let mixed = format!("x: {}", "[{".repeat(MAX_NESTING));
        assert_eq!(too_deep(&mixed), Some(1));
    }
}
