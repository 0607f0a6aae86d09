//! `lt replay`: guard the target, plan, then play the trace and summarise.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, Context};

use crate::analyze::report::Report;
use crate::cli::ReplayArgs;
use crate::guard;
use crate::replay::{self, Config, Plan, Speed, Summary};
use crate::target;
use crate::terminal;
use crate::units;

pub fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    no_huge_pages();
    let url = args.relay.clone().ok_or_else(|| {
        anyhow!("no relay given: pass --relay ws://127.0.0.1:PORT/ (or RELAY_URL); lt has no default target")
    })?;
    // The guard runs before anything else touches the network, dry run included.
    let target = target::check(&args.target, &url, target::Role::Load)?;
    let scraping = relay_side(&args)?;
    let plan = replay::plan::plan(
        &args.trace,
        args.load.speed,
        args.load.clients,
        shard_of(&args)?,
    )?;
    let fds = replay::fds::raise().context("reading the file descriptor limit")?;
    if !args.dry_run {
        replay::fds::check(plan.connections_played(), &fds).map_err(|e| anyhow!(e))?;
    }
    let load = args.load.load();
    start_at_ahead(load.start_at)?;
    let reconcile = load.reconcile_for(&target);
    // NIP-11 before any load; a dry run asks only with --preflight (it opens no socket).
    let preflight = (!args.dry_run || args.preflight)
        .then(|| replay::preflight::run(&target, &args.trace, &args.target.ca_files))
        .transpose()?;
    if args.dry_run {
        print_plan(&args, &plan, &target, reconcile, preflight.as_ref(), &fds);
    }
    if let Some(p) = &preflight {
        replay::preflight::refuse_if_strict(p, args.load.strict_limits)?;
    }
    if args.dry_run {
        return Ok(ExitCode::SUCCESS);
    }
    // Before the run, on stderr (stdout is the run's summary, verdict first), and only what
    // a relay said: a relay that serves no document gets its note in the report.
    if let Some(p) = preflight.as_ref().filter(|p| p.document.is_some()) {
        for line in replay::preflight::describe(p) {
            eprintln!("{line}");
        }
    }
    let out = args
        .output
        .clone()
        .unwrap_or_else(|| default_output(&args.trace));
    let mut cfg = Config::new(&load, target, args.relay_pid);
    cfg.preflight = preflight;
    cfg.scrape(&scraping)?;
    let stop = replay::Stop::new();
    // A second Ctrl-C ends lt at once, as an interrupted command ends: status 130.
    terminal::on_interrupt(stop.clone(), load.timeout, || std::process::exit(130))?;
    let pid = args.relay_pid.filter(|_| args.profile);
    let summary = crate::profile::around(pid, &out, || {
        replay::run(
            &args.trace,
            &plan,
            &out,
            cfg,
            &stop,
            terminal::ProgressLine::new(plan.records_played()),
        )
    })?;
    out!(
        "{}",
        render(&summary, &plan, summary_report(&summary).as_ref())
    );
    if summary.trailer.interrupted {
        eprintln!(
            "lt: interrupted; results so far are in {} (records not sent are marked not_sent)",
            summary.results.display()
        );
        return Ok(ExitCode::from(130));
    }
    Ok(ExitCode::SUCCESS)
}

fn start_at_ahead(start_at: Option<chrono::DateTime<chrono::Utc>>) -> anyhow::Result<()> {
    match start_at.filter(|at| *at <= chrono::Utc::now()) {
        Some(at) => Err(anyhow!(
            "--start-at {}: already past; give an instant after the connect phase, e.g. a minute from now",
            replay::config::rfc3339(at)
        )),
        None => Ok(()),
    }
}

/// What is read of the relay's side during the run: the relay process (which must exist)
/// and the scrape sources, whose hosts pass the guard now, before anything is sent; a dry
/// run reads none of them (nor serves lt's live metrics).
fn relay_side(args: &ReplayArgs) -> anyhow::Result<crate::scrape::Scraping> {
    relay_pid_exists(args.relay_pid)?;
    args.scrape.scraping(
        &args.target.allow_hosts,
        &args.target.ca_files,
        !args.dry_run,
    )
}

/// A pid that names no process would be "sampled" as nothing all run long.
fn relay_pid_exists(pid: Option<u32>) -> anyhow::Result<()> {
    match pid {
        Some(pid) if !std::path::Path::new(&format!("/proc/{pid}/stat")).exists() => Err(anyhow!(
            "--relay-pid {pid}: no such process; give the pid of the running relay (pgrep -f nostr-rs-relay)"
        )),
        _ => Ok(()),
    }
}

/// The summary's figures and trust verdict are analyze's, from the file just written:
/// one definition of each (records unanswered in time count at the timeout; CLOSEs have
/// no latency; lt's CPU judged by its p95), so the two never disagree about one run.
/// A part of a sharded run is summarised as itself; the run's report merges all parts.
/// A file that cannot be read back is said on stderr, and the summary goes without.
fn summary_report(summary: &Summary) -> Option<Report> {
    let report = crate::analyze::read_one(&summary.results)
        .map(|runs| crate::analyze::report::build(&runs, &crate::analyze::Ids::new(), &[]));
    if let Err(e) = &report {
        eprintln!("lt: reading the results back for the summary: {e:#}");
    }
    report.ok()
}

fn default_output(trace: &std::path::Path) -> PathBuf {
    let stem = trace
        .file_stem()
        .map_or_else(|| "trace".to_owned(), |s| s.to_string_lossy().into_owned());
    let now = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    PathBuf::from("reports/runs").join(format!("{stem}-{now}.ltr"))
}

fn print_plan(
    args: &ReplayArgs,
    plan: &Plan,
    target: &guard::Target,
    reconcile: bool,
    preflight: Option<&crate::capture::results::Preflight>,
    fds: &replay::fds::Limit,
) {
    match preflight {
        None => outln!("dry run: nothing sent, no socket opened"),
        Some(_) => outln!("dry run: no load sent; one NIP-11 request (--preflight)"),
    }
    outln!(
        "target        {} — allowed ({})",
        target.display_host(),
        if target.loopback() {
            "loopback"
        } else {
            "on the allow-list of dedicated test hosts"
        }
    );
    for line in preflight
        .map(replay::preflight::describe)
        .unwrap_or_default()
    {
        outln!("{line}");
    }
    print_trace(args, plan, fds);
    print_pace(args, plan, reconcile);
}

/// The dry run's lines about the trace and what playing it takes: records, shard,
/// descriptors, connections.
fn print_trace(args: &ReplayArgs, plan: &Plan, fds: &replay::fds::Limit) {
    outln!(
        "trace         {} (fingerprint sha256:{})",
        args.trace.display(),
        plan.fingerprint
    );
    outln!(
        "records       {} ({} events), {} of frames",
        units::count(plan.records),
        units::count(plan.events),
        units::bytes(plan.frame_bytes)
    );
    if let Some(p) = &plan.part {
        outln!(
            "shard         {} of {}: {} records ({}% of the trace) on {} connections (c mod {} = {})",
            p.index,
            p.count,
            units::count(p.records),
            format!("{:.1}", 100.0 * p.records as f64 / plan.records.max(1) as f64),
            p.connections,
            p.count,
            p.index
        );
    }
    outln!(
        "descriptors   about {} needed, {} allowed{}{}",
        units::count(replay::fds::needed(plan.connections_played())),
        units::count(fds.soft),
        if fds.soft > fds.was {
            format!(" (soft limit raised from {})", units::count(fds.was))
        } else {
            String::new()
        },
        match replay::fds::check(plan.connections_played(), fds) {
            Ok(()) => String::new(),
            Err(e) => format!(": too few, the run would be refused — {e}"),
        }
    );
    outln!(
        "connections   {} on {} network thread(s){}",
        plan.connections_played(),
        replay::network_threads(plan, args.load.threads, args.load.speed),
        plan.clients_capped()
            .map(|c| format!(" ({c})"))
            .unwrap_or_default()
    );
}

/// The dry run's lines about time: duration, peak rate, gaps, in-flight caps and the mix.
fn print_pace(args: &ReplayArgs, plan: &Plan, reconcile: bool) {
    let stopping = args
        .load
        .duration
        .map(|d| format!(" (stopping after {d} s)"))
        .unwrap_or_default();
    // The plan's figures are at the chosen speed, or at 1x for `--speed max` (see `plan`).
    let at = match args.load.speed {
        Speed::Max => {
            outln!(
                "duration      as fast as the in-flight caps allow (--speed max; the trace spans {:.1} s at 1x){stopping}",
                plan.duration_s
            );
            "1x".to_string()
        }
        paced => {
            outln!(
                "duration      {:.1} s at {paced}{stopping}",
                plan.duration_s
            );
            paced.to_string()
        }
    };
    outln!(
        "peak rate     {} records in second {} (at {at})",
        units::count(plan.peak_per_s),
        plan.peak_second
    );
    outln!("largest gap   {:.3} s (at {at})", plan.largest_gap_s);
    outln!(
        "in flight     at most {} overall, {} per connection; at the cap: {}; timeout {:?}; reconcile {}",
        args.load.max_in_flight,
        args.load.per_conn_in_flight,
        args.load.on_overload,
        args.load.timeout,
        if reconcile { "on" } else { "off" }
    );
    outln!("mix");
    for (kind, n) in &plan.by_kind {
        outln!(
            "  {kind:<22} {:>10} {:>6.1}%",
            units::count(*n),
            100.0 * *n as f64 / plan.records.max(1) as f64
        );
    }
}

/// The end-of-run summary: analyze's trust verdict first (when the results could be read
/// back), then counts by outcome and analyze's latency figures.
pub fn render(s: &Summary, plan: &Plan, report: Option<&Report>) -> String {
    let mut out = String::new();
    if let Some(r) = report {
        let warn = if r.trust.trustworthy { "" } else { "WARNING: " };
        out.push_str(&format!("{warn}{}\n", r.trust.verdict));
        for reason in &r.trust.reasons {
            out.push_str(&format!("  - {reason}\n"));
        }
    }
    if let Some(capped) = plan.clients_capped() {
        out.push_str(&format!("NOTE: {capped}\n"));
    }
    out.push_str(&format!("results       {}\n", s.results.display()));
    out.push_str(&format!(
        "records       {} in {:.1} s\n",
        units::count(s.trailer.outcomes),
        s.trailer.elapsed_ns as f64 / 1e9
    ));
    for (label, n) in &s.trailer.by_outcome {
        out.push_str(&format!(
            "  {label:<24} {:>10} {:>6.1}%\n",
            units::count(*n),
            100.0 * *n as f64 / plan.records_played().max(1) as f64
        ));
    }
    let latency = report.map(|r| &r.measured.latency);
    if let Some(p) = latency.and_then(|l| l.overall.response_ms.as_ref()) {
        let bound = match p.at_timeout {
            0 => String::new(),
            n => format!(", {} at the timeout (a lower bound)", units::count(n)),
        };
        out.push_str(&format!(
            "response time p50 {} ms · p99 {} ms · max {} ms (completed − intended; {} requests{bound})\n",
            p.p50,
            p.p99,
            p.max,
            units::count(p.count)
        ));
    }
    if let Some(l) = latency {
        if let (Some(lag), Some(own)) = (&l.overall.schedule_lag_ms, &l.own_lag_ms) {
            out.push_str(&format!(
                "schedule lag  p99 {} ms · max {} ms (sent − intended) · lt's own part p99 {} ms\n",
                lag.p99, lag.max, own.p99
            ));
        }
    }
    let t = &s.trailer;
    if s.connect_failures + t.unparseable_frames + t.oversized_frames + t.notices + t.late_acks > 0
    {
        out.push_str(&format!(
            "also          {} failed connects · {} unparseable and {} oversized relay frames · {} NOTICEs · {} late OKs\n",
            s.connect_failures, t.unparseable_frames, t.oversized_frames, t.notices, t.late_acks
        ));
    }
    if let Some(e) = &s.reconcile_error {
        out.push_str(&format!(
            "reconciliation failed ({e}); unacknowledged events stay timeout\n"
        ));
    }
    if let Some(p) = &plan.part {
        out.push_str(&format!(
            "part          {} of {}: these figures are this part's; `lt analyze` given all {} parts' results reports the run\n",
            p.index, p.count, p.count
        ));
    }
    out
}

/// Asks the kernel not to back lt's memory with transparent huge pages. The allocator asks
/// for them, and a 2 MiB page is resident as a whole however little of it is used: replay's
/// peak resident set was up to twice what it touched (85 MiB against 60 MiB replaying 1M
/// records into the bench's peer) and varied by several MiB from run to run, with where the
/// heap happened to cross 2 MiB boundaries. Replay's CPU goes to system calls, not TLB
/// misses; CPU per event did not change measurably. Best effort: a kernel without the
/// option leaves things as they were.
fn no_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE takes plain integer arguments and only sets a flag on this
    // process's address space.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// `--shard I/N`, or `--shards N` with I from JOB_COMPLETION_INDEX (a Kubernetes Indexed
/// Job's pod index).
fn shard_of(args: &ReplayArgs) -> anyhow::Result<Option<(u32, u32)>> {
    if let Some(s) = args.shard {
        return Ok(Some(s));
    }
    let Some(count) = args.shards else {
        return Ok(None);
    };
    let index = std::env::var("JOB_COMPLETION_INDEX").map_err(|_| {
        anyhow!("--shards {count}: JOB_COMPLETION_INDEX is not set (a Kubernetes Indexed Job sets it); or give --shard I/{count}")
    })?;
    let index: u32 = index
        .trim()
        .parse()
        .map_err(|_| anyhow!("--shards {count}: JOB_COMPLETION_INDEX {index:?} is not a number"))?;
    if count == 0 || index >= count {
        return Err(anyhow!(
            "--shards {count}: JOB_COMPLETION_INDEX {index} must be below {count}"
        ));
    }
    Ok(Some((index, count)))
}
