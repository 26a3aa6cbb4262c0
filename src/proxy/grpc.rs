//! gRPC at the gateway's edges. A gRPC client reads a call's outcome from
//! `grpc-status`, not from the HTTP status, so the gateway's own failures
//! are said in gRPC (a trailers-only response: 200, `grpc-status`,
//! `grpc-message`, one HEADERS frame that ends the stream), and a backend
//! stream that breaks after its headers went out ends with a status in
//! trailers rather than a silent end a client would take for success.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

use super::boxed::BoxError;

/// `grpc-message` is percent-encoded: everything outside printable ASCII,
/// and `%` itself.
const MESSAGE: &AsciiSet = &CONTROLS.add(b'%');

pub const OK: u32 = 0;
pub const CANCELLED: u32 = 1;
pub const UNKNOWN: u32 = 2;
pub const DEADLINE_EXCEEDED: u32 = 4;
pub const PERMISSION_DENIED: u32 = 7;
pub const RESOURCE_EXHAUSTED: u32 = 8;
pub const UNIMPLEMENTED: u32 = 12;
pub const INTERNAL: u32 = 13;
pub const UNAVAILABLE: u32 = 14;
pub const UNAUTHENTICATED: u32 = 16;

/// Whether a request is a gRPC call (`application/grpc`, `+proto`, …).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// The gRPC code for an HTTP status the gateway answered with itself (a
/// module's 429 or 403, a refusal).
pub fn code_for_status(status: StatusCode) -> u32 {
    match status.as_u16() {
        200 => OK,
        400 => INTERNAL,
        401 => UNAUTHENTICATED,
        403 => PERMISSION_DENIED,
        404 | 405 => UNIMPLEMENTED,
        408 => DEADLINE_EXCEEDED,
        413 | 429 => RESOURCE_EXHAUSTED,
        499 => CANCELLED,
        502 | 503 => UNAVAILABLE,
        504 => DEADLINE_EXCEEDED,
        _ => UNKNOWN,
    }
}

/// A trailers-only gRPC response carrying `code` and `message`; `B`'s
/// default must be an empty body, so that it goes out as one HEADERS frame.
pub fn trailers_only<B: Default>(code: u32, message: &str) -> Response<B> {
    let mut r = Response::new(B::default());
    let h = r.headers_mut();
    h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    h.insert("grpc-status", HeaderValue::from(code));
    if let Ok(v) = HeaderValue::from_str(&utf8_percent_encode(message, MESSAGE).to_string()) {
        h.insert("grpc-message", v);
    }
    r
}

/// Rewrites an answer the gateway made itself (a module's, an error's)
/// for a gRPC client: same meaning, said in `grpc-status`.
pub fn rewrite<B: Default>(resp: Response<B>, message: &str) -> Response<B> {
    if is_grpc(resp.headers()) {
        return resp;
    }
    let code = code_for_status(resp.status());
    let mut out = trailers_only(code, message);
    for name in [
        &super::headers::X_REQUEST_ID,
        &super::headers::X_SERVED_BY,
        &http::header::RETRY_AFTER,
    ] {
        if let Some(v) = resp.headers().get(name) {
            out.headers_mut().insert(name, v.clone());
        }
    }
    out
}

/// A backend's gRPC response body whose end always carries a status.
pub struct Rescued<B> {
    inner: B,
    /// A `grpc-status` went out already (in the headers or trailers).
    status_sent: bool,
    done: bool,
}

impl<B> Rescued<B> {
    pub fn new(inner: B, head: &HeaderMap) -> Self {
        Self {
            inner,
            status_sent: head.contains_key("grpc-status"),
            done: false,
        }
    }

    fn status(&mut self, code: u32, message: &str) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.done = true;
        let mut t = HeaderMap::new();
        t.insert("grpc-status", HeaderValue::from(code));
        if let Ok(v) = HeaderValue::from_str(&utf8_percent_encode(message, MESSAGE).to_string()) {
            t.insert("grpc-message", v);
        }
        Poll::Ready(Some(Ok(Frame::trailers(t))))
    }
}

impl<B> Body for Rescued<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if frame.trailers_ref().is_some_and(|t| t.contains_key("grpc-status")) {
                    self.status_sent = true;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                let e: BoxError = e.into();
                tracing::debug!(error = %e, "a gRPC response broke after its headers; ending it with a status");
                let stalled = {
                    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e.as_ref());
                    std::iter::from_fn(|| {
                        let s = source?;
                        source = s.source();
                        Some(s)
                    })
                    .any(|s| s.is::<super::stall::Stalled>())
                };
                let code = if stalled { DEADLINE_EXCEEDED } else { INTERNAL };
                self.status(code, &format!("switchyard: the backend's response broke off: {e}"))
            }
            Poll::Ready(None) if !self.status_sent => self.status(
                INTERNAL,
                "switchyard: the backend's response ended without a gRPC status",
            ),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || (self.status_sent && self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::ProxyBody;
    use http_body_util::BodyExt;

    #[test]
    fn messages_are_percent_encoded() {
        let r: Response<ProxyBody> = trailers_only(UNAVAILABLE, "could not connect: 100% down\n");
        assert_eq!(r.headers()["grpc-status"], "14");
        assert_eq!(r.headers()["grpc-message"], "could not connect: 100%25 down%0A");
        assert!(r.body().is_end_stream(), "one HEADERS frame that ends the stream");
    }

    #[tokio::test]
    async fn a_stream_that_ends_without_a_status_gets_one() {
        let body = Rescued::new(ProxyBody::full(Bytes::from_static(b"\0\0\0\0\0")), &HeaderMap::new());
        let collected = body.collect().await.unwrap();
        assert_eq!(collected.trailers().unwrap()["grpc-status"], "13");
    }

    #[tokio::test]
    async fn a_trailers_only_answer_is_left_alone() {
        let mut head = HeaderMap::new();
        head.insert("grpc-status", HeaderValue::from_static("5"));
        let collected = Rescued::new(ProxyBody::empty(), &head).collect().await.unwrap();
        assert!(collected.trailers().is_none());
    }
}
