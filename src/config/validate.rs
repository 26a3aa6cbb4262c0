//! Checks that need the whole typed config: ranges, cross-references, things
//! that parse (URLs, listeners, regexes). Every finding names the YAML path of
//! the offending key; [`super::load`] adds the line.

use std::collections::HashSet;
use std::net::SocketAddr;

use http::{HeaderName, Method, Uri};

use super::schema::*;
use super::sticky::StickyKey;

/// A problem found in a parsed config: where, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub path: String,
    pub message: String,
}

#[derive(Default)]
struct Findings(Vec<Finding>);

impl Findings {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Finding {
            path: path.into(),
            message: message.into(),
        });
    }

    fn percent(&mut self, path: impl Into<String>, value: f64) {
        if !value.is_finite() || !(0.0..=100.0).contains(&value) {
            self.add(path, format!("percent must be between 0 and 100, got {value}"));
        }
    }

    fn fraction(&mut self, path: impl Into<String>, value: f64) {
        if !value.is_finite() || !(0.0..=1.0).contains(&value) {
            self.add(path, format!("must be a fraction between 0 and 1, got {value}"));
        }
    }

    fn positive(&mut self, path: impl Into<String>, value: f64) {
        if !value.is_finite() || value <= 0.0 {
            self.add(path, format!("must be greater than 0, got {value}"));
        }
    }

    fn nonzero_duration(&mut self, path: impl Into<String>, d: super::HumanDuration) {
        if d.get().is_zero() {
            self.add(path, "must be longer than 0");
        }
    }

    fn methods(&mut self, path: &str, methods: &[String]) {
        for (i, m) in methods.iter().enumerate() {
            if m.is_empty() || Method::from_bytes(m.as_bytes()).is_err() || m.to_ascii_uppercase() != *m {
                self.add(
                    format!("{path}[{i}]"),
                    format!("{m:?} is not an HTTP method (write it in capitals, e.g. GET)"),
                );
            }
        }
    }

    fn header_names(&mut self, path: &str, names: &[String]) {
        for (i, n) in names.iter().enumerate() {
            if HeaderName::from_bytes(n.as_bytes()).is_err() {
                self.add(format!("{path}[{i}]"), format!("{n:?} is not a valid header name"));
            }
        }
    }

    fn pointer_patterns(&mut self, path: &str, patterns: &[String]) {
        for (i, p) in patterns.iter().enumerate() {
            if let Err(e) = crate::diff::rules::PointerPattern::parse(p) {
                self.add(format!("{path}[{i}]"), e);
            }
        }
    }

    fn label(&mut self, path: impl Into<String>, name: &str, what: &str) {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !ok {
            self.add(
                path,
                format!("{what} {name:?} must be 1–64 characters of letters, digits, '_' or '-' (it becomes a metric label)"),
            );
        }
    }

    fn ranges(&mut self, path: &str, list: &[String]) {
        for (i, t) in list.iter().enumerate() {
            if let Err(e) = super::cidr::parse(t) {
                self.add(format!("{path}[{i}]"), e);
            }
        }
    }

    fn at_least_one(&mut self, path: impl Into<String>, value: usize) {
        if value == 0 {
            self.add(path, "must be at least 1");
        }
    }

    fn regex(&mut self, path: impl Into<String>, pattern: &str) {
        if let Err(e) = regex::Regex::new(pattern) {
            let first = e.to_string().lines().last().unwrap_or("invalid").trim().to_string();
            self.add(path, format!("regex {pattern:?} does not compile: {first}"));
        }
    }
}

pub fn listener(text: &str) -> Result<SocketAddr, String> {
    text.parse::<SocketAddr>().map_err(|_| {
        format!("{text:?} is not a listen address of the form host:port (e.g. 127.0.0.1:8080 or [::]:8080)")
    })
}

/// Parses a backend URL: `http://` or `https://`, an authority, optional path prefix.
pub fn backend_url(text: &str) -> Result<Uri, String> {
    let uri: Uri = text.parse().map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => {
            return Err(format!(
                "{text:?} uses scheme {other:?}; backends are reached over http:// or https://"
            ))
        }
        None => {
            return Err(format!(
                "{text:?} has no scheme; write it as http://host:port or https://host"
            ))
        }
    }
    if uri.authority().is_none() {
        return Err(format!("{text:?} has no host"));
    }
    if uri.query().is_some() {
        return Err(format!(
            "{text:?} has a query string; a backend URL is scheme, host, port and an optional path prefix"
        ));
    }
    Ok(uri)
}

/// Every finding in `config`, in file order.
pub fn validate(config: &Config) -> Vec<Finding> {
    let mut f = Findings::default();

    let proxy_addr = if config.listen.is_empty() {
        if config.tls.is_none() {
            f.add(
                "listen",
                "is empty and there is no tls.listen: the gateway would listen nowhere",
            );
        }
        None
    } else {
        listener(&config.listen).map_err(|e| f.add("listen", e)).ok()
    };
    if let Some(tls) = &config.tls {
        let tls_addr = tls_listener(&mut f, tls);
        if let (Some(t), Some(p)) = (tls_addr, proxy_addr) {
            if t == p && t.port() != 0 {
                f.add(
                    "tls.listen",
                    format!("{t} is also the plain listener (listen); give TLS its own port"),
                );
            }
        }
    }
    let admin_addr = listener(&config.admin.listen)
        .map_err(|e| f.add("admin.listen", e))
        .ok();
    if let (Some(p), Some(a)) = (proxy_addr, admin_addr) {
        if p == a && p.port() != 0 {
            f.add(
                "admin.listen",
                format!("{a} is also the proxy listener; give the admin API its own port"),
            );
        }
    }

    server(&mut f, &config.server);
    admin(&mut f, &config.admin, admin_addr);

    backend(&mut f, "backends.old", &config.backends.old);
    backend(&mut f, "backends.new", &config.backends.new);
    if let Some(twin) = &config.backends.old_twin {
        backend(&mut f, "backends.old_twin", twin);
    }

    rollout(&mut f, &config.rollout);
    shadow(&mut f, &config.shadow);
    if let Some(c) = &config.capture {
        capture(&mut f, c);
    }
    diff(&mut f, &config.diff);
    modules(&mut f, "modules", &config.modules);
    routes(&mut f, &config.routes);

    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&config.logging.level) {
        f.add(
            "logging.level",
            format!("{:?} is not a log filter: {e}", config.logging.level),
        );
    }
    f.0
}

fn server(f: &mut Findings, s: &ServerConfig) {
    if s.workers > 256 {
        f.add(
            "server.workers",
            format!("{} workers is more than 256; use 0 for one per CPU", s.workers),
        );
    }
    if s.max_connections == 0 {
        f.add("server.max_connections", "must be at least 1");
    }
    if s.max_header_bytes < 8192 {
        f.add(
            "server.max_header_bytes",
            format!("must be at least 8192, got {}", s.max_header_bytes),
        );
    }
    if s.max_headers == 0 {
        f.add("server.max_headers", "must be at least 1");
    }
    if s.http2_max_concurrent_streams == 0 {
        f.add("server.http2_max_concurrent_streams", "must be at least 1");
    }
    f.nonzero_duration("server.header_read_timeout", s.header_read_timeout);
    f.nonzero_duration("server.client_body_timeout", s.client_body_timeout);
    f.ranges("server.trusted_proxies", &s.trusted_proxies);
}

fn admin(f: &mut Findings, a: &AdminConfig, addr: Option<SocketAddr>) {
    if a.token.is_some() && a.token_file.is_some() {
        f.add(
            "admin.token_file",
            "set either admin.token or admin.token_file, not both",
        );
    }
    if let Some(t) = &a.token {
        if t.trim().len() < 8 {
            f.add("admin.token", "a token must be at least 8 characters");
        }
    }
    if let Some(path) = &a.token_file {
        match std::fs::read_to_string(path) {
            Ok(t) if t.trim().len() >= 8 => {}
            Ok(_) => f.add(
                "admin.token_file",
                format!("{} holds a token shorter than 8 characters", path.display()),
            ),
            Err(e) => f.add("admin.token_file", format!("cannot read {}: {e}", path.display())),
        }
    }
    for (i, p) in a.open_paths.iter().enumerate() {
        if !p.starts_with('/') {
            f.add(
                format!("admin.open_paths[{i}]"),
                format!("{p:?} must be a path starting with '/'"),
            );
        }
    }
    if let Some(addr) = addr {
        if !addr.ip().is_loopback() && a.token.is_none() && a.token_file.is_none() {
            f.add(
                "admin.listen",
                format!("{addr} is reachable from other hosts, so admin.token or admin.token_file is required"),
            );
        }
    }
}

/// The TLS listener: its address, and every certificate loaded as a
/// handshake would use it.
fn tls_listener(f: &mut Findings, tls: &TlsConfig) -> Option<SocketAddr> {
    let addr = listener(&tls.listen).map_err(|e| f.add("tls.listen", e)).ok();
    if tls.certificates.is_empty() {
        f.add(
            "tls.certificates",
            "lists no certificate; add { cert_file, key_file } (PEM chain and key)",
        );
    }
    let provider = crate::tls::provider();
    for (i, pair) in tls.certificates.iter().enumerate() {
        if let Err(e) = crate::tls::certs::load(&pair.cert_file, &pair.key_file, &provider) {
            f.add(format!("tls.certificates[{i}]"), e);
        }
    }
    f.nonzero_duration("tls.handshake_timeout", tls.handshake_timeout);
    addr
}

fn backend(f: &mut Findings, path: &str, b: &BackendConfig) {
    let url = backend_url(&b.url).map_err(|e| f.add(format!("{path}.url"), e)).ok();
    if b.http2 && b.protocol != BackendProtocol::Auto && b.protocol != BackendProtocol::Http2 {
        f.add(
            format!("{path}.http2"),
            format!(
                "http2: true (the older spelling of protocol: http2) contradicts protocol: {}; keep protocol alone",
                b.protocol.as_str()
            ),
        );
    }
    match (&b.tls, url.as_ref().and_then(|u| u.scheme_str())) {
        (Some(_), Some("http")) => f.add(
            format!("{path}.tls"),
            "is set but the URL is http://; write https:// to reach this backend over TLS",
        ),
        (_, Some("https")) => {
            // Built as the workers will build it: a bad file fails here,
            // not at the first request.
            let host = url.as_ref().and_then(|u| u.host()).unwrap_or_default();
            if let Err(e) = crate::tls::backend::client_config(path, b.trust(), &[])
                .and_then(|_| crate::tls::backend::server_name(path, b.trust(), host))
            {
                f.add(e.key, e.message);
            }
        }
        _ => {}
    }
    f.nonzero_duration(format!("{path}.connect_timeout"), b.connect_timeout);
    f.nonzero_duration(format!("{path}.timeout"), b.timeout);
    f.nonzero_duration(format!("{path}.read_timeout"), b.read_timeout);
    f.at_least_one(format!("{path}.max_connections"), b.max_connections);
    f.nonzero_duration(format!("{path}.queue_timeout"), b.queue_timeout);
}

fn rollout(f: &mut Findings, r: &RolloutConfig) {
    f.percent("rollout.percent", r.percent);
    if let Some(store) = &r.store {
        etcd(f, &store.etcd);
    }
    webhooks(f, &r.webhooks);
    if let Some(fb) = &r.fallback {
        if !fb.max_share.is_finite() || !(0.0..=1.0).contains(&fb.max_share) {
            f.add(
                "rollout.fallback.max_share",
                format!(
                    "must be a fraction from 0 to 1 (0.05 is 5 % of new's requests), got {}",
                    fb.max_share
                ),
            );
        }
        if fb.on.is_empty() {
            f.add(
                "rollout.fallback.on",
                "is empty; list connect_error, timeout and/or 5xx (or remove fallback)",
            );
        }
        for (i, m) in fb.methods.iter().enumerate() {
            if http::Method::from_bytes(m.as_bytes()).is_err() {
                f.add(
                    format!("rollout.fallback.methods[{i}]"),
                    format!("{m:?} is not an HTTP method"),
                );
            } else if matches!(m.as_str(), "POST" | "PATCH") {
                f.add(
                    format!("rollout.fallback.methods[{i}]"),
                    format!("{m} is not idempotent: a fallback sends the request a second time, to old"),
                );
            }
        }
    }
    if matches!(r.sticky, StickyKey::Global) {
        f.add(
            "rollout.sticky",
            "\"global\" is a rate-limit key; for the split use header:NAME, cookie:NAME, query:NAME, client_ip or none",
        );
    }
    if HeaderName::from_bytes(r.force_header.as_bytes()).is_err() {
        f.add(
            "rollout.force_header",
            format!("{:?} is not a valid header name", r.force_header),
        );
    }
    if let Some(list) = &r.force_from {
        f.ranges("rollout.force_from", list);
    }
    if let Some(path) = &r.state_file {
        if path.as_os_str().is_empty() {
            f.add("rollout.state_file", "must name a file");
        } else if path.is_dir() {
            f.add(
                "rollout.state_file",
                format!(
                    "{} is a directory; name a file in it, e.g. {}",
                    path.display(),
                    path.join("rollout.json").display()
                ),
            );
        }
    }
    if r.steps.is_empty() {
        f.add(
            "rollout.steps",
            "the step plan is empty; list at least one percent, e.g. [1, 5, 25, 50, 100]",
        );
    }
    let mut previous = 0.0;
    for (i, s) in r.steps.iter().enumerate() {
        let path = format!("rollout.steps[{i}]");
        let step = s.percent;
        if !step.is_finite() || step <= 0.0 || step > 100.0 {
            f.add(
                path.clone(),
                format!("a step must be above 0 and at most 100, got {step}"),
            );
        } else if step <= previous {
            f.add(path.clone(), format!("steps must rise: {step} follows {previous}"));
        } else {
            previous = step;
        }
        if let Some(every) = s.step_every {
            f.nonzero_duration(format!("{path}.step_every"), every);
        }
    }
    if let Some(every) = r.step_every {
        f.nonzero_duration("rollout.step_every", every);
    }
    let g = &r.guard;
    f.nonzero_duration("rollout.guard.interval", g.interval);
    if g.consecutive_failures == 0 {
        f.add(
            "rollout.guard.consecutive_failures",
            "must be at least 1 (the looks in a row with a failing check before the guard acts); to stop it acting, set enabled: false",
        );
    }
    if g.window.get() < g.interval.get() {
        f.add(
            "rollout.guard.window",
            format!("window {} is shorter than the interval {}", g.window, g.interval),
        );
    }
    f.fraction("rollout.guard.max_error_rate_increase", g.max_error_rate_increase);
    f.fraction("rollout.guard.max_diff_rate", g.max_diff_rate);
    if !g.max_latency_ratio.is_finite() || g.max_latency_ratio < 1.0 {
        f.add(
            "rollout.guard.max_latency_ratio",
            format!("must be at least 1.0 (new as fast as old), got {}", g.max_latency_ratio),
        );
    }
    if let Some(c) = g.confidence {
        f.add(
            "rollout.guard.confidence",
            format!(
                "was replaced by rollout.guard.false_alarm_rate, the chance of a false rollback over a whole rollout \
                 (default 0.01); a confidence held at every look let identical backends roll back. \
                 Remove confidence: {c}, and set false_alarm_rate if 0.01 is not what you want"
            ),
        );
    }
    if !g.false_alarm_rate.is_finite() || g.false_alarm_rate <= 0.0 || g.false_alarm_rate >= 0.5 {
        f.add(
            "rollout.guard.false_alarm_rate",
            format!(
                "must be above 0 and below 0.5 (e.g. 0.01: one false rollback in a hundred rollouts), got {}",
                g.false_alarm_rate
            ),
        );
    }
    if g.min_requests == 0 {
        f.add("rollout.guard.min_requests", "must be at least 1");
    }
}

fn capture(f: &mut Findings, c: &crate::config::CaptureConfig) {
    f.percent("capture.percent", c.percent);
    f.methods("capture.methods", &c.methods);
    if c.methods.is_empty() {
        f.add(
            "capture.methods",
            "is empty: nothing would be recorded; list methods such as [GET]",
        );
    }
    if c.path.as_os_str().is_empty() {
        f.add("capture.path", "is empty; name a file such as state/capture.jsonl");
    } else if c.path.is_dir() {
        f.add(
            "capture.path",
            format!("{} is a directory; name a file in it", c.path.display()),
        );
    }
    if c.max_bytes < 4096 {
        f.add(
            "capture.max_bytes",
            format!("must be at least 4096, got {}", c.max_bytes),
        );
    }
}

fn shadow(f: &mut Findings, s: &ShadowConfig) {
    f.percent("shadow.percent", s.percent);
    f.methods("shadow.methods", &s.methods);
    if s.max_in_flight == 0 {
        f.add("shadow.max_in_flight", "must be at least 1");
    }
    if s.queue == 0 {
        f.add("shadow.queue", "must be at least 1");
    }
    f.nonzero_duration("shadow.timeout", s.timeout);
    f.at_least_one("shadow.max_connections", s.max_connections);
    if s.workers == 0 || s.workers > 64 {
        f.add("shadow.workers", format!("must be from 1 to 64, got {}", s.workers));
    }
    if s.max_buffered_bytes < s.max_response_bytes {
        f.add(
            "shadow.max_buffered_bytes",
            format!(
                "{} is less than shadow.max_response_bytes ({}); no mirrored answer would fit",
                s.max_buffered_bytes, s.max_response_bytes
            ),
        );
    }
}

fn diff(f: &mut Findings, d: &DiffConfig) {
    if let Some(path) = &d.grpc.descriptor_set {
        if let Err(e) = crate::diff::grpc::GrpcSchema::load(path) {
            f.add("diff.grpc.descriptor_set", e);
        }
    }
    f.header_names("diff.ignore_headers", &d.ignore_headers);
    f.header_names("diff.redact_headers", &d.redact_headers);
    f.pointer_patterns("diff.ignore_fields", &d.ignore_fields);
    f.pointer_patterns("diff.unordered_arrays", &d.unordered_arrays);
    if !d.float_tolerance.is_finite() || d.float_tolerance < 0.0 {
        f.add(
            "diff.float_tolerance",
            format!("must be 0 or more, got {}", d.float_tolerance),
        );
    }
    for (i, t) in d.endpoints.iter().enumerate() {
        if let Err(e) = crate::report::endpoint::Template::parse(t) {
            f.add(format!("diff.endpoints[{i}]"), e);
        }
    }
    if !d.noise.relative_threshold.is_finite() || d.noise.relative_threshold < 0.0 {
        f.add(
            "diff.noise.relative_threshold",
            format!("must be 0 or more, got {}", d.noise.relative_threshold),
        );
    }
    f.fraction("diff.noise.absolute_threshold", d.noise.absolute_threshold);
    f.percent("diff.noise.repeat_percent", d.noise.repeat_percent);
    if d.samples_per_field == 0 {
        f.add("diff.samples_per_field", "must be at least 1");
    }
    if d.max_endpoints == 0 {
        f.add("diff.max_endpoints", "must be at least 1");
    }
    if let Some(store) = &d.store {
        if store.path.as_os_str().is_empty() {
            f.add("diff.store.path", "must name a file");
        }
        if store.max_bytes < 4096 {
            f.add(
                "diff.store.max_bytes",
                format!("must be at least 4096, got {}", store.max_bytes),
            );
        }
    }
}

fn modules(f: &mut Findings, path: &str, list: &[ModuleConfig]) {
    for (i, m) in list.iter().enumerate() {
        match m {
            ModuleConfig::RateLimit(r) => {
                let p = format!("{path}[{i}].rate_limit");
                f.positive(format!("{p}.rate"), r.rate);
                if let Some(b) = r.burst {
                    if !b.is_finite() || b < 1.0 {
                        f.add(format!("{p}.burst"), format!("must be at least 1, got {b}"));
                    }
                }
                f.nonzero_duration(format!("{p}.per"), r.per);
                if r.max_keys == 0 {
                    f.add(format!("{p}.max_keys"), "must be at least 1");
                }
                if r.key == StickyKey::None {
                    f.add(
                        format!("{p}.key"),
                        "\"none\" gives no budget to spend; use global for one shared budget",
                    );
                }
            }
            ModuleConfig::Rules(rules) => {
                let mut names = HashSet::new();
                for (j, rule) in rules.iter().enumerate() {
                    let p = format!("{path}[{i}].rules[{j}]");
                    f.label(format!("{p}.name"), &rule.name, "rule name");
                    if !names.insert(rule.name.as_str()) {
                        f.add(
                            format!("{p}.name"),
                            format!("rule name {:?} is used twice in this list", rule.name),
                        );
                    }
                    if let Some(s) = rule.status {
                        if !(400..=599).contains(&s) {
                            f.add(
                                format!("{p}.status"),
                                format!("a block status must be 400–599, got {s}"),
                            );
                        }
                    }
                    let m = &rule.matcher;
                    let conditions = [
                        m.methods.is_some(),
                        m.path_exact.is_some(),
                        m.path_prefix.is_some(),
                        m.path_regex.is_some(),
                        m.header_present.is_some(),
                        m.header.is_some(),
                        m.query.is_some(),
                        m.body_larger_than.is_some(),
                    ];
                    if !conditions.contains(&true) {
                        f.add(format!("{p}.match"), "a rule needs at least one condition");
                    }
                    if let Some(methods) = &m.methods {
                        f.methods(&format!("{p}.match.methods"), methods);
                    }
                    for (key, v) in [("path_exact", &m.path_exact), ("path_prefix", &m.path_prefix)] {
                        if let Some(v) = v {
                            if !v.starts_with('/') {
                                f.add(format!("{p}.match.{key}"), format!("{v:?} must start with '/'"));
                            }
                        }
                    }
                    if let Some(r) = &m.path_regex {
                        f.regex(format!("{p}.match.path_regex"), r);
                    }
                    if let Some(h) = &m.header_present {
                        f.header_names(&format!("{p}.match.header_present"), std::slice::from_ref(h));
                    }
                    if let Some(h) = &m.header {
                        if HeaderName::from_bytes(h.name.as_bytes()).is_err() {
                            f.add(
                                format!("{p}.match.header.name"),
                                format!("{:?} is not a valid header name", h.name),
                            );
                        }
                        f.regex(format!("{p}.match.header.regex"), &h.regex);
                    }
                    if let Some(q) = &m.query {
                        f.regex(format!("{p}.match.query.regex"), &q.regex);
                    }
                }
            }
        }
    }
}

fn routes(f: &mut Findings, routes: &[RouteConfig]) {
    let mut names = HashSet::new();
    for (i, r) in routes.iter().enumerate() {
        let p = format!("routes[{i}]");
        f.label(format!("{p}.name"), &r.name, "route name");
        if r.name == "default" {
            f.add(
                format!("{p}.name"),
                "\"default\" is the name of requests no route matches; pick another",
            );
        }
        if !names.insert(r.name.as_str()) {
            f.add(format!("{p}.name"), format!("route name {:?} is used twice", r.name));
        }
        if let Some(prefix) = &r.matcher.path_prefix {
            if !prefix.starts_with('/') {
                f.add(
                    format!("{p}.match.path_prefix"),
                    format!("{prefix:?} must start with '/'"),
                );
            }
        }
        if let Some(host) = &r.matcher.host {
            if host.is_empty() || host.contains('/') {
                f.add(format!("{p}.match.host"), format!("{host:?} is not a host name"));
            }
        }
        if let Some(methods) = &r.matcher.methods {
            f.methods(&format!("{p}.match.methods"), methods);
        }
        if let Some(pct) = r.rollout.percent {
            f.percent(format!("{p}.rollout.percent"), pct);
        }
        if let Some(StickyKey::Global) = r.rollout.sticky {
            f.add(
                format!("{p}.rollout.sticky"),
                "\"global\" is a rate-limit key, not a sticky key",
            );
        }
        if let Some(pct) = r.shadow.percent {
            f.percent(format!("{p}.shadow.percent"), pct);
        }
        if let Some(m) = &r.shadow.methods {
            f.methods(&format!("{p}.shadow.methods"), m);
        }
        f.header_names(&format!("{p}.diff.ignore_headers"), &r.diff.ignore_headers);
        f.pointer_patterns(&format!("{p}.diff.ignore_fields"), &r.diff.ignore_fields);
        f.pointer_patterns(&format!("{p}.diff.unordered_arrays"), &r.diff.unordered_arrays);
        for (j, t) in r.diff.endpoints.iter().enumerate() {
            if let Err(e) = crate::report::endpoint::Template::parse(t) {
                f.add(format!("{p}.diff.endpoints[{j}]"), e);
            }
        }
        if let Some(t) = r.diff.float_tolerance {
            if !t.is_finite() || t < 0.0 {
                f.add(
                    format!("{p}.diff.float_tolerance"),
                    format!("must be 0 or more, got {t}"),
                );
            }
        }
        modules(f, &format!("{p}.modules"), &r.modules);
    }
}

fn etcd(f: &mut Findings, e: &crate::config::EtcdConfig) {
    const AT: &str = "rollout.store.etcd";
    if e.endpoints.is_empty() {
        f.add(
            format!("{AT}.endpoints"),
            "is empty; list etcd's client URLs, e.g. [\"http://127.0.0.1:2379\"]",
        );
    }
    for (i, url) in e.endpoints.iter().enumerate() {
        let ok = url
            .parse::<http::Uri>()
            .ok()
            .filter(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some());
        if ok.is_none() {
            f.add(
                format!("{AT}.endpoints[{i}]"),
                format!("{url:?} is not an http:// or https:// URL with a host, e.g. \"http://10.0.0.5:2379\""),
            );
        }
    }
    if !e.prefix.starts_with('/') || e.prefix.len() < 2 || e.prefix.ends_with('/') {
        f.add(
            format!("{AT}.prefix"),
            format!(
                "{:?} must start with / and name this migration without a trailing /, e.g. \"/switchyard/shop\"",
                e.prefix
            ),
        );
    }
    if e.username.is_some() != e.password_file.is_some() {
        f.add(
            format!("{AT}.username"),
            "username and password_file go together: set both or neither",
        );
    }
    if e.cert_file.is_some() != e.key_file.is_some() {
        f.add(
            format!("{AT}.cert_file"),
            "cert_file and key_file go together: set both or neither",
        );
    }
    for (key, path) in [
        ("password_file", &e.password_file),
        ("ca_file", &e.ca_file),
        ("cert_file", &e.cert_file),
        ("key_file", &e.key_file),
    ] {
        if let Some(p) = path {
            if let Err(err) = std::fs::metadata(p) {
                f.add(format!("{AT}.{key}"), format!("cannot read {}: {err}", p.display()));
            }
        }
    }
    let ttl = e.lease_ttl.get();
    if ttl < std::time::Duration::from_secs(2) || ttl.subsec_millis() != 0 {
        f.add(
            format!("{AT}.lease_ttl"),
            format!(
                "{} must be whole seconds, at least 2s (etcd leases count in seconds)",
                e.lease_ttl
            ),
        );
    }
    if e.dial_timeout.get().is_zero() {
        f.add(format!("{AT}.dial_timeout"), "must be more than 0, e.g. \"2s\"");
    }
}

fn webhooks(f: &mut Findings, hooks: &[crate::config::WebhookConfig]) {
    let mut names = std::collections::HashSet::new();
    for (i, h) in hooks.iter().enumerate() {
        let at = format!("rollout.webhooks[{i}]");
        if h.name.trim().is_empty() || !names.insert(h.name.as_str()) {
            f.add(
                format!("{at}.name"),
                format!(
                    "{:?}: every webhook needs a name of its own (it names the hook in /status and metrics)",
                    h.name
                ),
            );
        }
        let ok = h
            .url
            .parse::<http::Uri>()
            .ok()
            .filter(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some());
        if ok.is_none() {
            f.add(
                format!("{at}.url"),
                format!("{:?} is not an http:// or https:// URL", h.url),
            );
        }
        if h.events.is_empty() {
            f.add(
                format!("{at}.events"),
                "is empty; list what the hook hears (changed, rolled_back, …) or gates (pre_step, confirm_promotion)",
            );
        }
        if h.format == crate::config::WebhookFormat::Slack && h.events.iter().any(|e| e.is_gate()) {
            f.add(
                format!("{at}.format"),
                "a Slack incoming webhook cannot be a gate (it answers 200 to anything); give the gate its own hook",
            );
        }
        f.nonzero_duration(format!("{at}.timeout"), h.timeout);
        if let Some(p) = &h.secret_file {
            match std::fs::read_to_string(p) {
                Ok(s) if s.trim().is_empty() => f.add(format!("{at}.secret_file"), format!("{} is empty", p.display())),
                Ok(_) => {}
                Err(e) => f.add(format!("{at}.secret_file"), format!("cannot read {}: {e}", p.display())),
            }
        }
    }
}
