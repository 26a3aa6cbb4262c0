//! The HTTP/1.1 backend leg against backends written byte by byte on
//! loopback: every framing a backend may use, informational responses,
//! kept-alive connections the backend closes, early answers to uploads,
//! and broken responses, which must become a 502 that says why.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use support::*;
use switchyard::gateway::Gateway;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What a scripted backend does with one request.
enum Step {
    /// Write these bytes (a separate write each, so framing is split
    /// across TCP segments).
    Write(&'static [u8]),
    /// Close the connection.
    Close,
    /// Hold the connection, sending nothing.
    Pause(Duration),
}

/// A request as the scripted backend read it.
#[derive(Debug, Clone)]
struct Received {
    head: String,
    body_len: usize,
}

type Script = Arc<dyn Fn(&Received) -> Vec<Step> + Send + Sync>;

/// A backend that reads requests (Content-Length bodies only, or none, or
/// just the head when the script answers early) and answers from a script.
struct RawBackend {
    addr: std::net::SocketAddr,
    connections: Arc<AtomicUsize>,
}

impl RawBackend {
    async fn start(read_bodies: bool, script: Script) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(stream, read_bodies, script.clone()));
            }
        });
        Self { addr, connections }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

async fn serve(mut stream: TcpStream, read_bodies: bool, script: Script) {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        buf.drain(..head_end);
        let declared = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().to_string())
            })
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        if read_bodies {
            while buf.len() < declared {
                let mut chunk = vec![0u8; 64 * 1024];
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            buf.drain(..declared);
        }
        let received = Received {
            head,
            body_len: declared,
        };
        for step in script(&received) {
            match step {
                Step::Write(bytes) => {
                    if stream.write_all(bytes).await.is_err() {
                        return;
                    }
                    let _ = stream.flush().await;
                }
                Step::Close => return,
                Step::Pause(d) => tokio::time::sleep(d).await,
            }
        }
    }
}

fn gateway_to(old: &RawBackend) -> Gateway {
    gateway(&format!(
        "backends:\n  old: {{ url: \"{}\", timeout: \"5s\" }}\n  new: {{ url: \"{}\" }}\nrollout: {{ percent: 0 }}\n",
        old.url(),
        old.url()
    ))
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_alive_connections_the_backend_closes_are_replaced_without_an_error() {
    // Keeps the connection alive by the book, then closes it anyway after
    // every answer: the gateway must notice, or resend on a fresh one.
    let backend = RawBackend::start(true, Arc::new(|_| vec![Step::Write(OK), Step::Close])).await;
    let g = gateway_to(&backend);
    let c = client();
    for i in 0..50 {
        let a = get(&c, &format!("{}/n/{i}", proxy(&g)), &[]).await;
        assert_eq!((a.status.as_u16(), a.text()), (200, "ok".to_string()), "request {i}");
    }
    assert_eq!(metric(&g, "switchyard_upstream_errors_total", &[]), 0.0);
    assert_eq!(
        backend.connections.load(Ordering::SeqCst),
        50,
        "one connection per answer"
    );
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_alive_connections_are_reused() {
    let backend = RawBackend::start(true, Arc::new(|_| vec![Step::Write(OK)])).await;
    let g = gateway_to(&backend);
    let c = client();
    for _ in 0..20 {
        assert_eq!(get(&c, &format!("{}/r", proxy(&g)), &[]).await.status, 200);
    }
    // One worker, one request at a time: one connection does it all.
    assert!(
        backend.connections.load(Ordering::SeqCst) <= 2,
        "{} connections for 20 sequential requests",
        backend.connections.load(Ordering::SeqCst)
    );
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_framing_arrives_whole() {
    let backend = RawBackend::start(
        true,
        Arc::new(|r: &Received| {
            let path = r.head.split(' ').nth(1).unwrap_or("/").to_string();
            match path.as_str() {
                "/chunked" => vec![
                    Step::Write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
                    Step::Write(b"5;ext=1\r\nhello\r\n"),
                    Step::Write(b"7\r\n, world\r\n0\r\n"),
                    Step::Write(b"x-checksum: 9\r\n\r\n"),
                ],
                "/until-close" => vec![
                    Step::Write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nall of "),
                    Step::Write(b"this, until the end"),
                    Step::Close,
                ],
                "/continue" => vec![
                    Step::Write(b"HTTP/1.1 100 Continue\r\n\r\n"),
                    Step::Write(b"HTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\nmade"),
                ],
                "/split-length" => vec![
                    Step::Write(b"HTTP/1.1 200 OK\r\nContent-Len"),
                    Step::Write(b"gth: 10\r\n\r\n01234"),
                    Step::Write(b"56789"),
                ],
                "/no-content" => vec![Step::Write(b"HTTP/1.1 204 No Content\r\n\r\n")],
                "/head" => vec![Step::Write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")],
                _ => vec![Step::Write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")],
            }
        }),
    )
    .await;
    let g = gateway_to(&backend);
    let c = client();
    let url = |p: &str| format!("{}{p}", proxy(&g));

    let a = get(&c, &url("/chunked"), &[]).await;
    assert_eq!((a.status.as_u16(), a.text()), (200, "hello, world".to_string()));
    let a = get(&c, &url("/until-close"), &[]).await;
    assert_eq!(
        (a.status.as_u16(), a.text()),
        (200, "all of this, until the end".to_string())
    );
    let a = get(&c, &url("/continue"), &[]).await;
    assert_eq!((a.status.as_u16(), a.text()), (201, "made".to_string()));
    let a = get(&c, &url("/split-length"), &[]).await;
    assert_eq!((a.status.as_u16(), a.text()), (200, "0123456789".to_string()));
    let a = get(&c, &url("/no-content"), &[]).await;
    assert_eq!((a.status.as_u16(), a.body.len()), (204, 0));
    let a = send(&c, Method::HEAD, &url("/head"), &[], Bytes::new()).await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.header("content-length"),
        Some("1000"),
        "HEAD keeps the announced length"
    );
    // The connection after a HEAD carries on in step.
    let a = get(&c, &url("/chunked"), &[]).await;
    assert_eq!(a.text(), "hello, world");
    assert_eq!(metric(&g, "switchyard_upstream_errors_total", &[]), 0.0);
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_are_framed_for_the_backend() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::<Received>::new()));
    let record = seen.clone();
    let backend = RawBackend::start(
        true,
        Arc::new(move |r: &Received| {
            record.lock().unwrap().push(r.clone());
            vec![Step::Write(OK)]
        }),
    )
    .await;
    let g = gateway_to(&backend);
    let c = client();
    let body = vec![b'x'; 300_000];
    let a = send(&c, Method::POST, &format!("{}/up", proxy(&g)), &[], body).await;
    assert_eq!(a.status, 200);
    let a = send(&c, Method::POST, &format!("{}/empty", proxy(&g)), &[], Bytes::new()).await;
    assert_eq!(a.status, 200);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0].body_len, 300_000);
    assert!(seen[0].head.starts_with("POST /up HTTP/1.1\r\n"), "{}", seen[0].head);
    assert!(
        seen[1].head.to_ascii_lowercase().contains("content-length: 0\r\n"),
        "{}",
        seen[1].head
    );
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_answer_to_an_upload_reaches_the_client() {
    // Refuses the upload from its head alone and never reads the body.
    let backend = RawBackend::start(
        false,
        Arc::new(|_| {
            vec![
                Step::Write(
                    b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 8\r\nConnection: close\r\n\r\ntoo big\n",
                ),
                Step::Close,
            ]
        }),
    )
    .await;
    let g = gateway_to(&backend);
    // A raw client, reading while it writes: hyper's client reports its
    // failed write rather than the answer once the gateway stops reading.
    let stream = TcpStream::connect(g.proxy_addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let upload = tokio::spawn(async move {
        let size = 4 << 20;
        let head = format!("PUT /up HTTP/1.1\r\nhost: x\r\ncontent-length: {size}\r\n\r\n");
        wr.write_all(head.as_bytes()).await?;
        wr.write_all(&vec![0u8; size]).await
    });
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut chunk = [0u8; 4096];
        while !answer.ends_with(b"too big\n") {
            match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&chunk[..n]),
            }
        }
    });
    read.await.expect("the answer arrives while the upload is still going");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    assert!(answer.ends_with("too big\n"), "{answer}");
    upload.abort();
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_responses_are_a_502_that_says_why() {
    let backend = RawBackend::start(
        true,
        Arc::new(|r: &Received| {
            let path = r.head.split(' ').nth(1).unwrap_or("/").to_string();
            match path.as_str() {
                "/garbage" => vec![Step::Write(b"HELLO THERE\r\n\r\n"), Step::Close],
                "/two-lengths" => vec![Step::Write(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
                )],
                "/silent" => vec![Step::Close],
                "/bad-chunk" => vec![
                    Step::Write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
                    Step::Write(b"zz\r\n"),
                ],
                "/short" => vec![
                    Step::Write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten.."),
                    Step::Close,
                ],
                _ => vec![Step::Write(OK)],
            }
        }),
    )
    .await;
    let g = gateway_to(&backend);
    let c = client();
    let url = |p: &str| format!("{}{p}", proxy(&g));

    let a = get(&c, &url("/garbage"), &[]).await;
    assert_eq!(a.status, 502);
    assert!(
        a.text().starts_with("the old backend failed: malformed response head"),
        "{}",
        a.text()
    );
    let a = get(&c, &url("/two-lengths"), &[]).await;
    assert_eq!(a.text(), "the old backend failed: conflicting Content-Length values\n");
    let a = get(&c, &url("/silent"), &[]).await;
    assert_eq!(
        a.text(),
        "the old backend failed: connection closed before a response\n"
    );
    assert_eq!(
        metric(
            &g,
            "switchyard_upstream_errors_total",
            &[("backend", "old"), ("kind", "protocol")]
        ),
        3.0
    );

    // Failures inside the body come after the head was sent (or was about
    // to be): the client's exchange breaks rather than ending as if complete.
    for path in ["/bad-chunk", "/short"] {
        let outcome = get_whole(&c, &url(path), Duration::from_secs(5)).await;
        assert!(outcome.is_err(), "{path}: a broken body must not look complete");
    }
    // And the gateway carries on.
    assert_eq!(get(&c, &url("/fine"), &[]).await.text(), "ok");
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stalls_is_cut_after_the_read_timeout() {
    let backend = RawBackend::start(
        true,
        Arc::new(|r: &Received| {
            if r.head.starts_with("GET /stall ") {
                vec![
                    Step::Write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"),
                    Step::Write(b"the first ten"),
                    Step::Pause(Duration::from_secs(30)),
                ]
            } else {
                vec![Step::Write(OK)]
            }
        }),
    )
    .await;
    let g = gateway(&format!(
        "backends:\n  old: {{ url: \"{}\", read_timeout: \"300ms\" }}\n  new: {{ url: \"{}\" }}\n",
        backend.url(),
        backend.url()
    ));
    let c = client();
    let started = std::time::Instant::now();
    let outcome = get_whole(&c, &format!("{}/stall", proxy(&g)), Duration::from_secs(10)).await;
    assert!(outcome.is_err(), "a stalled body must not look complete");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "cut before the read timeout"
    );
    assert_eq!(get(&c, &format!("{}/fine", proxy(&g)), &[]).await.text(), "ok");
    stop(g).await;
}

/// An intermediary answers in its own HTTP version: an HTTP/1.0 backend
/// must not turn the gateway's answers to HTTP/1.1 clients into HTTP/1.0
/// ones that close the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_1_0_backend_is_answered_to_http_1_1_clients_in_http_1_1() {
    let backend = RawBackend::start(
        true,
        Arc::new(|_r: &Received| {
            vec![
                Step::Write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"),
                Step::Close,
            ]
        }),
    )
    .await;
    let g = gateway_to(&backend);
    let mut s = TcpStream::connect(g.proxy_addr).await.unwrap();
    let mut seen = String::new();
    for _ in 0..2 {
        s.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut buf = vec![0u8; 4096];
        let mut got = String::new();
        while !got.contains("\r\n\r\nok") {
            let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
                .await
                .expect("an answer")
                .unwrap();
            assert!(
                n > 0,
                "the gateway closed a kept-alive HTTP/1.1 connection after: {got}"
            );
            got.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
        assert!(!got.to_ascii_lowercase().contains("connection: close"), "{got}");
        seen.push_str(&got);
    }
    assert!(
        seen.contains("via: 1.0 switchyard"),
        "Via still says what the backend spoke: {seen}"
    );
}
