//! Text and binary bodies: a line diff with a similarity ratio, or length
//! and hash when the bytes are not text.

use similar::TextDiff;
use xxhash_rust::xxh3::xxh3_64;

use super::{Difference, Kind};

/// Lines of unified diff kept in a difference.
const MAX_DIFF_LINES: usize = 40;

pub fn preview(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(240)]).into_owned();
    text
}

pub fn compare(old: &str, new: &str) -> Difference {
    let diff = TextDiff::from_lines(old, new);
    let ratio = diff.ratio();
    let unified = diff.unified_diff().context_radius(2).header("old", "new").to_string();
    let mut lines: Vec<&str> = unified.lines().take(MAX_DIFF_LINES + 1).collect();
    let cut = lines.len() > MAX_DIFF_LINES;
    lines.truncate(MAX_DIFF_LINES);
    let mut snippet = lines.join("\n");
    if cut {
        snippet.push_str("\n… (diff shortened)");
    }
    let mut d =
        Difference::new("body", Kind::TextChanged).values(Some(preview(old.as_bytes())), Some(preview(new.as_bytes())));
    d.detail = Some(format!("similarity {:.3}\n{snippet}", ratio));
    d
}

pub fn binary(old: &[u8], new: &[u8]) -> Difference {
    let mut d = Difference::new("body", Kind::BinaryChanged).values(
        Some(format!("{} bytes", old.len())),
        Some(format!("{} bytes", new.len())),
    );
    d.detail = Some(format!("xxh3 {:016x} vs {:016x}", xxh3_64(old), xxh3_64(new)));
    d
}
