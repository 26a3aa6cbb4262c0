//! Rollout control: the state, its only writer, persistence, and the guard.

pub mod controller;
pub mod guard;
pub mod persist;
pub mod sink;
pub mod state;
pub mod stats;
pub mod window;
