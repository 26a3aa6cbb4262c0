//! The wait between attempts at an unreachable store: doubling from a
//! short first wait to a ceiling, cut short by shutdown, and back to the
//! first wait after a success.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub struct Backoff {
    first: Duration,
    ceiling: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(first: Duration, ceiling: Duration) -> Self {
        Self {
            first,
            ceiling,
            next: first,
        }
    }

    /// Waits the current delay (or until shutdown), then doubles it.
    pub async fn wait(&mut self, shutdown: &CancellationToken) {
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(self.next) => {}
        }
        self.next = (self.next * 2).min(self.ceiling);
    }

    pub fn reset(&mut self) {
        self.next = self.first;
    }
}
