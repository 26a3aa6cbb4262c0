//! The admin side: the HTTP API on its own listener, and the CLI's client.

pub mod api;
pub mod client;
