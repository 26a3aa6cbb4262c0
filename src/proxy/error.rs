//! The one error type of the live path, whose fault each kind is, and how
//! each is answered.
//!
//! Whose fault matters as much as the status: a backend's failure is counted
//! in `switchyard_upstream_errors_total` and judged by the guard; a client's
//! (a broken or stalled upload, a request no server may accept) is counted
//! in `switchyard_client_errors_total` and never judged, so no client can
//! move the rollout by sending garbage.

use std::time::Duration;

use http::{Response, StatusCode};

use super::body::ProxyBody;
use super::client_body::ClientFault;
use super::target::Refused;
use crate::side::Side;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Said to the client without `address` and `cause` (a backend's
    /// internals); the log line has both.
    #[error("could not connect to the {side} backend")]
    Connect {
        side: Side,
        address: std::sync::Arc<str>,
        cause: String,
    },
    #[error("TLS with the {side} backend failed: {detail}")]
    Tls { side: Side, detail: String },
    #[error("the {side} backend did not answer within {}", crate::config::duration::format(*.timeout))]
    Timeout { side: Side, timeout: Duration },
    #[error("the {side} backend failed: {detail}")]
    Upstream { side: Side, detail: String },
    #[error(
        "the {side} backend already has {limit} connections open (backends.{side}.max_connections) and none came free within {}",
        crate::config::duration::format(*.waited)
    )]
    Saturated { side: Side, limit: usize, waited: Duration },
    #[error("request body is larger than {limit} bytes")]
    BodyTooLarge { limit: u64 },
    /// The client's request body failed: its fault, not the backend's.
    #[error("the request body could not be read: {detail}")]
    Client {
        fault: ClientFault,
        detail: String,
        /// Counted already where it was found.
        counted: bool,
    },
    /// A request head no origin server may accept.
    #[error("{}", .0.message())]
    Refused(Refused),
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::Connect { .. } | ProxyError::Tls { .. } | ProxyError::Upstream { .. } => {
                StatusCode::BAD_GATEWAY
            }
            ProxyError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Saturated { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::Client {
                fault: ClientFault::Timeout,
                ..
            } => StatusCode::REQUEST_TIMEOUT,
            ProxyError::Client { .. } => StatusCode::BAD_REQUEST,
            ProxyError::Refused(Refused::Connect) => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::Refused(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// The `kind` label of `switchyard_upstream_errors_total`, for the
    /// backend's faults.
    pub fn upstream_kind(&self) -> Option<&'static str> {
        match self {
            ProxyError::Connect { .. } => Some("connect"),
            ProxyError::Tls { .. } => Some("tls"),
            ProxyError::Timeout { .. } => Some("timeout"),
            ProxyError::Upstream { .. } => Some("protocol"),
            ProxyError::Saturated { .. } => Some("max_connections"),
            _ => None,
        }
    }

    /// The `kind` label of `switchyard_client_errors_total`, for the
    /// client's faults.
    pub fn client_kind(&self) -> Option<&'static str> {
        match self {
            ProxyError::Client { fault, .. } => Some(fault.as_str()),
            ProxyError::BodyTooLarge { .. } => Some("body_too_large"),
            ProxyError::Refused(Refused::Host(_)) => Some("host"),
            ProxyError::Refused(Refused::Target(_)) => Some("target"),
            ProxyError::Refused(Refused::Connect) => Some("connect"),
            _ => None,
        }
    }

    /// Whether `switchyard_client_errors_total` still has to count it.
    pub fn uncounted_client_fault(&self) -> bool {
        !matches!(self, ProxyError::Client { counted: true, .. }) && self.client_kind().is_some()
    }

    /// Whether the backend (rather than the client) is at fault.
    pub fn is_upstream(&self) -> bool {
        self.upstream_kind().is_some()
    }

    /// The gRPC code a gRPC client gets for this failure. UNAVAILABLE says
    /// a retry is safe, so it is kept for requests that never reached the
    /// backend.
    pub fn grpc_code(&self) -> u32 {
        use super::grpc;
        match self {
            ProxyError::Connect { .. } | ProxyError::Tls { .. } | ProxyError::Saturated { .. } => grpc::UNAVAILABLE,
            ProxyError::Timeout { .. } => grpc::DEADLINE_EXCEEDED,
            ProxyError::Upstream { .. } => grpc::INTERNAL,
            other => grpc::code_for_status(other.status()),
        }
    }

    /// The answer for a gRPC client: trailers-only, with the gRPC code.
    pub fn into_grpc_response(&self) -> Response<ProxyBody> {
        super::grpc::trailers_only(self.grpc_code(), &format!("switchyard: {self}"))
    }

    /// A short plain-text answer; never the backend's internals.
    pub fn into_response(&self) -> Response<ProxyBody> {
        let mut r = plain(self.status(), format!("{self}\n"));
        if matches!(self, ProxyError::Refused(Refused::Connect)) {
            r.headers_mut().insert(
                http::header::ALLOW,
                http::HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
            );
        }
        if !self.is_upstream() {
            // After a broken request the connection's framing cannot be trusted.
            r.headers_mut()
                .insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
        }
        r
    }
}

/// Every `kind` of `switchyard_client_errors_total`, exported at zero.
pub const CLIENT_KINDS: &[&str] = &[
    "framing",
    "aborted",
    "timeout",
    "body_too_large",
    "host",
    "target",
    "connect",
];

/// Every `kind` of `switchyard_upstream_errors_total`, exported at zero.
pub const UPSTREAM_KINDS: &[&str] = &["connect", "tls", "timeout", "protocol", "max_connections"];

/// A small plain-text response generated by the gateway itself.
pub fn plain(status: StatusCode, text: impl Into<bytes::Bytes>) -> Response<ProxyBody> {
    let mut r = Response::new(ProxyBody::full(text.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
