//! A body arriving at the gateway: a client's request body or an HTTP/2
//! backend's response, both read by hyper, or an HTTP/1.1 backend's
//! response read by `wire` (already whole, as small responses usually
//! are, or still streaming). The pipeline streams, tees and mirrors each
//! the same way.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use pin_project_lite::pin_project;

use super::body::BoxError;
use super::wire::BackendBody;

pin_project! {
    #[project = Proj]
    pub enum Inbound {
        Hyper { #[pin] body: Incoming },
        /// A backend body that arrived with its head.
        Whole { data: Option<Bytes> },
        /// Boxed: it is large, and bodies are moved along the pipeline.
        Wire { body: Box<BackendBody> },
    }
}

impl From<Incoming> for Inbound {
    fn from(body: Incoming) -> Self {
        Inbound::Hyper { body }
    }
}

impl From<BackendBody> for Inbound {
    fn from(mut body: BackendBody) -> Self {
        match body.take_whole() {
            Some(data) => Inbound::Whole { data },
            None => Inbound::Wire { body: Box::new(body) },
        }
    }
}

impl Body for Inbound {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project() {
            Proj::Hyper { body } => body.poll_frame(cx).map_err(Into::into),
            Proj::Whole { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Proj::Wire { body } => Pin::new(body.as_mut()).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Inbound::Hyper { body } => body.is_end_stream(),
            Inbound::Whole { data } => data.is_none(),
            Inbound::Wire { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Inbound::Hyper { body } => body.size_hint(),
            Inbound::Whole { data } => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            Inbound::Wire { body } => body.size_hint(),
        }
    }
}
