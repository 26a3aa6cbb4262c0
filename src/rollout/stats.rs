//! Statistics for the guard: the Mann–Whitney U test (one-sided: is `new`
//! slower than `old`?), as Kayenta's judge uses, and quantiles.

/// Standard normal CDF, via erfc (W. J. Cody's rational approximation as
/// popularised by Numerical Recipes' `erfcc`, |error| < 1.2e-7).
pub fn normal_cdf(z: f64) -> f64 {
    0.5 * erfc(-z / std::f64::consts::SQRT_2)
}

fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// Result of a one-sided Mann–Whitney U test.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MannWhitney {
    /// U statistic of the second sample.
    pub u: f64,
    pub z: f64,
    /// P(a result this extreme | the two samples come from one distribution).
    pub p_value: f64,
}

/// Tests whether `b` tends to be larger than `a`. Ties get mid-ranks and the
/// variance their correction; the normal approximation is used (both
/// samples are at least in the tens when the guard asks).
pub fn mann_whitney_greater(a: &[f64], b: &[f64]) -> Option<MannWhitney> {
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let mut all: Vec<(f64, bool)> = a
        .iter()
        .map(|v| (*v, false))
        .chain(b.iter().map(|v| (*v, true)))
        .collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    let n = all.len();
    let mut rank_sum_b = 0.0;
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i + 1;
        while j < n && all[j].0 == all[i].0 {
            j += 1;
        }
        let rank = (i + j + 1) as f64 / 2.0; // mid-rank of positions i+1..=j
        let t = (j - i) as f64;
        tie_term += t * t * t - t;
        rank_sum_b += rank * all[i..j].iter().filter(|(_, is_b)| *is_b).count() as f64;
        i = j;
    }
    let u = rank_sum_b - n2 * (n2 + 1.0) / 2.0;
    let mean = n1 * n2 / 2.0;
    let nn = n1 + n2;
    let var = n1 * n2 / 12.0 * ((nn + 1.0) - tie_term / (nn * (nn - 1.0)));
    if var <= 0.0 {
        return Some(MannWhitney {
            u,
            z: 0.0,
            p_value: 1.0,
        });
    }
    // Continuity correction towards the mean.
    let z = (u - mean - 0.5) / var.sqrt();
    Some(MannWhitney {
        u,
        z,
        p_value: 1.0 - normal_cdf(z),
    })
}

/// The q-quantile (nearest rank) of unsorted values.
pub fn quantile(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    Some(values[rank - 1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn normal_cdf_known_values() {
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_cdf(1.96) - 0.975).abs() < 1e-4);
        assert!((normal_cdf(-2.326) - 0.01).abs() < 1e-4);
    }

    #[test]
    fn textbook_example() {
        // Two small samples with a known U: a = {1,2,3}, b = {4,5,6} → U_b = 9.
        let r = mann_whitney_greater(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]).unwrap();
        assert_eq!(r.u, 9.0);
        assert!(r.p_value < 0.05);
        let r = mann_whitney_greater(&[4.0, 5.0, 6.0], &[1.0, 2.0, 3.0]).unwrap();
        assert_eq!(r.u, 0.0);
        assert!(r.p_value > 0.95);
    }

    #[test]
    fn same_distribution_is_rarely_significant() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut false_alarms = 0;
        for _ in 0..200 {
            let a: Vec<f64> = (0..300).map(|_| rng.gen_range(1.0..2.0)).collect();
            let b: Vec<f64> = (0..300).map(|_| rng.gen_range(1.0..2.0)).collect();
            if mann_whitney_greater(&a, &b).unwrap().p_value < 0.02 {
                false_alarms += 1;
            }
        }
        // Expected 2 % of 200 = 4; allow for chance.
        assert!(false_alarms <= 12, "{false_alarms} false alarms");
    }

    #[test]
    fn a_30_percent_slowdown_is_detected() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let a: Vec<f64> = (0..300).map(|_| rng.gen_range(1.0..2.0)).collect();
        let b: Vec<f64> = (0..300).map(|_| rng.gen_range(1.0..2.0) * 1.3).collect();
        assert!(mann_whitney_greater(&a, &b).unwrap().p_value < 0.001);
    }

    #[test]
    fn all_ties_is_not_significant() {
        let r = mann_whitney_greater(&[1.0; 10], &[1.0; 10]).unwrap();
        assert_eq!(r.p_value, 1.0);
    }

    #[test]
    fn quantiles() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&mut v, 0.5), Some(50.0));
        assert_eq!(quantile(&mut v, 0.99), Some(99.0));
        assert_eq!(quantile(&mut [], 0.5), None);
    }
}
