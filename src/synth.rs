//! The synth pipeline: plan (one thread, the only consumer of the RNG) → sign (a rayon pool,
//! order-preserving) → write (one thread, compression). Bounded channels between the stages
//! keep memory flat in trace length, and because batches stay in order and signing is pure,
//! the bytes do not depend on the number of threads.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::mpsc::{sync_channel, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use indicatif::ProgressBar;
use rayon::prelude::*;

use crate::capture::trace::{Source, VERSION};
use crate::capture::{Header, Op, Record, TraceWriter, Trailer};
use crate::workload::{self, model, Draft, Options, Planner};

/// Drafts signed per parallel batch: large enough to amortise the hand-off between stages,
/// small enough that the three stages overlap and memory stays a few MiB.
const BATCH: usize = 2048;
/// Batches buffered between stages.
const DEPTH: usize = 4;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpStats {
    pub records: u64,
    pub frame_bytes: u64,
}

#[derive(Debug, Clone)]
pub struct Summary {
    pub trailer: Trailer,
    /// File size in bytes.
    pub bytes: u64,
    pub by_op: BTreeMap<Op, OpStats>,
    pub elapsed: Duration,
    pub threads: usize,
}

pub fn header(opts: &Options) -> Header {
    Header {
        format_version: VERSION,
        lt_version: env!("CARGO_PKG_VERSION").to_owned(),
        generator: format!("lt synth (workload model v{})", model::MODEL_VERSION),
        schema_source: model::SCHEMA_SOURCE.to_owned(),
        source: Source::Synth(opts.clone()),
    }
}

/// Synthesizes the trace `opts` describes into `out` using `threads` signing threads.
pub fn write<W: Write + Send>(
    opts: &Options,
    out: W,
    threads: usize,
    progress: &ProgressBar,
) -> anyhow::Result<(W, Summary)> {
    let started = Instant::now();
    let mut planner = Planner::new(opts).map_err(|e| anyhow!(e))?;
    let keypairs = planner.keypairs().to_vec();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("lt-sign-{i}"))
        .build()
        .context("starting the signing threads")?;
    let writer = TraceWriter::new(out, &header(opts)).context("writing the trace header")?;

    let (plan_tx, plan_rx) = sync_channel::<Vec<Draft>>(DEPTH);
    let (sign_tx, sign_rx) = sync_channel::<Vec<Record>>(DEPTH);

    thread::scope(|s| {
        let write_stage = thread::Builder::new()
            .name("lt-write".into())
            .spawn_scoped(s, move || write_stage(writer, sign_rx, progress))
            .context("starting the writer thread")?;
        let plan_stage = thread::Builder::new()
            .name("lt-plan".into())
            .spawn_scoped(s, move || {
                loop {
                    let batch: Vec<Draft> = planner.by_ref().take(BATCH).collect();
                    // A closed channel means a later stage stopped; its error is reported there.
                    if batch.is_empty() || plan_tx.send(batch).is_err() {
                        break;
                    }
                }
            });
        plan_stage.context("starting the planner thread")?;
        for drafts in plan_rx {
            let records: Vec<Record> = pool.install(|| {
                drafts
                    .into_par_iter()
                    .map(|d| workload::finish(d, &keypairs))
                    .collect()
            });
            if sign_tx.send(records).is_err() {
                break;
            }
        }
        drop(sign_tx);
        let (out, trailer, bytes, by_op) = write_stage
            .join()
            .map_err(|_| anyhow!("the trace writer thread panicked"))??;
        Ok((
            out,
            Summary {
                trailer,
                bytes,
                by_op,
                elapsed: started.elapsed(),
                threads,
            },
        ))
    })
}

type Written<W> = (W, Trailer, u64, BTreeMap<Op, OpStats>);

fn write_stage<W: Write>(
    mut writer: TraceWriter<W>,
    batches: Receiver<Vec<Record>>,
    progress: &ProgressBar,
) -> anyhow::Result<Written<W>> {
    let mut by_op: BTreeMap<Op, OpStats> = BTreeMap::new();
    for batch in batches {
        for r in &batch {
            writer
                .push(r)
                .with_context(|| format!("writing record {}", writer.records()))?;
            let s = by_op.entry(r.op).or_default();
            s.records += 1;
            s.frame_bytes += r.frame.len() as u64;
        }
        progress.inc(batch.len() as u64);
    }
    let (out, trailer, bytes) = writer.finish().context("writing the trace trailer")?;
    Ok((out, trailer, bytes, by_op))
}
