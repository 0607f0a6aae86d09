//! Analysis of results files, as a pipeline that runs one way:
//!
//! 1. [`read`]: one streaming pass per file into a [`tally::Tally`] (with [`class`] and
//!    [`timeline`]), files of one trace merged into [`Runs`];
//! 2. [`measure`]: every figure of a report, from the tally, without I/O;
//! 3. [`judge`]: the verdicts on those figures ([`trust`], [`rules`]), computed once;
//! 4. [`report`]: the two together, as the JSON has them;
//! 5. [`render`]: Markdown, charts and `.hgrm` text; [`output`]: file names and writing.
//!
//! Comparisons of two sets of runs of one trace ([`compare`], with [`verdict`] and
//! [`thresholds`]) and A/A calibrations ([`calibrate`]) reuse steps 1–2.

pub mod against;
pub mod calibrate;
pub mod checks;
pub mod class;
pub mod compare;
pub mod deliveries;
pub mod gate;
pub mod judge;
pub mod measure;
pub mod model;
pub mod output;
pub mod read;
pub mod render;
pub mod report;
pub mod rules;
pub mod scraped;
pub mod stats;
pub mod tally;
pub mod thresholds;
pub mod timeline;
pub mod trust;
pub mod verdict;

pub use read::{
    option_differences, read_file, read_merged, read_merged_each, read_one, same_trace,
    Completeness, Ids, Partial, Runs,
};

use std::path::{Path, PathBuf};

use output::Names;
use report::Report;

/// What one analysis wrote.
pub struct Written {
    pub json: PathBuf,
    pub markdown: PathBuf,
    pub report: Report,
}

/// What a report is asked for beyond its figures.
#[derive(Debug, Clone, Default)]
pub struct Asked {
    /// Event (or subscription) ids of example records, read from the trace.
    pub ids: Ids,
    /// Also write the `.hgrm` distributions.
    pub hgrm: bool,
    /// The gate (`--check`), and whether an untrustworthy run may pass it.
    pub checks: Vec<checks::Expr>,
    pub allow_untrusted: bool,
}

/// The report of `runs`, measured, judged, checked, rendered and written into `dir`: JSON,
/// Markdown, charts, and what `asked` adds. A check naming no metric of the report is an
/// error before anything is written.
pub fn write_report(runs: &Runs, dir: &Path, asked: &Asked) -> anyhow::Result<Written> {
    let profiles = crate::profile::load_all_beside(&runs.files);
    let mut report = report::build(runs, &asked.ids, &profiles);
    let names = output::names(dir, "load-report", "load-test-report");
    let charts: Vec<(String, String)> = render::charts::report(&report.measured, &runs.tally)
        .into_iter()
        .map(|(what, chart)| {
            (
                names.beside(&format!("{what}.svg")),
                render::svg::render(&chart),
            )
        })
        .collect();
    report.charts = charts.iter().map(|(file, _)| file.clone()).collect();
    // Checked before any file is written: a gate with a typo writes nothing.
    report
        .check(&asked.checks, asked.allow_untrusted)
        .map_err(|e| anyhow::anyhow!(e))?;
    output::ensure_dir(dir)?;
    for (file, svg) in &charts {
        output::write_text(&names.dir.join(file), svg)?;
    }
    if asked.hgrm {
        let texts = render::hgrm::overall(&runs.tally)
            .map_err(|e| anyhow::anyhow!("rendering the .hgrm files: {e}"))?;
        for (what, text) in texts {
            output::write_beside(&names, &format!("{what}.hgrm"), &text)?;
        }
    }
    output::write_json(&names.json, &report)?;
    output::write_text(&names.markdown, &render::report::render(&report))?;
    Ok(Written {
        json: names.json,
        markdown: names.markdown,
        report,
    })
}

/// Writes comparison `c` of `a` and `b` into `dir` as `<stem>-DATE[-N]`: its chart (named
/// in `c.charts`), JSON and Markdown. Returns the names taken.
pub fn write_comparison(
    a: &compare::BuildRuns,
    b: &compare::BuildRuns,
    c: &mut compare::Comparison,
    dir: &Path,
    stem: &str,
) -> anyhow::Result<Names> {
    output::ensure_dir(dir)?;
    let names = output::names(dir, stem, stem);
    let (what, chart) = render::charts::comparison(a, b);
    let file = output::write_beside(&names, &format!("{what}.svg"), &render::svg::render(&chart))?;
    c.charts = vec![file];
    output::write_json(&names.json, c)?;
    output::write_text(&names.markdown, &render::comparison::render(c))?;
    Ok(names)
}

/// Writes a calibration's JSON and Markdown into `dir`; returns the Markdown's path.
pub fn write_calibration(dir: &Path, c: &calibrate::Calibration) -> anyhow::Result<PathBuf> {
    let names = output::names(dir, "calibration", "calibration");
    output::write_json(&names.json, c)?;
    output::write_text(&names.markdown, &render::calibration::render(c))?;
    Ok(names.markdown)
}

/// Writes `drafts` into `dir` (created if needed), one Markdown file each; an existing file
/// is never replaced. Returns each draft's title and path.
pub fn write_drafts(
    dir: &Path,
    drafts: &[render::issues::Draft],
) -> anyhow::Result<Vec<(String, String)>> {
    output::ensure_dir(dir)?;
    let mut written = Vec::new();
    for d in drafts {
        let path = dir.join(&d.file);
        output::write_text(&path, &d.body)?;
        written.push((d.title.clone(), path.display().to_string()));
    }
    Ok(written)
}
