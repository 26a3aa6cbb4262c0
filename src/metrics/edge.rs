//! The edges of a connection: TLS handshakes and certificates, and
//! connections upgraded to another protocol.

use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry};

use super::{counter, gauge_vec};

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
    pub(super) fn new(r: &Registry) -> Self {
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
