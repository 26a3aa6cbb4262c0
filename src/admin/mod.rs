//! The admin side: the HTTP API on its own listener, and the CLI's client.

pub mod access;
pub mod api;
pub mod client;
mod diffs;
mod fleet;
pub mod reply;
pub mod state;
pub mod watch;
