//! The systems a request can be sent to.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The system being migrated away from.
    Old,
    /// The system being migrated to.
    New,
    /// A second copy of `old`, used only as a noise baseline.
    OldTwin,
}

impl Side {
    pub const fn as_str(self) -> &'static str {
        match self {
            Side::Old => "old",
            Side::New => "new",
            Side::OldTwin => "old_twin",
        }
    }

    /// The other side of the split (the twin pairs with new).
    pub const fn other(self) -> Side {
        match self {
            Side::Old | Side::OldTwin => Side::New,
            Side::New => Side::Old,
        }
    }

    pub fn header_value(self) -> http::HeaderValue {
        http::HeaderValue::from_static(self.as_str())
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
