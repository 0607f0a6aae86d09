//! `lt capacity`: guard the target, set up the search from the arguments, run it with
//! Ctrl-C handled, print a line per step and the answer in one sentence last.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;

use crate::ab::relay::BuildSpec;
use crate::ab::session::Interrupt;
use crate::capacity::report::Step;
use crate::capacity::run::{self, Relay, Setup, Timing};
use crate::capacity::search::{Params, Trial, Verdict};
use crate::capacity::slo::Slo;
use crate::capacity::source::{Source, TraceSource};
use crate::cli::{CapacityArgs, CAPACITY_CLIENTS};
use crate::replay::{self, Load, Overload, Speed};
use crate::target;
use crate::terminal::{self, ProgressLine};
use crate::units;
use crate::workload::{default_creators, Options};

pub fn run(args: CapacityArgs) -> anyhow::Result<ExitCode> {
    let relay = relay(&args)?;
    let source = source(&args)?;
    let slo = Slo::new(args.slo.clone());
    let load = load(&args);
    let out = out_dir(&args, &relay)?;
    let setup = Setup {
        relay,
        source,
        slo,
        params: Params {
            start: args.start,
            factor: args.factor,
            precision: args.precision,
            max_rate: args.max_rate,
            warmup: !args.warmup.is_zero(),
            ..Params::default()
        },
        timing: Timing {
            step: args.step,
            warmup: args.warmup,
            confirm: args.confirm,
            cooldown: args.cooldown,
            deadline: args.deadline,
        },
        load,
        strict_limits: args.strict_limits,
        out,
    };
    outln!(
        "lt capacity: {} · SLO {} · start {} events/s, precision {}%; folder {}",
        setup.relay.name(),
        setup.slo.texts().join(" AND "),
        units::count(args.start as u64),
        args.precision * 100.0,
        setup.out.display()
    );
    let interrupt = Interrupt::default();
    stop_on_interrupt(&interrupt, args.timeout)?;
    let done = run::search(setup, &interrupt, &Shown)?;
    outln!("capacity report: {}", done.markdown.display());
    outln!("{}", done.report.sentence);
    if interrupt.stop.requested() {
        return Ok(ExitCode::from(130));
    }
    Ok(ExitCode::SUCCESS)
}

/// The relay to search: a running one through the guard, or a build spec to start per step.
fn relay(args: &CapacityArgs) -> anyhow::Result<Relay> {
    if let Some(spec) = &args.spec {
        let spec =
            BuildSpec::parse(spec, args.config.clone()).map_err(|e| anyhow!("--spec: {e}"))?;
        return Ok(Relay::Fresh {
            spec,
            ready_timeout: args.ready_timeout,
        });
    }
    let url = args
        .relay
        .as_deref()
        .ok_or_else(|| anyhow!("no relay given: pass --relay URL or --spec NAME=CMD"))?;
    let target = target::check(&args.target, url, target::Role::Load)?;
    if !target.loopback() && args.max_rate.is_none() {
        return Err(anyhow!(
            "--relay {url}: a search doubles its rate until the relay fails; a host other than loopback needs --max-rate EVENTS_PER_S to bound it"
        ));
    }
    if let Some(pid) = args.relay_pid {
        if !std::path::Path::new(&format!("/proc/{pid}/stat")).exists() {
            return Err(anyhow!("--relay-pid {pid}: no such process"));
        }
    }
    // NIP-11 once before any load: a relay whose limits the workload would hit is said now.
    let preflight = match &args.trace {
        Some(trace) => Some(replay::preflight::run(
            &target,
            trace,
            &args.target.ca_files,
        )?),
        None => None,
    };
    for line in preflight
        .iter()
        .filter(|p| p.document.is_some())
        .flat_map(replay::preflight::describe)
    {
        eprintln!("{line}");
    }
    Ok(Relay::Running {
        target,
        relay_pid: args.relay_pid,
        preflight,
    })
}

fn source(args: &CapacityArgs) -> anyhow::Result<Source> {
    if let Some(trace) = &args.trace {
        return Ok(Source::Trace(TraceSource::open(trace)?));
    }
    let w = &args.workload;
    let clients = w.clients.unwrap_or(CAPACITY_CLIENTS);
    let opts = Options {
        seed: w.seed,
        clients,
        duration_s: args.step.as_secs_f64(),
        rate_eps: args.start,
        view_share: w.mix,
        read_share: w.read_share,
        edit_share: w.edit_share,
        nip71_share: w.nip71_share,
        creators: w.creators.unwrap_or_else(|| default_creators(clients)),
        epoch: w.epoch,
        live_share: w.live_share,
    };
    opts.validate().map_err(|e| anyhow!(e))?;
    Ok(Source::Synth(opts))
}

fn load(args: &CapacityArgs) -> Load {
    Load {
        speed: Speed::Scaled(1.0),
        // A trace's connections may be capped; a synthesized step has exactly its clients.
        clients: args.trace.as_ref().and(args.workload.clients),
        threads: args.threads,
        connect_concurrency: args.connect_concurrency,
        max_in_flight: args.max_in_flight,
        per_conn_in_flight: args.per_conn_in_flight,
        overload: Overload::Wait,
        timeout: args.timeout,
        duration_s: None,
        reconcile: args.no_reconcile.then_some(false),
        delivery_rows: false,
        start_at: None,
    }
}

/// `--out`, or `reports/capacity/<relay>-<UTC>`; an existing folder must be empty.
fn out_dir(args: &CapacityArgs, relay: &Relay) -> anyhow::Result<PathBuf> {
    let out = args.out.clone().unwrap_or_else(|| {
        let now = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
        let name: String = relay
            .name()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        PathBuf::from("reports/capacity").join(format!("{name}-{now}"))
    });
    if std::fs::read_dir(&out).is_ok_and(|mut d| d.next().is_some()) {
        return Err(anyhow!(
            "{}: the output folder is not empty; a search never mixes its steps with others",
            out.display()
        ));
    }
    Ok(out)
}

/// Ctrl-C ends the step under way and the search after it (the report is written, marked
/// partial); a second one kills a relay lt started and ends lt at once.
fn stop_on_interrupt(interrupt: &Interrupt, timeout: Duration) -> anyhow::Result<()> {
    let group = interrupt.relay_group.clone();
    terminal::on_interrupt(interrupt.stop.clone(), timeout, move || {
        let pid = group.load(Ordering::Relaxed);
        if pid > 0 {
            // SAFETY: kill(2) on the process group lt started for the relay.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
        std::process::exit(130);
    })
}

/// A search as `lt capacity` shows it: a line per step on stdout, a progress line during
/// each replay, warnings on stderr.
struct Shown;

impl run::Observer for Shown {
    fn step_started(&self, number: u32, trial: &Trial, duration: Duration) {
        outln!(
            "step {number:>2} {:<8} {:>8} events/s for {} s",
            trial.phase.word(),
            units::count(trial.rate.round() as u64),
            duration.as_secs_f64()
        );
    }

    fn step_ended(&self, step: &Step) {
        let ms = |x: Option<f64>| x.map_or_else(|| "—".to_owned(), |v| format!("{v:.1}"));
        let verdict = match (&step.judged, &step.error) {
            (Some(j), _) => match j.verdict {
                Verdict::Pass => "pass".to_owned(),
                Verdict::Fail => format!("FAIL ({})", j.failed_term.as_deref().unwrap_or("a term")),
                Verdict::LtLimited => {
                    format!("LT LIMITED ({})", j.lt_limit.as_deref().unwrap_or("lt"))
                }
            },
            (None, Some(e)) => format!("not completed: {e}"),
            (None, None) => "not completed".to_owned(),
        };
        outln!(
            "        achieved {:.0} events/s · p50 {} ms · p99 {} ms · {verdict}",
            step.achieved_eps,
            ms(step.response_p50_ms),
            ms(step.response_p99_ms)
        );
    }

    fn warn(&self, text: &str) {
        eprintln!("lt: {text}");
    }

    fn replay(&self, records: u64) -> Arc<dyn replay::ReplayObserver> {
        ProgressLine::new(records)
    }
}
