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
//! socket) and parked: the task then holds only the socket until the client
//! writes again, when a fresh hyper connection takes over, with anything
//! hyper had read put back in front.
//!
//! Parking changes nothing the client can see. A parked connection is
//! still closed after `server.header_read_timeout` of quiet, as hyper
//! would; a head left half-sent is served on at once (never parked) and
//! keeps the deadline of the first quiet check that found it unfinished, so
//! a slow sender cannot reset its slowloris clock by pausing; connections over TLS are not parked
//! (the TLS session's own buffers would stay anyway).
//!
//! What is freed must also leave no holes behind. The allocator keeps
//! blocks of one size class together, and a page goes back to the system
//! only when every block on it is free. A connection's task lives as long
//! as the connection; what `active` allocates is freed at each park. Were
//! both in one size class, as hyper's connection and its polling state
//! together (1,136 bytes) and the task (1,152) were, every page of that
//! class would end half tasks, half holes, and stay resident: 16 MB more
//! for 10,000 parked connections, measured. So hyper's connection has a box
//! of its own, and each of the active phase's blocks stays well apart from
//! the task's size (`the_active_phase_shares_no_size_class_with_the_task`).

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::task::Poll;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use prometheus::IntGauge;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{sleep, sleep_until, Instant, Sleep};
use tokio_util::sync::CancellationToken;

use super::activity::{Handler, Service};
use super::client_io::ClientIo;
use crate::proxy::boxed::BoxError;

/// How often a connection hyper is serving is looked at; two looks in a
/// row that find it quiet park it.
pub const QUIET_CHECK: Duration = Duration::from_secs(1);

/// A client's byte stream, plain or TLS. Only a plain TCP socket can wait
/// for bytes without hyper, so only it is parked: rustls may hold
/// decrypted bytes the socket's readiness says nothing about.
pub trait ClientStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// The socket itself, when nothing sits between it and hyper.
    fn socket(&self) -> Option<&TcpStream>;
}

impl ClientStream for TcpStream {
    fn socket(&self) -> Option<&TcpStream> {
        Some(self)
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin + Send + 'static> ClientStream for tokio_rustls::server::TlsStream<I> {
    fn socket(&self) -> Option<&TcpStream> {
        None
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

/// Serves `io` until the connection ends or, on `shutdown`, has finished
/// the request in flight.
pub async fn serve<I: ClientStream, H: Handler>(
    mut io: ClientIo<I>,
    mut service: Service<H>,
    builder: &http1::Builder,
    header_read_timeout: Duration,
    shutdown: &CancellationToken,
    parked: Option<&IntGauge>,
) -> Result<(), BoxError> {
    // Set while a head begun before a park is unfinished: (requests begun
    // then, the time its deadline runs out).
    let mut unfinished_head: Option<(u64, Instant)> = None;
    loop {
        // Boxed: hyper's connection and the polling state exist only while
        // the client is active; a parked connection's task keeps just the
        // socket.
        let since;
        (io, service, since) = match Box::pin(active(io, service, builder, unfinished_head, shutdown)).await {
            Served::Ended(r) => return r.map_err(Into::into),
            Served::HeadTimedOut => return Ok(()),
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
        let socket = io.get_ref().socket().expect("only plain sockets are parked");
        let _parked = parked.map(Parked::new);
        tokio::select! {
            ready = socket.readable() => ready?,
            _ = sleep_until(deadline) => return Ok(()),
            _ = shutdown.cancelled() => return Ok(()),
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
    shutdown: &CancellationToken,
) -> Served<I, H> {
    // The service moves into hyper's connection; its counters are shared.
    let activity = service.activity().clone();
    let parkable = io.get_ref().socket().is_some() && !shutdown.is_cancelled();
    // A box of its own, apart from this future's: together they would
    // share the task's size class (see the module's comment).
    let mut conn = Box::new(builder.serve_connection(TokioIo::new(io), service).with_upgrades());
    let mut cancelled = pin!(shutdown.cancelled());
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
            Pin::new(&mut *conn).graceful_shutdown();
        }
        if let Poll::Ready(r) = Pin::new(&mut *conn).poll(cx) {
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

/// Counts a connection in `switchyard_connections_parked` while it is.
struct Parked<'a>(&'a IntGauge);

impl<'a> Parked<'a> {
    fn new(gauge: &'a IntGauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::Arc;

    use http::{Request, Response};
    use hyper::body::Incoming;
    use tokio::net::TcpStream;

    use super::*;
    use crate::pipeline::Peer;
    use crate::proxy::ProxyBody;
    use crate::server::activity::Service;

    fn answer(_: Request<Incoming>, _: Arc<Peer>) -> std::future::Ready<Result<Response<ProxyBody>, Infallible>> {
        std::future::ready(Ok(Response::new(ProxyBody::empty())))
    }
    type Answer = fn(Request<Incoming>, Arc<Peer>) -> std::future::Ready<Result<Response<ProxyBody>, Infallible>>;

    fn size_of_return5<A, B, C, D, E, F>(_: fn(A, B, C, D, E) -> F) -> usize {
        std::mem::size_of::<F>()
    }
    fn size_of_return6<A, B, C, D, E, G, F>(_: fn(A, B, C, D, E, G) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// tokio adds its header and trailer (about 170 bytes) to the
    /// connection's future and rounds the task up to 128; at these sizes
    /// the allocator's classes are at most 256 bytes apart. Each block the
    /// active phase allocates and frees at every park must be at least 128
    /// bytes smaller than the future, so it never shares a class with the
    /// task that outlives it.
    #[test]
    fn the_active_phase_shares_no_size_class_with_the_task() {
        let _: Answer = answer;
        let task = size_of_return6(super::super::connection::serve::<TcpStream, Answer>);
        let polling = size_of_return5(active::<TcpStream, Answer>);
        let conn = std::mem::size_of::<http1::UpgradeableConnection<TokioIo<ClientIo<TcpStream>>, Service<Answer>>>();
        assert!(
            polling + 128 <= task,
            "polling state {polling} bytes, task future {task}"
        );
        assert!(
            conn + 128 <= task,
            "hyper's connection {conn} bytes, task future {task}"
        );
    }
}
