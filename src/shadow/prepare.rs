//! The live path's side of a mirror: decide whether this request is
//! mirrored, read a small request body ahead so both sides get it, hand the
//! mirror to the shadow runtime, and keep the end ([`Mirror`]) through which
//! the live answer reaches the comparison. Everything here is bounded and
//! non-blocking: a mirror that does not fit a bound is skipped and counted.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Method};
use http_body::Body as _;
use http_body_util::BodyExt;
use tokio::sync::oneshot;

use super::job::{Baseline, Job};
use super::Dispatcher;
use super::Shed;
use crate::proxy::budget::Hold;
use crate::proxy::client_body::{ClientBody, ClientError};
use crate::proxy::tee::{LiveHead, LiveOutcome, Tee};
use crate::proxy::wire::Timing;
use crate::proxy::{Inbound, ProxyBody, ProxyError};
use crate::route::Route;
use crate::side::Side;
use crate::snapshot::Snapshot;

/// A live request that may be mirrored, as the live path knows it.
pub struct Candidate<'a> {
    pub snap: &'a Arc<Snapshot>,
    pub route: &'a Route,
    /// The side serving it live; the mirror goes to the other.
    pub live: Side,
    pub parts: &'a http::request::Parts,
    pub request_id: &'a HeaderValue,
}

/// The live path's end of a mirror; inert when the request is not mirrored.
pub struct Mirror {
    tx: Option<oneshot::Sender<LiveOutcome>>,
    started: Instant,
    /// The same instant on the wall clock: when the live request went out,
    /// for a backend whose client does not time its exchanges.
    started_at: std::time::SystemTime,
    cap: usize,
    hold: Option<Hold>,
}

impl Mirror {
    pub fn none() -> Self {
        Self {
            tx: None,
            started: Instant::now(),
            started_at: std::time::SystemTime::now(),
            cap: 0,
            hold: None,
        }
    }

    /// Wraps the live response body in a tee when mirrored; `timing` is
    /// the live exchange's, when its transport timed it.
    pub fn attach(self, body: Inbound, head: &http::response::Parts, timing: Option<Timing>) -> ProxyBody {
        let (Some(tx), Some(hold)) = (self.tx, self.hold) else {
            return ProxyBody::stream(body);
        };
        if crate::shadow::is_stream(&head.headers) {
            let _ = tx.send(LiveOutcome::Stream);
            return ProxyBody::stream(body);
        }
        let head = LiveHead {
            status: head.status.as_u16(),
            headers: head.headers.clone(),
            latency: timing.map_or_else(|| self.started.elapsed(), |t| t.to_head()),
            sent: Some(timing.map_or(self.started_at, |t| t.sent)),
        };
        let tee = Tee::new(body, head, self.cap, hold, tx);
        ProxyBody::Tee { inner: Box::new(tee) }
    }

    /// Whether a mirror waits for the live answer: then the live request
    /// is timed as the mirrored one is ([`Timing`]).
    pub fn is_active(&self) -> bool {
        self.tx.is_some()
    }

    /// The live side failed before answering.
    pub fn abandon(self) {
        if let Some(tx) = self.tx {
            let _ = tx.send(LiveOutcome::Failed);
        }
    }
}

/// The twin when there is one; otherwise, for a sample of safe requests,
/// `old` asked a second time (what old disagrees with itself on is noise).
fn choose_baseline(snap: &Snapshot, method: &Method) -> Option<Baseline> {
    if snap.config.backends.old_twin.is_some() {
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

/// A live request's body as it reaches the mirror: not there, still on
/// the socket, or already read ahead (for the capture) and held.
pub enum Upload {
    None,
    Streaming(ClientBody),
    /// Read whole ahead of forwarding, held against the byte budget.
    Held(Bytes, Hold),
    /// Read partly ahead and found longer than anyone wanted: streams on.
    Long(ProxyBody),
}

impl From<Option<ClientBody>> for Upload {
    fn from(body: Option<ClientBody>) -> Self {
        body.map_or(Upload::None, Upload::Streaming)
    }
}

impl Upload {
    /// The body to forward.
    pub fn into_body(self) -> ProxyBody {
        match self {
            Upload::None => ProxyBody::empty(),
            Upload::Streaming(b) => ProxyBody::stream(b),
            Upload::Held(bytes, _) => ProxyBody::full(bytes),
            Upload::Long(body) => body,
        }
    }

    /// The whole body, when it is known.
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Upload::None => Some(&[]),
            Upload::Held(b, _) => Some(b),
            _ => None,
        }
    }
}

fn live_only(body: Upload) -> ProxyBody {
    body.into_body()
}

impl Dispatcher {
    /// Decides whether to mirror `c`, reads a small request body ahead so
    /// both sides get it, and starts the mirror on the shadow runtime.
    /// Returns the body for the live request, or the client's error when its
    /// body broke while it was read ahead.
    pub async fn prepare(&self, c: Candidate<'_>, body: Upload) -> Result<(ProxyBody, Mirror), ProxyError> {
        let Candidate {
            snap,
            route,
            live,
            parts,
            request_id,
        } = c;
        let Some(counters) = route.mirrors.as_ref() else {
            return Ok((live_only(body), Mirror::none()));
        };
        if route.shadow.percent < 100.0 && rand::random::<f64>() * 100.0 >= route.shadow.percent {
            return Ok((live_only(body), Mirror::none()));
        }
        let target = live.other();
        let baseline = choose_baseline(snap, &parts.method);
        let count = |outcome: &str| {
            counters.inc(target.as_str(), outcome);
            if let Some(b) = baseline {
                counters.inc(b.label, outcome);
            }
        };

        let streaming_call = crate::proxy::grpc::is_grpc(&parts.headers)
            && route.diff.grpc.as_ref().is_some_and(|g| g.streams(parts.uri.path()));
        if streaming_call {
            count("skipped_stream");
            return Ok((live_only(body), Mirror::none()));
        }
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            count("dropped");
            self.shed(Shed::InFlight);
            return Ok((live_only(body), Mirror::none()));
        };

        // The request body, if small enough to send twice.
        let mut hold = self.budget.hold();
        let (live_body, shadow_body) = match body {
            Upload::None => (ProxyBody::empty(), Bytes::new()),
            Upload::Held(bytes, held) if bytes.len() <= route.shadow.max_body_bytes => {
                hold.absorb(held);
                (ProxyBody::full(bytes.clone()), bytes)
            }
            Upload::Held(..) | Upload::Long(_) => {
                count("skipped_body");
                return Ok((body.into_body(), Mirror::none()));
            }
            Upload::Streaming(body) => match read_ahead(body, parts, route.shadow.max_body_bytes, &mut hold).await {
                ReadAhead::Whole(bytes) => (ProxyBody::full(bytes.clone()), bytes),
                ReadAhead::TooLarge(body) => {
                    count("skipped_body");
                    return Ok((body, Mirror::none()));
                }
                ReadAhead::OverBudget(body) => {
                    count("dropped");
                    self.shed(Shed::BufferedBytes);
                    return Ok((body, Mirror::none()));
                }
                ReadAhead::Failed(e) => return Err(e),
            },
        };

        let (tx, rx) = oneshot::channel();
        let cfg = &snap.config.shadow;
        let job = Job {
            dispatcher: self.clone(),
            counters: counters.clone(),
            snap: snap.clone(),
            route: route.name.clone(),
            rules: route.diff.clone(),
            live,
            method: parts.method.clone(),
            target: parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_string(),
            headers: parts.headers.clone(),
            uri: parts.uri.clone(),
            version: parts.version,
            body: shadow_body,
            hold,
            baseline,
            request_id: request_id.to_str().unwrap_or("").to_string(),
            timeout: cfg.timeout.get(),
            cap: cfg.max_response_bytes,
        };
        // Boxed: the task then holds a pointer, and tokio's moves of it (at
        // spawn, and when the task's stage is set on completion) copy a few
        // bytes, not the job's 3 KB.
        let run = Box::pin(job.run(rx));
        self.runtime.spawn(async move {
            run.await;
            drop(permit);
        });
        Ok((
            live_body,
            Mirror {
                tx: Some(tx),
                started: Instant::now(),
                started_at: std::time::SystemTime::now(),
                cap: cfg.max_response_bytes,
                hold: Some(self.budget.hold()),
            },
        ))
    }
}

impl Dispatcher {
    /// Reads up to `cap` bytes of a streaming body ahead of forwarding,
    /// held against the mirrors' byte budget (what capture needs to record
    /// a body). A longer body, or one over the budget, streams on.
    pub async fn read_ahead(
        &self,
        body: Upload,
        parts: &http::request::Parts,
        cap: usize,
    ) -> Result<Upload, ProxyError> {
        let Upload::Streaming(body) = body else {
            return Ok(body);
        };
        let mut hold = self.budget.hold();
        match read_ahead(body, parts, cap, &mut hold).await {
            ReadAhead::Whole(bytes) => Ok(Upload::Held(bytes, hold)),
            ReadAhead::TooLarge(body) => Ok(Upload::Long(body)),
            ReadAhead::OverBudget(body) => {
                self.shed(Shed::BufferedBytes);
                Ok(Upload::Long(body))
            }
            ReadAhead::Failed(e) => Err(e),
        }
    }
}

enum ReadAhead {
    Whole(Bytes),
    /// Longer than the mirror's limit: the live request alone gets it.
    TooLarge(ProxyBody),
    /// No room in the byte budget: the live request alone gets it.
    OverBudget(ProxyBody),
    Failed(ProxyError),
}

/// Reads up to `cap` bytes of the body, held against `hold`; a longer body
/// (or one that does not fit the budget) is handed back intact (the chunks
/// already read, then the rest) for the live request alone.
async fn read_ahead(mut body: ClientBody, parts: &http::request::Parts, cap: usize, hold: &mut Hold) -> ReadAhead {
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
    let give_back = |chunks: VecDeque<Bytes>, body: ClientBody| ProxyBody::Prefixed {
        prefix: chunks,
        rest: body.into(),
    };
    loop {
        match body.frame().await {
            None => break,
            Some(Err(e)) => {
                let (fault, detail, counted) = match ClientError::find(e.as_ref()) {
                    Some(c) => (c.fault, c.detail.clone(), c.counted),
                    None => (crate::proxy::client_body::ClientFault::Framing, e.to_string(), false),
                };
                return ReadAhead::Failed(ProxyError::Client { fault, detail, counted });
            }
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    len += data.len();
                    let fits = hold.try_grow(data.len());
                    chunks.push_back(data);
                    if len > cap {
                        return ReadAhead::TooLarge(give_back(chunks, body));
                    }
                    if !fits {
                        return ReadAhead::OverBudget(give_back(chunks, body));
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
