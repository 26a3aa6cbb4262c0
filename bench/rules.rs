//! Cost of the request-rules module per request with 1,000 rules, against
//! the same request through an empty chain (the peer, measured in the same
//! run). Target: under 10 µs added per request.
//!
//! cargo bench --bench rules

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use switchyard::config::{NamedPattern, RuleAction, RuleConfig, RuleMatch};
use switchyard::modules::rules::Rules;
use switchyard::modules::{BodyHint, Module, RequestCtx};

fn rules(n: usize) -> Vec<RuleConfig> {
    (0..n)
        .map(|i| {
            let m = match i % 5 {
                0 => RuleMatch {
                    path_prefix: Some(format!("/blocked/{i}/")),
                    ..Default::default()
                },
                1 => RuleMatch {
                    path_regex: Some(format!(r"^/api/v\d+/legacy{i}/.*\.php$")),
                    ..Default::default()
                },
                2 => RuleMatch {
                    header: Some(NamedPattern {
                        name: "user-agent".into(),
                        regex: format!("(?i)badbot{i}"),
                    }),
                    ..Default::default()
                },
                3 => RuleMatch {
                    query: Some(NamedPattern {
                        name: "q".into(),
                        regex: format!("(?i)union.+select{i}"),
                    }),
                    methods: Some(vec!["GET".into()]),
                    ..Default::default()
                },
                _ => RuleMatch {
                    path_exact: Some(format!("/exact/{i}")),
                    methods: Some(vec!["POST".into()]),
                    ..Default::default()
                },
            };
            RuleConfig {
                name: format!("rule-{i}"),
                action: RuleAction::Block,
                status: None,
                matcher: m,
            }
        })
        .collect()
}

fn request() -> http::request::Parts {
    http::Request::get("/api/v2/users/42/orders?q=lamps&page=2")
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36",
        )
        .header("accept", "application/json")
        .header("x-user-id", "user-42")
        .body(())
        .unwrap()
        .into_parts()
        .0
}

fn bench(c: &mut Criterion) {
    let thousand = Rules::new(&rules(1000)).unwrap();
    let none = Rules::new(&[]).unwrap();
    let mut g = c.benchmark_group("rules");
    for (name, module) in [("peer_no_rules", &none), ("switchyard_1000_rules_no_match", &thousand)] {
        g.bench_function(name, |b| {
            let mut parts = request();
            b.iter(|| {
                let mut ctx = RequestCtx {
                    client_ip: "127.0.0.1".parse().unwrap(),
                    route: "default",
                    path: "/api/v2/users/42/orders",
                    body: BodyHint::None,
                    tags: Vec::new(),
                    body_limit: None,
                };
                black_box(module.on_request(black_box(&mut parts), &mut ctx).decision)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
