//! Which part of a request identifies "the same user": the sticky key of the
//! split, and the budget key of the rate limiter.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub enum StickyKey {
    /// A request header's value (lowercased name).
    Header(String),
    /// A cookie's value.
    Cookie(String),
    /// A query parameter's value.
    Query(String),
    /// The TCP peer address.
    ClientIp,
    /// No key: every request is drawn at random.
    None,
    /// One budget shared by everyone (rate limiter only).
    Global,
}

impl TryFrom<String> for StickyKey {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let named = |kind: &str, name: &str| -> Result<String, String> {
            if name.is_empty() {
                Err(format!("{kind:?} needs a name, as in \"{kind}:x-user-id\""))
            } else {
                Ok(name.to_string())
            }
        };
        match text.split_once(':') {
            Some(("header", name)) => {
                let name = named("header", name)?.to_ascii_lowercase();
                http::HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| format!("{name:?} is not a valid header name"))?;
                Ok(Self::Header(name))
            }
            Some(("cookie", name)) => named("cookie", name).map(Self::Cookie),
            Some(("query", name)) => named("query", name).map(Self::Query),
            _ => match text.as_str() {
                "client_ip" => Ok(Self::ClientIp),
                "none" => Ok(Self::None),
                "global" => Ok(Self::Global),
                other => Err(format!(
                    "unknown key {other:?}: use header:NAME, cookie:NAME, query:NAME, client_ip or none"
                )),
            },
        }
    }
}

impl From<StickyKey> for String {
    fn from(key: StickyKey) -> String {
        key.to_string()
    }
}

impl fmt::Display for StickyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Header(n) => write!(f, "header:{n}"),
            Self::Cookie(n) => write!(f, "cookie:{n}"),
            Self::Query(n) => write!(f, "query:{n}"),
            Self::ClientIp => f.write_str("client_ip"),
            Self::None => f.write_str("none"),
            Self::Global => f.write_str("global"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        for text in [
            "header:x-user-id",
            "cookie:sid",
            "query:uid",
            "client_ip",
            "none",
            "global",
        ] {
            let key = StickyKey::try_from(text.to_string()).unwrap();
            assert_eq!(key.to_string(), text);
        }
        assert_eq!(
            StickyKey::try_from("header:X-User".to_string()).unwrap(),
            StickyKey::Header("x-user".into())
        );
    }

    #[test]
    fn rejects_nameless_and_unknown() {
        assert!(StickyKey::try_from("header:".to_string())
            .unwrap_err()
            .contains("needs a name"));
        assert!(StickyKey::try_from("ip".to_string())
            .unwrap_err()
            .contains("unknown key"));
        assert!(StickyKey::try_from("header:bad name".to_string())
            .unwrap_err()
            .contains("not a valid header"));
    }
}
