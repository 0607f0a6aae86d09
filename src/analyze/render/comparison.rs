//! The Markdown of a [`Comparison`].

use std::fmt::Write;

use super::{cell, num};
use crate::analyze::compare::Comparison;

pub fn render(c: &Comparison) -> String {
    let mut s = String::new();
    // Writing into a String cannot fail.
    let _ = write_comparison(&mut s, c);
    s
}

fn opt_num(x: Option<f64>) -> String {
    x.map_or_else(|| "–".to_owned(), num)
}

/// For a recorded trace: each side's runs against the relay that served the recording.
fn against_recording(s: &mut String, c: &Comparison) -> std::fmt::Result {
    let sides = [("A", &c.a), ("B", &c.b)];
    if sides.iter().all(|(_, x)| x.against_recording.is_none()) {
        return Ok(());
    }
    writeln!(s, "Against the recording (all runs of each side):")?;
    writeln!(s)?;
    writeln!(
        s,
        "| Side | Events accepted (recorded relay) | Events accepted (runs) | Answered as recorded | Largest change |"
    )?;
    writeln!(s, "|---|---:|---:|---:|---|")?;
    for (label, side) in sides {
        let Some(a) = &side.against_recording else {
            continue;
        };
        let change = a.changes.first().map_or("none".to_owned(), |ch| {
            format!(
                "{} now {} that were {}",
                ch.records, ch.replayed, ch.recorded
            )
        });
        writeln!(
            s,
            "| {label}: {} | {} of {} | {} | {} of {} | {} |",
            cell(&side.name),
            a.events_recorded_accepted,
            a.events,
            a.events_replayed_accepted,
            a.same,
            a.records,
            cell(&change)
        )?;
    }
    writeln!(s)
}

fn write_comparison(s: &mut String, c: &Comparison) -> std::fmt::Result {
    writeln!(
        s,
        "# Comparison: {} (A) vs {} (B)",
        cell(&c.a.name),
        cell(&c.b.name)
    )?;
    writeln!(s)?;
    writeln!(s, "> **Overall: {}.** {}", c.overall, cell(&c.overall_line))?;
    writeln!(s)?;
    if let Some(g) = &c.gate {
        writeln!(
            s,
            "> **Gate `--fail-on {}`: {}.** {}",
            cell(&g.fail_on),
            if g.passed { "passed" } else { "FAILED" },
            cell(&g.line)
        )?;
        writeln!(s)?;
    }
    writeln!(
        s,
        "Trace `{}`. A: {} run(s) on {}{}; B: {} run(s) on {}{}.",
        c.trace_fingerprint
            .get(..16)
            .unwrap_or(&c.trace_fingerprint),
        c.a.runs,
        cell(&c.a.target),
        c.a.build
            .as_deref()
            .map(|b| format!(" ({}, by NIP-11)", cell(b)))
            .unwrap_or_default(),
        c.b.runs,
        cell(&c.b.target),
        c.b.build
            .as_deref()
            .map(|b| format!(" ({}, by NIP-11)", cell(b)))
            .unwrap_or_default(),
    )?;
    writeln!(s)?;
    against_recording(s, c)?;
    method_and_warnings(s, c)?;
    metrics_table(s, c)?;
    runs(s, c)?;
    for chart in &c.charts {
        writeln!(s)?;
        writeln!(s, "![chart]({chart})")?;
    }
    Ok(())
}

/// How verdicts are reached, the runs that would resolve what these could not, warnings.
fn method_and_warnings(s: &mut String, c: &Comparison) -> std::fmt::Result {
    writeln!(s, "How verdicts are reached: {}", cell(&c.method))?;
    writeln!(s)?;
    if let Some(n) = c.suggested_runs.filter(|n| *n > c.a.runs.min(c.b.runs)) {
        let short: Vec<String> = c
            .metrics
            .iter()
            .filter_map(|m| {
                let need = m.runs_to_resolve?;
                (need > c.a.runs.min(c.b.runs)).then(|| format!("{} {need}", m.label))
            })
            .collect();
        writeln!(
            s,
            "At the noise these runs measured, {n} runs per side would resolve a difference the size of each metric's threshold; the metrics these runs could not resolve, with the runs each needs: {}. Metrics left out need more than 100 runs: their noise, not the run count, is what to work on (longer traces steady the tails).",
            cell(&short.join(", "))
        )?;
        writeln!(s)?;
    }
    if !c.warnings.is_empty() {
        for w in &c.warnings {
            writeln!(s, "- ⚠️ {}", cell(w))?;
        }
        writeln!(s)?;
    }
    Ok(())
}

/// `## Metrics`: a row per metric, then why each verdict.
fn metrics_table(s: &mut String, c: &Comparison) -> std::fmt::Result {
    writeln!(s, "## Metrics")?;
    writeln!(s)?;
    writeln!(
        s,
        "| Metric | Unit | A | B | Δ | Δ % | noise A | noise B | 95% CI of Δ | Holm p | threshold | detectable | runs needed | Verdict (B) |"
    )?;
    writeln!(
        s,
        "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|"
    )?;
    for m in &c.metrics {
        writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | **{}** |",
            cell(&m.label),
            cell(&m.unit),
            num(m.a),
            num(m.b),
            num(m.delta),
            opt_num(m.delta_pct),
            opt_num(m.a_noise),
            opt_num(m.b_noise),
            m.ci95.map_or_else(
                || "–".to_owned(),
                |[l, h]| format!("{} … {}", num(l), num(h))
            ),
            opt_num(m.p_adjusted),
            num(m.threshold),
            opt_num(m.detectable),
            m.runs_to_resolve
                .map_or_else(|| "–".to_owned(), |n| n.to_string()),
            m.verdict.as_str()
        )?;
    }
    writeln!(s)?;
    writeln!(s, "Why each verdict:")?;
    writeln!(s)?;
    for m in &c.metrics {
        writeln!(
            s,
            "- {}: {} ({})",
            cell(&m.label),
            m.verdict.as_str(),
            cell(&m.reason)
        )?;
    }
    writeln!(s)
}

/// `## Runs`: their order, each side's files, each metric's per-run figures, failed runs.
fn runs(s: &mut String, c: &Comparison) -> std::fmt::Result {
    writeln!(s, "## Runs")?;
    writeln!(s)?;
    if !c.run_order.is_empty() {
        writeln!(s, "Run order: {}.", cell(&c.run_order.join(" → ")))?;
        writeln!(s)?;
    }
    for side in [&c.a, &c.b] {
        writeln!(
            s,
            "- {} ({}, {}): {}",
            cell(&side.name),
            cell(&side.target),
            if side.trustworthy {
                "trustworthy"
            } else {
                "NOT trustworthy"
            },
            cell(&side.files.join(", "))
        )?;
    }
    writeln!(s)?;
    for m in &c.metrics {
        if m.a_runs.len() > 1 || m.b_runs.len() > 1 {
            let join = |v: &[f64]| v.iter().map(|x| num(*x)).collect::<Vec<_>>().join(", ");
            writeln!(
                s,
                "- {}: A [{}], B [{}]",
                cell(&m.label),
                join(&m.a_runs),
                join(&m.b_runs)
            )?;
        }
    }
    if !c.failed_runs.is_empty() {
        writeln!(s)?;
        writeln!(s, "## Failed runs (left out of the figures)")?;
        for f in &c.failed_runs {
            writeln!(s)?;
            writeln!(
                s,
                "Run {} ({} {}): {}",
                f.run,
                f.side,
                cell(&f.name),
                cell(&f.error)
            )?;
            writeln!(s)?;
            writeln!(s, "```text")?;
            writeln!(s, "{}", f.log_tail.replace("```", "'''"))?;
            writeln!(s, "```")?;
        }
    }
    Ok(())
}

/// The comparison as `lt compare` and `lt ab` print it: the verdict, the warnings that
/// qualify it, a line per metric, and how many runs would resolve the thresholds.
pub fn summary(c: &Comparison) -> String {
    let mut s = String::new();
    // Writing into a String cannot fail.
    let _ = write_summary(&mut s, c);
    s
}

fn write_summary(s: &mut String, c: &Comparison) -> std::fmt::Result {
    writeln!(s, "overall: {} — {}", c.overall, c.overall_line)?;
    if let Some(g) = &c.gate {
        writeln!(s, "gate: {}", g.line)?;
    }
    // Warnings qualify the verdict, so they come before the table, as in the report.
    for w in &c.warnings {
        writeln!(s, "warning: {w}")?;
    }
    for m in &c.metrics {
        writeln!(
            s,
            "{:<28} A {:>12}  B {:>12}  {:>10}  {}",
            m.label,
            m.a,
            m.b,
            m.delta_pct
                .map_or_else(|| "–".to_owned(), |p| format!("{p:+}%")),
            m.verdict.as_str()
        )?;
    }
    if let Some(n) = c.suggested_runs.filter(|n| *n > c.a.runs.min(c.b.runs)) {
        writeln!(
            s,
            "runs: at this noise, {n} runs per side would resolve a difference the size of each metric's threshold"
        )?;
    }
    Ok(())
}
