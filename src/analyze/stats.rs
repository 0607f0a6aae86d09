//! Small statistics the reports need: percentiles of a histogram, summaries of sampled
//! series and a trend slope (the comparison's tests are in `verdict`).

use hdrhistogram::Histogram;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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

/// A figure for a sentence: whole above 100, one decimal above 10, two below.
pub fn figure(x: f64) -> String {
    if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
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

/// Percentiles of a histogram. Latencies in milliseconds; for `events_returned`, counts.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Percentiles {
    /// Records the percentiles cover.
    pub count: u64,
    /// Of `count`, records never answered within the timeout, counted at the timeout (their
    /// real time is at least that, so every percentile above them is a lower bound too).
    pub at_timeout: u64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
    pub mean: f64,
}

pub fn percentiles_ms(h: &Histogram<u64>) -> Option<Percentiles> {
    percentiles_scaled(h, 1_000.0)
}

pub fn percentiles_scaled(h: &Histogram<u64>, scale: f64) -> Option<Percentiles> {
    if h.is_empty() {
        return None;
    }
    let q = |q: f64| round3(h.value_at_quantile(q) as f64 / scale);
    Some(Percentiles {
        count: h.len(),
        at_timeout: 0,
        p50: q(0.5),
        p90: q(0.9),
        p95: q(0.95),
        p99: q(0.99),
        p99_9: q(0.999),
        max: round3(h.max() as f64 / scale),
        mean: round3(h.mean() / scale),
    })
}
