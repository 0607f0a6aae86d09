//! The capacity search's driver: asks the pure core ([`search`](super::search)) what to run,
//! runs each step as a real replay (its own folder: trace, results, report), judges it by
//! the SLO, and writes the capacity report at the end — also when stopped, marked partial.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};

use super::report::{CapacityReport, Settings, Step, CAPACITY_VERSION};
use super::search::{Decision, Ending, Params, Phase, Search, Trial};
use super::slo::{self, Slo};
use super::source::{Source, SourceError, StepTrace};
use crate::ab::relay::{self, BuildSpec, RunningRelay};
use crate::ab::session::Interrupt;
use crate::analyze::{self, output};
use crate::capture::results::Preflight;
use crate::guard::Target;
use crate::replay::{self, Load};

/// How long a relay lt started may take to exit after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// A step's time beyond its replay before the first has been measured (connect, analysis).
const STEP_OVERHEAD_GUESS: Duration = Duration::from_secs(5);

/// The relay a search loads.
pub enum Relay {
    /// A running relay (`--relay URL`), the staging case: never restarted; its database
    /// grows from step to step (each step's report says by how much).
    Running {
        target: Target,
        relay_pid: Option<u32>,
        /// Its NIP-11 answer, asked once before the search.
        preflight: Option<Preflight>,
    },
    /// A fresh relay per step from a build spec (`--spec`), as `lt ab` starts them.
    Fresh {
        spec: BuildSpec,
        ready_timeout: Duration,
    },
}

impl Relay {
    /// What the report calls it.
    pub fn name(&self) -> String {
        match self {
            Relay::Running { target, .. } => target.display_host(),
            Relay::Fresh { spec, .. } => spec.name.clone(),
        }
    }
}

/// Step lengths and pauses.
#[derive(Debug, Clone)]
pub struct Timing {
    pub step: Duration,
    pub warmup: Duration,
    pub confirm: Duration,
    pub cooldown: Duration,
    pub deadline: Option<Duration>,
}

impl Timing {
    /// How long `trial` runs.
    pub fn of(&self, trial: Trial) -> Duration {
        match trial.phase {
            Phase::Warmup => self.warmup,
            _ if trial.long => self.confirm,
            _ => self.step,
        }
    }

    /// Whether the deadline leaves no room for another step, `spent` being the time so far
    /// and a step's overhead (connect, analysis).
    fn out_of_time(&self, search: &Search, spent: Duration) -> bool {
        let next = if search.long_mode() {
            self.confirm
        } else {
            self.step
        };
        self.deadline.is_some_and(|d| spent + next > d)
    }
}

/// What a search is asked to do.
pub struct Setup {
    pub relay: Relay,
    pub source: Source,
    pub slo: Slo,
    pub params: Params,
    pub timing: Timing,
    /// The load options; each step sets its own speed.
    pub load: Load,
    /// Refuse a step whose relay advertises limits its trace would hit.
    pub strict_limits: bool,
    /// What each step scrapes (`--scrape`, this machine's `/proc`).
    pub scraping: crate::scrape::Scraping,
    /// The search's folder (must be empty or absent).
    pub out: PathBuf,
}

/// What a search tells whoever shows it.
pub trait Observer {
    fn step_started(&self, _number: u32, _trial: &Trial, _duration: Duration) {}
    fn step_ended(&self, _step: &Step) {}
    fn warn(&self, _text: &str) {}
    fn replay(&self, _records: u64) -> Arc<dyn replay::ReplayObserver> {
        Arc::new(replay::Quiet)
    }
}

/// A search written: its report and where its files are.
pub struct Searched {
    pub report: CapacityReport,
    pub json: PathBuf,
    pub markdown: PathBuf,
}

/// Runs the search `setup` describes; Ctrl-C (`interrupt.stop`) ends it after writing
/// the report of the steps so far.
pub fn search(
    mut setup: Setup,
    interrupt: &Interrupt,
    observer: &dyn Observer,
) -> anyhow::Result<Searched> {
    let started = Instant::now();
    output::ensure_dir(&setup.out)?;
    let mut report = empty_report(&setup);
    let mut search = Search::new(setup.params.clone());
    let mut overhead = STEP_OVERHEAD_GUESS;
    let mut stored = 0u64;
    let mut number = 0u32;
    let ending = loop {
        if interrupt.stop.requested() {
            break Ending::Interrupted;
        }
        let out_of_time = setup
            .timing
            .out_of_time(&search, started.elapsed() + overhead);
        let trial = match search.next(out_of_time) {
            Decision::Done(e) => break e,
            Decision::Run(t) => t,
        };
        number += 1;
        let duration = setup.timing.of(trial);
        if number > 1 {
            cool_down(setup.timing.cooldown, interrupt);
        }
        observer.step_started(number, &trial, duration);
        let step_started = Instant::now();
        let step = match run_step(
            &mut setup, number, trial, duration, stored, interrupt, observer,
        ) {
            Ok(step) => step,
            Err(SourceError::Exhausted { left_s, needed_s }) => {
                observer.warn(&format!(
                    "the trace has {left_s:.1} s left at {:.0} events/s, and a step needs {needed_s:.1} s: the search ends with the bounds so far",
                    trial.rate
                ));
                break Ending::TraceExhausted;
            }
            Err(SourceError::Other(e)) => return Err(e),
        };
        overhead = step_started.elapsed().saturating_sub(duration);
        observer.step_ended(&step);
        if !matches!(setup.relay, Relay::Fresh { .. }) {
            stored += (step.achieved_eps * step.duration_s).round() as u64;
        }
        if let Some(end) = take(&mut search, trial, step, &mut report, interrupt, observer) {
            break end;
        }
    };
    report.inversions = search.inversions();
    report.elapsed_s = started.elapsed().as_secs_f64();
    report.conclude(search.bounds(), ending);
    let (json, markdown) = super::render::write(&setup.out, &mut report)?;
    Ok(Searched {
        report,
        json,
        markdown,
    })
}

/// Adds a finished step to the report and its outcome to the search; a step that did not
/// complete ends the search (`Interrupted`, said unless Ctrl-C did it).
fn take(
    search: &mut Search,
    trial: Trial,
    step: Step,
    report: &mut CapacityReport,
    interrupt: &Interrupt,
    observer: &dyn Observer,
) -> Option<Ending> {
    let judged = step.judged.as_ref().map(slo::Judged::outcome);
    let failed = step
        .error
        .clone()
        .map(|e| format!("step {}: {e}", step.number));
    report.steps.push(step);
    match (judged, failed) {
        (Some(outcome), _) => {
            search.record(trial, outcome);
            None
        }
        (None, failed) => {
            if let (Some(e), false) = (failed, interrupt.stop.requested()) {
                observer.warn(&format!("{e}; the search ends with the bounds so far"));
            }
            Some(Ending::Interrupted)
        }
    }
}

fn empty_report(setup: &Setup) -> CapacityReport {
    let t = &setup.timing;
    let p = &setup.params;
    CapacityReport {
        capacity_version: CAPACITY_VERSION,
        generated_by: format!("lt {}", env!("CARGO_PKG_VERSION")),
        generated_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        relay: setup.relay.name(),
        fresh_relay_per_step: matches!(setup.relay, Relay::Fresh { .. }),
        workload: setup.source.describe(),
        slo: setup.slo.texts(),
        always: slo::always(),
        settings: Settings {
            start_eps: p.start,
            factor: p.factor,
            precision: p.precision,
            max_rate_eps: p.max_rate,
            step_s: t.step.as_secs_f64(),
            warmup_s: if p.warmup {
                t.warmup.as_secs_f64()
            } else {
                0.0
            },
            confirm_s: t.confirm.as_secs_f64(),
            cooldown_s: t.cooldown.as_secs_f64(),
            deadline_s: t.deadline.map(|d| d.as_secs_f64()),
        },
        ending: Ending::Interrupted,
        partial: true,
        capacity_eps: None,
        upper_eps: None,
        upper_is_lt: false,
        achieved_eps: None,
        failed_first: None,
        lt_limit: None,
        inversions: 0,
        steps: Vec::new(),
        elapsed_s: 0.0,
        sentence: String::new(),
        charts: Vec::new(),
    }
}

/// Pauses between steps so the relay drains what the last one left (its write queue, its
/// sockets closing), unless stopped.
fn cool_down(pause: Duration, interrupt: &Interrupt) {
    let until = Instant::now() + pause;
    while Instant::now() < until && !interrupt.stop.requested() {
        std::thread::sleep(Duration::from_millis(50).min(until - Instant::now()));
    }
}

/// One step: its trace, its relay (started for it, or the running one), the replay, the
/// report, the verdict. A failure after the trace is written is the step's `error`.
fn run_step(
    setup: &mut Setup,
    number: u32,
    trial: Trial,
    duration: Duration,
    stored_before: u64,
    interrupt: &Interrupt,
    observer: &dyn Observer,
) -> Result<Step, SourceError> {
    let folder = format!("{number:02}-{}-{:.0}eps", trial.phase.word(), trial.rate);
    let dir = setup.out.join("steps").join(&folder);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let fresh = matches!(setup.relay, Relay::Fresh { .. });
    let trace = setup
        .source
        .write_step(number, trial.rate, duration.as_secs_f64(), fresh, &dir)?;
    let results = dir.join("results.ltr");
    let mut step = Step {
        number,
        phase: trial.phase,
        offered_eps: trial.rate,
        scheduled_events: trace.events,
        scheduled_eps: trace.events as f64 / duration.as_secs_f64(),
        achieved_eps: 0.0,
        response_p50_ms: None,
        response_p99_ms: None,
        duration_s: duration.as_secs_f64(),
        stored_before: if fresh { 0 } else { stored_before },
        data_bytes: None,
        judged: None,
        error: None,
        results: format!("steps/{folder}/results.ltr"),
        report: None,
    };
    let replayed = match &setup.relay {
        Relay::Running {
            target,
            relay_pid,
            preflight,
        } => replay_step(
            setup,
            &trace,
            target.clone(),
            *relay_pid,
            preflight.clone(),
            &results,
            interrupt,
            observer,
        ),
        Relay::Fresh {
            spec,
            ready_timeout,
        } => {
            let (spec, ready) = (spec.clone(), *ready_timeout);
            fresh_step(
                setup, &spec, ready, &trace, &dir, &results, interrupt, observer,
            )
            .map(|bytes| step.data_bytes = bytes)
        }
    };
    if let Err(e) = replayed {
        step.error = Some(format!("{e:#}"));
        return Ok(step);
    }
    match judge_step(setup, &mut step, &trace, &results, &dir, trial) {
        Ok(()) => {}
        Err(e) => step.error = Some(format!("{e:#}")),
    }
    Ok(step)
}

/// Replays a step's trace into `target`; an interrupted replay is an error (its results
/// stay readable).
#[allow(clippy::too_many_arguments)]
fn replay_step(
    setup: &Setup,
    trace: &StepTrace,
    target: Target,
    relay_pid: Option<u32>,
    preflight: Option<Preflight>,
    results: &Path,
    interrupt: &Interrupt,
    observer: &dyn Observer,
) -> anyhow::Result<()> {
    let plan = replay::plan::plan(&trace.path, trace.speed, setup.load.clients, None)?;
    let load = Load {
        speed: trace.speed,
        ..setup.load.clone()
    };
    let mut cfg = replay::Config::new(&load, target, relay_pid);
    cfg.scrape(&setup.scraping)?;
    if let Some(p) = &preflight {
        replay::preflight::refuse_if_strict(p, setup.strict_limits)?;
    }
    cfg.preflight = preflight;
    let summary = replay::run(
        &trace.path,
        &plan,
        results,
        cfg,
        &interrupt.stop,
        observer.replay(plan.records_played()),
    )?;
    if summary.trailer.interrupted {
        return Err(anyhow!(
            "interrupted; the step's results so far are in {}",
            results.display()
        ));
    }
    Ok(())
}

/// A step with a relay of its own: started, asked what it is, replayed into, stopped.
/// Returns the size of its data directory after the step.
#[allow(clippy::too_many_arguments)]
fn fresh_step(
    setup: &Setup,
    spec: &BuildSpec,
    ready_timeout: Duration,
    trace: &StepTrace,
    dir: &Path,
    results: &Path,
    interrupt: &Interrupt,
    observer: &dyn Observer,
) -> anyhow::Result<Option<u64>> {
    let relay = relay::start(spec, dir, ready_timeout).map_err(|e| anyhow!("{e}"))?;
    for w in &relay.warnings {
        observer.warn(&format!("{}: {w}", spec.name));
    }
    let replayed = (|| {
        let target = relay.loopback_target().map_err(|e| anyhow!(e))?;
        let cas: Vec<PathBuf> = spec.tls_ca.iter().cloned().collect();
        let preflight = replay::preflight::run(&target, &trace.path, &cas)?;
        interrupt
            .relay_group
            .store(relay.pid as i32, Ordering::Relaxed);
        let done = replay_step(
            setup,
            trace,
            target,
            Some(relay.relay_pid),
            Some(preflight),
            results,
            interrupt,
            observer,
        );
        interrupt.relay_group.store(0, Ordering::Relaxed);
        done
    })();
    let data = dir_bytes(&relay.dir);
    stop(relay, observer)?;
    replayed.map(|()| Some(data))
}

/// Stops a relay lt started; one that died during the step makes the step fail.
fn stop(mut relay: RunningRelay, observer: &dyn Observer) -> anyhow::Result<()> {
    let alive = relay.is_alive();
    let tail = relay.log_tail(10);
    let name = relay.name.clone();
    let stopped = relay.stop(STOP_GRACE);
    if !alive {
        return Err(anyhow!(
            "relay {name} exited during the step; its log ends:\n{tail}"
        ));
    }
    if let Err(e) = stopped {
        observer.warn(&format!("stopping {name}: {e}"));
    }
    Ok(())
}

/// Bytes under `dir`, best effort.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Analyzes a step's results into its report and judges it by the SLO.
fn judge_step(
    setup: &Setup,
    step: &mut Step,
    trace: &StepTrace,
    results: &Path,
    dir: &Path,
    trial: Trial,
) -> anyhow::Result<()> {
    let runs = analyze::read_merged(&[results.to_owned()])?;
    let ids = analyze::read::example_ids(&runs, &trace.path)?;
    let asked = analyze::Asked {
        ids,
        ..Default::default()
    };
    let written = analyze::write_report(&runs, &dir.join("report"), &asked)?;
    let m = &written.report.measured;
    let events_ok: u64 = m
        .totals
        .by_type
        .iter()
        .filter(|t| {
            ["view", "video_post", "mirror", "other_event"].contains(&t.record_type.as_str())
        })
        .map(|t| t.succeeded)
        .sum();
    step.achieved_eps = events_ok as f64 / step.duration_s;
    let response = m.latency.overall.response_ms.as_ref();
    step.response_p50_ms = response.map(|p| p.p50);
    step.response_p99_ms = response.map(|p| p.p99);
    step.report = written
        .markdown
        .strip_prefix(&setup.out)
        .ok()
        .map(|p| p.display().to_string());
    let judged = slo::judge(
        &setup.slo,
        &written.report,
        trial.rate,
        setup.load.max_in_flight,
    )
    .map_err(|e| anyhow!(e))?;
    // A warm-up's verdict is shown, not counted (the search ignores it).
    step.judged = Some(judged);
    Ok(())
}
