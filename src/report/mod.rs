//! The diff report: counts per endpoint and field, samples, the JSONL store,
//! and the HTML, JSON and text renderings.

pub mod accept;
pub mod charts;
pub mod collector;
pub mod endpoint;
pub mod escape;
pub mod gather;
pub mod html;
pub mod latency;
pub mod merge;
pub mod model;
pub mod sample;
pub mod store;
pub mod tally;
pub mod text;
