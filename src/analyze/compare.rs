//! `lt compare`: two sets of runs of one trace, metric by metric. Each side's value is the
//! mean over its runs; the decision rule (`verdict`) says whether a difference is real, and
//! `thresholds` whether it is large enough to count.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::measure;
use super::model::Measured;
use super::read::Ids;
use super::read::Runs;
use super::report;
use super::stats::{self, round3};
use super::tally::Tally;
use super::thresholds::{self, Thresholds};
use super::trust::{self, Trust};
use super::verdict::{self, MetricRuns, FAMILY_ALPHA, POWER};

pub use super::verdict::{Better, Verdict};

/// The runs of one build (one side of a comparison, A or B: `ab::Side`): a name, the
/// figures and trust verdict of each run, and the tally merged over all.
pub struct BuildRuns {
    pub name: String,
    pub runs: Vec<Measured>,
    /// Each run's trust verdict, in the order of `runs`.
    pub trust: Vec<Trust>,
    pub merged: Runs,
}

impl BuildRuns {
    /// Reads each file once: the figures of each run, and one tally merged over all.
    pub fn load(name: &str, paths: &[PathBuf]) -> anyhow::Result<BuildRuns> {
        let mut runs = Vec::new();
        let merged =
            super::read::read_merged_each(paths, super::read::Completeness::Required, |one| {
                runs.push(measure::measure(one, &Ids::new(), &[]));
            })?;
        let trust = runs.iter().map(trust::trust).collect();
        Ok(BuildRuns {
            name: name.into(),
            runs,
            trust,
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
    /// The relative share (percent of A) of the metrics judged relative to A; each
    /// metric's own threshold, in its unit, is in `metrics`.
    pub threshold_pct: f64,
    /// How verdicts are reached, in one sentence.
    pub method: String,
    /// The chance of one or more false verdicts over all metrics (Holm–Bonferroni).
    pub family_alpha: f64,
    /// Runs per side that would resolve every metric's threshold at the noise measured
    /// (metrics that would need more than 100 are left out); `None` with a single run.
    pub suggested_runs: Option<u32>,
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
    /// The release gate (`--fail-on`), when one was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<Gate>,
}

/// A release gate's result (`--fail-on`, see `gate`), kept in the comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Gate {
    /// `--fail-on` as given.
    pub fail_on: String,
    pub passed: bool,
    /// The metrics that failed it (worse), by id.
    pub failed: Vec<String>,
    /// The result in one sentence.
    pub line: String,
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
    /// What the relay says it is (NIP-11 of the side's first run), when it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<String>,
    /// For a recorded trace: the side's runs together, set against the recorded relay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub against_recording: Option<super::against::AgainstRecording>,
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
    /// The smallest difference that counts, in `unit`, and how it was set.
    pub threshold: f64,
    pub threshold_rule: String,
    /// Welch's t statistic and degrees of freedom; `None` with a single run on a side (and
    /// `welch_t` when every run of both sides agreed exactly).
    pub welch_t: Option<f64>,
    pub df: Option<f64>,
    /// Two-sided p-value of "no difference", alone and Holm-adjusted over all metrics.
    pub p_value: Option<f64>,
    pub p_adjusted: Option<f64>,
    /// 95% interval of b − a (Welch); `None` unless both sides have two or more runs.
    pub ci95: Option<[f64; 2]>,
    /// The smallest true difference these runs would have found 4 times in 5, in `unit`.
    pub detectable: Option<f64>,
    /// Runs per side that would resolve a difference the size of the threshold at this
    /// noise; `None` with one run, or past 100.
    pub runs_to_resolve: Option<u32>,
    pub verdict: Verdict,
    /// Why this verdict: the statistic, the interval, the threshold, the detectable size.
    pub reason: String,
}

fn values(runs: &[Measured], id: &str) -> Option<Vec<f64>> {
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

/// The records each run attempted, for thresholds set as a share of them.
pub fn attempted(a: &BuildRuns) -> f64 {
    values(&a.runs, "attempted")
        .and_then(|v| stats::mean(&v))
        .unwrap_or(0.0)
}

/// Compares B with A, each metric against its threshold (`thresholds`). The chart files
/// beside the comparison are named when it is written (`analyze::write_comparison`), so a
/// comparison refused here has written nothing.
pub fn compare(
    a: &BuildRuns,
    b: &BuildRuns,
    thresholds: &Thresholds,
    run_order: Vec<String>,
) -> anyhow::Result<Comparison> {
    super::read::same_trace(
        &a.merged.header,
        &a.merged.files[0],
        &b.merged.header,
        &b.merged.files[0],
    )?;
    let attempted = attempted(a);
    // Metrics both sides measured in every run, with the headline that names them.
    let mut named = Vec::new();
    let mut found = Vec::new();
    for m in thresholds::METRICS {
        let (Some(a_runs), Some(b_runs)) = (values(&a.runs, m.id), values(&b.runs, m.id)) else {
            continue;
        };
        let Some(head) = a.runs[0].summary.iter().find(|h| h.id == m.id) else {
            continue;
        };
        named.push((m, head));
        found.push(metric_runs(m, thresholds, attempted, a_runs, b_runs));
    }
    let judged = verdict::judge(&found);
    let metrics: Vec<MetricDelta> = named
        .into_iter()
        .zip(found)
        .zip(judged)
        .map(|(((m, head), runs), j)| metric_delta(m, head, runs, j))
        .collect();
    let (overall, overall_line) = overall(a, b, &metrics);
    let family = metrics.iter().filter(|m| m.p_value.is_some()).count();
    let suggested_runs = (family > 0)
        .then(|| metrics.iter().filter_map(|m| m.runs_to_resolve).max())
        .flatten();
    Ok(Comparison {
        report_version: report::REPORT_VERSION,
        generated_by: format!("lt {}", env!("CARGO_PKG_VERSION")),
        generated_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        trace_fingerprint: a.merged.header.trace_fingerprint.clone(),
        a: side_summary(a),
        b: side_summary(b),
        threshold_pct: thresholds.default_pct(),
        method: method(family),
        family_alpha: FAMILY_ALPHA,
        suggested_runs,
        overall: overall.into(),
        overall_line,
        metrics,
        run_order,
        warnings: warnings(a, b),
        charts: Vec::new(),
        gate: None,
        failed_runs: Vec::new(),
    })
}

/// One metric's row: both sides' figures, the difference and its verdict.
fn metric_delta(
    m: &thresholds::Metric,
    head: &super::model::Headline,
    runs: MetricRuns,
    j: verdict::Judged,
) -> MetricDelta {
    let unit = m.threshold_unit(&head.unit);
    let rule = thresholds::describe(&runs.threshold, unit);
    MetricDelta {
        id: m.id.into(),
        label: head.label.clone(),
        unit: head.unit.clone(),
        better: m.better,
        a: round3(stats::mean(&runs.a).unwrap_or(0.0)),
        b: round3(stats::mean(&runs.b).unwrap_or(0.0)),
        a_noise: spread(&runs.a).map(round3),
        b_noise: spread(&runs.b).map(round3),
        delta: round3(j.delta),
        delta_pct: stats::mean(&runs.a)
            .filter(|a| *a != 0.0)
            .map(|a| round3(j.delta * 100.0 / a.abs())),
        threshold: round3(j.bound),
        welch_t: j.welch.and_then(|w| w.t).map(round3),
        df: j.welch.map(|w| round3(w.df)),
        p_value: j.welch.map(|w| round_p(w.p)),
        p_adjusted: j.p_adjusted.map(round_p),
        ci95: j.ci95.map(|[l, h]| [round3(l), round3(h)]),
        detectable: j.detectable.map(round3),
        runs_to_resolve: j.runs_to_resolve,
        verdict: j.verdict,
        reason: j.reason(unit, &rule),
        threshold_rule: rule,
        a_runs: runs.a,
        b_runs: runs.b,
    }
}

/// The comparison's one word (better, worse, mixed, inconclusive) and its sentence.
fn overall(a: &BuildRuns, b: &BuildRuns, metrics: &[MetricDelta]) -> (&'static str, String) {
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
    let family = metrics.iter().filter(|m| m.p_value.is_some()).count();
    let line = match overall {
        "inconclusive" if family == 0 => format!(
            "No verdict between {} (A) and {} (B): a side has a single run, so the noise between repeats is not measured; the figures are below.",
            a.name, b.name
        ),
        "inconclusive" => format!(
            "No difference between {} (A) and {} (B) beyond noise and each metric's threshold on any of {} metrics.",
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
    (overall, line)
}

fn metric_runs(
    m: &thresholds::Metric,
    thresholds: &Thresholds,
    attempted: f64,
    a: Vec<f64>,
    b: Vec<f64>,
) -> MetricRuns {
    MetricRuns {
        better: m.better,
        a,
        b,
        threshold: thresholds.of(m, attempted),
    }
}

/// One run's figures for every compared metric, in `thresholds::METRICS` order.
pub fn figures(r: &Measured) -> Vec<Option<f64>> {
    thresholds::METRICS
        .iter()
        .map(|m| r.summary.iter().find(|h| h.id == m.id).map(|h| h.value))
        .collect()
}

/// The rule on bare figures, as `compare` applies it: each metric's run values per side in
/// `thresholds::METRICS` order (a metric with no values on a side is left out of the
/// family). For calibration and for simulating sessions.
pub fn verdicts(
    thresholds: &Thresholds,
    attempted: f64,
    a: &[Vec<f64>],
    b: &[Vec<f64>],
) -> Vec<Verdict> {
    let mut slots = Vec::new();
    let mut runs = Vec::new();
    for (k, m) in thresholds::METRICS.iter().enumerate() {
        let (Some(a), Some(b)) = (a.get(k), b.get(k)) else {
            continue;
        };
        if a.is_empty() || b.is_empty() {
            continue;
        }
        slots.push(k);
        runs.push(metric_runs(m, thresholds, attempted, a.clone(), b.clone()));
    }
    let mut out = vec![Verdict::Inconclusive; thresholds::METRICS.len()];
    for (k, (.., v)) in slots.into_iter().zip(verdict::decide(&runs)) {
        out[k] = v;
    }
    out
}

/// p-values keep 4 significant decimals: 0.0004 must not print as 0.
fn round_p(p: f64) -> f64 {
    (p * 10_000.0).round() / 10_000.0
}

fn method(family: usize) -> String {
    format!(
        "Welch's t test per metric on the run values; the {family} tested metrics share one {}% error budget (Holm–Bonferroni), so a build compared with itself gets any better/worse verdict at most {}% of the time; a difference counts only when it is also at least the metric's threshold. Detectable: the smallest true difference these runs would find {}% of the time.",
        FAMILY_ALPHA * 100.0,
        FAMILY_ALPHA * 100.0,
        POWER * 100.0
    )
}

fn side_summary(s: &BuildRuns) -> SideSummary {
    SideSummary {
        name: s.name.clone(),
        target: s.merged.header.target.clone(),
        runs: s.runs.len() as u32,
        // Each run's report names its file already.
        files: s.runs.iter().flat_map(|r| r.config.files.clone()).collect(),
        trustworthy: s.trust.iter().all(|t| t.trustworthy),
        build: s
            .runs
            .first()
            .and_then(|r| r.config.relay.as_ref())
            .and_then(|r| r.build.clone()),
        against_recording: super::against::report(&s.merged.tally.against),
    }
}

fn warnings(a: &BuildRuns, b: &BuildRuns) -> Vec<String> {
    let mut w = Vec::new();
    for s in [a, b] {
        for (t, f) in s.trust.iter().zip(s.files()) {
            if !t.trustworthy {
                w.push(format!(
                    "{}: run {} is not trustworthy ({})",
                    s.name,
                    f.display(),
                    t.reasons.join("; ")
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
            w.extend(super::read::option_differences(
                (first, "A's first run"),
                (&r.config.options, &format!("{side}'s {}", f.display())),
            ));
        }
    }
    w
}
