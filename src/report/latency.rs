//! A fixed-bucket latency histogram for the report: cheap to update, small
//! to store, and good for p50/p95/p99 to within one bucket (about 8 %).

use serde::{Deserialize, Serialize};

/// Lower bound of the first bucket, in microseconds.
const FIRST_US: f64 = 50.0;
/// Each bucket is this much wider than the one before.
const GROWTH: f64 = 1.08;
pub const BUCKETS: usize = 160;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    counts: Vec<u64>,
    pub total: u64,
    pub sum_us: f64,
}

impl Default for Latency {
    fn default() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            total: 0,
            sum_us: 0.0,
        }
    }
}

fn bucket_of(us: f64) -> usize {
    if us <= FIRST_US {
        return 0;
    }
    let i = ((us / FIRST_US).ln() / GROWTH.ln()).floor() as usize + 1;
    i.min(BUCKETS - 1)
}

/// Upper bound of bucket `i`, in microseconds.
pub fn upper_us(i: usize) -> f64 {
    FIRST_US * GROWTH.powi(i as i32)
}

impl Latency {
    pub fn record_us(&mut self, us: f64) {
        if self.counts.len() != BUCKETS {
            self.counts = vec![0; BUCKETS];
        }
        self.counts[bucket_of(us)] += 1;
        self.total += 1;
        self.sum_us += us;
    }

    /// The q-quantile (0..1) in milliseconds, or None when empty.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        let rank = (q * self.total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                // Geometric middle of the bucket.
                let lo = if i == 0 { FIRST_US / GROWTH } else { upper_us(i - 1) };
                return Some((lo * upper_us(i)).sqrt() / 1000.0);
            }
        }
        None
    }

    pub fn merge(&mut self, other: &Latency) {
        if self.counts.len() != BUCKETS {
            self.counts = vec![0; BUCKETS];
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.sum_us += other.sum_us;
    }

    /// Counts folded into `bins` equal log-width bins between the first and
    /// last non-empty bucket shared by `a` and `b` (for a chart of both).
    pub fn shared_bins(a: &Latency, b: &Latency, bins: usize) -> (Vec<f64>, Vec<u64>, Vec<u64>) {
        let nonempty = |l: &Latency| {
            let first = l.counts.iter().position(|c| *c > 0);
            let last = l.counts.iter().rposition(|c| *c > 0);
            first.zip(last)
        };
        let range = match (nonempty(a), nonempty(b)) {
            (Some((f1, l1)), Some((f2, l2))) => (f1.min(f2), l1.max(l2)),
            (Some(r), None) | (None, Some(r)) => r,
            (None, None) => return (Vec::new(), Vec::new(), Vec::new()),
        };
        let span = range.1 - range.0 + 1;
        let per = span.div_ceil(bins).max(1);
        let mut edges = Vec::new();
        let mut ca = Vec::new();
        let mut cb = Vec::new();
        let mut i = range.0;
        while i <= range.1 {
            let end = (i + per).min(range.1 + 1);
            edges.push(upper_us(end - 1) / 1000.0);
            ca.push(a.counts.get(i..end).map_or(0, |s| s.iter().sum()));
            cb.push(b.counts.get(i..end).map_or(0, |s| s.iter().sum()));
            i = end;
        }
        (edges, ca, cb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_a_bucket() {
        let mut l = Latency::default();
        for ms in 1..=1000 {
            l.record_us(ms as f64 * 1000.0);
        }
        for (q, want) in [(0.5, 500.0), (0.95, 950.0), (0.99, 990.0)] {
            let got = l.quantile_ms(q).unwrap();
            assert!((got / want - 1.0).abs() < 0.08, "q{q}: {got} vs {want}");
        }
        assert_eq!(Latency::default().quantile_ms(0.5), None);
    }

    #[test]
    fn shared_bins_cover_both() {
        let mut a = Latency::default();
        let mut b = Latency::default();
        a.record_us(1000.0);
        b.record_us(100_000.0);
        let (edges, ca, cb) = Latency::shared_bins(&a, &b, 10);
        assert!(edges.len() <= 10 && !edges.is_empty());
        assert_eq!(ca.iter().sum::<u64>(), 1);
        assert_eq!(cb.iter().sum::<u64>(), 1);
    }
}
