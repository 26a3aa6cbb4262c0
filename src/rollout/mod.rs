//! Rollout control: the state, its only writer, persistence, and the guard.

pub mod arms;
pub mod checks;
pub mod controller;
pub mod error;
pub mod explain;
pub mod explanation;
pub mod fleet;
pub mod guard;
pub mod persist;
pub mod plan;
pub mod sequential;
#[cfg(test)]
pub(crate) mod simrng;
pub mod sink;
pub mod state;
pub mod stats;
pub mod webhooks;
