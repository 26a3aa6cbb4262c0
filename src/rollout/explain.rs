//! What each guard check tells a person besides its decision: the samples
//! it stands on, a p-value, an effect size with its confidence interval,
//! and a verdict in plain words (`pass`, `fail`, or `inconclusive` with
//! what it still needs).
//!
//! The decision stays the sequential test's ([`super::sequential`]): it is
//! what holds the false-alarm rate over a whole rollout. These figures are
//! for reading it: a Hodges–Lehmann shift says how much slower new is and
//! how sure that is, Fisher's exact test says whether a handful of errors
//! is more than chance, and `1/Λ` is the test's own always-valid p-value.

use super::arms::{Arms, Latencies};
use super::checks::{Check, CheckState};
pub use super::explanation::{Effect, Explanation, Verdict};
use crate::compare::Compared;
use crate::config::GuardConfig;

const Z95: f64 = 1.959_963_985;

/// Adds an explanation to each check.
pub fn annotate(checks: &mut [Check], cfg: &GuardConfig, arms: &Arms, compared: Option<Compared>) {
    for c in checks.iter_mut() {
        let (samples_old, samples_new, p, test, effect) = match c.name.0 {
            "error_rate" => {
                let (o, n) = (&arms.old, &arms.new);
                let p = fisher_greater(n.errors, n.requests, o.errors, o.requests);
                let (d, lo, hi) = newcombe(n.errors, n.requests, o.errors, o.requests);
                (
                    o.requests,
                    n.requests,
                    Some(p),
                    "Fisher's exact, one-sided (new's 5xx rate above old's)".to_string(),
                    Some(Effect {
                        name: "5xx rate, new − old (Newcombe)".into(),
                        value: d * 100.0,
                        low: lo * 100.0,
                        high: hi * 100.0,
                        unit: "points".into(),
                    }),
                )
            }
            "latency" => {
                let (o, n) = (&arms.old.latencies, &arms.new.latencies);
                let hl = hodges_lehmann(n, o);
                (
                    o.total(),
                    n.total(),
                    c.evidence.map(sequential_p),
                    "the guard's sequential test (always-valid p = 1/Λ)".to_string(),
                    hl.map(|(v, lo, hi)| Effect {
                        name: "new/old latency (Hodges–Lehmann)".into(),
                        value: v,
                        low: lo,
                        high: hi,
                        unit: "ratio".into(),
                    }),
                )
            }
            "diff_rate" => {
                let c2 = compared.unwrap_or_default();
                let (lo, hi) = wilson(c2.real, c2.comparisons);
                (
                    c2.comparisons,
                    c2.comparisons,
                    c.evidence.map(sequential_p),
                    "the guard's sequential test (always-valid p = 1/Λ)".to_string(),
                    (c2.comparisons > 0).then(|| Effect {
                        name: "share of comparisons with a real difference (Wilson)".into(),
                        value: c2.real as f64 / c2.comparisons as f64,
                        low: lo,
                        high: hi,
                        unit: "share".into(),
                    }),
                )
            }
            _ => {
                let c2 = compared.unwrap_or_default();
                let n = c2.comparisons.max(1) as f64;
                let d = (c2.new_only_errors as f64 - c2.old_only_errors as f64) / n;
                // McNemar's difference of paired proportions, Wald interval.
                let var = ((c2.new_only_errors + c2.old_only_errors) as f64 / n - d * d).max(0.0) / n;
                (
                    c2.comparisons,
                    c2.comparisons,
                    c.evidence.map(sequential_p),
                    "the guard's sequential test (always-valid p = 1/Λ)".to_string(),
                    (c2.comparisons > 0).then(|| Effect {
                        name: "5xx on the same requests, new alone − old alone".into(),
                        value: d * 100.0,
                        low: (d - Z95 * var.sqrt()) * 100.0,
                        high: (d + Z95 * var.sqrt()) * 100.0,
                        unit: "points".into(),
                    }),
                )
            }
        };
        let (verdict, because) = match c.state {
            CheckState::Pass => (Verdict::Pass, None),
            CheckState::Fail => (Verdict::Fail, None),
            CheckState::Skipped => (Verdict::Inconclusive, Some(c.detail.clone())),
            CheckState::Pending => (
                Verdict::Inconclusive,
                Some(needs(c.name.0, cfg, samples_old, samples_new)),
            ),
            CheckState::AboveMargin | CheckState::Suspect => (
                Verdict::Inconclusive,
                Some(format!(
                    "beyond its margin, not yet conclusive: {:.0}% of the evidence a failure needs",
                    c.progress.unwrap_or(0.0) * 100.0
                )),
            ),
        };
        c.explain = Some(Box::new(Explanation {
            samples_old,
            samples_new,
            p_value: p,
            test,
            effect,
            verdict,
            because,
        }));
    }
}

/// "needs N more requests on new" for a check still waiting for data.
fn needs(name: &str, cfg: &GuardConfig, old: u64, new: u64) -> String {
    match name {
        "error_rate" | "latency" => {
            let want = cfg.min_requests.max(1);
            let (mo, mn) = (want.saturating_sub(old), want.saturating_sub(new));
            match (mo, mn) {
                (0, n) => format!("needs {n} more requests on new"),
                (o, 0) => format!("needs {o} more requests on old"),
                (o, n) => format!("needs {n} more requests on new and {o} on old"),
            }
        }
        _ => format!(
            "needs {} more mirrored comparisons",
            cfg.min_comparisons.max(1).saturating_sub(new)
        ),
    }
}

/// The sequential test's always-valid p-value at this look.
fn sequential_p(likelihood_ratio: f64) -> f64 {
    if likelihood_ratio <= 1.0 {
        1.0
    } else {
        (1.0 / likelihood_ratio).min(1.0)
    }
}

fn ln_factorial(n: u64) -> f64 {
    // Exact sums are cheap for the counts Fisher is used on; beyond, Stirling.
    if n < 1024 {
        (2..=n).map(|k| (k as f64).ln()).sum()
    } else {
        let n = n as f64;
        n * n.ln() - n + 0.5 * (2.0 * std::f64::consts::PI * n).ln() + 1.0 / (12.0 * n)
    }
}

fn ln_choose(n: u64, k: u64) -> f64 {
    ln_factorial(n) - ln_factorial(k) - ln_factorial(n - k)
}

/// Fisher's exact test, one-sided: the chance of new having at least its
/// errors if both sides failed at the same rate (hypergeometric tail).
pub fn fisher_greater(new_err: u64, new_n: u64, old_err: u64, old_n: u64) -> f64 {
    let total_err = new_err + old_err;
    let total = new_n + old_n;
    if total == 0 || total_err == 0 {
        return 1.0;
    }
    let denom = ln_choose(total, new_n);
    let max_k = total_err.min(new_n);
    let mut p = 0.0;
    for k in new_err..=max_k {
        if total_err - k > old_n {
            continue;
        }
        p += (ln_choose(total_err, k) + ln_choose(total - total_err, new_n - k) - denom).exp();
    }
    p.min(1.0)
}

/// Wilson's 95 % interval for k of n.
pub fn wilson(k: u64, n: u64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (n, p) = (n as f64, k as f64 / n as f64);
    let z2 = Z95 * Z95;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = Z95 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / (1.0 + z2 / n);
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// Newcombe's interval for the difference of two proportions (new − old),
/// from the sides' Wilson intervals: sound with few errors.
pub fn newcombe(new_err: u64, new_n: u64, old_err: u64, old_n: u64) -> (f64, f64, f64) {
    let p1 = if new_n == 0 { 0.0 } else { new_err as f64 / new_n as f64 };
    let p2 = if old_n == 0 { 0.0 } else { old_err as f64 / old_n as f64 };
    let (l1, u1) = wilson(new_err, new_n);
    let (l2, u2) = wilson(old_err, old_n);
    let d = p1 - p2;
    let low = d - ((p1 - l1).powi(2) + (u2 - p2).powi(2)).sqrt();
    let high = d + ((u1 - p1).powi(2) + (p2 - l2).powi(2)).sqrt();
    (d, low, high)
}

/// The Hodges–Lehmann shift of log latency between new and old (the
/// median of every new − old difference), as a ratio, with its 95 %
/// interval from the Mann–Whitney distribution; on the histograms' 2 %
/// buckets, so to that resolution.
pub fn hodges_lehmann(new: &Latencies, old: &Latencies) -> Option<(f64, f64, f64)> {
    let (mut bn, mut bo) = (new.buckets(), old.buckets());
    let (nn, no) = (new.total() as f64, old.total() as f64);
    if bn.is_empty() || bo.is_empty() {
        return None;
    }
    // Wide spreads on both sides: merge neighbouring buckets so the pairs
    // stay a few hundred thousand (the control thread sorts them each look).
    while bn.len() * bo.len() > 250_000 {
        bn = coarser(&bn);
        bo = coarser(&bo);
    }
    let mut diffs: Vec<(f64, f64)> = Vec::with_capacity(bn.len() * bo.len());
    for (xn, cn) in &bn {
        for (xo, co) in &bo {
            diffs.push((xn - xo, (*cn as f64) * (*co as f64)));
        }
    }
    diffs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let pairs = nn * no;
    let half_width = Z95 * (nn * no * (nn + no + 1.0) / 12.0).sqrt();
    let at = |rank: f64| -> f64 {
        let mut seen = 0.0;
        for (d, w) in &diffs {
            seen += w;
            if seen >= rank {
                return *d;
            }
        }
        diffs.last().map_or(0.0, |d| d.0)
    };
    let mid = at(pairs / 2.0);
    let low = at((pairs / 2.0 - half_width).max(1.0));
    let high = at((pairs / 2.0 + half_width).min(pairs));
    Some((mid.exp(), low.exp(), high.exp()))
}

/// Pairs of neighbouring buckets as one, at their count-weighted middle.
fn coarser(b: &[(f64, u64)]) -> Vec<(f64, u64)> {
    b.chunks(2)
        .map(|pair| {
            let count: u64 = pair.iter().map(|(_, c)| c).sum();
            let mid = pair.iter().map(|(x, c)| x * *c as f64).sum::<f64>() / count as f64;
            (mid, count)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fisher_matches_the_textbook_table() {
        // The lady tasting tea: 3 of 4 right in each of 4/4, one-sided p = 17/70.
        let p = fisher_greater(3, 4, 1, 4);
        assert!((p - 17.0 / 70.0).abs() < 1e-9, "{p}");
        assert_eq!(fisher_greater(0, 10, 0, 10), 1.0);
        // 5 errors of 100 on new, none of 1000 on old: far beyond chance.
        assert!(fisher_greater(5, 100, 0, 1000) < 1e-4);
    }

    #[test]
    fn wilson_and_newcombe_bracket_the_estimate() {
        let (lo, hi) = wilson(0, 20);
        assert_eq!(lo, 0.0);
        assert!(hi > 0.1 && hi < 0.2, "{hi}");
        let (d, lo, hi) = newcombe(5, 100, 1, 100);
        assert!(
            (d - 0.04).abs() < 1e-12 && lo < d && d < hi && lo < 0.0,
            "{d} {lo} {hi}"
        );
    }

    #[test]
    fn hodges_lehmann_finds_a_30_percent_slowdown() {
        let (mut n, mut o) = (Latencies::default(), Latencies::default());
        for i in 0..400 {
            let base = 0.010 * (1.0 + (i % 20) as f64 / 40.0);
            o.record(base);
            n.record(base * 1.3);
        }
        let (v, lo, hi) = hodges_lehmann(&n, &o).unwrap();
        assert!((v - 1.3).abs() < 0.05, "{v}");
        assert!(lo <= v && v <= hi && lo > 1.15 && hi < 1.45, "{lo} {v} {hi}");
    }
}
