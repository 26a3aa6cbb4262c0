use std::io::Write;

use bytes::Bytes;
use http::HeaderMap;
use proptest::prelude::*;
use serde_json::{json, Value};

use super::rules::DiffRules;
use super::*;

fn ex(body: &str) -> Exchange {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", "application/json".parse().unwrap());
    Exchange {
        status: 200,
        headers,
        body: Bytes::from(body.to_string()),
        ..Default::default()
    }
}

fn rules() -> DiffRules {
    DiffRules::new(Vec::<String>::new(), &[], &[], 0.0).unwrap()
}

fn diff_json(a: Value, b: Value, rules: &DiffRules) -> Vec<(String, Kind, bool)> {
    compare(&ex(&a.to_string()), &ex(&b.to_string()), rules)
        .differences
        .into_iter()
        .map(|d| (d.location, d.kind, d.ignored))
        .collect()
}

fn plain(a: Value, b: Value) -> Vec<(String, Kind)> {
    diff_json(a, b, &rules()).into_iter().map(|(l, k, _)| (l, k)).collect()
}

#[test]
fn identical_documents_match() {
    let doc = json!({"a": [1, {"b": null}], "c": "x"});
    assert!(compare(&ex(&doc.to_string()), &ex(&doc.to_string()), &rules()).is_match());
}

#[test]
fn every_json_difference_type() {
    assert_eq!(
        plain(json!({"a": 1}), json!({"a": 2})),
        vec![("body:/a".into(), Kind::ValueChanged)]
    );
    assert_eq!(
        plain(json!({"a": 1}), json!({"a": "1"})),
        vec![("body:/a".into(), Kind::TypeChanged)]
    );
    assert_eq!(
        plain(json!({"a": 1, "b": 2}), json!({"a": 1})),
        vec![("body:/b".into(), Kind::Missing)]
    );
    assert_eq!(
        plain(json!({"a": 1}), json!({"a": 1, "z": 0})),
        vec![("body:/z".into(), Kind::Extra)]
    );
    assert_eq!(
        plain(json!({"l": [1, 2, 3]}), json!({"l": [1, 2]})),
        vec![("body:/l".into(), Kind::LengthChanged)]
    );
    assert_eq!(
        plain(json!({"l": [1, 2, 3]}), json!({"l": [3, 1, 2]})),
        vec![("body:/l".into(), Kind::OrderChanged)]
    );
    assert_eq!(
        plain(json!({"a": true}), json!({"a": null})),
        vec![("body:/a".into(), Kind::TypeChanged)]
    );
}

#[test]
fn renamed_field_is_one_missing_and_one_extra() {
    assert_eq!(
        plain(json!({"user_name": "ann"}), json!({"username": "ann"})),
        vec![
            ("body:/user_name".into(), Kind::Missing),
            ("body:/username".into(), Kind::Extra)
        ]
    );
}

#[test]
fn nested_arrays_point_at_the_leaf() {
    assert_eq!(
        plain(
            json!({"m": [[1, 2], [3, {"x": 4}]]}),
            json!({"m": [[1, 2], [3, {"x": 5}]]})
        ),
        vec![("body:/m/1/1/x".into(), Kind::ValueChanged)]
    );
}

#[test]
fn pointer_tokens_are_escaped() {
    assert_eq!(
        plain(json!({"a/b": {"m~n": 1}}), json!({"a/b": {"m~n": 2}})),
        vec![("body:/a~1b/m~0n".into(), Kind::ValueChanged)]
    );
}

#[test]
fn unordered_arrays_ignore_order_only() {
    let r = DiffRules::new(
        Vec::<String>::new(),
        &[],
        &["/tags".into(), "/items/*/sizes".into()],
        0.0,
    )
    .unwrap();
    assert!(diff_json(json!({"tags": ["a", "b", "c"]}), json!({"tags": ["c", "a", "b"]}), &r).is_empty());
    assert!(diff_json(
        json!({"items": [{"sizes": [1, 2]}]}),
        json!({"items": [{"sizes": [2, 1]}]}),
        &r
    )
    .is_empty());
    assert_eq!(
        diff_json(json!({"tags": ["a", "b"]}), json!({"tags": ["a", "x"]}), &r),
        vec![("body:/tags".into(), Kind::ValueChanged, false)]
    );
    assert_eq!(
        diff_json(json!({"tags": ["a", "b"]}), json!({"tags": ["b"]}), &r),
        vec![("body:/tags".into(), Kind::LengthChanged, false)]
    );
}

#[test]
fn ignore_rules_with_globs_count_as_ignored() {
    let r = DiffRules::new(
        Vec::<String>::new(),
        &["/meta/request_id".into(), "/items/*/ts".into(), "/**/trace".into()],
        &[],
        0.0,
    )
    .unwrap();
    let got = diff_json(
        json!({"meta": {"request_id": "a", "v": 1}, "items": [{"ts": 1}], "deep": {"x": {"trace": "t1"}}}),
        json!({"meta": {"request_id": "b", "v": 1}, "items": [{"ts": 2}], "deep": {"x": {"trace": "t2"}}}),
        &r,
    );
    assert_eq!(
        got,
        vec![
            ("body:/deep/x/trace".into(), Kind::ValueChanged, true),
            ("body:/items/0/ts".into(), Kind::ValueChanged, true),
            ("body:/meta/request_id".into(), Kind::ValueChanged, true),
        ]
    );
    let c = compare(
        &ex(r#"{"meta":{"request_id":"a"}}"#),
        &ex(r#"{"meta":{"request_id":"b"}}"#),
        &r,
    );
    assert!(c.is_ignored_only());
    assert_eq!(c.counted().count(), 0);
}

#[test]
fn float_tolerance() {
    let r = DiffRules::new(Vec::<String>::new(), &[], &[], 0.01).unwrap();
    assert!(diff_json(json!({"p": 1.000}), json!({"p": 1.005}), &r).is_empty());
    assert_eq!(diff_json(json!({"p": 1.0}), json!({"p": 1.02}), &r).len(), 1);
    // Without tolerance, 1 and 1.0 are still the same number.
    assert!(plain(json!({"p": 1}), json!({"p": 1.0})).is_empty());
    assert_eq!(plain(json!({"p": 1.0}), json!({"p": 1.0000001})).len(), 1);
}

#[test]
fn a_header_sent_as_two_lines_equals_it_joined_on_one() {
    let mut a = ex("{}");
    let mut b = ex("{}");
    a.headers.append("vary", "accept".parse().unwrap());
    a.headers.append("vary", "origin".parse().unwrap());
    b.headers.insert("vary", "accept, origin".parse().unwrap());
    a.headers.insert("etag", "\"1\"".parse().unwrap());
    b.headers.insert("etag", "\"1\"".parse().unwrap());
    assert!(differing(&a, &b).is_empty());
    b.headers.insert("vary", "accept".parse().unwrap());
    assert_eq!(differing(&a, &b), ["header:vary"]);
}

/// Where two exchanges differ, under rules that ignore nothing.
fn differing(a: &Exchange, b: &Exchange) -> Vec<String> {
    let r = DiffRules::new(Vec::<String>::new(), &[], &[], 0.0).unwrap();
    compare(a, b, &r).differences.into_iter().map(|d| d.location).collect()
}

#[test]
fn headers_sent_alike_in_another_order_are_alike_and_one_changed_value_is_found() {
    let mut a = ex("{}");
    let mut b = ex("{}");
    for (name, value) in [("etag", "\"1\""), ("server", "origin"), ("cache-control", "no-store")] {
        a.headers.append(name, value.parse().unwrap());
    }
    for (name, value) in [("cache-control", "no-store"), ("etag", "\"1\""), ("server", "origin")] {
        b.headers.append(name, value.parse().unwrap());
    }
    assert!(differing(&a, &b).is_empty(), "order is not a difference");
    // Same order, same count, one value changed: the fast path must not hide it.
    let mut c = a.clone();
    c.headers.insert("server", "other".parse().unwrap());
    assert_eq!(differing(&a, &c), ["header:server"]);
}

#[test]
fn status_and_headers() {
    let mut a = ex("{}");
    let mut b = ex("{}");
    b.status = 404;
    a.headers.insert("x-cache", "HIT".parse().unwrap());
    b.headers.insert("x-cache", "MISS".parse().unwrap());
    a.headers.insert("x-old", "1".parse().unwrap());
    b.headers.insert("x-new", "1".parse().unwrap());
    a.headers.insert("date", "Mon".parse().unwrap());
    b.headers.insert("date", "Tue".parse().unwrap());
    let r = DiffRules::new(vec!["date".to_string()], &[], &[], 0.0).unwrap();
    let got: Vec<(String, Kind, bool)> = compare(&a, &b, &r)
        .differences
        .into_iter()
        .map(|d| (d.location, d.kind, d.ignored))
        .collect();
    assert_eq!(
        got,
        vec![
            ("status".into(), Kind::ValueChanged, false),
            ("header:date".into(), Kind::ValueChanged, true),
            ("header:x-cache".into(), Kind::ValueChanged, false),
            ("header:x-new".into(), Kind::Extra, false),
            ("header:x-old".into(), Kind::Missing, false),
        ]
    );
}

#[test]
fn text_bodies_get_a_unified_diff_and_ratio() {
    let mut a = ex("");
    let mut b = ex("");
    a.headers.insert("content-type", "text/plain".parse().unwrap());
    b.headers.insert("content-type", "text/plain".parse().unwrap());
    a.body = Bytes::from("one\ntwo\nthree\n");
    b.body = Bytes::from("one\nTWO\nthree\n");
    let c = compare(&a, &b, &rules());
    assert_eq!(c.differences.len(), 1);
    let d = &c.differences[0];
    assert_eq!((d.location.as_str(), d.kind), ("body", Kind::TextChanged));
    let detail = d.detail.as_deref().unwrap();
    assert!(detail.starts_with("similarity 0.667"), "{detail}");
    assert!(detail.contains("-two") && detail.contains("+TWO"), "{detail}");
}

#[test]
fn binary_bodies_compare_by_length_and_hash() {
    let mut a = ex("");
    let mut b = ex("");
    a.headers.insert("content-type", "image/png".parse().unwrap());
    b.headers.insert("content-type", "image/png".parse().unwrap());
    a.body = Bytes::from_static(&[0xff, 0xfe, 0x00]);
    b.body = Bytes::from_static(&[0xff, 0xfe, 0x01, 0x02]);
    let c = compare(&a, &b, &rules());
    let d = &c.differences[0];
    assert_eq!(d.kind, Kind::BinaryChanged);
    assert_eq!(d.left.as_deref(), Some("3 bytes"));
    assert_eq!(d.right.as_deref(), Some("4 bytes"));
    assert!(d.detail.as_deref().unwrap().starts_with("xxh3 "));
}

#[test]
fn json_versus_html_is_a_type_change_of_the_body() {
    let a = ex(r#"{"ok":true}"#);
    let mut b = ex("<html>oops</html>");
    b.headers.insert("content-type", "text/html".parse().unwrap());
    let c = compare(&a, &b, &rules());
    let body: Vec<_> = c.differences.iter().filter(|d| d.location == "body").collect();
    assert_eq!(body[0].kind, Kind::TypeChanged);
}

#[test]
fn gzip_and_identity_bodies_match() {
    let doc = r#"{"a":[1,2,3],"b":"x"}"#;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(doc.as_bytes()).unwrap();
    let mut b = ex("");
    b.body = Bytes::from(gz.finish().unwrap());
    b.headers.insert("content-encoding", "gzip".parse().unwrap());
    let c = compare(
        &ex(doc),
        &b,
        &DiffRules::new(vec!["content-encoding".to_string()], &[], &[], 0.0).unwrap(),
    );
    assert!(c.is_ignored_only(), "{c:?}");
}

#[test]
fn truncated_bodies_are_compared_on_length_and_prefix() {
    // Both cut at the same kept size, equal so far: nothing can be said.
    let mut a = ex(r#"{"items":[1,2,"#);
    let mut b = ex(r#"{"items":[1,2,"#);
    a.truncated = true;
    b.truncated = true;
    let c = compare(&a, &b, &rules());
    assert!(c.is_ignored_only(), "{c:?}");
    assert_eq!(c.differences[0].kind, Kind::Truncated);
    // Both cut, but they differ within what was kept: a real difference.
    let mut b2 = ex(r#"{"items":[1,3,"#);
    b2.truncated = true;
    let c = compare(&a, &b2, &rules());
    assert!(!c.is_ignored_only());
    assert_eq!(c.differences[0].kind, Kind::BinaryChanged);
    assert!(
        c.differences[0].detail.as_ref().unwrap().contains("differ at byte 12"),
        "{c:?}"
    );
    // Only one cut: the whole one is shorter than the kept size, so the
    // lengths differ.
    let whole = ex(r#"{"a":1}"#);
    let c = compare(&whole, &a, &rules());
    assert!(!c.is_ignored_only());
    assert_eq!(c.differences[0].kind, Kind::LengthChanged);
    assert_eq!(c.differences[0].right.as_deref(), Some("more than 14 bytes"));
}

#[test]
fn fields_generalise_array_indices() {
    let d = Difference::new("body:/orders/12/lines/3/price", Kind::ValueChanged);
    assert_eq!(d.field(), "body:/orders/*/lines/*/price");
    assert_eq!(Difference::new("header:x", Kind::Missing).field(), "header:x");
}

// --- properties -----------------------------------------------------------

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(|n| json!(n)),
        "[a-z~/]{0,6}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map("[a-z~/]{1,5}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every pointer to a leaf, with the leaf.
fn leaves(v: &Value, ptr: &mut pointer::PointerBuf, out: &mut Vec<String>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                ptr.push_key(k);
                leaves(child, ptr, out);
                ptr.pop();
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for (i, child) in a.iter().enumerate() {
                ptr.push_index(i);
                leaves(child, ptr, out);
                ptr.pop();
            }
        }
        _ => out.push(ptr.as_str().to_string()),
    }
}

fn pointer_mut<'a>(v: &'a mut Value, ptr: &str) -> &'a mut Value {
    let mut cur = v;
    for tok in pointer::split(ptr).unwrap() {
        cur = match cur {
            Value::Object(m) => m.get_mut(&tok).unwrap(),
            Value::Array(a) => &mut a[tok.parse::<usize>().unwrap()],
            _ => unreachable!(),
        };
    }
    cur
}

proptest! {
    #[test]
    fn a_document_always_matches_itself(doc in arb_json()) {
        let c = compare(&ex(&doc.to_string()), &ex(&doc.to_string()), &rules());
        prop_assert!(c.is_match());
    }

    #[test]
    fn a_planted_change_is_found_at_its_pointer(doc in arb_json(), pick in any::<prop::sample::Index>()) {
        let mut paths = Vec::new();
        leaves(&doc, &mut pointer::PointerBuf::default(), &mut paths);
        let target = paths[pick.index(paths.len())].clone();
        let mut changed = doc.clone();
        // A value no generated leaf can equal.
        *pointer_mut(&mut changed, &target) = json!(0.5);
        let c = compare(&ex(&doc.to_string()), &ex(&changed.to_string()), &rules());
        let locs: Vec<&str> = c.differences.iter().map(|d| d.location.as_str()).collect();
        prop_assert_eq!(locs, vec![format!("body:{target}")]);
    }
}
