//! Replay: plays a trace to a relay open-loop at scaled time and records an outcome for
//! every record.
//!
//! Threads:
//! - the feeder reads the trace and hands records, a little ahead of time, to the network
//!   threads;
//! - as few network threads as the rate needs, at most one per core, each a single-threaded
//!   tokio runtime owning a share of the connections and a scheduler that sends each record
//!   at its exact time (`network`);
//! - the results writer (compression off the network path, `writer`);
//! - the main thread: the sampler, the observer's progress, reconciliation.
//!
//! The caller steers and watches a replay through [`control`]: a [`Stop`] handle and an
//! [`ReplayObserver`]. Signals and the process's exit are the caller's (`cmd/replay.rs`).

mod book;
pub mod config;
mod conn;
pub mod control;
mod dispatch;
mod fanout;
pub mod fds;
mod feed;
mod hold;
mod net;
mod network;
pub mod pace;
pub mod plan;
pub mod preflight;
mod reconcile;
pub mod sample;
mod schedule;
mod shared;
mod timer;
mod writer;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use tokio::sync::Semaphore;

pub use crate::transport::Stop;
pub use config::{Config, Load};
pub use control::{Progress, Quiet, ReplayObserver};
pub use pace::Speed;
pub use plan::Plan;
pub use schedule::Overload;
use schedule::Schedule;

use crate::capture::results::{self, ConnectRow, Header, Row, Sample, Trailer};
use crate::capture::TraceReader;
use sample::ProcessMeter;
use shared::Shared;
use writer::Writer;

/// From the end of the connect phase to t0.
const START_MARGIN: Duration = Duration::from_millis(100);

pub struct Summary {
    pub results: PathBuf,
    pub trailer: Trailer,
    pub connect_failures: u64,
    pub reconcile_error: Option<String>,
}

/// How many network threads a replay of `plan` runs, `asked` being `--threads`.
pub fn network_threads(plan: &Plan, asked: Option<usize>, speed: Speed) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    network::count(
        asked,
        plan.peak_per_s,
        plan.live_subs > 0,
        speed == Speed::Max,
        cores,
        plan.connections_played(),
    )
}

/// Replays `trace` (already planned: verified and fingerprinted) into the results file `out`,
/// until done or until `stop` is requested; `observer` is told its progress.
pub fn run(
    trace: &Path,
    plan: &Plan,
    out: &Path,
    cfg: Config,
    stop: &Stop,
    observer: Arc<dyn ReplayObserver>,
) -> anyhow::Result<Summary> {
    // The plan pass hashed every frame already; a changed file still fails at its trailer.
    let reader = TraceReader::open(trace)?.with_verified_fingerprint(&plan.fingerprint);
    let threads = network_threads(plan, cfg.load.threads, cfg.load.speed);
    let header = header(plan, reader.header(), &cfg, threads);
    let (writer, to_writer) = Writer::start(out, &header)?;
    if let Some(live) = &cfg.live {
        live.run_started(plan.records_played());
    }

    // The main thread keeps the control work (signals, sampling, progress, reconciliation)
    // on a runtime of its own; the network work runs on the network threads (see `network`).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the control runtime")?;
    let started = Instant::now();
    let outcome = runtime.block_on(drive(
        reader,
        plan,
        threads,
        cfg,
        stop.clone(),
        to_writer,
        observer,
    ));
    // Ends every task, so nothing but `shared` below still holds the row sender.
    runtime.shutdown_timeout(Duration::from_secs(1));
    let (shared, extra) = match outcome {
        Ok(v) => v,
        Err(e) => return Err(writer.abandon(e)),
    };
    let frames = shared.frame_counts();
    let trailer = Trailer {
        rows: 0,
        outcomes: 0,
        by_outcome: BTreeMap::new(),
        samples: 0,
        finished_at: config::rfc3339(chrono::Utc::now()),
        elapsed_ns: started.elapsed().as_nanos() as u64,
        interrupted: shared.stopping(),
        unparseable_frames: frames.unparseable,
        oversized_frames: frames.oversized,
        notices: frames.notices,
        late_acks: frames.late_acks,
        connect_phase_ns: Some(extra.connect_phase.as_nanos() as u64),
        start_offset_ns: extra.start_offset_ns,
    };
    drop(shared);
    let trailer = writer.finish(trailer)?;
    if trailer.outcomes != plan.records_played() {
        return Err(anyhow!(
            "internal error: {} outcomes for {} trace records in {}",
            trailer.outcomes,
            plan.records_played(),
            out.display()
        ));
    }
    Ok(Summary {
        results: out.to_owned(),
        trailer,
        connect_failures: extra.connect_failures,
        reconcile_error: extra.reconcile_error,
    })
}

/// The results file's header: the trace, the options (with the network threads chosen),
/// the target, the machine, and when.
fn header(
    plan: &Plan,
    trace_header: &crate::capture::trace::Header,
    cfg: &Config,
    threads: usize,
) -> Header {
    let mut options = cfg.options.clone();
    options.network_threads = Some(threads);
    let scrapes: Vec<_> = cfg.scrapes.iter().map(|s| s.header.clone()).collect();
    Header {
        format_version: results::version_for(&scrapes),
        lt_version: env!("CARGO_PKG_VERSION").to_owned(),
        trace_fingerprint: plan.fingerprint.clone(),
        trace_records: plan.records,
        trace_header: trace_header.clone(),
        options,
        target: cfg.target.display_host(),
        started_at: config::rfc3339(chrono::Utc::now()),
        machine: sample::machine(),
        preflight: cfg.preflight.clone(),
        part: plan.part,
        start_at: cfg.load.start_at.map(config::rfc3339),
        scrapes,
    }
}

struct Extra {
    connect_failures: u64,
    reconcile_error: Option<String>,
    connect_phase: Duration,
    /// With `--start-at`: the wall clock at t0 minus the instant asked for.
    start_offset_ns: Option<i64>,
}

/// The replay on the control runtime: connect → start the clock → play → wind down. The
/// network threads are joined on every way out.
async fn drive(
    reader: TraceReader<std::io::BufReader<File>>,
    plan: &Plan,
    thread_count: usize,
    mut cfg: Config,
    stop: Stop,
    to_writer: shared::ToWriter,
    observer: Arc<dyn ReplayObserver>,
) -> anyhow::Result<(Arc<Shared>, Extra)> {
    let target = Arc::new(cfg.target.clone());
    let layout = match plan.part {
        Some(p) => dispatch::Layout::new(p.index, p.count, thread_count),
        None => dispatch::Layout::new(0, 1, thread_count),
    };
    let mut threads = spawn_threads(plan, thread_count, layout, &cfg, &target)?;
    let opened = match connect(&mut threads, plan, &target, &*observer).await {
        Ok(opened) => opened,
        Err(e) => return Err(threads.fail(e).await),
    };
    // Each source's baseline scrape, before the clock starts (see `scrape::Sampler`).
    let mut scraper =
        crate::scrape::Sampler::start(std::mem::take(&mut cfg.scrapes), cfg.scrape_interval);
    let clock = match Clock::start(&cfg, plan, opened.phase) {
        Ok(clock) => clock,
        Err(e) => return Err(threads.fail(e).await),
    };
    let shared = Arc::new(Shared::new(
        shared::Setup {
            t0: clock.t0,
            timeout: cfg.load.timeout,
            per_conn_in_flight: cfg.load.per_conn_in_flight.max(1),
            reconcile: cfg.reconcile,
            stop,
            fanout: clock.fanout.as_ref().map(fanout::Fanout::sender),
            delivery_rows: cfg.load.delivery_rows,
            live: cfg.live.clone(),
        },
        to_writer,
    ));
    shared.emit_all(opened.rows);
    let emit_to = shared.clone();
    scraper.run(clock.t0, Arc::new(move |rows| emit_to.emit_all(rows)));
    let sampler = tokio::spawn(sample_loop(
        shared.clone(),
        cfg.relay_pid,
        observer.clone(),
        plan.records_played(),
    ));
    let feed = feed::Feed {
        speed: cfg.load.speed,
        stop_after_ns: cfg.load.stop_after_ns(),
        conns: plan.connections.max(1),
        announcer: clock
            .fanout
            .as_ref()
            .map(|f| fanout::Announcer::new(f.sender())),
        layout,
    };
    let played = play(&mut threads, reader, &shared, feed).await;
    debug_assert!(played.as_ref().map_or(true, |&n| n == plan.records));
    // Sampled to the end: reconciliation is part of the relay's work.
    let wound = match played {
        Ok(_) => wind_down(&shared, &target, clock.fanout, &*observer).await,
        Err(e) => Err(e),
    };
    sampler.abort();
    // Joins the scraping threads (a scrape under way ends within its timeout).
    scraper.stop();
    let reconcile_error = wound?;
    let start_offset_ns = match clock.start_offset {
        Some(task) => task.await.ok(),
        None => None,
    };
    let extra = Extra {
        connect_failures: opened.failures,
        reconcile_error,
        connect_phase: opened.phase,
        start_offset_ns,
    };
    Ok((shared, extra))
}

/// One network thread per `thread_count`, each with its share of the connections.
fn spawn_threads(
    plan: &Plan,
    thread_count: usize,
    layout: dispatch::Layout,
    cfg: &Config,
    target: &Arc<crate::guard::Target>,
) -> anyhow::Result<network::Threads> {
    let connect_limiter = Arc::new(Semaphore::new(cfg.load.connect_concurrency.max(1)));
    let schedule = Schedule {
        max_in_flight: cfg.load.max_in_flight.max(1),
        overload: cfg.load.overload,
        unpaced: cfg.load.speed == Speed::Max,
        stop_after_ns: cfg.load.stop_after_ns(),
    };
    network::Threads::spawn((0..thread_count).map(|id| network::Setup {
        id,
        layout,
        conns: plan.connections.max(1),
        target: target.clone(),
        connect_limiter: connect_limiter.clone(),
        schedule,
        scheduler_thread: plan.live_subs > 0,
    }))
}

/// The connect phase's outcome: a row per connection, how many failed, how long it took.
struct Opened {
    rows: Vec<Row>,
    failures: u64,
    phase: Duration,
}

/// Waits for every initial connection attempt (in the network threads). No load follows
/// when none opened, or when the certificate was refused (it fails every connection
/// alike).
async fn connect(
    threads: &mut network::Threads,
    plan: &Plan,
    target: &crate::guard::Target,
    observer: &dyn ReplayObserver,
) -> anyhow::Result<Opened> {
    // This process's connections: all, or its part's.
    let played = plan.connections_played().max(1);
    observer.phase(&format!("connecting {played} connections"));
    let connecting = Instant::now();
    let connected = match threads.connected().await {
        Ok(connected) => connected,
        Err(id) => {
            let err = threads.join().await.err();
            return Err(
                err.unwrap_or_else(|| anyhow!("network thread {id} ended while connecting"))
            );
        }
    };
    let phase = connecting.elapsed();
    let errors = || connected.iter().filter_map(|c| c.error.as_ref());
    if let Some(e) = errors().find(|e| e.is_tls()) {
        return Err(anyhow!("{e}; nothing sent"));
    }
    let failures = errors().count() as u64;
    if failures == u64::from(played) {
        return Err(anyhow!(
            "could not open any of {played} connections to {}: {}",
            target.display_host(),
            errors().next().map(|e| e.to_string()).unwrap_or_default()
        ));
    }
    let rows = connected
        .into_iter()
        .map(|c| {
            Row::Connect(ConnectRow {
                conn: c.conn,
                at_ns: 0,
                initial: true,
                latency_ns: c.latency.as_nanos() as u64,
                error: c.error.map(|e| e.to_string()),
                tcp_ns: c.phases.tcp_ns,
                tls_ns: c.phases.tls_ns,
                upgrade_ns: c.phases.upgrade_ns,
            })
        })
        .collect();
    Ok(Opened {
        rows,
        failures,
        phase,
    })
}

/// The run's clock: t0, and what starts with it.
struct Clock {
    t0: Instant,
    /// With `--start-at`: how far the wall clock is from the instant asked for at t0.
    start_offset: Option<tokio::task::JoinHandle<i64>>,
    /// The live subscriptions' ledger, for a trace that has them.
    fanout: Option<fanout::Fanout>,
}

impl Clock {
    /// t0 is a moment after the connect phase (which took `connect_phase`), so the records
    /// due first are already with their threads when their time comes; or the instant
    /// `--start-at` asked for.
    fn start(cfg: &Config, plan: &Plan, connect_phase: Duration) -> anyhow::Result<Clock> {
        let t0 = match cfg.load.start_at {
            None => Instant::now() + START_MARGIN,
            Some(at) => {
                let wait = (at - chrono::Utc::now()).to_std().map_err(|_| {
                    anyhow!(
                        "--start-at {}: already past once the connections were open (connecting took {:.1} s); choose a later instant",
                        config::rfc3339(at),
                        connect_phase.as_secs_f64()
                    )
                })?;
                Instant::now() + wait
            }
        };
        let start_offset = cfg.load.start_at.map(|at| {
            tokio::spawn(async move {
                tokio::time::sleep_until(tokio::time::Instant::from_std(t0)).await;
                (chrono::Utc::now() - at)
                    .num_nanoseconds()
                    .unwrap_or(i64::MAX)
            })
        });
        // An expected delivery may come as late as a record's answer may.
        let fanout = if plan.live_subs > 0 {
            Some(fanout::Fanout::start(
                t0,
                cfg.load.timeout,
                plan.part.is_some(),
            )?)
        } else {
            None
        };
        Ok(Clock {
            t0,
            start_offset,
            fanout,
        })
    }
}

/// Starts the network threads and feeds them the trace (on a thread of its own) until it
/// ends or the run stops; waits for both. Returns the records read.
async fn play(
    threads: &mut network::Threads,
    reader: TraceReader<std::io::BufReader<File>>,
    shared: &Arc<Shared>,
    feed: feed::Feed,
) -> anyhow::Result<u64> {
    let feeds = threads.start(shared);
    let feed_shared = shared.clone();
    let (fed_tx, fed_rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("lt-feed".into())
        .spawn(move || {
            let _ = fed_tx.send(feed::run(reader, feeds, feed_shared, feed));
        })
        .context("starting the feeder thread");
    if let Err(e) = spawned {
        return Err(threads.fail(e).await);
    }
    let fed = fed_rx
        .await
        .map_err(|_| anyhow!("the feeder thread panicked"));
    // On a feeder error (a damaged trace mid-run) the feeds are closed: connections drain
    // what they have, then the error is reported.
    let joined = threads.join().await;
    let records = fed??;
    joined?;
    Ok(records)
}

/// After the last record: reconciliation of events left unacknowledged (their rows), and
/// the live subscriptions' ledger. Returns reconciliation's error, which does not fail
/// the run.
async fn wind_down(
    shared: &Shared,
    target: &crate::guard::Target,
    fanout: Option<fanout::Fanout>,
    observer: &dyn ReplayObserver,
) -> anyhow::Result<Option<String>> {
    let held = shared.take_unacked()?;
    let mut reconcile_error = None;
    if !held.is_empty() {
        observer.phase(&format!("reconciling {} unacknowledged events", held.len()));
        let (rows, err) = reconcile::reconcile(target, held).await;
        reconcile_error = err;
        for row in rows {
            shared.emit(Row::Outcome(row));
        }
    }
    if let Some(f) = fanout {
        let (row, seconds) = f.finish()?;
        let mut rows: Vec<Row> = seconds.into_iter().map(Row::Deliveries).collect();
        rows.push(Row::Fanout(Box::new(row)));
        shared.emit_all(rows);
    }
    Ok(reconcile_error)
}

/// Every second: a sample row (which also makes the writer flush a block) and the
/// observer's progress.
async fn sample_loop(
    shared: Arc<Shared>,
    relay_pid: Option<u32>,
    observer: Arc<dyn ReplayObserver>,
    records: u64,
) {
    let mut me = ProcessMeter::new(None);
    let mut relay = ProcessMeter::new(relay_pid);
    // From t0: a first sample taken earlier would show the connections of only the threads
    // started by then, at a time before the clock's zero.
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::from_std(shared.t0()),
        Duration::from_secs(1),
    );
    let mut last = (shared.t0(), 0u64);
    loop {
        tick.tick().await;
        let (cpu, rss) = me.read();
        let (relay_cpu, relay_rss) = if relay_pid.is_some() {
            relay.read()
        } else {
            (None, None)
        };
        let c = shared.counts();
        shared.emit(Row::Sample(Sample {
            at_ns: shared.now_ns(),
            relay_cpu_pct: relay_cpu,
            relay_rss_bytes: relay_rss,
            harness_cpu_pct: cpu.unwrap_or(0.0),
            harness_rss_bytes: rss.unwrap_or(0),
            lag_max_us: shared.take_lag_window_max() / 1000,
            connections_open: c.open_conns,
            in_flight: c.in_flight,
            sent: c.sent,
            completed: c.completed,
        }));
        let now = Instant::now();
        let per_s = (c.sent - last.1) as f64 / now.duration_since(last.0).as_secs_f64().max(1e-3);
        last = (now, c.sent);
        observer.tick(&Progress {
            records,
            completed: c.completed.min(records),
            sent: c.sent,
            succeeded: c.succeeded,
            failed: c.failed,
            sent_per_s: per_s,
            response_p99_ms: shared.response_p99_us() as f64 / 1000.0,
        });
    }
}
