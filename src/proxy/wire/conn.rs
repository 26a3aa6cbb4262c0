//! One HTTP/1.1 connection to a backend and one request/response exchange
//! on it: the head and body go out while the response head is awaited, so a
//! backend that answers before reading the whole body is heard.

use std::io::{self, Write as _};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::BytesMut;
use http::Method;
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::OwnedSemaphorePermit;

use super::head::{parse_response, HeadError, RequestFraming, ResponseHead};
use super::names::KnownNames;
use super::stamp::{self, Timing};
use super::stream::BackendStream;
use crate::proxy::body::ProxyBody;
use crate::proxy::boxed::BoxError;
use crate::proxy::client_body::{ClientError, ClientFault};

/// Room kept free in the read buffer before each read.
const READ_CHUNK: usize = 16 * 1024;
/// Request body chunks up to this size are framed and written in one call.
const COALESCE: usize = 16 * 1024;

pub struct Connection {
    stream: BackendStream,
    pub(super) buf: BytesMut,
    /// The header names its last answer carried.
    names: KnownNames,
    /// Exchanges completed on this connection.
    served: u32,
    /// Its place under the backend's `max_connections`, given back on close.
    permit: Option<OwnedSemaphorePermit>,
    /// The kernel stamps what this socket receives ([`stamp`]).
    stamped: bool,
    /// This exchange is timed: body reads take the kernel's stamps too.
    timed: bool,
    /// When the last bytes read arrived, in a timed exchange.
    pub(super) last_arrival: Option<SystemTime>,
}

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("connection closed before a response")]
    Closed,
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    Head(#[from] HeadError),
    /// The request body failed while it was being sent: the client went
    /// away, or a limit cut it off.
    #[error("request body: {0}")]
    Body(BoxError),
}

impl ExchangeError {
    /// The backend never answered and the connection broke: the mark of a
    /// kept-alive connection the backend closed just as it was reused.
    pub fn nothing_received(&self) -> bool {
        match self {
            ExchangeError::Closed => true,
            ExchangeError::Io(e) => matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionAborted
            ),
            _ => false,
        }
    }
}

impl Connection {
    pub fn new(stream: impl Into<BackendStream>) -> Self {
        let stream = stream.into();
        Self {
            stream,
            buf: BytesMut::with_capacity(READ_CHUNK),
            names: KnownNames::default(),
            served: 0,
            permit: None,
            stamped: false,
            timed: false,
            last_arrival: None,
        }
    }

    /// Marks the socket as one the kernel stamps (see [`stamp::enable`]).
    pub fn with_stamps(mut self, stamped: bool) -> Self {
        self.stamped = stamped;
        self
    }

    /// Holds the connection's place under its backend's limit for its life.
    pub fn with_permit(mut self, permit: OwnedSemaphorePermit) -> Self {
        self.permit = Some(permit);
        self
    }

    /// Whether a request was exchanged on this connection before.
    pub fn reused(&self) -> bool {
        self.served > 0
    }

    pub(super) fn finished_exchange(&mut self) {
        self.served = self.served.saturating_add(1);
        self.timed = false;
        self.last_arrival = None;
    }

    /// Frees the read buffer of a connection left idle, if nothing is in it:
    /// a pool holds as many idle connections as its busiest moment needed
    /// (hundreds, after a burst), and NGINX's kept-alive upstream
    /// connections hold no buffer either. The next read takes a fresh one.
    pub fn shed_buffer(&mut self) {
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
        }
    }

    #[cfg(test)]
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Whether an idle connection is still open (see [`BackendStream::is_open`]).
    pub fn is_open(&mut self) -> bool {
        self.stream.is_open()
    }

    /// The stream, the bytes read past the last head, and the connection's
    /// place under its backend's limit: what an upgraded connection (a
    /// tunnel) carries on with.
    pub fn into_parts(self) -> (BackendStream, BytesMut, Option<OwnedSemaphorePermit>) {
        (self.stream, self.buf, self.permit)
    }

    /// Reads more bytes into the buffer; `Ok(0)` is the end of the stream.
    pub(super) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if let (true, BackendStream::Plain(tcp)) = (self.timed, &self.stream) {
            let (n, at) = std::task::ready!(stamp::poll_read(tcp, cx, &mut self.buf))?;
            self.last_arrival = at.or(self.last_arrival);
            return Poll::Ready(Ok(n));
        }
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
            self.buf.reserve(READ_CHUNK);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, &mut self.buf)
    }

    /// Sends a request (its head already encoded) and returns the response
    /// head; the response body is left in the buffer and on the socket.
    /// With `timed` (a mirrored pair is timed so), the exchange is timed
    /// too: the head's arrival from the kernel's stamp where the socket has
    /// them, else from the reader's clock. Untimed, no clock is read.
    pub async fn exchange(
        &mut self,
        head: &[u8],
        body: ProxyBody,
        framing: RequestFraming,
        method: &Method,
        timed: bool,
    ) -> Result<(ResponseHead, Option<Timing>), ExchangeError> {
        let answer = Answer {
            buf: &mut self.buf,
            names: &mut self.names,
            method,
        };
        self.timed = timed && self.stamped;
        match &mut self.stream {
            BackendStream::Plain(tcp) if self.timed => {
                let (rd, wr) = tcp.split();
                let (head, timing) = exchange_on(Stamped(rd), wr, answer, head, body, framing, true).await?;
                self.last_arrival = timing.filter(|t| t.kernel).map(|t| t.head);
                Ok((head, timing))
            }
            BackendStream::Plain(tcp) => {
                let (rd, wr) = tcp.split();
                exchange_on(Unstamped(rd), wr, answer, head, body, framing, timed).await
            }
            BackendStream::Tls(tls) => {
                let (rd, wr) = tokio::io::split(&mut **tls);
                exchange_on(Unstamped(rd), wr, answer, head, body, framing, timed).await
            }
        }
    }
}

/// Reads more of a response, with when it arrived if that is known.
trait ReadMore {
    async fn read_more(&mut self, buf: &mut BytesMut) -> io::Result<(usize, Option<SystemTime>)>;
}

/// A plain socket the kernel stamps.
struct Stamped<'a>(tokio::net::tcp::ReadHalf<'a>);

impl ReadMore for Stamped<'_> {
    async fn read_more(&mut self, buf: &mut BytesMut) -> io::Result<(usize, Option<SystemTime>)> {
        let tcp: &tokio::net::TcpStream = self.0.as_ref();
        std::future::poll_fn(|cx| stamp::poll_read(tcp, cx, buf)).await
    }
}

/// Any other stream: the reader's clock.
struct Unstamped<R>(R);

impl<R: AsyncRead + Unpin> ReadMore for Unstamped<R> {
    async fn read_more(&mut self, buf: &mut BytesMut) -> io::Result<(usize, Option<SystemTime>)> {
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        Ok((self.0.read_buf(buf).await?, None))
    }
}

/// Where a response head is read and what it is read with: the
/// connection's buffer and the names its last answer carried, and the
/// request's method (the answer to a HEAD has no body).
struct Answer<'a> {
    buf: &'a mut BytesMut,
    names: &'a mut KnownNames,
    method: &'a Method,
}

/// One exchange over a connection's read and write halves; `timed`, it
/// reads the clock as the head goes out and as the answer's head arrives.
async fn exchange_on<R: ReadMore, W: AsyncWrite + Unpin>(
    mut rd: R,
    mut wr: W,
    answer: Answer<'_>,
    head: &[u8],
    body: ProxyBody,
    framing: RequestFraming,
    timed: bool,
) -> Result<(ResponseHead, Option<Timing>), ExchangeError> {
    // Only a mirrored pair's latencies are compared this finely; the live
    // path's own latency is the pipeline's, so an untimed exchange leaves
    // the clock alone (two reads a request, each a `clock_gettime`).
    let sent = timed.then(SystemTime::now);
    wr.write_all(head).await?;
    if framing == RequestFraming::Empty {
        // TLS may hold the head back until asked to flush.
        wr.flush().await?;
        return read_head(&mut rd, answer, sent).await;
    }
    let send = write_body(&mut wr, body, framing);
    let recv = read_head(&mut rd, answer, sent);
    tokio::pin!(send, recv);
    tokio::select! {
        biased;
        head = &mut recv => {
            // An answer before the whole body was sent: the rest of the
            // body is never sent, so the connection cannot be reused.
            let (mut head, timing) = head?;
            head.keep_alive = false;
            Ok((head, timing))
        }
        sent = &mut send => match sent {
            Ok(()) => recv.await,
            Err(SendError::Body(e)) => Err(ExchangeError::Body(e)),
            Err(SendError::Io(e)) => {
                // The backend stopped reading; it may have answered why.
                let (mut head, timing) = recv.await.map_err(|_| ExchangeError::Io(e))?;
                head.keep_alive = false;
                Ok((head, timing))
            }
        },
    }
}

async fn read_head<R: ReadMore>(
    rd: &mut R,
    answer: Answer<'_>,
    sent: Option<SystemTime>,
) -> Result<(ResponseHead, Option<Timing>), ExchangeError> {
    let Answer { buf, names, method } = answer;
    let mut arrived = None;
    loop {
        if !buf.is_empty() {
            if let Some(head) = parse_response(buf, method, names)? {
                let timing = sent.map(|sent| Timing {
                    sent,
                    head: arrived.unwrap_or_else(SystemTime::now),
                    kernel: arrived.is_some(),
                });
                return Ok((head, timing));
            }
        }
        let (n, at) = rd.read_more(buf).await?;
        if n == 0 {
            return Err(if buf.is_empty() {
                ExchangeError::Closed
            } else {
                HeadError::Malformed("connection closed inside the response head".into()).into()
            });
        }
        arrived = at;
    }
}

enum SendError {
    Body(BoxError),
    Io(io::Error),
}

async fn write_body<W: AsyncWrite + Unpin>(
    wr: &mut W,
    body: ProxyBody,
    framing: RequestFraming,
) -> Result<(), SendError> {
    let mut body = std::pin::pin!(body);
    let mut scratch = Vec::new();
    // The bytes sent must be the bytes the head declared: a body that says
    // one length and carries another would desynchronise the connection.
    let mut left = match framing {
        RequestFraming::Length(n) => Some(n),
        _ => None,
    };
    let lying = |declared: u64, detail: &str| {
        SendError::Body(Box::new(ClientError::new(
            ClientFault::Framing,
            format!("the request body {detail} its Content-Length ({declared} bytes)"),
        )))
    };
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(SendError::Body)?;
        let data = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => {
                // Trailers go out after the last chunk; a body with a
                // declared length has nowhere to carry them.
                trailers = frame.into_trailers().ok();
                continue;
            }
        };
        if data.is_empty() {
            continue;
        }
        if let (Some(rest), RequestFraming::Length(declared)) = (left.as_mut(), framing) {
            if data.len() as u64 > *rest {
                return Err(lying(declared, "is longer than"));
            }
            *rest -= data.len() as u64;
        }
        if framing != RequestFraming::Chunked {
            wr.write_all(&data).await.map_err(SendError::Io)?;
            continue;
        }
        scratch.clear();
        // Writing into a Vec cannot fail.
        let _ = write!(scratch, "{:x}\r\n", data.len());
        if data.len() <= COALESCE {
            scratch.extend_from_slice(&data);
            scratch.extend_from_slice(b"\r\n");
            wr.write_all(&scratch).await.map_err(SendError::Io)?;
        } else {
            wr.write_all(&scratch).await.map_err(SendError::Io)?;
            wr.write_all(&data).await.map_err(SendError::Io)?;
            wr.write_all(b"\r\n").await.map_err(SendError::Io)?;
        }
    }
    if let (Some(rest), RequestFraming::Length(declared)) = (left, framing) {
        if rest > 0 {
            return Err(lying(declared, "ended before"));
        }
    }
    if framing == RequestFraming::Chunked {
        scratch.clear();
        scratch.extend_from_slice(b"0\r\n");
        for (name, value) in trailers.iter().flatten() {
            if !crate::proxy::headers::is_hop_by_hop(name) {
                scratch.extend_from_slice(name.as_str().as_bytes());
                scratch.extend_from_slice(b": ");
                scratch.extend_from_slice(value.as_bytes());
                scratch.extend_from_slice(b"\r\n");
            }
        }
        scratch.extend_from_slice(b"\r\n");
        wr.write_all(&scratch).await.map_err(SendError::Io)?;
    }
    wr.flush().await.map_err(SendError::Io)?;
    Ok(())
}
