//! Quiet HTTP/1.1 connections are set aside without hyper's buffers
//! (`switchyard_connections_parked`) and taken up again when the client
//! writes: nothing the client sees changes. Its next request is answered
//! on the same connection, a head paused half-way is answered whole, a
//! pause cannot restart the slowloris clock, an answer still streaming is
//! never set aside, and quiet connections still close on time and on
//! shutdown.
//!
//! The pauses below are the clients' behaviour under test, longer than
//! the two one-second looks a connection takes to be parked; what the
//! gateway did is waited for as a condition with a deadline.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use support::raw::statuses;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

const PAUSE: Duration = Duration::from_secs(3);

/// Reads one whole answer with a `content-length` from `s`.
async fn answer(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_owned)
                })
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                return text;
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) => panic!("the gateway closed the connection; got so far: {text:?}"),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => panic!("read failed: {e}; got so far: {text:?}"),
            Err(_) => panic!("no whole answer within 10 s; got so far: {text:?}"),
        }
    }
}

/// Waits until the gateway closes `s`; how long that took.
async fn closed_after(s: &mut TcpStream, within: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout(within.saturating_sub(started.elapsed()), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => continue,
            Err(_) => panic!("the connection was still open after {within:?}"),
        }
    }
}

/// Stops `g` (whose drain is 60 s) and checks that it stopped, and closed
/// each of `quiet`, well within that.
async fn stops_without_waiting_out_the_drain(g: Gateway, quiet: &mut [&mut TcpStream]) {
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), stop(g))
        .await
        .expect("the gateway stopped within 10 s, not after the 60 s drain");
    for s in quiet {
        closed_after(s, Duration::from_secs(5)).await;
    }
    assert!(started.elapsed() < Duration::from_secs(10));
}

async fn parked(g: &Gateway, n: f64) {
    eventually(Duration::from_secs(10), &format!("{n} connection(s) parked"), || {
        metric(g, "switchyard_connections_parked", &[]) == n
    })
    .await;
}

use switchyard::gateway::Gateway;

#[tokio::test]
async fn a_quiet_connection_is_parked_and_answers_its_next_request_itself() {
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let g = gateway(&backends(&old, &new));
    let mut s = TcpStream::connect(g.proxy_addr).await.unwrap();
    s.write_all(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    assert!(answer(&mut s).await.starts_with("HTTP/1.1 200"));
    parked(&g, 1.0).await;

    s.write_all(b"GET /two HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    assert!(answer(&mut s).await.starts_with("HTTP/1.1 200"));
    assert_eq!(metric(&g, "switchyard_connections_parked", &[]), 0.0);
    assert_eq!(
        metric(&g, "switchyard_connections_total", &[]),
        1.0,
        "one connection carried both"
    );
    let paths: Vec<String> = old.seen().iter().map(|s| s.path.clone()).collect();
    assert_eq!(paths, ["/one", "/two"]);

    // Parked again, then two requests in one write: both answered, in order.
    parked(&g, 1.0).await;
    s.write_all(b"GET /three HTTP/1.1\r\nHost: x\r\n\r\nGET /four HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(answer(&mut s).await.starts_with("HTTP/1.1 200"));
    assert!(answer(&mut s).await.starts_with("HTTP/1.1 200"));
    assert_eq!(old.seen().last().unwrap().path, "/four");
    stop(g).await;
}

#[tokio::test]
async fn a_head_paused_half_way_is_answered_whole() {
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let g = gateway(&backends(&old, &new));
    let mut s = TcpStream::connect(g.proxy_addr).await.unwrap();
    s.write_all(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    answer(&mut s).await;
    s.write_all(b"GET /sec").await.unwrap();
    tokio::time::sleep(PAUSE).await;
    s.write_all(b"ond HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    assert!(answer(&mut s).await.starts_with("HTTP/1.1 200"));
    assert_eq!(old.seen().last().unwrap().path, "/second");
    stop(g).await;
}

#[tokio::test]
async fn pauses_in_a_head_do_not_restart_the_header_clock() {
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let g = gateway(&format!(
        "server: {{ header_read_timeout: 3s }}\n{}",
        backends(&old, &new)
    ));
    let mut s = TcpStream::connect(g.proxy_addr).await.unwrap();
    s.write_all(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    answer(&mut s).await;
    // A byte every 0.8 s, each pause long enough for the checks to find the
    // connection quiet: were the deadline to restart with every fresh
    // hyper connection, this head would be read forever.
    let started = Instant::now();
    let head = b"GET /slow HTTP/1.1\r\nHost: x\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    let mut closed = false;
    for b in head {
        if s.write_all(&[*b]).await.is_err() {
            closed = true;
            break;
        }
        let mut probe = [0u8; 64];
        if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(Duration::from_millis(800), s.read(&mut probe)).await {
            closed = true;
            break;
        }
    }
    let took = started.elapsed();
    assert!(closed, "a head sent a byte every 0.8 s was still read after {took:?}");
    // 3 s of header time from the moment the connection was last found
    // quiet (up to a check, 1 s, after it went quiet), and scheduling slack.
    assert!(took < Duration::from_secs(8), "closed only after {took:?}");
    assert_eq!(old.count(), 1, "the slow head never reached a backend");
    stop(g).await;
}

#[tokio::test]
async fn a_quiet_connection_still_closes_after_the_header_read_timeout() {
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let g = gateway(&format!(
        "server: {{ header_read_timeout: 3s }}\n{}",
        backends(&old, &new)
    ));
    let mut s = TcpStream::connect(g.proxy_addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    answer(&mut s).await;
    parked(&g, 1.0).await;
    let took = closed_after(&mut s, Duration::from_secs(15)).await;
    // Parked after 1–2 s of quiet, closed 3 s after the first look that
    // found it quiet.
    assert!(took < Duration::from_secs(6), "closed only after {took:?} more");
    parked(&g, 0.0).await;
    eventually(Duration::from_secs(5), "no connection left open", || {
        metric(&g, "switchyard_connections_active", &[]) == 0.0
    })
    .await;
    stop(g).await;
}

#[tokio::test]
async fn an_answer_streaming_through_a_pause_is_never_set_aside() {
    let go_on = Arc::new(Notify::new());
    let old = Origin::start(events(go_on.clone())).await;
    let new = Origin::named("new").await;
    let g = gateway(&backends(&old, &new));
    let mut s = TcpStream::connect(g.proxy_addr).await.unwrap();
    s.write_all(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("data: first") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("the first event within 10 s")
            .unwrap();
        assert!(n > 0, "closed before the first event");
        got.extend_from_slice(&buf[..n]);
    }
    // Nothing moves on the connection for longer than it takes to park a
    // quiet one; this one has an answer in flight.
    tokio::time::sleep(PAUSE).await;
    assert_eq!(metric(&g, "switchyard_connections_parked", &[]), 0.0);
    go_on.notify_one();
    while !String::from_utf8_lossy(&got).ends_with("0\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("the rest of the stream within 10 s")
            .unwrap();
        assert!(
            n > 0,
            "closed before the stream's end: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&got).contains("data: second"));
    // And the connection goes on serving.
    s.write_all(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(statuses(&String::from_utf8_lossy(&buf[..n])), [200]);
    stop(g).await;
}

#[tokio::test]
async fn shutdown_closes_parked_connections_without_waiting_out_the_drain() {
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let g = gateway(&format!("server: {{ drain_timeout: 60s }}\n{}", backends(&old, &new)));
    let mut s = TcpStream::connect(g.proxy_addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    answer(&mut s).await;
    parked(&g, 1.0).await;
    stops_without_waiting_out_the_drain(g, &mut [&mut s]).await;
}

#[tokio::test]
async fn shutdown_closes_quiet_connections_not_yet_parked_without_waiting_out_the_drain() {
    let (old, new) = (Origin::named("old").await, Origin::named("new").await);
    let g = gateway(&format!("server: {{ drain_timeout: 60s }}\n{}", backends(&old, &new)));
    // One answered and still in hyper's hands (parking takes two quiet
    // looks a second apart), one that has not said a word: each waits for
    // shutdown having polled that wait before, and must be woken by it.
    let mut served = TcpStream::connect(g.proxy_addr).await.unwrap();
    served.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    answer(&mut served).await;
    let mut silent = TcpStream::connect(g.proxy_addr).await.unwrap();
    eventually(Duration::from_secs(10), "both connections accepted", || {
        metric(&g, "switchyard_connections_active", &[]) == 2.0
    })
    .await;
    stops_without_waiting_out_the_drain(g, &mut [&mut served, &mut silent]).await;
}
