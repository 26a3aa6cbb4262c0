//! A quiet plain-TCP connection, set aside on a small task of its own.
//!
//! A connection's task is as big as its busiest moment needs: hyper at
//! work, the polling state around it, the first-bytes read (1,152 bytes
//! with tokio's header). Kept waiting in that task, every idle connection
//! would keep all that room. So the busy task ends when hyper gives the
//! connection back (`http1.rs`), and a task holding only the socket, the
//! service and the connection's place under `server.max_connections` waits
//! for the client's next bytes, the header deadline or shutdown (a
//! 416-byte future, a 640-byte block). On the
//! client's next bytes a fresh task serves it.
//!
//! Smaller is not all: what is freed must leave no holes. The allocator
//! keeps blocks of one size class together, and a page goes back to the
//! system only when every block on it is free. Parked in the busy task
//! (1,152 bytes), each connection sat in the size class of the active
//! phase's box (hyper's connection and its polling state, 1,136 bytes),
//! freed at every park: every page of that class ended half parked
//! connections, half holes, and stayed resident. The parked task shares no
//! class with the busy phase, and the busy tasks' pages are freed whole.
//! For 10,000 parked connections: 49.4–50.4 MB of RSS before, 42.6–43.0 MB
//! with a 768-byte parked block (`bench/RESULTS.md`). The test below keeps
//! the classes apart, and the block at 640 bytes.

use std::net::SocketAddr;

use bytes::Bytes;
use prometheus::IntGauge;
use tokio::net::TcpStream;
use tokio::time::{sleep_until, Instant};

use super::activity::{Handler, Service};
use super::client_io::{self, ClientIo};
use super::http1::SetAside;
use super::listening::Open;
use crate::proxy::boxed::BoxError;

/// How a connection's task ended: set aside (then it is parked), over, or
/// failed (logged).
pub fn ended<H: Handler>(open: Open<H>, peer: SocketAddr, served: Result<Option<SetAside<H>>, BoxError>) {
    match served {
        Ok(Some(aside)) => {
            let connections = open.listening.connections.clone();
            connections.spawn(parked(open, aside.socket, aside.service, aside.deadline));
        }
        Ok(None) => {}
        Err(e) => {
            tracing::debug!(peer = %peer, error = %crate::proxy::error_chain::chain(e.as_ref()), "connection ended with an error");
        }
    }
}

/// The parked connection's whole task: wait, then hand the connection to a
/// fresh task, or close it by dropping it.
async fn parked<H: Handler>(open: Open<H>, socket: TcpStream, service: Service<H>, deadline: Instant) {
    let spoke = {
        let _parked = open.listening.gauges.as_ref().map(|g| Parked::new(&g.parked));
        tokio::select! {
            ready = client_io::readable(&socket) => ready.is_ok(),
            _ = sleep_until(deadline) => false,
            _ = open.listening.shutdown.wait() => false,
        }
    };
    if spoke {
        let connections = open.listening.connections.clone();
        connections.spawn(served_again(open, socket, service));
    }
}

/// A parked connection whose client wrote again, served by hyper afresh.
async fn served_again<H: Handler>(open: Open<H>, socket: TcpStream, service: Service<H>) {
    let peer = service.peer().addr;
    let io = ClientIo::new(socket, Bytes::new(), service.activity().clone());
    let protocols = &open.listening.protocols;
    let served = super::http1::serve(
        io,
        service,
        &protocols.http1,
        protocols.header_read_timeout,
        &open.listening.shutdown,
    )
    .await;
    ended(open, peer, served);
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

    use super::*;
    use crate::pipeline::Peer;
    use crate::proxy::ProxyBody;

    type Answer = fn(Request<Incoming>, Arc<Peer>) -> std::future::Ready<Result<Response<ProxyBody>, Infallible>>;

    fn size_of_return4<A, B, C, D, F>(_: fn(A, B, C, D) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// tokio adds its header and trailer (about 176 bytes) to a task's
    /// future and rounds the block up to 128 bytes; the allocator's classes
    /// are at most 256 bytes apart at these sizes. A parked connection's
    /// block must stay under the smallest class the active phase's box can
    /// fall in, and small in itself.
    #[test]
    fn a_parked_connection_shares_no_size_class_with_the_active_phase() {
        let parked = size_of_return4(parked::<Answer>);
        let active = super::super::http1::active_size::<TcpStream, Answer>();
        // 464 bytes and tokio's 176 make a 640-byte block: 128 bytes less
        // per parked connection than the 544-byte future of the first
        // version, which waited on `readable()`.
        assert!(parked <= 464, "a parked connection's future is {parked} bytes");
        assert!(
            parked + 176 + 127 + 256 <= active,
            "parked future {parked} bytes, active phase {active}: one size class"
        );
    }
}
