//! Upgraded connections (WebSocket, or any `Upgrade` protocol): after the
//! backend's `101`, the client's connection and the backend's carry bytes
//! both ways until either side closes, nothing passes for the idle
//! timeout, or the gateway shuts down (then after the drain time).
//!
//! A tunnel outlives hyper's connection (its future ends at the 101), so
//! tunnels are tracked here, per worker, and shutdown waits for them; the
//! backend connection keeps its place under `max_connections` until the
//! tunnel closes, and is never pooled.

use std::time::Duration;

use bytes::BytesMut;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use prometheus::{IntCounter, IntGauge};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::forward::Upstream;
use super::pool::Switch;
use super::switch::SwitchAsk;
use super::wire::Connection;
use super::{Inbound, ProxyBody, ProxyError};

/// Bytes read from either side before they are written to the other.
const BUFFER: usize = 16 * 1024;

/// One worker's tunnels.
pub struct Tunnels {
    tracker: TaskTracker,
    shutdown: CancellationToken,
    drain: Duration,
}

/// What a tunnel is counted under.
pub struct TunnelMetrics {
    pub open: IntGauge,
    pub total: IntCounter,
}

/// How a tunnel ended, for its log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Closed,
    Idle,
    Drained,
    Failed,
}

impl Ending {
    fn as_str(self) -> &'static str {
        match self {
            Ending::Closed => "closed",
            Ending::Idle => "idle",
            Ending::Drained => "drained",
            Ending::Failed => "error",
        }
    }
}

impl Tunnels {
    pub fn new(shutdown: CancellationToken, drain: Duration) -> Self {
        Self {
            tracker: TaskTracker::new(),
            shutdown,
            drain,
        }
    }

    /// Joins the client's side (once hyper hands it over) to `backend`.
    pub fn open(
        &self,
        client: OnUpgrade,
        backend: Connection,
        idle: Duration,
        metrics: TunnelMetrics,
        name: std::sync::Arc<str>,
    ) {
        let (shutdown, drain) = (self.shutdown.clone(), self.drain);
        self.tracker.spawn(async move {
            let client = match client.await {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(backend = %name, error = %e, "the client left before the upgrade");
                    return;
                }
            };
            let (mut stream, leftover, permit) = backend.into_parts();
            let mut client = TokioIo::new(client);
            metrics.open.inc();
            metrics.total.inc();
            let started = std::time::Instant::now();
            let stopping = async {
                shutdown.cancelled().await;
                tokio::time::sleep(drain).await;
            };
            let (ending, up, down) = tokio::select! {
                r = pump(&mut client, &mut stream, leftover, idle) => r,
                _ = stopping => (Ending::Drained, 0, 0),
            };
            metrics.open.dec();
            drop(permit);
            tracing::debug!(
                backend = %name,
                ending = ending.as_str(),
                bytes_up = up,
                bytes_down = down,
                seconds = started.elapsed().as_secs_f64(),
                "upgraded connection closed"
            );
        });
    }

    /// After the listeners stopped: waits for the tunnels, which close by
    /// themselves once the drain time is over.
    pub async fn wait_closed(&self) {
        self.tracker.close();
        let _ = tokio::time::timeout(self.drain + Duration::from_secs(1), self.tracker.wait()).await;
    }

    /// Forwards a request that asks to switch protocols. On the backend's
    /// 101, the tunnel is opened and the head returned in the client's terms
    /// (hyper hands the client's connection, or HTTP/2 stream, over once it
    /// is sent); any other answer is returned like an ordinary response.
    pub async fn forward(
        &self,
        upstream: &Upstream,
        req: http::Request<ProxyBody>,
        ask: &SwitchAsk,
        client: OnUpgrade,
        idle: Duration,
        metrics: TunnelMetrics,
    ) -> Result<http::Response<Inbound>, ProxyError> {
        match upstream.switch(req).await? {
            Switch::Refused(resp) => Ok(resp.map(Inbound::from)),
            Switch::Switched(mut head, conn) => {
                ask.answer_client(&mut head);
                self.open(client, conn, idle, metrics, upstream.name().clone());
                Ok(http::Response::from_parts(
                    head,
                    Inbound::Whole { data: None, at: None },
                ))
            }
        }
    }
}

/// Copies both ways until both sides have closed, either fails, or
/// nothing moves for `idle`. `leftover` are backend bytes read past the
/// 101 head, owed to the client first. Returns bytes client→backend and
/// backend→client.
async fn pump<C, B>(client: &mut C, backend: &mut B, leftover: BytesMut, idle: Duration) -> (Ending, u64, u64)
where
    C: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (mut up, mut down) = (Direction::new(), Direction::new());
    if !leftover.is_empty() && down.pass(Ok(leftover.len()), &leftover, client).await.is_err() {
        return (Ending::Failed, up.bytes, down.bytes);
    }
    let quiet = tokio::time::sleep(idle);
    tokio::pin!(quiet);
    while up.open || down.open {
        let moved = tokio::select! {
            r = client.read(&mut up.buf), if up.open => up.pass_own(r, backend).await,
            r = backend.read(&mut down.buf), if down.open => down.pass_own(r, client).await,
            _ = &mut quiet => return (Ending::Idle, up.bytes, down.bytes),
        };
        match moved {
            Err(()) => return (Ending::Failed, up.bytes, down.bytes),
            Ok(true) => quiet.as_mut().reset(tokio::time::Instant::now() + idle),
            Ok(false) => {}
        }
    }
    (Ending::Closed, up.bytes, down.bytes)
}

/// One way through a tunnel.
struct Direction {
    buf: Vec<u8>,
    open: bool,
    bytes: u64,
}

impl Direction {
    fn new() -> Self {
        Self {
            buf: vec![0u8; BUFFER],
            open: true,
            bytes: 0,
        }
    }

    /// Passes on what a read into this direction's buffer gave.
    async fn pass_own<W: AsyncWrite + Unpin>(&mut self, read: std::io::Result<usize>, to: &mut W) -> Result<bool, ()> {
        let buf = std::mem::take(&mut self.buf);
        let moved = self.pass(read, &buf, to).await;
        self.buf = buf;
        moved
    }

    /// Writes `data[..n]` on; at the end of the stream (`Ok(0)`) closes
    /// `to`'s writing half, so the half-close reaches the other side.
    /// `Ok(true)` when bytes moved.
    async fn pass<W: AsyncWrite + Unpin>(
        &mut self,
        read: std::io::Result<usize>,
        data: &[u8],
        to: &mut W,
    ) -> Result<bool, ()> {
        match read {
            Ok(0) => {
                self.open = false;
                let _ = to.shutdown().await;
                Ok(false)
            }
            Ok(n) => {
                to.write_all(&data[..n]).await.map_err(drop)?;
                to.flush().await.map_err(drop)?;
                self.bytes += n as u64;
                Ok(true)
            }
            Err(_) => Err(()),
        }
    }
}
