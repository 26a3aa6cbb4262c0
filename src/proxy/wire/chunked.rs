//! Decoding `Transfer-Encoding: chunked` from a read buffer, without
//! copying: each data chunk is split off the buffer as a shared `Bytes`.

use bytes::{Buf, Bytes, BytesMut};
use http::HeaderMap;

/// A chunk-size line (size and extensions) longer than this is refused.
const MAX_LINE: usize = 4 * 1024;
/// Trailer fields larger than this in all are refused.
const MAX_TRAILERS: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
    Done,
}

/// What one step of decoding produced.
#[derive(Debug, PartialEq)]
pub enum Decoded {
    Data(Bytes),
    Trailers(HeaderMap),
    End,
    /// The buffer holds no complete element; read more.
    NeedMore,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed chunked body: {0}")]
pub struct ChunkError(&'static str);

#[derive(Debug)]
pub struct ChunkedDecoder {
    state: State,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self { state: State::Size }
    }
}

impl ChunkedDecoder {
    /// Decodes the next element from the front of `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, ChunkError> {
        loop {
            match self.state {
                State::Size => {
                    let Some(end) = find_crlf(buf, MAX_LINE)? else {
                        return Ok(Decoded::NeedMore);
                    };
                    let size = parse_size(&buf[..end])?;
                    buf.advance(end + 2);
                    self.state = if size == 0 { State::Trailers } else { State::Data(size) };
                }
                State::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let take = left.min(buf.len() as u64) as usize;
                    let left = left - take as u64;
                    self.state = if left == 0 { State::DataEnd } else { State::Data(left) };
                    return Ok(Decoded::Data(buf.split_to(take).freeze()));
                }
                State::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Decoded::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(ChunkError("chunk data not followed by CRLF"));
                    }
                    buf.advance(2);
                    self.state = State::Size;
                }
                State::Trailers => {
                    if buf.starts_with(b"\r\n") {
                        buf.advance(2);
                        self.state = State::Done;
                        return Ok(Decoded::End);
                    }
                    let mut fields = [httparse::EMPTY_HEADER; 32];
                    match httparse::parse_headers(buf, &mut fields) {
                        Ok(httparse::Status::Complete((len, parsed))) => {
                            let mut trailers = HeaderMap::with_capacity(parsed.len());
                            for f in parsed {
                                if let (Ok(name), Ok(value)) = (
                                    http::HeaderName::from_bytes(f.name.as_bytes()),
                                    http::HeaderValue::from_bytes(f.value),
                                ) {
                                    trailers.append(name, value);
                                }
                            }
                            buf.advance(len);
                            self.state = State::Done;
                            return Ok(Decoded::Trailers(trailers));
                        }
                        Ok(httparse::Status::Partial) if buf.len() > MAX_TRAILERS => {
                            return Err(ChunkError("trailers too large"))
                        }
                        Ok(httparse::Status::Partial) => return Ok(Decoded::NeedMore),
                        Err(_) => return Err(ChunkError("invalid trailer field")),
                    }
                }
                State::Done => return Ok(Decoded::End),
            }
        }
    }
}

/// The offset of the first CRLF, looking no further than `limit` bytes.
fn find_crlf(buf: &[u8], limit: usize) -> Result<Option<usize>, ChunkError> {
    match buf.windows(2).take(limit).position(|w| w == b"\r\n") {
        Some(i) => Ok(Some(i)),
        None if buf.len() > limit => Err(ChunkError("chunk-size line too long")),
        None => Ok(None),
    }
}

/// The hexadecimal size at the start of a chunk-size line; extensions
/// (after `;`) are ignored, as RFC 9112 §7.1.1 allows.
fn parse_size(line: &[u8]) -> Result<u64, ChunkError> {
    let digits = line.split(|&b| b == b';').next().unwrap_or_default().trim_ascii();
    if digits.is_empty() {
        return Err(ChunkError("missing chunk size"));
    }
    let mut size: u64 = 0;
    for &d in digits {
        let v = (d as char)
            .to_digit(16)
            .ok_or(ChunkError("chunk size is not hexadecimal"))?;
        size = size
            .checked_mul(16)
            .and_then(|s| s.checked_add(u64::from(v)))
            .ok_or(ChunkError("chunk size overflows"))?;
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `wire` one byte at a time and collects what comes out.
    fn decode_bytewise(wire: &[u8]) -> Result<(Vec<u8>, Option<HeaderMap>), ChunkError> {
        let mut dec = ChunkedDecoder::default();
        let mut buf = BytesMut::new();
        let (mut body, mut trailers) = (Vec::new(), None);
        let mut input = wire.iter();
        loop {
            match dec.decode(&mut buf)? {
                Decoded::Data(d) => body.extend_from_slice(&d),
                Decoded::Trailers(t) => trailers = Some(t),
                Decoded::End => return Ok((body, trailers)),
                Decoded::NeedMore => match input.next() {
                    Some(b) => buf.extend_from_slice(&[*b]),
                    None => return Err(ChunkError("ran out of input")),
                },
            }
        }
    }

    #[test]
    fn chunks_with_extensions_and_trailers() {
        let wire = b"5;name=v\r\nhello\r\nA\r\n, world!!!\r\n0\r\nx-sum: 42\r\n\r\n";
        let (body, trailers) = decode_bytewise(wire).unwrap();
        assert_eq!(body, b"hello, world!!!");
        assert_eq!(trailers.unwrap()["x-sum"], "42");
    }

    #[test]
    fn whole_buffer_at_once_leaves_what_follows() {
        let mut buf = BytesMut::from(&b"3\r\nabc\r\n0\r\n\r\nNEXT"[..]);
        let mut dec = ChunkedDecoder::default();
        assert_eq!(dec.decode(&mut buf).unwrap(), Decoded::Data(Bytes::from_static(b"abc")));
        assert_eq!(dec.decode(&mut buf).unwrap(), Decoded::End);
        assert_eq!(dec.state, State::Done);
        assert_eq!(&buf[..], b"NEXT");
    }

    #[test]
    fn malformed_bodies_are_refused() {
        assert_eq!(
            decode_bytewise(b"zz\r\n").unwrap_err(),
            ChunkError("chunk size is not hexadecimal")
        );
        assert_eq!(decode_bytewise(b"\r\n").unwrap_err(), ChunkError("missing chunk size"));
        assert_eq!(
            decode_bytewise(b"3\r\nabcX\r\n").unwrap_err(),
            ChunkError("chunk data not followed by CRLF")
        );
        assert_eq!(
            decode_bytewise(b"fffffffffffffffff\r\n").unwrap_err(),
            ChunkError("chunk size overflows")
        );
        let long = format!("1;{}\r\n", "e".repeat(MAX_LINE + 10));
        assert_eq!(
            decode_bytewise(long.as_bytes()).unwrap_err(),
            ChunkError("chunk-size line too long")
        );
    }
}
