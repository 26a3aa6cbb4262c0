//! The mirror's side, run on the shadow runtime: send the request to the
//! other side (and the baseline), read each answer up to the kept size under
//! the byte budget, wait for the live answer's copy, and hand the pair to
//! the analysis thread; count every outcome.

use std::sync::mpsc::TrySendError;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, Request};
use http_body_util::BodyExt;
use tokio::sync::oneshot;

use super::{Dispatcher, Pair, Shed, Work};
use crate::diff::Exchange;
use crate::proxy::budget::Hold;
use crate::proxy::forward::{Upstream, Upstreams};
use crate::proxy::headers::X_SHADOW;
use crate::proxy::tee::{LiveHead, LiveOutcome};
use crate::proxy::{Inbound, ProxyBody, ProxyError};
use crate::side::Side;
use crate::snapshot::Snapshot;

/// Where the noise baseline of a mirrored request comes from.
#[derive(Clone, Copy, Debug)]
pub(super) struct Baseline {
    pub side: Side,
    /// The `backend` label its outcomes are counted under.
    pub label: &'static str,
}

/// Everything a mirror task owns.
pub(super) struct Job {
    pub dispatcher: Dispatcher,
    pub counters: crate::metrics::MirrorCounters,
    pub snap: Arc<Snapshot>,
    pub route: Arc<str>,
    pub rules: Arc<crate::diff::rules::DiffRules>,
    pub live: Side,
    pub method: Method,
    pub target: String,
    pub headers: HeaderMap,
    pub uri: http::Uri,
    pub version: http::Version,
    pub body: Bytes,
    /// The request body's bytes, against the budget.
    pub hold: Hold,
    pub baseline: Option<Baseline>,
    pub request_id: String,
    pub timeout: Duration,
    pub cap: usize,
}

/// How one mirrored exchange ended, when it gave nothing to compare: the
/// `outcome` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failed {
    Error,
    Timeout,
    /// The budget could not hold the answer.
    Dropped,
    /// Every mirror connection to the side was busy past its queue time
    /// (`shadow.max_connections`): the gateway's own bound, not the side's
    /// failure.
    Saturated,
    /// An event stream: never read to its end, never compared.
    Stream,
}

impl Failed {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Failed::Error => "error",
            Failed::Timeout => "timeout",
            Failed::Dropped | Failed::Saturated => "dropped",
            Failed::Stream => "skipped_stream",
        }
    }
}

/// An answer, its bytes' hold, and when its request went out.
/// The fourth: time from the write to the body's last bytes, where the
/// kernel stamped both.
type Answer = Result<(Exchange, Hold, Option<SystemTime>, Option<Duration>), Failed>;

fn outcome(answer: &Answer) -> &'static str {
    match answer {
        Ok((x, ..)) if x.truncated => "truncated",
        Ok(_) => "completed",
        Err(f) => f.as_str(),
    }
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
    async fn exchange(&self, upstreams: &Upstreams, side: Side) -> Answer {
        let Some(upstream) = upstreams.get(side) else {
            return Err(Failed::Error);
        };
        let started = Instant::now();
        let started_at = SystemTime::now();
        let work = async {
            // Head and body under the one deadline below.
            let (resp, timing) = upstream
                .send_timed_under_callers_deadline(self.request(upstream))
                .await
                .map_err(|e| match e {
                    ProxyError::Timeout { .. } => Failed::Timeout,
                    ProxyError::Saturated { .. } => Failed::Saturated,
                    _ => Failed::Error,
                })?;
            let (parts, body) = resp.into_parts();
            let latency = timing.map_or_else(|| started.elapsed(), |t| t.to_head());
            if super::is_stream(&parts.headers) {
                // Dropping the body closes the connection: the stream is
                // never read on the mirrors' side.
                return Err(Failed::Stream);
            }
            let mut hold = self.dispatcher.budget.hold();
            let read = read_capped(body, self.cap, &mut hold).await?;
            let (exchange, to_end) = read.into_exchange(parts, latency, timing);
            Ok((exchange, hold, Some(timing.map_or(started_at, |t| t.sent)), to_end))
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(Failed::Timeout),
        }
    }

    pub(super) async fn run(self, live_rx: oneshot::Receiver<LiveOutcome>) {
        let target = self.live.other();
        let baseline = self.baseline;
        let upstreams = match self.dispatcher.runtime.upstreams(&self.snap) {
            Ok(u) => u,
            Err(e) => {
                tracing::error!(error = %e, "cannot build the mirrors' backend pools; not mirroring");
                self.counters.inc(target.as_str(), "error");
                return;
            }
        };
        // Each exchange's future is several KB: boxed, the job's own stays
        // small, and spawning it copies a few hundred bytes, not 10 KB.
        let shadow = Box::pin(self.exchange(&upstreams, target));
        let twin = async {
            match baseline {
                Some(b) => Some(Box::pin(self.exchange(&upstreams, b.side)).await),
                None => None,
            }
        };
        let (shadow, twin) = tokio::join!(shadow, twin);
        // Only now is the live answer awaited: when it comes while the
        // mirror's own exchanges are under way, it waits in the channel and
        // wakes no one; awaited alongside them, it would wake this thread
        // once more for nothing.
        let live = match live_rx.await {
            Ok(LiveOutcome::Copied(copied)) if !copied.1.failed => {
                let (mut head, mut captured) = *copied;
                append_trailers(&mut head.headers, captured.trailers.take());
                Some(Ok(Some((head, captured))))
            }
            // The live body broke, or the client went away (the tee was
            // dropped): a half-seen answer.
            Ok(LiveOutcome::Copied(..)) | Err(_) => None,
            Ok(LiveOutcome::Stream) => Some(Ok(None)),
            Ok(LiveOutcome::Failed) => Some(Err(())),
        };

        let d = &self.dispatcher;
        let Some(live) = live else {
            // The client went away: no comparison for a half-seen answer.
            self.counters.inc(target.as_str(), "cancelled");
            if let Some(b) = baseline {
                self.counters.inc(b.label, "cancelled");
            }
            return;
        };
        let live = match live {
            Ok(Some(live)) if !matches!(shadow, Err(Failed::Stream)) => Ok(live),
            Err(()) if !matches!(shadow, Err(Failed::Stream)) => Err(()),
            _ => {
                // One side answered with a stream: nothing whole to compare.
                self.counters.inc(target.as_str(), "skipped_stream");
                if let Some(b) = baseline {
                    self.counters.inc(b.label, "skipped_stream");
                }
                return;
            }
        };
        self.counters.inc(target.as_str(), outcome(&shadow));
        if let (Some(t), Some(b)) = (&twin, baseline) {
            self.counters.inc(b.label, outcome(t));
        }
        for failed in [shadow.as_ref().err(), twin.as_ref().and_then(|t| t.as_ref().err())] {
            match failed {
                Some(Failed::Dropped) => d.shed(Shed::BufferedBytes),
                Some(Failed::Saturated) => d.shed(Shed::Connections),
                _ => {}
            }
        }
        let ((head, captured), (shadow, shadow_hold, shadow_sent, shadow_end)) = match (live, shadow) {
            (Ok(live), Ok(shadow)) => (live, shadow),
            (_, Err(Failed::Dropped | Failed::Saturated)) => return,
            _ => {
                let failed = Work::Failed {
                    route: self.route.clone(),
                    method: self.method,
                    target: self.target,
                };
                // Counted where the report counts it too: a failure the
                // analysis queue had no room for is a shed comparison.
                let queued = d.queue.as_ref().is_none_or(|q| q.try_send(failed).is_ok());
                if queued {
                    self.counters.compared("error");
                } else {
                    self.counters.compared("dropped");
                    d.shed(Shed::Queue);
                }
                return;
            }
        };
        if captured.over_budget {
            // The live answer's copy is incomplete: nothing fair to compare.
            self.counters.compared("dropped");
            d.shed(Shed::BufferedBytes);
            return;
        }
        let LiveHead {
            status,
            headers,
            latency,
            sent: live_sent,
        } = head;
        let live_end = live_sent
            .zip(captured.ended_at)
            .and_then(|(sent, ended)| ended.duration_since(sent).ok());
        let live_exchange = Exchange {
            status,
            headers,
            body: captured.body,
            truncated: captured.truncated,
            latency,
        };
        self.counters
            .observe_pair(self.live.as_str(), live_exchange.latency.as_secs_f64());
        self.counters
            .observe_pair(target.as_str(), shadow.latency.as_secs_f64());
        let ((old, old_end), (new, new_end)) = if self.live == Side::New {
            ((shadow, shadow_end), (live_exchange, live_end))
        } else {
            ((live_exchange, live_end), (shadow, shadow_end))
        };
        let mut hold = self.hold;
        hold.absorb(shadow_hold);
        hold.absorb(captured.hold);
        let (twin, twin_sent, twin_end) = match twin {
            Some(Ok((x, h, sent, end))) => {
                hold.absorb(h);
                (Some(x), sent, end)
            }
            _ => (None, None, None),
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
            twin,
            timed: crate::shadow::Timed {
                pair: crate::proxy::wire::together(live_sent, shadow_sent),
                twin: crate::proxy::wire::together(live_sent, twin_sent),
                twin_with_mirror: crate::proxy::wire::together(shadow_sent, twin_sent),
            },
            ends: crate::shadow::Ends {
                old: old_end,
                new: new_end,
                twin: twin_end,
            },
            hold,
        };
        if let Some(q) = &d.queue {
            if let Err(TrySendError::Full(_)) = q.try_send(Work::Compare(Box::new(pair), self.counters.clone())) {
                // Analysis is behind: shed the comparison, not the traffic.
                self.counters.compared("dropped");
                d.shed(Shed::Queue);
            }
        }
    }
}

/// What [`read_capped`] read of a body.
pub(crate) struct Capped {
    pub body: Bytes,
    /// Longer than the cap: `body` is its start.
    pub truncated: bool,
    pub trailers: Option<HeaderMap>,
    /// When its last bytes arrived, as the kernel stamped them (read whole).
    pub ended_at: Option<SystemTime>,
}

impl Capped {
    /// The exchange to compare: the answer's head with its trailers, this
    /// body, and the time to its head (`latency`); with the time to the
    /// body's end where the kernel stamped both ends.
    pub(crate) fn into_exchange(
        self,
        mut head: http::response::Parts,
        latency: Duration,
        timing: Option<crate::proxy::wire::Timing>,
    ) -> (Exchange, Option<Duration>) {
        append_trailers(&mut head.headers, self.trailers);
        let to_end = crate::proxy::wire::Timing::to_end(timing, self.ended_at);
        let exchange = Exchange {
            status: head.status.as_u16(),
            headers: head.headers,
            body: self.body,
            truncated: self.truncated,
            latency,
        };
        (exchange, to_end)
    }
}

/// Reads a body up to `cap` bytes, held against `hold`. At the cap it stops
/// and drops the body, which closes the connection: the rest of a huge or
/// endless answer is never read, on any thread.
pub(crate) async fn read_capped(body: Inbound, cap: usize, hold: &mut Hold) -> Result<Capped, Failed> {
    let mut body = std::pin::pin!(body);
    let mut buf = BytesMut::new();
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        let data = match frame.map_err(|_| Failed::Error)?.into_data() {
            Ok(data) => data,
            Err(frame) => {
                trailers = frame.into_trailers().ok();
                continue;
            }
        };
        let room = cap - buf.len();
        let keep = data.len().min(room);
        if !hold.try_grow(keep) {
            return Err(Failed::Dropped);
        }
        buf.extend_from_slice(&data[..keep]);
        if data.len() > room {
            return Ok(Capped {
                body: buf.freeze(),
                truncated: true,
                trailers: None,
                ended_at: None,
            });
        }
    }
    Ok(Capped {
        body: buf.freeze(),
        truncated: false,
        trailers,
        ended_at: body.as_ref().get_ref().ended_at(),
    })
}

/// Trailers are compared as headers: gRPC's status travels there.
fn append_trailers(headers: &mut HeaderMap, trailers: Option<HeaderMap>) {
    for (name, value) in trailers.into_iter().flatten().filter_map(|(n, v)| Some((n?, v))) {
        headers.append(name, value);
    }
}
