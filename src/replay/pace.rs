//! The pacer: when each record is meant to go. Pure, so it is tested with plain tables.
//!
//! `intended = t0 + offset / speed`, always from the one anchor `t0`: never "sleep the gap
//! since the previous record", which lets drift accumulate.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Speed {
    /// Offsets divided by this factor (2.0 = twice as fast as recorded).
    Scaled(f64),
    /// Every record is due at once: as fast as the in-flight caps allow.
    Max,
}

impl Speed {
    /// Nanoseconds after t0 at which a record with `offset_us` is due.
    pub fn intended_ns(self, offset_us: u64) -> u64 {
        match self {
            Speed::Scaled(f) => (offset_us as f64 * 1000.0 / f).round() as u64,
            Speed::Max => 0,
        }
    }
}

impl FromStr for Speed {
    type Err = String;

    /// `2x`, `0.5x`, `200%`, `1`, `max`.
    fn from_str(s: &str) -> Result<Speed, String> {
        const HELP: &str = "expected a speed like 2x, 0.5x, 200% or max";
        let s = s.trim().to_ascii_lowercase();
        if s == "max" {
            return Ok(Speed::Max);
        }
        let (num, scale) = if let Some(n) = s.strip_suffix('x') {
            (n, 1.0)
        } else if let Some(n) = s.strip_suffix('%') {
            (n, 0.01)
        } else {
            (s.as_str(), 1.0)
        };
        match num.trim().parse::<f64>() {
            Ok(v) if v.is_finite() && v > 0.0 && v * scale <= 1e6 => Ok(Speed::Scaled(v * scale)),
            _ => Err(HELP.into()),
        }
    }
}

impl fmt::Display for Speed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Speed::Scaled(v) => write!(f, "{v}x"),
            Speed::Max => write!(f, "max"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speeds_parse() {
        // (input, expected)
        let ok = [
            ("2x", Speed::Scaled(2.0)),     // twice as fast
            ("0.5x", Speed::Scaled(0.5)),   // half speed
            ("200%", Speed::Scaled(2.0)),   // percent form
            ("1", Speed::Scaled(1.0)),      // bare factor
            ("MAX", Speed::Max),            // case-insensitive
            (" 10x ", Speed::Scaled(10.0)), // whitespace
        ];
        for (s, want) in ok {
            assert_eq!(s.parse::<Speed>(), Ok(want), "{s}");
        }
        for bad in ["0x", "-2x", "x", "fast", "nanx", "infx", "2y", ""] {
            assert!(bad.parse::<Speed>().is_err(), "{bad}");
        }
    }

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
