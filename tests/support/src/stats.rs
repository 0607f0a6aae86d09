//! The summaries benches and timing tests report their rounds by.

/// Index of the median of `v` (the lower middle for an even count), so a figure can be
/// reported together with the other figures of the same round.
pub fn median_index(v: &[f64]) -> usize {
    assert!(!v.is_empty(), "the median of no rounds");
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    order[(v.len() - 1) / 2]
}

/// The median of `v` (the lower middle for an even count).
pub fn median(v: &[f64]) -> f64 {
    v[median_index(v)]
}

/// `min–max` of `v` with `digits` decimals.
pub fn range(v: &[f64], digits: usize) -> String {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{min:.digits$}–{max:.digits$}")
}
