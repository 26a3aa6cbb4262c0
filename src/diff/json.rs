//! Structural JSON comparison with typed differences at JSON Pointers.

use std::collections::HashMap;

use serde_json::{Map, Number, Value};

use super::pointer::PointerBuf;
use super::rules::DiffRules;
use super::{Difference, Kind};

/// Parses a body as JSON when its content type says so or it looks like it.
pub fn parse_if_json(content_type: &str, body: &[u8]) -> Option<Value> {
    let looks = body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{' || *b == b'[');
    if !(looks || content_type.contains("json")) || body.is_empty() {
        return None;
    }
    serde_json::from_slice(body).ok()
}

fn compact(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn numbers_equal(a: &Number, b: &Number, tolerance: f64) -> bool {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        if x == y {
            return true;
        }
    }
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y || (tolerance > 0.0 && (x - y).abs() <= tolerance),
        _ => a == b,
    }
}

struct Walk<'a> {
    rules: &'a DiffRules,
    out: &'a mut Vec<Difference>,
    ptr: PointerBuf,
}

impl Walk<'_> {
    fn location(&self) -> String {
        format!("body:{}", self.ptr.as_str())
    }

    fn push(&mut self, kind: Kind, left: Option<&Value>, right: Option<&Value>) {
        let d = Difference::new(self.location(), kind).values(left.map(compact), right.map(compact));
        self.out.push(d);
    }

    fn ignored_here(&self) -> bool {
        !self.rules.ignore_fields.is_empty() && self.rules.is_ignored_field(self.ptr.tokens())
    }

    /// Descends into a child; an ignored child yields one ignored difference.
    fn child(&mut self, left: Option<&Value>, right: Option<&Value>) {
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
                self.push(kind, left, right);
                if let Some(d) = self.out.last_mut() {
                    d.ignored = true;
                }
            }
            return;
        }
        match (left, right) {
            (Some(l), Some(r)) => self.value(l, r),
            (Some(l), None) => self.push(Kind::Missing, Some(l), None),
            (None, Some(r)) => self.push(Kind::Extra, None, Some(r)),
            (None, None) => {}
        }
    }

    fn equal(&self, l: &Value, r: &Value) -> bool {
        match (l, r) {
            (Value::Number(a), Value::Number(b)) => numbers_equal(a, b, self.rules.float_tolerance),
            _ => l == r,
        }
    }

    fn value(&mut self, l: &Value, r: &Value) {
        match (l, r) {
            (Value::Object(a), Value::Object(b)) => self.object(a, b),
            (Value::Array(a), Value::Array(b)) => self.array(a, b),
            (Value::Number(a), Value::Number(b)) => {
                if !numbers_equal(a, b, self.rules.float_tolerance) {
                    self.push(Kind::ValueChanged, Some(l), Some(r));
                }
            }
            _ if type_name(l) != type_name(r) => self.push(Kind::TypeChanged, Some(l), Some(r)),
            _ => {
                if l != r {
                    self.push(Kind::ValueChanged, Some(l), Some(r));
                }
            }
        }
    }

    fn object(&mut self, a: &Map<String, Value>, b: &Map<String, Value>) {
        // Both maps iterate in key order: merge them.
        let mut ia = a.iter().peekable();
        let mut ib = b.iter().peekable();
        loop {
            let (key, l, r) = match (ia.peek(), ib.peek()) {
                (None, None) => break,
                (Some((ka, va)), None) => {
                    let out = (ka.as_str(), Some(*va), None);
                    ia.next();
                    out
                }
                (None, Some((kb, vb))) => {
                    let out = (kb.as_str(), None, Some(*vb));
                    ib.next();
                    out
                }
                (Some((ka, va)), Some((kb, vb))) => match ka.cmp(kb) {
                    std::cmp::Ordering::Less => {
                        let out = (ka.as_str(), Some(*va), None);
                        ia.next();
                        out
                    }
                    std::cmp::Ordering::Greater => {
                        let out = (kb.as_str(), None, Some(*vb));
                        ib.next();
                        out
                    }
                    std::cmp::Ordering::Equal => {
                        let out = (ka.as_str(), Some(*va), Some(*vb));
                        ia.next();
                        ib.next();
                        out
                    }
                },
            };
            if let (Some(l), Some(r)) = (l, r) {
                if l == r {
                    continue;
                }
            }
            self.ptr.push_key(key);
            self.child(l, r);
            self.ptr.pop();
        }
    }

    fn array(&mut self, a: &[Value], b: &[Value]) {
        if a == b {
            return;
        }
        let unordered = !self.rules.unordered_arrays.is_empty() && self.rules.is_unordered(self.ptr.tokens());
        if unordered {
            if same_elements(a, b) {
                return;
            }
            let kind = if a.len() != b.len() {
                Kind::LengthChanged
            } else {
                Kind::ValueChanged
            };
            let mut d = Difference::new(self.location(), kind).values(
                Some(compact(&Value::Array(a.to_vec()))),
                Some(compact(&Value::Array(b.to_vec()))),
            );
            d.detail = Some(format!(
                "unordered array: {} of {} elements have no equal on the other side",
                unmatched(a, b),
                a.len().max(b.len())
            ));
            self.out.push(d);
            return;
        }
        if a.len() == b.len() && same_elements(a, b) {
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
            if l == r {
                continue;
            }
            self.ptr.push_index(i);
            self.child(Some(l), Some(r));
            self.ptr.pop();
        }
    }
}

fn counts(values: &[Value]) -> HashMap<String, isize> {
    let mut m = HashMap::with_capacity(values.len());
    for v in values {
        *m.entry(compact(v)).or_insert(0) += 1;
    }
    m
}

fn same_elements(a: &[Value], b: &[Value]) -> bool {
    a.len() == b.len() && counts(a) == counts(b)
}

fn unmatched(a: &[Value], b: &[Value]) -> usize {
    let mut m = counts(a);
    for v in b {
        *m.entry(compact(v)).or_insert(0) -= 1;
    }
    m.values().map(|n| n.unsigned_abs()).sum::<usize>().div_ceil(2).max(1)
}

/// Compares two documents; differences are appended to `out`.
pub fn compare(left: &Value, right: &Value, rules: &DiffRules, out: &mut Vec<Difference>) {
    let mut walk = Walk {
        rules,
        out,
        ptr: PointerBuf::default(),
    };
    if walk.ignored_here() {
        return;
    }
    walk.value(left, right);
}
