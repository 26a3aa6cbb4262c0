//! Diff engine throughput: two ~10 KB JSON documents with 3 differences.
//! Peer in the same run: parsing both documents and testing them for
//! equality with serde_json (the least any structural comparison must do).
//!
//! cargo bench --bench diff

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::{json, Value};
use switchyard::diff::rules::DiffRules;
use switchyard::diff::{compare, Exchange};

fn document(variant: bool) -> Value {
    let items: Vec<Value> = (0..72)
        .map(|i| {
            json!({
                "id": i,
                "sku": format!("SKU-{i:05}"),
                "name": format!("product number {i}"),
                "price": if variant && i == 17 { 10.5 } else { 10.0 + i as f64 / 4.0 },
                "tags": ["home", "garden", if variant && i == 42 { "sale" } else { "new" }],
                "stock": { "warehouse": "AMS", "count": i * 3 }
            })
        })
        .collect();
    let mut doc = json!({
        "user": { "id": 7, "name": "ada", "plan": "pro" },
        "items": items,
        "meta": { "request_id": "abc", "generated_at": "2026-11-26T10:00:00Z" }
    });
    if variant {
        doc["user"]["plan"] = json!("free");
    }
    doc
}

fn exchange(doc: &Value) -> Exchange {
    let mut headers = http::HeaderMap::new();
    headers.insert("content-type", "application/json".parse().unwrap());
    Exchange {
        status: 200,
        headers,
        body: Bytes::from(doc.to_string()),
        ..Default::default()
    }
}

fn bench(c: &mut Criterion) {
    let old = exchange(&document(false));
    let new = exchange(&document(true));
    let rules = DiffRules::new(vec!["date".to_string()], &["/meta/request_id".into()], &[], 0.0).unwrap();
    let found = compare(&old, &new, &rules);
    assert_eq!(found.counted().count(), 3, "{found:?}");
    eprintln!("document size: {} bytes", old.body.len());

    let mut g = c.benchmark_group("diff");
    g.throughput(Throughput::Elements(1));
    g.bench_function("switchyard_compare_10kb_3_diffs", |b| {
        b.iter(|| black_box(compare(black_box(&old), black_box(&new), &rules)))
    });
    g.bench_function("peer_serde_json_parse_and_eq", |b| {
        b.iter(|| {
            let a: Value = serde_json::from_slice(black_box(&old.body)).unwrap();
            let z: Value = serde_json::from_slice(black_box(&new.body)).unwrap();
            black_box(a == z)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
