//! Capacity as a comparison metric: the capacities of A's and B's searches (each a
//! repeat), compared under the same statistics as every other metric of `lt ab` — Welch's
//! test, a 95% interval, a threshold the difference must reach (`analyze::verdict`).
//! Written by `lt ab --capacity`, and by `lt compare` given capacity reports.

use std::path::{Path, PathBuf};

use anyhow::Context;
use schemars::JsonSchema;
use serde::Serialize;

use super::report::CapacityReport;
use super::search::Ending;
use crate::analyze::output;
use crate::analyze::render::cell;
use crate::analyze::verdict::{self, Better, MetricRuns, Threshold, Verdict};

/// The smallest difference in capacity that counts, percent of A's: twice the search's
/// default precision, below which two searches of one relay differ by their bounds alone.
pub const THRESHOLD_PCT: f64 = 10.0;

/// Version of the capacity comparison's layout.
pub const CAPACITY_COMPARISON_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct CapacityComparison {
    pub capacity_comparison_version: u32,
    pub generated_by: String,
    pub generated_at: String,
    pub a: SideCapacities,
    pub b: SideCapacities,
    /// The smallest difference that counts, percent of A's mean capacity.
    pub threshold_pct: f64,
    /// mean(B) − mean(A), events per second, and as a percentage of A's.
    pub delta_eps: Option<f64>,
    pub delta_pct: Option<f64>,
    /// 95% interval of the difference (Welch), percent of A's mean.
    pub ci95_pct: Option<[f64; 2]>,
    pub verdict: Verdict,
    /// Why this verdict: the statistic, the interval, the threshold.
    pub reason: String,
    /// The comparison in one sentence.
    pub sentence: String,
}

/// One side's searches.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct SideCapacities {
    pub name: String,
    /// The capacity of each search that found one (`found`), events per second.
    pub capacities_eps: Vec<f64>,
    pub mean_eps: Option<f64>,
    /// Each search's report (path as given).
    pub reports: Vec<String>,
    /// Searches left out, and why (lt was the limit, the search was cut short, nothing
    /// passed, only a lower bound was found).
    pub left_out: Vec<String>,
}

/// A capacity report read back, with its path.
pub fn read(path: &Path) -> anyhow::Result<CapacityReport> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{}: not a capacity report lt can read", path.display()))
}

/// Whether `path` is a capacity report (JSON with `capacity_version`), not a results file.
pub fn is_capacity_report(path: &Path) -> bool {
    path.extension().is_some_and(|x| x == "json")
        && std::fs::read_to_string(path)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .is_some_and(|v| v.get("capacity_version").is_some())
}

fn side(name: &str, searches: &[(String, CapacityReport)]) -> SideCapacities {
    let mut s = SideCapacities {
        name: name.to_owned(),
        capacities_eps: Vec::new(),
        mean_eps: None,
        reports: Vec::new(),
        left_out: Vec::new(),
    };
    for (path, r) in searches {
        s.reports.push(path.clone());
        match (r.ending, r.capacity_eps) {
            (Ending::Found, Some(c)) => s.capacities_eps.push(c),
            (e, _) => s.left_out.push(format!(
                "{path}: {} — not a capacity",
                super::report::ending_words(e)
            )),
        }
    }
    s.mean_eps = crate::analyze::stats::mean(&s.capacities_eps);
    s
}

/// A's searches against B's.
pub fn compare(
    a_name: &str,
    a: &[(String, CapacityReport)],
    b_name: &str,
    b: &[(String, CapacityReport)],
) -> CapacityComparison {
    let (a, b) = (side(a_name, a), side(b_name, b));
    let metric = MetricRuns {
        better: Better::Higher,
        a: a.capacities_eps.clone(),
        b: b.capacities_eps.clone(),
        threshold: Threshold {
            pct_of_a: Some(THRESHOLD_PCT),
            floor: 0.0,
        },
    };
    let judged = verdict::judge(std::slice::from_ref(&metric))
        .into_iter()
        .next();
    let pct = |x: f64| a.mean_eps.filter(|m| *m > 0.0).map(|m| 100.0 * x / m);
    let (verdict, delta, ci95, reason) = match &judged {
        Some(j) if !a.capacities_eps.is_empty() && !b.capacities_eps.is_empty() => (
            j.verdict,
            Some(j.delta),
            j.ci95,
            j.reason("events/s", &format!("{THRESHOLD_PCT}% of A")),
        ),
        _ => (
            Verdict::Inconclusive,
            None,
            None,
            "a side has no search that found a capacity: nothing to compare".to_owned(),
        ),
    };
    let mut c = CapacityComparison {
        capacity_comparison_version: CAPACITY_COMPARISON_VERSION,
        generated_by: format!("lt {}", env!("CARGO_PKG_VERSION")),
        generated_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        delta_eps: delta,
        delta_pct: delta.and_then(pct),
        ci95_pct: ci95.and_then(|[lo, hi]| Some([pct(lo)?, pct(hi)?])),
        threshold_pct: THRESHOLD_PCT,
        verdict,
        reason,
        sentence: String::new(),
        a,
        b,
    };
    c.sentence = sentence(&c);
    c
}

fn sentence(c: &CapacityComparison) -> String {
    let Some(d) = c.delta_pct else {
        return format!(
            "No capacity comparison of {} and {}: {}.",
            c.b.name, c.a.name, c.reason
        );
    };
    let interval = c.ci95_pct.map_or_else(String::new, |[lo, hi]| {
        format!(", 95% interval {:.0}% … {:.0}%", lo, hi)
    });
    let more = if d >= 0.0 { "more" } else { "fewer" };
    format!(
        "{} sustains {:.0}% {more} events/s than {} ({} against {} events/s{interval}): {}.",
        c.b.name,
        d.abs(),
        c.a.name,
        num1(c.b.mean_eps.unwrap_or(0.0)),
        num1(c.a.mean_eps.unwrap_or(0.0)),
        match c.verdict {
            Verdict::Better => "better",
            Verdict::Worse => "worse",
            Verdict::Inconclusive => "inconclusive",
        }
    )
}

/// Writes `c` into `dir` as `capacity-comparison-DATE[-N]`; returns the JSON's and the
/// Markdown's paths.
pub fn write(dir: &Path, c: &CapacityComparison) -> anyhow::Result<(PathBuf, PathBuf)> {
    output::ensure_dir(dir)?;
    let names = output::names(dir, "capacity-comparison", "capacity-comparison");
    output::write_json(&names.json, c)?;
    output::write_text(&names.markdown, &markdown(c))?;
    Ok((names.json, names.markdown))
}

fn markdown(c: &CapacityComparison) -> String {
    let mut out = format!(
        "# Capacity: {} (B) against {} (A)\n\n**{}**\n\n{}\n\n",
        c.b.name, c.a.name, c.sentence, c.reason
    );
    out.push_str(
        "| side | capacities (events/s) | mean | searches left out |\n|---|---|---:|---|\n",
    );
    for (letter, s) in [("A", &c.a), ("B", &c.b)] {
        out.push_str(&format!(
            "| {letter} {} | {} | {} | {} |\n",
            cell(&s.name),
            s.capacities_eps
                .iter()
                .map(|x| num1(*x))
                .collect::<Vec<_>>()
                .join(", "),
            s.mean_eps.map_or_else(|| "—".to_owned(), num1),
            if s.left_out.is_empty() {
                "none".to_owned()
            } else {
                cell(&s.left_out.join("; "))
            }
        ));
    }
    out.push_str(&format!(
        "\nThe difference counts when it is beyond noise (Welch's test at 0.05) and at least {}% of A's capacity. Each search's report:\n\n",
        num1(c.threshold_pct)
    ));
    for (letter, s) in [("A", &c.a), ("B", &c.b)] {
        for r in &s.reports {
            out.push_str(&format!("- {letter}: [{r}]({r})\n"));
        }
    }
    out
}

/// A figure to one decimal, without a trailing `.0`.
fn num1(x: f64) -> String {
    crate::analyze::render::num((x * 10.0).round() / 10.0)
}
