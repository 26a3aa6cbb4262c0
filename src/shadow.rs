//! Mirroring: a sampled request is sent to the other side (and to the twin)
//! at the same moment as the live one, on its own task, and the two answers
//! go to the analysis thread as a pair.
//!
//! The live request never waits on a mirror: the mirror task owns its own
//! copy of the request, the live response streams through a tee that only
//! keeps references to its chunks, and every bound (body size, in-flight
//! mirrors, the mirror's deadline, the analysis queue) drops and counts
//! rather than waits.

use std::collections::VecDeque;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, Request};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::{oneshot, Semaphore};

use crate::diff::Exchange;
use crate::metrics::Metrics;
use crate::proxy::body::BoxError;
use crate::proxy::forward::{Upstream, Upstreams};
use crate::proxy::headers::X_SHADOW;
use crate::proxy::tee::{Captured, Tee};
use crate::proxy::{Inbound, ProxyBody};
use crate::route::Route;
use crate::side::Side;
use crate::snapshot::Snapshot;

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
}

/// What the analysis thread is handed.
pub enum Work {
    /// Both sides answered: compare them.
    Compare(Box<Pair>),
    /// A side failed: nothing to compare, but the report counts it.
    Failed {
        route: Arc<str>,
        method: Method,
        target: String,
    },
}

/// Shared by every worker: the in-flight bound and the analysis queue.
#[derive(Clone)]
pub struct Dispatcher {
    in_flight: Arc<Semaphore>,
    queue: Option<SyncSender<Work>>,
    metrics: Metrics,
}

impl Dispatcher {
    pub fn new(max_in_flight: usize, queue: Option<SyncSender<Work>>, metrics: Metrics) -> Self {
        Self {
            in_flight: Arc::new(Semaphore::new(max_in_flight)),
            queue,
            metrics,
        }
    }

    pub(crate) fn count(&self, backend: &str, route: &str, outcome: &str) {
        self.metrics
            .shadow_requests
            .with_label_values(&[backend, route, outcome])
            .inc();
    }
}

/// What the live path gives the mirror task: the live answer's head, and
/// later its body.
enum LiveOutcome {
    Head {
        status: u16,
        headers: HeaderMap,
        latency: Duration,
        body: oneshot::Receiver<Captured>,
    },
    Failed {
        error: String,
        latency: Duration,
    },
}

/// The live path's end of a mirror; inert when the request is not mirrored.
pub struct Mirror {
    tx: Option<oneshot::Sender<LiveOutcome>>,
    started: Instant,
    cap: usize,
}

impl Mirror {
    pub fn none() -> Self {
        Self {
            tx: None,
            started: Instant::now(),
            cap: 0,
        }
    }

    /// Wraps the live response body in a tee when mirrored.
    pub fn attach(self, body: Inbound, head: &http::response::Parts) -> ProxyBody {
        let Some(tx) = self.tx else {
            return ProxyBody::stream(body);
        };
        let (tee, rx) = Tee::new(body, self.cap);
        let _ = tx.send(LiveOutcome::Head {
            status: head.status.as_u16(),
            headers: head.headers.clone(),
            latency: self.started.elapsed(),
            body: rx,
        });
        ProxyBody::Tee { inner: tee }
    }

    /// The live side failed before answering.
    pub fn abandon(self) {
        if let Some(tx) = self.tx {
            let _ = tx.send(LiveOutcome::Failed {
                error: "live request failed".into(),
                latency: self.started.elapsed(),
            });
        }
    }
}

/// Decides whether to mirror, reads a small request body ahead so both sides
/// get it, and starts the mirror task. Returns the body for the live request.
#[allow(clippy::too_many_arguments)]
pub async fn prepare(
    dispatcher: &Dispatcher,
    snap: &Snapshot,
    route: &Route,
    upstreams: &Arc<Upstreams>,
    live: Side,
    parts: &http::request::Parts,
    body: Incoming,
    request_id: &HeaderValue,
) -> (ProxyBody, Mirror) {
    if route.shadow.percent < 100.0 && rand::random::<f64>() * 100.0 >= route.shadow.percent {
        return (ProxyBody::stream(body), Mirror::none());
    }
    let target = live.other();
    let baseline = choose_baseline(snap, upstreams, &parts.method);
    let skip = |outcome: &str| {
        dispatcher.count(target.as_str(), &route.name, outcome);
        if let Some(b) = baseline {
            dispatcher.count(b.label, &route.name, outcome);
        }
    };

    // The request body, if small enough to send twice.
    let (live_body, shadow_body) = match read_ahead(body, parts, route.shadow.max_body_bytes).await {
        ReadAhead::Whole(bytes) => (ProxyBody::full(bytes.clone()), bytes),
        ReadAhead::TooLarge(body) => {
            skip("skipped_body");
            return (body, Mirror::none());
        }
        ReadAhead::Failed => {
            // The client's body broke; the live request will fail the same way.
            return (ProxyBody::empty(), Mirror::none());
        }
    };

    let Ok(permit) = dispatcher.in_flight.clone().try_acquire_owned() else {
        skip("dropped");
        return (live_body, Mirror::none());
    };

    let (tx, rx) = oneshot::channel();
    let cfg = &snap.config.shadow;
    let job = Job {
        dispatcher: dispatcher.clone(),
        upstreams: upstreams.clone(),
        route: route.name.clone(),
        rules: route.diff.clone(),
        live,
        method: parts.method.clone(),
        target: parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_string(),
        headers: parts.headers.clone(),
        uri: parts.uri.clone(),
        version: parts.version,
        body: shadow_body,
        baseline,
        request_id: request_id.to_str().unwrap_or("").to_string(),
        timeout: cfg.timeout.get(),
        cap: cfg.max_response_bytes,
    };
    tokio::spawn(async move {
        job.run(rx).await;
        drop(permit);
    });
    (
        live_body,
        Mirror {
            tx: Some(tx),
            started: Instant::now(),
            cap: cfg.max_response_bytes,
        },
    )
}

/// Where the noise baseline of a mirrored request comes from.
#[derive(Clone, Copy, Debug)]
struct Baseline {
    side: Side,
    /// The `backend` label its outcomes are counted under.
    label: &'static str,
}

/// The twin when there is one; otherwise, for a sample of safe requests,
/// `old` asked a second time (what old disagrees with itself on is noise).
fn choose_baseline(snap: &Snapshot, upstreams: &Upstreams, method: &Method) -> Option<Baseline> {
    if upstreams.old_twin.is_some() {
        return Some(Baseline {
            side: Side::OldTwin,
            label: "old_twin",
        });
    }
    let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    let pct = snap.config.diff.noise.repeat_percent;
    (safe && pct > 0.0 && rand::random::<f64>() * 100.0 < pct).then_some(Baseline {
        side: Side::Old,
        label: "old_repeat",
    })
}

enum ReadAhead {
    Whole(Bytes),
    TooLarge(ProxyBody),
    Failed,
}

/// Reads up to `cap` bytes of the body; a longer body is handed back intact
/// (the chunks already read, then the rest) for the live request alone.
async fn read_ahead(mut body: Incoming, parts: &http::request::Parts, cap: usize) -> ReadAhead {
    if body.is_end_stream() {
        return ReadAhead::Whole(Bytes::new());
    }
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > cap as u64) {
        return ReadAhead::TooLarge(ProxyBody::stream(body));
    }
    let mut chunks: VecDeque<Bytes> = VecDeque::new();
    let mut len = 0usize;
    loop {
        match body.frame().await {
            None => break,
            Some(Err(_)) => return ReadAhead::Failed,
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    len += data.len();
                    chunks.push_back(data);
                    if len > cap {
                        return ReadAhead::TooLarge(ProxyBody::Prefixed {
                            prefix: chunks,
                            rest: body.into(),
                        });
                    }
                }
            }
        }
    }
    let mut whole = BytesMut::with_capacity(len);
    for c in chunks {
        whole.extend_from_slice(&c);
    }
    ReadAhead::Whole(whole.freeze())
}

/// Everything a mirror task owns.
struct Job {
    dispatcher: Dispatcher,
    upstreams: Arc<Upstreams>,
    route: Arc<str>,
    rules: Arc<crate::diff::rules::DiffRules>,
    live: Side,
    method: Method,
    target: String,
    headers: HeaderMap,
    uri: http::Uri,
    version: http::Version,
    body: Bytes,
    baseline: Option<Baseline>,
    request_id: String,
    timeout: Duration,
    cap: usize,
}

impl Job {
    fn request(&self, upstream: &Upstream) -> Request<ProxyBody> {
        let mut req = Request::new(ProxyBody::full(self.body.clone()));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.version_mut() = self.version;
        *req.headers_mut() = self.headers.clone();
        req.headers_mut().insert(&X_SHADOW, HeaderValue::from_static("1"));
        let (mut parts, body) = req.into_parts();
        upstream.aim(&mut parts);
        Request::from_parts(parts, body)
    }

    /// Sends to one side and reads its answer, within the deadline.
    async fn exchange(&self, side: Side) -> Result<Exchange, &'static str> {
        let Some(upstream) = self.upstreams.get(side) else {
            return Err("error");
        };
        let started = Instant::now();
        let work = async {
            let resp = upstream
                .send_within(self.request(upstream), self.timeout)
                .await
                .map_err(|e| {
                    if matches!(e, crate::proxy::ProxyError::Timeout { .. }) {
                        "timeout"
                    } else {
                        "error"
                    }
                })?;
            let latency = started.elapsed();
            let (parts, body) = resp.into_parts();
            let (body, truncated) = read_capped(body, self.cap).await.map_err(|_| "error")?;
            Ok(Exchange {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body,
                truncated,
                latency,
            })
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err("timeout"),
        }
    }

    async fn run(self, live_rx: oneshot::Receiver<LiveOutcome>) {
        let target = self.live.other();
        let baseline = self.baseline;
        let shadow = self.exchange(target);
        let twin_fut = async {
            match baseline {
                Some(b) => Some(self.exchange(b.side).await),
                None => None,
            }
        };
        let live = async {
            let outcome = live_rx.await.ok()?;
            match outcome {
                LiveOutcome::Head {
                    status,
                    headers,
                    latency,
                    body,
                } => {
                    let captured = body.await.ok()?;
                    (!captured.failed).then_some(Ok(Exchange {
                        status,
                        headers,
                        body: captured.body,
                        truncated: captured.truncated,
                        latency,
                    }))
                }
                LiveOutcome::Failed { error, latency } => Some(Err((error, latency))),
            }
        };
        let (shadow, twin_res, live) = tokio::join!(shadow, twin_fut, live);

        let Some(live) = live else {
            // The client went away: no comparison for a half-seen answer.
            self.dispatcher.count(target.as_str(), &self.route, "cancelled");
            if let Some(b) = baseline {
                self.dispatcher.count(b.label, &self.route, "cancelled");
            }
            return;
        };
        let route = &self.route;
        let outcome = |r: &Result<Exchange, &'static str>| match r {
            Ok(_) => "completed",
            Err(o) => o,
        };
        self.dispatcher.count(target.as_str(), route, outcome(&shadow));
        if let (Some(t), Some(b)) = (&twin_res, baseline) {
            self.dispatcher.count(b.label, route, outcome(t));
        }
        let m = &self.dispatcher.metrics;
        let (live, shadow) = match (live, shadow) {
            (Ok(live), Ok(shadow)) => (live, shadow),
            _ => {
                m.comparisons.with_label_values(&[route, "error"]).inc();
                let failed = Work::Failed {
                    route: self.route.clone(),
                    method: self.method,
                    target: self.target,
                };
                if let Some(q) = &self.dispatcher.queue {
                    let _ = q.try_send(failed);
                }
                return;
            }
        };
        m.pair_duration
            .with_label_values(&[self.live.as_str(), route])
            .observe(live.latency.as_secs_f64());
        m.pair_duration
            .with_label_values(&[target.as_str(), route])
            .observe(shadow.latency.as_secs_f64());
        let (old, new) = if self.live == Side::New {
            (shadow, live)
        } else {
            (live, shadow)
        };
        let pair = Pair {
            route: self.route.clone(),
            rules: self.rules.clone(),
            method: self.method,
            target: self.target,
            request_headers: self.headers,
            request_body: self.body,
            request_id: self.request_id,
            at: SystemTime::now(),
            live: self.live,
            old,
            new,
            twin: twin_res.and_then(Result::ok),
        };
        if let Some(q) = &self.dispatcher.queue {
            if let Err(TrySendError::Full(_)) = q.try_send(Work::Compare(Box::new(pair))) {
                // Analysis is behind: shed the comparison, not the traffic.
                m.comparisons.with_label_values(&[&self.route, "dropped"]).inc();
            }
        }
    }
}

/// Reads a body, keeping at most `cap` bytes but draining the rest so the
/// connection can be reused.
async fn read_capped(body: Inbound, cap: usize) -> Result<(Bytes, bool), BoxError> {
    let mut body = std::pin::pin!(body);
    let mut buf = BytesMut::new();
    let mut truncated = false;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            let room = cap.saturating_sub(buf.len());
            if data.len() > room {
                truncated = true;
                buf.extend_from_slice(&data[..room]);
            } else {
                buf.extend_from_slice(&data);
            }
        }
    }
    Ok((buf.freeze(), truncated))
}
