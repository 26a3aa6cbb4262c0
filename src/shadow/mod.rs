//! Mirroring: a sampled request is sent to the other side (and to the twin)
//! at the same moment as the live one, and the answers go to the analysis
//! thread as a pair.
//!
//! A faulty shadow side can never cost live traffic:
//! - mirrors run on their own low-priority threads with their own backend
//!   pools and connection budget ([`runtime`]), never on a live worker;
//! - a shadow answer is read only up to the kept size, then its connection
//!   is closed (the pair is compared as truncated, on length and prefix);
//! - every mirrored byte held (bodies read ahead, copied, read, queued for
//!   analysis) counts against one budget, `shadow.max_buffered_bytes`;
//! - every bound (in-flight mirrors, bytes, the analysis queue, the
//!   deadline) drops and counts rather than waits.
//!
//! The live path's side is [`prepare`]; the mirror's is [`job`].

mod job;
pub mod prepare;
pub mod runtime;

use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::Duration;
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderMap, Method};
use prometheus::IntCounter;
use tokio::sync::Semaphore;

use crate::diff::Exchange;
use crate::metrics::{Metrics, MirrorCounters};
use crate::proxy::budget::{Budget, Hold};
use crate::side::Side;

pub(crate) use job::read_capped;
pub use prepare::{Candidate, Mirror, Upload};
pub use runtime::ShadowRuntime;

/// Whether an answer is an event stream (`text/event-stream`): streamed to
/// the client as it comes, never read whole for a comparison.
pub fn is_stream(headers: &http::HeaderMap) -> bool {
    // Bytes, not text: asked of every mirrored answer.
    headers.get(http::header::CONTENT_TYPE).is_some_and(|v| {
        let media = v.as_bytes().split(|&b| b == b';').next().unwrap_or_default();
        media.trim_ascii().eq_ignore_ascii_case(b"text/event-stream")
    })
}

/// A mirrored request and every answer to it, ready to compare.
pub struct Pair {
    pub route: Arc<str>,
    pub rules: Arc<crate::diff::rules::DiffRules>,
    pub method: Method,
    /// Path and query as the client sent them.
    pub target: String,
    pub request_headers: HeaderMap,
    pub request_body: Bytes,
    pub request_id: String,
    pub at: SystemTime,
    pub live: Side,
    pub old: Exchange,
    pub new: Exchange,
    pub twin: Option<Exchange>,
    /// Which latencies compare with old's (sent at the same instant).
    pub timed: Timed,
    /// Each side's time to its body's last bytes, where the kernel stamped it.
    pub ends: Ends,
    /// Every body above, held against the budget until the pair is analysed.
    pub hold: Hold,
}

/// Whether the sides of a pair went out at the same instant
/// ([`crate::proxy::wire::SAME_INSTANT`]): only then do their latencies
/// say anything of one backend against the other.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timed {
    /// Old and new.
    pub pair: bool,
    /// Old and the twin.
    pub twin: bool,
    /// The twin and the mirrored side: both sent by the mirror's task. When
    /// new is the mirrored side and old went out apart from it, the twin
    /// (old's copy) answered new's instant instead.
    pub twin_with_mirror: bool,
}

impl Timed {
    /// Every side sent together by one task (a replay).
    pub const TOGETHER: Timed = Timed {
        pair: true,
        twin: true,
        twin_with_mirror: true,
    };
}

/// Time from each side's request write to its body's last bytes, as the
/// kernel stamped them (plain HTTP/1.1 backends); `None` where unknown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ends {
    pub old: Option<Duration>,
    pub new: Option<Duration>,
    pub twin: Option<Duration>,
}

/// What the analysis thread is handed.
pub enum Work {
    /// Both sides answered: compare them, and count the result in the
    /// route's series.
    Compare(Box<Pair>, MirrorCounters),
    /// A side failed: nothing to compare, but the report counts it.
    Failed {
        route: Arc<str>,
        method: Method,
        target: String,
    },
}

/// Why a mirror was shed: the `reason` of `switchyard_shadow_drops_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shed {
    /// `shadow.max_in_flight` mirrors were already under way.
    InFlight = 0,
    /// Holding its bodies would pass `shadow.max_buffered_bytes`.
    BufferedBytes = 1,
    /// The analysis queue (`shadow.queue`) was full.
    Queue = 2,
    /// Every mirror connection to the side (`shadow.max_connections`) was
    /// busy past the backend's `queue_timeout`.
    Connections = 3,
}

impl Shed {
    pub const ALL: [Shed; 4] = [Shed::InFlight, Shed::BufferedBytes, Shed::Queue, Shed::Connections];

    pub const fn as_str(self) -> &'static str {
        match self {
            Shed::InFlight => "in_flight",
            Shed::BufferedBytes => "buffered_bytes",
            Shed::Queue => "queue",
            Shed::Connections => "max_connections",
        }
    }
}

/// Shared by every worker: the bounds on mirrors, the runtime they run on,
/// and the analysis queue.
#[derive(Clone)]
pub struct Dispatcher {
    in_flight: Arc<Semaphore>,
    budget: Arc<Budget>,
    runtime: Arc<ShadowRuntime>,
    queue: Option<SyncSender<Work>>,
    /// `switchyard_shadow_drops_total`, by [`Shed`], resolved once.
    drops: Arc<[IntCounter; 4]>,
}

impl Dispatcher {
    pub fn new(
        max_in_flight: usize,
        budget: Arc<Budget>,
        runtime: Arc<ShadowRuntime>,
        queue: Option<SyncSender<Work>>,
        metrics: &Metrics,
    ) -> Self {
        Self {
            in_flight: Arc::new(Semaphore::new(max_in_flight)),
            budget,
            runtime,
            queue,
            // Resolved once, which also exports every reason at zero.
            drops: Arc::new(Shed::ALL.map(|why| metrics.mirror.shadow_drops.with_label_values(&[why.as_str()]))),
        }
    }

    /// Counts a mirror, or a comparison, shed by one of the bounds.
    pub(crate) fn shed(&self, why: Shed) {
        self.drops[why as usize].inc();
    }

    /// Bytes of mirrored bodies held now.
    pub fn buffered_bytes(&self) -> usize {
        self.budget.used()
    }
}

#[cfg(test)]
mod tests {
    use super::is_stream;

    #[test]
    fn an_event_stream_is_known_by_its_media_type_alone() {
        let with = |value: &'static str| {
            let mut h = http::HeaderMap::new();
            h.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(value));
            is_stream(&h)
        };
        assert!(with("text/event-stream"));
        assert!(with("Text/Event-Stream; charset=utf-8"));
        assert!(with(" text/event-stream ;charset=utf-8"));
        assert!(!with("text/event-streams"));
        assert!(!with("application/json"));
        assert!(!with("text/plain; profile=text/event-stream"));
        assert!(!is_stream(&http::HeaderMap::new()));
    }
}
