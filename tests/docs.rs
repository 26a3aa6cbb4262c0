//! The docs stay true: every config key is in the configuration reference,
//! every metric in the metrics reference, and the README's commands exist.

use std::collections::BTreeSet;

use switchyard::config::Config;

/// A config that sets every section, route and module, so serializing it
/// names every key the structs have.
const MAXIMAL: &str = r#"
backends:
  old: { url: "https://127.0.0.1:1", protocol: auto, tls: { server_name: "old.internal", insecure_skip_verify: true } }
  new: { url: "http://127.0.0.1:2" }
  old_twin: { url: "http://127.0.0.1:3" }
rollout: { step_every: "1m", steps: [1, { percent: 25, pause: true, step_every: "1m" }, 100], state_file: "s.json", store: { etcd: { endpoints: ["http://127.0.0.1:2379"], prefix: "/switchyard/docs" } }, webhooks: [{ name: qa, url: "http://127.0.0.1:1/gate", events: [pre_step] }], fallback: {} }
admin: { token: "0123456789" }
diff: { store: { path: "d.jsonl" }, grpc: {} }
capture: { path: "c.jsonl" }
modules:
  - rate_limit: { rate: 10, burst: 20 }
  - rules:
      - name: r
        status: 403
        match:
          methods: [GET]
          path_exact: /x
          path_prefix: /y
          path_regex: z
          header_present: x-a
          header: { name: x-b, regex: b }
          query: { name: q, regex: q }
          body_larger_than: 10
routes:
  - name: api
    match: { host: h, path_prefix: /api, methods: [GET] }
    rollout: { percent: 1, sticky: none }
    shadow: { percent: 1, methods: [GET], max_body_bytes: 1 }
    diff: { ignore_headers: [a], ignore_fields: [/a], unordered_arrays: [/b], float_tolerance: 0.1, endpoints: ["/api/{id}"] }
    modules: [ { rate_limit: { rate: 1 } } ]
"#;

fn walk(v: &serde_yaml::Value, path: String, out: &mut BTreeSet<String>) {
    match v {
        serde_yaml::Value::Mapping(m) => {
            for (k, child) in m {
                let key = k.as_str().unwrap();
                let p = if path.is_empty() {
                    key.to_string()
                } else {
                    format!("{path}.{key}")
                };
                out.insert(p.clone());
                walk(child, p, out);
            }
        }
        serde_yaml::Value::Sequence(items) => {
            for item in items {
                walk(item, format!("{path}[]"), out);
            }
        }
        // Modules serialize as tagged values: `!rate_limit {...}`.
        serde_yaml::Value::Tagged(t) => {
            let p = format!("{path}.{}", t.tag.to_string().trim_start_matches('!'));
            out.insert(p.clone());
            walk(&t.value, p, out);
        }
        _ => {}
    }
}

pub fn every_key() -> BTreeSet<String> {
    // The TLS listener's section needs a certificate that loads.
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["shop.example".to_string()]).unwrap();
    let (c, k) = (dir.path().join("c.pem"), dir.path().join("c.key"));
    std::fs::write(&c, cert.cert.pem()).unwrap();
    std::fs::write(&k, cert.signing_key.serialize_pem()).unwrap();
    let yaml = format!(
        "{MAXIMAL}tls:\n  listen: \"127.0.0.1:0\"\n  certificates: [{{ cert_file: \"{}\", key_file: \"{}\" }}]\n",
        c.display(),
        k.display()
    );
    let cfg = Config::from_yaml(&yaml, "maximal").unwrap();
    let v = serde_yaml::to_value(&cfg).unwrap();
    let mut keys = BTreeSet::new();
    walk(&v, String::new(), &mut keys);
    keys
}

#[test]
fn every_config_key_is_documented() {
    let doc = std::fs::read_to_string("docs/configuration.md").unwrap();
    // Route modules share the schema of top-level modules.
    let missing: Vec<String> = every_key()
        .into_iter()
        .map(|k| k.replacen("routes[].modules[].", "modules[].", 1))
        .filter(|k| !doc.contains(&format!("`{k}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "undocumented config keys (add them to docs/configuration.md):\n{}",
        missing.join("\n")
    );
}

#[test]
fn every_metric_is_documented() {
    let doc = std::fs::read_to_string("docs/metrics.md").unwrap();
    let m = switchyard::metrics::Metrics::new();
    m.enable_fleet();
    for f in m.registry.gather() {
        let name = f.get_name();
        if name.starts_with("switchyard_") {
            assert!(doc.contains(&format!("`{name}`")), "{name} is not in docs/metrics.md");
        }
    }
    // Vectors appear in a gather only once they have a series; check the rest by name.
    for name in [
        "switchyard_requests_total",
        "switchyard_request_duration_seconds",
        "switchyard_shadow_requests_total",
        "switchyard_comparisons_total",
        "switchyard_pair_duration_seconds",
        "switchyard_upstream_errors_total",
        "switchyard_module_decisions_total",
        "switchyard_guard_check_value",
        "switchyard_guard_check_threshold",
        "switchyard_config_reloads_total",
        "switchyard_fallbacks_total",
        "switchyard_webhook_deliveries_total",
    ] {
        assert!(doc.contains(&format!("`{name}`")), "{name} is not in docs/metrics.md");
    }
}

#[test]
fn the_readme_starts_with_the_two_commands() {
    let readme = std::fs::read_to_string("README.md").unwrap();
    let head: String = readme.lines().take(15).collect::<Vec<_>>().join("\n");
    assert!(head.contains("cargo run --release -- demo"));
    assert!(
        head.contains("bash .ci/run"),
        "the test command installs what the tests need"
    );
    let ci = std::fs::read_to_string(".ci/run").unwrap();
    assert!(ci.contains("\ncargo test\n"), ".ci/run runs the test suite");
    for link in [
        "docs/runbook.md",
        "docs/report.md",
        "docs/configuration.md",
        "docs/metrics.md",
        "docs/fleet.md",
        "docs/deploy.md",
        "docs/reliability.md",
    ] {
        assert!(readme.contains(link), "README links {link}");
        assert!(std::path::Path::new(link).exists(), "{link} exists");
    }
}
