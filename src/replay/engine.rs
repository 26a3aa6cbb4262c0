//! Sends a recorded request to old, new (and the twin) at once and reads
//! each answer as the mirrors do: same backend clients (TLS, HTTP/2,
//! prefixes), the same size cap, the same deadline. The pair it returns is
//! what the live mirror hands the comparison, so one engine judges both.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request};

use crate::config::Config;
use crate::diff::Exchange;
use crate::proxy::budget::Budget;
use crate::proxy::forward::Upstreams;
use crate::proxy::headers::X_SHADOW;
use crate::proxy::limit::Limits;
use crate::proxy::ProxyBody;
use crate::replay::recorded::Recorded;
use crate::route::RouteTable;
use crate::shadow::Pair;
use crate::side::Side;

pub struct Replayer {
    upstreams: Upstreams,
    routes: Arc<RouteTable>,
    timeout: std::time::Duration,
    cap: usize,
    budget: Arc<Budget>,
}

/// A replayed request's answers, or why there are none.
pub type Replayed = Result<Pair, String>;

impl Replayer {
    /// Clients for the config's backends (built on the calling runtime),
    /// its routes compiled afresh (offline, where no gateway runs).
    pub fn new(config: &Config) -> Result<Self, String> {
        let routes = RouteTable::build(config, &crate::metrics::Metrics::new())?;
        Self::with_routes(config, Arc::new(routes))
    }

    /// The same with routes already compiled: a running gateway's own.
    pub fn with_routes(config: &Config, routes: Arc<RouteTable>) -> Result<Self, String> {
        Ok(Self {
            upstreams: Upstreams::new(0, &config.backends, &Limits::default(), None)?,
            routes,
            timeout: config.shadow.timeout.get(),
            cap: config.shadow.max_response_bytes,
            budget: Budget::new(usize::MAX),
        })
    }

    fn request(&self, side: Side, r: &Recorded, body: &Bytes) -> Result<Request<ProxyBody>, String> {
        let upstream = self.upstreams.get(side).ok_or("no such backend")?;
        let method = Method::from_bytes(r.method.as_bytes()).map_err(|_| format!("{:?} is not a method", r.method))?;
        let mut req = Request::new(ProxyBody::full(body.clone()));
        *req.method_mut() = method;
        *req.uri_mut() = r
            .target
            .parse()
            .map_err(|e| format!("target {:?} is not a path: {e}", r.target))?;
        *req.headers_mut() = headers(r)?;
        req.headers_mut().insert(&X_SHADOW, HeaderValue::from_static("1"));
        let (mut parts, body) = req.into_parts();
        upstream.aim(&mut parts);
        Ok(Request::from_parts(parts, body))
    }

    /// One side's answer, read up to the cap, and its time to the body's
    /// last bytes where the kernel stamped it.
    async fn exchange(&self, side: Side, r: &Recorded, body: &Bytes) -> Result<(Exchange, Option<Duration>), String> {
        let name = side.as_str();
        let upstream = self.upstreams.get(side).ok_or("no such backend")?;
        let req = self.request(side, r, body)?;
        let started = Instant::now();
        let (resp, timing) = upstream
            .send_timed(req, self.timeout)
            .await
            .map_err(|e| format!("{name}: {e}"))?;
        let (parts, body) = resp.into_parts();
        let latency = timing.map_or_else(|| started.elapsed(), |t| t.to_head());
        if crate::shadow::is_stream(&parts.headers) {
            return Err(format!("{name} answered with an event stream; it is not compared"));
        }
        let mut hold = self.budget.hold();
        let read = tokio::time::timeout(self.timeout, crate::shadow::read_capped(body, self.cap, &mut hold));
        let read = match read.await {
            Err(_) => return Err(format!("{name}: the body did not arrive within {:?}", self.timeout)),
            Ok(Err(f)) => return Err(format!("{name}: reading the body failed ({})", f.as_str())),
            Ok(Ok(b)) => b,
        };
        Ok(read.into_exchange(parts, latency, timing))
    }

    /// Sends `r` to every side at once and pairs the answers.
    pub async fn replay(&self, r: &Recorded) -> Replayed {
        let body = r.body_bytes()?;
        let route_parts = {
            let mut req = Request::new(());
            *req.method_mut() =
                Method::from_bytes(r.method.as_bytes()).map_err(|_| format!("{:?} is not a method", r.method))?;
            *req.uri_mut() = r.target.parse().map_err(|e| format!("target {:?}: {e}", r.target))?;
            *req.headers_mut() = headers(r)?;
            req.into_parts().0
        };
        let path = crate::proxy::target::normalized(route_parts.uri.path()).into_owned();
        let route = self.routes.select(&route_parts, &path);
        let twin = async {
            match self.upstreams.old_twin {
                Some(_) => Some(self.exchange(Side::OldTwin, r, &body).await),
                None => None,
            }
        };
        let (old, new, twin) = tokio::join!(
            self.exchange(Side::Old, r, &body),
            self.exchange(Side::New, r, &body),
            twin
        );
        let (old, old_end) = old?;
        let (new, new_end) = new?;
        let (twin, twin_end) = match twin.transpose()? {
            Some((t, end)) => (Some(t), end),
            None => (None, None),
        };
        Ok(Pair {
            route: route.name.clone(),
            rules: route.diff.clone(),
            method: route_parts.method,
            target: r.target.clone(),
            request_headers: route_parts.headers,
            request_body: body,
            request_id: r.request_id.clone(),
            at: SystemTime::now(),
            live: Side::Old,
            old,
            new,
            twin,
            timed: crate::shadow::Timed::TOGETHER,
            ends: crate::shadow::Ends {
                old: old_end,
                new: new_end,
                twin: twin_end,
            },
            hold: self.budget.hold(),
        })
    }
}

/// The request headers to send, `Host` included when it was recorded.
fn headers(r: &Recorded) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for (k, v) in r.headers_to_send() {
        let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| format!("header name {k:?} is not valid"))?;
        let value = HeaderValue::from_str(v).map_err(|_| format!("header {k} has a value that cannot be sent"))?;
        map.append(name, value);
    }
    if let Some(host) = &r.host {
        if let Ok(v) = HeaderValue::from_str(host) {
            map.insert(http::header::HOST, v);
        }
    }
    Ok(map)
}
