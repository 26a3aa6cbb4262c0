//! Copies a streaming body, up to a cap, while it streams to the client.
//!
//! The live response is never held back: each frame is passed on as soon as
//! it arrives, and the copy is only a list of reference-counted chunks, held
//! against the mirrors' byte budget (past it, the copy stops as if the cap
//! had been reached). When the body ends, the copy goes to the mirror with
//! the answer's head in one message ([`LiveOutcome`]); if the client goes
//! away first, the copy is dropped and the mirror learns it was cancelled.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::sync::oneshot;

use super::boxed::BoxError;
use super::budget::Hold;

/// What a mirror learns of the live answer, in one message once it is
/// known whole, or known never to be compared. One message, and only at
/// the end: the mirror runs on another thread, and each message that finds
/// it waiting wakes it (a system call here, a context switch there); a
/// message that arrives while its own exchange is still under way waits
/// in the channel and wakes no one.
#[derive(Debug)]
pub enum LiveOutcome {
    /// Boxed: the message is moved into the channel and out again, and a
    /// pointer moves cheaper than the 300 bytes of a head and its copy.
    Copied(Box<(LiveHead, Captured)>),
    /// An event stream or other endless answer: streamed, never compared.
    Stream,
    /// The live side failed before answering.
    Failed,
}

/// The live answer's head, as the mirror compares it.
#[derive(Debug)]
pub struct LiveHead {
    pub status: u16,
    pub headers: http::HeaderMap,
    /// Time to the head.
    pub latency: Duration,
    /// When the live request went out, where it was timed.
    pub sent: Option<SystemTime>,
}

/// What a tee saw of a body.
#[derive(Debug)]
pub struct Captured {
    pub body: Bytes,
    /// The body was longer than the cap; `body` holds its start.
    pub truncated: bool,
    /// The stream failed before its end.
    pub failed: bool,
    /// The budget ran out before the cap: the copy is incomplete and cannot
    /// be compared.
    pub over_budget: bool,
    /// The copy's bytes, held against the budget until the comparison ends.
    pub hold: Hold,
    /// The body's trailers (gRPC's status travels there).
    pub trailers: Option<http::HeaderMap>,
    /// When the body's last bytes arrived, as the kernel stamped them.
    pub ended_at: Option<std::time::SystemTime>,
}

/// A body that can say when its last bytes arrived (see
/// [`crate::proxy::wire::Timing`]); most cannot.
pub trait EndsAt {
    fn ended_at(&self) -> Option<std::time::SystemTime> {
        None
    }
}

impl EndsAt for super::Inbound {
    fn ended_at(&self) -> Option<std::time::SystemTime> {
        super::Inbound::ended_at(self)
    }
}

pin_project! {
    #[project = TeeProj]
    pub struct Tee<B> {
        #[pin]
        inner: B,
        chunks: Vec<Bytes>,
        len: usize,
        cap: usize,
        truncated: bool,
        over_budget: bool,
        hold: Option<Hold>,
        trailers: Option<http::HeaderMap>,
        done: Option<(oneshot::Sender<LiveOutcome>, LiveHead)>,
    }
}

impl<B: Body + EndsAt> Tee<B> {
    /// Copies `inner`, the body of the answer whose head is `head`; the
    /// copy goes to `to` when the body ends.
    pub fn new(inner: B, head: LiveHead, cap: usize, hold: Hold, to: oneshot::Sender<LiveOutcome>) -> Self {
        let mut tee = Self {
            inner,
            chunks: Vec::new(),
            len: 0,
            cap,
            truncated: false,
            over_budget: false,
            hold: Some(hold),
            trailers: None,
            done: Some((to, head)),
        };
        if tee.inner.is_end_stream() {
            // hyper never polls a body that has ended already (a 204, a
            // HEAD, a gRPC trailers-only answer): its copy, empty, is
            // whole now.
            if let (Some((to, head)), Some(hold)) = (tee.done.take(), tee.hold.take()) {
                let captured = Captured {
                    body: Bytes::new(),
                    truncated: false,
                    failed: false,
                    over_budget: false,
                    hold,
                    trailers: None,
                    ended_at: tee.inner.ended_at(),
                };
                let _ = to.send(LiveOutcome::Copied(Box::new((head, captured))));
            }
        }
        tee
    }
}

impl<B: EndsAt> TeeProj<'_, B> {
    /// Hands the copy over, once.
    fn finish(&mut self, failed: bool) {
        let ended_at = self.inner.as_ref().get_ref().ended_at();
        if let (Some((to, head)), Some(hold)) = (self.done.take(), self.hold.take()) {
            let captured = Captured {
                body: join(self.chunks, *self.len),
                truncated: *self.truncated,
                failed,
                over_budget: *self.over_budget,
                hold,
                trailers: self.trailers.take(),
                ended_at,
            };
            let _ = to.send(LiveOutcome::Copied(Box::new((head, captured))));
        }
    }
}

fn join(chunks: &mut Vec<Bytes>, len: usize) -> Bytes {
    match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.pop().unwrap_or_default(),
        _ => {
            let mut buf = BytesMut::with_capacity(len);
            for c in chunks.drain(..) {
                buf.extend_from_slice(&c);
            }
            buf.freeze()
        }
    }
}

impl<B> Body for Tee<B>
where
    B: Body<Data = Bytes> + EndsAt,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(t) = frame.trailers_ref() {
                    *this.trailers = Some(t.clone());
                }
                if let (Some(data), Some(hold)) = (frame.data_ref(), this.hold.as_mut()) {
                    if !*this.truncated {
                        let room = *this.cap - *this.len;
                        let keep = data.len().min(room);
                        // Past the budget the copy ends as if at the cap.
                        if hold.try_grow(keep) {
                            this.chunks.push(if keep == data.len() {
                                data.clone()
                            } else {
                                data.slice(..keep)
                            });
                            *this.len += keep;
                            *this.truncated = keep < data.len();
                        } else {
                            *this.truncated = true;
                            *this.over_budget = true;
                        }
                    }
                }
                // hyper stops polling once a body says it has ended, so the
                // end is noticed here rather than by a final `None`.
                if this.inner.is_end_stream() {
                    this.finish(false);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.finish(true);
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => {
                this.finish(false);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    type Frames = futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, BoxError>>>;

    impl EndsAt for StreamBody<Frames> {}
    impl EndsAt for http_body_util::Empty<Bytes> {}

    fn chunks(parts: &[&'static str]) -> StreamBody<Frames> {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p.as_bytes()))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames))
    }

    fn hold(limit: usize) -> Hold {
        crate::proxy::budget::Budget::new(limit).hold()
    }

    fn head(status: u16) -> LiveHead {
        LiveHead {
            status,
            headers: http::HeaderMap::new(),
            latency: Duration::from_millis(3),
            sent: None,
        }
    }

    /// A tee on `body` and the end its one message arrives at.
    fn tee<B: Body + EndsAt>(body: B, cap: usize, hold: Hold) -> (Tee<B>, oneshot::Receiver<LiveOutcome>) {
        let (tx, rx) = oneshot::channel();
        (Tee::new(body, head(200), cap, hold, tx), rx)
    }

    fn copied(outcome: LiveOutcome) -> Captured {
        match outcome {
            LiveOutcome::Copied(copied) => {
                let (head, captured) = *copied;
                assert_eq!(head.status, 200, "the head travels with its copy");
                captured
            }
            other => panic!("expected a copy, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn passes_everything_and_keeps_a_copy() {
        let (tee, rx) = tee(chunks(&["hello ", "world"]), 1024, hold(1024));
        let out = tee.collect().await.unwrap().to_bytes();
        assert_eq!(out, "hello world");
        let c = copied(rx.await.unwrap());
        assert_eq!(c.body, "hello world");
        assert!(!c.truncated && !c.failed);
    }

    #[tokio::test]
    async fn copy_stops_at_the_cap_but_the_stream_does_not() {
        let (tee, rx) = tee(chunks(&["hello ", "world"]), 8, hold(1024));
        let out = tee.collect().await.unwrap().to_bytes();
        assert_eq!(out, "hello world");
        let c = copied(rx.await.unwrap());
        assert_eq!(c.body, "hello wo");
        assert!(c.truncated);
        assert_eq!(c.hold.bytes(), 8);
    }

    #[tokio::test]
    async fn past_the_budget_the_copy_stops_but_the_stream_does_not() {
        let (tee, rx) = tee(chunks(&["hello ", "world"]), 1024, hold(8));
        let out = tee.collect().await.unwrap().to_bytes();
        assert_eq!(out, "hello world");
        let c = copied(rx.await.unwrap());
        assert_eq!(c.body, "hello ");
        assert!(c.truncated && c.over_budget);
    }

    #[test]
    fn a_body_that_has_ended_is_whole_at_once() {
        let (tee, mut rx) = tee(http_body_util::Empty::<Bytes>::new(), 8, hold(8));
        // Never polled, as hyper treats an ended body.
        let c = copied(rx.try_recv().expect("handed over without a poll"));
        assert!(c.body.is_empty() && !c.failed && !c.truncated);
        drop(tee);
    }

    #[tokio::test]
    async fn the_mirror_hears_once_when_the_body_has_ended_and_not_before() {
        let (mut tee, mut rx) = tee(chunks(&["hello ", "world"]), 1024, hold(1024));
        let first = tee.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "hello ");
        assert!(
            matches!(rx.try_recv(), Err(oneshot::error::TryRecvError::Empty)),
            "a message before the end would wake the mirror for nothing"
        );
        while tee.frame().await.is_some() {}
        let c = copied(rx.try_recv().expect("sent at the end"));
        assert_eq!(c.body, "hello world");
    }

    #[tokio::test]
    async fn dropped_early_means_cancelled() {
        let (tee, rx) = tee(chunks(&["a", "b"]), 8, hold(8));
        drop(tee);
        assert!(rx.await.is_err());
    }
}
