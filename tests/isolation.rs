//! A faulty shadow side, or a backend that holds its connections, cannot
//! cost live traffic: mirrored answers are read only up to the kept size
//! (then their connection is closed), every mirrored byte counts against one
//! budget, mirrors run on their own threads at the lowest CPU priority, and
//! each backend gets a bounded number of connections.

mod support;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// A backend answering every request with `size` bytes of `byte`, counting
/// the bytes it managed to write before the gateway closed the connection.
struct Firehose {
    addr: std::net::SocketAddr,
    written: Arc<AtomicU64>,
    finished: Arc<AtomicUsize>,
    cut: Arc<AtomicUsize>,
}

impl Firehose {
    async fn start(size: usize, head_extra: &'static str, body: Arc<Vec<u8>>) -> Firehose {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let written = Arc::new(AtomicU64::new(0));
        let finished = Arc::new(AtomicUsize::new(0));
        let cut = Arc::new(AtomicUsize::new(0));
        let (w, f, c) = (written.clone(), finished.clone(), cut.clone());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let (w, f, c, body) = (w.clone(), f.clone(), c.clone(), body.clone());
                tokio::spawn(async move {
                    loop {
                        if !read_head(&mut s).await {
                            return;
                        }
                        let head = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n{head_extra}content-length: {}\r\n\r\n",
                            body.len().min(size)
                        );
                        if s.write_all(head.as_bytes()).await.is_err() {
                            return;
                        }
                        for chunk in body[..size.min(body.len())].chunks(64 * 1024) {
                            if s.write_all(chunk).await.is_err() {
                                c.fetch_add(1, Ordering::SeqCst);
                                return;
                            }
                            w.fetch_add(chunk.len() as u64, Ordering::SeqCst);
                        }
                        f.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
        });
        Firehose {
            addr,
            written,
            finished,
            cut,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Reads one request head (bodiless requests only); false at the end.
async fn read_head(s: &mut TcpStream) -> bool {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte).await {
            Ok(1) => buf.push(byte[0]),
            _ => return false,
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_shadow_answer_is_read_only_to_the_kept_size_then_cut() {
    let old = Origin::constant("{\"ok\": true}").await;
    let ten_mb = Arc::new(vec![b'x'; 10 * 1024 * 1024]);
    let new = Firehose::start(ten_mb.len(), "", ten_mb).await;
    let g = gateway(&format!(
        "backends:\n  old: {{ url: \"{}\" }}\n  new: {{ url: \"{}\" }}\nshadow: {{ percent: 100, max_response_bytes: 65536 }}\n",
        old.url(),
        new.url()
    ));
    let c = client();
    for _ in 0..8 {
        let a = get(&c, &format!("{}/big", proxy(&g)), &[]).await;
        assert_eq!(a.status, 200);
    }
    let truncated = || {
        metric(
            &g,
            "switchyard_shadow_requests_total",
            &[("backend", "new"), ("outcome", "truncated")],
        )
    };
    eventually(Duration::from_secs(20), "eight truncated mirrors", || {
        truncated() == 8.0
    })
    .await;
    eventually(
        Duration::from_secs(20),
        "the firehose sees every connection cut",
        || new.cut.load(Ordering::SeqCst) == 8,
    )
    .await;
    // Before, the rest of each answer was drained (up to shadow.timeout):
    // all 80 MB written. Now each stops near 64 KB plus the socket buffers.
    assert_eq!(new.finished.load(Ordering::SeqCst), 0, "no answer was read to its end");
    assert!(
        new.written.load(Ordering::SeqCst) < 8 * 10 * 1024 * 1024,
        "{} bytes written",
        new.written.load(Ordering::SeqCst)
    );
    // The last mirror hands its bytes back as its task ends.
    eventually(Duration::from_secs(10), "nothing held afterwards", || {
        metric(&g, "switchyard_shadow_buffered_bytes", &[]) == 0.0
    })
    .await;
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_bomb_from_the_shadow_side_decodes_no_further_than_the_bound() {
    use std::io::Write;
    let old = Origin::constant("{\"ok\": true}").await;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(&vec![b'a'; 200 * 1024 * 1024]).unwrap();
    let bomb = Arc::new(e.finish().unwrap());
    assert!(bomb.len() < 1024 * 1024, "a small answer that decodes to 200 MB");
    let new = Firehose::start(bomb.len(), "content-encoding: gzip\r\n", bomb).await;
    let g = gateway(&format!(
        "backends:\n  old: {{ url: \"{}\" }}\n  new: {{ url: \"{}\" }}\nshadow: {{ percent: 100 }}\n",
        old.url(),
        new.url()
    ));
    let c = client();
    for _ in 0..3 {
        assert_eq!(get(&c, &format!("{}/bomb", proxy(&g)), &[]).await.status, 200);
    }
    eventually(Duration::from_secs(30), "three comparisons", || {
        metric(&g, "switchyard_comparisons_total", &[("result", "diff")]) == 3.0
    })
    .await;
    let report = get(&c, &format!("{}/report.json", admin(&g)), &[]).await.text();
    assert!(
        report.contains("a comparison may decode"),
        "the report says why: {report}"
    );
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrored_bytes_held_never_pass_the_budget() {
    let body = Arc::new(vec![b'y'; 60 * 1024]);
    let (old, new) = (
        Firehose::start(body.len(), "", body.clone()).await,
        Firehose::start(body.len(), "", body).await,
    );
    let g = gateway(&format!(
        "backends:\n  old: {{ url: \"{}\" }}\n  new: {{ url: \"{}\" }}\nshadow: {{ percent: 100, max_response_bytes: 65536, max_buffered_bytes: 131072 }}\n",
        old.url(),
        new.url()
    ));
    let peak = Arc::new(AtomicU64::new(0));
    let watching = Arc::new(Notify::new());
    let watcher = {
        let (registry, peak, watching) = (g.metrics.clone(), peak.clone(), watching.clone());
        tokio::spawn(async move {
            loop {
                let now = registry.mirror.shadow_buffered_bytes.get().max(0) as u64;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::select! {
                    _ = watching.notified() => return,
                    _ = tokio::task::yield_now() => {}
                }
            }
        })
    };
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let url = format!("{}/r{i}", proxy(&g));
            tokio::spawn(async move {
                let a = get(&client(), &url, &[]).await;
                assert_eq!(a.status, 200);
                assert_eq!(a.body.len(), 60 * 1024, "the live answer is whole");
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let shed = || metric(&g, "switchyard_shadow_drops_total", &[("reason", "buffered_bytes")]);
    eventually(Duration::from_secs(20), "every mirror accounted for", || {
        let done = metric(&g, "switchyard_comparisons_total", &[])
            + metric(
                &g,
                "switchyard_shadow_requests_total",
                &[("backend", "new"), ("outcome", "dropped")],
            );
        done >= 40.0 && g.metrics.mirror.shadow_buffered_bytes.get() == 0
    })
    .await;
    watching.notify_one();
    watcher.await.unwrap();
    assert!(shed() > 0.0, "40 answers of 60 KB at once cannot all fit 128 KB");
    assert!(
        peak.load(Ordering::SeqCst) <= 131_072,
        "peak {} bytes held",
        peak.load(Ordering::SeqCst)
    );
    stop(g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_gets_at_most_max_connections_and_the_rest_wait_then_503() {
    let gate = Arc::new(Notify::new());
    let inside = Arc::new(AtomicUsize::new(0));
    let old = {
        let (gate, inside) = (gate.clone(), inside.clone());
        Origin::start(Arc::new(move |_req| {
            let (gate, inside) = (gate.clone(), inside.clone());
            Box::pin(async move {
                inside.fetch_add(1, Ordering::SeqCst);
                gate.notified().await;
                json_response(200, serde_json::json!({"held": true}))
            })
        }))
        .await
    };
    let new = Origin::named("new").await;
    let g = gateway(&format!(
        "backends:\n  old: {{ url: \"{}\", max_connections: 3, queue_timeout: \"300ms\" }}\n  new: {{ url: \"{}\" }}\n",
        old.url(),
        new.url()
    ));
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let url = format!("{}/slow/{i}", proxy(&g));
            tokio::spawn(async move { get(&client(), &url, &[]).await })
        })
        .collect();
    eventually(Duration::from_secs(10), "five requests refused", || {
        metric(
            &g,
            "switchyard_upstream_errors_total",
            &[("backend", "old"), ("kind", "max_connections")],
        ) == 5.0
    })
    .await;
    assert_eq!(inside.load(Ordering::SeqCst), 3, "no more than 3 at the backend");
    // Let the three through.
    eventually(Duration::from_secs(10), "the three released", || {
        gate.notify_waiters();
        tasks.iter().filter(|t| t.is_finished()).count() == 8
    })
    .await;
    let mut codes = Vec::new();
    for t in tasks {
        let a = t.await.unwrap();
        if a.status == 503 {
            assert!(a.text().contains("max_connections"), "{}", a.text());
        }
        codes.push(a.status.as_u16());
    }
    codes.sort();
    assert_eq!(codes, [200, 200, 200, 503, 503, 503, 503, 503]);
    stop(g).await;
}

/// The nice value of this process's threads whose name starts with `prefix`.
fn nice_of_threads(prefix: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !comm.trim().starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
        if let Some(n) = rest.split_whitespace().nth(16).and_then(|n| n.parse().ok()) {
            out.push(n);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrors_and_analysis_run_at_the_lowest_cpu_priority() {
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let g = gateway(&format!(
        "{}shadow: {{ percent: 100, workers: 2 }}\n",
        backends(&old, &new)
    ));
    // Thread names are cut at 15 characters by the kernel. A thread names
    // itself and then lowers its priority as it starts, so both are waited
    // for: a thread that stays at 0 fails here after the deadline.
    let lowered = |prefix: &str, at_least: usize| {
        let nice = nice_of_threads(prefix);
        nice.len() >= at_least && nice.iter().all(|n| *n == 19)
    };
    eventually(Duration::from_secs(10), "two shadow threads at nice 19", || {
        lowered("switchyard-shad", 2)
    })
    .await;
    eventually(Duration::from_secs(10), "the analysis thread at nice 19", || {
        lowered("switchyard-anal", 1)
    })
    .await;
    // Workers are started after the shadow runtime: wait until they have
    // named themselves, then they must still be at the default priority.
    eventually(Duration::from_secs(10), "the live workers named", || {
        !nice_of_threads("switchyard-w").is_empty()
    })
    .await;
    let workers = nice_of_threads("switchyard-w");
    assert!(
        workers.iter().all(|n| *n == 0),
        "live workers keep their priority: {workers:?}"
    );
    stop(g).await;
}
