//! Maps a config path such as `routes[1].rollout.percent` to its line in the
//! YAML text, so that validation errors found after parsing still point at a
//! line the operator can jump to.
//!
//! serde_yaml drops positions once a value is typed; yaml-rust2's event parser
//! keeps a marker for every node, which is all this needs.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Line (1-based) of every key and sequence item in a YAML document.
#[derive(Debug, Default)]
pub struct LineIndex {
    lines: HashMap<String, usize>,
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, index: usize },
}

struct Builder {
    stack: Vec<Frame>,
    lines: HashMap<String, usize>,
}

impl Builder {
    /// Path of the node that the next value event starts, and records its line.
    fn enter_value(&mut self, mark: Marker) -> Option<String> {
        let path = match self.stack.last_mut() {
            None => return Some(String::new()),
            Some(Frame::Map { key: None, .. }) => return None,
            Some(Frame::Map { path, key }) => {
                let key = key.take().unwrap_or_default();
                join_key(path, &key)
            }
            Some(Frame::Seq { path, index }) => {
                let p = format!("{path}[{index}]");
                *index += 1;
                self.lines.entry(p.clone()).or_insert(mark.line());
                p
            }
        };
        Some(path)
    }
}

fn join_key(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(value, ..) => {
                if let Some(Frame::Map { path, key: key @ None }) = self.stack.last_mut() {
                    let full = join_key(path, &value);
                    self.lines.entry(full).or_insert(mark.line());
                    *key = Some(value);
                } else {
                    self.enter_value(mark);
                }
            }
            Event::Alias(_) => {
                self.enter_value(mark);
            }
            Event::MappingStart(..) => {
                let path = self.enter_value(mark).unwrap_or_default();
                self.stack.push(Frame::Map { path, key: None });
            }
            Event::SequenceStart(..) => {
                let path = self.enter_value(mark).unwrap_or_default();
                self.stack.push(Frame::Seq { path, index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

impl LineIndex {
    /// Indexes `text`; a document that does not parse yields an empty index
    /// (serde_yaml reports the syntax error with its own position).
    pub fn new(text: &str) -> Self {
        let mut builder = Builder {
            stack: Vec::new(),
            lines: HashMap::new(),
        };
        let mut parser = Parser::new_from_str(text);
        if parser.load(&mut builder, false).is_err() {
            return Self::default();
        }
        Self { lines: builder.lines }
    }

    /// The line of `path`, or of its nearest ancestor that is in the file
    /// (a missing key is reported where its parent is).
    pub fn line_of(&self, path: &str) -> Option<usize> {
        let mut p = path;
        loop {
            if let Some(line) = self.lines.get(p) {
                return Some(*line);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "listen: \"127.0.0.1:8080\"\nbackends:\n  old: { url: \"http://a\" }\n  new:\n    url: \"http://b\"\nroutes:\n  - name: one\n    match: { path_prefix: /a }\n  - name: two\n    rollout:\n      percent: 300\n";

    #[test]
    fn finds_keys_nested_in_maps_and_sequences() {
        let idx = LineIndex::new(DOC);
        assert_eq!(idx.line_of("listen"), Some(1));
        assert_eq!(idx.line_of("backends.old.url"), Some(3));
        assert_eq!(idx.line_of("backends.new.url"), Some(5));
        assert_eq!(idx.line_of("routes[0].match.path_prefix"), Some(8));
        assert_eq!(idx.line_of("routes[1]"), Some(9));
        assert_eq!(idx.line_of("routes[1].rollout.percent"), Some(11));
    }

    #[test]
    fn missing_key_falls_back_to_its_parent() {
        let idx = LineIndex::new(DOC);
        assert_eq!(idx.line_of("routes[1].rollout.sticky"), Some(10));
        assert_eq!(idx.line_of("nowhere"), None);
    }
}
