//! Evidence that stays honest however often it is looked at.
//!
//! The guard looks every `interval` for the whole of a rollout. A test read
//! at a fixed confidence on every look fails, sooner or later, on identical
//! backends: twenty looks at 98 % each give a one-in-three chance of at
//! least one false failure. Two things keep the false-alarm rate the SRE
//! sets (`guard.false_alarm_rate`) true over a whole rollout:
//!
//! - **Within one test**, a one-sided mixture sequential probability ratio
//!   test (mSPRT; Johari, Pekelis, Walsh, "Always Valid Inference"): the
//!   likelihood ratio Λ of "new is worse than the margin" against "it is at
//!   the margin", mixed over how much worse. Under the null Λ is a
//!   non-negative supermartingale, so the chance that it *ever* reaches
//!   1/α, at any number of looks, is at most α (Ville's inequality).
//! - **Across tests** (each step is one test: its traffic split differs, so
//!   evidence is not carried over), the budget is spent as a convergent
//!   series: the k-th test of a rollout gets α·6/(π²k²), which sums to α
//!   however many steps, pauses or hand raises the rollout takes. Each test's
//!   share is split evenly between the checks (Bonferroni).
//!
//! The estimates fed in are asymptotically normal (differences of
//! proportions); their variances are plug-in estimates, so the guarantee is
//! asymptotic. `min_requests` keeps the smallest samples out, and the
//! simulated rollouts in `checks/tests.rs` hold the rate on A/A streams.

use super::stats::normal_cdf;

/// One look at one check: how strong the evidence is that new is worse than
/// the margin allows, and how strong it must be to fail.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Evidence {
    /// ln Λ: 0 is no evidence either way; negative leans to "not worse".
    pub log_lr: f64,
    /// ln(1/α) of this check in this test: fail at or above it.
    pub needed: f64,
}

impl Evidence {
    pub fn decided(&self) -> bool {
        self.log_lr >= self.needed
    }

    /// Λ, capped for display (JSON has no infinity).
    pub fn likelihood_ratio(&self) -> f64 {
        self.log_lr.clamp(-700.0, 700.0).exp()
    }

    /// 1/α: the likelihood ratio at which the check fails.
    pub fn threshold(&self) -> f64 {
        self.needed.min(700.0).exp()
    }
}

/// ln Λ of a one-sided normal-mixture SPRT. `delta` estimates the effect
/// (larger = new worse), `variance` is its variance, `margin` the effect
/// tolerated, `tau` the scale of the excess over the margin that matters
/// (the mixing distribution is half-normal with that scale).
///
/// Λ = 2·√(V/(V+τ²)) · exp(τ²x²/(2V(V+τ²))) · Φ(xτ/√(V(V+τ²))), x = δ − margin.
pub fn log_lr(delta: f64, variance: f64, margin: f64, tau: f64) -> f64 {
    let (v, t2) = (variance.max(1e-300), tau * tau);
    let x = delta - margin;
    let z = x * tau / (v * (v + t2)).sqrt();
    // For very negative z, Φ underflows: use its tail expansion instead
    // (ln Φ(z) ≈ −z²/2 − ln(−z√(2π))), which cancels the exponential term.
    let ln_phi = if z > -30.0 {
        normal_cdf(z).max(f64::MIN_POSITIVE).ln()
    } else {
        -z * z / 2.0 - (-z * (2.0 * std::f64::consts::PI).sqrt()).ln()
    };
    let lr = std::f64::consts::LN_2 + 0.5 * (v / (v + t2)).ln() + t2 * x * x / (2.0 * v * (v + t2)) + ln_phi;
    lr.max(-700.0)
}

/// α of one check in the `k`-th test (1-based) of a rollout whose whole
/// false-alarm budget is `rate`, shared by `checks` checks.
pub fn alpha(rate: f64, k: u32, checks: u32) -> f64 {
    let k = f64::from(k.max(1));
    rate * 6.0 / (std::f64::consts::PI * std::f64::consts::PI * k * k) / f64::from(checks.max(1))
}

/// The evidence of one look, with `alpha` from [`alpha`].
pub fn look(delta: f64, variance: f64, margin: f64, tau: f64, alpha: f64) -> Evidence {
    Evidence {
        log_lr: log_lr(delta, variance, margin, tau),
        needed: (1.0 / alpha).ln(),
    }
}

/// A proportion smoothed towards ½ by one event and one non-event
/// (Agresti–Caffo), so that its variance is not zero with few events.
pub fn smoothed(events: u64, n: u64) -> f64 {
    (events as f64 + 1.0) / (n as f64 + 2.0)
}

/// The variance of a proportion over `n` with smoothed rate `p`.
pub fn proportion_variance(p: f64, n: u64) -> f64 {
    p * (1.0 - p) / (n as f64 + 2.0)
}

/// New's rate of events minus old's, and the variance of that difference
/// (each rate smoothed for it, so that few events are not certainty).
pub fn difference_of_rates(new: (u64, u64), old: (u64, u64)) -> (f64, f64) {
    let ((en, nn), (eo, no)) = (new, old);
    let delta = en as f64 / nn as f64 - eo as f64 / no as f64;
    let variance = proportion_variance(smoothed(en, nn), nn) + proportion_variance(smoothed(eo, no), no);
    (delta, variance)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::simrng::Rng64;
    use rand::Rng;

    #[test]
    fn no_excess_means_no_evidence_for_it() {
        // At the margin exactly, Λ = 2·√(V/(V+τ²))·½ < 1.
        assert!(log_lr(0.01, 1e-4, 0.01, 0.02) < 0.0);
        // Far below the margin, Λ → 0 without overflow or NaN.
        let l = log_lr(-10.0, 1e-6, 0.0, 0.02);
        assert!(l.is_finite() && l < -5.0, "{l}");
        // Far above, it grows without bound.
        assert!(log_lr(0.2, 1e-5, 0.01, 0.02) > 100.0);
    }

    #[test]
    fn the_budget_of_a_rollout_sums_to_the_rate() {
        let total: f64 = (1..100_000).map(|k| alpha(0.01, k, 1)).sum();
        assert!(total < 0.01 && total > 0.00999, "{total}");
        assert!((alpha(0.03, 1, 3) - 0.01 * 6.0 / std::f64::consts::PI.powi(2)).abs() < 1e-12);
    }

    /// A difference of two proportions, looked at after every 20 requests
    /// for 4,000: with both sides at the margin's boundary the test must
    /// fail no more often than α, however many looks.
    #[test]
    fn peeking_after_every_batch_keeps_alpha() {
        let mut rng = Rng64::seed_from_u64(11);
        let (a, runs) = (0.05, 2_000);
        let mut failures = 0;
        for _ in 0..runs {
            let (mut n_old, mut e_old, mut n_new, mut e_new) = (0u64, 0u64, 0u64, 0u64);
            for _ in 0..200 {
                for _ in 0..20 {
                    if rng.gen_bool(0.5) {
                        n_new += 1;
                        e_new += u64::from(rng.gen_bool(0.05));
                    } else {
                        n_old += 1;
                        e_old += u64::from(rng.gen_bool(0.05));
                    }
                }
                let (d, v) = difference_of_rates((e_new, n_new), (e_old, n_old));
                if look(d, v, 0.0, 0.02, a).decided() {
                    failures += 1;
                    break;
                }
            }
        }
        // Binomial(2000, 0.05): mean 100, sd 9.7; 130 is three sd above.
        assert!(failures <= 130, "{failures} of {runs} runs failed at α = {a}");
        // A fixed 95 % test read 200 times would fail in most runs.
    }

    #[test]
    fn a_real_excess_is_found() {
        let mut rng = Rng64::seed_from_u64(12);
        let (mut n_old, mut e_old, mut n_new, mut e_new) = (0u64, 0u64, 0u64, 0u64);
        let mut at = None;
        for i in 0..20_000u64 {
            if rng.gen_bool(0.5) {
                n_new += 1;
                e_new += u64::from(rng.gen_bool(0.05));
            } else {
                n_old += 1;
                e_old += u64::from(rng.gen_bool(0.001));
            }
            if i % 20 == 19 && n_new > 20 && n_old > 20 {
                let (d, v) = difference_of_rates((e_new, n_new), (e_old, n_old));
                if look(d, v, 0.01, 0.02, 0.001).decided() {
                    at = Some(i);
                    break;
                }
            }
        }
        let at = at.expect("5 % errors against 0.1 % found");
        assert!(at < 3_000, "found after {at} requests");
    }
}
