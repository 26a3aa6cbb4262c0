//! When an answer arrived, as the kernel saw it: receive timestamps
//! (`SO_TIMESTAMPNS`) on backend sockets, read with `recvmsg`.
//!
//! The two sides of a mirrored pair are read by different threads: the
//! live side by a worker, the mirrored side by a shadow thread that runs at
//! the lowest priority so that it never takes CPU from live traffic. Under
//! load that thread may run milliseconds after the answer came in, and a
//! clock read when it runs blames the backend for the wait (mirrored
//! answers came out up to 100× slower than live ones on a saturated
//! machine, with identical backends). The kernel's stamp is taken when the
//! bytes reach the socket, whoever reads them and whenever: both sides are
//! timed from their request's write to the same event.

use std::io;
use std::os::fd::AsRawFd;
use std::task::{ready, Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use nix::sys::socket::{recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// When a request went out and when its answer's head came in: returned
/// beside a timed response by the HTTP/1.1 leg.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// Just before the request head was written.
    pub sent: SystemTime,
    /// When the bytes that completed the response head arrived.
    pub head: SystemTime,
    /// `head` is the kernel's receive stamp, not the reader's clock.
    pub kernel: bool,
}

impl Timing {
    /// Time from the request's write to its body's last bytes, when both
    /// ends were stamped.
    pub fn to_end(timing: Option<Timing>, ended_at: Option<SystemTime>) -> Option<Duration> {
        timing
            .filter(|t| t.kernel)
            .zip(ended_at)
            .and_then(|(t, ended)| ended.duration_since(t.sent).ok())
    }

    /// Time from the request's write to its answer's head.
    pub fn to_head(&self) -> Duration {
        self.head.duration_since(self.sent).unwrap_or_default()
    }
}

/// Two requests sent at most this far apart went out at the same instant:
/// their latencies compare. A mirror sent later (its threads were starved
/// and sent a backlog at once) met its backend at another moment and in a
/// burst; its latency says nothing about new against old.
pub const SAME_INSTANT: Duration = Duration::from_millis(1);

/// Whether two requests went out at the same instant ([`SAME_INSTANT`]);
/// unknown send times never do.
pub fn together(a: Option<SystemTime>, b: Option<SystemTime>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => {
            let apart = a.duration_since(b).or_else(|_| b.duration_since(a)).unwrap_or_default();
            apart <= SAME_INSTANT
        }
        _ => false,
    }
}

/// Bytes read per stamped read: a response head and a small body.
const CHUNK: usize = 8 * 1024;

/// Asks the kernel to stamp what this socket receives; false where it
/// cannot (the timing then falls back to the reader's clock).
pub fn enable(tcp: &TcpStream) -> bool {
    setsockopt(tcp, sockopt::ReceiveTimestampns, &true).is_ok()
}

/// A socket that keeps the kernel's receive stamping switched on for as
/// long as it lives: the kernel turns stamping on a moment after the first
/// socket asks, so a gateway asks at start, not with its first pair.
pub fn keep_on() -> Option<std::net::UdpSocket> {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").ok()?;
    setsockopt(&socket, sockopt::ReceiveTimestampns, &true).ok()?;
    Some(socket)
}

/// One read into `buf`, with the kernel's receive time of the last bytes
/// read when the socket gives one.
pub fn poll_read(
    tcp: &TcpStream,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
) -> Poll<io::Result<(usize, Option<SystemTime>)>> {
    loop {
        ready!(tcp.poll_read_ready(cx))?;
        let mut drained = None;
        let read = tcp.try_io(Interest::READABLE, || {
            let (n, at) = recv(tcp, buf)?;
            if n > 0 && n < CHUNK {
                // Less than asked for: the socket is empty. Said as
                // `WouldBlock`, it makes tokio forget the readiness (as its
                // own reads do on a short read), so that the next check of
                // an idle connection ([`super::BackendStream::is_open`])
                // needs no system call to know it is still quiet.
                drained = Some((n, at));
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok((n, at))
        });
        match (read, drained) {
            (_, Some(got)) => return Poll::Ready(Ok(got)),
            (Err(e), None) if e.kind() == io::ErrorKind::WouldBlock => continue,
            (other, None) => return Poll::Ready(other),
        }
    }
}

thread_local! {
    /// What `recvmsg` reads into before the bytes join the connection's
    /// buffer: it takes initialised memory, and zeroing a chunk of the
    /// buffer on every read (8 KB for a 300-byte answer) cost more than
    /// copying what came.
    static SCRATCH: std::cell::RefCell<Box<[u8; CHUNK]>> = std::cell::RefCell::new(Box::new([0; CHUNK]));
}

fn recv(tcp: &TcpStream, buf: &mut BytesMut) -> io::Result<(usize, Option<SystemTime>)> {
    SCRATCH.with_borrow_mut(|scratch| {
        let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec);
        let (n, at) = {
            let mut iov = [io::IoSliceMut::new(&mut scratch[..])];
            let msg = recvmsg::<()>(tcp.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_DONTWAIT)
                .map_err(io::Error::from)?;
            let at = msg.cmsgs().ok().and_then(|mut c| {
                c.find_map(|m| match m {
                    ControlMessageOwned::ScmTimestampns(ts) => {
                        Some(UNIX_EPOCH + Duration::new(ts.tv_sec().max(0) as u64, ts.tv_nsec().max(0) as u32))
                    }
                    _ => None,
                })
            });
            (msg.bytes, at)
        };
        buf.extend_from_slice(&scratch[..n]);
        Ok((n, at))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_stamp_is_when_the_bytes_arrived_not_when_they_were_read() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        assert!(enable(&client));
        // The kernel turns stamping on a moment after the first socket asks.
        std::thread::sleep(Duration::from_millis(100));
        let sent = SystemTime::now();
        server.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        // The reader comes late, as a starved thread would.
        std::thread::sleep(Duration::from_millis(50));
        let read_at = SystemTime::now();
        let mut buf = BytesMut::new();
        let (n, at) = std::future::poll_fn(|cx| poll_read(&client, cx, &mut buf))
            .await
            .unwrap();
        assert_eq!(&buf[..n], b"HTTP/1.1 200 OK\r\n\r\n");
        let at = at.expect("the kernel stamped the bytes");
        assert!(at >= sent - Duration::from_millis(5), "{at:?} {sent:?}");
        assert!(
            at + Duration::from_millis(40) < read_at,
            "stamped at arrival, not at the late read"
        );
    }

    #[tokio::test]
    async fn a_read_that_empties_the_socket_leaves_no_readiness_behind() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        enable(&client);
        let mut buf = BytesMut::new();
        server.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await.unwrap();
        let (n, _) = std::future::poll_fn(|cx| poll_read(&client, cx, &mut buf))
            .await
            .unwrap();
        assert_eq!(&buf[..n], b"HTTP/1.1 204 No Content\r\n\r\n");
        // The pool asks this of every idle connection before reusing it: a
        // readiness left set costs a probing read each time.
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(
            client.poll_read_ready(&mut cx).is_pending(),
            "still marked readable after a short read"
        );
        // A later answer is still seen.
        server.write_all(b"more").await.unwrap();
        let (n, _) = std::future::poll_fn(|cx| poll_read(&client, cx, &mut buf))
            .await
            .unwrap();
        assert_eq!(n, 4);
    }
}
