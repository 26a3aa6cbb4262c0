//! Rate limiting by GCRA (the generic cell rate algorithm, a token bucket
//! kept as one timestamp per key): `rate` requests per `per` sustained, with
//! bursts of up to `burst`. Over the limit the request gets 429 with
//! `Retry-After`, before the split, so the limit is the same whichever side
//! would have served it.
//!
//! Memory is bounded: at most `max_keys` keys, in shards. A key whose
//! bucket has refilled carries no information and is dropped first; if every
//! key is still draining, the one closest to full (the idlest) goes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::{HeaderValue, StatusCode};
use xxhash_rust::xxh3::xxh3_64;

use super::{Module, Outcome, RequestCtx, Verdict};
use crate::config::{RateLimitConfig, StickyKey};
use crate::proxy::error::plain;

const SHARDS: usize = 16;

pub struct RateLimit {
    key: StickyKey,
    /// Nanoseconds between two requests at the sustained rate.
    interval: u64,
    /// How far ahead of now a key's schedule may run before it is refused.
    tolerance: u64,
    shard_cap: usize,
    epoch: Instant,
    shards: Vec<Mutex<HashMap<u64, u64>>>,
}

const ALLOW: usize = 0;
const LIMIT: usize = 1;

impl RateLimit {
    pub fn new(cfg: &RateLimitConfig) -> Self {
        Self::with_epoch(cfg, Instant::now())
    }

    fn with_epoch(cfg: &RateLimitConfig, epoch: Instant) -> Self {
        let interval = (cfg.per.get().as_nanos() as f64 / cfg.rate).max(1.0) as u64;
        let burst = cfg.burst.unwrap_or(cfg.rate).max(1.0);
        Self {
            key: cfg.key.clone(),
            interval,
            tolerance: (interval as f64 * (burst - 1.0)) as u64,
            shard_cap: (cfg.max_keys / SHARDS).max(1),
            epoch,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn key_hash(&self, req: &http::request::Parts, client: IpAddr) -> u64 {
        match &self.key {
            StickyKey::Global => 0,
            key => match crate::split::sticky_value(key, req) {
                Some(v) => xxh3_64(v),
                None => match client {
                    IpAddr::V4(v4) => xxh3_64(&v4.octets()),
                    IpAddr::V6(v6) => xxh3_64(&v6.octets()),
                },
            },
        }
    }

    /// GCRA step for `key` at `now`: `Ok` or the wait until a retry succeeds.
    pub fn check(&self, key: u64, now: Instant) -> Result<(), Duration> {
        let now = now.saturating_duration_since(self.epoch).as_nanos() as u64;
        let shard = &self.shards[(key as usize) % SHARDS];
        let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
        let tat = map.get(&key).copied().unwrap_or(now).max(now);
        if tat - now > self.tolerance {
            return Err(Duration::from_nanos(tat - now - self.tolerance));
        }
        if map.len() >= self.shard_cap && !map.contains_key(&key) {
            evict(&mut map, now);
        }
        map.insert(key, tat + self.interval);
        Ok(())
    }

    /// Keys tracked now.
    pub fn tracked(&self) -> usize {
        self.shards.iter().map(|s| s.lock().map(|m| m.len()).unwrap_or(0)).sum()
    }
}

/// Frees room in a full shard: drop refilled keys, else the idlest one.
fn evict(map: &mut HashMap<u64, u64>, now: u64) {
    let before = map.len();
    map.retain(|_, tat| *tat > now);
    if map.len() < before {
        return;
    }
    if let Some((&k, _)) = map.iter().min_by_key(|(_, tat)| **tat) {
        map.remove(&k);
    }
}

impl Module for RateLimit {
    fn name(&self) -> &'static str {
        "rate_limit"
    }

    fn decisions(&self) -> Vec<String> {
        vec!["allowed".into(), "limited".into()]
    }

    fn on_request(&self, req: &mut http::request::Parts, ctx: &mut RequestCtx<'_>) -> Outcome {
        let key = self.key_hash(req, ctx.client_ip);
        match self.check(key, Instant::now()) {
            Ok(()) => Outcome::pass(ALLOW),
            Err(wait) => {
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                let mut resp = plain(StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded\n");
                if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
                    resp.headers_mut().insert(http::header::RETRY_AFTER, v);
                }
                tracing::debug!(route = ctx.route, retry_after_s = secs.max(1), "rate limited");
                Outcome {
                    verdict: Verdict::Respond(resp),
                    decision: LIMIT,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HumanDuration;

    fn limiter(rate: f64, burst: Option<f64>, max_keys: usize) -> (RateLimit, Instant) {
        let epoch = Instant::now();
        let cfg = RateLimitConfig {
            key: StickyKey::ClientIp,
            rate,
            per: HumanDuration::from_secs(1),
            burst,
            max_keys,
        };
        (RateLimit::with_epoch(&cfg, epoch), epoch)
    }

    #[test]
    fn allows_a_burst_then_refuses_with_the_wait() {
        let (rl, t0) = limiter(10.0, Some(5.0), 1000);
        for _ in 0..5 {
            assert!(rl.check(1, t0).is_ok());
        }
        let wait = rl.check(1, t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(100));
        // After the wait, exactly one more.
        assert!(rl.check(1, t0 + wait).is_ok());
        assert!(rl.check(1, t0 + wait).is_err());
    }

    #[test]
    fn sustained_rate_is_honoured() {
        let (rl, t0) = limiter(100.0, Some(1.0), 1000);
        let mut allowed = 0;
        // Ten seconds of a request every millisecond.
        for ms in 0..10_000u64 {
            if rl.check(7, t0 + Duration::from_millis(ms)).is_ok() {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 1000);
    }

    #[test]
    fn keys_have_separate_budgets() {
        let (rl, t0) = limiter(1.0, None, 1000);
        assert!(rl.check(1, t0).is_ok());
        assert!(rl.check(1, t0).is_err());
        assert!(rl.check(2, t0).is_ok());
    }

    #[test]
    fn memory_is_bounded_by_max_keys() {
        let (rl, t0) = limiter(1.0, None, 160);
        for k in 0..100_000u64 {
            let _ = rl.check(k, t0);
        }
        assert!(rl.tracked() <= 160, "tracked {}", rl.tracked());
    }

    #[test]
    fn refilled_keys_are_evicted_before_active_ones() {
        let (rl, t0) = limiter(1.0, None, SHARDS);
        // One key per shard is the cap; key 0 is drained at t0.
        assert!(rl.check(0, t0).is_ok());
        // Much later key 16 (same shard) arrives: key 0 has refilled and goes.
        let later = t0 + Duration::from_secs(5);
        assert!(rl.check(16, later).is_ok());
        assert!(rl.check(16, later).is_err());
        assert!(rl.check(0, later).is_ok());
    }

    #[test]
    fn answers_429_with_retry_after() {
        let (rl, _) = limiter(1.0, None, 100);
        let mut parts = http::Request::get("/").body(()).unwrap().into_parts().0;
        let mut ctx = RequestCtx {
            client_ip: "192.0.2.1".parse().unwrap(),
            ..crate::modules::ctx()
        };
        assert!(matches!(rl.on_request(&mut parts, &mut ctx).verdict, Verdict::Continue));
        let out = rl.on_request(&mut parts, &mut ctx);
        assert_eq!(out.decision, LIMIT);
        match out.verdict {
            Verdict::Respond(r) => {
                assert_eq!(r.status(), 429);
                assert_eq!(r.headers()["retry-after"], "1");
            }
            _ => panic!("expected a 429"),
        }
    }
}
