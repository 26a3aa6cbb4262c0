//! Live traffic: what clients asked, what they got, from which side, and
//! whose fault a failure was.

use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, Registry};

use super::{counter, histogram};
use crate::side::Side;

#[derive(Clone)]
pub struct LiveMetrics {
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub upstream_errors: IntCounterVec,
    pub client_errors: IntCounterVec,
    pub module_decisions: IntCounterVec,
    pub fallbacks: IntCounterVec,
    pub connections_active: IntGauge,
    pub connections_parked: IntGauge,
    pub connections: IntCounter,
}

/// What a client connection's task updates.
pub struct ConnectionGauges {
    pub active: IntGauge,
    pub parked: IntGauge,
}

impl LiveMetrics {
    pub fn connection_gauges(&self) -> ConnectionGauges {
        ConnectionGauges {
            active: self.connections_active.clone(),
            parked: self.connections_parked.clone(),
        }
    }

    pub(super) fn new(r: &Registry) -> Self {
        let connections_active =
            IntGauge::new("switchyard_connections_active", "Client connections open now.").expect("metric definition");
        r.register(Box::new(connections_active.clone()))
            .expect("metric registered once");
        let connections_parked = IntGauge::new(
            "switchyard_connections_parked",
            "Client connections open now that are quiet and set aside: HTTP/1.1 over plain TCP, holding no buffers until the client writes again.",
        )
        .expect("metric definition");
        r.register(Box::new(connections_parked.clone()))
            .expect("metric registered once");
        let connections =
            IntCounter::new("switchyard_connections_total", "Client connections accepted.").expect("metric definition");
        r.register(Box::new(connections.clone()))
            .expect("metric registered once");
        let m = Self {
            fallbacks: counter(
                r,
                "switchyard_fallbacks_total",
                "Requests new failed (connect_error, timeout, 5xx) that old answered instead (rollout.fallback).",
                &["route", "reason"],
            ),
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
            upstream_errors: counter(
                r,
                "switchyard_upstream_errors_total",
                "Failures talking to a backend, by kind.",
                &["backend", "kind"],
            ),
            client_errors: counter(
                r,
                "switchyard_client_errors_total",
                "Requests that failed by the client's fault (a broken, aborted or stalled body, a request no server may accept); never counted against a backend.",
                &["kind"],
            ),
            module_decisions: counter(
                r,
                "switchyard_module_decisions_total",
                "Decisions taken by request modules.",
                &["module", "route", "decision"],
            ),
            connections_active,
            connections_parked,
            connections,
        };
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
        m
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
    pub fn new(m: &super::Metrics, route: &str) -> Self {
        let side = |backend: &str| SideMetrics {
            by_class: ["1xx", "2xx", "3xx", "4xx", "5xx"]
                .map(|class| m.live.requests.with_label_values(&[backend, route, class])),
            duration: m.live.request_duration.with_label_values(&[backend, route]),
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
