//! `lt compare`: two sets of runs of one trace, metric by metric. Each side's value is the
//! mean over its runs; with at least two runs per side the noise between repeats and a
//! bootstrap interval decide whether a difference is real.

use std::fmt::Write;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::markdown::{cell, num};
use super::report::{self, Report};
use super::stats::{self, round3};
use super::tally::Tally;
use super::Runs;

/// Differences under this share of side A's value are "inconclusive" (percent).
pub const DEFAULT_THRESHOLD_PCT: f64 = 5.0;
/// Seed of the bootstrap, fixed so the same inputs give the same report.
const BOOTSTRAP_SEED: u64 = 0x006c_7463_6d70;

/// Which way is better for a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    Lower,
    Higher,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Better,
    Worse,
    Inconclusive,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Better => "better",
            Verdict::Worse => "worse",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

/// The metrics compared: headline ids of the per-run reports, and which way is better.
/// lt's own schedule lag is not among them: it says whether a run can be trusted (see the
/// warnings), not which build is better.
const METRICS: &[(&str, Better)] = &[
    ("success_rate", Better::Higher),
    ("ok_per_s", Better::Higher),
    ("failed", Better::Lower),
    ("timeouts", Better::Lower),
    ("response_p50", Better::Lower),
    ("response_p90", Better::Lower),
    ("response_p99", Better::Lower),
    ("response_p99_9", Better::Lower),
    ("response_max", Better::Lower),
    ("service_p50", Better::Lower),
    ("service_p99", Better::Lower),
    ("eose_p50", Better::Lower),
    ("eose_p99", Better::Lower),
    ("relay_cpu_avg", Better::Lower),
    ("relay_cpu_max", Better::Lower),
    ("relay_rss_max", Better::Lower),
];

/// One side: a name, its runs' reports, and the merged report of all of them.
pub struct Side {
    pub name: String,
    pub runs: Vec<Report>,
    pub merged: Runs,
}

impl Side {
    /// Reads each file once: a report per run, and one tally merged over all.
    pub fn load(name: &str, paths: &[PathBuf]) -> anyhow::Result<Side> {
        let mut runs = Vec::new();
        let merged = super::read_merged_each(paths, |one| {
            runs.push(report::build(one, &report::Ids::new(), Vec::new()));
        })?;
        Ok(Side {
            name: name.into(),
            runs,
            merged,
        })
    }

    /// The side's results files, in the order given.
    pub fn files(&self) -> &[PathBuf] {
        &self.merged.files
    }

    pub fn tally(&self) -> &Tally {
        &self.merged.tally
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Comparison {
    pub report_version: u32,
    pub generated_by: String,
    pub generated_at: String,
    pub trace_fingerprint: String,
    pub a: SideSummary,
    pub b: SideSummary,
    /// Differences below this (percent of A) are inconclusive.
    pub threshold_pct: f64,
    /// `better`, `worse`, `mixed` or `inconclusive`: B relative to A.
    pub overall: String,
    /// The overall verdict in one sentence.
    pub overall_line: String,
    pub metrics: Vec<MetricDelta>,
    /// Order in which runs were made, when known (`lt ab`: A B B A …).
    pub run_order: Vec<String>,
    /// Things that weaken the comparison: untrusted runs, differing replay options.
    pub warnings: Vec<String>,
    /// Chart files beside the report.
    pub charts: Vec<String>,
    /// Runs that did not complete (`lt ab`): left out of the figures above.
    pub failed_runs: Vec<FailedRun>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct FailedRun {
    /// Position in the run order, from 1.
    pub run: u32,
    /// `A` or `B`.
    pub side: String,
    pub name: String,
    /// What went wrong, in one line.
    pub error: String,
    /// The end of the relay's log.
    pub log_tail: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SideSummary {
    pub name: String,
    pub target: String,
    pub runs: u32,
    pub files: Vec<String>,
    /// Whether every run of this side kept its schedule (see a report's `trust`).
    pub trustworthy: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct MetricDelta {
    pub id: String,
    pub label: String,
    pub unit: String,
    pub better: Better,
    /// Mean over each side's runs.
    pub a: f64,
    pub b: f64,
    pub a_runs: Vec<f64>,
    pub b_runs: Vec<f64>,
    /// b − a.
    pub delta: f64,
    /// (b − a) / |a|, percent; `None` when a is 0.
    pub delta_pct: Option<f64>,
    /// Spread between repeats of one side (max − min of its runs); `None` with one run.
    pub a_noise: Option<f64>,
    pub b_noise: Option<f64>,
    /// 95% bootstrap interval of b − a; `None` unless both sides have two or more runs.
    pub ci95: Option<[f64; 2]>,
    pub verdict: Verdict,
    /// Why this verdict.
    pub reason: String,
}

fn values(runs: &[Report], id: &str) -> Option<Vec<f64>> {
    runs.iter()
        .map(|r| r.summary.iter().find(|h| h.id == id).map(|h| h.value))
        .collect()
}

fn spread(xs: &[f64]) -> Option<f64> {
    if xs.len() < 2 {
        return None;
    }
    let max = xs.iter().copied().fold(f64::MIN, f64::max);
    let min = xs.iter().copied().fold(f64::MAX, f64::min);
    Some(max - min)
}

/// The verdict for one metric, B relative to A.
fn judge(
    better: Better,
    a_runs: &[f64],
    b_runs: &[f64],
    threshold_pct: f64,
) -> (Verdict, f64, Option<f64>, Option<[f64; 2]>, String) {
    let a = stats::mean(a_runs).unwrap_or(0.0);
    let b = stats::mean(b_runs).unwrap_or(0.0);
    let delta = b - a;
    let delta_pct = (a != 0.0).then(|| delta * 100.0 / a.abs());
    let ci = stats::bootstrap_diff_ci(a_runs, b_runs, BOOTSTRAP_SEED).map(|(l, h)| [l, h]);
    let noise = match (spread(a_runs), spread(b_runs)) {
        (Some(x), Some(y)) => Some(x.max(y)),
        _ => None,
    };
    let direction = match (better, delta < 0.0) {
        (Better::Lower, true) | (Better::Higher, false) => Verdict::Better,
        _ => Verdict::Worse,
    };
    let big_enough = match delta_pct {
        Some(p) => p.abs() >= threshold_pct,
        None => delta != 0.0,
    };
    let (verdict, reason) = if delta == 0.0 {
        (Verdict::Inconclusive, "no difference".to_owned())
    } else if !big_enough {
        (
            Verdict::Inconclusive,
            format!("difference under the {threshold_pct}% threshold"),
        )
    } else if let (Some([lo, hi]), Some(noise)) = (ci, noise) {
        // The smallest difference that matters, in the metric's unit.
        let bound = threshold_pct / 100.0 * a.abs();
        if lo <= 0.0 && hi >= 0.0 {
            (
                Verdict::Inconclusive,
                "95% interval of the difference includes 0".to_owned(),
            )
        } else if lo.abs().min(hi.abs()) < bound {
            // A real but possibly negligible difference: only an interval wholly beyond the
            // threshold says the builds differ by at least that much.
            (
                Verdict::Inconclusive,
                format!(
                    "95% interval {}…{} reaches within the {threshold_pct}% threshold ({})",
                    round3(lo),
                    round3(hi),
                    round3(bound)
                ),
            )
        } else if delta.abs() <= noise {
            (
                Verdict::Inconclusive,
                format!(
                    "difference {} within the spread between repeats ({})",
                    round3(delta.abs()),
                    round3(noise)
                ),
            )
        } else {
            (
                direction,
                "95% interval wholly beyond the threshold, and beyond the spread between repeats"
                    .into(),
            )
        }
    } else {
        (
            direction,
            "beyond the threshold; a side has a single run, so noise was not measured".into(),
        )
    };
    (verdict, delta, delta_pct, ci, reason)
}

/// Compares B with A. `threshold_pct`: the smallest relative difference that counts.
pub fn compare(
    a: &Side,
    b: &Side,
    threshold_pct: f64,
    run_order: Vec<String>,
) -> anyhow::Result<Comparison> {
    super::same_trace(
        &a.merged.header,
        &a.merged.files[0],
        &b.merged.header,
        &b.merged.files[0],
    )?;
    let mut metrics = Vec::new();
    for &(id, better) in METRICS {
        let (Some(a_runs), Some(b_runs)) = (values(&a.runs, id), values(&b.runs, id)) else {
            continue;
        };
        let Some(head) = a.runs[0].summary.iter().find(|h| h.id == id) else {
            continue;
        };
        let (verdict, delta, delta_pct, ci, reason) =
            judge(better, &a_runs, &b_runs, threshold_pct);
        metrics.push(MetricDelta {
            id: id.into(),
            label: head.label.clone(),
            unit: head.unit.clone(),
            better,
            a: round3(stats::mean(&a_runs).unwrap_or(0.0)),
            b: round3(stats::mean(&b_runs).unwrap_or(0.0)),
            a_noise: spread(&a_runs).map(round3),
            b_noise: spread(&b_runs).map(round3),
            a_runs,
            b_runs,
            delta: round3(delta),
            delta_pct: delta_pct.map(round3),
            ci95: ci.map(|[l, h]| [round3(l), round3(h)]),
            verdict,
            reason,
        });
    }
    let better = metrics
        .iter()
        .filter(|m| m.verdict == Verdict::Better)
        .count();
    let worse = metrics
        .iter()
        .filter(|m| m.verdict == Verdict::Worse)
        .count();
    let overall = match (better, worse) {
        (0, 0) => "inconclusive",
        (_, 0) => "better",
        (0, _) => "worse",
        _ => "mixed",
    };
    let overall_line = match overall {
        "inconclusive" => format!(
            "No difference between {} (A) and {} (B) beyond noise and the {threshold_pct}% threshold on any of {} metrics.",
            a.name,
            b.name,
            metrics.len()
        ),
        _ => format!(
            "{} (B) vs {} (A): better on {better}, worse on {worse}, inconclusive on {} of {} metrics.",
            b.name,
            a.name,
            metrics.len() - better - worse,
            metrics.len()
        ),
    };
    Ok(Comparison {
        report_version: report::REPORT_VERSION,
        generated_by: format!("lt {}", env!("CARGO_PKG_VERSION")),
        generated_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        trace_fingerprint: a.merged.header.trace_fingerprint.clone(),
        a: side_summary(a),
        b: side_summary(b),
        threshold_pct,
        overall: overall.into(),
        overall_line,
        metrics,
        run_order,
        warnings: warnings(a, b),
        charts: Vec::new(),
        failed_runs: Vec::new(),
    })
}

fn side_summary(s: &Side) -> SideSummary {
    SideSummary {
        name: s.name.clone(),
        target: s.merged.header.target.clone(),
        runs: s.runs.len() as u32,
        // Each run's report names its file already.
        files: s.runs.iter().flat_map(|r| r.config.files.clone()).collect(),
        trustworthy: s.runs.iter().all(|r| r.trust.trustworthy),
    }
}

/// Replay options that change the load itself.
const LOAD_OPTIONS: [&str; 7] = [
    "speed",
    "clients",
    "max_in_flight",
    "per_conn_in_flight",
    "on_overload",
    "timeout_ms",
    "duration_s",
];

fn warnings(a: &Side, b: &Side) -> Vec<String> {
    let mut w = Vec::new();
    for s in [a, b] {
        for (r, f) in s.runs.iter().zip(s.files()) {
            if !r.trust.trustworthy {
                w.push(format!(
                    "{}: run {} is not trustworthy ({})",
                    s.name,
                    f.display(),
                    r.trust.reasons.join("; ")
                ));
            }
        }
        if s.runs.len() < 2 {
            w.push(format!(
                "{}: one run only, so the noise between repeats is not measured; use 3 or more runs per side",
                s.name
            ));
        }
    }
    // Options that change the load itself; the relay pid and such may differ freely. Every
    // run is checked against A's first, within a side as well as across.
    let first = &a.merged.header.options;
    for (side, s) in [("A", a), ("B", b)] {
        for (r, f) in s.runs.iter().zip(s.files()) {
            for key in LOAD_OPTIONS {
                let (want, got) = (first.get(key), r.config.options.get(key));
                if want != got {
                    w.push(format!(
                        "replay option {key} differs: {} in A's first run, {} in {side}'s {}",
                        want.map_or("unset", String::as_str),
                        got.map_or("unset", String::as_str),
                        f.display()
                    ));
                }
            }
        }
    }
    w
}

pub fn render(c: &Comparison) -> String {
    let mut s = String::new();
    // Writing into a String cannot fail.
    let _ = write_comparison(&mut s, c);
    s
}

fn opt_num(x: Option<f64>) -> String {
    x.map_or_else(|| "–".to_owned(), num)
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
    writeln!(
        s,
        "Trace `{}`. A: {} run(s) on {}; B: {} run(s) on {}. A difference counts when its 95% bootstrap interval lies wholly beyond {}% of A and it exceeds the spread between repeats (with a single run on a side: when it is at least that threshold).",
        c.trace_fingerprint.get(..16).unwrap_or(&c.trace_fingerprint),
        c.a.runs,
        cell(&c.a.target),
        c.b.runs,
        cell(&c.b.target),
        num(c.threshold_pct)
    )?;
    writeln!(s)?;
    if !c.warnings.is_empty() {
        for w in &c.warnings {
            writeln!(s, "- ⚠️ {}", cell(w))?;
        }
        writeln!(s)?;
    }
    writeln!(s, "## Metrics")?;
    writeln!(s)?;
    writeln!(
        s,
        "| Metric | Unit | A | B | Δ | Δ % | noise A | noise B | 95% CI of Δ | Verdict (B) |"
    )?;
    writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|---|---|")?;
    for m in &c.metrics {
        writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | **{}** |",
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
    writeln!(s)?;
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
    for chart in &c.charts {
        writeln!(s)?;
        writeln!(s, "![chart]({chart})")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_runs_are_inconclusive() {
        let (v, ..) = judge(Better::Lower, &[5.0, 5.0, 5.0], &[5.0, 5.0, 5.0], 5.0);
        assert_eq!(v, Verdict::Inconclusive);
        let (v, ..) = judge(Better::Lower, &[5.0], &[5.0], 5.0);
        assert_eq!(v, Verdict::Inconclusive);
    }

    #[test]
    fn a_clear_slowdown_is_worse_and_a_speedup_better() {
        let a = [1.0, 1.1, 0.9];
        let b = [21.0, 20.5, 21.4];
        let (v, delta, pct, ci, _) = judge(Better::Lower, &a, &b, 5.0);
        assert_eq!(v, Verdict::Worse);
        assert!((delta - 19.966_666).abs() < 1e-5, "{delta}");
        assert!(pct.unwrap() > 1900.0);
        assert!(ci.unwrap()[0] > 0.0);
        let (v, ..) = judge(Better::Lower, &b, &a, 5.0);
        assert_eq!(v, Verdict::Better);
        let (v, ..) = judge(Better::Higher, &a, &b, 5.0);
        assert_eq!(v, Verdict::Better);
    }

    #[test]
    fn differences_within_noise_or_threshold_are_inconclusive() {
        // 3% apart: under the 5% threshold.
        let (v, ..) = judge(Better::Lower, &[100.0, 100.0], &[103.0, 103.0], 5.0);
        assert_eq!(v, Verdict::Inconclusive);
        // 20% apart on average, but the repeats spread over 60.
        let (v, _, _, _, why) = judge(
            Better::Lower,
            &[70.0, 130.0, 100.0],
            &[90.0, 150.0, 120.0],
            5.0,
        );
        assert_eq!(v, Verdict::Inconclusive, "{why}");
    }

    #[test]
    fn a_steady_but_negligible_difference_is_inconclusive() {
        // Repeats agree closely and the sides differ by 5.3%, but the interval of the
        // difference reaches below the 5% threshold: not enough to call.
        let a = [49.439, 49.567, 50.751];
        let b = [52.543, 52.383, 52.735];
        let (v, _, _, _, why) = judge(Better::Lower, &a, &b, 5.0);
        assert_eq!(v, Verdict::Inconclusive, "{why}");
        assert!(why.contains("threshold"), "{why}");
    }

    #[test]
    fn single_runs_use_the_threshold_only() {
        let (v, _, _, ci, why) = judge(Better::Lower, &[10.0], &[12.0], 5.0);
        assert_eq!(v, Verdict::Worse);
        assert!(ci.is_none());
        assert!(why.contains("noise was not measured"));
    }

    #[test]
    fn zero_baselines_have_no_percentage() {
        let (v, _, pct, ..) = judge(Better::Lower, &[0.0], &[3.0], 5.0);
        assert_eq!(pct, None);
        assert_eq!(v, Verdict::Worse);
    }
}
