//! Hands live-request samples (side, latency, error) to the guard without
//! ever blocking the live path: a bounded queue, `try_send`, drops counted.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::time::Duration;

use prometheus::IntCounter;

use crate::side::Side;

#[derive(Clone, Copy, Debug)]
pub struct LiveSample {
    /// When the request was split (its rollout state was read).
    pub at: std::time::Instant,
    pub side: Side,
    pub latency: Duration,
    pub error: bool,
}

#[derive(Clone)]
pub struct LiveSink {
    tx: Option<SyncSender<LiveSample>>,
    dropped: Option<IntCounter>,
}

impl LiveSink {
    /// A sink that keeps nothing (no guard).
    pub fn off() -> Self {
        Self {
            tx: None,
            dropped: None,
        }
    }

    pub fn new(capacity: usize, dropped: IntCounter) -> (Self, Receiver<LiveSample>) {
        let (tx, rx) = sync_channel(capacity);
        (
            Self {
                tx: Some(tx),
                dropped: Some(dropped),
            },
            rx,
        )
    }

    pub fn record(&self, sample: LiveSample) {
        if let Some(tx) = &self.tx {
            if let Err(TrySendError::Full(_)) = tx.try_send(sample) {
                if let Some(d) = &self.dropped {
                    d.inc();
                }
            }
        }
    }
}
