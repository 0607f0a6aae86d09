//! `lt synth`: build a seeded, signed trace into a capture file.

use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, Context};
use indicatif::{ProgressBar, ProgressStyle};

use crate::capture::{staged, Op};
use crate::cli::SynthArgs;
use crate::synth::{self, Summary};
use crate::units;
use crate::workload::{default_creators, Options};

/// rnostr 0.4.8 refuses events more than three years old; warn a little before that.
const RNOSTR_MAX_AGE_S: u64 = 3 * 365 * 86_400;
/// rnostr refuses events more than 15 minutes in the future.
const RNOSTR_MAX_FUTURE_S: u64 = 900;

pub fn run(args: SynthArgs) -> anyhow::Result<ExitCode> {
    let opts = Options {
        seed: args.seed,
        clients: args.clients,
        duration_s: args.duration,
        rate_eps: args.rate,
        view_share: args.mix,
        read_share: args.read_share,
        edit_share: args.edit_share,
        nip71_share: args.nip71_share,
        creators: args
            .creators
            .unwrap_or_else(|| default_creators(args.clients)),
        epoch: args.epoch,
        live_share: args.live_share,
    };
    opts.validate().map_err(|e| anyhow!(e))?;
    warn_about_epoch(&opts);
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let progress = progress_bar(opts.expected_records());

    let to_stdout = args.output.as_deref() == Some(Path::new("-"));
    let summary = if to_stdout {
        let out = BufWriter::with_capacity(1 << 20, io::stdout());
        let (mut out, summary) = synth::write(&opts, out, threads, &progress)?;
        out.flush().context("writing the trace to stdout")?;
        summary
    } else {
        let path = args.output.unwrap_or_else(|| {
            let name = args.name.unwrap_or_else(|| format!("seed-{}", opts.seed));
            PathBuf::from("captures").join(format!("{name}.ltc"))
        });
        if path.exists() && !args.force {
            return Err(anyhow!(
                "{}: already exists, and results may name it by its fingerprint; pass --force to replace it, or -o another path",
                path.display()
            ));
        }
        let summary = write_file(&opts, &path, threads, &progress)?;
        progress.finish_and_clear();
        outln!("wrote {}", path.display());
        summary
    };
    progress.finish_and_clear();
    let text = render(&opts, &summary);
    if to_stdout {
        eprint!("{text}");
    } else {
        out!("{text}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes beside the destination and renames at the end, so a failed or interrupted synth
/// never leaves a half-written file under the final name.
fn write_file(
    opts: &Options,
    path: &Path,
    threads: usize,
    progress: &ProgressBar,
) -> anyhow::Result<Summary> {
    let out = staged::create(path, "lt-synth")?;
    let (out, summary) = synth::write(opts, out, threads, progress)
        .with_context(|| format!("writing {}", path.display()))?;
    staged::persist(out, path)?;
    Ok(summary)
}

fn progress_bar(expected_records: f64) -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(expected_records as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} synth [{elapsed_precise}] {wide_bar} {human_pos}/~{human_len} records ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

fn warn_about_epoch(opts: &Options) {
    let now = chrono::Utc::now().timestamp().max(0) as u64;
    let last = opts.epoch + opts.duration_s.ceil() as u64;
    if now.saturating_sub(opts.epoch) > RNOSTR_MAX_AGE_S {
        eprintln!(
            "lt: warning: --epoch {} is over 3 years ago; rnostr rejects such events as too old (pass a later --epoch)",
            opts.epoch
        );
    }
    if last > now + RNOSTR_MAX_FUTURE_S {
        eprintln!(
            "lt: warning: the trace's created_at runs to {last}, more than 15 minutes past now ({now}); relays reject events from the future"
        );
    }
}

fn render(opts: &Options, s: &Summary) -> String {
    let t = &s.trailer;
    let secs = s.elapsed.as_secs_f64().max(1e-9);
    let span_s = t.last_offset_us as f64 / 1e6;
    let mut out = String::new();
    out.push_str(&format!(
        "  records      {} ({} events) in {:.2} s on {} threads, {} records/s\n",
        units::count(t.records),
        units::count(t.events),
        secs,
        s.threads,
        units::count((t.records as f64 / secs) as u64),
    ));
    out.push_str(&format!(
        "  traffic      {span_s:.1} s, {:.1} events/s (asked {}), {} clients, seed {}\n",
        t.events as f64 / span_s.max(1e-9),
        opts.rate_eps,
        opts.clients,
        opts.seed
    ));
    out.push_str(&format!(
        "  size         {} on disk for {} of frames ({:.1} bytes/record)\n",
        units::bytes(s.bytes),
        units::bytes(t.frame_bytes),
        s.bytes as f64 / t.records.max(1) as f64
    ));
    out.push_str(&format!("  fingerprint  sha256:{}\n", t.fingerprint));
    out.push_str("  by kind\n");
    for (op, st) in &s.by_op {
        out.push_str(&format!(
            "    {:<22} {:>12} {:>6.1}%  avg {:>6} B\n",
            op.label(),
            units::count(st.records),
            100.0 * st.records as f64 / t.records.max(1) as f64,
            st.frame_bytes / st.records.max(1)
        ));
    }
    let views = count_role(s, |op| {
        matches!(
            op,
            Op::Event {
                role: crate::capture::Role::View,
                ..
            }
        )
    });
    let posts = count_role(s, |op| matches!(op, Op::Event { kind: 30078, .. }));
    if views + posts > 0 {
        out.push_str(&format!(
            "  mix          {:.1}% views among views + video posts (asked {:.1}%)\n",
            100.0 * views as f64 / (views + posts) as f64,
            100.0 * opts.view_share
        ));
    }
    if opts.live_clients() > 0 {
        let sessions = count_role(s, |op| {
            matches!(
                op,
                Op::Req {
                    query: crate::capture::Query::LiveFeed
                }
            )
        });
        out.push_str(&format!(
            "  live         {} of {} clients hold live subscriptions: {} viewing sessions (a feed, and the watched video's views once there is a video)\n",
            units::count(u64::from(opts.live_clients())),
            units::count(u64::from(opts.clients)),
            units::count(sessions)
        ));
    }
    out
}

fn count_role(s: &Summary, f: impl Fn(Op) -> bool) -> u64 {
    s.by_op
        .iter()
        .filter(|(op, _)| f(**op))
        .map(|(_, st)| st.records)
        .sum()
}
