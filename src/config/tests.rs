//! Every validation rule, with a bad file and the exact error it prints.

use super::*;

const BACKENDS: &str =
    "backends:\n  old: { url: \"http://127.0.0.1:8081\" }\n  new: { url: \"http://127.0.0.1:8082\" }\n";

/// The errors of `yaml` as `switchyard check` prints them.
fn errors(yaml: &str) -> Vec<String> {
    match Config::from_yaml(yaml, "f.yaml") {
        Ok(_) => vec![],
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

fn with_backends(extra: &str) -> Vec<String> {
    errors(&format!("{BACKENDS}{extra}"))
}

#[test]
fn minimal_config_is_valid_with_defaults() {
    let c = Config::from_yaml(BACKENDS, "f.yaml").unwrap();
    assert_eq!(c.listen, "127.0.0.1:8080");
    assert_eq!(c.admin.listen, "127.0.0.1:9901");
    assert_eq!(c.rollout.percent, 0.0);
    assert_eq!(
        crate::config::percents(&c.rollout.steps),
        vec![1.0, 5.0, 25.0, 50.0, 100.0]
    );
    assert_eq!(c.shadow.methods, vec!["GET", "HEAD", "OPTIONS"]);
    assert_eq!(c.shadow.max_body_bytes, 1_048_576);
    assert_eq!(c.diff.noise.relative_threshold, 0.2);
    assert_eq!(c.diff.noise.absolute_threshold, 0.0003);
}

#[test]
fn the_example_config_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/switchyard.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    if let Err(e) = Config::from_yaml(&text, path) {
        panic!("{e}");
    }
}

#[test]
fn unknown_key_is_an_error_with_path_and_line() {
    assert_eq!(
        with_backends("rollout:\n  precent: 5\n"),
        vec!["f.yaml:5: rollout.precent: unknown field `precent`, expected one of `percent`, `sticky`, `salt`, `force_header`, `force_from`, `state_file`, `steps`, `step_every`, `guard`, `store`, `webhooks`, `fallback`"]
    );
}

#[test]
fn unknown_top_level_key() {
    let e = with_backends("lisen: \"0.0.0.0:80\"\n");
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("f.yaml:4: lisen: unknown field `lisen`, expected one of `listen`"),
        "{}",
        e[0]
    );
}

#[test]
fn wrong_type_names_the_key() {
    assert_eq!(
        with_backends("shadow:\n  max_in_flight: lots\n"),
        vec!["f.yaml:5: shadow.max_in_flight: invalid type: string \"lots\", expected usize"]
    );
}

#[test]
fn missing_backends() {
    assert_eq!(
        errors("listen: \"127.0.0.1:1\"\n"),
        vec!["f.yaml:1: missing field `backends`"]
    );
}

#[test]
fn bad_duration() {
    assert_eq!(
        with_backends("shadow:\n  timeout: 5\n"),
        vec!["f.yaml:5: shadow.timeout: duration \"5\" has no unit (use e.g. \"250ms\", \"5s\", \"10m\")"]
    );
    assert_eq!(
        with_backends("shadow:\n  timeout: \"5 parsecs\"\n"),
        vec!["f.yaml:5: shadow.timeout: duration \"5 parsecs\" has unknown unit \" parsecs\" (use us, ms, s, m or h)"]
    );
}

#[test]
fn bad_listen_address() {
    assert_eq!(
        errors(&format!("listen: \"localhost\"\n{BACKENDS}")),
        vec!["f.yaml:1: listen: \"localhost\" is not a listen address of the form host:port (e.g. 127.0.0.1:8080 or [::]:8080)"]
    );
}

#[test]
fn admin_and_proxy_on_the_same_port() {
    assert_eq!(
        errors(&format!(
            "listen: \"127.0.0.1:9000\"\nadmin: {{ listen: \"127.0.0.1:9000\" }}\n{BACKENDS}"
        )),
        vec!["f.yaml:2: admin.listen: 127.0.0.1:9000 is also the proxy listener; give the admin API its own port"]
    );
}

#[test]
fn non_loopback_admin_needs_a_token() {
    assert_eq!(
        with_backends("admin:\n  listen: \"0.0.0.0:9901\"\n"),
        vec!["f.yaml:5: admin.listen: 0.0.0.0:9901 is reachable from other hosts, so admin.token or admin.token_file is required"]
    );
    assert!(with_backends("admin:\n  listen: \"0.0.0.0:9901\"\n  token: \"s3cret-token\"\n").is_empty());
}

#[test]
fn short_token_and_both_token_sources() {
    assert_eq!(
        with_backends("admin:\n  token: \"abc\"\n"),
        vec!["f.yaml:5: admin.token: a token must be at least 8 characters"]
    );
    let e = with_backends("admin:\n  token: \"abcdefghij\"\n  token_file: \"/nonexistent/token\"\n");
    assert_eq!(
        e,
        vec![
            "f.yaml:6: admin.token_file: set either admin.token or admin.token_file, not both",
            "f.yaml:6: admin.token_file: cannot read /nonexistent/token: No such file or directory (os error 2)"
        ]
    );
}

#[test]
fn backend_url_rules() {
    let cases = [
        ("ftp://x", "f.yaml:2: backends.old.url: \"ftp://x\" uses scheme \"ftp\"; backends are reached over http:// or https://"),
        ("127.0.0.1:8081", "f.yaml:2: backends.old.url: \"127.0.0.1:8081\" has no scheme; write it as http://host:port or https://host"),
        ("http://h:1/?a=1", "f.yaml:2: backends.old.url: \"http://h:1/?a=1\" has a query string; a backend URL is scheme, host, port and an optional path prefix"),
        ("http://", "f.yaml:2: backends.old.url: \"http://\" is not a URL: empty string"),
    ];
    for (url, want) in cases {
        let yaml = format!("backends:\n  old: {{ url: \"{url}\" }}\n  new: {{ url: \"http://127.0.0.1:8082\" }}\n");
        assert_eq!(errors(&yaml), vec![want.to_string()], "{url}");
    }
}

#[test]
fn zero_timeouts() {
    let yaml = "backends:\n  old: { url: \"http://a:1\", timeout: \"0s\" }\n  new: { url: \"http://b:1\", read_timeout: \"0ms\" }\n";
    assert_eq!(
        errors(yaml),
        vec![
            "f.yaml:2: backends.old.timeout: must be longer than 0",
            "f.yaml:3: backends.new.read_timeout: must be longer than 0"
        ]
    );
}

#[test]
fn percent_out_of_range() {
    assert_eq!(
        with_backends("rollout:\n  percent: 101\n"),
        vec!["f.yaml:5: rollout.percent: percent must be between 0 and 100, got 101"]
    );
    assert_eq!(
        with_backends("rollout:\n  percent: -1\n"),
        vec!["f.yaml:5: rollout.percent: percent must be between 0 and 100, got -1"]
    );
    assert_eq!(
        with_backends("rollout:\n  percent: .nan\n"),
        vec!["f.yaml:5: rollout.percent: percent must be between 0 and 100, got NaN"]
    );
    assert_eq!(
        with_backends("shadow:\n  percent: 200\n"),
        vec!["f.yaml:5: shadow.percent: percent must be between 0 and 100, got 200"]
    );
}

#[test]
fn fractional_percent_is_fine() {
    assert!(with_backends("rollout:\n  percent: 0.1\n").is_empty());
}

#[test]
fn sticky_key_rules() {
    assert_eq!(
        with_backends("rollout:\n  sticky: \"ip\"\n"),
        vec![
            "f.yaml:5: rollout.sticky: unknown key \"ip\": use header:NAME, cookie:NAME, query:NAME, client_ip or none"
        ]
    );
    assert_eq!(
        with_backends("rollout:\n  sticky: global\n"),
        vec!["f.yaml:5: rollout.sticky: \"global\" is a rate-limit key; for the split use header:NAME, cookie:NAME, query:NAME, client_ip or none"]
    );
}

#[test]
fn bad_force_header() {
    assert_eq!(
        with_backends("rollout:\n  force_header: \"bad header\"\n"),
        vec!["f.yaml:5: rollout.force_header: \"bad header\" is not a valid header name"]
    );
}

#[test]
fn steps_must_rise_within_range() {
    assert_eq!(
        with_backends("rollout:\n  steps: [5, 1, 150]\n"),
        vec![
            "f.yaml:5: rollout.steps[1]: steps must rise: 1 follows 5",
            "f.yaml:5: rollout.steps[2]: a step must be above 0 and at most 100, got 150"
        ]
    );
}

#[test]
fn guard_rules() {
    let e = with_backends(
        "rollout:\n  guard:\n    interval: \"10s\"\n    window: \"5s\"\n    max_error_rate_increase: 2\n    max_latency_ratio: 0.5\n    confidence: 0.98\n    min_requests: 0\n    max_diff_rate: -0.1\n    false_alarm_rate: 0.5\n",
    );
    assert_eq!(
        e,
        vec![
            "f.yaml:7: rollout.guard.window: window 5s is shorter than the interval 10s",
            "f.yaml:8: rollout.guard.max_error_rate_increase: must be a fraction between 0 and 1, got 2",
            "f.yaml:12: rollout.guard.max_diff_rate: must be a fraction between 0 and 1, got -0.1",
            "f.yaml:9: rollout.guard.max_latency_ratio: must be at least 1.0 (new as fast as old), got 0.5",
            "f.yaml:10: rollout.guard.confidence: was replaced by rollout.guard.false_alarm_rate, the chance of a false rollback over a whole rollout (default 0.01); a confidence held at every look let identical backends roll back. Remove confidence: 0.98, and set false_alarm_rate if 0.01 is not what you want",
            "f.yaml:13: rollout.guard.false_alarm_rate: must be above 0 and below 0.5 (e.g. 0.01: one false rollback in a hundred rollouts), got 0.5",
            "f.yaml:11: rollout.guard.min_requests: must be at least 1",
        ]
    );
    assert_eq!(
        with_backends("rollout:\n  guard:\n    action: explode\n"),
        vec!["f.yaml:6: rollout.guard.action: unknown variant `explode`, expected `rollback` or `pause`"]
    );
}

#[test]
fn shadow_rules() {
    assert_eq!(
        with_backends("shadow:\n  methods: [GET, post]\n  max_in_flight: 0\n  queue: 0\n"),
        vec![
            "f.yaml:5: shadow.methods[1]: \"post\" is not an HTTP method (write it in capitals, e.g. GET)",
            "f.yaml:6: shadow.max_in_flight: must be at least 1",
            "f.yaml:7: shadow.queue: must be at least 1",
        ]
    );
}

#[test]
fn diff_rules() {
    let e = with_backends(
        "diff:\n  ignore_fields: [\"meta/id\", \"/a~2\"]\n  ignore_headers: [\"bad header\"]\n  float_tolerance: -1\n  endpoints: [\"users/{id}\"]\n  samples_per_field: 0\n  max_endpoints: 0\n  store: { path: \"x.jsonl\", max_bytes: 10 }\n",
    );
    assert_eq!(
        e,
        vec![
            "f.yaml:6: diff.ignore_headers[0]: \"bad header\" is not a valid header name",
            "f.yaml:5: diff.ignore_fields[0]: JSON Pointer \"meta/id\" must start with '/'",
            "f.yaml:5: diff.ignore_fields[1]: JSON Pointer \"/a~2\" has a '~' not followed by 0 or 1",
            "f.yaml:7: diff.float_tolerance: must be 0 or more, got -1",
            "f.yaml:8: diff.endpoints[0]: endpoint template \"users/{id}\" must start with '/'",
            "f.yaml:9: diff.samples_per_field: must be at least 1",
            "f.yaml:10: diff.max_endpoints: must be at least 1",
            "f.yaml:11: diff.store.max_bytes: must be at least 4096, got 10",
        ]
    );
}

#[test]
fn route_rules() {
    let e = with_backends(
        "routes:\n  - name: pay\n    match: { path_prefix: \"api\" }\n    rollout: { percent: 150 }\n  - name: pay\n    match: { methods: [get] }\n  - name: \"bad name!\"\n  - name: default\n",
    );
    assert_eq!(
        e,
        vec![
            "f.yaml:6: routes[0].match.path_prefix: \"api\" must start with '/'",
            "f.yaml:7: routes[0].rollout.percent: percent must be between 0 and 100, got 150",
            "f.yaml:8: routes[1].name: route name \"pay\" is used twice",
            "f.yaml:9: routes[1].match.methods[0]: \"get\" is not an HTTP method (write it in capitals, e.g. GET)",
            "f.yaml:10: routes[2].name: route name \"bad name!\" must be 1–64 characters of letters, digits, '_' or '-' (it becomes a metric label)",
            "f.yaml:11: routes[3].name: \"default\" is the name of requests no route matches; pick another",
        ]
    );
}

#[test]
fn route_needs_a_name() {
    assert_eq!(
        with_backends("routes:\n  - match: { path_prefix: /a }\n"),
        vec!["f.yaml:5: routes[0]: missing field `name`"]
    );
}

#[test]
fn unknown_module_is_an_error_with_its_path() {
    assert_eq!(
        with_backends("modules:\n  - waf: {}\n"),
        vec!["f.yaml:5: modules[0]: unknown variant `waf`, expected `rate_limit` or `rules`"]
    );
}

#[test]
fn module_option_rules() {
    let e = with_backends(
        "modules:\n  - rate_limit: { rate: 0, burst: 0.5, key: none, max_keys: 0 }\n  - rules:\n      - name: r1\n        match: {}\n      - name: r1\n        status: 200\n        match: { path_regex: \"(\", path_prefix: x }\n",
    );
    assert_eq!(
        e,
        vec![
            "f.yaml:5: modules[0].rate_limit.rate: must be greater than 0, got 0",
            "f.yaml:5: modules[0].rate_limit.burst: must be at least 1, got 0.5",
            "f.yaml:5: modules[0].rate_limit.max_keys: must be at least 1",
            "f.yaml:5: modules[0].rate_limit.key: \"none\" gives no budget to spend; use global for one shared budget",
            "f.yaml:8: modules[1].rules[0].match: a rule needs at least one condition",
            "f.yaml:9: modules[1].rules[1].name: rule name \"r1\" is used twice in this list",
            "f.yaml:10: modules[1].rules[1].status: a block status must be 400–599, got 200",
            "f.yaml:11: modules[1].rules[1].match.path_prefix: \"x\" must start with '/'",
            "f.yaml:11: modules[1].rules[1].match.path_regex: regex \"(\" does not compile: error: unclosed group",
        ]
    );
}

#[test]
fn route_modules_are_validated_too() {
    assert_eq!(
        with_backends("routes:\n  - name: api\n    modules:\n      - rate_limit: { rate: -5 }\n"),
        vec!["f.yaml:7: routes[0].modules[0].rate_limit.rate: must be greater than 0, got -5"]
    );
}

#[test]
fn bad_log_level() {
    let e = with_backends("logging:\n  level: \"loud=??\"\n");
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("f.yaml:5: logging.level: \"loud=??\" is not a log filter"),
        "{}",
        e[0]
    );
}

#[test]
fn server_limits() {
    assert_eq!(
        with_backends("server:\n  max_header_bytes: 100\n  max_connections: 0\n  workers: 1000\n"),
        vec![
            "f.yaml:7: server.workers: 1000 workers is more than 256; use 0 for one per CPU",
            "f.yaml:6: server.max_connections: must be at least 1",
            "f.yaml:5: server.max_header_bytes: must be at least 8192, got 100",
        ]
    );
}

#[test]
fn every_error_is_reported_at_once() {
    let e = with_backends("rollout:\n  percent: 300\nshadow:\n  percent: 300\n");
    assert_eq!(e.len(), 2);
}

#[test]
fn every_unknown_key_is_reported_with_its_line() {
    let e = with_backends("rollout:\n  precent: 5\nshadow:\n  persent: 5\nroutes:\n  - name: a\n    match: { path_prefix: /a }\n    shadoww: {}\n");
    assert_eq!(e.len(), 3, "{e:#?}");
    assert!(
        e[0].starts_with("f.yaml:5: rollout.precent: unknown field `precent`"),
        "{}",
        e[0]
    );
    assert!(
        e[1].starts_with("f.yaml:7: shadow.persent: unknown field `persent`"),
        "{}",
        e[1]
    );
    assert!(
        e[2].starts_with("f.yaml:11: routes[0].shadoww: unknown field `shadoww`"),
        "{}",
        e[2]
    );
}

#[test]
fn a_step_is_a_percent_or_a_map_with_pause_and_its_own_hold() {
    let c = Config::from_yaml(
        "backends: { old: { url: 'http://a:1' }, new: { url: 'http://b:1' } }\nrollout:\n  steps: [1, 5, { percent: 25, pause: true }, { percent: 50, step_every: 10m }, 100]\n",
        "f.yaml",
    )
    .unwrap();
    let s = &c.rollout.steps;
    assert_eq!(crate::config::percents(s), vec![1.0, 5.0, 25.0, 50.0, 100.0]);
    assert!(s[2].pause && !s[1].pause);
    assert_eq!(s[3].step_every.map(|d| d.to_string()).as_deref(), Some("10m"));
    let e = with_backends("rollout:\n  steps: [1, { percent: 25, paws: true }]\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("f.yaml:5: rollout.steps[1]: a step is a percent (25) or { percent: 25, pause: true"),
        "{}",
        e[0]
    );
    assert!(e[0].contains("paws"), "names the key: {}", e[0]);
}

#[test]
fn syntax_error_has_a_line() {
    let e = errors("backends:\n  old: { url: \"http://a:1\"\n  new: x\n");
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("f.yaml:"), "{}", e[0]);
}

#[test]
fn trust_and_isolation_keys_are_checked() {
    let e = with_backends(
        "server: { trusted_proxies: ['10.0.0.0/8', 'lb.internal'], client_body_timeout: 0s }\nrollout: { force_from: ['192.0.2.0/33'] }\nadmin: { open_paths: ['metrics'] }\nshadow: { max_buffered_bytes: 1000, workers: 0, max_connections: 0 }\n",
    );
    assert_eq!(
        e,
        vec![
            "f.yaml:4: server.client_body_timeout: must be longer than 0",
            "f.yaml:4: server.trusted_proxies[1]: \"lb.internal\" is not an address or a CIDR range (e.g. 10.0.0.0/8, 192.0.2.7 or fd00::/8)",
            "f.yaml:6: admin.open_paths[0]: \"metrics\" must be a path starting with '/'",
            "f.yaml:5: rollout.force_from[0]: \"192.0.2.0/33\" is not an address or a CIDR range (e.g. 10.0.0.0/8, 192.0.2.7 or fd00::/8)",
            "f.yaml:7: shadow.max_connections: must be at least 1",
            "f.yaml:7: shadow.workers: must be from 1 to 64, got 0",
            "f.yaml:7: shadow.max_buffered_bytes: 1000 is less than shadow.max_response_bytes (4194304); no mirrored answer would fit",
        ]
    );
    let e = errors(
        "backends:\n  old: { url: 'http://127.0.0.1:1', max_connections: 0 }\n  new: { url: 'http://127.0.0.1:2' }\n",
    );
    assert!(
        e.iter()
            .any(|l| l.contains("backends.old.max_connections: must be at least 1")),
        "{e:?}"
    );
}

#[test]
fn a_directory_as_state_file_and_an_empty_plan_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let e = with_backends(&format!(
        "rollout: {{ state_file: '{}', steps: [] }}\n",
        dir.path().display()
    ));
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[0].contains("rollout.state_file: ") && e[0].contains("is a directory; name a file in it"),
        "{}",
        e[0]
    );
    assert_eq!(
        e[1],
        "f.yaml:4: rollout.steps: the step plan is empty; list at least one percent, e.g. [1, 5, 25, 50, 100]"
    );
}

#[test]
fn numbers_too_large_say_so() {
    assert_eq!(
        with_backends("rollout: { percent: 1e400 }\n"),
        vec!["f.yaml:4: rollout.percent: number out of range: 1e400 is too large for this key"]
    );
    assert_eq!(
        with_backends("server: { max_connections: 99999999999999999999999999 }\n"),
        vec!["f.yaml:4: server.max_connections: number out of range: 99999999999999999999999999 is too large for this key"]
    );
}

#[test]
fn deep_nesting_is_refused_at_once() {
    let started = std::time::Instant::now();
    let e = with_backends(&format!("routes: {}\n", "[".repeat(200_000)));
    assert_eq!(
        e,
        vec!["f.yaml:4: brackets nested deeper than 64 levels; no config needs that many (is this the right file?)"]
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// A self-signed certificate and key for `names`, written under `dir`.
fn certificate(dir: &std::path::Path, stem: &str, names: &[&str]) -> (String, String) {
    let cert = rcgen::generate_simple_self_signed(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    let (c, k) = (dir.join(format!("{stem}.pem")), dir.join(format!("{stem}.key")));
    std::fs::write(&c, cert.cert.pem()).unwrap();
    std::fs::write(&k, cert.signing_key.serialize_pem()).unwrap();
    (c.display().to_string(), k.display().to_string())
}

#[test]
fn tls_listener_rules() {
    let dir = tempfile::tempdir().unwrap();
    let (shop, shop_key) = certificate(dir.path(), "shop", &["shop.example"]);
    let (_, other_key) = certificate(dir.path(), "other", &["other.example"]);
    let ok = format!(
        "tls:\n  listen: \"127.0.0.1:0\"\n  certificates: [{{ cert_file: \"{shop}\", key_file: \"{shop_key}\" }}]\n"
    );
    assert_eq!(with_backends(&ok), Vec::<String>::new());
    let mismatched = format!(
        "tls:\n  listen: \"127.0.0.1:0\"\n  certificates: [{{ cert_file: \"{shop}\", key_file: \"{other_key}\" }}]\n"
    );
    let e = with_backends(&mismatched);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].contains("tls.certificates[0]") && e[0].contains("do not match"),
        "{e:?}"
    );
    let missing = "tls:\n  listen: \"127.0.0.1:0\"\n  certificates: [{ cert_file: \"/nonexistent.pem\", key_file: \"/nonexistent.key\" }]\n";
    assert!(with_backends(missing)[0].contains("cannot read /nonexistent.pem"));
    let version = format!("tls:\n  listen: \"127.0.0.1:0\"\n  min_version: \"1.1\"\n  certificates: [{{ cert_file: \"{shop}\", key_file: \"{shop_key}\" }}]\n");
    assert!(
        with_backends(&version)[0].contains("tls.min_version"),
        "{:?}",
        with_backends(&version)
    );
    assert_eq!(
        with_backends("listen: \"\"\n"),
        vec!["f.yaml:4: listen: is empty and there is no tls.listen: the gateway would listen nowhere"]
    );
}

#[test]
fn backend_tls_rules() {
    let e = errors(
        "backends:\n  old: { url: \"http://a:1\", tls: { ca_file: \"ca.pem\" } }\n  new: { url: \"http://b:1\" }\n",
    );
    assert_eq!(
        e,
        vec![
            "f.yaml:2: backends.old.tls: is set but the URL is http://; write https:// to reach this backend over TLS"
        ]
    );
    let e = errors("backends:\n  old: { url: \"https://a:1\", tls: { ca_file: \"/nonexistent/ca.pem\" } }\n  new: { url: \"http://b:1\" }\n");
    assert_eq!(e.len(), 1);
    assert!(
        e[0].contains("backends.old.tls.ca_file: cannot read /nonexistent/ca.pem"),
        "{e:?}"
    );
    let e = errors("backends:\n  old: { url: \"https://a:1\", tls: { client_cert_file: \"c.pem\" } }\n  new: { url: \"http://b:1\" }\n");
    assert!(
        e[0].contains("client_cert_file and client_key_file go together"),
        "{e:?}"
    );
    let e = errors(
        "backends:\n  old: { url: \"http://a:1\", http2: true, protocol: http1 }\n  new: { url: \"http://b:1\" }\n",
    );
    assert!(e[0].contains("contradicts protocol: http1"), "{e:?}");
    let c = Config::from_yaml("backends:\n  old: { url: \"http://a:1\", http2: true }\n  new: { url: \"https://b\", protocol: http1, tls: { insecure_skip_verify: true } }\n", "f.yaml").unwrap();
    assert_eq!(
        c.backends.old.protocol(),
        crate::config::BackendProtocol::Http2,
        "the older spelling still works"
    );
    assert!(c.backends.new.is_https());
}
