//! The pacer: when each record is meant to go. Pure, so it is tested with plain tables.
//!
//! `intended = t0 + offset / speed`, always from the one anchor `t0`: never "sleep the gap
//! since the previous record", which lets drift accumulate.

pub use crate::capture::options::Speed;

impl Speed {
    /// Nanoseconds after t0 at which a record with `offset_us` is due.
    pub fn intended_ns(self, offset_us: u64) -> u64 {
        match self {
            Speed::Scaled(f) => (offset_us as f64 * 1000.0 / f).round() as u64,
            Speed::Max => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intended_times_scale_from_one_anchor() {
        // (speed, offset_us, intended_ns)
        let rows = [
            (Speed::Scaled(1.0), 0, 0),                     // the first record at t0
            (Speed::Scaled(1.0), 1_500_000, 1_500_000_000), // 1.5 s at 1x
            (Speed::Scaled(2.0), 1_500_000, 750_000_000),   // twice as fast
            (Speed::Scaled(0.5), 1_000, 2_000_000),         // half speed
            (Speed::Scaled(10.0), 600_000_000, 60_000_000_000), // a 10-minute trace in 1 minute
            (Speed::Max, 600_000_000, 0),                   // all due at once
        ];
        for (speed, offset, want) in rows {
            assert_eq!(speed.intended_ns(offset), want, "{speed} {offset}");
        }
    }
}
