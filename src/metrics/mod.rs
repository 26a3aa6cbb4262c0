//! Every Prometheus metric Switchyard exports, in one registry owned by the
//! app (never the process-global default), grouped by what they watch:
//! live traffic, mirrors, the rollout, the gateway's upkeep, and the edges
//! of connections. Handles are resolved once per route so the live path
//! does no label lookups.
//!
//! Labels are bounded by construction: `route` is a configured route name or
//! `default`, `backend` is `old`/`new`/`old_twin`, and every other label is a
//! fixed enum or a configured name. Nothing from a request (path, header,
//! user id) ever becomes a label value.

mod edge;
mod fleet;
mod live;
mod mirror;
mod rollout;
mod upkeep;

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry, TextEncoder,
};

pub use edge::{EdgeMetrics, HANDSHAKE_FAILURES};
pub use fleet::FleetMetrics;
pub use live::{ConnectionGauges, LiveMetrics, RouteMetrics, SideMetrics};
pub use mirror::{
    MirrorCounters, MirrorMetrics, CAPTURE_RESULTS, COMPARISON_RESULTS, MIRROR_BACKENDS, SHADOW_OUTCOMES,
};
pub use rollout::{RolloutMetrics, PHASES};
pub use upkeep::UpkeepMetrics;

/// Latency buckets for a proxy, in seconds: 100 µs to 10 s, roughly 1-2.5-5.
/// The one place they are defined; the docs quote this list.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// What clients asked and got.
    pub live: LiveMetrics,
    /// Mirrors, their comparisons, and the capture.
    pub mirror: MirrorMetrics,
    /// The rollout and its guard.
    pub rollout: RolloutMetrics,
    /// Reloads, the state file, the diff store, the logs.
    pub upkeep: UpkeepMetrics,
    /// TLS and upgraded connections.
    pub edge: EdgeMetrics,
    /// The fleet store (exported once [`Metrics::enable_fleet`] ran).
    pub fleet: FleetMetrics,
}

pub(super) fn plain_counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("metric definition");
    registry.register(Box::new(c.clone())).expect("metric registered once");
    c
}

pub(super) fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("metric definition");
    registry.register(Box::new(c.clone())).expect("metric registered once");
    c
}

pub(super) fn histogram(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()), labels)
        .expect("metric definition");
    registry.register(Box::new(h.clone())).expect("metric registered once");
    h
}

pub(super) fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let g = GaugeVec::new(Opts::new(name, help), labels).expect("metric definition");
    registry.register(Box::new(g.clone())).expect("metric registered once");
    g
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let r = &registry;
        #[cfg(target_os = "linux")]
        {
            let pc = prometheus::process_collector::ProcessCollector::for_self();
            let _ = r.register(Box::new(pc));
        }

        Self {
            live: LiveMetrics::new(r),
            mirror: MirrorMetrics::new(r),
            rollout: RolloutMetrics::new(r),
            upkeep: UpkeepMetrics::new(r),
            edge: EdgeMetrics::new(r),
            fleet: FleetMetrics::new(),
            registry,
        }
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

    /// Exports the fleet store's metrics (a gateway with `rollout.store`).
    pub fn enable_fleet(&self) {
        self.fleet.register(&self.registry);
    }

    /// Sets the one-hot phase gauge and the percent gauge.
    pub fn set_rollout(&self, percent: f64, phase: &str) {
        self.rollout.set(percent, phase);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        self.upkeep.sync_log_drops();
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

/// Encodes the registry, for the admin API.
pub fn content_type() -> &'static str {
    "text/plain; version=0.0.4; charset=utf-8"
}
