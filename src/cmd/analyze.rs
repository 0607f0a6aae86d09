//! `lt analyze`: results files → JSON and Markdown reports with charts.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::analyze::render::num;
use crate::analyze::Ids;
use crate::analyze::{self, output, Completeness, Written};
use crate::cli::AnalyzeArgs;

pub fn run(args: AnalyzeArgs) -> anyhow::Result<ExitCode> {
    let completeness = if args.partial {
        Completeness::AllowPartial
    } else {
        Completeness::Required
    };
    let runs = analyze::read_merged_each(&args.files, completeness, |_| {})?;
    let ids = match &args.trace {
        Some(trace) => analyze::read::example_ids(&runs, trace)?,
        None => Ids::new(),
    };
    let dir = args
        .out_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(output::DEFAULT_DIR));
    let w = analyze::write_report(&runs, &dir, &ids, args.hgrm)?;
    print_summary(&w);
    Ok(ExitCode::SUCCESS)
}

fn print_summary(w: &Written) {
    let r = &w.report;
    for p in &r.measured.config.partial {
        outln!(
            "PARTIAL: {} ends before its trailer; {} of {} records have an outcome, over the first {} s",
            p.file,
            p.outcome_rows,
            p.trace_records,
            num(p.covered_s)
        );
    }
    outln!("{}", r.trust.verdict);
    for reason in &r.trust.reasons {
        outln!("  - {reason}");
    }
    for w in &r.measured.config.merge_warnings {
        outln!("warning: {w}");
    }
    for h in &r.measured.summary {
        outln!("{:<28} {:>14} {}", h.label, num(h.value), h.unit);
    }
    if let Some(first) = r.remediation.first() {
        outln!("first thing to do: {}", first.action);
    }
    outln!("report: {}", w.markdown.display());
    outln!("json:   {}", w.json.display());
}
