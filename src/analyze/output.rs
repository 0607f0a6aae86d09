//! Where reports go and the files beside them: JSON, Markdown, SVG charts, `.hgrm`
//! percentile distributions. Nothing is ever overwritten: a taken name gets `-2`, `-3`, …

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use hdrhistogram::Histogram;

use super::hgrm;
use super::report::Report;
use super::svg::{self, Chart, Series, XAxis};
use super::tally::Tally;

/// The default folder for `lt analyze` reports.
pub const DEFAULT_DIR: &str = "reports/load-test";

/// The names of one report's files, all sharing one free suffix.
pub struct Names {
    pub json: PathBuf,
    pub markdown: PathBuf,
    /// Prefix for the files beside the report (`<prefix>-throughput.svg`, …).
    pub stem: String,
    pub dir: PathBuf,
}

/// Picks `<json_stem>-DATE[-N].json` and `<md_stem>-DATE[-N].md` in `dir`, the first N for
/// which neither exists.
pub fn names(dir: &Path, json_stem: &str, md_stem: &str) -> Names {
    let date = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let mut n = 1u32;
    loop {
        let suffix = if n == 1 {
            String::new()
        } else {
            format!("-{n}")
        };
        let json = dir.join(format!("{json_stem}-{date}{suffix}.json"));
        let markdown = dir.join(format!("{md_stem}-{date}{suffix}.md"));
        if !json.exists() && !markdown.exists() {
            return Names {
                json,
                markdown,
                stem: format!("{json_stem}-{date}{suffix}"),
                dir: dir.to_owned(),
            };
        }
        n += 1;
    }
}

/// Creates `path`, refusing to replace an existing file (another lt may have taken the name
/// between the check and now).
pub fn create_new(path: &Path) -> anyhow::Result<BufWriter<File>> {
    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    Ok(BufWriter::new(f))
}

pub fn write_text(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut w = create_new(path)?;
    w.write_all(text.as_bytes())
        .and_then(|_| w.flush())
        .with_context(|| format!("writing {}", path.display()))
}

pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let mut w = create_new(path)?;
    serde_json::to_writer_pretty(&mut w, value)
        .map_err(std::io::Error::from)
        .and_then(|_| w.write_all(b"\n"))
        .and_then(|_| w.flush())
        .with_context(|| format!("writing {}", path.display()))
}

pub fn ensure_dir(dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

/// `(percentile, ms)` points of a histogram for a percentile-spectrum chart.
pub fn spectrum(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    h.iter_quantiles(5)
        .map(|v| {
            (
                v.quantile_iterated_to() * 100.0,
                v.value_iterated_to() as f64 / 1_000.0,
            )
        })
        .filter(|(p, _)| *p < 100.0)
        .collect()
}

fn series(name: &str, points: Vec<(f64, f64)>) -> Series {
    Series {
        name: name.into(),
        points,
    }
}

/// Writes the charts of one report; returns their file names (relative to the report).
pub fn write_charts(names: &Names, report: &Report, tally: &Tally) -> anyhow::Result<Vec<String>> {
    let overall = tally.overall();
    let mut written = Vec::new();
    let mut put = |what: &str, chart: Chart| -> anyhow::Result<()> {
        let file = format!("{}-{what}.svg", names.stem);
        write_text(&names.dir.join(&file), &svg::render(&chart))?;
        written.push(file);
        Ok(())
    };
    let per_s = &report.throughput.per_second;
    let col = |f: fn(&super::report::SecondCounts) -> u64| -> Vec<(f64, f64)> {
        per_s.iter().map(|s| (s.t_s as f64, f(s) as f64)).collect()
    };
    put(
        "throughput",
        Chart {
            title: "Throughput per second".into(),
            x_label: "seconds from start".into(),
            y_label: "records / s".into(),
            x_axis: XAxis::Linear,
            series: vec![
                series("scheduled", col(|s| s.scheduled)),
                series("sent", col(|s| s.sent)),
                series("ok", col(|s| s.ok)),
                series("rejected", col(|s| s.rejected)),
                series("failed", col(|s| s.failed)),
            ],
        },
    )?;
    let w = &report.latency_over_time.windows;
    put(
        "latency-over-time",
        Chart {
            title: format!(
                "Response time per {} s window",
                report.latency_over_time.window_s
            ),
            x_label: "seconds from start (intended send time)".into(),
            y_label: "ms".into(),
            x_axis: XAxis::Linear,
            series: vec![
                series("p50", w.iter().map(|x| (x.t_s as f64, x.p50_ms)).collect()),
                series("p99", w.iter().map(|x| (x.t_s as f64, x.p99_ms)).collect()),
            ],
        },
    )?;
    put(
        "percentiles",
        Chart {
            title: "Latency by percentile (all records but CLOSE)".into(),
            x_label: "percentile".into(),
            y_label: "ms".into(),
            x_axis: XAxis::PercentileLog,
            series: vec![
                series("response", spectrum(&overall.response)),
                series("service", spectrum(&overall.service)),
                series("schedule lag", spectrum(&overall.lag)),
            ],
        },
    )?;
    let pts = &report.resources.series;
    let first_run = |f: fn(&super::report::ResourcePoint) -> Option<f64>| -> Vec<(f64, f64)> {
        pts.iter()
            .filter(|p| p.run == 0)
            .filter_map(|p| Some((p.t_s, f(p)?)))
            .collect()
    };
    put(
        "resources",
        Chart {
            title: "CPU over time (first run)".into(),
            x_label: "seconds from start".into(),
            y_label: "% of a core".into(),
            x_axis: XAxis::Linear,
            series: vec![
                series("relay CPU", first_run(|p| p.relay_cpu_pct)),
                series("lt CPU", first_run(|p| Some(p.harness_cpu_pct))),
            ],
        },
    )?;
    put(
        "memory",
        Chart {
            title: "Relay RSS over time (first run)".into(),
            x_label: "seconds from start".into(),
            y_label: "MB".into(),
            x_axis: XAxis::Linear,
            series: vec![series("relay RSS", first_run(|p| p.relay_rss_mb))],
        },
    )?;
    Ok(written)
}

/// `--hgrm`: the overall distributions in HdrHistogram's percentile-distribution format.
pub fn write_hgrm(names: &Names, tally: &Tally) -> anyhow::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let overall = tally.overall();
    for (what, h) in [
        ("response", &overall.response),
        ("service", &overall.service),
        ("schedule-lag", &overall.lag),
    ] {
        let path = names.dir.join(format!("{}-{what}.hgrm", names.stem));
        let mut w = create_new(&path)?;
        hgrm::write_percentiles(h, 1_000.0, 5, &mut w)
            .and_then(|_| w.flush())
            .with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// A comparison's chart: response-time percentiles of both sides, runs merged.
pub fn write_compare_chart(
    names: &Names,
    a: &super::compare::Side,
    b: &super::compare::Side,
) -> anyhow::Result<Vec<String>> {
    let file = format!("{}-percentiles.svg", names.stem);
    let chart = Chart {
        title: "Response time by percentile, A vs B (runs merged)".into(),
        x_label: "percentile".into(),
        y_label: "ms".into(),
        x_axis: XAxis::PercentileLog,
        series: vec![
            series(
                &format!("A: {}", a.name),
                spectrum(&a.tally().overall().response),
            ),
            series(
                &format!("B: {}", b.name),
                spectrum(&b.tally().overall().response),
            ),
        ],
    };
    write_text(&names.dir.join(&file), &svg::render(&chart))?;
    Ok(vec![file])
}
