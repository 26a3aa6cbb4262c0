//! Requests sent again: a stored diff sample to check a fix
//! (`switchyard replay ID`), a capture file or a browser's HAR export to
//! diff two systems before any live traffic reaches new
//! (`switchyard replay --file`), and the capture that records live requests
//! for it.

pub mod capture;
pub mod engine;
pub mod file;
pub mod har;
pub mod offline;
pub mod recorded;
