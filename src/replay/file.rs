//! A file given to `switchyard replay --file`: a capture (JSON Lines of
//! [`Recorded`] requests) or a HAR export, whichever it is.

use std::path::Path;

use super::recorded::{Recorded, VERSION};

/// What a file given to `replay --file` turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Capture,
    Har,
}

/// Reads a capture file (JSONL) or a HAR 1.2 file, whichever it is. Every
/// line or entry that cannot be read is an error naming it: a replay of
/// part of a file would report on traffic nobody chose.
pub fn read_file(path: &Path) -> Result<(Vec<Recorded>, FileKind), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let first = text.trim_start();
    // A HAR file is one JSON object with a "log"; a capture is one object a line.
    if first.starts_with('{') && serde_json::from_str::<serde_json::Value>(&text).is_ok_and(|v| v.get("log").is_some())
    {
        return super::har::parse(&text)
            .map(|r| (r, FileKind::Har))
            .map_err(|e| format!("{}: {e}", path.display()));
    }
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Recorded>(line) {
            Ok(r) if r.v > VERSION => errors.push(format!(
                "line {}: capture format version {} is newer than this switchyard reads ({VERSION}); upgrade switchyard",
                i + 1,
                r.v
            )),
            Ok(r) => out.push(r),
            Err(e) => errors.push(format!("line {}: {e}", i + 1)),
        }
    }
    if !errors.is_empty() {
        let shown: Vec<String> = errors.iter().take(5).cloned().collect();
        return Err(format!(
            "{}: {} line(s) are not capture records (neither is the file a HAR export):\n  {}{}",
            path.display(),
            errors.len(),
            shown.join("\n  "),
            if errors.len() > 5 { "\n  …" } else { "" }
        ));
    }
    if out.is_empty() {
        return Err(format!("{}: no requests in the file", path.display()));
    }
    Ok((out, FileKind::Capture))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.jsonl");
        std::fs::write(&p, "{\"method\":\"GET\",\"target\":\"/a\"}\n{\"method\":1}\n").unwrap();
        let e = read_file(&p).unwrap_err();
        assert!(e.contains("line 2"), "{e}");
    }
}
