//! The error every body in the gateway carries: whatever failed (a client's
//! upload, a backend's stream, a limit), boxed, its cause kept as its
//! source so the live path can still tell whose fault it was.

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
