//! Every default in one place, so the reference docs can quote them.

use crate::config::{HumanDuration, StickyKey};

pub fn listen() -> String {
    "127.0.0.1:8080".into()
}
pub fn admin_listen() -> String {
    "127.0.0.1:9901".into()
}
pub fn max_connections() -> usize {
    10_000
}
pub fn header_read_timeout() -> HumanDuration {
    HumanDuration::from_secs(10)
}
pub fn max_header_bytes() -> usize {
    16 * 1024
}
pub fn max_headers() -> usize {
    100
}
pub fn drain_timeout() -> HumanDuration {
    HumanDuration::from_secs(30)
}
pub fn http2_max_streams() -> u32 {
    256
}
pub fn connect_timeout() -> HumanDuration {
    HumanDuration::from_secs(1)
}
pub fn request_timeout() -> HumanDuration {
    HumanDuration::from_secs(30)
}
pub fn idle_timeout() -> HumanDuration {
    HumanDuration::from_secs(90)
}
pub fn read_timeout() -> HumanDuration {
    HumanDuration::from_secs(60)
}
pub fn max_idle() -> usize {
    512
}
pub fn sticky() -> StickyKey {
    StickyKey::ClientIp
}
pub fn rate_key() -> StickyKey {
    StickyKey::ClientIp
}
pub fn salt() -> String {
    "switchyard".into()
}
pub fn force_header() -> String {
    "x-switchyard-backend".into()
}
pub fn steps() -> Vec<super::Step> {
    [1.0, 5.0, 25.0, 50.0, 100.0]
        .into_iter()
        .map(super::Step::from)
        .collect()
}
pub fn guard_interval() -> HumanDuration {
    HumanDuration::from_secs(10)
}
pub fn guard_window() -> HumanDuration {
    HumanDuration::from_secs(300)
}
pub fn min_requests() -> u64 {
    100
}
pub fn max_error_rate_increase() -> f64 {
    0.01
}
pub fn max_latency_ratio() -> f64 {
    1.2
}
pub fn min_latency_increase() -> HumanDuration {
    HumanDuration(std::time::Duration::from_millis(2))
}
pub fn false_alarm_rate() -> f64 {
    0.01
}
pub fn max_diff_rate() -> f64 {
    0.05
}
pub fn min_comparisons() -> u64 {
    50
}
pub fn shadow_methods() -> Vec<String> {
    vec!["GET".into(), "HEAD".into(), "OPTIONS".into()]
}
pub fn max_body_bytes() -> usize {
    1024 * 1024
}
pub fn max_response_bytes() -> usize {
    4 * 1024 * 1024
}
pub fn max_in_flight() -> usize {
    1024
}
pub fn shadow_timeout() -> HumanDuration {
    HumanDuration::from_secs(5)
}
pub fn queue() -> usize {
    4096
}
pub fn relative_threshold() -> f64 {
    0.2
}
pub fn absolute_threshold() -> f64 {
    0.0003
}
pub fn repeat_percent() -> f64 {
    10.0
}
pub fn store_max_bytes() -> u64 {
    64 * 1024 * 1024
}
pub fn store_max_files() -> usize {
    5
}
pub fn ignore_headers() -> Vec<String> {
    [
        "date",
        "server",
        "x-request-id",
        "content-length",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-encoding",
        "vary",
        "etag",
        "last-modified",
        "age",
        "expires",
        "set-cookie",
        "via",
        "x-switchyard-served-by",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}
pub fn samples_per_field() -> usize {
    20
}
pub fn max_endpoints() -> usize {
    500
}
pub fn rate_per() -> HumanDuration {
    HumanDuration::from_secs(1)
}
pub fn max_keys() -> usize {
    100_000
}
pub fn log_level() -> String {
    "info".into()
}
pub fn tls_handshake_timeout() -> HumanDuration {
    HumanDuration::from_secs(10)
}
pub fn upgrade_idle_timeout() -> HumanDuration {
    HumanDuration::from_secs(600)
}
pub fn client_body_timeout() -> HumanDuration {
    HumanDuration::from_secs(60)
}
pub fn admin_open_paths() -> Vec<String> {
    ["/healthz", "/readyz", "/metrics", "/status"]
        .into_iter()
        .map(String::from)
        .collect()
}
pub fn backend_max_connections() -> usize {
    1024
}
pub fn queue_timeout() -> HumanDuration {
    HumanDuration::from_secs(1)
}
pub fn max_buffered_bytes() -> usize {
    256 * 1024 * 1024
}
pub fn shadow_max_connections() -> usize {
    256
}
pub fn shadow_workers() -> usize {
    1
}

pub fn capture_percent() -> f64 {
    1.0
}
pub fn capture_methods() -> Vec<String> {
    vec!["GET".into()]
}
pub fn capture_max_body_bytes() -> usize {
    64 * 1024
}
