//! A fixed-bucket latency histogram for the report: cheap to update, small
//! to store, and good for p50/p95/p99 to within one bucket (2 %), fine
//! enough to tell a 5 % difference at p50. Saved sparse: only the buckets
//! that counted something.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Lower bound of the first bucket, in microseconds.
const FIRST_US: f64 = 10.0;
/// Each bucket is this much wider than the one before.
const GROWTH: f64 = 1.02;
/// 10 µs × 1.02^800 ≈ 76 s.
pub const BUCKETS: usize = 800;

/// The layout of the first version (50 µs, then 8 % wider each), still
/// read from diff stores.
const V1_FIRST_US: f64 = 50.0;
const V1_GROWTH: f64 = 1.08;
const V1_BUCKETS: usize = 160;

#[derive(Clone, Debug, PartialEq)]
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

/// How a histogram is saved: `[bucket, count]` pairs of the buckets in use.
#[derive(Serialize, Deserialize)]
struct Saved {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    buckets: Option<Vec<(usize, u64)>>,
    /// The first version's dense counts (8 % buckets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    counts: Option<Vec<u64>>,
    total: u64,
    sum_us: f64,
}

impl Serialize for Latency {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let buckets = self
            .counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| (i, *c))
            .collect();
        Saved {
            buckets: Some(buckets),
            counts: None,
            total: self.total,
            sum_us: self.sum_us,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Latency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let saved = Saved::deserialize(d)?;
        let mut l = Latency {
            total: saved.total,
            sum_us: saved.sum_us,
            ..Latency::default()
        };
        for (i, c) in saved.buckets.unwrap_or_default() {
            if i >= BUCKETS {
                return Err(serde::de::Error::custom(format!(
                    "latency bucket {i} is beyond {BUCKETS}"
                )));
            }
            l.counts[i] += c;
        }
        // A first-version histogram: each old bucket's count goes where its
        // middle falls now.
        for (i, c) in saved
            .counts
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .take(V1_BUCKETS)
        {
            if c > 0 {
                let lo = if i == 0 {
                    V1_FIRST_US / V1_GROWTH
                } else {
                    V1_FIRST_US * V1_GROWTH.powi(i as i32 - 1)
                };
                let hi = V1_FIRST_US * V1_GROWTH.powi(i as i32);
                l.counts[bucket_of((lo * hi).sqrt())] += c;
            }
        }
        Ok(l)
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
            assert!((got / want - 1.0).abs() < 0.02, "q{q}: {got} vs {want}");
        }
        assert_eq!(Latency::default().quantile_ms(0.5), None);
    }

    #[test]
    fn a_saved_histogram_reads_back_and_the_first_version_still_reads() {
        let mut l = Latency::default();
        for us in [120.0, 900.0, 900.0, 25_000.0] {
            l.record_us(us);
        }
        let text = serde_json::to_string(&l).unwrap();
        assert!(text.len() < 120, "sparse: {text}");
        assert_eq!(serde_json::from_str::<Latency>(&text).unwrap(), l);
        // 8 % buckets, as diff stores of the first version hold them.
        let mut v1 = vec![0u64; 160];
        v1[38] = 5; // ~0.9 ms
        let old = serde_json::json!({ "counts": v1, "total": 5, "sum_us": 4500.0 });
        let read: Latency = serde_json::from_value(old).unwrap();
        let p50 = read.quantile_ms(0.5).unwrap();
        assert!((p50 / 0.93 - 1.0).abs() < 0.05, "{p50}");
    }

    #[test]
    fn five_percent_apart_is_told_apart_at_p50() {
        let (mut a, mut b) = (Latency::default(), Latency::default());
        for i in 0..1000 {
            a.record_us(3000.0 + i as f64 % 7.0);
            b.record_us(3150.0 + i as f64 % 7.0);
        }
        let r = b.quantile_ms(0.5).unwrap() / a.quantile_ms(0.5).unwrap();
        assert!(r > 1.02 && r < 1.08, "{r}");
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
