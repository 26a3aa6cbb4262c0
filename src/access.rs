//! The access log: one line per request, written when the response body has
//! been sent (or abandoned), so it can say how many bytes went out.

use std::sync::Arc;
use std::time::Instant;

use crate::side::Side;

/// Everything the line says, gathered along the request path; logged on drop.
pub struct AccessRecord {
    pub method: http::Method,
    pub path: String,
    pub route: Arc<str>,
    pub side: Option<Side>,
    pub status: u16,
    pub started: Instant,
    pub tags: Vec<Arc<str>>,
    pub bytes: u64,
    /// The body was sent to its end (not cut off by the client or a failure).
    pub complete: bool,
    /// Why new's failure was answered by old (`rollout.fallback`), if it was.
    pub fallback: Option<&'static str>,
}

impl Drop for AccessRecord {
    fn drop(&mut self) {
        let tags: Vec<&str> = self.tags.iter().map(|t| &**t).collect();
        tracing::info!(
            target: "switchyard::access",
            method = self.method.as_str(),
            path = self.path.as_str(),
            route = &*self.route,
            side = self.side.map_or("none", Side::as_str),
            status = self.status,
            latency_ms = self.started.elapsed().as_secs_f64() * 1000.0,
            bytes = self.bytes,
            complete = self.complete,
            fallback = self.fallback.unwrap_or("none"),
            tags = ?tags,
            "request"
        );
    }
}
