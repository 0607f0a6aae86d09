//! The capacity report on disk: JSON, Markdown, and the throughput–latency charts.

use std::path::{Path, PathBuf};

use super::report::{ending_words, CapacityReport, Step};
use super::search::{Phase, Verdict};
use crate::analyze::output;
use crate::analyze::render::cell;
use crate::analyze::render::svg::{self, Chart, Series, XAxis};

/// Writes `report` into `dir` as `capacity-DATE[-N]`: charts, JSON, Markdown. Returns the
/// JSON's and the Markdown's paths.
pub fn write(dir: &Path, report: &mut CapacityReport) -> anyhow::Result<(PathBuf, PathBuf)> {
    output::ensure_dir(dir)?;
    let names = output::names(dir, "capacity", "capacity");
    let mut charts = Vec::new();
    for (what, chart) in self::charts(report) {
        charts.push(output::write_beside(
            &names,
            &format!("{what}.svg"),
            &svg::render(&chart),
        )?);
    }
    report.charts = charts;
    output::write_json(&names.json, report)?;
    output::write_text(&names.markdown, &markdown(report))?;
    Ok((names.json, names.markdown))
}

/// Steps that count (not the warm-up) with a verdict, by offered rate.
fn judged(r: &CapacityReport) -> Vec<&Step> {
    let mut steps: Vec<&Step> = r
        .steps
        .iter()
        .filter(|s| s.phase != Phase::Warmup && s.judged.is_some())
        .collect();
    steps.sort_by(|a, b| a.offered_eps.total_cmp(&b.offered_eps));
    steps
}

/// A vertical line at `x` from 0 to `top`, named `name`.
fn marker(name: &str, x: Option<f64>, top: f64) -> Option<Series> {
    x.map(|x| Series {
        name: name.to_owned(),
        points: vec![(x, 0.0), (x, top)],
    })
}

/// The throughput–latency charts: offered against achieved rate, and p50/p99 against the
/// offered rate, each with the capacity (the knee) marked, the second with the SLO's
/// response-time bound.
pub fn charts(r: &CapacityReport) -> Vec<(&'static str, Chart)> {
    let steps = judged(r);
    vec![
        ("throughput", rate_chart(r, &steps)),
        ("latency", latency_chart(r, &steps)),
    ]
}

fn rate_chart(r: &CapacityReport, steps: &[&Step]) -> Chart {
    let top = steps
        .iter()
        .map(|s| s.offered_eps.max(s.achieved_eps))
        .fold(0.0, f64::max);
    let mut series = vec![
        Series {
            name: "offered".into(),
            points: steps
                .iter()
                .map(|s| (s.offered_eps, s.offered_eps))
                .collect(),
        },
        Series {
            name: "achieved (accepted)".into(),
            points: steps
                .iter()
                .map(|s| (s.offered_eps, s.achieved_eps))
                .collect(),
        },
    ];
    series.extend(marker("capacity", r.capacity_eps, top));
    Chart {
        title: "Offered and achieved rate".into(),
        x_label: "offered (events/s)".into(),
        y_label: "events/s".into(),
        x_axis: XAxis::Linear,
        series,
    }
}

fn latency_chart(r: &CapacityReport, steps: &[&Step]) -> Chart {
    let points = |f: fn(&Step) -> Option<f64>| -> Vec<(f64, f64)> {
        steps
            .iter()
            .map(|s| (s.offered_eps, f(s).unwrap_or(f64::NAN)))
            .collect()
    };
    let p99 = points(|s| s.response_p99_ms);
    let top = p99
        .iter()
        .map(|p| p.1)
        .filter(|y| y.is_finite())
        .fold(0.0, f64::max);
    let mut series = vec![
        Series {
            name: "response p50".into(),
            points: points(|s| s.response_p50_ms),
        },
        Series {
            name: "response p99".into(),
            points: p99,
        },
    ];
    // The SLO's first latency bound, as a horizontal line across the steps.
    let slo_ms = r
        .steps
        .iter()
        .filter_map(|s| s.judged.as_ref())
        .flat_map(|j| &j.terms)
        .find(|t| t.unit == "ms")
        .map(|t| t.bound);
    if let (Some(bound), Some(first), Some(last)) = (slo_ms, steps.first(), steps.last()) {
        series.push(Series {
            name: "SLO bound".into(),
            points: vec![(first.offered_eps, bound), (last.offered_eps, bound)],
        });
    }
    series.extend(marker(
        "capacity",
        r.capacity_eps,
        top.max(slo_ms.unwrap_or(0.0)),
    ));
    Chart {
        title: "Response time against the offered rate".into(),
        x_label: "offered (events/s)".into(),
        y_label: "ms".into(),
        x_axis: XAxis::Linear,
        series,
    }
}

fn rate(x: Option<f64>) -> String {
    x.map_or_else(|| "—".to_owned(), |v| format!("{} events/s", num1(v)))
}

/// The report as Markdown: the answer, the SLO, the charts, every step, the settings.
pub fn markdown(r: &CapacityReport) -> String {
    let mut out = format!("# Capacity of {}\n\n**{}**\n\n", r.relay, r.sentence);
    if r.partial {
        out.push_str(&format!(
            "> PARTIAL: the search ended before its answer ({}); the bounds are those of the steps so far.\n\n",
            ending_words(r.ending)
        ));
    }
    let upper_why = match (&r.lt_limit, &r.failed_first) {
        (Some(lt), _) if r.upper_is_lt => format!(" — lt was the limit: {lt}"),
        (_, Some(term)) => format!(" — failed first: `{term}`"),
        _ => String::new(),
    };
    out.push_str("| | |\n|---|---|\n");
    out.push_str(&format!(
        "| capacity (highest passing rate) | {} |\n",
        rate(r.capacity_eps)
    ));
    out.push_str(&format!(
        "| upper bound (lowest failing rate) | {}{} |\n",
        rate(r.upper_eps),
        cell(&upper_why)
    ));
    out.push_str(&format!(
        "| achieved at the capacity | {} accepted |\n",
        rate(r.achieved_eps)
    ));
    out.push_str(&format!("| ending | {} |\n", ending_words(r.ending)));
    out.push_str(&format!(
        "| steps | {} in {:.0} s; {} inversion(s) resolved toward the lower rate |\n",
        r.steps.len(),
        r.elapsed_s,
        r.inversions
    ));
    out.push_str(&format!(
        "| relay | {}{} |\n",
        cell(&r.relay),
        if r.fresh_relay_per_step {
            ", a fresh one per step"
        } else {
            ", one for every step"
        }
    ));
    out.push_str(&format!("| workload | {} |\n\n", cell(&r.workload)));
    out.push_str("## SLO\n\nA step passes when every term holds:\n\n");
    for t in &r.slo {
        out.push_str(&format!("- `{t}`\n"));
    }
    out.push_str("\nand counts as the relay's result only when\n\n");
    for t in &r.always {
        out.push_str(&format!("- {t}\n"));
    }
    out.push_str("\nA step that fails one of those measured lt, not the relay: it is marked `lt_limited` and bounds the search from above without being the relay's failure.\n\n");
    if !r.charts.is_empty() {
        out.push_str("## Throughput and latency\n\n");
        for c in &r.charts {
            out.push_str(&format!("![{c}]({c})\n\n"));
        }
    }
    out.push_str(&steps_table(r));
    let s = &r.settings;
    out.push_str(&format!(
        "## Settings\n\nstart {} events/s, ×{} per ramp step, precision {}%, max rate {}; steps of {} s, warm-up {} s, confirmation {} s, cool-down {} s; deadline {}.\n",
        num1(s.start_eps),
        num1(s.factor),
        num1(100.0 * s.precision),
        rate(s.max_rate_eps),
        num1(s.step_s),
        num1(s.warmup_s),
        num1(s.confirm_s),
        num1(s.cooldown_s),
        s.deadline_s.map_or_else(|| "none".to_owned(), |d| format!("{} s", num1(d)))
    ));
    out
}

fn steps_table(r: &CapacityReport) -> String {
    let mut out = String::from(
        "## Steps\n\n| # | phase | offered /s | scheduled /s | achieved /s | p50 ms | p99 ms | SLO terms | trusted | verdict | stored before | report |\n|---:|---|---:|---:|---:|---:|---:|---|---|---|---:|---|\n",
    );
    let ms = |x: Option<f64>| x.map_or_else(|| "—".to_owned(), num1);
    for s in &r.steps {
        let (terms, trusted, verdict) = match (&s.judged, &s.error) {
            (Some(j), _) => (
                j.terms
                    .iter()
                    .map(|t| {
                        format!(
                            "{} {}",
                            if t.passed { "✓" } else { "✗" },
                            t.observed.map_or_else(
                                || "not measured".to_owned(),
                                |v| format!("{}{}", num1(v), t.unit)
                            )
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
                if j.trusted { "yes" } else { "no" }.to_owned(),
                match (s.phase, j.verdict) {
                    (Phase::Warmup, v) => format!("({}, not judged)", verdict_word(v)),
                    (_, Verdict::LtLimited) => {
                        format!("lt_limited: {}", j.lt_limit.as_deref().unwrap_or(""))
                    }
                    (_, v) => verdict_word(v).to_owned(),
                },
            ),
            (None, Some(e)) => ("—".into(), "—".into(), format!("not completed: {e}")),
            (None, None) => ("—".into(), "—".into(), "not completed".into()),
        };
        let report = s
            .report
            .as_deref()
            .map_or_else(|| "—".to_owned(), |p| format!("[report]({p})"));
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            s.number,
            s.phase.word(),
            num1(s.offered_eps),
            num1(s.scheduled_eps),
            num1(s.achieved_eps),
            ms(s.response_p50_ms),
            ms(s.response_p99_ms),
            cell(&terms),
            trusted,
            cell(&verdict),
            s.stored_before,
            report
        ));
    }
    out.push('\n');
    out
}

fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "pass",
        Verdict::Fail => "fail",
        Verdict::LtLimited => "lt_limited",
    }
}

/// A figure to one decimal, without a trailing `.0`.
fn num1(x: f64) -> String {
    crate::analyze::render::num((x * 10.0).round() / 10.0)
}
