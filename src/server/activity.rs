//! What a connection's task knows of the requests hyper is serving on it:
//! how many have started, how many answers are still on their way out,
//! and whether the client stopped taking bytes. That is enough to tell a
//! quiet keep-alive connection (safe to set aside, see `http1.rs`) from one
//! streaming a long answer or waiting on a slow backend.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use pin_project_lite::pin_project;

use crate::pipeline::Peer;
use crate::proxy::boxed::BoxError;
use crate::proxy::ProxyBody;

/// Shared by a connection's task, its service and its socket wrapper; only
/// ever touched from the worker thread that owns the connection, so relaxed
/// orderings are enough.
#[derive(Default)]
pub struct Activity {
    started: AtomicU64,
    in_flight: AtomicU32,
    write_blocked: AtomicBool,
}

impl Activity {
    /// Requests begun on this connection so far.
    pub fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    /// Nothing is being answered and nothing written is waiting for the
    /// client to read it: hyper, if it is pending, waits for the next head.
    pub fn is_quiet(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0 && !self.write_blocked.load(Ordering::Relaxed)
    }

    /// The socket refused bytes (the client reads slower than we write):
    /// hyper holds unsent output until it takes them.
    pub fn set_write_blocked(&self, blocked: bool) {
        self.write_blocked.store(blocked, Ordering::Relaxed);
    }

    fn enter(self: &Arc<Self>) -> InFlight {
        self.started.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

/// One request from its head to the last byte of its answer (or until
/// either is dropped).
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The gateway's request path for one request: what every connection of a
/// listener calls, whichever protocol carries it.
pub trait Handler: Send + Sync + 'static {
    type Answering: Future<Output = Result<Response<ProxyBody>, Infallible>> + Send + 'static;
    fn handle(&self, req: Request<Incoming>, peer: Arc<Peer>) -> Self::Answering;
}

impl<H, F> Handler for H
where
    H: Fn(Request<Incoming>, Arc<Peer>) -> F + Send + Sync + 'static,
    F: Future<Output = Result<Response<ProxyBody>, Infallible>> + Send + 'static,
{
    type Answering = F;
    fn handle(&self, req: Request<Incoming>, peer: Arc<Peer>) -> F {
        self(req, peer)
    }
}

/// The gateway's request path as hyper's service for one connection.
pub struct Service<H> {
    handler: H,
    peer: Arc<Peer>,
    activity: Arc<Activity>,
}

impl<H> Service<H> {
    pub fn new(handler: H, peer: Arc<Peer>, activity: Arc<Activity>) -> Self {
        Self {
            handler,
            peer,
            activity,
        }
    }

    /// The client end of the connection.
    pub fn peer(&self) -> &Arc<Peer> {
        &self.peer
    }

    /// What the connection's requests have done so far.
    pub fn activity(&self) -> &Arc<Activity> {
        &self.activity
    }
}

impl<H: Handler> hyper::service::Service<Request<Incoming>> for Service<H> {
    type Response = Response<Answer>;
    type Error = Infallible;
    type Future = Answering<H::Answering>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let in_flight = self.activity.enter();
        Answering {
            inner: self.handler.handle(req, self.peer.clone()),
            in_flight: Some(in_flight),
        }
    }
}

pin_project! {
    /// The handler's future; its answer's body carries the request's
    /// `InFlight` on until hyper has sent it whole.
    pub struct Answering<F> {
        #[pin]
        inner: F,
        in_flight: Option<InFlight>,
    }
}

impl<F> Future for Answering<F>
where
    F: Future<Output = Result<Response<ProxyBody>, Infallible>>,
{
    type Output = Result<Response<Answer>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(resp) = ready!(this.inner.poll(cx));
        let in_flight = this.in_flight.take();
        Poll::Ready(Ok(resp.map(|body| Answer {
            body,
            _in_flight: in_flight,
        })))
    }
}

pin_project! {
    /// An answer's body as hyper sends it.
    pub struct Answer {
        #[pin]
        body: ProxyBody,
        _in_flight: Option<InFlight>,
    }
}

impl Body for Answer {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_in_flight_until_its_answer_is_dropped() {
        let activity = Arc::new(Activity::default());
        assert!(activity.is_quiet());
        let one = activity.enter();
        let two = activity.enter();
        assert_eq!(activity.started(), 2);
        drop(one);
        assert!(!activity.is_quiet(), "one answer still being sent");
        drop(two);
        assert!(activity.is_quiet());
        activity.set_write_blocked(true);
        assert!(!activity.is_quiet(), "output waits for the client");
    }
}
