//! Counts and sizes as people read them (`1,234,567`, `1.5 KiB`), for what lt prints, and
//! durations as people write them, for every flag and check that takes one.

use std::time::Duration;

/// The units a duration takes, for `--help` and errors.
pub const DURATION_UNITS: &str =
    "a number with a unit: us, ms, s, m (minutes), h, d, or several (1h 30m); a bare number is seconds";

/// A duration as written: `600` (seconds), `90s`, `500ms`, `10m`, `1.5h`, `1h 30m`. The
/// units are humantime's (`s`, `sec`, `min`, `m`, `h`, `hours`, `ms`, `us`, `d`, …); a
/// single unit may carry a fraction (`1.5h`, `0.05s`), which humantime alone refuses.
pub fn duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    let bad = || format!("{s:?} is not a duration: expected {DURATION_UNITS}");
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|_| bad());
    }
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(d);
    }
    // One number with a fraction and one unit: the unit's length from humantime, scaled.
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(bad)?;
    let (number, unit) = s.split_at(split);
    let number: f64 = number.parse().map_err(|_| bad())?;
    let one = humantime::parse_duration(&format!("1{}", unit.trim())).map_err(|_| bad())?;
    Duration::try_from_secs_f64(one.as_secs_f64() * number).map_err(|_| bad())
}

/// `1234567` → `1,234,567`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes with a binary unit.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn durations_as_people_write_them() {
        let d = |s: &str| super::duration(s).unwrap();
        assert_eq!(d("600"), Duration::from_secs(600));
        assert_eq!(d("90s"), Duration::from_secs(90));
        assert_eq!(d("500ms"), Duration::from_millis(500));
        assert_eq!(d("10m"), Duration::from_secs(600));
        assert_eq!(d("1h"), Duration::from_secs(3600));
        assert_eq!(d("1h 30m"), Duration::from_secs(5400));
        assert_eq!(d("1.5h"), Duration::from_secs(5400));
        assert_eq!(d("0.05s"), Duration::from_millis(50));
        assert_eq!(d("250us"), Duration::from_micros(250));
        assert_eq!(d(" 2 min "), Duration::from_secs(120));
        for bad in ["", "fast", "10 parsecs", "-5s", "1.2.3s", "NaN"] {
            let e = super::duration(bad).unwrap_err();
            assert!(
                e.contains("not a duration") && e.contains("us, ms, s"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn formats() {
        assert_eq!(super::count(0), "0");
        assert_eq!(super::count(1234567), "1,234,567");
        assert_eq!(super::bytes(512), "512 B");
        assert_eq!(super::bytes(1536), "1.5 KiB");
    }
}
