//! HdrHistogram percentile distribution text (`.hgrm`).
//!
//! The format is the one Java's `AbstractHistogram.outputPercentileDistribution` prints, which
//! HdrHistogram's `plotFiles.html` and the online plotter read. Mirroring it byte for byte lets
//! anyone drop an lt histogram next to one from wrk2, Gatling or a JVM service and compare.

use std::io::{self, Write};

use hdrhistogram::Histogram;

/// Java and C both take the decimal count of the value column from the histogram's
/// significant digits, so a 3-digit histogram prints 3 decimals: at a µs→ms scale that is
/// exactly the recorded resolution.
fn value_decimals(h: &Histogram<u64>) -> usize {
    usize::from(h.sigfig())
}

/// The crate's quantile iterator multiplies `ticks_per_half` by up to 2^54 in `u64` and panics
/// on overflow; 512 keeps that product in range, and nobody reads more than a few dozen lines
/// per halving.
const MAX_TICKS_PER_HALF: u32 = 512;

/// Writes `h` as an `.hgrm` percentile distribution, values divided by `value_scale`
/// (a µs histogram with scale 1000.0 prints ms).
///
/// `ticks_per_half` is the number of lines per halving of the distance to 100% (Java's
/// `percentileTicksPerHalfDistance`; 5 is its default). It is clamped to 1..=512.
///
/// An empty histogram writes the header and a footer of zeros, as Java does.
/// Fails with `InvalidInput` when `value_scale` is not a positive finite number, since every
/// printed value would then be NaN or infinite.
pub fn write_percentiles(
    h: &Histogram<u64>,
    value_scale: f64,
    ticks_per_half: u32,
    out: &mut impl Write,
) -> io::Result<()> {
    if !(value_scale.is_finite() && value_scale > 0.0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("hgrm value scale must be a positive number, got {value_scale}"),
        ));
    }
    write!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    )?;
    if !h.is_empty() {
        write_lines(h, value_scale, ticks_per_half, out)?;
    }
    write_footer(h, value_scale, out)
}

fn write_lines(
    h: &Histogram<u64>,
    value_scale: f64,
    ticks_per_half: u32,
    out: &mut impl Write,
) -> io::Result<()> {
    let decimals = value_decimals(h);
    let ticks = ticks_per_half.clamp(1, MAX_TICKS_PER_HALF);
    let mut total_count: u64 = 0;
    for v in h.iter_quantiles(ticks) {
        total_count = total_count.saturating_add(v.count_since_last_iteration());
        let value = v.value_iterated_to() as f64 / value_scale;
        let quantile = v.quantile_iterated_to();
        // Java behaviour: the final 100% line has no 1/(1-Percentile) column, because that
        // column would be infinite there. (C prints "inf"; plotters skip the line either way.)
        if quantile < 1.0 {
            writeln!(
                out,
                "{value:12.decimals$} {quantile:2.12} {total_count:10} {:14.2}",
                1.0 / (1.0 - quantile)
            )?;
        } else {
            writeln!(out, "{value:12.decimals$} {quantile:2.12} {total_count:10}")?;
        }
    }
    Ok(())
}

fn write_footer(h: &Histogram<u64>, value_scale: f64, out: &mut impl Write) -> io::Result<()> {
    let d = value_decimals(h);
    let mean = h.mean() / value_scale;
    let stdev = h.stdev() / value_scale;
    // `max()` is 0 for an empty histogram, which is what Java prints too.
    let max = h.max() as f64 / value_scale;
    writeln!(
        out,
        "#[Mean    = {mean:12.d$}, StdDeviation   = {stdev:12.d$}]"
    )?;
    writeln!(
        out,
        "#[Max     = {max:12.d$}, Total count    = {:12}]",
        h.len()
    )?;
    writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        sub_bucket_count(h)
    )
}

/// The crate keeps this private; it is the power of two that gives unit resolution up to
/// 2·10^sigfig, the same rule Java's `numberOfSubbuckets` uses.
fn sub_bucket_count(h: &Histogram<u64>) -> u64 {
    (2 * 10u64.pow(u32::from(h.sigfig()))).next_power_of_two()
}

/// The overall response, service and schedule-lag distributions of `tally` in this format
/// (ms, 5 lines per halving), each with the name its file ends in.
pub fn overall(tally: &crate::analyze::tally::Tally) -> io::Result<Vec<(&'static str, String)>> {
    let overall = tally.overall();
    let mut files = Vec::new();
    for (what, h) in [
        ("response", &overall.response),
        ("service", &overall.service),
        ("schedule-lag", &overall.lag),
    ] {
        let mut text = Vec::new();
        write_percentiles(h, 1_000.0, 5, &mut text)?;
        let text =
            String::from_utf8(text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        files.push((what, text));
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "       Value     Percentile TotalCount 1/(1-Percentile)\n\n";

    fn one_to_thousand_us() -> Histogram<u64> {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        for v in 1..=1000 {
            h.record(v).unwrap();
        }
        h
    }

    fn render(h: &Histogram<u64>, scale: f64, ticks: u32) -> String {
        let mut buf = Vec::new();
        write_percentiles(h, scale, ticks, &mut buf).unwrap();
        String::from_utf8(buf).unwrap()
    }

    /// Data lines: (value, percentile, total count, 1/(1-p) if present).
    fn parse_lines(text: &str) -> Vec<(f64, f64, u64, Option<f64>)> {
        text.lines()
            .skip(2)
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                assert!(cols.len() == 3 || cols.len() == 4, "bad line {l:?}");
                (
                    cols[0].parse().unwrap(),
                    cols[1].parse().unwrap(),
                    cols[2].parse().unwrap(),
                    cols.get(3).map(|c| c.parse().unwrap()),
                )
            })
            .collect()
    }

    fn footer_field(text: &str, name: &str) -> String {
        let at = text.find(name).unwrap() + name.len();
        let rest = text[at..].trim_start_matches([' ', '=']);
        rest.split([',', ']']).next().unwrap().trim().to_string()
    }

    #[test]
    fn header_and_first_line_match_java_layout() {
        let text = render(&one_to_thousand_us(), 1000.0, 5);
        assert!(text.starts_with(HEADER), "{text}");
        let first = text.lines().nth(2).unwrap();
        assert_eq!(
            first,
            "       0.001 0.000000000000          1           1.00"
        );
    }

    #[test]
    fn median_line_is_half_a_millisecond() {
        let text = render(&one_to_thousand_us(), 1000.0, 5);
        let lines = parse_lines(&text);
        let median = lines
            .iter()
            .min_by(|a, b| (a.1 - 0.5).abs().total_cmp(&(b.1 - 0.5).abs()))
            .unwrap();
        assert_eq!(median.1, 0.5);
        assert!((median.0 - 0.500).abs() <= 0.001, "{median:?}");
        assert_eq!(median.2, 500);
        assert_eq!(median.3, Some(2.0));
    }

    #[test]
    fn last_line_is_100_percent_without_inverse_column() {
        let text = render(&one_to_thousand_us(), 1000.0, 5);
        let last = text.lines().rfind(|l| !l.starts_with('#')).unwrap();
        assert_eq!(last, "       1.000 1.000000000000       1000");
    }

    #[test]
    fn footer_reports_count_max_mean_and_layout() {
        let h = one_to_thousand_us();
        let text = render(&h, 1000.0, 5);
        assert_eq!(footer_field(&text, "Total count"), "1000");
        assert_eq!(footer_field(&text, "Max"), "1.000");
        let mean: f64 = footer_field(&text, "Mean").parse().unwrap();
        assert!((mean - 0.5005).abs() <= 0.001, "{mean}");
        let sub: u64 = footer_field(&text, "SubBuckets").parse().unwrap();
        assert_eq!(sub, 2048);
        let buckets: u64 = footer_field(&text, "Buckets").parse().unwrap();
        // The crate's counts array holds (buckets + 1) half-buckets; this ties our derived
        // sub-bucket count to the crate's real layout.
        assert_eq!((buckets + 1) * sub / 2, h.distinct_values() as u64);
    }

    #[test]
    fn output_parses_back_monotonic() {
        let text = render(&one_to_thousand_us(), 1000.0, 5);
        let lines = parse_lines(&text);
        assert!(lines.len() > 20, "{}", lines.len());
        for pair in lines.windows(2) {
            assert!(pair[0].0 <= pair[1].0, "values {pair:?}");
            assert!(pair[0].1 <= pair[1].1, "percentiles {pair:?}");
            assert!(pair[0].2 <= pair[1].2, "counts {pair:?}");
        }
        let (only_last, rest) = lines.split_last().unwrap();
        assert!(rest.iter().all(|l| l.3.is_some()));
        assert_eq!(only_last.3, None);
        assert_eq!(only_last.2, 1000);
    }

    #[test]
    fn more_ticks_give_more_lines() {
        let h = one_to_thousand_us();
        let coarse = parse_lines(&render(&h, 1000.0, 1)).len();
        let fine = parse_lines(&render(&h, 1000.0, 10)).len();
        assert!(fine > coarse, "{fine} <= {coarse}");
    }

    #[test]
    fn empty_histogram_writes_header_and_zero_footer() {
        let h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        let text = render(&h, 1000.0, 5);
        let buckets = h.buckets();
        let expected = format!(
            "{HEADER}\
             #[Mean    =        0.000, StdDeviation   =        0.000]\n\
             #[Max     =        0.000, Total count    =            0]\n\
             #[Buckets = {buckets:12}, SubBuckets     =         2048]\n"
        );
        assert_eq!(text, expected);
    }

    #[test]
    fn zero_ticks_is_clamped_not_a_panic() {
        let text = render(&one_to_thousand_us(), 1000.0, 0);
        assert_eq!(text, render(&one_to_thousand_us(), 1000.0, 1));
    }

    #[test]
    fn single_value_histogram_has_first_and_last_line() {
        let mut h = Histogram::<u64>::new(3).unwrap();
        h.record(42).unwrap();
        let lines = parse_lines(&render(&h, 1.0, 5));
        assert_eq!(lines.first().map(|l| (l.1, l.2)), Some((0.0, 1)));
        assert_eq!(lines.last().map(|l| (l.0, l.1, l.2)), Some((42.0, 1.0, 1)));
    }

    #[test]
    fn invalid_scale_is_an_input_error() {
        let h = one_to_thousand_us();
        for scale in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let err = write_percentiles(&h, scale, 5, &mut Vec::new()).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "scale {scale}");
        }
    }
}
