//! The body type the gateway sends in both directions: a client's or a
//! backend's streaming body passed through untouched, a buffered one
//! (mirrored request bodies, the gateway's own answers), or a stream whose
//! first chunks were read ahead to decide whether it can be mirrored.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::inbound::Inbound;
use super::tee::Tee;
use crate::access::AccessRecord;

pub use super::boxed::BoxError;

pin_project! {
    #[project = Proj]
    pub enum ProxyBody {
        Empty,
        Full { data: Option<Bytes> },
        Stream { #[pin] inner: Inbound },
        /// Chunks already read, then the rest of the stream.
        Prefixed { prefix: VecDeque<Bytes>, #[pin] rest: Inbound },
        /// Boxed: it is large, and bodies are moved along the pipeline.
        Tee { inner: Box<Tee<Inbound>> },
        /// A stream cut off after `remaining` more bytes.
        Limited { #[pin] inner: Inbound, remaining: u64, limit: u64 },
        /// Any of the above, counted for the access log line.
        Logged { inner: Box<ProxyBody>, record: Box<AccessRecord> },
        /// A gRPC answer that must end with a status.
        Grpc { inner: Box<super::grpc::Rescued<ProxyBody>> },
    }
}

// pin_project_lite's enums take no `#[default]` variant, so no derive.
#[allow(clippy::derivable_impls)]
impl Default for ProxyBody {
    fn default() -> Self {
        ProxyBody::Empty
    }
}

impl ProxyBody {
    pub fn empty() -> Self {
        ProxyBody::Empty
    }

    pub fn full(data: Bytes) -> Self {
        if data.is_empty() {
            ProxyBody::Empty
        } else {
            ProxyBody::Full { data: Some(data) }
        }
    }

    pub fn stream(inner: impl Into<Inbound>) -> Self {
        ProxyBody::Stream { inner: inner.into() }
    }

    pub fn logged(self, record: AccessRecord) -> Self {
        let mut record = record;
        record.complete = self.is_end_stream();
        ProxyBody::Logged {
            inner: Box::new(self),
            record: Box::new(record),
        }
    }

    pub fn limited(inner: Inbound, limit: u64) -> Self {
        ProxyBody::Limited {
            inner,
            remaining: limit,
            limit,
        }
    }
}

impl ProxyBody {
    /// The client's upload this body still carries, for the backend's
    /// response timeout to wait for; `None` when there is nothing to wait on.
    pub fn upload(&self) -> Option<std::sync::Arc<super::client_body::Upload>> {
        match self {
            ProxyBody::Stream { inner } | ProxyBody::Limited { inner, .. } => inner.upload(),
            ProxyBody::Prefixed { rest, .. } => rest.upload(),
            _ => None,
        }
    }
}

/// Raised by a [`ProxyBody::Limited`] stream that went past its limit.
#[derive(Debug, thiserror::Error)]
#[error("body is larger than {0} bytes")]
pub struct TooLarge(pub u64);

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project() {
            Proj::Empty => Poll::Ready(None),
            Proj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Proj::Stream { inner } => inner.poll_frame(cx),
            Proj::Prefixed { prefix, rest } => {
                if let Some(chunk) = prefix.pop_front() {
                    return Poll::Ready(Some(Ok(Frame::data(chunk))));
                }
                rest.poll_frame(cx)
            }
            Proj::Tee { inner } => Pin::new(inner.as_mut()).poll_frame(cx),
            Proj::Limited {
                inner,
                remaining,
                limit,
            } => match inner.poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref() {
                        let n = data.len() as u64;
                        if n > *remaining {
                            return Poll::Ready(Some(Err(Box::new(TooLarge(*limit)))));
                        }
                        *remaining -= n;
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                other => other,
            },
            Proj::Grpc { inner } => Pin::new(inner.as_mut()).poll_frame(cx),
            Proj::Logged { inner, record } => {
                let polled = Pin::new(inner.as_mut()).poll_frame(cx);
                match &polled {
                    Poll::Ready(Some(Ok(frame))) => {
                        record.bytes += frame.data_ref().map_or(0, |d| d.len() as u64);
                        record.complete = inner.is_end_stream();
                    }
                    Poll::Ready(None) => record.complete = true,
                    _ => {}
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Empty => true,
            ProxyBody::Full { data } => data.is_none(),
            ProxyBody::Stream { inner } => inner.is_end_stream(),
            ProxyBody::Prefixed { prefix, rest } => prefix.is_empty() && rest.is_end_stream(),
            ProxyBody::Tee { inner } => inner.is_end_stream(),
            ProxyBody::Limited { inner, .. } => inner.is_end_stream(),
            ProxyBody::Logged { inner, .. } => inner.is_end_stream(),
            ProxyBody::Grpc { inner } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Empty => SizeHint::with_exact(0),
            ProxyBody::Full { data } => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            ProxyBody::Stream { inner } => inner.size_hint(),
            ProxyBody::Prefixed { prefix, rest } => {
                let pre: u64 = prefix.iter().map(|b| b.len() as u64).sum();
                let h = rest.size_hint();
                let mut out = SizeHint::new();
                out.set_lower(h.lower() + pre);
                if let Some(u) = h.upper() {
                    out.set_upper(u + pre);
                }
                out
            }
            ProxyBody::Tee { inner } => inner.size_hint(),
            ProxyBody::Limited { inner, .. } => inner.size_hint(),
            ProxyBody::Logged { inner, .. } => inner.size_hint(),
            ProxyBody::Grpc { inner } => inner.size_hint(),
        }
    }
}
