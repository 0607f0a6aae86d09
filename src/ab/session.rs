//! One `lt ab` session: every run of both builds in ABBA order, each with a fresh relay
//! started, replayed into, analyzed and stopped; then the comparison of the runs that
//! completed. A/A calibration is sessions of a build against itself ([`calibrate`]).
//!
//! What a session prints is its caller's: it tells a [`SessionObserver`] what happened.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};

use super::relay::{self, BuildSpec, RunningRelay};
use super::{run_order, Side};
use crate::analyze::calibrate::{self, Calibration};
use crate::analyze::compare::{self, Comparison, FailedRun};
use crate::analyze::gate::{self, FailOn};
use crate::analyze::render::issues;
use crate::analyze::thresholds::Thresholds;
use crate::replay::{self, Load, Plan, Stop};

/// How long a relay may take to exit after SIGTERM before it gets SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Lines of a relay's log kept with a failed run.
const LOG_TAIL_LINES: usize = 20;

/// What a session is asked to do.
pub struct Setup<'a> {
    pub a: &'a BuildSpec,
    pub b: &'a BuildSpec,
    /// Runs of each build.
    pub runs: u32,
    pub trace: &'a Path,
    /// The trace's plan at `load`'s speed (verified and fingerprinted).
    pub plan: &'a Plan,
    pub load: &'a Load,
    pub ready_timeout: Duration,
    /// Profile each relay with `perf record` during its run.
    pub profile: bool,
    pub thresholds: &'a Thresholds,
    /// The release gate on the comparison, if any.
    pub fail_on: Option<&'a FailOn>,
    /// Where to write issue drafts when B is worse (`--issues`).
    pub issues: Option<&'a Path>,
    /// Refuse a run whose relay advertises limits the trace would hit.
    pub strict_limits: bool,
    /// What each run scrapes (`--scrape`, this machine's `/proc`).
    pub scraping: &'a crate::scrape::Scraping,
}

/// How the caller stops a session: the stop handle of its replays (between runs it ends the
/// session after the current step), and the process group of the relay being replayed
/// into (0 between replays), for a caller that must kill it before it exits.
#[derive(Clone, Default)]
pub struct Interrupt {
    pub stop: Stop,
    pub relay_group: Arc<AtomicI32>,
}

/// Why a run left nothing to compare: one line, and the relay's log tail when it helps.
#[derive(Debug, Clone, PartialEq)]
pub struct RunFailure {
    pub error: String,
    pub log_tail: String,
}

impl RunFailure {
    fn new(error: impl Into<String>) -> RunFailure {
        RunFailure {
            error: error.into(),
            log_tail: String::new(),
        }
    }
}

/// What a session tells whoever shows it.
pub trait SessionObserver {
    /// The session starts: the builds, the order of runs (`ABBA…`), the output folder.
    fn started(&self, _a: &str, _b: &str, _runs: u32, _order: &str, _out: &Path) {}
    /// Run `number` of `total` (of build `name` on `side`) ended, failed or not.
    fn run_ended(
        &self,
        _number: u32,
        _total: usize,
        _side: Side,
        _name: &str,
        _failure: Option<&RunFailure>,
    ) {
    }
    /// Something worth a line on stderr (a relay's warning, an interruption, a failed stop).
    fn warn(&self, _text: &str) {}
    /// A/A calibration: session `n` of `sessions` begins.
    fn calibration_session(&self, _n: u32, _sessions: u32) {}
    /// The session's comparison is written.
    fn compared(&self, _session: &Session) {}
    /// The observer of one replay of `records` records.
    fn replay(&self, _records: u64) -> Arc<dyn replay::ReplayObserver> {
        Arc::new(replay::Quiet)
    }
}

/// What one run left behind.
struct Run {
    number: u32,
    side: Side,
    name: String,
    results: Option<PathBuf>,
    failure: Option<RunFailure>,
}

/// What one comparison left: its report, every completed run's figures (for calibration),
/// and whether it was interrupted.
pub struct Session {
    pub comparison: Comparison,
    /// The comparison's Markdown report.
    pub markdown: PathBuf,
    pub figures: Vec<Vec<Option<f64>>>,
    pub attempted: f64,
    pub interrupted: bool,
}

/// B of an A/A comparison: build A under another name.
pub fn again(a: &BuildSpec) -> BuildSpec {
    let stem: String = a.name.chars().take(34).collect();
    BuildSpec {
        name: format!("{stem}-again"),
        ..a.clone()
    }
}

/// `out`, or `reports/ab/<A>-vs-<B>-<UTC>`; an existing folder must be empty.
pub fn out_dir(out: Option<PathBuf>, a: &BuildSpec, b: &BuildSpec) -> anyhow::Result<PathBuf> {
    let out = out.unwrap_or_else(|| {
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

/// One comparison: every run of both builds in ABBA order into `out`, then the comparison.
pub fn session(
    setup: &Setup,
    out: &Path,
    interrupt: &Interrupt,
    observer: &dyn SessionObserver,
) -> anyhow::Result<Session> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let order = run_order(setup.runs);
    let letters: String = order.iter().map(|s| s.letter()).collect();
    observer.started(&setup.a.name, &setup.b.name, setup.runs, &letters, out);
    let mut runs = Vec::new();
    for (i, side) in order.iter().enumerate() {
        if interrupt.stop.requested() {
            observer.warn(&format!("interrupted; {} of {} runs done", i, order.len()));
            break;
        }
        let spec = match side {
            Side::A => setup.a,
            Side::B => setup.b,
        };
        let number = i as u32 + 1;
        let run = one_run(number, *side, spec, setup, out, interrupt, observer);
        observer.run_ended(number, order.len(), *side, &spec.name, run.failure.as_ref());
        runs.push(run);
    }
    let done = finish(setup, &runs, out, interrupt.stop.requested(), observer)?;
    observer.compared(&done);
    Ok(done)
}

/// What an A/A calibration left.
pub struct Calibrated {
    pub calibration: Calibration,
    /// The calibration's Markdown report.
    pub markdown: PathBuf,
    pub interrupted: bool,
    /// Sessions whose comparison failed its gate (`--fail-on`): a build failing a gate
    /// against itself.
    pub gates_failed: u32,
}

/// A/A calibration: `sessions` whole sessions of A against itself (B is [`again`]`(A)`),
/// each in a folder of its own when there are several; a failed session is recorded and
/// the others go on. Writes the calibration report into `out`.
pub fn calibrate(
    setup: &Setup,
    sessions: u32,
    out: &Path,
    interrupt: &Interrupt,
    observer: &dyn SessionObserver,
) -> anyhow::Result<Calibrated> {
    let mut outcomes = Vec::new();
    let mut pool = Vec::new();
    let mut attempted = 0.0;
    let mut interrupted = false;
    let mut gates_failed = 0;
    for n in 1..=sessions {
        if interrupt.stop.requested() {
            interrupted = true;
            break;
        }
        let (dir, folder) = if sessions == 1 {
            (out.to_owned(), ".".to_owned())
        } else {
            let folder = format!("session-{n:02}");
            (out.join(&folder), folder)
        };
        observer.calibration_session(n, sessions);
        match session(setup, &dir, interrupt, observer) {
            Ok(done) => {
                outcomes.push(calibrate::outcome(&folder, &done.comparison));
                pool.extend(done.figures);
                attempted = done.attempted;
                interrupted |= done.interrupted;
                gates_failed += u32::from(done.comparison.gate.as_ref().is_some_and(|g| !g.passed));
            }
            // One failed session (a relay that would not start) leaves the others' figures.
            Err(e) => {
                observer.warn(&format!("A/A session {n}: {e:#}"));
                outcomes.push(calibrate::failed(&folder, &format!("{e:#}")));
            }
        }
    }
    let c = calibrate::calibrate(
        &setup.a.name,
        setup.runs,
        outcomes,
        &pool,
        attempted,
        setup.thresholds,
    );
    let markdown = crate::analyze::write_calibration(out, &c)?;
    Ok(Calibrated {
        calibration: c,
        markdown,
        interrupted,
        gates_failed,
    })
}

fn one_run(
    number: u32,
    side: Side,
    spec: &BuildSpec,
    setup: &Setup,
    out: &Path,
    interrupt: &Interrupt,
    observer: &dyn SessionObserver,
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
        run.failure = Some(RunFailure::new(format!("creating {}: {e}", dir.display())));
        return run;
    }
    let relay = match relay::start(spec, &dir, setup.ready_timeout) {
        Ok(r) => r,
        Err(e) => {
            let text = e.to_string();
            let (first, rest) = text.split_once('\n').unwrap_or((&text, ""));
            run.failure = Some(RunFailure {
                error: first.to_owned(),
                log_tail: rest.to_owned(),
            });
            return run;
        }
    };
    for w in &relay.warnings {
        observer.warn(&format!("{}: {w}", spec.name));
    }
    if interrupt.stop.requested() {
        // Ctrl-C while the relay was starting: no replay into it.
        let failure = RunFailure::new("interrupted before the replay");
        run.failure = stop_relay(relay, Some(failure), observer);
        return run;
    }
    let target = match relay.loopback_target() {
        Ok(t) => t,
        Err(refusal) => {
            run.failure = stop_relay(relay, Some(RunFailure::new(refusal)), observer);
            return run;
        }
    };
    let results = dir.join("results.ltr");
    let pid = Some(relay.relay_pid).filter(|_| setup.profile);
    let replayed = crate::profile::around(pid, &results, || {
        replay_into(&relay, target, setup, &results, interrupt, observer)
    });
    match replayed {
        Ok(results) => run.results = Some(results),
        Err(e) => run.failure = Some(RunFailure::new(format!("{e:#}"))),
    }
    run.failure = stop_relay(relay, run.failure.take(), observer);
    if let (None, Some(results)) = (&run.failure, &run.results) {
        if let Err(e) = analyze_run(results, &dir, setup.trace) {
            run.failure = Some(RunFailure::new(format!(
                "analyzing {}: {e:#}",
                results.display()
            )));
        }
    }
    run
}

/// Replays the trace into a running relay, sampling its process; returns the results path.
fn replay_into(
    relay: &RunningRelay,
    target: crate::guard::Target,
    setup: &Setup,
    results: &Path,
    interrupt: &Interrupt,
    observer: &dyn SessionObserver,
) -> anyhow::Result<PathBuf> {
    let cas: Vec<std::path::PathBuf> = spec_ca(setup, &relay.name).into_iter().collect();
    let mut cfg = replay::Config::new(setup.load, target, Some(relay.relay_pid));
    cfg.scrape(setup.scraping)?;
    // Each run asks its relay what it is (a comparison names builds by what they say).
    let preflight = replay::preflight::run(&cfg.target, setup.trace, &cas)?;
    replay::preflight::refuse_if_strict(&preflight, setup.strict_limits)?;
    cfg.preflight = Some(preflight);
    interrupt
        .relay_group
        .store(relay.pid as i32, Ordering::Relaxed);
    let summary = replay::run(
        setup.trace,
        setup.plan,
        results,
        cfg,
        &interrupt.stop,
        observer.replay(setup.plan.records),
    );
    interrupt.relay_group.store(0, Ordering::Relaxed);
    if summary?.trailer.interrupted {
        return Err(anyhow!(
            "interrupted; results so far are in {}",
            results.display()
        ));
    }
    Ok(results.to_owned())
}

/// Stops the relay; a relay that died during the run makes the run a failure, with its log.
fn stop_relay(
    mut relay: RunningRelay,
    failure: Option<RunFailure>,
    observer: &dyn SessionObserver,
) -> Option<RunFailure> {
    let alive = relay.is_alive();
    let tail = relay.log_tail(LOG_TAIL_LINES);
    let name = relay.name.clone();
    let stopped = relay.stop(STOP_GRACE);
    if let Some(mut f) = failure {
        if f.log_tail.is_empty() {
            f.log_tail = tail;
        }
        return Some(f);
    }
    if !alive {
        let how = match &stopped {
            Ok(info) => format!("{:?}", info.status),
            Err(e) => e.to_string(),
        };
        return Some(RunFailure {
            error: format!(
                "relay {name} exited during the run ({how}); its results are kept but left out"
            ),
            log_tail: tail,
        });
    }
    if let Err(e) = stopped {
        observer.warn(&format!("stopping {name}: {e}"));
    }
    None
}

fn analyze_run(results: &Path, dir: &Path, trace: &Path) -> anyhow::Result<()> {
    let runs = crate::analyze::read_merged(&[results.to_owned()])?;
    let ids = crate::analyze::read::example_ids(&runs, trace)?;
    let asked = crate::analyze::Asked {
        ids,
        ..Default::default()
    };
    crate::analyze::write_report(&runs, &dir.join("report"), &asked)?;
    Ok(())
}

fn finish(
    setup: &Setup,
    runs: &[Run],
    out: &Path,
    interrupted: bool,
    observer: &dyn SessionObserver,
) -> anyhow::Result<Session> {
    let (a, b) = (setup.a, setup.b);
    let files = |side: Side| -> Vec<PathBuf> {
        runs.iter()
            .filter(|r| r.side == side && r.failure.is_none())
            .filter_map(|r| r.results.clone())
            .collect()
    };
    let failed: Vec<FailedRun> = runs
        .iter()
        .filter_map(|r| {
            let f = r.failure.clone()?;
            Some(FailedRun {
                run: r.number,
                side: r.side.letter().to_string(),
                name: r.name.clone(),
                error: f.error,
                log_tail: f.log_tail,
            })
        })
        .collect();
    let (fa, fb) = (files(Side::A), files(Side::B));
    if fa.is_empty() || fb.is_empty() {
        for f in &failed {
            observer.warn(&format!(
                "run {} ({} {}): {}\n{}",
                f.run, f.side, f.name, f.error, f.log_tail
            ));
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
    let side_a = compare::BuildRuns::load(&a.name, &fa)?;
    let side_b = compare::BuildRuns::load(&b.name, &fb)?;
    let order: Vec<String> = runs
        .iter()
        .map(|r| format!("{}{} {}", r.side.letter(), r.number, r.name))
        .collect();
    let mut c = compare::compare(&side_a, &side_b, setup.thresholds, order)?;
    c.failed_runs = failed;
    if interrupted {
        c.warnings
            .push("interrupted: not every planned run was made".into());
    }
    c.gate = setup.fail_on.map(|f| gate::apply(&c, f));
    let names = crate::analyze::write_comparison(&side_a, &side_b, &mut c, out, "comparison")?;
    if let Some(dir) = setup.issues {
        for (title, path) in write_drafts(setup, &c, &side_b, dir)? {
            observer.warn(&format!("issue draft: {path} — {title}"));
        }
    }
    let figures = [&side_a, &side_b]
        .iter()
        .flat_map(|s| s.runs.iter().map(compare::figures))
        .collect();
    Ok(Session {
        comparison: c,
        markdown: names.markdown,
        figures,
        attempted: compare::attempted(&side_a),
        interrupted,
    })
}

/// B's drafts when it is worse: the regression (from the comparison) first, then what the
/// rules found on B's runs merged. Nothing when B is worse on no metric.
fn write_drafts(
    setup: &Setup,
    c: &Comparison,
    b: &compare::BuildRuns,
    dir: &Path,
) -> anyhow::Result<Vec<(String, String)>> {
    let Some(regression) = issues::regression_draft(c, &reproduce(setup)) else {
        return Ok(Vec::new());
    };
    let profiles = crate::profile::load_all_beside(&b.merged.files);
    let report = crate::analyze::report::build(&b.merged, &crate::analyze::Ids::new(), &profiles);
    let mut drafts = vec![regression];
    drafts.extend(issues::drafts(&report));
    crate::analyze::write_drafts(dir, &drafts)
}

/// The `lt ab` command line of this session, as the drafts give it to reproduce.
fn reproduce(setup: &Setup) -> Vec<String> {
    let spec = |flag: &str, b: &BuildSpec| {
        let mut s = format!(
            " --{flag} {}",
            relay::shell_quote(&format!("{}={}", b.name, b.command))
        );
        if let Some(t) = &b.config_template {
            s.push_str(&format!(
                " --{flag}-config {}",
                relay::shell_quote(&t.display().to_string())
            ));
        }
        s
    };
    // The load flags are the ones a replay's issue draft gives: one table for both.
    vec![format!(
        "lt ab --trace {}{}{} --runs {}{}",
        relay::shell_quote(&setup.trace.display().to_string()),
        spec("a", setup.a),
        spec("b", setup.b),
        setup.runs,
        setup.load.run_options().load_flags()
    )]
}

/// The CA of the build named `name`, when it listens with TLS.
fn spec_ca(setup: &Setup, name: &str) -> Option<std::path::PathBuf> {
    [setup.a, setup.b]
        .into_iter()
        .find(|b| b.name == name)
        .and_then(|b| b.tls_ca.clone())
}

/// The session's loop without a relay worth loading: builds whose command exits at once
/// fail to start, so what is left to see is the loop itself (ABBA order, one report per
/// run, the refusal to compare nothing, an interruption between runs), in milliseconds.
#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::replay::{Overload, Speed};

    /// What the session told its observer, a line each; stops the session after run
    /// `stop_after` (as a Ctrl-C between runs does).
    struct Log {
        lines: Mutex<Vec<String>>,
        stop: Stop,
        stop_after: Option<u32>,
    }

    impl Log {
        fn new(stop: &Stop, stop_after: Option<u32>) -> Log {
            Log {
                lines: Mutex::new(Vec::new()),
                stop: stop.clone(),
                stop_after,
            }
        }

        fn push(&self, line: String) {
            self.lines.lock().expect("log").push(line);
        }

        fn lines(&self) -> Vec<String> {
            self.lines.lock().expect("log").clone()
        }
    }

    impl SessionObserver for Log {
        fn started(&self, a: &str, b: &str, runs: u32, order: &str, _out: &Path) {
            self.push(format!("started {a} vs {b}, {runs} each, {order}"));
        }

        fn run_ended(
            &self,
            number: u32,
            total: usize,
            side: Side,
            name: &str,
            failure: Option<&RunFailure>,
        ) {
            let how = failure.map_or("ok", |_| "failed");
            self.push(format!(
                "run {number}/{total} {} {name} {how}",
                side.letter()
            ));
            if self.stop_after == Some(number) {
                self.stop.request();
            }
        }

        fn warn(&self, text: &str) {
            self.push(format!("warn {}", text.lines().next().unwrap_or("")));
        }
    }

    fn exits(name: &str) -> BuildSpec {
        BuildSpec::parse(&format!("{name}=exit 3 # {{port}}"), None).expect("a build spec")
    }

    fn load() -> Load {
        Load {
            speed: Speed::Scaled(1.0),
            clients: None,
            threads: None,
            connect_concurrency: 1,
            max_in_flight: 10,
            per_conn_in_flight: 10,
            overload: Overload::Wait,
            timeout: Duration::from_secs(1),
            duration_s: None,
            reconcile: None,
            delivery_rows: false,
            start_at: None,
        }
    }

    fn run_session(runs: u32, stop_after: Option<u32>) -> (anyhow::Result<Session>, Vec<String>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (exits("a"), exits("b"));
        let (plan, load, thresholds) = (Plan::default(), load(), Thresholds::new(Vec::new()));
        let setup = Setup {
            a: &a,
            b: &b,
            runs,
            trace: Path::new("unused.ltc"),
            plan: &plan,
            load: &load,
            ready_timeout: Duration::from_secs(5),
            profile: false,
            thresholds: &thresholds,
            fail_on: None,
            issues: None,
            strict_limits: false,
            scraping: &crate::scrape::Scraping::none(),
        };
        let interrupt = Interrupt::default();
        let log = Log::new(&interrupt.stop, stop_after);
        let done = session(&setup, dir.path(), &interrupt, &log);
        // Each run has its own folder, named by number, side and build.
        let mut folders: Vec<String> = std::fs::read_dir(dir.path().join("runs"))
            .expect("the runs folder")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        folders.sort();
        let mut lines = log.lines();
        lines.push(format!("folders {}", folders.join(" ")));
        (done, lines)
    }

    #[test]
    fn every_run_is_made_in_abba_order_and_nothing_completed_is_no_comparison() {
        let (done, lines) = run_session(2, None);
        let err = done
            .err()
            .expect("no comparison of failed runs")
            .to_string();
        assert!(
            err.starts_with("no comparison: 0 completed run(s) of a and 0 of b"),
            "{err}"
        );
        let runs: Vec<&String> = lines.iter().filter(|l| l.starts_with("run ")).collect();
        assert_eq!(
            runs,
            [
                "run 1/4 A a failed",
                "run 2/4 B b failed",
                "run 3/4 B b failed",
                "run 4/4 A a failed"
            ]
        );
        assert_eq!(lines[0], "started a vs b, 2 each, ABBA");
        // Each failure is told once more, with its run, when the comparison is refused.
        let told = lines.iter().filter(|l| l.starts_with("warn run ")).count();
        assert_eq!(told, 4, "{lines:#?}");
        assert_eq!(
            lines.last().map(String::as_str),
            Some("folders 01-A-a 02-B-b 03-B-b 04-A-a")
        );
    }

    #[test]
    fn an_interruption_between_runs_ends_the_session_after_the_current_run() {
        let (done, lines) = run_session(2, Some(2));
        assert!(done.is_err());
        let runs = lines.iter().filter(|l| l.starts_with("run ")).count();
        assert_eq!(runs, 2, "{lines:#?}");
        assert!(
            lines.contains(&"warn interrupted; 2 of 4 runs done".to_owned()),
            "{lines:#?}"
        );
        assert_eq!(
            lines.last().map(String::as_str),
            Some("folders 01-A-a 02-B-b")
        );
    }
}
