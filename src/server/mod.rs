//! Listeners and connection serving: HTTP/1.1 and HTTP/2 (prior-knowledge
//! h2c, or ALPN after a TLS handshake) on one port, told apart by the first
//! bytes (`connection.rs`), with connection upgrades (WebSocket) let
//! through, limits on header size and count, a header read timeout against
//! slowloris, quiet HTTP/1.1 connections set aside without hyper's buffers
//! (`http1.rs`) on a small task of their own (`parked.rs`), a cap on open
//! connections that follows a connection from task to task
//! (`listening.rs`), and graceful shutdown that lets in-flight requests
//! finish (each connection waits for it by reading a flag, `shutdown.rs`).
//!
//! Each worker owns a `SO_REUSEPORT` listener on the same address, so the
//! kernel spreads connections across event loops with no shared accept lock.

use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ServerConfig;
use crate::metrics::Metrics;
use crate::tls::Terminator;
use activity::Handler;
use listening::{Listening, Open};
use shutdown::Shutdown;

mod activity;
mod client_io;
mod connection;
mod http1;
mod listening;
mod parked;
mod shutdown;

pub use connection::Protocols;

/// Binds a listening socket with `SO_REUSEPORT` (and `SO_REUSEADDR`).
pub fn bind_reuseport(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    #[cfg(unix)]
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

/// `TCP_NODELAY` on the listener, here for every listener served (the
/// workers' and the admin API's): every socket it accepts inherits it
/// (Linux), so no connection costs a system call to set it, as one per
/// accept did.
fn undelayed(listener: std::net::TcpListener) -> io::Result<std::net::TcpListener> {
    socket2::SockRef::from(&listener).set_nodelay(true)?;
    Ok(listener)
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

/// hyper's HTTP/1.1 and HTTP/2 servers with the configured limits.
pub fn protocols(cfg: &ServerConfig) -> Protocols {
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
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
    let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    http2
        .timer(TokioTimer::new())
        .max_header_list_size(cfg.max_header_bytes as u32)
        .max_concurrent_streams(cfg.http2_max_concurrent_streams)
        // WebSocket over HTTP/2 (RFC 8441); plain CONNECT is still refused.
        .enable_connect_protocol()
        .keep_alive_interval(Some(Duration::from_secs(30)));
    Protocols {
        http1,
        http2,
        header_read_timeout: cfg.header_read_timeout.get(),
    }
}

/// Accepts and serves connections until `shutdown`, then lets open
/// connections finish their requests for up to `drain`. With `tls`, each
/// connection first shakes hands, on its own task (a slow handshake holds
/// up no one) under the handshake deadline.
#[allow(clippy::too_many_arguments)]
pub async fn serve<H: Handler + Clone>(
    listener: std::net::TcpListener,
    tls: Option<Arc<Terminator>>,
    protocols: Arc<Protocols>,
    limit: Arc<Semaphore>,
    shutdown: CancellationToken,
    drain: Duration,
    metrics: Option<Metrics>,
    handler: H,
) {
    let listener = match undelayed(listener).and_then(TcpListener::from_std) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "cannot set up the listener (TCP_NODELAY, then the event loop's registration); not serving it");
            return;
        }
    };
    let shutdown = Shutdown::follow(&shutdown);
    let shared = Arc::new(Listening {
        protocols,
        shutdown: shutdown.clone(),
        gauges: metrics.as_ref().map(|m| m.live.connection_gauges()),
        handler,
        tls,
        connections: TaskTracker::new(),
    });
    // One wait for the whole loop: registered once, not per connection.
    let mut stopping = pin!(shutdown.wait());
    loop {
        let permit = tokio::select! {
            _ = &mut stopping => break,
            p = limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            _ = &mut stopping => break,
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
        if let Some(m) = &metrics {
            m.live.connections.inc();
        }
        let open = Open::new(shared.clone(), permit);
        shared.connections.spawn(async move {
            let Listening {
                protocols,
                shutdown,
                handler,
                tls,
                ..
            } = &*open.listening;
            let handler = handler.clone();
            let served = match tls {
                None => {
                    let who = Arc::new(crate::pipeline::Peer::new(peer));
                    connection::serve(stream, who, protocols, handler, shutdown).await
                }
                // Boxed: the handshake's and the TLS stream's state would
                // otherwise size every plain connection's task too.
                Some(tls) => {
                    Box::pin(async {
                        match tls.accept(stream).await {
                            Ok((stream, handshake)) => {
                                let who = Arc::new(crate::pipeline::Peer::new(peer).with_tls(handshake));
                                connection::serve(stream, who, protocols, handler, shutdown).await
                            }
                            Err(reason) => {
                                tracing::debug!(peer = %peer, reason, "TLS handshake failed");
                                Ok(None)
                            }
                        }
                    })
                    .await
                }
            };
            parked::ended(open, peer, served);
        });
    }
    drop(listener);
    let connections = shared.connections.clone();
    drop(shared);
    connections.close();
    tokio::select! {
        _ = connections.wait() => tracing::debug!("connections drained"),
        _ = tokio::time::sleep(drain) => tracing::warn!(drain = ?drain, "drain time over; closing remaining connections"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_connections_inherit_nodelay_from_their_listener() {
        // Bound without it, as a test or an embedding program might.
        let listener = undelayed(std::net::TcpListener::bind("127.0.0.1:0").unwrap()).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let listener = TcpListener::from_std(listener).unwrap();
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        assert!(
            accepted.nodelay().unwrap(),
            "an accepted socket would wait on Nagle's algorithm"
        );
    }
}
