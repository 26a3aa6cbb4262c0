//! Helpers for the benchmarks in `bench/` (run by hand, not by CI):
//!
//! - `origin --port P [--faults PCT] [--items N] [--variant V] [--errors PCT]
//!   [--delay-ms D] [--differ PCT] [--typical-headers]`: a JSON API
//!   whose answers list N items (default 2; 50 make about 4 KB) and carry
//!   `"variant": V` (default 1: give new another to plant a difference);
//!   with `--faults`, that share of answers fails, in turn: slow (10 s),
//!   reset mid-body, 10 MB, and a gzip bomb (100 KB that decodes to 100 MB).
//! - `load --url URL --rate N --seconds S [--users U]`: an open-loop load at
//!   a fixed rate (a request every 1/N s whatever the answers take), each
//!   with a random `x-user-id`; prints sent, non-2xx, failures, p50/p99
//!   and the seconds until the last answer (`elapsed_s`).
//! - `cert --dir D`: a CA and a certificate it issued for `localhost` and
//!   127.0.0.1, as `D/ca.pem`, `D/gateway.pem` and `D/gateway.key`.
//! - `train --addr HOST:PORT [--tls-addr HOST:PORT --ca FILE] --seconds S`:
//!   every way a client reaches the gateway at once, closed loop
//!   (`train.rs` says what it holds): the training run of a profile-guided
//!   build (bench/RESULTS.md); fails if any request fails.
//!
//! Usage: cargo run --release --example bench-tools -- origin --port 18081

#[path = "tools/train.rs"]
mod train;

use std::convert::Infallible;
use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

type Body = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    match args.first().map(String::as_str) {
        Some("origin") => {
            let port: u16 = arg(&args, "--port").and_then(|p| p.parse().ok()).expect("--port P");
            let shape = Shape {
                faults: arg(&args, "--faults").and_then(|p| p.parse().ok()).unwrap_or(0.0),
                items: arg(&args, "--items").and_then(|p| p.parse().ok()).unwrap_or(2),
                variant: arg(&args, "--variant").and_then(|p| p.parse().ok()).unwrap_or(1),
                errors: arg(&args, "--errors").and_then(|p| p.parse().ok()).unwrap_or(0.0),
                delay: Duration::from_micros(
                    arg(&args, "--delay-ms")
                        .and_then(|p| p.parse::<f64>().ok())
                        .map_or(0, |ms| (ms * 1000.0) as u64),
                ),
                differ: arg(&args, "--differ").and_then(|p| p.parse().ok()).unwrap_or(0.0),
                typical_headers: args.iter().any(|a| a == "--typical-headers"),
            };
            rt.block_on(origin(port, shape));
        }
        Some("load") => {
            let url = arg(&args, "--url").expect("--url URL");
            let rate: f64 = arg(&args, "--rate").and_then(|p| p.parse().ok()).expect("--rate N");
            let secs: u64 = arg(&args, "--seconds")
                .and_then(|p| p.parse().ok())
                .expect("--seconds S");
            let users: u64 = arg(&args, "--users").and_then(|p| p.parse().ok()).unwrap_or(10_000);
            rt.block_on(load(url, rate, secs, users));
        }
        Some("idle") => {
            let addr = arg(&args, "--addr").expect("--addr HOST:PORT");
            let n: usize = arg(&args, "--connections")
                .and_then(|p| p.parse().ok())
                .expect("--connections N");
            let path = arg(&args, "--path").unwrap_or_else(|| "/item".into());
            rt.block_on(idle(addr, n, path));
        }
        Some("cert") => {
            let dir = arg(&args, "--dir").expect("--dir D");
            if let Err(e) = train::write_certificates(std::path::Path::new(&dir)) {
                eprintln!("cert: {e}");
                std::process::exit(1);
            }
        }
        Some("train") => {
            let gateway = train::Gateway {
                addr: arg(&args, "--addr").expect("--addr HOST:PORT"),
                tls: arg(&args, "--tls-addr").map(|addr| {
                    let ca = arg(&args, "--ca").expect("--ca FILE with --tls-addr");
                    (addr, std::path::PathBuf::from(ca))
                }),
            };
            let secs: u64 = arg(&args, "--seconds")
                .and_then(|p| p.parse().ok())
                .expect("--seconds S");
            if let Err(e) = rt.block_on(train::run(gateway, secs)) {
                eprintln!("train: {e}");
                std::process::exit(1);
            }
        }
        _ => {
            eprintln!("usage: bench-tools origin --port P [--faults PCT] [--items N] [--variant V] [--errors PCT] [--delay-ms D] [--differ PCT] [--typical-headers] | load --url URL --rate N --seconds S [--users U] | idle --addr HOST:PORT --connections N [--path P] | cert --dir D | train --addr HOST:PORT [--tls-addr HOST:PORT --ca FILE] --seconds S");
            std::process::exit(2);
        }
    }
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// What an origin answers.
#[derive(Clone, Copy)]
struct Shape {
    faults: f64,
    items: usize,
    variant: u32,
    /// Share of answers that are 500s (same body), in percent.
    errors: f64,
    /// Time taken by every answer.
    delay: Duration,
    /// Share of answers carrying another variant (a real difference).
    differ: f64,
    /// Answers also carry what a web server's usually do (NGINX's for a
    /// file): `Server`, `Last-Modified`, `ETag`, `Accept-Ranges`,
    /// `Connection`.
    typical_headers: bool,
}

fn json_body(path: &str, shape: Shape) -> String {
    let items: Vec<String> = (0..shape.items)
        .map(|i| {
            format!(
                "{{\"id\":{i},\"name\":\"item-{i}\",\"price\":{}.25,\"tags\":[\"a\",\"b\"]}}",
                i % 97
            )
        })
        .collect();
    format!(
        "{{\"path\":\"{path}\",\"variant\":{},\"items\":[{}],\"ok\":true}}",
        shape.variant,
        items.join(",")
    )
}

async fn answer(req: Request<Incoming>, shape: Shape, turn: Arc<AtomicUsize>) -> Response<Body> {
    let path = req.uri().path().to_string();
    // Read whole, as an application would, before answering an upload.
    let _ = req.into_body().collect().await;
    let faults = shape.faults;
    if !shape.delay.is_zero() {
        tokio::time::sleep(shape.delay).await;
    }
    let pick = |pct: f64| pct > 0.0 && rand::random::<f64>() * 100.0 < pct;
    let (failed, differs) = (pick(shape.errors), pick(shape.differ));
    let normal = || {
        let shape = Shape {
            variant: shape.variant + u32::from(differs),
            ..shape
        };
        let mut r = Response::new(full(json_body(&path, shape)));
        r.headers_mut()
            .insert("content-type", http::HeaderValue::from_static("application/json"));
        if shape.typical_headers {
            for (name, value) in [
                ("server", "nginx/1.22.1"),
                ("last-modified", "Mon, 30 Nov 2026 09:00:00 GMT"),
                ("etag", "\"6929a3a0-69\""),
                ("accept-ranges", "bytes"),
                ("connection", "keep-alive"),
            ] {
                r.headers_mut().insert(name, http::HeaderValue::from_static(value));
            }
        }
        if failed {
            *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
        }
        r
    };
    if faults <= 0.0 || rand::random::<f64>() * 100.0 >= faults {
        return normal();
    }
    match turn.fetch_add(1, Ordering::Relaxed) % 4 {
        0 => {
            tokio::time::sleep(Duration::from_secs(10)).await;
            normal()
        }
        1 => {
            // Promises 1,000 bytes, sends 11, then breaks: the connection
            // is closed mid-answer.
            let frames: Vec<Result<Frame<Bytes>, std::io::Error>> = vec![
                Ok(Frame::data(Bytes::from_static(b"{\"partial\":"))),
                Err(std::io::Error::other("reset")),
            ];
            let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream::iter(frames))));
            r.headers_mut()
                .insert("content-type", http::HeaderValue::from_static("application/json"));
            r.headers_mut()
                .insert("content-length", http::HeaderValue::from_static("1000"));
            r
        }
        2 => {
            let mut r = Response::new(full(vec![b'x'; 10 * 1024 * 1024]));
            r.headers_mut().insert(
                "content-type",
                http::HeaderValue::from_static("application/octet-stream"),
            );
            r
        }
        _ => {
            static BOMB: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
            let bomb = BOMB.get_or_init(|| {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
                let zeros = vec![b'0'; 1024 * 1024];
                for _ in 0..100 {
                    let _ = e.write_all(&zeros);
                }
                Bytes::from(e.finish().unwrap_or_default())
            });
            let mut r = Response::new(full(bomb.clone()));
            r.headers_mut()
                .insert("content-type", http::HeaderValue::from_static("application/json"));
            r.headers_mut()
                .insert("content-encoding", http::HeaderValue::from_static("gzip"));
            r
        }
    }
}

async fn origin(port: u16, shape: Shape) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
    let turn = Arc::new(AtomicUsize::new(0));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let turn = turn.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let turn = turn.clone();
                async move { Ok::<_, Infallible>(answer(req, shape, turn).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn load(url: String, rate: f64, secs: u64, users: u64) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(256)
        .build_http();
    let sent = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::<f64>::new()));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    while Instant::now() < end {
        tick.tick().await;
        let (client, url, sent, bad, failed, latencies) = (
            client.clone(),
            url.clone(),
            sent.clone(),
            bad.clone(),
            failed.clone(),
            latencies.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let user = format!("u{}", rand::random::<u64>() % users);
            let req = Request::get(format!("{url}/items/{}", rand::random::<u16>()))
                .header("x-user-id", user)
                .body(Full::new(Bytes::new()))
                .expect("request");
            let started = Instant::now();
            sent.fetch_add(1, Ordering::Relaxed);
            match client.request(req).await {
                Ok(resp) => {
                    let ok = resp.status().is_success();
                    let body = resp.into_body().collect().await;
                    if !ok {
                        bad.fetch_add(1, Ordering::Relaxed);
                    } else if body.is_err() {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(_) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
            latencies
                .lock()
                .expect("latencies")
                .push(started.elapsed().as_secs_f64() * 1000.0);
        }));
        if tasks.len() > 10_000 {
            tasks.retain(|t| !t.is_finished());
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    let mut l = latencies.lock().expect("latencies").clone();
    l.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| {
        l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    // Until the last answer: longer than `secs` by more than a request's
    // time when the server fell behind the schedule and worked off a backlog.
    println!(
        "sent {} non_2xx {} failed {} p50_ms {:.2} p99_ms {:.2} elapsed_s {:.2}",
        sent.load(Ordering::Relaxed),
        bad.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        q(0.5),
        q(0.99),
        start.elapsed().as_secs_f64()
    );
}

/// One keep-alive connection that has had one whole answer: the head, then
/// as many body bytes as its `Content-Length` says.
async fn one_answered(addr: &str, path: &str) -> std::io::Result<tokio::net::TcpStream> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: bench\r\n\r\n").as_bytes())
        .await?;
    let mut got = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::Error::other("closed before the whole answer"));
        }
        got.extend_from_slice(&buf[..n]);
        let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
        if !head.starts_with("http/1.1 200") {
            return Err(std::io::Error::other(format!(
                "answer: {}",
                head.lines().next().unwrap_or("")
            )));
        }
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| std::io::Error::other("no content-length"))?;
        if got.len() >= end + 4 + len {
            return Ok(s);
        }
    }
}

async fn idle(addr: String, n: usize, path: String) {
    let limit = Arc::new(tokio::sync::Semaphore::new(256));
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let (addr, path, limit) = (addr.clone(), path.clone(), limit.clone());
        tasks.push(tokio::spawn(async move {
            let _turn = limit.acquire_owned().await.expect("semaphore");
            one_answered(&addr, &path).await
        }));
    }
    let mut held = Vec::with_capacity(n);
    for t in tasks {
        match t.await.expect("task") {
            Ok(s) => held.push(s),
            Err(e) => {
                eprintln!("idle: a connection to {addr} failed after {} held: {e}", held.len());
                std::process::exit(1);
            }
        }
    }
    println!("ready {}", held.len());
    std::io::stdout().flush().expect("stdout");
    std::future::pending::<()>().await;
}
