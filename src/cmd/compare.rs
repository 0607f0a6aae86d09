//! `lt compare A… -- B…`: two sets of runs of one trace, metric by metric.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::analyze::compare::{self, Comparison, Side};
use crate::analyze::thresholds::Thresholds;
use crate::analyze::{self, output};
use crate::cli::CompareArgs;

pub fn run(args: CompareArgs) -> anyhow::Result<ExitCode> {
    // Everything after `--` is B's files, so an option there would be read as a file name.
    if let Some(flag) = args.b.iter().find(|p| p.to_string_lossy().starts_with('-')) {
        return Err(anyhow::anyhow!(
            "{}: options go before `--` (everything after it is B's results files)",
            flag.display()
        ));
    }
    let a = Side::load(&args.a_name, &args.a)?;
    let b = Side::load(&args.b_name, &args.b)?;
    let dir = args
        .out_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(output::DEFAULT_DIR));
    let thresholds = Thresholds::new(args.threshold.clone());
    let (names, charts) = analyze::comparison_files(&a, &b, &dir, "compare-report")?;
    let c = compare::compare(&a, &b, &thresholds, Vec::new(), charts)?;
    analyze::write_comparison(&names, &c)?;
    print_summary(&c);
    outln!("report: {}", names.markdown.display());
    Ok(ExitCode::SUCCESS)
}

pub fn print_summary(c: &Comparison) {
    outln!("overall: {} — {}", c.overall, c.overall_line);
    // Warnings qualify the verdict, so they come before the table, as in the report.
    for w in &c.warnings {
        outln!("warning: {w}");
    }
    for m in &c.metrics {
        outln!(
            "{:<28} A {:>12}  B {:>12}  {:>10}  {}",
            m.label,
            m.a,
            m.b,
            m.delta_pct
                .map_or_else(|| "–".to_owned(), |p| format!("{p:+}%")),
            m.verdict.as_str()
        );
    }
    if let Some(n) = c.suggested_runs.filter(|n| *n > c.a.runs.min(c.b.runs)) {
        outln!(
            "runs: at this noise, {n} runs per side would resolve a difference the size of each metric's threshold"
        );
    }
}
