//! The feeder: one OS thread that reads the trace in order and hands each record, a little
//! ahead of its time, to the network thread that owns its connection. Records travel in
//! batches, so a network thread is woken about once per [`TICK_NS`] (or per [`BATCH_MAX`]
//! records at high rates), not once per record; the thread itself sends each record at its
//! exact time.
//!
//! Records that will never be sent (`--duration`, a stop request) get their row here, so
//! every record leaves exactly one row.

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use tokio::sync::mpsc::Sender;

use super::dispatch::{Dispatch, Key, Layout};
use super::pace::Speed;
use super::shared::Shared;
use crate::capture::results::Outcome;
use crate::capture::{Completion, Record, TraceReader};

/// How often, at most, the feeder wakes when it is ahead of the clock. Records due within
/// two ticks of now are handed over, so a network thread always holds the next 50–100 ms of its
/// schedule, and is woken by the feeder at most 20 times a second below [`BATCH_MAX`]
/// records per tick.
const TICK_NS: u64 = 50_000_000;
/// Most records in one hand-over.
const BATCH_MAX: usize = 256;

pub struct Feed {
    pub speed: Speed,
    /// Records due later than this (ns after t0) are not sent.
    pub stop_after_ns: Option<u64>,
    pub conns: u32,
    /// Tells the fan-out ledger what records publish and subscribe to, when the trace has
    /// live subscriptions.
    pub announcer: Option<super::fanout::Announcer>,
    /// Which connections this process plays (a part of a sharded replay leaves the
    /// others' records alone: no row, no send) and which network thread owns each.
    pub layout: Layout,
}

fn key(r: &Record) -> Result<Key, String> {
    Ok(match &r.completes {
        Completion::Count { sub } => Key::Sub(sub.clone()),
        Completion::Skip { .. } => Key::None,
        Completion::Ok { id } => {
            let mut raw = [0u8; 32];
            hex::decode_to_slice(id, &mut raw).map_err(|e| format!("event id {id:?}: {e}"))?;
            Key::Ok(raw)
        }
        Completion::Eose { sub } => Key::Sub(sub.clone()),
        Completion::Sent => Key::None,
    })
}

struct Outbox {
    threads: Vec<Sender<Vec<Dispatch>>>,
    pending: Vec<Vec<Dispatch>>,
}

impl Outbox {
    /// Hands network thread `s` what is pending for it. A thread that is gone (it ends only after
    /// the feed does, so only on a failure of its own) cannot take records: they are
    /// counted as disconnected rather than lost.
    fn flush(&mut self, s: usize, shared: &Shared) {
        if self.pending[s].is_empty() {
            return;
        }
        let batch = std::mem::replace(&mut self.pending[s], Vec::with_capacity(BATCH_MAX));
        if let Err(e) = self.threads[s].blocking_send(batch) {
            for d in e.0 {
                shared.finish_unsent(&d, Outcome::Disconnected { code: None });
            }
        }
    }

    fn flush_all(&mut self, shared: &Shared) {
        for s in 0..self.pending.len() {
            self.flush(s, shared);
        }
    }
}

/// Feeds every record of the trace to the network threads; returns how many records it read.
pub fn run<R: std::io::Read>(
    mut trace: TraceReader<R>,
    threads: Vec<Sender<Vec<Dispatch>>>,
    shared: Arc<Shared>,
    mut f: Feed,
) -> anyhow::Result<u64> {
    let n = threads.len();
    let mut out = Outbox {
        threads,
        pending: (0..n).map(|_| Vec::with_capacity(BATCH_MAX)).collect(),
    };
    let mut index = 0u64;
    // Handed over up to here (ns after t0); moves on by at least a tick at a time.
    let mut horizon = 0u64;
    while let Some(r) = trace.next_record()? {
        let intended_ns = f.speed.intended_ns(r.offset_us);
        let conn = r.client % f.conns;
        if !f.layout.mine(conn) {
            // Another part's connection: its records are that process's to play.
            index += 1;
            continue;
        }
        let late = f.stop_after_ns.is_some_and(|limit| intended_ns > limit);
        let key = key(&r).map_err(|e| anyhow::anyhow!("trace record {index}: {e}"))?;
        if let Some(a) = f.announcer.as_mut() {
            a.record(index, conn, &r, intended_ns);
        }
        let d = Dispatch {
            index,
            conn,
            op: r.op,
            frame: r.frame,
            key,
            after: r.after,
            intended_ns,
            ready_ns: intended_ns,
            dispatched_ns: 0,
            held_ns: 0,
            held_mark: 0,
            recorded: r.recorded.map(Box::new),
        };
        index += 1;
        if let Completion::Skip { reason } = &r.completes {
            shared.finish_unsent(
                &d,
                Outcome::Skipped {
                    reason: reason.clone(),
                },
            );
            continue;
        }
        if late || shared.stopping() {
            shared.finish_unsent(&d, Outcome::NotSent);
            continue;
        }
        if intended_ns > horizon {
            // Everything before this record is handed over; sleep until it is within two
            // ticks of its time, but at least a tick after the last wake-up.
            out.flush_all(&shared);
            let wake_ns = intended_ns
                .saturating_sub(2 * TICK_NS)
                .max(horizon.saturating_sub(TICK_NS));
            wait_until(&shared, wake_ns);
            horizon = shared.now_ns().max(wake_ns) + 2 * TICK_NS;
            if shared.stopping() {
                shared.finish_unsent(&d, Outcome::NotSent);
                continue;
            }
        }
        let s = f.layout.owner(conn);
        out.pending[s].push(d);
        if out.pending[s].len() >= BATCH_MAX {
            out.flush(s, &shared);
        }
    }
    out.flush_all(&shared);
    Ok(index)
}

/// Sleeps until `ns` after t0, in slices short enough to notice a stop request. Precision
/// does not matter here: the network threads keep the exact times.
fn wait_until(shared: &Shared, ns: u64) {
    loop {
        let now = shared.now_ns();
        if now >= ns || shared.stopping() {
            return;
        }
        thread::sleep(Duration::from_nanos(ns - now).min(Duration::from_millis(50)));
    }
}
