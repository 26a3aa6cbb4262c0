//! The backend leg of HTTP/1.1, written for a proxy.
//!
//! hyper's client runs each connection as a task of its own and hands
//! requests to it over a channel; for a proxy whose request is already in
//! memory that is two task hops, a channel, and a re-encoding per request,
//! and it showed as the largest single cost in profiles (`bench/instructions.sh`).
//! Here the request's own task writes the head, reads the response head from
//! the socket, and the response body reads straight from the connection it
//! owns until the body ends, when the connection goes back to its pool.
//! Framing follows RFC 9112: Content-Length, chunked (decoded without
//! copying), or until close; informational responses are skipped.

mod body;
mod chunked;
mod conn;
mod head;
mod names;
mod stamp;
mod stream;

pub use body::BackendBody;
pub use chunked::{ChunkError, ChunkedDecoder, Decoded};
pub use conn::{Connection, ExchangeError};
pub use head::{
    encode_request, parse_length, parse_response, HeadError, RequestFraming, ResponseFraming, ResponseHead,
};
pub use names::KnownNames;
pub use stamp::{enable as enable_stamps, keep_on as keep_stamps_on, together, Timing, SAME_INSTANT};
pub use stream::BackendStream;
