//! Structural JSON comparison with typed differences at JSON Pointers.
//!
//! The comparison descends lazily: each level is split into its members as
//! raw, unparsed text, and a member whose text is byte-for-byte the same on
//! both sides is equal without being looked at further. Only the branches
//! that differ are parsed deeper, so a 10 KB document with three changes
//! costs a few scans and a few small allocations, not a full tree per side.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::node::{self, Key, Node, Number};
use super::pointer::PointerBuf;
use super::rules::DiffRules;
use super::{Difference, Kind};

/// A JSON body, validated and split one level down in a single scan.
pub struct Document<'a> {
    text: &'a str,
    top: Level<'a>,
}

/// Reads a body as JSON when its content type says so or it looks like it.
pub fn parse_if_json<'a>(content_type: &str, body: &'a [u8]) -> Option<Document<'a>> {
    let looks = body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{' || *b == b'[');
    if !(looks || content_type.contains("json")) || body.is_empty() {
        return None;
    }
    let text = std::str::from_utf8(body).ok()?;
    let top: Level = serde_json::from_str(text).ok()?;
    Some(Document { text: text.trim(), top })
}

/// One level of a document: its members still raw, or a scalar.
enum Level<'a> {
    /// Sorted by key; a repeated key keeps its last value.
    Object(Vec<(Cow<'a, str>, &'a RawValue)>),
    Array(Vec<&'a RawValue>),
    Scalar(Node<'a>),
}

impl Level<'_> {
    fn type_name(&self) -> &'static str {
        match self {
            Level::Object(_) => "object",
            Level::Array(_) => "array",
            Level::Scalar(n) => n.type_name(),
        }
    }
}

struct LevelVisitor;

impl<'de> Visitor<'de> for LevelVisitor {
    type Value = Level<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Level<'de>, E> {
        Ok(Level::Scalar(Node::Null))
    }
    fn visit_bool<E>(self, v: bool) -> Result<Level<'de>, E> {
        Ok(Level::Scalar(Node::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Level<'de>, E> {
        Ok(Level::Scalar(Node::Number(Number::Int(v))))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Level<'de>, E> {
        Ok(Level::Scalar(Node::Number(match i64::try_from(v) {
            Ok(i) => Number::Int(i),
            Err(_) => Number::Uint(v),
        })))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Level<'de>, E> {
        Ok(Level::Scalar(Node::Number(Number::Float(v))))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Level<'de>, E> {
        Ok(Level::Scalar(Node::String(Cow::Borrowed(v))))
    }
    fn visit_str<E>(self, v: &str) -> Result<Level<'de>, E> {
        Ok(Level::Scalar(Node::String(Cow::Owned(v.to_string()))))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Level<'de>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(8));
        while let Some(item) = seq.next_element::<&'de RawValue>()? {
            items.push(item);
        }
        Ok(Level::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Level<'de>, A::Error> {
        let mut fields: Vec<(Cow<'de, str>, &'de RawValue)> = Vec::with_capacity(map.size_hint().unwrap_or(8));
        while let Some(key) = map.next_key::<Key<'de>>()? {
            fields.push((key.0, map.next_value::<&'de RawValue>()?));
        }
        Ok(Level::Object(node::sorted_fields(fields)))
    }
}

impl<'de> Deserialize<'de> for Level<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LevelVisitor)
    }
}

/// Splits a raw value one level down. The text was validated when the
/// document was first read, so this cannot fail; a null stands in if it did.
fn level(raw: &RawValue) -> Level<'_> {
    serde_json::from_str(raw.get()).unwrap_or(Level::Scalar(Node::Null))
}

fn full(text: &str) -> Node<'_> {
    node::parse(text.as_bytes()).unwrap_or(Node::Null)
}

/// Canonical compact text (sorted keys, no spaces) of a raw value.
fn compact(text: &str) -> String {
    full(text).compact()
}

/// Semantic equality: numbers by value (and tolerance), objects by key.
fn node_equal(a: &Node, b: &Node, tolerance: f64) -> bool {
    match (a, b) {
        (Node::Number(x), Node::Number(y)) => x.equals(y, tolerance),
        (Node::Array(x), Node::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| node_equal(p, q, tolerance))
        }
        (Node::Object(x), Node::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, va), (kb, vb))| ka == kb && node_equal(va, vb, tolerance))
        }
        _ => a == b,
    }
}

struct Walk<'r> {
    rules: &'r DiffRules,
    out: &'r mut Vec<Difference>,
    ptr: PointerBuf,
}

impl Walk<'_> {
    fn location(&self) -> String {
        format!("body:{}", self.ptr.as_str())
    }

    fn push(&mut self, kind: Kind, left: Option<&str>, right: Option<&str>) {
        let d = Difference::new(self.location(), kind).values(left.map(compact), right.map(compact));
        self.out.push(d);
    }

    fn ignored_here(&self) -> bool {
        !self.rules.ignore_fields.is_empty() && self.rules.is_ignored_field(self.ptr.tokens())
    }

    fn equal(&self, l: &RawValue, r: &RawValue) -> bool {
        l.get() == r.get() || node_equal(&full(l.get()), &full(r.get()), self.rules.float_tolerance)
    }

    /// Descends into a member; an ignored member yields one ignored difference.
    fn child(&mut self, left: Option<&RawValue>, right: Option<&RawValue>) {
        if self.ignored_here() {
            let differs = match (left, right) {
                (Some(l), Some(r)) => !self.equal(l, r),
                _ => true,
            };
            if differs {
                let kind = match (left, right) {
                    (Some(_), None) => Kind::Missing,
                    (None, Some(_)) => Kind::Extra,
                    _ => Kind::ValueChanged,
                };
                self.push(kind, left.map(RawValue::get), right.map(RawValue::get));
                if let Some(d) = self.out.last_mut() {
                    d.ignored = true;
                }
            }
            return;
        }
        match (left, right) {
            (Some(l), Some(r)) => self.value(l, r),
            (Some(l), None) => self.push(Kind::Missing, Some(l.get()), None),
            (None, Some(r)) => self.push(Kind::Extra, None, Some(r.get())),
            (None, None) => {}
        }
    }

    fn value(&mut self, l: &RawValue, r: &RawValue) {
        if l.get() == r.get() {
            return;
        }
        self.levels(level(l), level(r), l.get(), r.get());
    }

    fn levels(&mut self, a: Level<'_>, b: Level<'_>, l: &str, r: &str) {
        match (a, b) {
            (Level::Object(a), Level::Object(b)) => self.object(&a, &b),
            (Level::Array(a), Level::Array(b)) => self.array(&a, &b),
            (Level::Scalar(Node::Number(a)), Level::Scalar(Node::Number(b)))
                if a.equals(&b, self.rules.float_tolerance) => {}
            (a, b) if a.type_name() != b.type_name() => self.push(Kind::TypeChanged, Some(l), Some(r)),
            (Level::Scalar(a), Level::Scalar(b)) if a == b => {}
            _ => self.push(Kind::ValueChanged, Some(l), Some(r)),
        }
    }

    fn object(&mut self, a: &[(Cow<str>, &RawValue)], b: &[(Cow<str>, &RawValue)]) {
        // Both sides are key-sorted: merge them.
        let (mut i, mut j) = (0, 0);
        while i < a.len() || j < b.len() {
            let order = match (a.get(i), b.get(j)) {
                (Some((ka, _)), Some((kb, _))) => ka.cmp(kb),
                (Some(_), None) => std::cmp::Ordering::Less,
                _ => std::cmp::Ordering::Greater,
            };
            let (key, l, r) = match order {
                std::cmp::Ordering::Less => {
                    i += 1;
                    (&a[i - 1].0, Some(a[i - 1].1), None)
                }
                std::cmp::Ordering::Greater => {
                    j += 1;
                    (&b[j - 1].0, None, Some(b[j - 1].1))
                }
                std::cmp::Ordering::Equal => {
                    i += 1;
                    j += 1;
                    if a[i - 1].1.get() == b[j - 1].1.get() {
                        continue;
                    }
                    (&a[i - 1].0, Some(a[i - 1].1), Some(b[j - 1].1))
                }
            };
            self.ptr.push_key(key);
            self.child(l, r);
            self.ptr.pop();
        }
    }

    fn array(&mut self, a: &[&RawValue], b: &[&RawValue]) {
        let unordered = !self.rules.unordered_arrays.is_empty() && self.rules.is_unordered(self.ptr.tokens());
        if unordered {
            if canonical_counts(a) == canonical_counts(b) {
                return;
            }
            let kind = if a.len() != b.len() {
                Kind::LengthChanged
            } else {
                Kind::ValueChanged
            };
            let list = |xs: &[&RawValue]| {
                format!(
                    "[{}]",
                    xs.iter().map(|x| compact(x.get())).collect::<Vec<_>>().join(",")
                )
            };
            let mut d = Difference::new(self.location(), kind).values(Some(list(a)), Some(list(b)));
            d.detail = Some(format!(
                "unordered array: {} of {} elements have no equal on the other side",
                unmatched(a, b),
                a.len().max(b.len())
            ));
            self.out.push(d);
            return;
        }
        if a.len() == b.len() && reordered(a, b) {
            let mut d = Difference::new(self.location(), Kind::OrderChanged);
            d.detail = Some("the same elements in a different order".into());
            self.out.push(d);
            return;
        }
        if a.len() != b.len() {
            let mut d = Difference::new(self.location(), Kind::LengthChanged)
                .values(Some(a.len().to_string()), Some(b.len().to_string()));
            d.detail = Some(format!("{} elements became {}", a.len(), b.len()));
            self.out.push(d);
        }
        for (i, (l, r)) in a.iter().zip(b.iter()).enumerate() {
            if l.get() == r.get() {
                continue;
            }
            self.ptr.push_index(i);
            self.child(Some(l), Some(r));
            self.ptr.pop();
        }
    }
}

/// Whether `b` is `a` reordered (same length). Only positions that differ
/// can be out of place, and they are usually few: those are matched by
/// text; many go through a count of canonical forms.
fn reordered(a: &[&RawValue], b: &[&RawValue]) -> bool {
    let differing: Vec<usize> = (0..a.len()).filter(|&k| a[k].get() != b[k].get()).collect();
    match differing.len() {
        0 => false,
        // One changed position cannot be a reordering.
        1 => false,
        n if n <= 32 => {
            let mut used = vec![false; n];
            differing.iter().all(|&i| {
                let hit = (0..n).find(|&j| !used[j] && canonical_eq(a[i], b[differing[j]]));
                if let Some(j) = hit {
                    used[j] = true;
                }
                hit.is_some()
            })
        }
        _ => {
            let left: Vec<&RawValue> = differing.iter().map(|&k| a[k]).collect();
            let right: Vec<&RawValue> = differing.iter().map(|&k| b[k]).collect();
            canonical_counts(&left) == canonical_counts(&right)
        }
    }
}

fn canonical_eq(a: &RawValue, b: &RawValue) -> bool {
    a.get() == b.get() || compact(a.get()) == compact(b.get())
}

fn canonical_counts(values: &[&RawValue]) -> HashMap<String, isize> {
    let mut m = HashMap::with_capacity(values.len());
    for v in values {
        *m.entry(compact(v.get())).or_insert(0) += 1;
    }
    m
}

fn unmatched(a: &[&RawValue], b: &[&RawValue]) -> usize {
    let mut m = canonical_counts(a);
    for v in b {
        *m.entry(compact(v.get())).or_insert(0) -= 1;
    }
    m.values().map(|n| n.unsigned_abs()).sum::<usize>().div_ceil(2).max(1)
}

/// Compares two documents; differences are appended to `out`.
pub fn compare(left: Document<'_>, right: Document<'_>, rules: &DiffRules, out: &mut Vec<Difference>) {
    let mut walk = Walk {
        rules,
        out,
        ptr: PointerBuf::default(),
    };
    if walk.ignored_here() || left.text == right.text {
        return;
    }
    walk.levels(left.top, right.top, left.text, right.text);
}
