//! A per-worker pool of HTTP/1.1 connections to one backend, on hyper's
//! low-level `client::conn::http1`.
//!
//! Each worker owns its pool, so a connection is only ever driven by the
//! event loop that uses it: no cross-thread wake-ups, no shared pool lock
//! worth the name, no per-request key hashing. A connection goes back into
//! the pool as soon as its request is sent and is handed out again once
//! hyper says it wants another request (its previous response is done).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::body::ProxyBody;

struct Idle {
    sender: SendRequest<ProxyBody>,
    since: Instant,
}

pub struct Http1Pool {
    /// `host:port` to connect to.
    authority: String,
    connect_timeout: Duration,
    idle_timeout: Duration,
    max_idle: usize,
    idle: Mutex<Vec<Idle>>,
}

/// Why a request could not be sent.
#[derive(Debug)]
pub enum PoolError {
    Connect(std::io::Error),
    ConnectTimeout,
    Http(hyper::Error),
}

impl Http1Pool {
    pub fn new(authority: String, connect_timeout: Duration, idle_timeout: Duration, max_idle: usize) -> Self {
        Self {
            authority,
            connect_timeout,
            idle_timeout,
            max_idle: max_idle.max(1),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// A connection ready for a request, dropping dead and stale ones.
    fn checkout(&self) -> Option<SendRequest<ProxyBody>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let idle_timeout = self.idle_timeout;
        let stale = |c: &Idle| c.sender.is_ready() && now.duration_since(c.since) > idle_timeout;
        idle.retain(|c| !c.sender.is_closed() && !stale(c));
        // Most recently used first: it is the warmest.
        let pos = idle.iter().rposition(|c| c.sender.is_ready())?;
        Some(idle.swap_remove(pos).sender)
    }

    fn checkin(&self, sender: SendRequest<ProxyBody>) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.max_idle {
            idle.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
        // Otherwise dropped: the connection closes once its response is done.
    }

    async fn connect(&self) -> Result<SendRequest<ProxyBody>, PoolError> {
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(self.authority.as_str()))
            .await
            .map_err(|_| PoolError::ConnectTimeout)?
            .map_err(PoolError::Connect)?;
        let _ = stream.set_nodelay(true);
        let keepalive = socket2::TcpKeepalive::new().with_time(Duration::from_secs(60));
        let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
        let (sender, conn) = http1::Builder::new()
            .writev(false)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(PoolError::Http)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "backend connection ended with an error");
            }
        });
        Ok(sender)
    }

    /// Sends a request (origin-form URI, `Host` set) and waits for the head.
    pub async fn send(&self, req: Request<ProxyBody>) -> Result<Response<Incoming>, PoolError> {
        let mut req = req;
        // A pooled connection the backend just closed gives the request
        // back unsent; it is retried once on a fresh connection.
        for fresh in [false, true] {
            let mut sender = match (fresh, self.checkout()) {
                (false, Some(s)) => s,
                _ => self.connect().await?,
            };
            let pending = sender.try_send_request(req);
            self.checkin(sender);
            match pending.await {
                Ok(resp) => return Ok(resp),
                Err(mut e) => match e.take_message() {
                    Some(unsent) if !fresh => req = unsent,
                    _ => return Err(PoolError::Http(e.into_error())),
                },
            }
        }
        unreachable!("the second attempt always returns")
    }
}
