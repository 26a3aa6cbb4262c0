//! A client's request body on its way to a backend, watched so that what
//! goes wrong with it is blamed on the client: a framing error, an abort or
//! a stalled upload ends as a [`ClientError`] (answered 400 or 408 and
//! counted as the client's), never as the backend's failure, and never as a
//! sample for the guard.
//!
//! It also tells the forwarder when the upload is over ([`Upload`]): the
//! backend's response timeout starts then, not while a slow client is
//! still sending.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use prometheus::IntCounterVec;
use tokio::sync::Notify;
use tokio::time::Sleep;

use super::boxed::BoxError;

/// Whose fault, and what kind: the `kind` label of
/// `switchyard_client_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFault {
    /// The body broke the protocol: a bad chunk, a length that lies.
    Framing,
    /// The client went away in the middle.
    Aborted,
    /// The client stopped sending for `server.client_body_timeout`.
    Timeout,
}

impl ClientFault {
    pub const fn as_str(self) -> &'static str {
        match self {
            ClientFault::Framing => "framing",
            ClientFault::Aborted => "aborted",
            ClientFault::Timeout => "timeout",
        }
    }
}

/// A request body that failed on the client's side.
#[derive(Debug, thiserror::Error)]
#[error("{detail}")]
pub struct ClientError {
    pub fault: ClientFault,
    pub detail: String,
    /// Already counted in `switchyard_client_errors_total` where it was
    /// found (an HTTP/2 stream may be reset before the answer is built).
    pub counted: bool,
}

impl ClientError {
    pub fn new(fault: ClientFault, detail: impl Into<String>) -> Self {
        Self {
            fault,
            detail: detail.into(),
            counted: false,
        }
    }

    /// What a hyper error on a request body says about the client.
    fn from_hyper(e: &hyper::Error) -> Self {
        let detail = super::error_chain::chain(e);
        let fault = if e.is_incomplete_message() || e.is_canceled() {
            ClientFault::Aborted
        } else if e.is_parse() || e.is_user() {
            ClientFault::Framing
        } else {
            fault_of_source(e)
        };
        Self::new(fault, detail)
    }

    /// The client error anywhere in an error's chain.
    pub fn find<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a ClientError> {
        let mut source = Some(e);
        while let Some(s) = source {
            if let Some(c) = s.downcast_ref::<ClientError>() {
                return Some(c);
            }
            source = s.source();
        }
        None
    }
}

/// The cause under hyper's body error: an HTTP/2 stream the client reset
/// or whose length lied, or the socket.
fn fault_of_source(e: &(dyn std::error::Error + 'static)) -> ClientFault {
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(h2) = s.downcast_ref::<h2::Error>() {
            return match h2.reason() {
                Some(h2::Reason::PROTOCOL_ERROR | h2::Reason::FLOW_CONTROL_ERROR | h2::Reason::FRAME_SIZE_ERROR) => {
                    ClientFault::Framing
                }
                _ => ClientFault::Aborted,
            };
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput => ClientFault::Framing,
                _ => ClientFault::Aborted,
            };
        }
        source = s.source();
    }
    ClientFault::Framing
}

const SENDING: u8 = 0;
const WAITING_FOR_CLIENT: u8 = 1;
const DONE: u8 = 2;

/// The progress of one upload, shared with whoever waits for its end.
pub struct Upload {
    state: AtomicU8,
    /// Milliseconds since `base` at the body's last poll.
    last_poll_ms: AtomicU64,
    base: Instant,
    notify: Notify,
}

impl Upload {
    fn new() -> Self {
        Self {
            state: AtomicU8::new(SENDING),
            last_poll_ms: AtomicU64::new(0),
            base: Instant::now(),
            notify: Notify::new(),
        }
    }

    fn mark(&self, state: u8) {
        self.last_poll_ms
            .store(self.base.elapsed().as_millis() as u64, Ordering::Relaxed);
        if self.state.swap(state, Ordering::AcqRel) != state && state == DONE {
            self.notify.notify_waiters();
        }
    }

    /// Resolves when the upload is over, or when the backend has taken
    /// nothing from it for `stuck` while the client had bytes ready (the
    /// backend stopped reading: from then on it is on the backend's clock).
    pub async fn finished_or_stuck(&self, stuck: Duration) {
        loop {
            let notified = self.notify.notified();
            let state = self.state.load(Ordering::Acquire);
            if state == DONE {
                return;
            }
            let idle = self
                .base
                .elapsed()
                .saturating_sub(Duration::from_millis(self.last_poll_ms.load(Ordering::Relaxed)));
            if state == SENDING && idle >= stuck {
                return;
            }
            // Waiting on the client is the client's clock (its body timeout).
            let wait = if state == SENDING { stuck - idle } else { stuck };
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// The client's body, under `server.client_body_timeout` between chunks.
pub struct ClientBody {
    body: Incoming,
    /// `switchyard_client_errors_total`, counted here, where the fault is
    /// seen: the request may be cancelled before anyone else could.
    errors: IntCounterVec,
    idle: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    /// Bytes arrived since the timer was last armed.
    progressed: bool,
    upload: Arc<Upload>,
    ended: bool,
}

impl ClientBody {
    pub fn new(body: Incoming, idle: Duration, errors: IntCounterVec) -> Self {
        Self {
            body,
            errors,
            idle,
            timer: None,
            progressed: false,
            upload: Arc::new(Upload::new()),
            ended: false,
        }
    }

    pub fn upload(&self) -> Arc<Upload> {
        self.upload.clone()
    }

    fn end(&mut self) {
        self.ended = true;
        self.upload.mark(DONE);
    }

    fn fail(&mut self, mut e: ClientError) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.end();
        self.errors.with_label_values(&[e.fault.as_str()]).inc();
        tracing::debug!(kind = e.fault.as_str(), error = %e.detail, "client's request body failed");
        e.counted = true;
        Poll::Ready(Some(Err(Box::new(e))))
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.progressed = true;
                if this.body.is_end_stream() {
                    this.end();
                } else {
                    this.upload.mark(SENDING);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => this.fail(ClientError::from_hyper(&e)),
            Poll::Ready(None) => {
                this.end();
                Poll::Ready(None)
            }
            Poll::Pending => {
                this.upload.mark(WAITING_FOR_CLIENT);
                let idle = this.idle;
                let deadline = tokio::time::Instant::now() + idle;
                let timer = match &mut this.timer {
                    Some(timer) => {
                        if std::mem::take(&mut this.progressed) {
                            timer.as_mut().reset(deadline);
                        }
                        timer
                    }
                    None => this.timer.insert(Box::pin(tokio::time::sleep_until(deadline))),
                };
                if timer.as_mut().poll(cx).is_ready() {
                    return this.fail(ClientError::new(
                        ClientFault::Timeout,
                        format!(
                            "the client sent no body bytes for {} (server.client_body_timeout)",
                            crate::config::duration::format(idle)
                        ),
                    ));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
