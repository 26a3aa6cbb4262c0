//! A per-worker pool of HTTP/1.1 connections to one backend.
//!
//! Each worker owns its pool, so a connection is only ever used by the event
//! loop that opened it: no cross-thread wake-ups, no contended lock, no
//! per-request key hashing. A connection is out of the pool while it
//! carries an exchange and comes back when its response body has been read
//! to the end (see `wire::BackendBody`). The most recently used connection
//! is handed out first; idle ones past `idle_timeout` are closed.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Request, Response};
use http_body::Body;
use tokio::net::TcpStream;

use super::body::ProxyBody;
use super::limit::{ConnectionLimit, Reclaim, Saturated};
use super::wire::{encode_request, BackendBody, Connection, ExchangeError, Timing};

struct Idle {
    conn: Connection,
    since: Instant,
}

/// Connections waiting for their next request, most recent last.
pub struct IdleConnections {
    idle: Mutex<VecDeque<Idle>>,
    idle_timeout: Duration,
    max_idle: usize,
    reaper: AtomicBool,
    reap_every: Duration,
    /// Longest wait for the next bytes of a response body.
    pub(crate) read_timeout: Duration,
    /// `host:port`: where connections go, and what log lines name.
    pub(crate) authority: Arc<str>,
}

impl IdleConnections {
    fn checkout(&self) -> Option<Connection> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        while idle
            .front()
            .is_some_and(|c| now.duration_since(c.since) > self.idle_timeout)
        {
            idle.pop_front();
        }
        while let Some(mut c) = idle.pop_back() {
            if c.conn.is_open() {
                return Some(c.conn);
            }
        }
        None
    }

    pub(crate) fn checkin(self: &Arc<Self>, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.max_idle {
            idle.push_back(Idle {
                conn,
                since: Instant::now(),
            });
        }
        // Otherwise dropped, which closes it.
        drop(idle);
        // A plain load first: every response body ends here.
        if !self.reaper.load(Ordering::Relaxed) && !self.reaper.swap(true, Ordering::Relaxed) {
            self.start_reaper();
        }
    }

    /// Closes connections that outlived `idle_timeout` or that the backend
    /// closed, even when no request comes to notice: otherwise a quiet pool
    /// would hold the backend's closed sockets (CLOSE_WAIT) indefinitely.
    fn start_reaper(self: &Arc<Self>) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let pool = Arc::downgrade(self);
        let every = self.reap_every;
        rt.spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(pool) = pool.upgrade() else { return };
                pool.reap(Instant::now());
            }
        });
    }

    /// Closes what outlived `idle_timeout` or was closed by the backend;
    /// what stays and has been idle for a whole tick gives back its read
    /// buffer. Here, off the request path: a connection reused at once
    /// keeps its buffer.
    fn reap(&self, now: Instant) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.retain_mut(|c| {
            let idle_for = now.duration_since(c.since);
            let keep = idle_for <= self.idle_timeout && c.conn.is_open();
            if keep && idle_for >= self.reap_every {
                c.conn.shed_buffer();
            }
            keep
        });
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl Reclaim for IdleConnections {
    /// Closes the longest-idle connection, if any; its permit is freed.
    fn close_oldest(&self) -> bool {
        let oldest = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
        oldest.is_some()
    }
}

pub struct Http1Pool {
    connect_timeout: Duration,
    idle: Arc<IdleConnections>,
    limit: Arc<ConnectionLimit>,
    tls: Option<TlsConnect>,
}

/// How connections to an `https://` backend shake hands.
#[derive(Clone)]
pub struct TlsConnect {
    pub connector: tokio_rustls::TlsConnector,
    pub server_name: rustls_pki_types::ServerName<'static>,
}

/// What a request that asked to switch protocols got back.
pub enum Switch {
    /// `101`: the head, and the connection that now carries the new protocol.
    Switched(http::response::Parts, Connection),
    /// Any other answer, read like any response.
    Refused(Response<BackendBody>),
}

/// Why a request could not be sent.
#[derive(Debug)]
pub enum PoolError {
    Connect(std::io::Error),
    ConnectTimeout,
    /// The backend's `max_connections` are all open and busy.
    Saturated(Saturated),
    /// The TLS handshake with the backend failed (its certificate, our
    /// client certificate, no common version).
    Handshake(std::io::Error),
    Exchange(ExchangeError),
}

impl Http1Pool {
    pub fn new(
        authority: String,
        connect_timeout: Duration,
        idle_timeout: Duration,
        max_idle: usize,
        read_timeout: Duration,
        limit: Arc<ConnectionLimit>,
        tls: Option<TlsConnect>,
    ) -> Self {
        let pool = Self {
            limit,
            tls,
            idle: Arc::new(IdleConnections {
                idle: Mutex::new(VecDeque::new()),
                idle_timeout,
                max_idle: max_idle.max(1),
                reaper: AtomicBool::new(false),
                reap_every: (idle_timeout / 2).clamp(Duration::from_millis(100), Duration::from_secs(5)),
                read_timeout,
                authority: authority.into(),
            }),
            connect_timeout,
        };
        pool.limit.register(&pool.idle);
        pool
    }

    /// [`Self::connect`] on the heap: a TLS handshake's state (rustls'
    /// connection, held inline) would otherwise size every request's future,
    /// and be copied with it, though most requests find a pooled connection.
    async fn connect_boxed(&self) -> Result<Connection, PoolError> {
        Box::pin(self.connect()).await
    }

    async fn connect(&self) -> Result<Connection, PoolError> {
        let permit = self.limit.acquire().await.map_err(PoolError::Saturated)?;
        // One deadline for the TCP connect and the TLS handshake.
        let deadline = tokio::time::Instant::now() + self.connect_timeout;
        let stream = tokio::time::timeout_at(deadline, TcpStream::connect(&*self.idle.authority))
            .await
            .map_err(|_| PoolError::ConnectTimeout)?
            .map_err(PoolError::Connect)?;
        let _ = stream.set_nodelay(true);
        let keepalive = socket2::TcpKeepalive::new().with_time(Duration::from_secs(60));
        let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
        let Some(tls) = &self.tls else {
            let stamped = super::wire::enable_stamps(&stream);
            return Ok(Connection::new(stream).with_permit(permit).with_stamps(stamped));
        };
        let tls = tokio::time::timeout_at(deadline, tls.connector.connect(tls.server_name.clone(), stream))
            .await
            .map_err(|_| PoolError::ConnectTimeout)?
            .map_err(PoolError::Handshake)?;
        Ok(Connection::new(super::wire::BackendStream::Tls(Box::new(tls))).with_permit(permit))
    }

    /// Sends a request (origin-form URI, `Host` set, hop-by-hop headers
    /// gone) and waits for the response head; `timed`, also when the
    /// request went out and its answer's head came in.
    ///
    /// Not an `async fn`: the head is encoded here, at the call, and the
    /// future keeps only what the exchange needs (head, body, method)
    /// instead of the whole request as well. Every request's future
    /// holds this one and is copied whole into its box. Inlined always,
    /// as `Upstream::send` is, so that it is built in place.
    #[inline(always)]
    pub fn send(
        &self,
        req: Request<ProxyBody>,
        timed: bool,
    ) -> impl std::future::Future<Output = Result<(Response<BackendBody>, Option<Timing>), PoolError>> + '_ {
        let (parts, body) = req.into_parts();
        let mut head = Vec::new();
        let framing = encode_request(&parts, &body.size_hint(), &mut head);
        let method = parts.method;
        // A reused connection the backend closed just as the request went
        // out answers nothing; a request with no body to replay and safe to
        // repeat is sent once more on a fresh connection.
        let replayable = framing == super::wire::RequestFraming::Empty && method.is_idempotent();
        // Taken where it is held: moved into a local, it would be held twice.
        let mut body = Some(body);
        async move {
            let mut conn = match self.idle.checkout() {
                Some(conn) => conn,
                None => self.connect_boxed().await?,
            };
            loop {
                let sending = body.take().unwrap_or_else(ProxyBody::empty);
                match conn.exchange(&head, sending, framing, &method, timed).await {
                    Ok((resp, _)) if resp.parts.status == http::StatusCode::SWITCHING_PROTOCOLS => {
                        return Err(PoolError::Exchange(ExchangeError::Head(
                            super::wire::HeadError::Upgrade,
                        )));
                    }
                    Ok((resp, timing)) => {
                        let body = BackendBody::new(conn, resp.framing, resp.keep_alive, self.idle.clone());
                        return Ok((Response::from_parts(resp.parts, body), timing));
                    }
                    Err(e) if replayable && conn.reused() && e.nothing_received() => {
                        tracing::debug!(error = %e, backend = %self.idle.authority, "kept-alive connection was closed; retrying");
                        conn = self.connect_boxed().await?;
                    }
                    Err(e) => return Err(PoolError::Exchange(e)),
                }
            }
        }
    }

    /// Sends a request that asks to switch protocols (`Upgrade`), always on
    /// a fresh connection: the switched connection is the tunnel's for good
    /// and never comes back to the pool.
    pub async fn switch(&self, req: Request<ProxyBody>) -> Result<Switch, PoolError> {
        let (parts, body) = req.into_parts();
        let mut head = Vec::new();
        let framing = encode_request(&parts, &body.size_hint(), &mut head);
        let mut conn = self.connect().await?;
        let (resp, _) = conn
            .exchange(&head, body, framing, &parts.method, false)
            .await
            .map_err(PoolError::Exchange)?;
        if resp.parts.status == http::StatusCode::SWITCHING_PROTOCOLS {
            return Ok(Switch::Switched(resp.parts, conn));
        }
        let body = BackendBody::new(conn, resp.framing, resp.keep_alive, self.idle.clone());
        Ok(Switch::Refused(Response::from_parts(resp.parts, body)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn connected_pair() -> (Connection, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (Connection::new(client), server)
    }

    fn pool(idle_timeout: Duration) -> Arc<IdleConnections> {
        Arc::new(IdleConnections {
            idle: Mutex::new(VecDeque::new()),
            idle_timeout,
            max_idle: 2,
            reaper: AtomicBool::new(false),
            reap_every: Duration::from_millis(50),
            read_timeout: Duration::from_secs(60),
            authority: "test:1".into(),
        })
    }

    #[tokio::test]
    async fn the_reaper_closes_connections_the_backend_closed_while_nobody_asked() {
        let idle = pool(Duration::from_secs(60));
        let (conn, server) = connected_pair().await;
        idle.checkin(conn);
        assert_eq!(idle.len(), 1);
        drop(server);
        let deadline = Instant::now() + Duration::from_secs(10);
        while idle.len() > 0 {
            assert!(Instant::now() < deadline, "the closed connection was never reaped");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_connection_left_idle_gives_back_its_read_buffer() {
        let idle = pool(Duration::from_secs(60));
        let (conn, _server) = connected_pair().await;
        assert!(conn.buffer_capacity() > 0);
        idle.checkin(conn);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let held = idle.idle.lock().unwrap().front().map(|c| c.conn.buffer_capacity());
            if held == Some(0) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "an idle connection still holds {held:?} bytes of buffer"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut conn = idle.checkout().expect("still pooled");
        assert!(conn.is_open());
    }

    #[tokio::test]
    async fn stale_connections_are_not_handed_out_and_the_pool_is_bounded() {
        let idle = pool(Duration::from_millis(1));
        let mut servers = Vec::new();
        for _ in 0..3 {
            let (conn, server) = connected_pair().await;
            servers.push(server);
            idle.checkin(conn);
        }
        assert_eq!(idle.len(), 2, "max_idle bounds the pool");
        let later = Instant::now() + Duration::from_millis(5);
        tokio::time::sleep_until(later.into()).await;
        assert!(idle.checkout().is_none(), "past idle_timeout, connections are closed");
    }
}
