//! `train`: the traffic a profile-guided build teaches the compiler with
//! (bench/RESULTS.md, "a profile-guided build"). A profile marks every path it never saw as
//! cold, and cold code is laid out and inlined for size, so the mix covers
//! each way a client reaches the gateway, closed loop, all at once:
//! HTTP/1.1 on kept-alive connections and on a connection per request,
//! HTTP/2 with concurrent streams, uploads of 1 KB to 1 MB, and, with a TLS
//! listener, both protocols over TLS (each chosen by ALPN). Any failure fails the run:
//! a profile of error paths would teach the wrong code.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Requests answered and failed, by kind of traffic.
#[derive(Default)]
struct Tally {
    answered: [AtomicU64; KINDS.len()],
    failed: AtomicU64,
}

const KINDS: [&str; 6] = ["http/1.1", "close", "h2", "upload", "tls http/1.1", "tls h2"];
const H1: usize = 0;
const CLOSE: usize = 1;
const H2: usize = 2;
const UPLOAD: usize = 3;
const TLS_H1: usize = 4;
const TLS_H2: usize = 5;

impl Tally {
    fn record(&self, kind: usize, ok: bool) {
        if ok {
            self.answered[kind].fetch_add(1, Ordering::Relaxed);
        } else {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The name `write_certificates` issues the gateway's certificate for,
/// and the one the TLS clients ask for.
const SERVER_NAME: &str = "localhost";

/// Where the gateway listens: plain `addr`, and optionally a TLS listener
/// (its address, and the CA file that vouches for its certificate).
pub struct Gateway {
    pub addr: String,
    pub tls: Option<(String, std::path::PathBuf)>,
}

/// Drives the mix at `gateway` for `seconds`; prints what was answered and
/// fails if nothing was, or if any request failed.
pub async fn run(gateway: Gateway, seconds: u64) -> Result<(), String> {
    let until = Instant::now() + Duration::from_secs(seconds);
    let tally = Arc::new(Tally::default());
    let mut loops = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (addr, tally) = (gateway.addr.clone(), tally.clone());
        loops.spawn(async move { kept_alive(|| plain(&addr), H1, &tally, until, |_| Bytes::new()).await });
    }
    for _ in 0..4 {
        let (addr, tally) = (gateway.addr.clone(), tally.clone());
        loops.spawn(async move { one_per_connection(&addr, &tally, until).await });
    }
    for _ in 0..2 {
        let (addr, tally) = (gateway.addr.clone(), tally.clone());
        loops.spawn(async move { multiplexed(|| plain(&addr), H2, &tally, until).await });
    }
    for _ in 0..2 {
        let (addr, tally) = (gateway.addr.clone(), tally.clone());
        loops.spawn(async move { kept_alive(|| plain(&addr), UPLOAD, &tally, until, upload).await });
    }
    if let Some((addr, ca)) = &gateway.tls {
        // Each offers one protocol, so the gateway's ALPN choice is the
        // one its clients make.
        for (kind, alpn) in [(TLS_H1, &b"http/1.1"[..]), (TLS_H2, &b"h2"[..])] {
            let connector = connector(ca, alpn)?;
            let (addr, tally) = (addr.clone(), tally.clone());
            let connect = move || secure(addr.clone(), connector.clone());
            loops.spawn(async move {
                if kind == TLS_H1 {
                    kept_alive(connect, kind, &tally, until, |_| Bytes::new()).await
                } else {
                    multiplexed(connect, kind, &tally, until).await
                }
            });
        }
    }
    while let Some(done) = loops.join_next().await {
        done.map_err(|e| format!("a traffic loop panicked: {e}"))??;
    }
    let counts: Vec<String> = KINDS
        .iter()
        .zip(&tally.answered)
        .map(|(kind, n)| format!("{kind} {}", n.load(Ordering::Relaxed)))
        .collect();
    let failed = tally.failed.load(Ordering::Relaxed);
    println!("trained: {}; failed {failed}", counts.join(", "));
    let answered: u64 = tally.answered.iter().map(|n| n.load(Ordering::Relaxed)).sum();
    if answered == 0 || failed > 0 {
        return Err(format!(
            "{failed} requests failed and {answered} were answered: a profile of this run would teach error paths; \
             check the gateway's log"
        ));
    }
    Ok(())
}

/// A GET of `target`: origin-form for HTTP/1.1, absolute for HTTP/2
/// (whose requests carry the scheme and authority as pseudo-headers).
fn get(target: &str) -> Request<Full<Bytes>> {
    Request::get(target)
        .header("host", "train.example")
        .header("user-agent", "switchyard-train/1")
        .header("accept", "*/*")
        .header("x-user-id", format!("u{}", rand::random::<u16>() % 1000))
        .body(Full::new(Bytes::new()))
        .expect("a GET")
}

/// Bodies of 1 KB, 64 KB and 1 MB in turn.
fn upload(turn: u64) -> Bytes {
    const SIZES: [usize; 3] = [1 << 10, 64 << 10, 1 << 20];
    Bytes::from(vec![b'x'; SIZES[(turn % 3) as usize]])
}

/// Whether an answer came whole and successful.
async fn answered<B>(resp: Result<http::Response<B>, hyper::Error>) -> bool
where
    B: hyper::body::Body,
{
    match resp {
        Ok(resp) => resp.status().is_success() && resp.into_body().collect().await.is_ok(),
        Err(_) => false,
    }
}

/// A connection to the gateway, plain or TLS.
type Io = Box<dyn Stream>;
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

async fn plain(addr: &str) -> Result<Io, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    Ok(Box::new(stream))
}

fn connector(ca_file: &Path, alpn: &[u8]) -> Result<tokio_rustls::TlsConnector, String> {
    let pem = std::fs::read(ca_file).map_err(|e| format!("reading {}: {e}", ca_file.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(&pem, ca_file)? {
        roots
            .add(cert)
            .map_err(|e| format!("{} is not a CA certificate: {e}", ca_file.display()))?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

fn certificates(pem: &[u8], file: &Path) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} holds no PEM certificate: {e}", file.display()))
}

async fn secure(addr: String, connector: tokio_rustls::TlsConnector) -> Result<Io, String> {
    let stream = TcpStream::connect(&addr)
        .await
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    let name = rustls::pki_types::ServerName::try_from(SERVER_NAME).expect("a DNS name");
    let tls = connector
        .connect(name, stream)
        .await
        .map_err(|e| format!("TLS handshake with {addr}: {e}"))?;
    Ok(Box::new(tls))
}

/// One connection at a time, requests one after another on it; a new
/// connection when the gateway closes one (its keep-alive limits).
async fn kept_alive<C, F>(
    connect: C,
    kind: usize,
    tally: &Tally,
    until: Instant,
    body: fn(u64) -> Bytes,
) -> Result<(), String>
where
    C: Fn() -> F,
    F: std::future::Future<Output = Result<Io, String>>,
{
    let mut turn = 0u64;
    while Instant::now() < until {
        let (mut sender, conn) = http1::handshake(TokioIo::new(connect().await?))
            .await
            .map_err(|e| format!("HTTP/1.1 handshake: {e}"))?;
        tokio::spawn(conn);
        while Instant::now() < until && sender.ready().await.is_ok() {
            turn += 1;
            let body = body(turn);
            let req = if body.is_empty() {
                get(&format!("/items/{}", turn % 500))
            } else {
                Request::post("/upload")
                    .header("host", "train.example")
                    .header("content-type", "application/octet-stream")
                    .body(Full::new(body))
                    .expect("a POST")
            };
            tally.record(kind, answered(sender.send_request(req).await).await);
        }
    }
    Ok(())
}

async fn one_per_connection(addr: &str, tally: &Tally, until: Instant) -> Result<(), String> {
    while Instant::now() < until {
        let (mut sender, conn) = http1::handshake(TokioIo::new(plain(addr).await?))
            .await
            .map_err(|e| format!("HTTP/1.1 handshake: {e}"))?;
        tokio::spawn(conn);
        let mut req = get("/items/close");
        req.headers_mut()
            .insert("connection", http::HeaderValue::from_static("close"));
        tally.record(CLOSE, answered(sender.send_request(req).await).await);
    }
    Ok(())
}

/// One HTTP/2 connection at a time carrying eight streams at once.
async fn multiplexed<C, F>(connect: C, kind: usize, tally: &Tally, until: Instant) -> Result<(), String>
where
    C: Fn() -> F,
    F: std::future::Future<Output = Result<Io, String>>,
{
    while Instant::now() < until {
        let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(connect().await?))
            .await
            .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
        tokio::spawn(conn);
        let scheme = if kind == TLS_H2 { "https" } else { "http" };
        let streams = (0..8).map(|stream| {
            let mut sender = sender.clone();
            async move {
                let mut turn = 0u64;
                while Instant::now() < until && sender.ready().await.is_ok() {
                    turn += 1;
                    let req = get(&format!("{scheme}://train.example/items/{stream}/{}", turn % 500));
                    tally.record(kind, answered(sender.send_request(req).await).await);
                }
            }
        });
        futures_util::future::join_all(streams).await;
    }
    Ok(())
}

/// Writes a CA (`ca.pem`) and a certificate it issued for `localhost` and
/// 127.0.0.1 (`gateway.pem`, `gateway.key`) into `dir`, for the gateway's
/// TLS listener during training.
pub fn write_certificates(dir: &Path) -> Result<(), String> {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let fail = |e: rcgen::Error| format!("making the training certificates: {e}");
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "Switchyard training CA");
    let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().map_err(fail)?).map_err(fail)?;
    let leaf = CertificateParams::new(vec![SERVER_NAME.to_string(), "127.0.0.1".to_string()]).map_err(fail)?;
    let key = KeyPair::generate().map_err(fail)?;
    let cert = leaf.signed_by(&key, &issuer).map_err(fail)?;
    for (name, pem) in [
        ("ca.pem", issuer.pem()),
        ("gateway.pem", cert.pem()),
        ("gateway.key", key.serialize_pem()),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, pem).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    Ok(())
}
