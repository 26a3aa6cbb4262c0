//! What the guard has seen of each side since the current test began:
//! request and error counts, and latencies in a log-bucketed histogram.
//!
//! A sequential test needs everything from a fixed start (a sliding window
//! would forget evidence and void its guarantee), so the arms accumulate
//! from the start of a test and only start afresh with the next one. The
//! histogram keeps that to a few kilobytes per side at any request rate.

use std::time::Instant;

use crate::side::Side;

/// Bucket `i` holds latencies in [MIN·GROWTH^i, MIN·GROWTH^(i+1)).
const MIN_SECONDS: f64 = 1e-6;
const GROWTH: f64 = 1.02;
/// 1 µs to about six hours at 2 % resolution.
const BUCKETS: usize = 1_200;

/// Latencies of one side: a histogram to 2 %, and the mean and variance of
/// their logarithms (Welford), exact.
#[derive(Clone, Debug)]
pub struct Latencies {
    counts: Vec<u64>,
    total: u64,
    ln_mean: f64,
    ln_m2: f64,
}

impl Default for Latencies {
    fn default() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            total: 0,
            ln_mean: 0.0,
            ln_m2: 0.0,
        }
    }
}

fn bucket(seconds: f64) -> usize {
    if seconds <= MIN_SECONDS || !seconds.is_finite() {
        return 0;
    }
    ((seconds / MIN_SECONDS).ln() / GROWTH.ln())
        .floor()
        .clamp(0.0, (BUCKETS - 1) as f64) as usize
}

/// The middle of bucket `i` (geometric), in seconds.
fn midpoint(i: usize) -> f64 {
    MIN_SECONDS * GROWTH.powf(i as f64 + 0.5)
}

impl Latencies {
    pub fn record(&mut self, seconds: f64) {
        self.counts[bucket(seconds)] += 1;
        self.total += 1;
        let x = seconds.clamp(MIN_SECONDS, 1e5).ln();
        let d = x - self.ln_mean;
        self.ln_mean += d / self.total as f64;
        self.ln_m2 += d * (x - self.ln_mean);
    }

    /// The mean of ln(seconds): the log of the geometric mean.
    pub fn ln_mean(&self) -> f64 {
        self.ln_mean
    }

    /// The sample variance of ln(seconds).
    pub fn ln_variance(&self) -> f64 {
        if self.total < 2 {
            return 0.0;
        }
        self.ln_m2 / (self.total - 1) as f64
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// The q-quantile (nearest rank), to the bucket's resolution.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(midpoint(i));
            }
        }
        None
    }

    /// How many latencies lie above `seconds`: those in whole buckets above
    /// it (the ones sharing its bucket are not counted, which can only make
    /// new look faster by up to 2 %).
    pub fn above(&self, seconds: f64) -> u64 {
        self.counts[(bucket(seconds) + 1).min(BUCKETS)..].iter().sum()
    }
}

/// One side's tally since the test began.
#[derive(Clone, Debug, Default)]
pub struct Arm {
    pub requests: u64,
    pub errors: u64,
    pub latencies: Latencies,
}

impl Arm {
    fn record(&mut self, latency_s: f64, error: bool) {
        self.requests += 1;
        self.errors += u64::from(error);
        self.latencies.record(latency_s);
    }
}

/// Both sides, since `since`.
#[derive(Clone, Debug)]
pub struct Arms {
    pub since: Instant,
    pub old: Arm,
    pub new: Arm,
}

impl Arms {
    pub fn new(since: Instant) -> Self {
        Self {
            since,
            old: Arm::default(),
            new: Arm::default(),
        }
    }

    /// Counts one request. Requests split before the test began were served
    /// under the previous percent and belong to no test.
    pub fn record(&mut self, side: Side, at: Instant, latency_s: f64, error: bool) {
        if at < self.since {
            return;
        }
        match side {
            Side::New => self.new.record(latency_s, error),
            _ => self.old.record(latency_s, error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_two_percent() {
        let mut l = Latencies::default();
        for i in 1..=1000 {
            l.record(f64::from(i) / 1000.0);
        }
        let p50 = l.quantile(0.5).unwrap();
        assert!((p50 / 0.5 - 1.0).abs() < 0.02, "{p50}");
        let p99 = l.quantile(0.99).unwrap();
        assert!((p99 / 0.99 - 1.0).abs() < 0.02, "{p99}");
        // Values above 0.9 s: 100, less those sharing 0.9's bucket (2 %).
        assert!((80..=100).contains(&l.above(0.9)), "{}", l.above(0.9));
    }

    #[test]
    fn log_moments_are_exact() {
        let mut l = Latencies::default();
        for x in [0.001, 0.01, 0.1] {
            l.record(x);
        }
        assert!((l.ln_mean().exp() - 0.01).abs() < 1e-12);
        let v = l.ln_variance();
        assert!((v - 10f64.ln().powi(2)).abs() < 1e-9, "{v}");
    }

    #[test]
    fn requests_split_before_the_test_are_not_counted() {
        let t0 = Instant::now();
        let mut a = Arms::new(t0 + std::time::Duration::from_secs(1));
        a.record(Side::New, t0, 0.01, true);
        a.record(Side::New, t0 + std::time::Duration::from_secs(2), 0.01, false);
        assert_eq!((a.new.requests, a.new.errors), (1, 0));
    }

    #[test]
    fn extremes_land_in_the_end_buckets() {
        let mut l = Latencies::default();
        l.record(0.0);
        l.record(f64::INFINITY);
        l.record(1e9);
        assert_eq!(l.total(), 3);
        assert_eq!(l.above(1e9), 0);
    }
}
