//! State shared by the feeder, the shards (schedulers and connection tasks) and the sampler:
//! counters (atomics, read by the progress line and the sampler) and the histograms the
//! summary uses.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::Notify;

use crate::capture::results::{Outcome, OutcomeRow, Row};

/// Most rows waiting for the results writer (~2 MiB) before the scheduler holds back. Only
/// `--speed max` outruns the writer, and then the backlog sits at this bound until the run
/// ends: at 32,768 rows it added ~7 MiB to the resident set at the end of long runs (short
/// ones end before the backlog fills). 4,096 and 32,768 sent equally fast (1M records into
/// the bench's peer, 177–200k events/s either way); this leaves room for the writer's 20 ms
/// naps at higher rates.
pub const ROWS_BACKLOG_MAX: usize = 8_192;

/// Response time (completed − intended) for the progress line, in microseconds. Every
/// figure of the summary is analyze's, read back from the results file (one definition of
/// each figure).
pub struct Histograms {
    pub response_us: Histogram<u64>,
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 1 hour at 3 significant digits; larger values saturate at the top.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

impl Histograms {
    pub fn new() -> Histograms {
        Histograms {
            response_us: histogram(),
        }
    }
}

impl Default for Histograms {
    fn default() -> Self {
        Self::new()
    }
}

pub struct Shared {
    pub t0: Instant,
    pub timeout: Duration,
    pub per_conn_in_flight: usize,
    pub reconcile: bool,
    pub stop: AtomicBool,
    pub in_flight: AtomicUsize,
    pub sent: AtomicU64,
    pub completed: AtomicU64,
    pub succeeded: AtomicU64,
    pub failed: AtomicU64,
    pub open_conns: AtomicU32,
    pub late_acks: AtomicU64,
    pub unparseable: AtomicU64,
    pub oversized: AtomicU64,
    pub notices: AtomicU64,
    /// Largest schedule lag since the sampler last looked, ns.
    pub lag_window_max_ns: AtomicU64,
    pub hists: Mutex<Histograms>,
    /// Signalled when in-flight slots are freed while a scheduler waits at the global cap
    /// (`slot_waiters` > 0), so completions cost nothing extra when nobody waits.
    pub slot_freed: Notify,
    pub slot_waiters: AtomicUsize,
    /// Rows handed to the results writer and not yet written; the scheduler waits while
    /// this is above [`ROWS_BACKLOG_MAX`], so memory stays bounded when lt outruns its
    /// own writer (the wait shows as schedule lag, as it should).
    pub rows_pending: Arc<AtomicUsize>,
    /// Events that timed out, held back until reconciliation decides their outcome.
    pub unacked: Mutex<Vec<([u8; 32], OutcomeRow)>>,
    rows: UnboundedSender<Vec<Row>>,
}

impl Shared {
    pub fn new(
        t0: Instant,
        timeout: Duration,
        per_conn_in_flight: usize,
        reconcile: bool,
        rows: UnboundedSender<Vec<Row>>,
        rows_pending: Arc<AtomicUsize>,
    ) -> Shared {
        Shared {
            t0,
            timeout,
            per_conn_in_flight,
            reconcile,
            stop: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            sent: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            succeeded: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            open_conns: AtomicU32::new(0),
            late_acks: AtomicU64::new(0),
            unparseable: AtomicU64::new(0),
            oversized: AtomicU64::new(0),
            notices: AtomicU64::new(0),
            lag_window_max_ns: AtomicU64::new(0),
            hists: Mutex::new(Histograms::new()),
            slot_freed: Notify::new(),
            slot_waiters: AtomicUsize::new(0),
            rows_pending,
            unacked: Mutex::new(Vec::new()),
            rows,
        }
    }

    /// ns since t0; 0 before it.
    pub fn now_ns(&self) -> u64 {
        self.t0.elapsed().as_nanos() as u64
    }

    /// Whether `ns` after t0 has come (false before t0, even for `ns` 0).
    pub fn reached(&self, ns: u64) -> bool {
        Instant::now() >= self.t0 + Duration::from_nanos(ns)
    }

    /// Sends a row to the results writer. A writer that is gone has already failed the
    /// run with its own error.
    pub fn emit(&self, row: Row) {
        self.emit_all(vec![row]);
    }

    pub fn emit_all(&self, rows: Vec<Row>) {
        if rows.is_empty() {
            return;
        }
        self.rows_pending.fetch_add(rows.len(), Ordering::Relaxed);
        let _ = self.rows.send(rows);
    }

    /// Records written in one batch at `sent_ns`, each given by the time it was ready to go:
    /// counted, and their largest lag kept for the next per-second sample.
    pub fn record_sent(&self, ready: impl Iterator<Item = u64>, sent_ns: u64) {
        let (n, max) = ready.fold((0u64, 0u64), |(n, m), ready| {
            (n + 1, m.max(sent_ns.saturating_sub(ready)))
        });
        self.sent.fetch_add(n, Ordering::Relaxed);
        self.lag_window_max_ns.fetch_max(max, Ordering::Relaxed);
    }

    /// A dispatched record is done: count it, free its in-flight slot, write its row (or
    /// hold it for reconciliation when it is an event that timed out).
    pub fn complete(&self, row: OutcomeRow, unacked_id: Option<[u8; 32]>) {
        self.complete_all(vec![(row, unacked_id)]);
    }

    /// [`Shared::complete`] for a connection's batch: one histogram lock and one message to
    /// the writer for all of them.
    pub fn complete_all(&self, done: Vec<(OutcomeRow, Option<[u8; 32]>)>) {
        if done.is_empty() {
            return;
        }
        self.in_flight.fetch_sub(done.len(), Ordering::AcqRel);
        if self.slot_waiters.load(Ordering::Acquire) > 0 {
            self.slot_freed.notify_waiters();
        }
        self.count(done.iter().map(|(row, _)| row));
        let mut rows = Vec::with_capacity(done.len());
        for (row, unacked_id) in done {
            match unacked_id {
                Some(id) if self.reconcile => match self.unacked.lock() {
                    Ok(mut held) => held.push((id, row)),
                    Err(_) => rows.push(Row::Outcome(row)),
                },
                _ => rows.push(Row::Outcome(row)),
            }
        }
        self.emit_all(rows);
    }

    /// Counts a row that never took an in-flight slot (not sent, dropped).
    pub fn record(&self, row: &OutcomeRow) {
        self.count(std::iter::once(row));
    }

    /// Counts finished rows and adds their latencies, under one lock.
    fn count<'a>(&self, rows: impl Iterator<Item = &'a OutcomeRow>) {
        let (mut n, mut ok, mut failed) = (0, 0, 0);
        let mut h = self.hists.lock().ok();
        for row in rows {
            n += 1;
            if row.outcome.succeeded() {
                ok += 1;
            } else if !matches!(row.outcome, Outcome::NotSent) {
                failed += 1;
            }
            if let (Some(h), Some(done), Some(_)) = (h.as_mut(), row.completed_ns, row.sent_ns) {
                h.response_us
                    .saturating_record((done.saturating_sub(row.intended_ns) / 1000).max(1));
            }
        }
        drop(h);
        self.completed.fetch_add(n, Ordering::Relaxed);
        self.succeeded.fetch_add(ok, Ordering::Relaxed);
        self.failed.fetch_add(failed, Ordering::Relaxed);
    }
}
