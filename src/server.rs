//! Listeners and connection serving: HTTP/1.1 and HTTP/2 (prior-knowledge
//! h2c, or ALPN after a TLS handshake) on one port via hyper-util's `auto`
//! builder, with connection upgrades (WebSocket) let through, limits on header
//! size and count, a header read timeout against slowloris, a cap on open
//! connections, and graceful shutdown that lets in-flight requests finish.
//!
//! Each worker owns a `SO_REUSEPORT` listener on the same address, so the
//! kernel spreads connections across event loops with no shared accept lock.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::ServerConfig;
use crate::metrics::Metrics;
use crate::proxy::ProxyBody;
use crate::tls::Terminator;

/// Binds a listening socket with `SO_REUSEPORT` (and `SO_REUSEADDR`).
pub fn bind_reuseport(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    #[cfg(unix)]
    socket.set_reuse_port(true)?;
    socket.set_nodelay(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

/// Fails when something already listens on `addr`. `SO_REUSEPORT` would
/// otherwise let a second gateway bind the same address and silently take
/// part of the connections; a bind without it is refused by the kernel
/// while any socket listens there (`SO_REUSEADDR` only forgets TIME_WAIT).
fn nobody_listens(addr: SocketAddr) -> io::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    probe.set_reuse_address(true)?;
    match probe.bind(&addr.into()) {
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "another process already listens on this address (another switchyard?); stop it or choose another address",
        )),
        other => other,
    }
}

/// `n` listeners on one address; port 0 is resolved by the first.
pub fn bind_workers(addr: SocketAddr, n: usize) -> io::Result<Vec<std::net::TcpListener>> {
    nobody_listens(addr)?;
    let first = bind_reuseport(addr)?;
    let actual = first.local_addr()?;
    let mut all = vec![first];
    for _ in 1..n {
        all.push(bind_reuseport(actual)?);
    }
    Ok(all)
}

/// A plain listener (the admin API).
pub fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let l = std::net::TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// The connection builder with the configured limits.
pub fn builder(cfg: &ServerConfig) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.header_read_timeout.get())
        .max_buf_size(cfg.max_header_bytes.max(8192))
        .max_headers(cfg.max_headers)
        .keep_alive(true)
        // A client's end of stream is the client leaving (as NGINX takes it):
        // the request in flight is stopped, its backend call and mirror
        // cancelled, rather than finished for nobody.
        .half_close(false)
        .writev(false);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(cfg.max_header_bytes as u32)
        .max_concurrent_streams(cfg.http2_max_concurrent_streams)
        // WebSocket over HTTP/2 (RFC 8441); plain CONNECT is still refused.
        .enable_connect_protocol()
        .keep_alive_interval(Some(Duration::from_secs(30)));
    b
}

/// Accepts and serves connections until `shutdown`, then lets open
/// connections finish their requests for up to `drain`. With `tls`, each
/// connection first shakes hands, on its own task (a slow handshake holds
/// up no one) under the handshake deadline.
#[allow(clippy::too_many_arguments)]
pub async fn serve<H, F>(
    listener: std::net::TcpListener,
    tls: Option<Arc<Terminator>>,
    builder: auto::Builder<TokioExecutor>,
    limit: Arc<Semaphore>,
    shutdown: CancellationToken,
    drain: Duration,
    metrics: Option<Metrics>,
    handler: H,
) where
    H: Fn(Request<Incoming>, Arc<crate::pipeline::Peer>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<ProxyBody>, std::convert::Infallible>> + Send + 'static,
{
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "cannot register listener");
            return;
        }
    };
    let graceful = GracefulShutdown::new();
    // Shared by the connections' tasks: one count per connection, no copy.
    let builder = Arc::new(builder);
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        if let Some(m) = &metrics {
            m.live.connections.inc();
            m.live.connections_active.inc();
        }
        let handler = handler.clone();
        let metrics = metrics.clone();
        let (watcher, builder, tls) = (graceful.watcher(), builder.clone(), tls.clone());
        tokio::spawn(async move {
            let who = crate::pipeline::Peer::new(peer);
            let result = match tls {
                None => serve_io(stream, who, &builder, handler, watcher).await,
                // Boxed: the handshake's and the TLS stream's state would
                // otherwise size every plain connection's task too (5.9 KB
                // instead of 1.9 KB, held as long as the connection is open).
                Some(tls) => {
                    Box::pin(async move {
                        match tls.accept(stream).await {
                            Ok((stream, handshake)) => {
                                serve_io(stream, who.with_tls(handshake), &builder, handler, watcher).await
                            }
                            Err(reason) => {
                                tracing::debug!(peer = %peer, reason, "TLS handshake failed");
                                Ok(())
                            }
                        }
                    })
                    .await
                }
            };
            if let Err(e) = result {
                tracing::debug!(peer = %peer, error = %chain(e.as_ref()), "connection ended with an error");
            }
            if let Some(m) = metrics {
                m.live.connections_active.dec();
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => tracing::debug!("connections drained"),
        _ = tokio::time::sleep(drain) => tracing::warn!(drain = ?drain, "drain time over; closing remaining connections"),
    }
}

/// Serves one connection, plain or TLS, until it ends or shutdown drains
/// it.
async fn serve_io<I, H, F>(
    io: I,
    who: crate::pipeline::Peer,
    builder: &auto::Builder<TokioExecutor>,
    handler: H,
    watcher: hyper_util::server::graceful::Watcher,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Incoming>, Arc<crate::pipeline::Peer>) -> F + Send + Sync + 'static,
    F: Future<Output = Result<Response<ProxyBody>, std::convert::Infallible>> + Send + 'static,
{
    let who = Arc::new(who);
    let service = service_fn(move |req| handler(req, who.clone()));
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    watcher.watch(conn.into_owned()).await
}

/// An error and its causes on one line: hyper's own message ("error from
/// user's Body stream") says little without the backend's reason under it.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
