//! A body arriving at the gateway: a client's request body (watched for
//! the client's faults) or an HTTP/2 backend's response (under the
//! backend's read timeout), both read by hyper, or an HTTP/1.1 backend's
//! response read by `wire` (already whole, as small responses usually are,
//! or still streaming). The pipeline streams, tees and mirrors each the
//! same way.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use tokio::sync::OwnedSemaphorePermit;

use super::boxed::BoxError;
use super::client_body::{ClientBody, Upload};
use super::stall::Stall;
use super::wire::BackendBody;

pin_project! {
    #[project = Proj]
    pub enum Inbound {
        /// A client's request body (boxed: most requests have none).
        Client { body: Box<ClientBody> },
        /// An HTTP/2 backend's body, under the backend's read timeout
        /// (boxed: it is large, and bodies are moved along the pipeline).
        Watched { body: Box<Watched> },
        /// A backend body that arrived with its head (`at`, when stamped).
        Whole { data: Option<Bytes>, at: Option<std::time::SystemTime> },
        /// Boxed: it is large, and bodies are moved along the pipeline.
        Wire { body: Box<BackendBody> },
    }
}

impl From<ClientBody> for Inbound {
    fn from(body: ClientBody) -> Self {
        Inbound::Client { body: Box::new(body) }
    }
}

impl Inbound {
    /// An HTTP/2 backend's body, cut if it sends nothing for `timeout`.
    /// `permit` is the request's place under the backend's limit, held
    /// until the body ends.
    pub fn watched(body: Incoming, timeout: Duration, backend: Arc<str>, permit: OwnedSemaphorePermit) -> Self {
        Inbound::Watched {
            body: Box::new(Watched {
                body,
                stall: Stall::new(timeout, backend),
                failed: false,
                _permit: permit,
            }),
        }
    }
}

/// A hyper body cut off once it has waited for its backend too long.
pub struct Watched {
    body: Incoming,
    stall: Stall,
    failed: bool,
    _permit: OwnedSemaphorePermit,
}

impl Body for Watched {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.failed {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.stall.progress();
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => match this.stall.poll_expired(cx) {
                Poll::Ready(stalled) => {
                    this.failed = true;
                    Poll::Ready(Some(Err(Box::new(stalled))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Inbound {
    /// A client's upload still in progress, if this is one.
    pub fn upload(&self) -> Option<Arc<Upload>> {
        match self {
            Inbound::Client { body } if !body.is_end_stream() => Some(body.upload()),
            _ => None,
        }
    }
}

impl Inbound {
    /// When a backend body's last bytes arrived, once it has ended, as the
    /// kernel stamped them; `None` where nothing was stamped.
    pub fn ended_at(&self) -> Option<std::time::SystemTime> {
        match self {
            Inbound::Wire { body } => body.ended_at(),
            Inbound::Whole { at, .. } => *at,
            _ => None,
        }
    }
}

impl From<BackendBody> for Inbound {
    fn from(mut body: BackendBody) -> Self {
        match body.take_whole() {
            Some(data) => Inbound::Whole {
                data,
                at: body.ended_at(),
            },
            None => Inbound::Wire { body: Box::new(body) },
        }
    }
}

impl Body for Inbound {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project() {
            Proj::Client { body } => Pin::new(body.as_mut()).poll_frame(cx),
            Proj::Watched { body } => Pin::new(body.as_mut()).poll_frame(cx),
            Proj::Whole { data, .. } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Proj::Wire { body } => Pin::new(body.as_mut()).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Inbound::Client { body } => body.is_end_stream(),
            Inbound::Watched { body } => body.is_end_stream(),
            Inbound::Whole { data, .. } => data.is_none(),
            Inbound::Wire { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Inbound::Client { body } => body.size_hint(),
            Inbound::Watched { body } => body.size_hint(),
            Inbound::Whole { data, .. } => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            Inbound::Wire { body } => body.size_hint(),
        }
    }
}
