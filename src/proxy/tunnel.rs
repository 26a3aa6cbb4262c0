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
    pub async fn wait_closed(&self, drain: Duration) {
        self.tracker.close();
        let _ = tokio::time::timeout(drain + Duration::from_secs(1), self.tracker.wait()).await;
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
                Ok(http::Response::from_parts(head, Inbound::Whole { data: None }))
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
    let (mut up, mut down) = (0u64, 0u64);
    if !leftover.is_empty() {
        if client.write_all(&leftover).await.is_err() || client.flush().await.is_err() {
            return (Ending::Failed, up, down);
        }
        down += leftover.len() as u64;
    }
    let (mut from_client, mut from_backend) = (vec![0u8; BUFFER], vec![0u8; BUFFER]);
    let (mut client_open, mut backend_open) = (true, true);
    let quiet = tokio::time::sleep(idle);
    tokio::pin!(quiet);
    while client_open || backend_open {
        tokio::select! {
            r = client.read(&mut from_client), if client_open => match r {
                Ok(0) => {
                    client_open = false;
                    let _ = backend.shutdown().await;
                }
                Ok(n) => {
                    if backend.write_all(&from_client[..n]).await.is_err() || backend.flush().await.is_err() {
                        return (Ending::Failed, up, down);
                    }
                    up += n as u64;
                    quiet.as_mut().reset(tokio::time::Instant::now() + idle);
                }
                Err(_) => return (Ending::Failed, up, down),
            },
            r = backend.read(&mut from_backend), if backend_open => match r {
                Ok(0) => {
                    backend_open = false;
                    let _ = client.shutdown().await;
                }
                Ok(n) => {
                    if client.write_all(&from_backend[..n]).await.is_err() || client.flush().await.is_err() {
                        return (Ending::Failed, up, down);
                    }
                    down += n as u64;
                    quiet.as_mut().reset(tokio::time::Instant::now() + idle);
                }
                Err(_) => return (Ending::Failed, up, down),
            },
            _ = &mut quiet => return (Ending::Idle, up, down),
        }
    }
    (Ending::Closed, up, down)
}
