//! Switchyard: a front proxy for migrating live HTTP traffic from an old
//! system to a new one.
//!
//! It serves each request from `old` or `new` by a sticky rollout percentage
//! ([`split`]), mirrors sampled requests to the other side ([`shadow`]),
//! compares the two answers with noise cancelled ([`diff`], [`compare`],
//! [`report`]), and lets an SRE walk the percentage up or roll back at once
//! ([`rollout`], [`admin`]). The live path is [`pipeline`]; everything slow
//! hangs off it on its own task or thread, bounded, with every drop counted.

#![forbid(unsafe_code)]

pub mod access;
pub mod admin;
pub mod background;
pub mod calendar;
pub mod compare;
pub mod config;
pub mod demo;
pub mod diff;
pub mod gateway;
pub mod logging;
pub mod metrics;
pub mod modules;
pub mod pipeline;
pub mod proxy;
pub mod replay;
pub mod report;
pub mod rollout;
pub mod route;
pub mod server;
pub mod shadow;
pub mod side;
pub mod snapshot;
pub mod split;
pub mod tls;
