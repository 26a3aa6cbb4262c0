//! The live path, as one list of named phases (after pingora's):
//!
//! 0. `request_checks`   — refuse heads no origin may accept (two Hosts,
//!    a plain CONNECT, a bad target); normalise the path decisions are made on
//! 1. `route`            — pick the configured route (or `default`)
//! 2. `request_filter`   — the route's modules: rate limit, rules… may answer early
//! 3. `split`            — force header, else sticky bucket vs. the route's percent
//! 4. `upstream_request` — request id, hop-by-hop and control headers
//!    stripped, forwarding headers (trusted proxies only)
//! 5. `mirror`           — sampled requests also go to the other side (and the twin)
//! 6. `forward`          — stream the request to the serving side, await its head
//! 7. `response_filter`  — hop-by-hop stripping, `served-by`, `Via`, modules
//! 8. `logging`          — metrics, guard sample (never for a pinned
//!    request or a client's fault), access log
//!
//! Nothing here waits for a mirror, a comparison, a disk write or a lock
//! held by them: the mirror runs on its own task and the comparison on the
//! analysis thread.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use http::header::HOST;
use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;

use http_body::Body as _;
use prometheus::IntCounter;

use crate::metrics::Metrics;
use crate::modules::{BodyHint, RequestCtx};
use crate::proxy::client_body::ClientBody;
use crate::proxy::forward::Upstreams;
use crate::proxy::headers::{self, X_REQUEST_ID, X_SERVED_BY};
use crate::proxy::limit::Limits;
use crate::proxy::switch::SwitchAsk;
use crate::proxy::tunnel::{TunnelMetrics, Tunnels};
use crate::proxy::{forwarded, grpc, target, ProxyBody, ProxyError};
use crate::rollout::sink::{LiveSample, LiveSink};
use crate::rollout::state::Phase;
use crate::shadow::{self, Candidate, Mirror};
use crate::side::Side;
use crate::snapshot::{Snapshot, SnapshotCell, WorkerView};
use crate::split::{self, Reason, SplitInput};
use tokio_util::sync::CancellationToken;

/// What every worker shares.
pub struct Shared {
    pub snapshot: SnapshotCell,
    pub metrics: Metrics,
    pub live: LiveSink,
    pub shadow: shadow::Dispatcher,
    /// Each backend's connection budget, across the workers.
    pub limits: Limits,
    /// The gateway's shutdown, and the drain time that follows it: what
    /// upgraded connections close on.
    pub shutdown: CancellationToken,
    pub drain: std::time::Duration,
    /// `capture:`, when live requests are recorded.
    pub capture: Option<Arc<crate::replay::capture::Capture>>,
    /// Where the admin API listens, for a CLI call that came here instead.
    pub admin_addr: std::net::SocketAddr,
    /// How many of new's requests may fall back to old now.
    pub fallbacks: crate::proxy::fallback::Budget,
}

/// One event loop's view: the shared state and its own upstream pools.
pub struct Worker {
    pub shared: Arc<Shared>,
    view: WorkerView,
    upstreams: ArcSwap<Upstreams>,
    /// `switchyard_client_errors_total{kind="aborted"}`, resolved once.
    aborted: IntCounter,
    /// This worker's upgraded connections.
    tunnels: Tunnels,
}

impl Worker {
    pub fn new(shared: Arc<Shared>) -> Result<Self, String> {
        let snap = shared.snapshot.load();
        let ups = Upstreams::new(snap.generation, &snap.config.backends, &shared.limits, None)?;
        Ok(Self {
            view: WorkerView::new(&shared.snapshot),
            aborted: shared.metrics.live.client_errors.with_label_values(&["aborted"]),
            tunnels: Tunnels::new(shared.shutdown.clone(), shared.drain),
            shared,
            upstreams: ArcSwap::from_pointee(ups),
        })
    }

    /// The capture, when this request is drawn for it (never a protocol
    /// switch: there is nothing to replay).
    fn capture_for(&self, method: &http::Method, switching: bool) -> Option<&crate::replay::capture::Capture> {
        let capture = self.shared.capture.as_deref()?;
        (!switching && capture.wants(method)).then_some(capture)
    }

    pub fn tunnels(&self) -> &Tunnels {
        &self.tunnels
    }

    /// This worker's pools for the snapshot's backends, rebuilt after a
    /// reload changed them.
    fn upstreams(&self, snap: &Snapshot) -> Arc<Upstreams> {
        let current = self.upstreams.load_full();
        if current.generation == snap.generation {
            return current;
        }
        match Upstreams::new(snap.generation, &snap.config.backends, &self.shared.limits, None) {
            Ok(fresh) => {
                let fresh = Arc::new(fresh);
                self.upstreams.store(fresh.clone());
                fresh
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot build backend pools for the new config; keeping the old ones");
                current
            }
        }
    }

    /// Serves one request; never fails (errors become responses). A request
    /// the client abandons before its answer (hyper drops this future, as
    /// when an HTTP/2 stream is reset) is counted as the client's abort.
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        conn: Arc<Peer>,
    ) -> Result<Response<ProxyBody>, Infallible> {
        let mut unanswered = Unanswered(Some(&self.aborted));
        // Boxed: hyper keeps room for this future in every connection for its
        // whole life, idle or not; the request path's state (about 6 KB)
        // is then held only while a request is in flight.
        let resp = Box::pin(self.serve(req, conn)).await;
        unanswered.0 = None;
        Ok(resp)
    }

    async fn serve(&self, req: Request<Incoming>, conn: Arc<Peer>) -> Response<ProxyBody> {
        let started = Instant::now();
        let current = self.view.get(&self.shared.snapshot);
        let snap = &current.snapshot;
        let (mut parts, body) = req.into_parts();

        // What the phases below look up, found in one pass (most requests
        // carry none of it); found again if request modules ran.
        let mut present = headers::Present::of(&parts.headers, &snap.force_header);
        // A gRPC client reads the gateway's own answers from grpc-status.
        let grpc = present.content_type && grpc::is_grpc(&parts.headers);

        // 0. request_checks: what no origin server may accept stops here.
        if let Err(refused) = target::check(&mut parts) {
            return self.client_fault(ProxyError::Refused(refused), None, grpc);
        }
        // The CLI pointed at the proxy port (an easy slip in an incident):
        // answered here, never forwarded, so `rollback` cannot reach a backend.
        if present.controls && parts.headers.contains_key(&ADMIN_CALL_HEADER) {
            return misdirected_admin_call(self.shared.admin_addr);
        }
        let method = parts.method.clone();
        let log_path = snap.config.logging.access_log.then(|| parts.uri.path().to_string());
        let peer_trusted = !snap.trusted_proxies.is_empty() && snap.trusted_proxies.contains(conn.addr.ip());
        let client_ip = if peer_trusted {
            forwarded::client_ip(&parts.headers, conn.addr.ip(), &snap.trusted_proxies)
        } else {
            conn.addr.ip()
        };
        // Decisions use the normalised path; the backend gets the target as sent.
        let uri = parts.uri.clone();
        let path = target::normalized(uri.path());
        let body_hint = if body.is_end_stream() {
            BodyHint::None
        } else {
            body.size_hint().exact().map_or(BodyHint::Unknown, BodyHint::Length)
        };
        let body = (body_hint != BodyHint::None).then(|| {
            ClientBody::new(
                body,
                snap.config.server.client_body_timeout.get(),
                self.shared.metrics.live.client_errors.clone(),
            )
        });

        // 1. route
        let route = snap.routes.select(&parts, &path);

        // 2. request_filter
        let mut ctx = RequestCtx {
            client_ip,
            route: &route.name,
            path: &path,
            body: body_hint,
            tags: Vec::new(),
            body_limit: None,
        };
        if !route.chain.is_empty() {
            if let Some(resp) = route.chain.on_request(&mut parts, &mut ctx).await {
                let resp = if grpc {
                    grpc::rewrite(resp, "switchyard: refused by the gateway's request modules")
                } else {
                    resp
                };
                return access_log(resp, log_path, &method, route, None, started, ctx.tags);
            }
            present = headers::Present::of(&parts.headers, &snap.force_header);
        }

        // 3. split
        let percent = snap.percent_for(route);
        let (side, reason) = split::decide(
            &SplitInput {
                force_header: &snap.force_header,
                may_force: present.force && snap.force_from.as_ref().is_none_or(|r| r.contains(client_ip)),
                rolled_back: snap.rollout.phase == Phase::RolledBack,
                sticky: &route.sticky,
                seed: snap.seed,
                percent,
            },
            &parts,
            client_ip,
        );

        // 4. upstream_request
        // Room for what is added below, so the map grows at most once.
        parts.headers.reserve(6);
        let request_id = ensure_request_id(&mut parts.headers);
        let host = parts.headers.get(HOST).cloned().or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        let ask = SwitchAsk::of(&parts, &present);
        let trailers = present.te && headers::accepts_trailers(&parts.headers);
        headers::strip_hop_by_hop(&mut parts.headers);
        if present.controls {
            headers::strip_controls(&mut parts.headers, &snap.force_header);
        }
        if trailers {
            parts
                .headers
                .insert(http::header::TE, HeaderValue::from_static("trailers"));
        }
        let switch = match ask {
            Some(ask) => {
                ask.ask_backend(&mut parts);
                parts
                    .extensions
                    .remove::<hyper::upgrade::OnUpgrade>()
                    .map(|client| (ask, client))
            }
            None => None,
        };
        forwarded::set(
            &mut parts.headers,
            &conn.forwarded_for,
            peer_trusted,
            conn.proto(),
            host.as_ref(),
        );
        if snap.config.server.via {
            headers::append_via(&mut parts.headers, parts.version);
        }

        // 5. mirror
        let mirrorable = route.shadow.allows(&method);
        if let (true, Some(_), Some(counters)) = (mirrorable, &switch, &route.mirrors) {
            // A mirrored handshake would open a second, unwanted tunnel.
            counters.inc(side.other().as_str(), "skipped_upgrade");
        }
        let mirrorable = mirrorable && switch.is_none();
        if let (true, Some(_), Some(counters)) = (mirrorable, ctx.body_limit, &route.mirrors) {
            // A rule cut this body off at a size: it streams live only, and
            // the skipped mirror is counted like any other.
            counters.inc(side.other().as_str(), "skipped_body");
        }
        let mut body = shadow::Upload::from(body);
        if let Some(capture) = self.capture_for(&method, switch.is_some()) {
            if ctx.body_limit.is_none() {
                // Read far enough for the capture and the mirror both.
                let want = capture
                    .max_body_bytes()
                    .max(if mirrorable { route.shadow.max_body_bytes } else { 0 });
                body = match self.shared.shadow.read_ahead(body, &parts, want).await {
                    Ok(b) => b,
                    Err(e) => return self.client_fault(e, Some(request_id), grpc),
                };
            }
            match body.bytes() {
                Some(bytes) => capture.record(&parts, &route.name, request_id.to_str().unwrap_or(""), bytes),
                None => capture.skipped_body(),
            }
        }
        let (body, mirror) = if mirrorable && ctx.body_limit.is_none() {
            let candidate = Candidate {
                snap,
                route,
                live: side,
                parts: &parts,
                request_id: &request_id,
            };
            match self.shared.shadow.prepare(candidate, body).await {
                Ok(prepared) => prepared,
                Err(e) => return self.client_fault(e, Some(request_id), grpc),
            }
        } else {
            (body.into_body(), Mirror::none())
        };
        let body = match (ctx.body_limit, body) {
            (Some(limit), ProxyBody::Stream { inner }) => ProxyBody::limited(inner, limit),
            (_, b) => b,
        };

        // 6. forward
        let upstreams = self.upstreams(snap);
        let upstream = upstreams.get(side).unwrap_or(&upstreams.old);
        // A request new may fail over to old: split there (not pinned), of
        // a method the config allows, not an upgrade, and without a body
        // or with one already held whole (for its mirror) to send again.
        let fallback = match &snap.config.rollout.fallback {
            Some(fb) if side == Side::New => {
                self.shared.fallbacks.count_request();
                let again = match &body {
                    ProxyBody::Empty => Some(ProxyBody::Empty),
                    ProxyBody::Full { data } => Some(ProxyBody::Full { data: data.clone() }),
                    _ => None,
                };
                let eligible =
                    reason != Reason::Forced && switch.is_none() && crate::proxy::fallback::allows(fb, &method);
                again.filter(|_| eligible).map(|b| (fb, parts.clone(), b))
            }
            _ => None,
        };
        upstream.aim(&mut parts);
        let req = Request::from_parts(parts, body);
        let mut timing = None;
        let result = match switch {
            // Timed as its mirror is: from the write to the head's arrival.
            None if mirror.is_active() => upstream.send_timed(req, upstream.timeout()).await.map(|(resp, t)| {
                timing = t;
                resp
            }),
            None => upstream.send(req).await,
            Some((ask, client)) => {
                let metrics = TunnelMetrics {
                    open: self.shared.metrics.edge.upgraded.with_label_values(&[side.as_str()]),
                    total: self
                        .shared
                        .metrics
                        .edge
                        .upgraded_total
                        .with_label_values(&[side.as_str()]),
                };
                let idle = snap.config.server.upgrade_idle_timeout.get();
                // Boxed, as the retry below: a rare path's state would
                // otherwise size every request's future, which is copied
                // whole into its box for each request.
                Box::pin(self.tunnels.forward(upstream, req, &ask, client, idle, metrics)).await
            }
        };
        // 6b. fallback: new failed before any byte reached the client.
        let (side, result, mirror, fell_back) = match fallback {
            Some((fb, mut again, again_body)) => match crate::proxy::fallback::reason(fb, &result) {
                Some(why)
                    if self
                        .shared
                        .fallbacks
                        .take(fb.max_share, snap.config.rollout.guard.window.get()) =>
                {
                    // The failure is new's: counted, and judged by the guard.
                    if let Err(e) = &result {
                        self.record_error(Side::New, e);
                    }
                    self.shared.live.record(LiveSample {
                        at: started,
                        side: Side::New,
                        latency: started.elapsed(),
                        error: true,
                    });
                    self.shared
                        .metrics
                        .live
                        .fallbacks
                        .with_label_values(&[&*route.name, why.as_str()])
                        .inc();
                    mirror.abandon();
                    drop(result);
                    upstreams.old.aim(&mut again);
                    let retried = Box::pin(upstreams.old.send(Request::from_parts(again, again_body))).await;
                    (Side::Old, retried, Mirror::none(), Some(why))
                }
                _ => (side, result, mirror, None),
            },
            None => (side, result, mirror, None),
        };
        let head_latency = started.elapsed();

        // 7. response_filter
        let side_metrics = route.metrics.side(side);
        let resp = match result {
            Ok(resp) => {
                let (mut rp, rb) = resp.into_parts();
                rp.headers.reserve(3);
                // The comparison sees the backend's answer, not our additions.
                let body = mirror.attach(rb, &rp, timing);
                if snap.config.server.served_by_header {
                    rp.headers.insert(&X_SERVED_BY, side.header_value());
                }
                if snap.config.server.via {
                    headers::append_via(&mut rp.headers, rp.version);
                }
                // An intermediary answers in its own version (RFC 9110
                // §6.2): a backend's HTTP/1.0 must not make hyper answer an
                // HTTP/1.1 client in 1.0 and close its connection.
                rp.version = http::Version::HTTP_11;
                rp.headers.entry(&X_REQUEST_ID).or_insert_with(|| request_id.clone());
                route.chain.on_response(&mut rp, &ctx);
                let body = if grpc && !rp.headers.contains_key("grpc-status") {
                    ProxyBody::Grpc {
                        inner: Box::new(grpc::Rescued::new(body, &rp.headers)),
                    }
                } else {
                    body
                };
                Response::from_parts(rp, body)
            }
            Err(e) if !e.is_upstream() => {
                // The client's fault: not the backend's, not the guard's.
                mirror.abandon();
                let resp = self.client_fault(e, Some(request_id), grpc);
                return access_log(resp, log_path, &method, route, Some(side), started, ctx.tags);
            }
            Err(e) => {
                mirror.abandon();
                self.record_error(side, &e);
                let mut resp = if grpc {
                    e.into_grpc_response()
                } else {
                    e.into_response()
                };
                if snap.config.server.served_by_header {
                    resp.headers_mut().insert(&X_SERVED_BY, side.header_value());
                }
                resp.headers_mut().insert(&X_REQUEST_ID, request_id);
                resp
            }
        };

        // 8. logging
        let status = resp.status().as_u16();
        side_metrics.count(status);
        side_metrics.duration.observe(head_latency.as_secs_f64());
        if reason != Reason::Forced && fell_back.is_none() {
            // A pinned request says nothing about the rollout's share (and
            // a request that fell back was judged as new's failure).
            self.shared.live.record(LiveSample {
                at: started,
                side,
                latency: head_latency,
                error: status >= 500,
            });
        }
        let resp = access_log(resp, log_path, &method, route, Some(side), started, ctx.tags);
        match fell_back {
            Some(why) => with_fallback(resp, why.as_str()),
            None => resp,
        }
    }

    /// Answers a request the client got wrong, and counts it as the
    /// client's: never an upstream error, never a guard sample.
    fn client_fault(&self, e: ProxyError, request_id: Option<HeaderValue>, grpc: bool) -> Response<ProxyBody> {
        let kind = e.client_kind().unwrap_or("framing");
        if e.uncounted_client_fault() {
            self.shared.metrics.live.client_errors.with_label_values(&[kind]).inc();
        }
        tracing::debug!(kind, error = %e, "client error");
        let mut resp = if grpc {
            e.into_grpc_response()
        } else {
            e.into_response()
        };
        if let Some(id) = request_id {
            resp.headers_mut().insert(&X_REQUEST_ID, id);
        }
        resp
    }

    fn record_error(&self, side: Side, e: &ProxyError) {
        if let Some(kind) = e.upstream_kind() {
            self.shared
                .metrics
                .live
                .upstream_errors
                .with_label_values(&[side.as_str(), kind])
                .inc();
            match e {
                ProxyError::Connect { address, cause, .. } => {
                    tracing::warn!(backend = side.as_str(), kind, error = %e, %address, %cause, "upstream request failed")
                }
                _ => tracing::warn!(backend = side.as_str(), kind, error = %e, "upstream request failed"),
            }
        }
    }
}

/// Counts a request whose handling was dropped before it was answered.
struct Unanswered<'a>(Option<&'a IntCounter>);

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        if let Some(aborted) = self.0 {
            aborted.inc();
            tracing::debug!("the client abandoned a request before its answer");
        }
    }
}

/// The client end of a connection, worked out once per connection.
pub struct Peer {
    pub addr: SocketAddr,
    /// The address as written in `X-Forwarded-For`.
    pub forwarded_for: HeaderValue,
    /// What the TLS handshake agreed on; `None` on the plain listener.
    pub tls: Option<crate::tls::Handshake>,
}

impl Peer {
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            forwarded_for: forwarded::client_value(addr.ip()),
            tls: None,
        }
    }

    pub fn with_tls(mut self, handshake: crate::tls::Handshake) -> Self {
        self.tls = Some(handshake);
        self
    }

    /// `X-Forwarded-Proto` as this connection came in.
    pub fn proto(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }
}

/// Sent by Switchyard's CLI on every admin call; the proxy answers such a
/// request itself with `421` naming the admin API. A name, not text: each
/// request looks it up, and text would be parsed into a name every time.
pub static ADMIN_CALL_HEADER: http::HeaderName = http::HeaderName::from_static("x-switchyard-admin-call");

fn misdirected_admin_call(admin: std::net::SocketAddr) -> Response<ProxyBody> {
    let reach = if admin.ip().is_unspecified() {
        format!("127.0.0.1:{}", admin.port())
    } else {
        admin.to_string()
    };
    let body = serde_json::json!({
        "error": format!(
            "this is Switchyard's proxy listener, not its admin API; the admin API listens on {admin} (admin.listen): use --admin http://{reach}, or -c with the gateway's config"
        ),
        "admin": admin.to_string(),
    });
    let mut r = crate::proxy::error::plain(http::StatusCode::MISDIRECTED_REQUEST, body.to_string());
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

/// Keeps the client's `x-request-id`, or makes one (128 random bits, hex).
fn ensure_request_id(headers: &mut http::HeaderMap) -> HeaderValue {
    let fresh = || {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let bits = rand::random::<u128>();
        let mut text = [0u8; 32];
        for (i, c) in text.iter_mut().enumerate() {
            *c = HEX[((bits >> (124 - 4 * i)) & 0xf) as usize];
        }
        HeaderValue::from_bytes(&text).unwrap_or(HeaderValue::from_static("0"))
    };
    match headers.entry(&X_REQUEST_ID) {
        http::header::Entry::Occupied(e) if !e.get().is_empty() => e.get().clone(),
        http::header::Entry::Occupied(mut e) => {
            let id = fresh();
            e.insert(id.clone());
            id
        }
        http::header::Entry::Vacant(e) => e.insert(fresh()).clone(),
    }
}

/// Wraps the response so its line is logged when the body is done.
/// Notes on the access log line that old answered for new.
fn with_fallback(resp: Response<ProxyBody>, why: &'static str) -> Response<ProxyBody> {
    let (parts, body) = resp.into_parts();
    let body = match body {
        ProxyBody::Logged { inner, mut record } => {
            record.fallback = Some(why);
            ProxyBody::Logged { inner, record }
        }
        other => other,
    };
    Response::from_parts(parts, body)
}

fn access_log(
    resp: Response<ProxyBody>,
    path: Option<String>,
    method: &http::Method,
    route: &crate::route::Route,
    side: Option<Side>,
    started: Instant,
    tags: Vec<Arc<str>>,
) -> Response<ProxyBody> {
    let Some(path) = path else { return resp };
    let (parts, body) = resp.into_parts();
    let record = crate::access::AccessRecord {
        method: method.clone(),
        path,
        route: route.name.clone(),
        side,
        status: parts.status.as_u16(),
        started,
        tags,
        bytes: 0,
        complete: false,
        fallback: None,
    };
    Response::from_parts(parts, body.logged(record))
}

#[cfg(test)]
mod tests {
    fn size_of_return<A, B, C, F>(_: fn(A, B, C) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// hyper holds the service's future in each connection from its first
    /// request to its close: a big one costs every idle keep-alive
    /// connection its size (it was 11,800 bytes: 118 MB for 10,000 idle
    /// connections).
    #[test]
    fn an_idle_connection_holds_no_room_for_the_request_path() {
        let size = size_of_return(super::Worker::handle);
        assert!(size <= 512, "Worker::handle's future is {size} bytes");
    }
}
