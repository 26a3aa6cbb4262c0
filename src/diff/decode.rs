//! Undoes `Content-Encoding` (gzip, deflate, br, chains of them) so bodies
//! compare by content, with a cap against decompression bombs that both
//! bodies of a comparison share (so a pair can never decode to more).

use std::io::Read;

use bytes::Bytes;
use http::HeaderMap;

/// Most bytes the bodies of one comparison decode to, together.
pub const MAX_DECODED: u64 = 32 * 1024 * 1024;

/// The body with its encodings undone, taking what it decodes to from
/// `budget` (bytes left for this comparison).
pub fn decoded(headers: &HeaderMap, body: &Bytes, budget: &mut u64) -> Result<Bytes, String> {
    let encodings: Vec<String> = headers
        .get_all(http::header::CONTENT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|e| e.trim().to_ascii_lowercase())
        .filter(|e| !e.is_empty() && e != "identity")
        .collect();
    let mut data = body.clone();
    // Applied in order, so undone in reverse.
    for enc in encodings.iter().rev() {
        data = decode_one(enc, &data, budget)?;
    }
    Ok(data)
}

fn read_capped(mut r: impl Read, what: &str, budget: &mut u64) -> Result<Bytes, String> {
    let mut out = Vec::new();
    let n = r
        .by_ref()
        .take(*budget + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("{what} body does not decode: {e}"))?;
    if n as u64 > *budget {
        return Err(format!(
            "{what} body decodes to more than the {MAX_DECODED} bytes a comparison may decode"
        ));
    }
    *budget -= n as u64;
    Ok(Bytes::from(out))
}

fn decode_one(encoding: &str, data: &[u8], budget: &mut u64) -> Result<Bytes, String> {
    match encoding {
        "gzip" | "x-gzip" => read_capped(flate2::read::MultiGzDecoder::new(data), "gzip", budget),
        "deflate" => {
            // RFC 9110 deflate is zlib-wrapped; some servers send it raw.
            let mut first = *budget;
            read_capped(flate2::read::ZlibDecoder::new(data), "deflate", &mut first)
                .inspect(|_| *budget = first)
                .or_else(|_| read_capped(flate2::read::DeflateDecoder::new(data), "deflate", budget))
        }
        "br" => read_capped(brotli::Decompressor::new(data, 4096), "br", budget),
        other => Err(format!("unsupported content-encoding {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn br(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
            w.write_all(data).unwrap();
        }
        out
    }

    fn deflate(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn dec(h: &HeaderMap, b: &Bytes) -> Result<Bytes, String> {
        decoded(h, b, &mut MAX_DECODED.clone())
    }

    #[test]
    fn the_two_bodies_of_a_comparison_share_one_bound() {
        let big = vec![b'a'; 20 * 1024 * 1024];
        let bomb = Bytes::from(gzip(&big));
        assert!(bomb.len() < 100_000, "a small body that decodes big");
        let mut budget = MAX_DECODED;
        assert_eq!(decoded(&headers("gzip"), &bomb, &mut budget).unwrap().len(), big.len());
        let second = decoded(&headers("gzip"), &bomb, &mut budget).unwrap_err();
        assert!(
            second.contains("more than the 33554432 bytes a comparison may decode"),
            "{second}"
        );
    }

    fn headers(enc: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("content-encoding", enc.parse().unwrap());
        h
    }

    #[test]
    fn decodes_each_encoding() {
        let text = b"{\"a\":1}";
        assert_eq!(dec(&headers("gzip"), &Bytes::from(gzip(text))).unwrap(), &text[..]);
        assert_eq!(dec(&headers("br"), &Bytes::from(br(text))).unwrap(), &text[..]);
        assert_eq!(
            dec(&headers("deflate"), &Bytes::from(deflate(text))).unwrap(),
            &text[..]
        );
        assert_eq!(dec(&HeaderMap::new(), &Bytes::from_static(text)).unwrap(), &text[..]);
    }

    #[test]
    fn undoes_chains_in_reverse() {
        let text = b"hello";
        let data = br(&gzip(text));
        assert_eq!(dec(&headers("gzip, br"), &Bytes::from(data)).unwrap(), &text[..]);
    }

    #[test]
    fn reports_garbage_and_unknown_encodings() {
        assert!(dec(&headers("gzip"), &Bytes::from_static(b"nope"))
            .unwrap_err()
            .contains("gzip body does not decode"));
        assert!(dec(&headers("zstd"), &Bytes::from_static(b"x"))
            .unwrap_err()
            .contains("unsupported"));
    }
}
