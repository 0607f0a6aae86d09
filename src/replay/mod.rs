//! Replay: plays a trace to a relay open-loop at scaled time and records an outcome for
//! every record.
//!
//! Threads:
//! - the feeder reads the trace and hands records, a little ahead of time, to the shards;
//! - one shard per core, each a single-threaded tokio runtime owning a share of the
//!   connections and a scheduler that sends each record at its exact time (`shard`);
//! - the results writer (compression off the network path);
//! - the main thread: the sampler, the observer's progress, reconciliation.
//!
//! The caller steers and watches a replay through [`control`]: a [`Stop`] handle and an
//! [`Observer`]. Signals and the process's exit are the caller's (`cmd/replay.rs`).

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
pub mod pace;
pub mod plan;
pub mod preflight;
mod reconcile;
pub mod sample;
mod schedule;
mod shard;
mod shared;
mod timer;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use tokio::sync::{mpsc, Semaphore};

pub use crate::transport::Stop;
pub use config::{Config, Load};
pub use control::{Observer, Progress, Quiet};
pub use pace::Speed;
pub use plan::Plan;
pub use schedule::Overload;
use schedule::Schedule;

use crate::capture::results::{self, ConnectRow, Header, ResultsWriter, Row, Sample, Trailer};
use crate::capture::TraceReader;
use sample::ProcessMeter;
use shared::{Setup, Shared};

/// From the end of the connect phase to t0.
const START_MARGIN: Duration = Duration::from_millis(100);
/// How long the results writer sleeps when it has caught up: each wake-up costs CPU that
/// shows in lt's cost per event at low rates. The long nap follows a round of fewer than
/// [`WRITER_FEW_ROWS`] rows. It is bounded by a burst after a quiet round: rows that come
/// in faster than the backlog cap (`shared::ROWS_BACKLOG_MAX`, 8,192) per nap make the
/// scheduler wait for the writer, which 50 ms allows up to 160k rows/s (20 ms: 400k).
const WRITER_NAP: Duration = Duration::from_millis(20);
const WRITER_NAP_LONG: Duration = Duration::from_millis(50);
const WRITER_FEW_ROWS: usize = 256;

pub struct Summary {
    pub results: PathBuf,
    pub trailer: Trailer,
    pub connect_failures: u64,
    pub reconcile_error: Option<String>,
}

/// How many network threads (shards) a replay of `plan` runs, `asked` being `--threads`.
pub fn network_threads(plan: &Plan, asked: Option<usize>, speed: Speed) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    shard::count(
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
    observer: Arc<dyn Observer>,
) -> anyhow::Result<Summary> {
    // The plan pass hashed every frame already; a changed file still fails at its trailer.
    let reader = TraceReader::open(trace)?.with_verified_fingerprint(&plan.fingerprint);
    let threads = network_threads(plan, cfg.load.threads, cfg.load.speed);
    let header = Header {
        format_version: results::VERSION,
        lt_version: env!("CARGO_PKG_VERSION").to_owned(),
        trace_fingerprint: plan.fingerprint.clone(),
        trace_records: plan.records,
        trace_header: reader.header().clone(),
        options: {
            let mut o = cfg.options.clone();
            o.network_threads = Some(threads);
            o
        },
        target: cfg.target.display_host(),
        started_at: config::rfc3339(chrono::Utc::now()),
        machine: sample::machine(),
        preflight: cfg.preflight.clone(),
        part: plan.part,
        start_at: cfg.load.start_at.map(config::rfc3339),
    };
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // Written in place (not renamed at the end): if lt is killed, every complete block of
    // what it recorded is still readable.
    let file = File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut writer = ResultsWriter::new(BufWriter::with_capacity(1 << 20, file), &header)
        .with_context(|| format!("writing {}", out.display()))?;

    // Rows travel in batches (a connection's completions of one wake-up), so the writer
    // thread is woken once per batch rather than once per record.
    let (rows_tx, mut rows_rx) = mpsc::unbounded_channel::<Vec<Row>>();
    // Rows sent to the writer and not yet written (see `shared::ROWS_BACKLOG_MAX`).
    let rows_pending = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let pending = rows_pending.clone();
    let out_name = out.display().to_string();
    let write_thread = std::thread::Builder::new()
        .name("lt-results".into())
        .spawn(move || -> anyhow::Result<ResultsWriter<BufWriter<File>>> {
            // Woken by the clock, not by each batch: at light load every batch would cost
            // a wake-up of this thread, and rows need not be written at once.
            // Rows written since the last nap.
            let mut round = 0usize;
            loop {
                let batch = match rows_rx.try_recv() {
                    Ok(batch) => batch,
                    Err(mpsc::error::TryRecvError::Empty) => {
                        std::thread::sleep(if round < WRITER_FEW_ROWS {
                            WRITER_NAP_LONG
                        } else {
                            WRITER_NAP
                        });
                        round = 0;
                        continue;
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => break,
                };
                round += batch.len();
                pending.fetch_sub(batch.len(), Ordering::Relaxed);
                for row in batch {
                    let sample = matches!(row, Row::Sample(_));
                    writer
                        .push(&row)
                        .with_context(|| format!("writing {out_name}"))?;
                    if sample {
                        writer
                            .flush()
                            .with_context(|| format!("writing {out_name}"))?;
                    }
                }
            }
            Ok(writer)
        })
        .context("starting the results writer")?;

    // The main thread keeps the control work (signals, sampling, progress, reconciliation)
    // on a runtime of its own; the network work runs on one shard per core (see `shard`).
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
        shared::ToWriter {
            rows: rows_tx,
            pending: rows_pending,
        },
        observer,
    ));
    // Ends every task, so nothing but `shared` below still holds the row sender.
    runtime.shutdown_timeout(Duration::from_secs(1));
    let (shared, extra) = match outcome {
        Ok(v) => v,
        Err(e) => return Err(abandon(write_thread, out, e)),
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
    let writer = write_thread
        .join()
        .map_err(|_| anyhow!("the results writer panicked"))?
        .map_err(|e| anyhow!("{e:#}; {}", partial_hint(out)))?;
    let (_, trailer) = writer
        .finish(trailer)
        .with_context(|| format!("writing {}", out.display()))?;
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

/// A run that failed before it finished: the rows gathered so far go into the file as a last
/// complete block, readable with `lt analyze --partial`; a file that got no row at all (no
/// connection opened, nothing sent) is removed rather than left as a header alone.
fn abandon(
    write_thread: std::thread::JoinHandle<anyhow::Result<ResultsWriter<BufWriter<File>>>>,
    out: &Path,
    error: anyhow::Error,
) -> anyhow::Error {
    // The writer ends when its channel closes (every task has ended).
    let hint = |error: anyhow::Error| anyhow!("{error:#}; {}", partial_hint(out));
    let Ok(Ok(mut writer)) = write_thread.join() else {
        return hint(error);
    };
    if writer.rows() == 0 {
        drop(writer);
        return match std::fs::remove_file(out) {
            Ok(()) => anyhow!(
                "{error:#}; nothing was sent, so no results file was kept ({} removed)",
                out.display()
            ),
            Err(_) => error,
        };
    }
    // The rows gathered since the last block would be lost with the writer.
    let _ = writer.flush();
    drop(writer);
    hint(error)
}

/// What to do with a results file a failed run left behind.
fn partial_hint(out: &Path) -> String {
    format!(
        "the run did not finish: {} keeps every complete block; read it with `lt analyze --partial {}`",
        out.display(),
        out.display()
    )
}

struct Extra {
    connect_failures: u64,
    reconcile_error: Option<String>,
    connect_phase: Duration,
    /// With `--start-at`: the wall clock at t0 minus the instant asked for.
    start_offset_ns: Option<i64>,
}

async fn drive(
    reader: TraceReader<std::io::BufReader<File>>,
    plan: &Plan,
    shard_count: usize,
    cfg: Config,
    stop: Stop,
    to_writer: shared::ToWriter,
    observer: Arc<dyn Observer>,
) -> anyhow::Result<(Arc<Shared>, Extra)> {
    let target = Arc::new(cfg.target.clone());
    let conns = plan.connections.max(1);
    // This process's connections: all, or its part's.
    let played = plan.connections_played().max(1);
    let layout = match plan.part {
        Some(p) => dispatch::Layout::new(p.index, p.count, shard_count),
        None => dispatch::Layout::new(0, 1, shard_count),
    };
    let connect_limiter = Arc::new(Semaphore::new(cfg.load.connect_concurrency.max(1)));
    let schedule = Schedule {
        max_in_flight: cfg.load.max_in_flight.max(1),
        overload: cfg.load.overload,
        unpaced: cfg.load.speed == Speed::Max,
        stop_after_ns: cfg.load.stop_after_ns(),
    };
    let mut shards = Vec::with_capacity(shard_count);
    for id in 0..shard_count {
        shards.push(shard::spawn(shard::Setup {
            id,
            layout,
            conns,
            target: target.clone(),
            connect_limiter: connect_limiter.clone(),
            schedule,
            scheduler_thread: plan.live_subs > 0,
        })?);
    }

    // Connect phase (in the shards): wait for every attempt.
    observer.phase(&format!("connecting {played} connections"));
    let connecting = Instant::now();
    let mut connected = Vec::with_capacity(conns as usize);
    let mut lost_shard = None;
    for (id, s) in shards.iter_mut().enumerate() {
        match (&mut s.connected).await {
            Ok(report) => connected.extend(report),
            Err(_) => lost_shard = lost_shard.or(Some(id)),
        }
    }
    connected.sort_by_key(|c| c.conn);
    let connect_phase = connecting.elapsed();
    let connect_failures = connected.iter().filter(|c| c.error.is_some()).count() as u64;
    if let Some(id) = lost_shard {
        let err = join_shards(shards).await.err();
        return Err(err.unwrap_or_else(|| anyhow!("network thread {id} ended while connecting")));
    }
    // A certificate the client does not accept fails every connection alike: no load.
    if let Some(e) = connected
        .iter()
        .filter_map(|c| c.error.as_ref())
        .find(|e| e.is_tls())
    {
        let e = e.clone();
        let _ = join_shards(shards).await;
        return Err(anyhow!("{e}; nothing sent"));
    }
    if connect_failures == u64::from(played) {
        let first = connected.iter().find_map(|c| c.error.clone());
        // Dropping the start senders ends the shards.
        let _ = join_shards(shards).await;
        return Err(anyhow!(
            "could not open any of {played} connections to {}: {}",
            target.display_host(),
            first.map(|e| e.to_string()).unwrap_or_default()
        ));
    }

    // The clock starts a moment after the connect phase, so the records due first are
    // already with their shards when their time comes.
    let t0 = match cfg.load.start_at {
        None => Instant::now() + START_MARGIN,
        Some(at) => {
            let wait = (at - chrono::Utc::now()).to_std().map_err(|_| {
                anyhow!(
                    "--start-at {}: already past once the connections were open (connecting took {:.1} s); choose a later instant",
                    config::rfc3339(at),
                    connect_phase.as_secs_f64()
                )
            });
            match wait {
                Ok(wait) => Instant::now() + wait,
                Err(e) => {
                    let _ = join_shards(shards).await;
                    return Err(e);
                }
            }
        }
    };
    // How far the wall clock is from the instant asked for when t0 comes.
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
    let shared = Arc::new(Shared::new(
        Setup {
            t0,
            timeout: cfg.load.timeout,
            per_conn_in_flight: cfg.load.per_conn_in_flight.max(1),
            reconcile: cfg.reconcile,
            stop,
            fanout: fanout.as_ref().map(fanout::Fanout::sender),
            delivery_rows: cfg.load.delivery_rows,
        },
        to_writer,
    ));
    shared.emit_all(
        connected
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
            .collect(),
    );

    let sampler = tokio::spawn(sample_loop(
        shared.clone(),
        cfg.relay_pid,
        observer.clone(),
        plan.records_played(),
    ));

    let mut feeds = Vec::with_capacity(shards.len());
    let mut threads = Vec::with_capacity(shards.len());
    for s in shards {
        // A shard that already ended shows its error when joined below.
        let _ = s.start.send(shared.clone());
        feeds.push(s.feed);
        threads.push(s.thread);
    }
    let feed = feed::Feed {
        speed: cfg.load.speed,
        stop_after_ns: cfg.load.stop_after_ns(),
        conns,
        announcer: fanout.as_ref().map(|f| fanout::Announcer::new(f.sender())),
        layout,
    };
    let feed_shared = shared.clone();
    let (fed_tx, fed_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("lt-feed".into())
        .spawn(move || {
            let _ = fed_tx.send(feed::run(reader, feeds, feed_shared, feed));
        })
        .context("starting the feeder thread")?;
    let fed = fed_rx
        .await
        .map_err(|_| anyhow!("the feeder thread panicked"));
    // On a feeder error (a damaged trace mid-run) the feeds are closed: connections drain
    // what they have, then the error is reported.
    let joined = join_threads(threads).await;
    let records = fed??;
    joined?;
    debug_assert_eq!(records, plan.records);

    let held = shared.take_unacked()?;
    let mut reconcile_error = None;
    if !held.is_empty() {
        observer.phase(&format!("reconciling {} unacknowledged events", held.len()));
        let (rows, err) = reconcile::reconcile(&target, held).await;
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
    sampler.abort();
    let start_offset_ns = match start_offset {
        Some(task) => task.await.ok(),
        None => None,
    };
    Ok((
        shared,
        Extra {
            connect_failures,
            reconcile_error,
            connect_phase,
            start_offset_ns,
        },
    ))
}

/// Ends shards that were never started (their start senders are dropped here).
async fn join_shards(shards: Vec<shard::Handle>) -> anyhow::Result<()> {
    join_threads(shards.into_iter().map(|s| s.thread).collect()).await
}

/// Waits for the network threads; the first error wins.
async fn join_threads(
    threads: Vec<std::thread::JoinHandle<anyhow::Result<()>>>,
) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || {
        let mut first = Ok(());
        for t in threads {
            let r = t
                .join()
                .map_err(|_| anyhow!("a network thread panicked"))
                .and_then(|r| r);
            if first.is_ok() {
                first = r;
            }
        }
        first
    })
    .await
    .context("joining the network threads")?
}

/// Every second: a sample row (which also makes the writer flush a block) and the
/// observer's progress.
async fn sample_loop(
    shared: Arc<Shared>,
    relay_pid: Option<u32>,
    observer: Arc<dyn Observer>,
    records: u64,
) {
    let mut me = ProcessMeter::new(None);
    let mut relay = ProcessMeter::new(relay_pid);
    // From t0: a first sample taken earlier would show the connections of only the shards
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
