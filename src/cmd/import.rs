//! `lt import`: an event dump into a trace.

use std::fs::{self, File};
use std::io::{self, IsTerminal, Read};
use std::path::Path;
use std::process::ExitCode;

use anyhow::anyhow;
use indicatif::{ProgressBar, ProgressStyle};

use crate::capture::staged;
use crate::capture::trace::ImportTiming;
use crate::cli::ImportArgs;
use crate::import::{self, Options, Summary, FIRST_LINES_KEPT};
use crate::units;

/// Kinds the summary lists one by one; the rest are counted together.
const KINDS_SHOWN: usize = 12;

pub fn run(args: ImportArgs) -> anyhow::Result<ExitCode> {
    let from_stdin = args.input.as_os_str() == "-";
    let timing = match args.rate {
        Some(rate_eps) => ImportTiming::Rate {
            rate_eps,
            seed: args.seed,
        },
        None => ImportTiming::CreatedAt {
            max_gap_us: u64::try_from(args.max_gap.as_micros()).unwrap_or(u64::MAX),
        },
    };
    let opts = Options {
        input: if from_stdin {
            "-".to_owned()
        } else {
            args.input
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| args.input.display().to_string())
        },
        timing,
        clients: args.clients,
        verify: !args.no_verify,
        strict: args.strict,
    };
    opts.validate().map_err(|e| anyhow!(e))?;
    if args.output.as_os_str() == "-" {
        return Err(anyhow!(
            "-o -: lt import writes a capture file, not standard output; give a path"
        ));
    }
    let label = if from_stdin {
        "standard input".to_owned()
    } else {
        args.input.display().to_string()
    };
    let input: Box<dyn Read> = if from_stdin {
        Box::new(io::stdin().lock())
    } else {
        let file = File::open(&args.input).map_err(|err| import::Error::Open {
            input: label.clone(),
            err,
        })?;
        if file.metadata().is_ok_and(|m| m.is_dir()) {
            return Err(anyhow!("{label}: a directory, not an event dump"));
        }
        Box::new(file)
    };
    let progress = progress_bar();
    let result = write_file(input, &label, &opts, &args.output, &progress);
    progress.finish_and_clear();
    let summary = result?;
    eprint!("{}", render(&opts, &label, &args.output, &summary));
    Ok(ExitCode::SUCCESS)
}

/// Writes beside the destination and renames at the end, so a failed, strict or interrupted
/// import never leaves a file under the final name.
fn write_file(
    input: Box<dyn Read>,
    label: &str,
    opts: &Options,
    path: &Path,
    progress: &ProgressBar,
) -> anyhow::Result<Summary> {
    let out = staged::create(path, "lt-import")?;
    let (out, summary) =
        import::import(input, label, out, opts, progress).map_err(|e| match e {
            // Input errors name the input already; only the output's need its name.
            import::Error::Write(_) => anyhow!(e).context(format!("{}", path.display())),
            e => anyhow!(e),
        })?;
    if summary.trailer.events == 0 {
        return Err(anyhow!(
            "{label}: no event to import ({}); nothing written",
            lines_text(&summary)
        ));
    }
    staged::persist(out, path)?;
    Ok(summary)
}

fn progress_bar() -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} import [{elapsed_precise}] {human_pos} lines ({per_sec})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar
}

/// "1,240 lines: 1,234 events, 3 blank, 3 bad"
fn lines_text(s: &Summary) -> String {
    format!(
        "{} lines: {} events, {} blank, {} bad",
        units::count(s.lines),
        units::count(s.trailer.events),
        units::count(s.blank),
        units::count(s.bad_lines())
    )
}

fn render(opts: &Options, label: &str, output: &Path, s: &Summary) -> String {
    let t = &s.trailer;
    let mut out = format!(
        "lt: imported {} events from {label}{} into {}\n",
        units::count(t.events),
        if s.compressed { " (zstd)" } else { "" },
        output.display()
    );
    out.push_str(&format!("  lines        {}\n", lines_text(s)));
    out.push_str(&bad_lines_text(s));
    let used = match s.clients_used {
        Some(n) => format!(", {} with events", units::count(u64::from(n))),
        None => String::new(),
    };
    out.push_str(&format!(
        "  connections  {}{used} (one author stays on one)\n",
        units::count(u64::from(opts.clients))
    ));
    let span_s = t.last_offset_us as f64 / 1e6;
    let timing = match &opts.timing {
        ImportTiming::CreatedAt { max_gap_us } => format!(
            "created_at spacing, gaps at most {} s",
            *max_gap_us as f64 / 1e6
        ),
        ImportTiming::Rate { rate_eps, seed } => {
            format!("Poisson arrivals at {rate_eps} events/s, seed {seed}")
        }
    };
    out.push_str(&format!(
        "  span         {span_s:.1} s, {:.1} events/s ({timing})\n",
        t.events as f64 / span_s.max(1e-6)
    ));
    out.push_str(&format!(
        "  size         {} on disk for {} of frames\n",
        units::bytes(s.bytes),
        units::bytes(t.frame_bytes)
    ));
    out.push_str(&format!("  fingerprint  sha256:{}\n", t.fingerprint));
    out.push_str(&kinds_text(s));
    let secs = s.elapsed.as_secs_f64().max(1e-9);
    out.push_str(&format!(
        "  rate         {} events/s imported ({secs:.2} s), ids and signatures {}\n",
        units::count((t.events as f64 / secs) as u64),
        if opts.verify {
            "checked"
        } else {
            "not checked"
        }
    ));
    out.push_str(&format!(
        "  peak memory  {}\n",
        match peak_memory_kib() {
            Some(kib) => format!("{kib} KiB"),
            None => "unknown (no /proc/self/status)".to_owned(),
        }
    ));
    out
}

/// The bad lines by reason, each with the numbers of its first lines.
fn bad_lines_text(s: &Summary) -> String {
    let mut out = String::new();
    for (i, (reason, bad)) in s.bad.iter().enumerate() {
        let numbers: Vec<String> = bad.first.iter().map(|n| n.to_string()).collect();
        out.push_str(&format!(
            "  {:<12} {:<20} {:>8}  {} {}{}\n",
            if i == 0 { "bad lines" } else { "" },
            reason.label(),
            units::count(bad.count),
            if bad.count == 1 { "line" } else { "lines" },
            numbers.join(", "),
            if bad.count > FIRST_LINES_KEPT as u64 {
                ", …"
            } else {
                ""
            }
        ));
    }
    out
}

/// A line per kind, the most frequent first; the rest summed on one line.
fn kinds_text(s: &Summary) -> String {
    let mut out = String::from("  by kind\n");
    let mut kinds: Vec<_> = s.by_op.iter().collect();
    kinds.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    for (op, n) in kinds.iter().take(KINDS_SHOWN) {
        out.push_str(&format!(
            "    {:<22} {:>12} {:>6.1}%\n",
            op.label(),
            units::count(**n),
            100.0 * **n as f64 / s.trailer.events.max(1) as f64
        ));
    }
    if kinds.len() > KINDS_SHOWN {
        let rest: u64 = kinds[KINDS_SHOWN..].iter().map(|(_, n)| **n).sum();
        out.push_str(&format!(
            "    {:<22} {:>12}\n",
            format!("{} other kinds", kinds.len() - KINDS_SHOWN),
            units::count(rest)
        ));
    }
    out
}

/// The process's peak resident set (VmHWM), in KiB.
fn peak_memory_kib() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}
