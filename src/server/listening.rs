//! What every connection of one listener shares, and what each connection
//! holds for as long as it is open, whichever task is serving it.

use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;
use tokio_util::task::TaskTracker;

use super::connection::Protocols;
use super::shutdown::Shutdown;
use crate::metrics::ConnectionGauges;
use crate::tls::Terminator;

/// One listener's share of every connection it accepted, behind one count:
/// the gauges each connection moves rather than a clone of every metric.
pub struct Listening<H> {
    pub protocols: Arc<Protocols>,
    pub shutdown: Arc<Shutdown>,
    pub gauges: Option<ConnectionGauges>,
    pub handler: H,
    pub tls: Option<Arc<Terminator>>,
    /// Every task serving one of its connections: the drain waits for them.
    pub connections: TaskTracker,
}

/// An open connection's place under `server.max_connections` and in
/// `switchyard_connections_active`. It passes from task to task as the
/// connection is served, parked and served again, and is given back when
/// the last of them ends.
pub struct Open<H> {
    pub listening: Arc<Listening<H>>,
    _permit: OwnedSemaphorePermit,
}

impl<H> Open<H> {
    pub fn new(listening: Arc<Listening<H>>, permit: OwnedSemaphorePermit) -> Self {
        if let Some(g) = &listening.gauges {
            g.active.inc();
        }
        Self {
            listening,
            _permit: permit,
        }
    }
}

impl<H> Drop for Open<H> {
    fn drop(&mut self) {
        if let Some(g) = &self.listening.gauges {
            g.active.dec();
        }
    }
}
