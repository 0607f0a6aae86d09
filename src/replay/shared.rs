//! State shared by the feeder, the network threads (schedulers and network loops) and the sampler:
//! the clock's zero, the stop handle, the global in-flight slots, counters (atomics, read by
//! the sampler), and the channel to the results writer. Fields are private; each use has a
//! method that says what it is for.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::Notify;

use super::dispatch::Dispatch;
use super::fanout::{self, Delivery};
use crate::capture::results::{DeliveryRow, Outcome, OutcomeRow, Row};
use crate::live::LiveMetrics;
use crate::transport::Stop;

/// Most rows waiting for the results writer (~2 MiB) before the scheduler holds back. Only
/// `--speed max` outruns the writer, and then the backlog sits at this bound until the run
/// ends: at 32,768 rows it added ~7 MiB to the resident set at the end of long runs (short
/// ones end before the backlog fills). 4,096 and 32,768 sent equally fast (1M records into
/// the bench's peer, 177–200k events/s either way); this leaves room for the writer's 20 ms
/// naps at higher rates.
pub const ROWS_BACKLOG_MAX: usize = 8_192;

/// Counters of what the relay sent that no record owns, for the results trailer.
#[derive(Debug, Clone, Copy, Default)]
pub struct FrameCounts {
    pub unparseable: u64,
    pub oversized: u64,
    pub notices: u64,
    /// OKs that came after their record's timeout.
    pub late_acks: u64,
}

/// One reading of the counters, for a per-second sample.
#[derive(Debug, Clone, Copy)]
pub struct Counts {
    pub sent: u64,
    pub completed: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub open_conns: u32,
    pub in_flight: u32,
}

pub struct Shared {
    t0: Instant,
    timeout: Duration,
    per_conn_in_flight: usize,
    reconcile: bool,
    stop: Stop,
    in_flight: AtomicUsize,
    sent: AtomicU64,
    completed: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    open_conns: AtomicU32,
    late_acks: AtomicU64,
    unparseable: AtomicU64,
    oversized: AtomicU64,
    notices: AtomicU64,
    /// Largest schedule lag since the sampler last looked, ns.
    lag_window_max_ns: AtomicU64,
    /// Response time (completed − intended) for the progress line, microseconds. Every
    /// figure of the summary is analyze's, read back from the results file (one definition
    /// of each figure); this one only shows progress.
    response_us: Mutex<Histogram<u64>>,
    /// Signalled when in-flight slots are freed while a scheduler waits at the global cap
    /// (`slot_waiters` > 0), so completions cost nothing extra when nobody waits.
    slot_freed: Notify,
    slot_waiters: AtomicUsize,
    /// Rows handed to the results writer and not yet written; the scheduler waits while
    /// this is above [`ROWS_BACKLOG_MAX`], so memory stays bounded when lt outruns its
    /// own writer (the wait shows as schedule lag, as it should).
    rows_pending: Arc<AtomicUsize>,
    /// Events that timed out, held back until reconciliation decides their outcome.
    unacked: Mutex<Vec<([u8; 32], OutcomeRow)>>,
    rows: UnboundedSender<Vec<Row>>,
    /// The fan-out ledger, when the trace has live subscriptions.
    fanout: Option<std::sync::mpsc::Sender<fanout::Msg>>,
    delivery_rows: bool,
    /// `--metrics-listen`: the same counts, served live.
    live: Option<Arc<LiveMetrics>>,
}

/// The way to the results writer: the channel rows go by, and how many it has not written
/// yet (it counts them down as it writes).
pub struct ToWriter {
    pub rows: UnboundedSender<Vec<Row>>,
    pub pending: Arc<AtomicUsize>,
}

/// What a replay's threads share, fixed at t0.
pub struct Setup {
    pub t0: Instant,
    pub timeout: Duration,
    pub per_conn_in_flight: usize,
    pub reconcile: bool,
    pub stop: Stop,
    pub fanout: Option<std::sync::mpsc::Sender<fanout::Msg>>,
    /// `--delivery-rows`.
    pub delivery_rows: bool,
    pub live: Option<Arc<LiveMetrics>>,
}

impl Shared {
    pub fn new(setup: Setup, to_writer: ToWriter) -> Shared {
        Shared {
            t0: setup.t0,
            timeout: setup.timeout,
            per_conn_in_flight: setup.per_conn_in_flight,
            reconcile: setup.reconcile,
            stop: setup.stop,
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
            response_us: Mutex::new(crate::histogram::latency()),
            slot_freed: Notify::new(),
            slot_waiters: AtomicUsize::new(0),
            rows_pending: to_writer.pending,
            unacked: Mutex::new(Vec::new()),
            rows: to_writer.rows,
            delivery_rows: setup.delivery_rows && setup.fanout.is_some(),
            fanout: setup.fanout,
            live: setup.live,
        }
    }

    pub fn t0(&self) -> Instant {
        self.t0
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn per_conn_in_flight(&self) -> usize {
        self.per_conn_in_flight
    }

    /// ns since t0; 0 before it.
    pub fn now_ns(&self) -> u64 {
        self.t0.elapsed().as_nanos() as u64
    }

    /// Whether `ns` after t0 has come (false before t0, even for `ns` 0).
    pub fn reached(&self, ns: u64) -> bool {
        Instant::now() >= self.t0 + Duration::from_nanos(ns)
    }

    /// Whether the caller asked the replay to stop (see [`Stop`]).
    pub fn stopping(&self) -> bool {
        self.stop.requested()
    }

    /// Whether lt's own results writer is so far behind that the scheduler should wait.
    pub fn writer_behind(&self) -> bool {
        self.rows_pending.load(Ordering::Relaxed) > ROWS_BACKLOG_MAX
    }

    /// Takes one of `max` in-flight slots if one is free.
    pub fn try_take_slot(&self, max: usize) -> bool {
        let taken = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok();
        if let (true, Some(live)) = (taken, &self.live) {
            live.slot_taken();
        }
        taken
    }

    /// Waits until a completion frees an in-flight slot (when all `max` are taken), or at
    /// most a millisecond, which covers a completion that slipped in between the caller's
    /// check and this wait.
    pub async fn slot_freed(&self, max: usize) {
        let freed = self.slot_freed.notified();
        tokio::pin!(freed);
        freed.as_mut().enable();
        self.slot_waiters.fetch_add(1, Ordering::AcqRel);
        if self.in_flight.load(Ordering::Acquire) >= max {
            let _ = tokio::time::timeout(Duration::from_millis(1), freed).await;
        }
        self.slot_waiters.fetch_sub(1, Ordering::AcqRel);
    }

    pub fn conn_opened(&self) {
        self.open_conns.fetch_add(1, Ordering::Relaxed);
        if let Some(live) = &self.live {
            live.conn_opened();
        }
    }

    pub fn conn_closed(&self) {
        self.open_conns.fetch_sub(1, Ordering::Relaxed);
        if let Some(live) = &self.live {
            live.conn_closed();
        }
    }

    pub fn count_late_ack(&self) {
        self.late_acks.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_unparseable(&self) {
        self.unparseable.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_oversized(&self) {
        self.oversized.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_notice(&self) {
        self.notices.fetch_add(1, Ordering::Relaxed);
    }

    pub fn frame_counts(&self) -> FrameCounts {
        FrameCounts {
            unparseable: self.unparseable.load(Ordering::Relaxed),
            oversized: self.oversized.load(Ordering::Relaxed),
            notices: self.notices.load(Ordering::Relaxed),
            late_acks: self.late_acks.load(Ordering::Relaxed),
        }
    }

    pub fn counts(&self) -> Counts {
        Counts {
            sent: self.sent.load(Ordering::Relaxed),
            completed: self.completed.load(Ordering::Relaxed),
            succeeded: self.succeeded.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            open_conns: self.open_conns.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed) as u32,
        }
    }

    /// The largest schedule lag since the last call, ns.
    pub fn take_lag_window_max(&self) -> u64 {
        self.lag_window_max_ns.swap(0, Ordering::Relaxed)
    }

    /// Response time p99 so far, µs (for the progress line only).
    pub fn response_p99_us(&self) -> u64 {
        self.response_us
            .lock()
            .map(|h| h.value_at_quantile(0.99))
            .unwrap_or(0)
    }

    /// The events that timed out, for reconciliation.
    pub fn take_unacked(&self) -> anyhow::Result<Vec<([u8; 32], OutcomeRow)>> {
        let mut held = self
            .unacked
            .lock()
            .map_err(|_| anyhow::anyhow!("unacked list lock poisoned"))?;
        Ok(std::mem::take(&mut *held))
    }

    /// Writes the row of a record that never took an in-flight slot (not sent, dropped, or
    /// due on a connection that was gone).
    pub fn finish_unsent(&self, d: &Dispatch, outcome: Outcome) {
        let row = d.unsent_row(outcome);
        self.record(&row);
        self.tell_fanout(std::iter::once(&row));
        self.emit(Row::Outcome(row));
    }

    /// Live subscriptions are counted: deliveries are worth reading.
    pub fn counts_deliveries(&self) -> bool {
        self.fanout.is_some()
    }

    /// Events received on subscriptions after their EOSE, for the fan-out ledger (and, with
    /// `--delivery-rows`, the results file).
    pub fn delivered(&self, deliveries: Vec<Delivery>) {
        if self.delivery_rows {
            self.emit_all(
                deliveries
                    .iter()
                    .map(|d| {
                        Row::Delivery(DeliveryRow {
                            req: d.req,
                            event_id: hex::encode(d.id),
                            at_ns: d.at_ns,
                        })
                    })
                    .collect(),
            );
        }
        if let Some(tx) = &self.fanout {
            let _ = tx.send(fanout::Msg::Deliveries(deliveries));
        }
    }

    /// Outcomes the fan-out ledger judges deliveries by.
    fn tell_fanout<'a>(&self, rows: impl Iterator<Item = &'a OutcomeRow>) {
        if let Some(tx) = &self.fanout {
            let _ = tx.send(fanout::Msg::Facts(fanout::facts(rows)));
        }
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
            let lag = sent_ns.saturating_sub(ready);
            if let Some(live) = &self.live {
                live.sent(lag);
            }
            (n + 1, m.max(lag))
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
        if let Some(live) = &self.live {
            live.slots_freed(done.len());
        }
        if self.slot_waiters.load(Ordering::Acquire) > 0 {
            self.slot_freed.notify_waiters();
        }
        self.count(done.iter().map(|(row, _)| row));
        self.tell_fanout(done.iter().map(|(row, _)| row));
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
    fn record(&self, row: &OutcomeRow) {
        self.count(std::iter::once(row));
    }

    /// Counts finished rows and adds their latencies, under one lock.
    fn count<'a>(&self, rows: impl Iterator<Item = &'a OutcomeRow>) {
        let (mut n, mut ok, mut failed) = (0, 0, 0);
        let mut h = self.response_us.lock().ok();
        let mut tally = self.live.as_deref().map(LiveMetrics::tally);
        for row in rows {
            n += 1;
            if row.outcome.succeeded() {
                ok += 1;
            } else if !matches!(row.outcome, Outcome::NotSent) {
                failed += 1;
            }
            let response_ns = match (row.completed_ns, row.sent_ns) {
                (Some(done), Some(_)) => Some(done.saturating_sub(row.intended_ns)),
                _ => None,
            };
            if let (Some(h), Some(ns)) = (h.as_mut(), response_ns) {
                h.saturating_record((ns / 1000).max(1));
            }
            if let Some(tally) = tally.as_mut() {
                tally.add(&row.outcome, response_ns);
            }
        }
        drop(h);
        drop(tally);
        self.completed.fetch_add(n, Ordering::Relaxed);
        self.succeeded.fetch_add(ok, Ordering::Relaxed);
        self.failed.fetch_add(failed, Ordering::Relaxed);
    }
}
