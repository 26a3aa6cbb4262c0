//! Undoes `Content-Encoding` (gzip, deflate, br, chains of them) so bodies
//! compare by content, with a cap against decompression bombs.

use std::io::Read;

use bytes::Bytes;
use http::HeaderMap;

/// Largest decoded body compared.
pub const MAX_DECODED: u64 = 32 * 1024 * 1024;

pub fn decoded(headers: &HeaderMap, body: &Bytes) -> Result<Bytes, String> {
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
        data = decode_one(enc, &data)?;
    }
    Ok(data)
}

fn read_capped(mut r: impl Read, what: &str) -> Result<Bytes, String> {
    let mut out = Vec::new();
    let n = r
        .by_ref()
        .take(MAX_DECODED + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("{what} body does not decode: {e}"))?;
    if n as u64 > MAX_DECODED {
        return Err(format!("{what} body decodes to more than {MAX_DECODED} bytes"));
    }
    Ok(Bytes::from(out))
}

fn decode_one(encoding: &str, data: &[u8]) -> Result<Bytes, String> {
    match encoding {
        "gzip" | "x-gzip" => read_capped(flate2::read::MultiGzDecoder::new(data), "gzip"),
        "deflate" => {
            // RFC 9110 deflate is zlib-wrapped; some servers send it raw.
            read_capped(flate2::read::ZlibDecoder::new(data), "deflate")
                .or_else(|_| read_capped(flate2::read::DeflateDecoder::new(data), "deflate"))
        }
        "br" => read_capped(brotli::Decompressor::new(data, 4096), "br"),
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

    fn headers(enc: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("content-encoding", enc.parse().unwrap());
        h
    }

    #[test]
    fn decodes_each_encoding() {
        let text = b"{\"a\":1}";
        assert_eq!(decoded(&headers("gzip"), &Bytes::from(gzip(text))).unwrap(), &text[..]);
        assert_eq!(decoded(&headers("br"), &Bytes::from(br(text))).unwrap(), &text[..]);
        assert_eq!(
            decoded(&headers("deflate"), &Bytes::from(deflate(text))).unwrap(),
            &text[..]
        );
        assert_eq!(
            decoded(&HeaderMap::new(), &Bytes::from_static(text)).unwrap(),
            &text[..]
        );
    }

    #[test]
    fn undoes_chains_in_reverse() {
        let text = b"hello";
        let data = br(&gzip(text));
        assert_eq!(decoded(&headers("gzip, br"), &Bytes::from(data)).unwrap(), &text[..]);
    }

    #[test]
    fn reports_garbage_and_unknown_encodings() {
        assert!(decoded(&headers("gzip"), &Bytes::from_static(b"nope"))
            .unwrap_err()
            .contains("gzip body does not decode"));
        assert!(decoded(&headers("zstd"), &Bytes::from_static(b"x"))
            .unwrap_err()
            .contains("unsupported"));
    }
}
