//! Everything lt renders from figures it has already computed: the Markdown of reports,
//! comparisons and calibrations, chart data and SVG, and HdrHistogram's `.hgrm` text.
//! Nothing here measures, judges or touches a file.

pub mod calibration;
pub mod charts;
pub mod comparison;
pub mod hgrm;
pub mod issues;
pub mod report;
pub mod svg;

/// A report figure as the JSON has it: shortest form that reads back to the same value.
pub fn num(x: f64) -> String {
    format!("{x}")
}

/// Escapes what would break a table cell or inline text.
pub fn cell(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace('`', "\\`")
        .replace(['\n', '\r'], " ")
}
