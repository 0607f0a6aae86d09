//! `lt analyze`: results files → JSON and Markdown reports with charts.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::analyze::render::{self, num};
use crate::analyze::Ids;
use crate::analyze::{self, output, Asked, Completeness, Written};
use crate::cli::AnalyzeArgs;

pub fn run(args: AnalyzeArgs) -> anyhow::Result<ExitCode> {
    let completeness = if args.partial {
        Completeness::AllowPartial
    } else {
        Completeness::Required
    };
    let runs = analyze::read_merged_each(&args.files, completeness, |_| {})?;
    let mut checks = args.checks.clone();
    if let Some(file) = &args.checks_file {
        checks.extend(analyze::checks::read_file(file).map_err(|e| anyhow::anyhow!(e))?);
    }
    let asked = Asked {
        ids: match &args.trace {
            Some(trace) => analyze::read::example_ids(&runs, trace)?,
            None => Ids::new(),
        },
        hgrm: args.hgrm,
        checks,
        allow_untrusted: args.allow_untrusted,
    };
    let dir = args
        .out_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(output::DEFAULT_DIR));
    let w = analyze::write_report(&runs, &dir, &asked)?;
    let drafts = match &args.issues {
        Some(issues) => analyze::write_drafts(issues, &render::issues::drafts(&w.report))?,
        None => Vec::new(),
    };
    if args.summary.as_deref() == Some("pr") {
        out!("{}", render::issues::pr_summary(&w.report, &drafts));
    } else {
        print_summary(&w);
        for (title, path) in &drafts {
            outln!("issue draft: {path} — {title}");
        }
    }
    // 1 for a failed gate, as a CI job reads it; 2 stays for errors.
    Ok(if w.report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
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
    for c in &r.checks {
        let observed = c.observed.map_or_else(
            || "not measured".to_owned(),
            |x| format!("{}{}", num(x), c.unit),
        );
        let note = c
            .note
            .as_deref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        outln!(
            "check {}: {} — observed {observed}{note}",
            if c.passed { "PASS" } else { "FAIL" },
            c.expression
        );
    }
    if !r.checks.is_empty() {
        outln!("checks: {}", r.checks_line());
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
