//! One accepted connection, from its first bytes to its close: which HTTP
//! it speaks (HTTP/2's connection preface, which prior-knowledge h2c and
//! ALPN `h2` clients alike send first, or else HTTP/1.1), then hyper's
//! server for that protocol.

use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::BytesMut;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::AsyncReadExt;

use super::activity::{Activity, Handler, Service};
use super::client_io::ClientIo;
use super::http1::{ClientStream, SetAside};
use super::shutdown::Shutdown;
use crate::pipeline::Peer;
use crate::proxy::boxed::BoxError;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// hyper's servers for both protocols, with the configured limits.
pub struct Protocols {
    pub http1: http1::Builder,
    pub http2: http2::Builder<TokioExecutor>,
    /// Also how long a new connection may stay silent.
    pub header_read_timeout: Duration,
}

/// Serves one connection until it ends, or until `shutdown` and the
/// requests in flight on it are answered.
pub async fn serve<I: ClientStream, H: Handler>(
    mut io: I,
    peer: Arc<Peer>,
    protocols: &Protocols,
    handler: H,
    shutdown: &Shutdown,
) -> Result<Option<SetAside<H>>, BoxError> {
    // Boxed: a connection's task holds no room for this once it is done.
    let first = Box::pin(async {
        tokio::select! {
            first = tokio::time::timeout(protocols.header_read_timeout, first_bytes(&mut io)) => match first {
                Ok(first) => first.map(Some),
                // Silent since it connected: closed as an unfinished head is.
                Err(_) => Ok(None),
            },
            _ = shutdown.wait() => Ok(None),
        }
    })
    .await?;
    let Some(first) = first.filter(|first| !first.is_empty()) else {
        return Ok(None);
    };
    let activity = Arc::new(Activity::default());
    let service = Service::new(handler, peer, activity.clone());
    let h2 = first.starts_with(PREFACE);
    let io = ClientIo::new(io, first.freeze(), activity);
    if !h2 {
        return super::http1::serve(io, service, &protocols.http1, protocols.header_read_timeout, shutdown).await;
    }
    // Boxed: an HTTP/2 connection's state would otherwise size every
    // HTTP/1.1 connection's task too.
    Box::pin(async move {
        let mut conn = pin!(protocols.http2.serve_connection(TokioIo::new(io), service));
        tokio::select! {
            r = conn.as_mut() => return r.map(|()| None).map_err(Into::into),
            _ = shutdown.wait() => {}
        }
        conn.as_mut().graceful_shutdown();
        conn.await.map(|()| None).map_err(Into::into)
    })
    .await
}

/// Reads until the bytes either are HTTP/2's preface or cannot be (or the
/// client closed: then what came, perhaps nothing). A plain socket is read
/// at once, without waiting for the event loop, when its client already
/// wrote (as it mostly has); one opened ahead of need holds only the
/// socket, no buffer, until its client speaks.
async fn first_bytes<I: ClientStream>(io: &mut I) -> std::io::Result<BytesMut> {
    let mut buf = BytesMut::with_capacity(4096);
    if io.socket().is_some() {
        loop {
            // Read as `poll_read` does, not `try_read_buf`: a read that
            // leaves room in the buffer tells tokio the socket is drained,
            // so hyper's next read waits for the event loop instead of
            // costing a `recvfrom` that answers EAGAIN (one per connection).
            let attempt =
                std::future::poll_fn(|cx| Poll::Ready(tokio_util::io::poll_read_buf(Pin::new(&mut *io), cx, &mut buf)))
                    .await;
            match attempt {
                Poll::Ready(Ok(0)) => return Ok(buf),
                Poll::Ready(Ok(_)) => break,
                Poll::Pending => {
                    buf = BytesMut::new();
                    if let Some(socket) = io.socket() {
                        super::client_io::readable(socket).await?;
                    }
                    buf.reserve(4096);
                }
                Poll::Ready(Err(e)) => return Err(e),
            }
        }
    }
    loop {
        if !buf.is_empty() {
            let n = buf.len().min(PREFACE.len());
            if buf[..n] != PREFACE[..n] || n == PREFACE.len() {
                return Ok(buf);
            }
        }
        if io.read_buf(&mut buf).await? == 0 {
            return Ok(buf);
        }
    }
}
