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
/// their logarithms (Welford), exact. Mergeable (an instance's window into
/// the fleet's) and subtractable (the fleet's test from a baseline), both
/// exactly for the counts and by Chan's formulas for the moments.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(into = "SparseLatencies", from = "SparseLatencies")]
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

/// [`Latencies`] as stored: only the buckets that hold something.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct SparseLatencies {
    buckets: Vec<(u32, u64)>,
    total: u64,
    ln_mean: f64,
    ln_m2: f64,
}

impl From<Latencies> for SparseLatencies {
    fn from(l: Latencies) -> Self {
        Self {
            buckets: l
                .counts
                .iter()
                .enumerate()
                .filter(|(_, c)| **c > 0)
                .map(|(i, c)| (i as u32, *c))
                .collect(),
            total: l.total,
            ln_mean: l.ln_mean,
            ln_m2: l.ln_m2,
        }
    }
}

impl From<SparseLatencies> for Latencies {
    fn from(s: SparseLatencies) -> Self {
        let mut l = Latencies {
            total: s.total,
            ln_mean: s.ln_mean,
            ln_m2: s.ln_m2,
            ..Latencies::default()
        };
        for (i, c) in s.buckets {
            if let Some(slot) = l.counts.get_mut(i as usize) {
                *slot += c;
            }
        }
        l
    }
}

impl Latencies {
    /// Adds `other`'s latencies to these.
    pub fn merge(&mut self, other: &Latencies) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        let (na, nb) = (self.total as f64, other.total as f64);
        let n = na + nb;
        if nb > 0.0 {
            let delta = other.ln_mean - self.ln_mean;
            self.ln_mean += delta * nb / n;
            self.ln_m2 += other.ln_m2 + delta * delta * na * nb / n;
        }
        self.total += other.total;
    }

    /// These latencies without `base`'s, which must be a part of them
    /// (the same instance's window at an earlier moment).
    pub fn minus(&self, base: &Latencies) -> Latencies {
        let mut out = Latencies::default();
        for ((o, a), b) in out.counts.iter_mut().zip(&self.counts).zip(&base.counts) {
            *o = a.saturating_sub(*b);
        }
        let n = self.total as f64;
        let na = base.total.min(self.total) as f64;
        let nb = n - na;
        out.total = self.total - base.total.min(self.total);
        if out.total > 0 {
            let mean_b = (n * self.ln_mean - na * base.ln_mean) / nb;
            let delta = mean_b - base.ln_mean;
            out.ln_mean = mean_b;
            out.ln_m2 = (self.ln_m2 - base.ln_m2 - delta * delta * na * nb / n).max(0.0);
        }
        out
    }

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

    /// Every bucket that holds latencies: ln(its middle, in seconds) and
    /// its count.
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| (midpoint(i).ln(), *c))
            .collect()
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
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Arm {
    pub requests: u64,
    pub errors: u64,
    pub latencies: Latencies,
}

impl Arm {
    pub fn merge(&mut self, other: &Arm) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.latencies.merge(&other.latencies);
    }

    pub fn minus(&self, base: &Arm) -> Arm {
        Arm {
            requests: self.requests.saturating_sub(base.requests),
            errors: self.errors.saturating_sub(base.errors),
            latencies: self.latencies.minus(&base.latencies),
        }
    }

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
    fn merged_and_subtracted_windows_equal_the_whole() {
        let xs: Vec<f64> = (1..=300)
            .map(|i| 0.0005 * f64::from(i % 37 + 1) * f64::from(i % 5 + 1))
            .collect();
        let mut whole = Latencies::default();
        let (mut a, mut b) = (Latencies::default(), Latencies::default());
        for (i, x) in xs.iter().enumerate() {
            whole.record(*x);
            if i < 120 {
                a.record(*x);
            } else {
                b.record(*x);
            }
        }
        let mut merged = a.clone();
        merged.merge(&b);
        assert_eq!(merged.counts, whole.counts);
        assert_eq!(merged.total, whole.total);
        assert!((merged.ln_mean - whole.ln_mean).abs() < 1e-12);
        assert!((merged.ln_variance() - whole.ln_variance()).abs() < 1e-9);
        let rest = whole.minus(&a);
        assert_eq!(rest.counts, b.counts);
        assert!(
            (rest.ln_mean - b.ln_mean).abs() < 1e-9,
            "{} {}",
            rest.ln_mean,
            b.ln_mean
        );
        assert!((rest.ln_variance() - b.ln_variance()).abs() < 1e-6);
        let back: Latencies = serde_json::from_str(&serde_json::to_string(&whole).unwrap()).unwrap();
        assert_eq!(back, whole);
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
