//! One client's HTTP/1.1 connection: served by hyper while it is in use,
//! set aside when it has gone quiet.
//!
//! hyper keeps a connection's read and write buffers, its parser state and
//! header cache from the first request until the connection closes — about
//! 20 KB per keep-alive connection that a client holds open and idle, which
//! is most of them at a CDN edge. NGINX frees its buffers between requests.
//! Here, a plain-TCP connection that has begun no request and has nothing
//! in flight or unsent for a whole check interval (one to two seconds of
//! quiet) is taken back from hyper (`into_parts`, without shutting the
//! socket) and set aside: its task ends, and a small one holds the socket
//! until the client writes again (`parked.rs`), when a fresh task and a
//! fresh hyper connection take over.
//!
//! Parking changes nothing the client can see. A parked connection is
//! still closed after `server.header_read_timeout` of quiet, as hyper
//! would; a head left half-sent is served on at once (never parked) and
//! keeps the deadline of the first quiet check that found it unfinished, so
//! a slow sender cannot reset its slowloris clock by pausing (a head's
//! bytes hyper had read are put back in front, and it is served on);
//! connections over TLS are not parked (the TLS session's own buffers
//! would stay anyway).

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{sleep, sleep_until, Instant, Sleep};

use super::activity::{Handler, Service};
use super::client_io::ClientIo;
use super::shutdown::Shutdown;
use crate::proxy::boxed::BoxError;

/// How often a connection hyper is serving is looked at; two looks in a
/// row that find it quiet park it.
pub const QUIET_CHECK: Duration = Duration::from_secs(1);

/// A client's byte stream, plain or TLS. Only a plain TCP socket can wait
/// for bytes without hyper, so only it is parked: rustls may hold
/// decrypted bytes the socket's readiness says nothing about.
pub trait ClientStream: AsyncRead + AsyncWrite + Unpin + Send + 'static + Sized {
    /// The socket itself, when nothing sits between it and hyper.
    fn socket(&self) -> Option<&TcpStream>;
    /// The same, owned.
    fn into_socket(self) -> Result<TcpStream, Self>;
}

impl ClientStream for TcpStream {
    fn socket(&self) -> Option<&TcpStream> {
        Some(self)
    }
    fn into_socket(self) -> Result<TcpStream, Self> {
        Ok(self)
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin + Send + 'static> ClientStream for tokio_rustls::server::TlsStream<I> {
    fn socket(&self) -> Option<&TcpStream> {
        None
    }
    fn into_socket(self) -> Result<TcpStream, Self> {
        Err(self)
    }
}

/// Why hyper stopped serving a connection.
enum Served<I, H> {
    /// The connection is over (closed, failed or upgraded).
    Ended(Result<(), hyper::Error>),
    /// Quiet since `since`: the socket and service, taken back from hyper
    /// with whatever it had read put back in front.
    Quiet {
        io: ClientIo<I>,
        service: Service<H>,
        since: Instant,
    },
    /// A half-sent head outlived the header deadline.
    HeadTimedOut,
}

/// A quiet plain connection taken back from hyper, with nothing unread:
/// what its parked task (`parked.rs`) holds.
pub struct SetAside<H> {
    pub socket: TcpStream,
    pub service: Service<H>,
    /// When it is closed unless the client writes.
    pub deadline: Instant,
}

/// Serves `io` until the connection ends (`None`), is found quiet (set
/// aside, to be parked), or, on `shutdown`, has finished the request in
/// flight.
pub async fn serve<I: ClientStream, H: Handler>(
    mut io: ClientIo<I>,
    mut service: Service<H>,
    builder: &http1::Builder,
    header_read_timeout: Duration,
    shutdown: &Shutdown,
) -> Result<Option<SetAside<H>>, BoxError> {
    // Set while a head begun before a park is unfinished: (requests begun
    // then, the time its deadline runs out).
    let mut unfinished_head: Option<(u64, Instant)> = None;
    loop {
        // Boxed: hyper's connection and the polling state exist only while
        // the client is active.
        let since;
        (io, service, since) = match Box::pin(active(io, service, builder, unfinished_head, shutdown)).await {
            Served::Ended(r) => return r.map(|()| None).map_err(Into::into),
            Served::HeadTimedOut => return Ok(None),
            Served::Quiet { io, service, since } => (io, service, since),
        };
        let deadline = since + header_read_timeout;
        if io.has_unread() {
            // Part of a head: serve on, under the deadline its quiet
            // started (the first one, if the same head was set aside before).
            let started = service.activity().started();
            unfinished_head = unfinished_head
                .filter(|(begun, _)| *begun == started)
                .or(Some((started, deadline)));
            continue;
        }
        unfinished_head = None;
        match io.into_inner().into_socket() {
            Ok(socket) => {
                return Ok(Some(SetAside {
                    socket,
                    service,
                    deadline,
                }))
            }
            // Not a plain socket (`active` never finds one quiet): serve on.
            Err(inner) => io = ClientIo::new(inner, Bytes::new(), service.activity().clone()),
        }
    }
}

/// hyper serves the connection until it ends, or is found quiet twice in
/// a row `QUIET_CHECK` apart (plain sockets only). On `shutdown` it is
/// asked to finish the request in flight and close.
async fn active<I: ClientStream, H: Handler>(
    io: ClientIo<I>,
    service: Service<H>,
    builder: &http1::Builder,
    unfinished_head: Option<(u64, Instant)>,
    shutdown: &Shutdown,
) -> Served<I, H> {
    // The service moves into hyper's connection; its counters are shared.
    let activity = service.activity().clone();
    let parkable = io.get_ref().socket().is_some() && !shutdown.is_raised();
    let mut conn = builder.serve_connection(TokioIo::new(io), service).with_upgrades();
    // Polled at every wake of the connection: after its first poll, a read
    // of a flag (`shutdown.rs`).
    let mut cancelled = pin!(shutdown.wait());
    let mut draining = false;
    // Made when hyper first waits with nothing in flight: a connection
    // closed after one request never touches the timer wheel.
    let mut check: Option<Pin<Box<Sleep>>> = None;
    // What the previous check saw, if the connection was quiet then.
    let mut quiet: Option<(u64, Instant)> = None;
    let mut head_deadline = unfinished_head.map(|(begun, at)| (begun, Box::pin(sleep_until(at))));
    // Ok: hyper is done with the connection; Err: quiet since then.
    let stopped = poll_fn(|cx| -> Poll<Result<Served<I, H>, Instant>> {
        if !draining && cancelled.as_mut().poll(cx).is_ready() {
            draining = true;
            Pin::new(&mut conn).graceful_shutdown();
        }
        if let Poll::Ready(r) = Pin::new(&mut conn).poll(cx) {
            return Poll::Ready(Ok(Served::Ended(r)));
        }
        if let Some((begun, deadline)) = &mut head_deadline {
            if activity.started() == *begun && deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ok(Served::HeadTimedOut));
            }
        }
        if draining || !parkable {
            return Poll::Pending;
        }
        let check = match &mut check {
            Some(check) => check,
            None if activity.is_quiet() => check.insert(Box::pin(sleep(QUIET_CHECK))),
            None => return Poll::Pending,
        };
        while check.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            let seen = activity.is_quiet().then(|| activity.started());
            match (quiet, seen) {
                (Some((before, since)), Some(started)) if before == started => {
                    return Poll::Ready(Err(since));
                }
                (_, Some(started)) => quiet = Some((started, now)),
                (_, None) => quiet = None,
            }
            check.as_mut().reset(now + QUIET_CHECK);
        }
        Poll::Pending
    })
    .await;
    match stopped {
        Ok(served) => served,
        Err(since) => {
            let parts = conn
                .into_parts()
                .expect("a connection found quiet has not been upgraded");
            let (mut io, service) = (parts.io.into_inner(), parts.service);
            io.unread(parts.read_buf);
            Served::Quiet { io, service, since }
        }
    }
}

/// The size of `active`'s future, boxed at every resumption: for the size
/// class test in `parked.rs`.
#[cfg(test)]
pub(super) fn active_size<I: ClientStream, H: Handler>() -> usize {
    fn size_of_return<A, B, C, D, E, F>(_: fn(A, B, C, D, E) -> F) -> usize {
        std::mem::size_of::<F>()
    }
    size_of_return(active::<I, H>)
}
