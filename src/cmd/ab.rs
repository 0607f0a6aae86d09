//! `lt ab`: two relay builds, the same trace, fresh relays per run in ABBA order; each run
//! replayed, analyzed, and both sides compared (the session is `ab::session`'s). This file
//! maps the arguments to a session, handles Ctrl-C, and prints what the session says.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::anyhow;

use crate::ab::relay::BuildSpec;
use crate::ab::session::{self, Interrupt, RunFailure, Setup};
use crate::ab::Side;
use crate::analyze::render;
use crate::analyze::thresholds::Thresholds;
use crate::capacity;
use crate::capacity::slo::Slo;
use crate::capacity::source::{Source, TraceSource};
use crate::cli::AbArgs;
use crate::replay;
use crate::terminal::{self, ProgressLine};

pub fn run(args: AbArgs) -> anyhow::Result<ExitCode> {
    // clap's `requires` counts a flag's default (false) as present, so this is checked here.
    if args.sessions.is_some() && !args.aa {
        return Err(anyhow!(
            "--sessions counts A/A calibration sessions: it needs --aa"
        ));
    }

    let (a, b) = builds(&args)?;
    // Its relays are on loopback, and only loopback is scraped.
    let scraping = args.scrape.scraping(&[], &[], true)?;
    if args.capacity {
        return capacity(&args, &a, &b, &scraping);
    }
    let thresholds = Thresholds::new(args.threshold.clone());
    let load = args.load.load();
    let plan = replay::plan::plan(&args.trace, load.speed, load.clients, None)?;
    let out = session::out_dir(args.out.clone(), &a, &b)?;
    let interrupt = Interrupt::default();
    terminal::on_interrupt_killing_relay(&interrupt, load.timeout)?;
    let setup = Setup {
        a: &a,
        b: &b,
        runs: args.runs,
        trace: &args.trace,
        plan: &plan,
        load: &load,
        ready_timeout: args.ready_timeout,
        profile: args.profile,
        thresholds: &thresholds,
        fail_on: args.fail_on.as_ref(),
        issues: args.issues.as_deref(),
        strict_limits: args.load.strict_limits,
        scraping: &scraping,
    };
    let code = |interrupted: bool| {
        if interrupted {
            ExitCode::from(130)
        } else {
            ExitCode::SUCCESS
        }
    };
    if !args.aa {
        let done = session::session(&setup, &out, &interrupt, &Shown)?;
        if done.comparison.gate.as_ref().is_some_and(|g| !g.passed) && !done.interrupted {
            return Ok(ExitCode::from(1));
        }
        return Ok(code(done.interrupted));
    }
    let done = session::calibrate(&setup, args.sessions.unwrap_or(1), &out, &interrupt, &Shown)?;
    outln!("calibration: {}", done.calibration.verdict_line);
    outln!("calibration report: {}", done.markdown.display());
    if done.gates_failed > 0 && !done.interrupted {
        // A build failing a gate against itself: the gate is tighter than this noise.
        eprintln!(
            "lt: {} A/A session(s) failed --fail-on {} against the same build",
            done.gates_failed,
            args.fail_on
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default()
        );
        return Ok(ExitCode::from(1));
    }
    Ok(code(done.interrupted))
}

/// `lt ab --capacity`: a capacity search of each build per run, alternating; their
/// capacities compared.
fn capacity(
    args: &AbArgs,
    a: &BuildSpec,
    b: &BuildSpec,
    scraping: &crate::scrape::Scraping,
) -> anyhow::Result<ExitCode> {
    let out = session::out_dir(args.out.clone(), a, b)?;
    let source = Source::Trace(TraceSource::open(&args.trace)?);
    let slo = Slo::new(args.search.slo.clone());
    let load = args.load.load();
    let interrupt = Interrupt::default();
    terminal::on_interrupt_killing_relay(&interrupt, load.timeout)?;
    outln!(
        "lt ab --capacity: {} (A) vs {} (B), {} searches each; SLO {}; results in {}",
        a.name,
        b.name,
        args.runs,
        slo.texts().join(" AND "),
        out.display()
    );
    let setup = |spec: &BuildSpec, dir| {
        Ok(capacity::run::Setup {
            relay: capacity::run::Relay::Fresh {
                spec: spec.clone(),
                ready_timeout: args.ready_timeout,
            },
            source: source.clone(),
            slo: slo.clone(),
            params: args.search.params(),
            timing: args.search.timing(),
            load: load.clone(),
            strict_limits: args.load.strict_limits,
            scraping: scraping.clone(),
            out: dir,
        })
    };
    let done = capacity::ab::session(
        a,
        b,
        args.runs,
        &setup,
        &out,
        &interrupt,
        &terminal::SearchLines,
    )?;
    outln!("capacity comparison: {}", done.markdown.display());
    outln!("{}", done.comparison.sentence);
    Ok(if done.interrupted {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    })
}

/// The two builds, A and B (A again when no --b), with different names.
fn builds(args: &AbArgs) -> anyhow::Result<(BuildSpec, BuildSpec)> {
    let mut a =
        BuildSpec::parse(&args.a, args.a_config.clone()).map_err(|e| anyhow!("--a: {e}"))?;
    a.tls_ca = args.a_tls_ca.clone();
    let b = match &args.b {
        Some(b) => {
            let mut b =
                BuildSpec::parse(b, args.b_config.clone()).map_err(|e| anyhow!("--b: {e}"))?;
            b.tls_ca = args.b_tls_ca.clone();
            b
        }
        None => session::again(&a),
    };
    if a.name == b.name {
        return Err(anyhow!(
            "--a and --b are both named {:?}: give the builds different names (NAME=CMD)",
            a.name
        ));
    }
    Ok((a, b))
}

/// A session as `lt ab` shows it: a line per run and the comparison on stdout, warnings on
/// stderr, a progress line during each replay.
struct Shown;

impl session::SessionObserver for Shown {
    fn started(&self, a: &str, b: &str, runs: u32, order: &str, out: &Path) {
        outln!(
            "lt ab: {a} (A) vs {b} (B), {runs} runs each in the order {order}; results in {}",
            out.display()
        );
    }

    fn run_ended(
        &self,
        number: u32,
        total: usize,
        side: Side,
        name: &str,
        failure: Option<&RunFailure>,
    ) {
        match failure {
            None => outln!("run {number}/{total} {} {name}: done", side.letter()),
            Some(f) => outln!(
                "run {number}/{total} {} {name}: FAILED: {}",
                side.letter(),
                f.error
            ),
        }
    }

    fn warn(&self, text: &str) {
        eprintln!("lt: {text}");
    }

    fn calibration_session(&self, n: u32, sessions: u32) {
        outln!("A/A session {n}/{sessions}");
    }

    fn compared(&self, done: &session::Session) {
        out!("{}", render::comparison::summary(&done.comparison));
        outln!("comparison report: {}", done.markdown.display());
    }

    fn replay(&self, records: u64) -> Arc<dyn replay::ReplayObserver> {
        ProgressLine::new(records)
    }
}
