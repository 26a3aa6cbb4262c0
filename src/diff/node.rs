//! A borrowed JSON tree for comparison. serde_json does the parsing; this
//! type only keeps what comparing needs, borrowing strings from the body and
//! holding objects as key-sorted vectors: a 10 KB document costs a handful of
//! allocations instead of one per key and value, which is most of the time a
//! comparison takes.

use std::borrow::Cow;
use std::fmt::{self, Write};

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

#[derive(Clone, Debug, PartialEq)]
pub enum Number {
    Int(i64),
    Uint(u64),
    Float(f64),
}

impl Number {
    pub fn as_f64(&self) -> f64 {
        match *self {
            Number::Int(i) => i as f64,
            Number::Uint(u) => u as f64,
            Number::Float(f) => f,
        }
    }

    /// Same number, whatever its spelling (`1` and `1.0` are equal), or
    /// within `tolerance`.
    pub fn equals(&self, other: &Number, tolerance: f64) -> bool {
        match (self, other) {
            (Number::Int(a), Number::Int(b)) => a == b,
            (Number::Uint(a), Number::Uint(b)) => a == b,
            _ => {
                let (x, y) = (self.as_f64(), other.as_f64());
                x == y || (tolerance > 0.0 && (x - y).abs() <= tolerance)
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Node<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    Array(Vec<Node<'a>>),
    /// Sorted by key; a repeated key keeps its last value (as serde_json does).
    Object(Vec<(Cow<'a, str>, Node<'a>)>),
}

impl Node<'_> {
    pub fn type_name(&self) -> &'static str {
        match self {
            Node::Null => "null",
            Node::Bool(_) => "boolean",
            Node::Number(_) => "number",
            Node::String(_) => "string",
            Node::Array(_) => "array",
            Node::Object(_) => "object",
        }
    }

    /// Compact JSON; objects come out key-sorted, so equal values print alike.
    pub fn compact(&self) -> String {
        let mut s = String::new();
        self.write(&mut s);
        s
    }

    fn write(&self, out: &mut String) {
        match self {
            Node::Null => out.push_str("null"),
            Node::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Node::Number(Number::Int(i)) => {
                let _ = write!(out, "{i}");
            }
            Node::Number(Number::Uint(u)) => {
                let _ = write!(out, "{u}");
            }
            Node::Number(Number::Float(f)) => {
                out.push_str(&serde_json::Number::from_f64(*f).map_or_else(|| "null".into(), |n| n.to_string()));
            }
            Node::String(s) => write_str(out, s),
            Node::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Node::Object(fields) => {
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_str(out, k);
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
        }
    }
}

fn write_str(out: &mut String, s: &str) {
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

/// Parses JSON text into a borrowed tree.
pub fn parse(text: &[u8]) -> Result<Node<'_>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(text);
    let node = Node::deserialize(&mut de)?;
    de.end()?;
    Ok(node)
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }
    fn visit_none<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node<'de>, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node<'de>, E> {
        Ok(Node::Number(Number::Int(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node<'de>, E> {
        Ok(Node::Number(match i64::try_from(v) {
            Ok(i) => Number::Int(i),
            Err(_) => Number::Uint(v),
        }))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node<'de>, E> {
        Ok(Node::Number(Number::Float(v)))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Node<'de>, E> {
        Ok(Node::String(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node<'de>, E> {
        Ok(Node::String(Cow::Owned(v.to_string())))
    }
    fn visit_string<E>(self, v: String) -> Result<Node<'de>, E> {
        Ok(Node::String(Cow::Owned(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node<'de>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(4));
        while let Some(item) = seq.next_element::<Node<'de>>()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node<'de>, A::Error> {
        let mut fields: Vec<(Cow<'de, str>, Node<'de>)> = Vec::with_capacity(map.size_hint().unwrap_or(8));
        while let Some(key) = map.next_key::<Key<'de>>()? {
            fields.push((key.0, map.next_value::<Node<'de>>()?));
        }
        Ok(Node::Object(sorted_fields(fields)))
    }
}

impl<'de> Deserialize<'de> for Node<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

/// Sorts object members by key; of repeated keys the last wins (as in
/// serde_json), so objects compare by merging two sorted lists.
pub(crate) fn sorted_fields<'a, V>(mut fields: Vec<(Cow<'a, str>, V)>) -> Vec<(Cow<'a, str>, V)> {
    // Stable, so of repeated keys the last stays last; then keep it.
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    let mut deduped: Vec<(Cow<'a, str>, V)> = Vec::with_capacity(fields.len());
    for f in fields {
        match deduped.last_mut() {
            Some(last) if last.0 == f.0 => *last = f,
            _ => deduped.push(f),
        }
    }
    deduped
}

/// An object key, borrowed when it has no escapes.
pub(crate) struct Key<'a>(pub(crate) Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct K;
        impl<'de> Visitor<'de> for K {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(K)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_canonically() {
        let n = parse(br#"{"b": [1, -2, 3.5, true, null], "a": "x\"y", "a": "last"}"#).unwrap();
        assert_eq!(n.compact(), r#"{"a":"last","b":[1,-2,3.5,true,null]}"#);
    }

    #[test]
    fn numbers_compare_by_value() {
        let one = Number::Int(1);
        assert!(one.equals(&Number::Float(1.0), 0.0));
        assert!(!one.equals(&Number::Float(1.5), 0.0));
        assert!(one.equals(&Number::Float(1.05), 0.1));
        assert!(Number::Uint(u64::MAX).equals(&Number::Uint(u64::MAX), 0.0));
    }

    #[test]
    fn rejects_trailing_garbage() {
        assert!(parse(b"{} x").is_err());
        assert!(parse(b"").is_err());
    }
}
