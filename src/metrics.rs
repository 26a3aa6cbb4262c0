//! Every Prometheus metric Switchyard exports, in one registry owned by the
//! app (never the process-global default), plus handles resolved once per
//! route so the live path does no label lookups.
//!
//! Labels are bounded by construction: `route` is a configured route name or
//! `default`, `backend` is `old`/`new`/`old_twin`, and every other label is a
//! fixed enum or a configured name. Nothing from a request (path, header,
//! user id) ever becomes a label value.

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

use std::sync::Arc;

use crate::side::Side;

/// Latency buckets for a proxy, in seconds: 100 µs to 10 s, roughly 1-2.5-5.
/// The one place they are defined; the docs quote this list.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Every `outcome` of `switchyard_shadow_requests_total`.
pub const SHADOW_OUTCOMES: &[&str] = &[
    "completed",
    "truncated",
    "dropped",
    "skipped_body",
    "error",
    "timeout",
    "cancelled",
    "skipped_upgrade",
    "skipped_stream",
];

/// Every `result` of `switchyard_comparisons_total`.
pub const COMPARISON_RESULTS: &[&str] = &["match", "diff", "accepted", "noise", "ignored", "error", "dropped"];

/// Phases as exported by the one-hot `switchyard_rollout_phase` gauge.
pub const PHASES: &[&str] = &["idle", "progressing", "paused", "promoted", "rolled_back"];

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub shadow_requests: IntCounterVec,
    pub comparisons: IntCounterVec,
    pub pair_duration: HistogramVec,
    pub rollout_percent: Gauge,
    pub rollout_phase: GaugeVec,
    pub rollbacks: IntCounterVec,
    pub upstream_errors: IntCounterVec,
    pub module_decisions: IntCounterVec,
    pub guard_value: GaugeVec,
    pub guard_threshold: GaugeVec,
    pub guard_progress: GaugeVec,
    pub connections_active: IntGauge,
    pub connections: IntCounter,
    pub config_reloads: IntCounterVec,
    pub samples_dropped: IntCounter,
    pub client_errors: IntCounterVec,
    pub shadow_drops: IntCounterVec,
    pub shadow_buffered_bytes: IntGauge,
    pub state_persist_failures: IntCounter,
    pub diff_store_write_failures: IntCounter,
    pub log_lines_dropped: IntCounterVec,
    /// Requests offered to `capture:`, by what became of them.
    pub captured: IntCounterVec,
    pub edge: EdgeMetrics,
}

/// Every `result` of `switchyard_captured_requests_total`.
pub const CAPTURE_RESULTS: &[&str] = &["written", "dropped", "skipped_body", "failed"];

/// What happens at the edges of a connection: TLS handshakes and
/// certificates, and connections upgraded to another protocol.
#[derive(Clone)]
pub struct EdgeMetrics {
    pub certificate_expiry: GaugeVec,
    pub handshakes: IntCounterVec,
    pub handshake_failures: IntCounterVec,
    pub upgraded: IntGaugeVec,
    pub upgraded_total: IntCounterVec,
}

/// Every `reason` of `switchyard_tls_handshake_failures_total`.
pub const HANDSHAKE_FAILURES: &[&str] = &[
    "timeout", "closed", "not_tls", "version", "cipher", "alpn", "alert", "protocol", "other",
];

impl EdgeMetrics {
    fn new(r: &Registry) -> Self {
        let upgraded = IntGaugeVec::new(
            Opts::new(
                "switchyard_upgraded_connections",
                "Connections upgraded (WebSocket and other Upgrade protocols) open now, by backend.",
            ),
            &["backend"],
        )
        .expect("metric definition");
        r.register(Box::new(upgraded.clone())).expect("metric registered once");
        let e = Self {
            certificate_expiry: gauge_vec(
                r,
                "switchyard_tls_certificate_expiry_timestamp_seconds",
                "When each served certificate expires (its notAfter), in Unix seconds, by its first name.",
                &["name"],
            ),
            handshakes: counter(
                r,
                "switchyard_tls_handshakes_total",
                "TLS handshakes completed on the TLS listener, by negotiated protocol (h2, http/1.1).",
                &["protocol"],
            ),
            handshake_failures: counter(
                r,
                "switchyard_tls_handshake_failures_total",
                "TLS handshakes that failed, by reason.",
                &["reason"],
            ),
            upgraded,
            upgraded_total: counter(
                r,
                "switchyard_upgraded_connections_total",
                "Connections upgraded (101 Switching Protocols), by backend.",
                &["backend"],
            ),
        };
        for reason in HANDSHAKE_FAILURES {
            e.handshake_failures.with_label_values(&[reason]);
        }
        for backend in ["old", "new"] {
            e.upgraded.with_label_values(&[backend]);
            e.upgraded_total.with_label_values(&[backend]);
        }
        e
    }
}

fn plain_counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("metric definition");
    registry.register(Box::new(c.clone())).expect("metric registered once");
    c
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("metric definition");
    registry.register(Box::new(c.clone())).expect("metric registered once");
    c
}

fn histogram(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()), labels)
        .expect("metric definition");
    registry.register(Box::new(h.clone())).expect("metric registered once");
    h
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let g = GaugeVec::new(Opts::new(name, help), labels).expect("metric definition");
    registry.register(Box::new(g.clone())).expect("metric registered once");
    g
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let r = &registry;
        let rollout_percent = Gauge::new(
            "switchyard_rollout_percent",
            "Share of live traffic served by new, in percent.",
        )
        .expect("metric definition");
        r.register(Box::new(rollout_percent.clone()))
            .expect("metric registered once");
        let connections_active =
            IntGauge::new("switchyard_connections_active", "Client connections open now.").expect("metric definition");
        r.register(Box::new(connections_active.clone()))
            .expect("metric registered once");
        let connections =
            IntCounter::new("switchyard_connections_total", "Client connections accepted.").expect("metric definition");
        r.register(Box::new(connections.clone()))
            .expect("metric registered once");
        let samples_dropped = IntCounter::new(
            "switchyard_guard_samples_dropped_total",
            "Live request samples the guard could not take because its queue was full.",
        )
        .expect("metric definition");
        r.register(Box::new(samples_dropped.clone()))
            .expect("metric registered once");

        #[cfg(target_os = "linux")]
        {
            let pc = prometheus::process_collector::ProcessCollector::for_self();
            let _ = r.register(Box::new(pc));
        }

        let m = Self {
            requests: counter(
                r,
                "switchyard_requests_total",
                "Live requests answered, by the side that served them.",
                &["backend", "route", "code_class"],
            ),
            request_duration: histogram(
                r,
                "switchyard_request_duration_seconds",
                "Live request latency through the gateway, by serving side.",
                &["backend", "route"],
            ),
            shadow_requests: counter(
                r,
                "switchyard_shadow_requests_total",
                "Mirrored requests, by target side and outcome.",
                &["backend", "route", "outcome"],
            ),
            comparisons: counter(
                r,
                "switchyard_comparisons_total",
                "Comparisons of old and new answers, by result.",
                &["route", "result"],
            ),
            pair_duration: histogram(
                r,
                "switchyard_pair_duration_seconds",
                "Latency of both sides of mirrored pairs.",
                &["backend", "route"],
            ),
            rollout_phase: gauge_vec(r, "switchyard_rollout_phase", "Rollout phase, one-hot.", &["phase"]),
            rollbacks: counter(r, "switchyard_rollbacks_total", "Rollbacks, by reason.", &["reason"]),
            upstream_errors: counter(
                r,
                "switchyard_upstream_errors_total",
                "Failures talking to a backend, by kind.",
                &["backend", "kind"],
            ),
            module_decisions: counter(
                r,
                "switchyard_module_decisions_total",
                "Decisions taken by request modules.",
                &["module", "route", "decision"],
            ),
            guard_value: gauge_vec(
                r,
                "switchyard_guard_check_value",
                "Latest value measured by each guard check.",
                &["check"],
            ),
            guard_threshold: gauge_vec(
                r,
                "switchyard_guard_check_threshold",
                "Threshold of each guard check.",
                &["check"],
            ),
            guard_progress: gauge_vec(
                r,
                "switchyard_guard_check_evidence",
                "How far each guard check is from failing the current test: ln(evidence) / ln(evidence needed); 1 or more fails.",
                &["check"],
            ),
            config_reloads: counter(
                r,
                "switchyard_config_reloads_total",
                "Config reloads, by result.",
                &["result"],
            ),
            client_errors: counter(
                r,
                "switchyard_client_errors_total",
                "Requests that failed by the client's fault (a broken, aborted or stalled body, a request no server may accept); never counted against a backend.",
                &["kind"],
            ),
            shadow_drops: counter(
                r,
                "switchyard_shadow_drops_total",
                "Mirrors or comparisons shed by a bound, by the bound that shed them.",
                &["reason"],
            ),
            shadow_buffered_bytes: {
                let g = IntGauge::new(
                    "switchyard_shadow_buffered_bytes",
                    "Bytes of mirrored bodies held now (read ahead, copied, being read, queued for analysis).",
                )
                .expect("metric definition");
                r.register(Box::new(g.clone())).expect("metric registered once");
                g
            },
            state_persist_failures: plain_counter(
                r,
                "switchyard_state_persist_failures_total",
                "Rollout state changes that could not be written to the state file.",
            ),
            diff_store_write_failures: plain_counter(
                r,
                "switchyard_diff_store_write_failures_total",
                "Records that could not be appended to the diff store.",
            ),
            log_lines_dropped: counter(
                r,
                "switchyard_log_lines_dropped_total",
                "Log lines dropped because the log writer fell behind, by sink.",
                &["sink"],
            ),
            captured: counter(
                r,
                "switchyard_captured_requests_total",
                "Live requests sampled by capture:, by what became of them (written, dropped when the writer fell behind, skipped_body when the body was over max_body_bytes, failed to write).",
                &["result"],
            ),
            edge: EdgeMetrics::new(r),
            rollout_percent,
            connections_active,
            connections,
            samples_dropped,
            registry,
        };
        for phase in PHASES {
            m.rollout_phase.with_label_values(&[phase]).set(0.0);
        }
        for reason in ["manual", "guard"] {
            m.rollbacks.with_label_values(&[reason]);
        }
        // Counters with known label values exist from the start, so that
        // rate() and alerts see a 0 rather than nothing.
        for kind in crate::proxy::error::CLIENT_KINDS {
            m.client_errors.with_label_values(&[kind]);
        }
        for backend in ["old", "new"] {
            for kind in crate::proxy::error::UPSTREAM_KINDS {
                m.upstream_errors.with_label_values(&[backend, kind]);
            }
        }
        for sink in ["log", "access"] {
            m.log_lines_dropped.with_label_values(&[sink]);
        }
        for result in CAPTURE_RESULTS {
            m.captured.with_label_values(&[result]);
        }
        m
    }

    /// Live requests served per side so far, over every route.
    pub fn served(&self) -> (u64, u64) {
        let mut old = 0;
        let mut new = 0;
        for family in self.registry.gather() {
            if family.get_name() != "switchyard_requests_total" {
                continue;
            }
            for m in family.get_metric() {
                let backend = m.get_label().iter().find(|l| l.get_name() == "backend");
                let v = m.get_counter().get_value() as u64;
                match backend.map(|l| l.get_value()) {
                    Some("old") => old += v,
                    Some("new") => new += v,
                    _ => {}
                }
            }
        }
        (old, new)
    }

    /// Sets the one-hot phase gauge and the percent gauge.
    pub fn set_rollout(&self, percent: f64, phase: &str) {
        self.rollout_percent.set(percent);
        for p in PHASES {
            self.rollout_phase
                .with_label_values(&[p])
                .set(if *p == phase { 1.0 } else { 0.0 });
        }
    }

    /// Brings `switchyard_log_lines_dropped_total` up to the log writers'
    /// own counts (they live outside the registry).
    pub fn sync_log_drops(&self) {
        for (sink, dropped) in crate::logging::dropped_lines() {
            let c = self.log_lines_dropped.with_label_values(&[sink]);
            let known = c.get();
            if dropped > known {
                c.inc_by(dropped - known);
            }
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        self.sync_log_drops();
        let mut buf = Vec::with_capacity(16 * 1024);
        let encoder = TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "metrics encoding failed");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Handles for one route and side, resolved when the snapshot is built.
#[derive(Clone)]
pub struct SideMetrics {
    by_class: [IntCounter; 5],
    pub duration: Histogram,
}

impl SideMetrics {
    pub fn count(&self, status: u16) {
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.by_class[class].inc();
    }
}

/// Per-route handles for both serving sides.
#[derive(Clone)]
pub struct RouteMetrics {
    pub old: SideMetrics,
    pub new: SideMetrics,
}

impl RouteMetrics {
    pub fn new(m: &Metrics, route: &str) -> Self {
        let side = |backend: &str| SideMetrics {
            by_class: ["1xx", "2xx", "3xx", "4xx", "5xx"]
                .map(|class| m.requests.with_label_values(&[backend, route, class])),
            duration: m.request_duration.with_label_values(&[backend, route]),
        };
        Self {
            old: side("old"),
            new: side("new"),
        }
    }

    pub fn side(&self, side: Side) -> &SideMetrics {
        match side {
            Side::New => &self.new,
            _ => &self.old,
        }
    }
}

/// Where mirrors go, as the `backend` label says it.
pub const MIRROR_BACKENDS: [&str; 4] = ["old", "new", "old_twin", "old_repeat"];

/// A mirrored route's `switchyard_shadow_requests_total` series (and its
/// comparison results), resolved once when the route is built: they exist
/// at zero from the start, and counting one costs no label lookup on the
/// live path.
#[derive(Clone)]
pub struct MirrorCounters {
    series: Arc<[[IntCounter; SHADOW_OUTCOMES.len()]; MIRROR_BACKENDS.len()]>,
}

impl MirrorCounters {
    pub fn new(m: &Metrics, route: &str) -> Self {
        for result in COMPARISON_RESULTS {
            m.comparisons.with_label_values(&[route, result]);
        }
        Self {
            series: Arc::new(MIRROR_BACKENDS.map(|b| {
                std::array::from_fn(|i| m.shadow_requests.with_label_values(&[b, route, SHADOW_OUTCOMES[i]]))
            })),
        }
    }

    /// Counts one outcome (names from [`MIRROR_BACKENDS`], [`SHADOW_OUTCOMES`]).
    pub fn inc(&self, backend: &str, outcome: &str) {
        let b = MIRROR_BACKENDS.iter().position(|x| *x == backend);
        let o = SHADOW_OUTCOMES.iter().position(|x| *x == outcome);
        debug_assert!(b.is_some() && o.is_some(), "unknown mirror series {backend}/{outcome}");
        if let (Some(b), Some(o)) = (b, o) {
            self.series[b][o].inc();
        }
    }
}

/// Encodes the registry, for the admin API.
pub fn content_type() -> &'static str {
    "text/plain; version=0.0.4; charset=utf-8"
}
