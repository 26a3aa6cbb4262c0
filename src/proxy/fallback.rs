//! Per-request fallback to old (`rollout.fallback`): a request served by
//! new that fails before any byte of the answer reached the client is sent
//! to old, and old's answer is served.
//!
//! Bounded by a budget: at most `max_share` of new's requests in the
//! guard's window fall back (and one, so the first failure of a window
//! can). Beyond it new's error reaches the client, so a dead new shows
//! instead of silently doubling old's load. The failure is new's either
//! way: counted in `switchyard_upstream_errors_total` and judged by the
//! guard.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::{Method, Response};

use super::error::ProxyError;
use super::inbound::Inbound;
use crate::config::{FallbackConfig, FallbackOn};

/// Why a request fell back, if its failure is one the config names.
pub fn reason(cfg: &FallbackConfig, result: &Result<Response<Inbound>, ProxyError>) -> Option<FallbackOn> {
    let why = match result {
        Ok(resp) if resp.status().is_server_error() => FallbackOn::ServerError,
        Err(ProxyError::Connect { .. } | ProxyError::Tls { .. }) => FallbackOn::ConnectError,
        Err(ProxyError::Timeout { .. }) => FallbackOn::Timeout,
        _ => return None,
    };
    cfg.on.contains(&why).then_some(why)
}

/// Whether `method` may be sent a second time, to old.
pub fn allows(cfg: &FallbackConfig, method: &Method) -> bool {
    cfg.methods.iter().any(|m| m == method.as_str())
}

/// New's requests and fallbacks in the current window.
pub struct Budget {
    requests: AtomicU64,
    fallbacks: AtomicU64,
    window_start: Mutex<Instant>,
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            requests: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
            window_start: Mutex::new(Instant::now()),
        }
    }
}

impl Budget {
    /// A request served by new.
    pub fn count_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one fallback if `max_share` of this window's requests allows.
    pub fn take(&self, max_share: f64, window: Duration) -> bool {
        {
            let mut start = self.window_start.lock().unwrap_or_else(|p| p.into_inner());
            if start.elapsed() >= window {
                *start = Instant::now();
                self.requests.store(0, Ordering::Relaxed);
                self.fallbacks.store(0, Ordering::Relaxed);
            }
        }
        let requests = self.requests.load(Ordering::Relaxed).max(1) as f64;
        let allowed = (max_share * requests).floor().max(1.0) as u64;
        let mut used = self.fallbacks.load(Ordering::Relaxed);
        loop {
            if used >= allowed {
                return false;
            }
            match self
                .fallbacks
                .compare_exchange_weak(used, used + 1, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => used = now,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_a_share_of_new_requests_and_resets_with_the_window() {
        let b = Budget::default();
        for _ in 0..100 {
            b.count_request();
        }
        let taken = (0..20).filter(|_| b.take(0.05, Duration::from_secs(60))).count();
        assert_eq!(taken, 5, "5 % of 100");
        let fresh = Budget::default();
        assert!(
            fresh.take(0.05, Duration::from_secs(60)),
            "the first failure of a window falls back"
        );
        assert!(!fresh.take(0.05, Duration::from_secs(60)));
        assert!(b.take(0.05, Duration::ZERO), "a new window, a new budget");
    }
}
