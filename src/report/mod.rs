//! The diff report: counts per endpoint and field, samples, the JSONL store,
//! and the HTML, JSON and text renderings.

pub mod collector;
pub mod endpoint;
pub mod html;
pub mod latency;
pub mod model;
pub mod store;
pub mod text;
