//! The histograms lt keeps, with their bounds in one place: latencies in microseconds from
//! 1 µs to one hour, and counts (deliveries per event) up to 2^40. Replay's progress line,
//! the fan-out ledger and every figure of analyze use these, so a latency is bucketed alike
//! wherever it is counted.

use hdrhistogram::Histogram;

/// The longest latency a histogram holds, in microseconds (one hour): longer is clamped.
pub const LATENCY_MAX_US: u64 = 3_600_000_000;
/// The largest count a counting histogram holds.
pub const COUNT_MAX: u64 = 1 << 40;

/// Latencies in microseconds, 1 µs to [`LATENCY_MAX_US`], at 3 significant digits.
pub fn latency() -> Histogram<u64> {
    // Constant bounds: `new_with_bounds` fails only on bounds that are not.
    Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).expect("constant histogram bounds are valid")
}

/// Latencies of one window (a second of a timeline): two significant digits and 32-bit
/// counts, enough for p50/p99 per window at an eighth of the memory of [`latency`].
pub fn latency_window() -> Histogram<u32> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, 2).expect("constant histogram bounds are valid")
}

/// Counts, 1 to [`COUNT_MAX`], at 3 significant digits.
pub fn counts() -> Histogram<u64> {
    Histogram::new_with_bounds(1, COUNT_MAX, 3).expect("constant histogram bounds are valid")
}

/// Records `ns` as microseconds, clamped into [`latency`]'s range.
pub fn record_ns(h: &mut Histogram<u64>, ns: u64) {
    // Saturating: the value is in range, so this cannot fail.
    h.saturating_record(latency_us(ns));
}

/// `ns` as the microseconds a latency histogram holds (clamped into its range).
pub fn latency_us(ns: u64) -> u64 {
    (ns / 1_000).clamp(1, LATENCY_MAX_US)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_are_clamped_into_range() {
        let mut h = latency();
        record_ns(&mut h, 0);
        record_ns(&mut h, 2 * LATENCY_MAX_US * 1_000);
        assert_eq!(h.len(), 2);
        assert_eq!(h.min(), 1);
        assert!(h.max() >= LATENCY_MAX_US);
        assert_eq!(latency_us(1_500_000), 1_500);
    }
}
