//! The read timeout of a backend's response body: armed the first time the
//! body waits for the backend and pushed back whenever bytes arrive, so a
//! backend that stops sending mid-body cannot hold a client forever. A body
//! that arrives whole never arms it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// Raised by a body whose backend sent nothing for the read timeout.
#[derive(Debug, thiserror::Error)]
#[error("backend sent nothing for {} in the middle of the body", crate::config::duration::format(*.0))]
pub struct Stalled(pub Duration);

pub struct Stall {
    timeout: Duration,
    /// `host:port` of the backend, for the log line.
    backend: Arc<str>,
    timer: Option<Pin<Box<Sleep>>>,
    progressed: bool,
}

impl Stall {
    pub fn new(timeout: Duration, backend: Arc<str>) -> Self {
        Self {
            timeout,
            backend,
            timer: None,
            progressed: false,
        }
    }

    /// Bytes arrived.
    pub fn progress(&mut self) {
        self.progressed = true;
    }

    /// The body is waiting for the backend: an error once it has waited for
    /// the whole timeout since the last bytes.
    pub fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<Stalled> {
        let deadline = Instant::now() + self.timeout;
        let timer = match &mut self.timer {
            Some(timer) => {
                if std::mem::take(&mut self.progressed) {
                    timer.as_mut().reset(deadline);
                }
                timer
            }
            None => self.timer.insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        tracing::warn!(backend = %self.backend, timeout = ?self.timeout, "response body stalled; closing the connection");
        Poll::Ready(Stalled(self.timeout))
    }
}
