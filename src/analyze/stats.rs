//! Small statistics the reports need: summaries of sampled series, a trend slope, and a
//! seeded bootstrap confidence interval for the difference of two means.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// Rounds to 3 decimals: the precision every report figure is given at, so the Markdown
/// and the JSON print the very same number.
pub fn round3(x: f64) -> f64 {
    if x.is_finite() {
        (x * 1000.0).round() / 1000.0
    } else {
        0.0
    }
}

pub fn mean(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() {
        None
    } else {
        Some(xs.iter().sum::<f64>() / xs.len() as f64)
    }
}

/// Sample standard deviation (n − 1); `None` below two values.
pub fn stddev(xs: &[f64]) -> Option<f64> {
    if xs.len() < 2 {
        return None;
    }
    let m = mean(xs)?;
    let var = xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (xs.len() - 1) as f64;
    Some(var.sqrt())
}

/// Nearest-rank percentile (`p` in 0..=100) of unsorted values.
pub fn percentile(xs: &[f64], p: f64) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let mut v: Vec<f64> = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    Some(v[rank.clamp(1, v.len()) - 1])
}

/// Least-squares slope of `y` over `x`; `None` when x does not vary.
pub fn slope(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    if sxx <= 0.0 {
        None
    } else {
        Some(sxy / sxx)
    }
}

/// Resamples for the bootstrap: enough for a stable 95% interval, cheap at a few runs.
const BOOTSTRAP_ROUNDS: usize = 10_000;

/// 95% percentile-bootstrap interval of `mean(b) − mean(a)`, resampling each side's runs
/// with replacement. Seeded, so a report is reproducible. `None` unless both sides have at
/// least two runs: one run says nothing about noise.
pub fn bootstrap_diff_ci(a: &[f64], b: &[f64], seed: u64) -> Option<(f64, f64)> {
    if a.len() < 2 || b.len() < 2 {
        return None;
    }
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut diffs = Vec::with_capacity(BOOTSTRAP_ROUNDS);
    let resample_mean = |xs: &[f64], rng: &mut ChaCha20Rng| {
        (0..xs.len())
            .map(|_| xs[rng.random_range(0..xs.len())])
            .sum::<f64>()
            / xs.len() as f64
    };
    for _ in 0..BOOTSTRAP_ROUNDS {
        let d = resample_mean(b, &mut rng) - resample_mean(a, &mut rng);
        diffs.push(d);
    }
    Some((percentile(&diffs, 2.5)?, percentile(&diffs, 97.5)?))
}

/// Distribution summary of a sampled series.
pub struct Summary {
    pub avg: f64,
    pub p95: f64,
    pub max: f64,
}

pub fn summarize(xs: &[f64]) -> Option<Summary> {
    Some(Summary {
        avg: mean(xs)?,
        p95: percentile(xs, 95.0)?,
        max: xs.iter().copied().fold(f64::MIN, f64::max),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_is_nearest_rank() {
        let xs: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&xs, 50.0), Some(50.0));
        assert_eq!(percentile(&xs, 95.0), Some(95.0));
        assert_eq!(percentile(&xs, 100.0), Some(100.0));
        assert_eq!(percentile(&xs, 0.0), Some(1.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn slope_of_a_line() {
        let pts: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 3.0 * i as f64 + 7.0)).collect();
        let s = slope(&pts).unwrap();
        assert!((s - 3.0).abs() < 1e-9, "{s}");
        assert_eq!(slope(&[(1.0, 2.0), (1.0, 5.0)]), None);
    }

    #[test]
    fn bootstrap_separates_distinct_sides_and_not_equal_ones() {
        let a = [10.0, 10.5, 9.8, 10.2];
        let b = [20.0, 20.4, 19.7, 20.1];
        let (lo, hi) = bootstrap_diff_ci(&a, &b, 1).unwrap();
        assert!(lo > 9.0 && hi < 11.0, "{lo}..{hi}");
        let (lo, hi) = bootstrap_diff_ci(&a, &a, 1).unwrap();
        assert!(lo <= 0.0 && hi >= 0.0, "{lo}..{hi}");
        assert_eq!(bootstrap_diff_ci(&a[..1], &b, 1), None);
        // Seeded: the same answer twice.
        assert_eq!(bootstrap_diff_ci(&a, &b, 7), bootstrap_diff_ci(&a, &b, 7));
    }

    #[test]
    fn stddev_needs_two_values() {
        assert_eq!(stddev(&[1.0]), None);
        let s = stddev(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]).unwrap();
        assert!((s - 2.138).abs() < 1e-3, "{s}");
    }

    #[test]
    fn round3_keeps_three_decimals_and_maps_non_finite_to_zero() {
        assert_eq!(round3(1.23456), 1.235);
        assert_eq!(round3(f64::NAN), 0.0);
    }
}
