//! `lt analyze`: results files → JSON and Markdown reports with charts.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::anyhow;

use crate::analyze::output::{self, Names};
use crate::analyze::report::{self, Ids, Report};
use crate::analyze::{markdown, Completeness, Runs};
use crate::capture::{Completion, TraceReader};
use crate::cli::AnalyzeArgs;

/// What one analysis wrote.
pub struct Written {
    pub json: PathBuf,
    pub markdown: PathBuf,
    pub report: Report,
}

pub fn run(args: AnalyzeArgs) -> anyhow::Result<ExitCode> {
    let completeness = if args.partial {
        Completeness::AllowPartial
    } else {
        Completeness::Required
    };
    let runs = crate::analyze::read_merged_each(&args.files, completeness, |_| {})?;
    let dir = args
        .out_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(output::DEFAULT_DIR));
    let w = write_report(&runs, &dir, args.trace.as_deref(), args.hgrm)?;
    print_summary(&w);
    Ok(ExitCode::SUCCESS)
}

/// Analyzes `runs` into `dir` (JSON, Markdown, charts, and `.hgrm` files when asked).
pub fn write_report(
    runs: &Runs,
    dir: &Path,
    trace: Option<&Path>,
    hgrm: bool,
) -> anyhow::Result<Written> {
    output::ensure_dir(dir)?;
    let ids = match trace {
        Some(t) => example_ids(runs, t)?,
        None => Ids::new(),
    };
    let names = output::names(dir, "load-report", "load-test-report");
    let mut report = report::build(runs, &ids, Vec::new());
    report.charts = output::write_charts(&names, &report, &runs.tally)?;
    if hgrm {
        output::write_hgrm(&names, &runs.tally)?;
    }
    write_files(&names, &report)?;
    Ok(Written {
        json: names.json,
        markdown: names.markdown,
        report,
    })
}

fn write_files(names: &Names, report: &Report) -> anyhow::Result<()> {
    output::write_json(&names.json, report)?;
    output::write_text(&names.markdown, &markdown::render(report))
}

/// Event (or subscription) ids of the records the report gives as examples, read from the
/// trace, which must be the one replayed.
fn example_ids(runs: &Runs, trace: &Path) -> anyhow::Result<Ids> {
    let wanted: HashSet<u64> = runs
        .tally
        .messages
        .by_text
        .values()
        .flat_map(|m| m.examples.iter().copied())
        .collect();
    let mut ids = Ids::new();
    let mut reader = TraceReader::open(trace)?;
    let mut index = 0u64;
    while let Some(r) = reader.next_record()? {
        if wanted.contains(&index) {
            let id = match r.completes {
                Completion::Ok { id } => id,
                Completion::Eose { sub } => sub,
                Completion::Sent => String::new(),
            };
            ids.insert(index, id);
        }
        index += 1;
    }
    let fingerprint = reader
        .trailer()
        .map(|t| t.fingerprint.clone())
        .unwrap_or_default();
    if fingerprint != runs.header.trace_fingerprint {
        return Err(anyhow!(
            "{}: this trace (fingerprint {}…) is not the one replayed ({}…)",
            trace.display(),
            fingerprint.get(..12).unwrap_or(&fingerprint),
            runs.header.trace_fingerprint.get(..12).unwrap_or("")
        ));
    }
    Ok(ids)
}

fn print_summary(w: &Written) {
    let r = &w.report;
    for p in &r.config.partial {
        outln!(
            "PARTIAL: {} ends before its trailer; {} of {} records have an outcome, over the first {} s",
            p.file,
            p.outcome_rows,
            p.trace_records,
            markdown::num(p.covered_s)
        );
    }
    outln!("{}", r.trust.verdict);
    for reason in &r.trust.reasons {
        outln!("  - {reason}");
    }
    for w in &r.config.merge_warnings {
        outln!("warning: {w}");
    }
    for h in &r.summary {
        outln!("{:<28} {:>14} {}", h.label, markdown::num(h.value), h.unit);
    }
    if let Some(first) = r.remediation.first() {
        outln!("first thing to do: {}", first.action);
    }
    outln!("report: {}", w.markdown.display());
    outln!("json:   {}", w.json.display());
}
