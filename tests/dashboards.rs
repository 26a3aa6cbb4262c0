//! The shipped dashboard and alert rules only use metrics Switchyard exports.

use std::collections::BTreeSet;

fn exported() -> BTreeSet<String> {
    let m = switchyard::metrics::Metrics::new();
    m.enable_fleet();
    m.fleet.convergence.observe(0.01);
    // Touch every vector once so each family is gathered.
    m.live.requests.with_label_values(&["old", "default", "2xx"]).inc();
    m.live
        .request_duration
        .with_label_values(&["old", "default"])
        .observe(0.1);
    m.mirror
        .shadow_requests
        .with_label_values(&["new", "default", "completed"])
        .inc();
    m.mirror.comparisons.with_label_values(&["default", "match"]).inc();
    m.mirror
        .pair_duration
        .with_label_values(&["new", "default"])
        .observe(0.1);
    m.live.upstream_errors.with_label_values(&["new", "connect"]).inc();
    m.live
        .module_decisions
        .with_label_values(&["rules", "default", "pass"])
        .inc();
    m.rollout.guard_value.with_label_values(&["latency"]).set(1.0);
    m.rollout.guard_threshold.with_label_values(&["latency"]).set(1.0);
    m.rollout.guard_progress.with_label_values(&["latency"]).set(0.0);
    m.mirror.shadow_drops.with_label_values(&["queue"]).inc();
    m.upkeep.config_reloads.with_label_values(&["applied"]).inc();
    m.edge.certificate_expiry.with_label_values(&["shop.example"]).set(1.0);
    let mut names = BTreeSet::new();
    for f in m.registry.gather() {
        let n = f.get_name().to_string();
        if f.get_field_type() == prometheus::proto::MetricType::HISTOGRAM {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{n}{suffix}"));
            }
        }
        names.insert(n);
    }
    names
}

fn referenced(text: &str) -> BTreeSet<String> {
    let re = regex::Regex::new(r"switchyard_[a-z_]+").unwrap();
    re.find_iter(text).map(|m| m.as_str().to_string()).collect()
}

#[test]
fn the_dashboard_is_importable_and_uses_real_metrics() {
    let text = std::fs::read_to_string("dashboards/switchyard.json").unwrap();
    let d: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(d["schemaVersion"].as_u64().unwrap() >= 39);
    assert_eq!(d["uid"], "switchyard-migration");
    let vars = d["templating"]["list"].as_array().unwrap();
    assert!(vars
        .iter()
        .any(|v| v["type"] == "datasource" && v["query"] == "prometheus"));
    let titles: Vec<&str> = d["panels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    for want in [
        "Rollout percent",
        "Rollout phase",
        "Request rate, old vs new",
        "Error rate (5xx), old vs new",
        "Latency p50 / p99, old vs new",
        "Comparisons by result",
        "Shadow outcomes",
        "Rollbacks",
        "Guard: latency ratio vs its margin",
        "Guard: error and diff rates vs their margins",
        "Fleet: epoch per instance",
        "Fleet: store reachable",
        "Fleet: convergence of changes",
        "Fleet: guard leader",
    ] {
        assert!(titles.contains(&want), "missing panel {want}");
    }
    // Every panel can be narrowed to some instances, and no import input
    // is declared that no panel uses.
    assert!(vars.iter().any(|v| v["name"] == "instance"));
    assert!(
        d.get("__inputs").is_none(),
        "__inputs declares a data source no panel uses"
    );
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap();
            assert!(
                expr.contains("$instance") || expr.contains("convergence"),
                "panel {:?} ignores the instance variable: {expr}",
                p["title"]
            );
        }
    }
    // A guard panel holds one kind of reading: ratios and fractions apart.
    let guard_units: Vec<(&str, &str)> = d["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["title"].as_str().unwrap().starts_with("Guard:"))
        .map(|p| {
            (
                p["title"].as_str().unwrap(),
                p["fieldConfig"]["defaults"]["unit"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(guard_units.contains(&("Guard: error and diff rates vs their margins", "percentunit")));
    assert!(guard_units.contains(&("Guard: latency ratio vs its margin", "short")));
    assert!(d["annotations"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["name"] == "Rollbacks"));
    let exported = exported();
    for name in referenced(&text) {
        assert!(
            exported.contains(&name),
            "dashboard uses {name}, which Switchyard does not export"
        );
    }
}

#[test]
fn alert_rules_use_real_metrics() {
    let text = std::fs::read_to_string("dashboards/alerts.yaml").unwrap();
    let exported = exported();
    let rules: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let recorded: BTreeSet<String> = rules["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap().iter())
        .filter_map(|r| r["record"].as_str().map(String::from))
        .collect();
    for name in referenced(&text) {
        assert!(
            exported.contains(&name) || recorded.iter().any(|r| r.contains(&name)),
            "alerts use {name}"
        );
    }
}
