//! A backend's response body, read straight from the connection that
//! carries it. When the body ends cleanly on a kept-alive connection, the
//! connection goes back to its pool; dropped early, it is closed.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::chunked::{ChunkedDecoder, Decoded};
use super::conn::Connection;
use super::head::ResponseFraming;
use crate::proxy::boxed::BoxError;
use crate::proxy::pool::IdleConnections;
use crate::proxy::stall::{Stall, Stalled};

/// Why a response body could not be read to its end.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("backend closed the connection {0} bytes before the end of the body")]
    Truncated(u64),
    #[error("backend closed the connection inside a chunked body")]
    TruncatedChunked,
    #[error(transparent)]
    Chunked(#[from] super::chunked::ChunkError),
    #[error("reading the body: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Stalled(#[from] Stalled),
}

enum Reading {
    /// The whole body arrived with the head (or there is none).
    Whole(Option<Bytes>),
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilClose,
    Done,
}

pub struct BackendBody {
    reading: Reading,
    conn: Option<Connection>,
    keep_alive: bool,
    pool: Arc<IdleConnections>,
    /// Made the first time the body has to wait.
    stall: Option<Stall>,
    /// When its last bytes arrived, as the kernel stamped them (a timed
    /// exchange on a plain socket).
    ended_at: Option<std::time::SystemTime>,
}

impl BackendBody {
    /// Starts reading a body framed as `framing`. A body already complete
    /// in the buffer is taken at once, and the connection released before
    /// the first byte goes to the client.
    pub(crate) fn new(
        mut conn: Connection,
        framing: ResponseFraming,
        keep_alive: bool,
        pool: Arc<IdleConnections>,
    ) -> Self {
        let reading = match framing {
            ResponseFraming::Empty => Reading::Whole(None),
            ResponseFraming::Length(n) if conn.buf.len() as u64 >= n => {
                Reading::Whole(Some(conn.buf.split_to(n as usize).freeze()))
            }
            ResponseFraming::Length(n) => Reading::Length(n),
            ResponseFraming::Chunked => Reading::Chunked(ChunkedDecoder::default()),
            ResponseFraming::UntilClose => Reading::UntilClose,
        };
        let mut body = Self {
            reading,
            conn: Some(conn),
            keep_alive,
            pool,
            stall: None,
            ended_at: None,
        };
        if matches!(body.reading, Reading::Whole(_)) {
            body.release(true);
        }
        body
    }

    /// When the body's last bytes arrived, once it has ended (timed
    /// exchanges on plain sockets only).
    pub fn ended_at(&self) -> Option<std::time::SystemTime> {
        self.ended_at
    }

    /// The whole body, if it arrived with the head; the connection has
    /// already gone back to the pool.
    pub fn take_whole(&mut self) -> Option<Option<Bytes>> {
        match &mut self.reading {
            Reading::Whole(data) => Some(data.take()),
            _ => None,
        }
    }

    /// The body has been read (or abandoned): the connection goes back to
    /// the pool if it is clean and may carry another request.
    fn release(&mut self, clean: bool) {
        if let Some(mut conn) = self.conn.take() {
            if clean {
                self.ended_at = conn.last_arrival;
            }
            if clean && self.keep_alive && conn.buf.is_empty() {
                conn.finished_exchange();
                self.pool.checkin(conn);
            }
        }
    }

    fn end(&mut self, clean: bool) {
        self.reading = Reading::Done;
        self.release(clean);
    }

    /// Reads more from the backend, within the read timeout.
    fn poll_more(&mut self, cx: &mut Context<'_>) -> Poll<Result<usize, BodyError>> {
        let Some(conn) = self.conn.as_mut() else {
            return Poll::Ready(Ok(0));
        };
        if let Poll::Ready(read) = conn.poll_fill(cx) {
            if let Some(stall) = self.stall.as_mut() {
                stall.progress();
            }
            return Poll::Ready(read.map_err(BodyError::from));
        }
        let pool = &self.pool;
        let stall = self
            .stall
            .get_or_insert_with(|| Stall::new(pool.read_timeout, pool.authority.clone()));
        match stall.poll_expired(cx) {
            Poll::Ready(stalled) => Poll::Ready(Err(stalled.into())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Body for BackendBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            let conn = match (&mut this.reading, this.conn.as_mut()) {
                (Reading::Whole(data), _) => return Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
                (Reading::Done, _) | (_, None) => return Poll::Ready(None),
                (_, Some(conn)) => conn,
            };
            match &mut this.reading {
                Reading::Length(left) => {
                    if !conn.buf.is_empty() {
                        let take = (*left).min(conn.buf.len() as u64);
                        let data = conn.buf.split_to(take as usize).freeze();
                        *left -= take;
                        if *left == 0 {
                            this.end(true);
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    let left = *left;
                    match ready!(this.poll_more(cx)) {
                        Ok(0) => return Poll::Ready(Some(Err(fail(this, BodyError::Truncated(left))))),
                        Ok(_) => {}
                        Err(e) => return Poll::Ready(Some(Err(fail(this, e)))),
                    }
                }
                Reading::Chunked(decoder) => match decoder.decode(&mut conn.buf) {
                    Ok(Decoded::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(Decoded::Trailers(trailers)) => {
                        this.end(true);
                        return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                    }
                    Ok(Decoded::End) => {
                        this.end(true);
                        return Poll::Ready(None);
                    }
                    Err(e) => return Poll::Ready(Some(Err(fail(this, e.into())))),
                    Ok(Decoded::NeedMore) => match ready!(this.poll_more(cx)) {
                        Ok(0) => return Poll::Ready(Some(Err(fail(this, BodyError::TruncatedChunked)))),
                        Ok(_) => {}
                        Err(e) => return Poll::Ready(Some(Err(fail(this, e)))),
                    },
                },
                Reading::UntilClose => {
                    if !conn.buf.is_empty() {
                        let data = conn.buf.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    match ready!(this.poll_more(cx)) {
                        Ok(0) => {
                            this.end(false);
                            return Poll::Ready(None);
                        }
                        Ok(_) => {}
                        Err(e) => return Poll::Ready(Some(Err(fail(this, e)))),
                    }
                }
                Reading::Whole(_) | Reading::Done => unreachable!("handled above"),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.reading {
            Reading::Whole(data) => data.is_none(),
            Reading::Done => true,
            _ => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.reading {
            Reading::Whole(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            Reading::Length(left) => SizeHint::with_exact(*left),
            Reading::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

fn fail(body: &mut BackendBody, e: BodyError) -> BoxError {
    body.end(false);
    Box::new(e)
}
