//! `lt capacity`: guard the target, set up the search from the arguments, run it with
//! Ctrl-C handled, print a line per step and the answer in one sentence last.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::anyhow;

use crate::ab::relay::BuildSpec;
use crate::ab::session::Interrupt;
use crate::capacity::run::{self, Relay, Setup};
use crate::capacity::slo::Slo;
use crate::capacity::source::{Source, TraceSource};
use crate::cli::{CapacityArgs, CAPACITY_CLIENTS};
use crate::replay::{self, Load, Overload, Speed};
use crate::target;
use crate::terminal;
use crate::units;
use crate::workload::{default_creators, Options};

pub fn run(args: CapacityArgs) -> anyhow::Result<ExitCode> {
    let relay = relay(&args)?;
    let source = source(&args)?;
    let slo = Slo::new(args.search.slo.clone());
    let load = load(&args);
    let scraping = args.scrape.scraping(
        &args.target.allow_hosts,
        &args.target.ca_files,
        !args.dry_run,
    )?;
    let out = out_dir(&args, &relay)?;
    let setup = Setup {
        relay,
        source,
        slo,
        params: args.search.params(),
        timing: args.search.timing(),
        load,
        strict_limits: args.strict_limits,
        scraping,
        out,
    };
    if args.dry_run {
        print_plan(&setup);
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "lt capacity: {} · SLO {} · start {} events/s, precision {}%; folder {}",
        setup.relay.name(),
        setup.slo.texts().join(" AND "),
        units::count(args.search.start as u64),
        args.search.precision * 100.0,
        setup.out.display()
    );
    let interrupt = Interrupt::default();
    terminal::on_interrupt_killing_relay(&interrupt, args.timeout)?;
    let done = run::search(setup, &interrupt, &terminal::SearchLines)?;
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
    if !target.loopback() && args.search.max_rate.is_none() {
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
        duration_s: args.search.step.as_secs_f64(),
        rate_eps: args.search.start,
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

/// `--dry-run`: what the search would do, nothing sent.
fn print_plan(setup: &Setup) {
    outln!("dry run: nothing sent, no socket opened, no relay started");
    match &setup.relay {
        Relay::Running { target, .. } => outln!(
            "target        {} — allowed ({}); never restarted",
            target.display_host(),
            if target.loopback() {
                "loopback"
            } else {
                "on the allow-list of dedicated test hosts"
            }
        ),
        Relay::Fresh { spec, .. } => outln!(
            "relay         {} started per step on 127.0.0.1: {}",
            spec.name,
            spec.command
        ),
    }
    outln!("workload      {}", setup.source.describe());
    outln!("SLO           {}", setup.slo.texts().join(" AND "));
    for rule in crate::capacity::slo::always() {
        outln!("  and         {rule}");
    }
    let p = &setup.params;
    let t = &setup.timing;
    outln!(
        "search        warm-up {} s at {} events/s, then ×{} per step until one fails, bisection to {}%, confirmation {} s{}",
        t.warmup.as_secs_f64(),
        p.start,
        p.factor,
        p.precision * 100.0,
        t.confirm.as_secs_f64(),
        p.max_rate
            .map(|m| format!("; at most {m} events/s"))
            .unwrap_or_default()
    );
    outln!(
        "steps         {} s each, {} s apart{}",
        t.step.as_secs_f64(),
        t.cooldown.as_secs_f64(),
        t.deadline
            .map(|d| format!("; deadline {} s", d.as_secs_f64()))
            .unwrap_or_default()
    );
    outln!("folder        {}", setup.out.display());
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
