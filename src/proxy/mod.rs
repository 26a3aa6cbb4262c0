//! The proxy mechanics of the live path: headers, bodies, forwarding, errors.

pub mod body;
pub mod boxed;
pub mod budget;
pub mod client_body;
pub mod error;
pub mod error_chain;
pub mod fallback;
pub mod forward;
pub mod forwarded;
pub mod grpc;
pub mod headers;
pub mod inbound;
pub mod limit;
pub mod pool;
pub mod stall;
pub mod switch;
pub mod target;
pub mod tee;
pub mod tunnel;
pub mod wire;

pub use body::ProxyBody;
pub use error::ProxyError;
pub use inbound::Inbound;
