//! Test harness: real HTTP origins on loopback (port 0) that record what
//! reached them, a gateway started in-process from YAML, and small clients.
#![allow(dead_code)]

pub mod etcd;
pub mod raw;
pub mod tls;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use switchyard::config::Config;
use switchyard::gateway::{Gateway, Options};

pub type Body = BoxBody<Bytes, Infallible>;
pub type Handler = Arc<dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> + Send + Sync>;

/// What an origin saw of one request.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub version: http::Version,
}

pub struct Origin {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: CancellationToken,
    /// Serves over TLS (`https://` URLs).
    tls: bool,
    /// Per TLS connection: whether its handshake resumed a session.
    pub resumed: Arc<Mutex<Vec<bool>>>,
}

pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed()
}

pub fn json_response(status: u16, value: serde_json::Value) -> Response<Body> {
    let mut r = Response::new(full(value.to_string()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

impl Origin {
    pub async fn start(handler: Handler) -> Origin {
        Self::serve(handler, None).await
    }

    /// An origin behind TLS with `config` (its certificate, ALPN, whether
    /// it requires a client certificate).
    pub async fn start_tls(handler: Handler, config: Arc<rustls::ServerConfig>) -> Origin {
        Self::serve(handler, Some(tokio_rustls::TlsAcceptor::from(config))).await
    }

    async fn serve(handler: Handler, tls: Option<tokio_rustls::TlsAcceptor>) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let resumed = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let (seen2, stop2, resumed2) = (seen.clone(), stop.clone(), resumed.clone());
        let is_tls = tls.is_some();
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    _ = stop2.cancelled() => return,
                    a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                };
                // As real servers do: a body written in parts is not held
                // back for the client's delayed acknowledgement.
                let _ = stream.set_nodelay(true);
                let (handler, seen, stop) = (handler.clone(), seen2.clone(), stop2.clone());
                let (tls, resumed) = (tls.clone(), resumed2.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        seen.lock().unwrap().push(Seen {
                            method: req.method().clone(),
                            path: req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default(),
                            headers: req.headers().clone(),
                            version: req.version(),
                        });
                        let fut = handler(req);
                        async move { Ok::<_, Infallible>(fut.await) }
                    });
                    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match tls {
                        None => {
                            let conn = builder.serve_connection(TokioIo::new(stream), svc).into_owned();
                            tokio::select! { _ = conn => {}, _ = stop.cancelled() => {} }
                        }
                        Some(acceptor) => {
                            let Ok(stream) = acceptor.accept(stream).await else {
                                return;
                            };
                            let kind = stream.get_ref().1.handshake_kind();
                            resumed
                                .lock()
                                .unwrap()
                                .push(kind == Some(rustls::HandshakeKind::Resumed));
                            let conn = builder.serve_connection(TokioIo::new(stream), svc).into_owned();
                            tokio::select! { _ = conn => {}, _ = stop.cancelled() => {} }
                        }
                    }
                });
            }
        });
        Origin {
            addr,
            seen,
            stop,
            tls: is_tls,
            resumed,
        }
    }

    /// Answers JSON naming itself, the path, and the request id it got.
    pub async fn named(name: &'static str) -> Origin {
        Origin::start(Arc::new(move |req: Request<Incoming>| {
            Box::pin(async move {
                let rid = req
                    .headers()
                    .get("x-request-id")
                    .map(|v| v.to_str().unwrap_or("").to_string());
                json_response(
                    200,
                    serde_json::json!({ "backend": name, "path": req.uri().path(), "request_id": rid }),
                )
            })
        }))
        .await
    }

    /// Same answer whoever asks (the same body on every side: no diffs).
    pub async fn constant(body: &'static str) -> Origin {
        Origin::start(Arc::new(move |_req| {
            Box::pin(async move { json_response(200, serde_json::from_str(body).unwrap()) })
        }))
        .await
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn clear(&self) {
        self.seen.lock().unwrap().clear();
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// An address that refuses connections for as long as this lives: bound
/// but never listening, so no other process can take the port meanwhile
/// (unlike an address bound, released and reused).
pub struct Refusing {
    pub addr: SocketAddr,
    _socket: socket2::Socket,
}

impl Refusing {
    pub fn new() -> Self {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket
            .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        let addr = socket.local_addr().unwrap().as_socket().unwrap();
        Refusing { addr, _socket: socket }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Starts a gateway in-process; listeners on port 0.
pub fn gateway(yaml: &str) -> Gateway {
    let base = "listen: \"127.0.0.1:0\"\nadmin: { listen: \"127.0.0.1:0\" }\n";
    // A top-level `listen:` is the test's own; `tls.listen` is not.
    let yaml = if yaml.lines().any(|l| l.starts_with("listen:")) {
        yaml.to_string()
    } else {
        format!("{base}{yaml}")
    };
    let cfg = Config::from_yaml(&yaml, "<test>").unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    Gateway::start(cfg, Options::default()).unwrap()
}

/// Starts a gateway from a config file, as `serve -c FILE` would: reloads
/// re-read the file.
pub fn gateway_from_file(path: &std::path::Path) -> Gateway {
    let cfg = Config::load(path).unwrap_or_else(|e| panic!("{e}"));
    Gateway::start(
        cfg,
        Options {
            config_path: Some(path.to_path_buf()),
            ..Default::default()
        },
    )
    .unwrap()
}

pub fn backends(old: &Origin, new: &Origin) -> String {
    format!(
        "backends:\n  old: {{ url: \"{}\" }}\n  new: {{ url: \"{}\" }}\n",
        old.url(),
        new.url()
    )
}

pub fn backends_with_twin(old: &Origin, new: &Origin, twin: &Origin) -> String {
    format!(
        "backends:\n  old: {{ url: \"{}\" }}\n  new: {{ url: \"{}\" }}\n  old_twin: {{ url: \"{}\" }}\n",
        old.url(),
        new.url(),
        twin.url()
    )
}

pub fn proxy(g: &Gateway) -> String {
    format!("http://{}", g.proxy_addr)
}

pub fn admin(g: &Gateway) -> String {
    format!("http://{}", g.admin_addr)
}

pub type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(32)
        .build_http()
}

pub fn h2_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).http2_only(true).build_http()
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub async fn send(
    c: &HttpClient,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Answer {
    let mut b = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = c
        .request(b.body(Full::new(body.into())).unwrap())
        .await
        .unwrap_or_else(|e| panic!("{url}: {e:?}"));
    let (parts, body) = resp.into_parts();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

pub async fn get(c: &HttpClient, url: &str, headers: &[(&str, &str)]) -> Answer {
    send(c, Method::GET, url, headers, Bytes::new()).await
}

/// A GET read to the end of its body, which must end (well or broken)
/// within `within`; `Err` says how the exchange broke.
pub async fn get_whole(c: &HttpClient, url: &str, within: Duration) -> Result<Bytes, String> {
    let exchange = async {
        let req = Request::get(url).body(Full::new(Bytes::new())).unwrap();
        let resp = c.request(req).await.map_err(|e| e.to_string())?;
        let body = resp.into_body().collect().await.map_err(|e| e.to_string())?;
        Ok(body.to_bytes())
    };
    tokio::time::timeout(within, exchange)
        .await
        .unwrap_or_else(|_| panic!("{url}: the exchange did not end within {within:?}"))
}

/// An event stream: one event, then a second once `go_on` is notified.
pub fn events(go_on: Arc<tokio::sync::Notify>) -> Handler {
    Arc::new(move |_req| {
        let go_on = go_on.clone();
        Box::pin(async move {
            let frames = futures_util::stream::unfold(0, move |n| {
                let go_on = go_on.clone();
                async move {
                    match n {
                        0 => Some((
                            Ok::<_, Infallible>(http_body::Frame::data(Bytes::from("data: first\n\n"))),
                            1,
                        )),
                        1 => {
                            go_on.notified().await;
                            Some((Ok(http_body::Frame::data(Bytes::from("data: second\n\n"))), 2))
                        }
                        _ => None,
                    }
                }
            });
            let mut r = Response::new(http_body_util::StreamBody::new(frames).boxed());
            r.headers_mut()
                .insert("content-type", http::HeaderValue::from_static("text/event-stream"));
            r
        })
    })
}

/// How long to wait for work done on the nice-19 threads (mirrors and the
/// analysis): on a busy machine they get a core last, and 200 comparisons
/// took over 10 s with two busy loops beside the tests. A ceiling only: a
/// wait ends as soon as its condition holds.
pub const BACKGROUND: Duration = Duration::from_secs(60);

/// Waits for `cond` to hold, polling, up to `within`; panics with `what`.
pub async fn eventually<F: FnMut() -> bool>(within: Duration, what: &str, mut cond: F) {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of a metric summed over every series matching `labels`
/// (histograms: their sample count).
pub fn metric(g: &Gateway, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric_in(&g.metrics, name, labels)
}

/// [`metric`] read from a gateway's metrics, which outlive the gateway
/// (after [`Gateway::join`]).
pub fn metric_in(metrics: &switchyard::metrics::Metrics, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut sum = 0.0;
    for family in metrics.registry.gather() {
        if family.get_name() != name {
            continue;
        }
        for m in family.get_metric() {
            let ok = labels
                .iter()
                .all(|(k, v)| m.get_label().iter().any(|l| l.get_name() == *k && l.get_value() == *v));
            if ok {
                sum += if m.has_counter() {
                    m.get_counter().get_value()
                } else if m.has_gauge() {
                    m.get_gauge().get_value()
                } else {
                    m.get_histogram().get_sample_count() as f64
                };
            }
        }
    }
    sum
}

/// Stops a gateway and waits for its threads, off the async runtime.
pub async fn stop(g: Gateway) {
    g.shutdown();
    tokio::task::spawn_blocking(move || g.join()).await.unwrap();
}
