//! `lt compare A… -- B…`: two sets of runs of one trace, metric by metric.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::analyze::compare::{self, BuildRuns};
use crate::analyze::thresholds::Thresholds;
use crate::analyze::{self, output};
use crate::analyze::{gate, render};
use crate::capacity;
use crate::cli::CompareArgs;

pub fn run(args: CompareArgs) -> anyhow::Result<ExitCode> {
    // Everything after `--` is B's files, so an option there would be read as a file name.
    if let Some(flag) = args.b.iter().find(|p| p.to_string_lossy().starts_with('-')) {
        return Err(anyhow::anyhow!(
            "{}: options go before `--` (everything after it is B's results files)",
            flag.display()
        ));
    }
    let dir = args
        .out_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(output::DEFAULT_DIR));
    if args
        .a
        .iter()
        .chain(&args.b)
        .all(|p| capacity::compare::is_capacity_report(p))
    {
        return capacities(&args, &dir);
    }
    let a = BuildRuns::load(&args.a_name, &args.a)?;
    let b = BuildRuns::load(&args.b_name, &args.b)?;
    let thresholds = Thresholds::new(args.threshold.clone());
    let mut c = compare::compare(&a, &b, &thresholds, Vec::new())?;
    c.gate = args.fail_on.as_ref().map(|f| gate::apply(&c, f));
    let names = analyze::write_comparison(&a, &b, &mut c, &dir, "compare-report")?;
    out!("{}", render::comparison::summary(&c));
    outln!("report: {}", names.markdown.display());
    Ok(gate_code(&c))
}

/// Capacity reports of A's and B's searches (`lt capacity`, `lt ab --capacity`): their
/// capacities compared.
fn capacities(args: &CompareArgs, dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    let read = |paths: &[PathBuf]| -> anyhow::Result<Vec<_>> {
        paths
            .iter()
            .map(|p| Ok((p.display().to_string(), capacity::compare::read(p)?)))
            .collect()
    };
    let c =
        capacity::compare::compare(&args.a_name, &read(&args.a)?, &args.b_name, &read(&args.b)?);
    let (_, markdown) = capacity::compare::write(dir, &c)?;
    outln!("{}", c.sentence);
    outln!("report: {}", markdown.display());
    Ok(ExitCode::SUCCESS)
}

/// 1 when the comparison's gate failed, as a CI job reads it.
pub fn gate_code(c: &compare::Comparison) -> ExitCode {
    if c.gate.as_ref().is_some_and(|g| !g.passed) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
