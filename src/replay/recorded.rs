//! A recorded request: the line format of a capture file (JSONL, one
//! request per line), what a HAR entry and a stored sample become, and what
//! the replay engine sends. [`super::file`] reads whole files.
//!
//! ```json
//! {"v":1,"at_ms":1764500000000,"request_id":"7f3a…","route":"default","method":"POST",
//!  "target":"/cart?x=1","host":"shop.example","headers":[["content-type","application/json"]],
//!  "body":"{\"sku\":42}"}
//! ```
//! A body that is not UTF-8 is in `body_base64` instead of `body`.
//! Redacted header values are `[redacted]` and are not sent again.

use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::report::sample::{Sample, REDACTED};

/// The capture format's version.
pub const VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recorded {
    #[serde(default = "version")]
    pub v: u32,
    #[serde(default)]
    pub at_ms: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub request_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub route: String,
    pub method: String,
    /// Path and query.
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub body: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
}

fn version() -> u32 {
    VERSION
}

/// Headers a replay never sends again: the gateway's own and the
/// connection's, which the sender sets itself.
fn not_replayed(name: &str) -> bool {
    matches!(
        name,
        "host"
            | "content-length"
            | "transfer-encoding"
            | "connection"
            | "keep-alive"
            | "upgrade"
            | "te"
            | "trailer"
            | "proxy-connection"
            | "x-forwarded-for"
            | "x-forwarded-proto"
            | "x-forwarded-host"
            | "via"
    ) || name.starts_with(':')
        || name.starts_with("x-switchyard-")
}

impl Recorded {
    /// A request with `body`, as text when it is UTF-8.
    pub fn with_body(mut self, body: &[u8]) -> Self {
        match std::str::from_utf8(body) {
            Ok(text) => {
                self.body = text.to_string();
                self.body_base64 = None;
            }
            Err(_) => {
                self.body = String::new();
                self.body_base64 = Some(base64::engine::general_purpose::STANDARD.encode(body));
            }
        }
        self
    }

    pub fn body_bytes(&self) -> Result<Bytes, String> {
        match &self.body_base64 {
            Some(b64) => base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map(Bytes::from)
                .map_err(|e| format!("body_base64 is not base64: {e}")),
            None => Ok(Bytes::from(self.body.clone())),
        }
    }

    /// The headers to send: redacted values and connection headers left out.
    pub fn headers_to_send(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers
            .iter()
            .filter(|(k, v)| v != REDACTED && !not_replayed(&k.to_ascii_lowercase()))
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The request a stored sample keeps; refused when its body was cut, as
    /// a replay would send another request.
    pub fn from_sample(s: &Sample) -> Result<Self, String> {
        if s.request_body_cut {
            return Err(format!(
                "sample {} kept only the first {} bytes of its request body; replaying it would send a different request",
                s.id,
                crate::report::sample::BODY_SNIPPET
            ));
        }
        let host = s.headers.iter().find(|(k, _)| k == "host").map(|(_, v)| v.clone());
        Ok(Recorded {
            v: VERSION,
            at_ms: s.at_ms,
            request_id: s.request_id.clone(),
            route: s.route.clone(),
            method: s.method.clone(),
            target: s.target.clone(),
            host,
            headers: s.headers.clone(),
            body: s.request_body.clone(),
            body_base64: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_round_trip_as_text_or_base64() {
        let r = Recorded {
            v: 1,
            at_ms: 0,
            request_id: String::new(),
            route: String::new(),
            method: "POST".into(),
            target: "/".into(),
            host: None,
            headers: vec![],
            body: String::new(),
            body_base64: None,
        };
        let text = r.clone().with_body(b"{\"a\":1}");
        assert_eq!(text.body, "{\"a\":1}");
        let bin = r.with_body(&[0xff, 0x00]);
        assert_eq!(bin.body_bytes().unwrap().as_ref(), &[0xff, 0x00]);
        let line = serde_json::to_string(&bin).unwrap();
        assert_eq!(serde_json::from_str::<Recorded>(&line).unwrap(), bin);
    }
}
