//! Sending a request to a backend: one pooled client per backend and worker
//! (keep-alive, TCP_NODELAY, connect and response timeouts), the request
//! rewritten for the backend (URI, version, `Host`), and failures classified.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::Either;
use futures_util::FutureExt;
use http::header::HOST;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri, Version};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::body::ProxyBody;
use super::client_body::{ClientError, Upload};
use super::error::ProxyError;
use super::inbound::Inbound;
use super::limit::{ConnectionLimit, Limits};
use super::pool::{Http1Pool, PoolError, Switch, TlsConnect};
use super::wire::{ExchangeError, Timing};
use crate::config::{BackendConfig, BackendProtocol, HostHeader};
use crate::side::Side;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};

/// How requests reach a backend: our own HTTP/1.1 pool (plain or TLS), or
/// hyper-util's client for HTTP/2 and for ALPN's choice over TLS (one
/// multiplexed connection needs no pool of ours).
enum Transport {
    Http1,
    /// One multiplexed connection per worker; `max_connections` bounds its
    /// requests in flight instead.
    Hyper(
        Box<Client<HttpsConnector<HttpConnector>, ProxyBody>>,
        Arc<ConnectionLimit>,
    ),
}

/// One backend, as seen from one worker.
pub struct Upstream {
    side: Side,
    transport: Transport,
    /// Our HTTP/1.1 leg: every request when `transport` is `Http1`, and
    /// protocol switches (WebSocket) always, since `Upgrade` is HTTP/1.1's.
    http1: Http1Pool,
    scheme: Scheme,
    authority: Authority,
    authority_value: HeaderValue,
    /// Path prefix from the backend URL, without a trailing slash.
    prefix: Option<String>,
    host: HostHeader,
    timeout: Duration,
    /// Longest wait for the next bytes of a response body.
    read_timeout: Duration,
    /// `host:port`, for log lines.
    backend_name: Arc<str>,
    version: Version,
}

impl Upstream {
    /// Builds the client; `cfg` has been validated. `limit` is this
    /// backend's connection budget, shared with the other workers.
    pub fn new(side: Side, cfg: &BackendConfig, limit: Arc<ConnectionLimit>) -> Result<Self, String> {
        let uri = crate::config::validate::backend_url(&cfg.url)?;
        let authority = uri.authority().cloned().ok_or("backend URL has no host")?;
        let prefix = match uri.path().trim_end_matches('/') {
            "" => None,
            p => Some(p.to_string()),
        };
        let path = format!("backends.{side}");
        let https = uri.scheme() == Some(&Scheme::HTTPS);
        let protocol = cfg.protocol();
        let host = authority.host();
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls_name = https
            .then(|| crate::tls::backend::server_name(&path, cfg.trust(), host))
            .transpose()?;
        let tls = match &tls_name {
            Some(name) => Some(TlsConnect {
                connector: tokio_rustls::TlsConnector::from(Arc::new(crate::tls::backend::client_config(
                    &path,
                    cfg.trust(),
                    &[b"http/1.1"],
                )?)),
                server_name: name.clone(),
            }),
            None => None,
        };
        let http1 = Http1Pool::new(
            format!("{host}:{port}"),
            cfg.connect_timeout.get(),
            cfg.idle_timeout.get(),
            cfg.max_idle_connections,
            cfg.read_timeout.get(),
            limit.clone(),
            tls,
        );
        let transport = match (protocol, https) {
            (BackendProtocol::Http1, _) | (BackendProtocol::Auto, false) => Transport::Http1,
            (BackendProtocol::Http2, _) | (BackendProtocol::Auto, true) => {
                Transport::Hyper(Box::new(hyper_client(&path, cfg, tls_name)?), limit)
            }
        };
        Ok(Self {
            side,
            http1,
            version: if protocol == BackendProtocol::Http2 {
                Version::HTTP_2
            } else {
                Version::HTTP_11
            },
            transport,
            scheme: uri.scheme().cloned().unwrap_or(Scheme::HTTP),
            authority_value: HeaderValue::from_str(authority.as_str()).map_err(|e| e.to_string())?,
            backend_name: authority.as_str().into(),
            authority,
            prefix,
            host: cfg.host,
            timeout: cfg.timeout.get(),
            read_timeout: cfg.read_timeout.get(),
        })
    }

    pub fn side(&self) -> Side {
        self.side
    }

    /// The backend's `timeout` for a response head.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The URI of `pq` on this backend: origin-form for HTTP/1.1 (what goes
    /// on the wire, with no reparse), absolute for the HTTP/2 client.
    pub fn uri_for(&self, pq: Option<&PathAndQuery>) -> Uri {
        let pq = match (&self.prefix, pq) {
            (None, Some(pq)) => pq.clone(),
            (None, None) => PathAndQuery::from_static("/"),
            (Some(prefix), pq) => {
                let rest = pq.map_or("/", |p| p.as_str());
                PathAndQuery::try_from(format!("{prefix}{rest}")).unwrap_or_else(|_| PathAndQuery::from_static("/"))
            }
        };
        let mut parts = http::uri::Parts::default();
        if matches!(self.transport, Transport::Hyper(..)) {
            parts.scheme = Some(self.scheme.clone());
            parts.authority = Some(self.authority.clone());
        }
        parts.path_and_query = Some(pq);
        Uri::from_parts(parts).unwrap_or_default()
    }

    /// Points a request at this backend: absolute URI, the backend's HTTP
    /// version, and `Host` kept from the client or rewritten.
    pub fn aim(&self, parts: &mut http::request::Parts) {
        let original_authority = parts.uri.authority().cloned();
        parts.uri = self.uri_for(parts.uri.path_and_query());
        parts.version = self.version;
        match self.host {
            HostHeader::Rewrite => {
                parts.headers.insert(HOST, self.authority_value.clone());
            }
            HostHeader::Preserve => {
                // HTTP/2 clients send :authority instead of Host.
                parts.headers.entry(HOST).or_insert_with(|| {
                    original_authority
                        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
                        .unwrap_or_else(|| self.authority_value.clone())
                });
            }
        }
    }

    /// Sends the request and waits for the response head, within the
    /// timeout. The head comes back without hop-by-hop fields.
    ///
    /// These senders are not `async fn`s: an `async fn` keeps its
    /// arguments for its whole life beside whatever it moves them into,
    /// and the request path's future, which holds this one, is copied
    /// whole into its box for every request. Inlined always, so that the
    /// future they return is built where the caller awaits it: returned
    /// from a call, it was copied there (2.7 KB a request).
    #[inline(always)]
    pub fn send(&self, req: Request<ProxyBody>) -> impl Future<Output = Result<Response<Inbound>, ProxyError>> + '_ {
        self.send_within(req, Some(self.timeout), false)
            .map(|sent| sent.map(|(resp, _)| resp))
    }

    /// [`Self::send`], timed where the transport can ([`Timing`]: our
    /// HTTP/1.1 leg), within `timeout`: a mirrored request and its live
    /// twin, a replayed one.
    #[inline(always)]
    pub fn send_timed(
        &self,
        req: Request<ProxyBody>,
        timeout: Duration,
    ) -> impl Future<Output = Result<(Response<Inbound>, Option<Timing>), ProxyError>> + '_ {
        self.send_within(req, Some(timeout), true)
    }

    /// [`Self::send_timed`] with no deadline of its own, for a caller that
    /// holds the whole exchange, head and body, under one (a mirror): one
    /// timer per exchange instead of two.
    #[inline(always)]
    pub fn send_timed_under_callers_deadline(
        &self,
        req: Request<ProxyBody>,
    ) -> impl Future<Output = Result<(Response<Inbound>, Option<Timing>), ProxyError>> + '_ {
        self.send_within(req, None, true)
    }

    /// Sends the request; `timeout` for the response head starts once the
    /// client's upload is over (a slow client is on its own clock, the
    /// body timeout), or once the backend stopped taking the upload.
    /// The timing travels beside the response, not in its extensions:
    /// a map allocated for it per exchange showed in profiles. Each
    /// transport's future holds only its own state.
    #[inline(always)]
    fn send_within(
        &self,
        req: Request<ProxyBody>,
        timeout: Option<Duration>,
        timed: bool,
    ) -> impl Future<Output = Result<(Response<Inbound>, Option<Timing>), ProxyError>> + '_ {
        let side = self.side;
        let timed_out = move |timeout| ProxyError::Timeout { side, timeout };
        let upload = req.body().upload();
        match &self.transport {
            Transport::Http1 => Either::Left(async move {
                match within(timeout, upload, std::pin::pin!(self.http1.send(req, timed))).await {
                    Err(ran_out) => Err(timed_out(ran_out)),
                    Ok(Ok((resp, timing))) => Ok((resp.map(Inbound::from), timing)),
                    Ok(Err(e)) => Err(pool_error(side, &self.backend_name, e)),
                }
            }),
            Transport::Hyper(client, limit) => Either::Right(async move {
                let permit = limit.acquire().await.map_err(|s| ProxyError::Saturated {
                    side,
                    limit: s.limit,
                    waited: s.waited,
                })?;
                // Boxed: hyper's client future is large, and would otherwise
                // size every request's future on the HTTP/1.1 leg too.
                match Box::pin(within(timeout, upload, client.request(req))).await {
                    Err(ran_out) => Err(timed_out(ran_out)),
                    Ok(Ok(resp)) => {
                        let (mut parts, body) = resp.into_parts();
                        // The HTTP/1.1 leg drops these as it parses; hyper keeps them.
                        super::headers::strip_hop_by_hop(&mut parts.headers);
                        let body = Inbound::watched(body, self.read_timeout, self.backend_name.clone(), permit);
                        Ok((Response::from_parts(parts, body), None))
                    }
                    Ok(Err(e)) if e.is_connect() => Err(connect_error(side, &self.backend_name, &e)),
                    Ok(Err(e)) => Err(classify(side, &e)),
                }
            }),
        }
    }
}

/// hyper-util's client for a backend spoken to over HTTP/2 (prior
/// knowledge on plain TCP, ALPN `h2` over TLS) or, with `protocol: auto`
/// over TLS, whatever ALPN chooses. `tls_name` is set for `https://`.
fn hyper_client(
    path: &str,
    cfg: &BackendConfig,
    tls_name: Option<rustls_pki_types::ServerName<'static>>,
) -> Result<Client<HttpsConnector<HttpConnector>, ProxyBody>, String> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(cfg.connect_timeout.get()));
    connector.set_keepalive(Some(Duration::from_secs(60)));
    connector.enforce_http(false);
    // hyper-rustls writes ALPN itself from the versions enabled; on plain
    // TCP (h2c) its TLS side is never used.
    let tls_config = match tls_name {
        Some(_) => crate::tls::backend::client_config(path, cfg.trust(), &[])?,
        None => crate::tls::backend::unused()?,
    };
    let mut builder = HttpsConnectorBuilder::new().with_tls_config(tls_config).https_or_http();
    if let Some(name) = tls_name {
        builder = builder.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name));
    }
    let h2_only = cfg.protocol() == BackendProtocol::Http2;
    let connector = if h2_only {
        builder.enable_http2().wrap_connector(connector)
    } else {
        builder.enable_all_versions().wrap_connector(connector)
    };
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(cfg.idle_timeout.get())
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .http2_only(h2_only)
        .build(connector))
}

impl Upstream {
    /// Sends a request that asks to switch protocols, over HTTP/1.1 whatever
    /// `protocol` says; waits for the answer within the backend's timeout.
    pub async fn switch(&self, req: Request<ProxyBody>) -> Result<Switch, ProxyError> {
        let side = self.side;
        match tokio::time::timeout(self.timeout, self.http1.switch(req)).await {
            Err(_) => Err(ProxyError::Timeout {
                side,
                timeout: self.timeout,
            }),
            Ok(result) => result.map_err(|e| pool_error(side, &self.backend_name, e)),
        }
    }

    /// `host:port`, for log lines.
    pub fn name(&self) -> &Arc<str> {
        &self.backend_name
    }
}

/// Whose fault a failure of our HTTP/1.1 leg was.
fn pool_error(side: Side, address: &Arc<str>, e: PoolError) -> ProxyError {
    match e {
        PoolError::Connect(e) => ProxyError::Connect {
            side,
            address: address.clone(),
            cause: e.to_string(),
        },
        PoolError::ConnectTimeout => ProxyError::Connect {
            side,
            address: address.clone(),
            cause: "no connection within connect_timeout".into(),
        },
        PoolError::Handshake(e) => ProxyError::Tls {
            side,
            detail: e.to_string(),
        },
        PoolError::Saturated(s) => ProxyError::Saturated {
            side,
            limit: s.limit,
            waited: s.waited,
        },
        PoolError::Exchange(ExchangeError::Body(e)) => classify(side, e.as_ref()),
        PoolError::Exchange(e) => ProxyError::Upstream {
            side,
            detail: e.to_string(),
        },
    }
}

/// A connect failure of hyper's client: a TLS one says why.
fn connect_error(side: Side, address: &Arc<str>, e: &hyper_util::client::legacy::Error) -> ProxyError {
    match find_tls_error(e) {
        Some(tls) => ProxyError::Tls {
            side,
            detail: tls.to_string(),
        },
        None => ProxyError::Connect {
            side,
            address: address.clone(),
            cause: std::error::Error::source(e).map_or_else(|| e.to_string(), |s| s.to_string()),
        },
    }
}

/// The rustls error under `e`, looking inside io::Errors (whose
/// `source()` skips the error they wrap, and which nest).
fn find_tls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(tls) = e.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    if let Some(inner) = e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
        return find_tls_error(inner);
    }
    e.source().and_then(find_tls_error)
}

/// Runs `work` with `timeout` counted from the end of the upload (no
/// deadline without one); the timeout that ran out when it did. Given
/// `work` pinned where it is made, so that it is held once: the request
/// path's future (and every copy of it) is as large as all it holds.
async fn within<T>(
    timeout: Option<Duration>,
    upload: Option<Arc<Upload>>,
    work: impl std::future::Future<Output = T>,
) -> Result<T, Duration> {
    let Some(timeout) = timeout else {
        return Ok(work.await);
    };
    let deadline = async move {
        if let Some(upload) = upload {
            upload.finished_or_stuck(timeout).await;
        }
        tokio::time::sleep(timeout).await;
    };
    tokio::select! {
        biased;
        done = work => Ok(done),
        () = deadline => Err(timeout),
    }
}

/// Maps a failed exchange to whose fault it was: the client's body, our
/// body limit, or the backend.
fn classify(side: Side, e: &(dyn std::error::Error + 'static)) -> ProxyError {
    if let Some(c) = ClientError::find(e) {
        return ProxyError::Client {
            fault: c.fault,
            detail: c.detail.clone(),
            counted: c.counted,
        };
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(tl) = s.downcast_ref::<super::body::TooLarge>() {
            return ProxyError::BodyTooLarge { limit: tl.0 };
        }
        source = s.source();
    }
    let detail = e.source().map_or_else(|| e.to_string(), |s| s.to_string());
    ProxyError::Upstream { side, detail }
}

/// Every backend, for one worker. Rebuilt when a reload changes backends.
pub struct Upstreams {
    pub generation: u64,
    pub old: Upstream,
    pub new: Upstream,
    pub old_twin: Option<Upstream>,
}

impl Upstreams {
    /// One worker's clients for every backend. `limits` holds the budgets
    /// shared with the other workers; `max_connections` overrides each
    /// backend's own (mirrors use `shadow.max_connections`).
    pub fn new(
        generation: u64,
        backends: &crate::config::Backends,
        limits: &Limits,
        max_connections: Option<usize>,
    ) -> Result<Self, String> {
        let build = |side: Side, cfg: &BackendConfig| {
            let max = max_connections.unwrap_or(cfg.max_connections);
            Upstream::new(side, cfg, limits.get(generation, side, max, cfg.queue_timeout.get()))
        };
        Ok(Self {
            generation,
            old: build(Side::Old, &backends.old)?,
            new: build(Side::New, &backends.new)?,
            old_twin: backends
                .old_twin
                .as_ref()
                .map(|t| build(Side::OldTwin, t))
                .transpose()?,
        })
    }

    pub fn get(&self, side: Side) -> Option<&Upstream> {
        match side {
            Side::Old => Some(&self.old),
            Side::New => Some(&self.new),
            Side::OldTwin => self.old_twin.as_ref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request path's future holds the backend call's, and is copied
    /// whole into its box for every request: what the call holds is paid
    /// per request, in copying and in cache misses (bench/RESULTS.md).
    /// As `async fn`s the senders held the request several times over (3,952
    /// bytes in a test build, 3,944 in a release build); 2,696 now.
    #[tokio::test]
    async fn a_backend_call_holds_its_request_once() {
        let cfg: BackendConfig = serde_yaml::from_str("url: http://127.0.0.1:9").unwrap();
        let upstream = Upstream::new(Side::Old, &cfg, ConnectionLimit::new(1, Duration::from_secs(1))).unwrap();
        let request = std::mem::size_of::<Request<ProxyBody>>();
        let call = upstream.send(Request::new(ProxyBody::empty()));
        let held = std::mem::size_of_val(&call);
        assert!(
            held <= 3_200,
            "a backend call's future holds {held} bytes (a request is {request})"
        );
    }
}
