//! A client's socket as hyper reads it: bytes already taken off the socket
//! (to tell HTTP/2 from HTTP/1.1, or left in hyper's buffer when a quiet
//! connection was set aside) come first, then the socket itself. Writes
//! report to the connection's `Activity` whether the client is taking them.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::activity::Activity;

/// Waits until the client's socket has bytes (or an error) to read. Not
/// `TcpStream::readable()`: its future carries a waiter node of its own
/// (152 bytes); polling the socket's readiness keeps the waker in the
/// socket's registration, which every connection has anyway. Every future
/// that waits on an idle client socket holds this instead.
pub(super) async fn readable(socket: &tokio::net::TcpStream) -> io::Result<()> {
    std::future::poll_fn(|cx| socket.poll_read_ready(cx)).await
}

pub struct ClientIo<I> {
    unread: Bytes,
    inner: I,
    activity: Arc<Activity>,
}

impl<I> ClientIo<I> {
    pub fn new(inner: I, unread: Bytes, activity: Arc<Activity>) -> Self {
        Self {
            unread,
            inner,
            activity,
        }
    }

    /// Puts back bytes hyper read but did not parse; they came off the
    /// socket before anything still in `unread`.
    pub fn unread(&mut self, earlier: Bytes) {
        if earlier.is_empty() {
            return;
        }
        self.unread = if self.unread.is_empty() {
            earlier
        } else {
            let mut both = Vec::with_capacity(earlier.len() + self.unread.len());
            both.extend_from_slice(&earlier);
            both.extend_from_slice(&self.unread);
            Bytes::from(both)
        };
    }

    /// Bytes of the client's not yet handed to hyper.
    pub fn has_unread(&self) -> bool {
        !self.unread.is_empty()
    }

    pub fn get_ref(&self) -> &I {
        &self.inner
    }

    /// The stream alone, once nothing is left unread.
    pub fn into_inner(self) -> I {
        debug_assert!(self.unread.is_empty());
        self.inner
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for ClientIo<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.unread.is_empty() {
            let n = self.unread.len().min(buf.remaining());
            buf.put_slice(&self.unread[..n]);
            self.unread.advance(n);
            if self.unread.is_empty() {
                // An emptied `Bytes` still holds its whole allocation.
                self.unread = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for ClientIo<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.activity.set_write_blocked(r.is_pending());
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.activity.set_write_blocked(r.is_pending());
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.activity.set_write_blocked(r.is_pending());
        r
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn bytes_put_back_are_read_first_in_the_order_they_came() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut io = ClientIo::new(server, Bytes::from_static(b"cd"), Arc::default());
        io.unread(Bytes::from_static(b"ab"));
        assert!(io.has_unread());
        tokio::io::AsyncWriteExt::write_all(&mut client, b"ef").await.unwrap();
        drop(client);
        let mut all = Vec::new();
        io.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"abcdef");
    }
}
