//! `lt ab`: two relay builds, the same trace, fresh relays per run in ABBA order; each run
//! replayed, analyzed, and both sides compared.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};

use super::{compare as compare_cmd, replay as replay_cmd};
use crate::ab::relay::{self, BuildSpec, RunningRelay};
use crate::ab::{run_order, Side};
use crate::analyze::calibrate;
use crate::analyze::compare::{self, FailedRun};
use crate::analyze::thresholds::Thresholds;
use crate::cli::{AbArgs, LoadArgs};
use crate::guard::{self, AllowList};
use crate::replay::{self, Plan, Stop};

/// How long a relay may take to exit after SIGTERM before it gets SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Lines of a relay's log kept with a failed run.
const LOG_TAIL_LINES: usize = 20;

/// What one run left behind.
struct Run {
    number: u32,
    side: Side,
    name: String,
    results: Option<PathBuf>,
    failure: Option<(String, String)>,
}

pub fn run(args: AbArgs) -> anyhow::Result<ExitCode> {
    // clap's `requires` counts a flag's default (false) as present, so this is checked here.
    if args.sessions.is_some() && !args.aa {
        return Err(anyhow!(
            "--sessions counts A/A calibration sessions: it needs --aa"
        ));
    }
    let a = BuildSpec::parse(&args.a, args.a_config.clone()).map_err(|e| anyhow!("--a: {e}"))?;
    let b = match &args.b {
        Some(b) => BuildSpec::parse(b, args.b_config.clone()).map_err(|e| anyhow!("--b: {e}"))?,
        None => again(&a),
    };
    if a.name == b.name {
        return Err(anyhow!(
            "--a and --b are both named {:?}: give the builds different names (NAME=CMD)",
            a.name
        ));
    }
    let thresholds = Thresholds::new(args.threshold.clone());
    let plan = replay::plan::plan(&args.trace, args.load.speed, args.load.clients)?;
    let out = out_dir(&args, &a, &b)?;
    // Ctrl-C stops the replay under way (or, between runs, after the current step); a
    // second one kills the relay lt started and ends lt at once.
    let stop = Stop::new();
    let relay_group = Arc::new(AtomicI32::new(0));
    let group = relay_group.clone();
    super::on_interrupt(stop.clone(), args.load.timeout, move || {
        let pid = group.load(Ordering::Relaxed);
        if pid > 0 {
            // SAFETY: kill(2) on the process group lt started for the relay.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
    })?;
    let stop = Interrupt { stop, relay_group };
    if !args.aa {
        let done = session(&args, &a, &b, &thresholds, &plan, &out, &stop)?;
        return Ok(done.code);
    }
    // A/A: whole sessions, each in a folder of its own when there are several.
    let mut outcomes = Vec::new();
    let mut pool = Vec::new();
    let mut attempted = 0.0;
    let mut code = ExitCode::SUCCESS;
    let sessions = args.sessions.unwrap_or(1);
    for n in 1..=sessions {
        if stop.stop.requested() {
            break;
        }
        let (dir, folder) = if sessions == 1 {
            (out.clone(), ".".to_owned())
        } else {
            let folder = format!("session-{n:02}");
            (out.join(&folder), folder)
        };
        outln!("A/A session {n}/{sessions}");
        match session(&args, &a, &b, &thresholds, &plan, &dir, &stop) {
            Ok(done) => {
                outcomes.push(calibrate::outcome(&folder, &done.comparison));
                pool.extend(done.figures);
                attempted = done.attempted;
                code = done.code;
            }
            // One failed session (a relay that would not start) leaves the others' figures.
            Err(e) => {
                eprintln!("lt: A/A session {n}: {e:#}");
                outcomes.push(calibrate::failed(&folder, &format!("{e:#}")));
            }
        }
    }
    let c = calibrate::calibrate(&a.name, args.runs, outcomes, &pool, attempted, &thresholds);
    let md = crate::analyze::write_calibration(&out, &c)?;
    outln!("calibration: {}", c.verdict_line);
    outln!("calibration report: {}", md.display());
    Ok(code)
}

/// B of an A/A comparison: build A under another name.
fn again(a: &BuildSpec) -> BuildSpec {
    let stem: String = a.name.chars().take(34).collect();
    BuildSpec {
        name: format!("{stem}-again"),
        ..a.clone()
    }
}

/// What one comparison left: its report, every completed run's figures (for calibration)
/// and the exit code it asks for.
struct Session {
    comparison: compare::Comparison,
    figures: Vec<Vec<Option<f64>>>,
    attempted: f64,
    code: ExitCode,
}

/// One comparison: every run of both builds in ABBA order into `out`, then the comparison.
fn session(
    args: &AbArgs,
    a: &BuildSpec,
    b: &BuildSpec,
    thresholds: &Thresholds,
    plan: &Plan,
    out: &Path,
    stop: &Interrupt,
) -> anyhow::Result<Session> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let order = run_order(args.runs);
    outln!(
        "lt ab: {} (A) vs {} (B), {} runs each in the order {}; results in {}",
        a.name,
        b.name,
        args.runs,
        order.iter().map(|s| s.letter()).collect::<String>(),
        out.display()
    );
    let mut runs = Vec::new();
    for (i, side) in order.iter().enumerate() {
        if stop.stop.requested() {
            eprintln!("lt: interrupted; {} of {} runs done", i, order.len());
            break;
        }
        let spec = match side {
            Side::A => a,
            Side::B => b,
        };
        let number = i as u32 + 1;
        let run = one_run(number, *side, spec, args, plan, out, stop);
        match &run.failure {
            None => outln!(
                "run {number}/{} {} {}: done",
                order.len(),
                side.letter(),
                spec.name
            ),
            Some((e, _)) => outln!(
                "run {number}/{} {} {}: FAILED: {e}",
                order.len(),
                side.letter(),
                spec.name
            ),
        }
        runs.push(run);
    }
    finish(a, b, thresholds, &runs, out, stop.stop.requested())
}

/// `--out`, or `reports/ab/<A>-vs-<B>-<UTC>`; an existing folder must be empty.
fn out_dir(args: &AbArgs, a: &BuildSpec, b: &BuildSpec) -> anyhow::Result<PathBuf> {
    let out = args.out.clone().unwrap_or_else(|| {
        let now = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
        PathBuf::from("reports/ab").join(format!("{}-vs-{}-{now}", a.name, b.name))
    });
    if std::fs::read_dir(&out).is_ok_and(|mut d| d.next().is_some()) {
        return Err(anyhow!(
            "{}: the output folder is not empty; lt ab never mixes comparisons",
            out.display()
        ));
    }
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    Ok(out)
}

fn one_run(
    number: u32,
    side: Side,
    spec: &BuildSpec,
    args: &AbArgs,
    plan: &Plan,
    out: &Path,
    stop: &Interrupt,
) -> Run {
    let dir = out
        .join("runs")
        .join(format!("{number:02}-{}-{}", side.letter(), spec.name));
    let mut run = Run {
        number,
        side,
        name: spec.name.clone(),
        results: None,
        failure: None,
    };
    if let Err(e) = std::fs::create_dir_all(&dir) {
        run.failure = Some((format!("creating {}: {e}", dir.display()), String::new()));
        return run;
    }
    let relay = match relay::start(spec, &dir, args.ready_timeout) {
        Ok(r) => r,
        Err(e) => {
            let text = e.to_string();
            let (first, rest) = text.split_once('\n').unwrap_or((&text, ""));
            run.failure = Some((first.to_owned(), rest.to_owned()));
            return run;
        }
    };
    for w in &relay.warnings {
        eprintln!("lt: {}: {w}", spec.name);
    }
    if stop.stop.requested() {
        // Ctrl-C while the relay was starting: no replay into it.
        let error = "interrupted before the replay".to_owned();
        run.failure = stop_relay(relay, Some((error, String::new())));
        return run;
    }
    if let Some(addr) = relay.exposed.first() {
        // The guard for relays lt starts: test relays listen on loopback only.
        let error = format!(
            "refusing to load relay {}: it also listens on {addr} port {}, reachable from other hosts; bind it to 127.0.0.1 (as scripts/relay-configs do)",
            spec.name, relay.port
        );
        run.failure = stop_relay(relay, Some((error, String::new())));
        return run;
    }
    let results = dir.join("results.ltr");
    let pid = Some(relay.relay_pid).filter(|_| args.profile);
    let replayed = replay_cmd::profiled(pid, &results, || {
        replay_into(&relay, &args.load, &args.trace, plan, &results, stop)
    });
    match replayed {
        Ok(results) => run.results = Some(results),
        Err(e) => run.failure = Some((format!("{e:#}"), String::new())),
    }
    run.failure = stop_relay(relay, run.failure.take());
    if let (None, Some(results)) = (&run.failure, &run.results) {
        if let Err(e) = analyze_run(results, &dir, &args.trace) {
            run.failure = Some((
                format!("analyzing {}: {e:#}", results.display()),
                String::new(),
            ));
        }
    }
    run
}

/// Replays the trace into a running relay, sampling its process; returns the results path.
fn replay_into(
    relay: &RunningRelay,
    load: &LoadArgs,
    trace: &Path,
    plan: &Plan,
    results: &Path,
    interrupt: &Interrupt,
) -> anyhow::Result<PathBuf> {
    // The relay was started on 127.0.0.1 by us; the guard still checks the URL.
    let allow = AllowList::parse(&[]).map_err(|e| anyhow!(e))?;
    let target = guard::check(&relay.url, &allow, &guard::system_resolver)
        .map_err(|refusal| anyhow!("refusing to send load: {refusal}"))?;
    let cfg = replay_cmd::config(load, target, Some(relay.relay_pid));
    // What a second Ctrl-C kills before lt ends (see `run`).
    interrupt
        .relay_group
        .store(relay.pid as i32, Ordering::Relaxed);
    let progress = super::ProgressLine::new(plan.records);
    let summary = replay::run(trace, plan, results, cfg, &interrupt.stop, progress.clone());
    progress.finish();
    interrupt.relay_group.store(0, Ordering::Relaxed);
    let summary = summary?;
    if summary.trailer.interrupted {
        return Err(anyhow!(
            "interrupted; results so far are in {}",
            results.display()
        ));
    }
    Ok(results.to_owned())
}

/// How a Ctrl-C reaches an `lt ab` session: the stop handle of the replays, and the process
/// group of the relay being replayed into (0 between replays), which a second one kills.
struct Interrupt {
    stop: Stop,
    relay_group: Arc<AtomicI32>,
}

/// Stops the relay; a relay that died during the run makes the run a failure, with its log.
fn stop_relay(
    mut relay: RunningRelay,
    failure: Option<(String, String)>,
) -> Option<(String, String)> {
    let alive = relay.is_alive();
    let tail = relay.log_tail(LOG_TAIL_LINES);
    let name = relay.name.clone();
    let stopped = relay.stop(STOP_GRACE);
    if failure.is_some() {
        return failure.map(|(e, t)| (e, if t.is_empty() { tail } else { t }));
    }
    if !alive {
        let how = match &stopped {
            Ok(info) => format!("{:?}", info.status),
            Err(e) => e.to_string(),
        };
        return Some((
            format!(
                "relay {name} exited during the run ({how}); its results are kept but left out"
            ),
            tail,
        ));
    }
    if let Err(e) = stopped {
        eprintln!("lt: stopping {name}: {e}");
    }
    None
}

fn analyze_run(results: &Path, dir: &Path, trace: &Path) -> anyhow::Result<()> {
    let runs = crate::analyze::read_merged(&[results.to_owned()])?;
    let ids = crate::analyze::read::example_ids(&runs, trace)?;
    crate::analyze::write_report(&runs, &dir.join("report"), &ids, false)?;
    Ok(())
}

fn finish(
    a: &BuildSpec,
    b: &BuildSpec,
    thresholds: &Thresholds,
    runs: &[Run],
    out: &Path,
    interrupted: bool,
) -> anyhow::Result<Session> {
    let files = |side: Side| -> Vec<PathBuf> {
        runs.iter()
            .filter(|r| r.side == side && r.failure.is_none())
            .filter_map(|r| r.results.clone())
            .collect()
    };
    let failed: Vec<FailedRun> = runs
        .iter()
        .filter_map(|r| {
            let (error, log_tail) = r.failure.clone()?;
            Some(FailedRun {
                run: r.number,
                side: r.side.letter().to_string(),
                name: r.name.clone(),
                error,
                log_tail,
            })
        })
        .collect();
    let (fa, fb) = (files(Side::A), files(Side::B));
    if fa.is_empty() || fb.is_empty() {
        for f in &failed {
            eprintln!(
                "run {} ({} {}): {}\n{}",
                f.run, f.side, f.name, f.error, f.log_tail
            );
        }
        return Err(anyhow!(
            "no comparison: {} completed run(s) of {} and {} of {}; every run's files are in {}",
            fa.len(),
            a.name,
            fb.len(),
            b.name,
            out.display()
        ));
    }
    let side_a = compare::Side::load(&a.name, &fa)?;
    let side_b = compare::Side::load(&b.name, &fb)?;
    let order: Vec<String> = runs
        .iter()
        .map(|r| format!("{}{} {}", r.side.letter(), r.number, r.name))
        .collect();
    let (names, charts) = crate::analyze::comparison_files(&side_a, &side_b, out, "comparison")?;
    let mut c = compare::compare(&side_a, &side_b, thresholds, order, charts)?;
    c.failed_runs = failed;
    if interrupted {
        c.warnings
            .push("interrupted: not every planned run was made".into());
    }
    crate::analyze::write_comparison(&names, &c)?;
    compare_cmd::print_summary(&c);
    outln!("comparison report: {}", names.markdown.display());
    let figures = [&side_a, &side_b]
        .iter()
        .flat_map(|s| s.runs.iter().map(compare::figures))
        .collect();
    Ok(Session {
        comparison: c,
        figures,
        attempted: compare::attempted(&side_a),
        code: if interrupted {
            ExitCode::from(130)
        } else {
            ExitCode::SUCCESS
        },
    })
}
