//! The scheduler: one OS thread that walks the trace in order and hands each record to its
//! connection at `t0 + offset / speed`. It sleeps on absolute deadlines (never the gap since
//! the previous record), so lateness never accumulates; what lateness there is, is recorded
//! as schedule lag when the record is written.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;

use super::pace::Speed;
use super::shared::{Dispatch, Key, Shared, ROWS_BACKLOG_MAX};
use crate::capture::results::{Outcome, OutcomeRow, Row};
use crate::capture::{Completion, Record, TraceReader};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overload {
    /// At the in-flight cap, wait (the wait shows as schedule lag).
    Wait,
    /// At the in-flight cap, drop the record (outcome `dropped`).
    Drop,
}

pub struct Schedule {
    pub speed: Speed,
    pub max_in_flight: usize,
    pub overload: Overload,
    /// Records due later than this (ns after t0) are not sent.
    pub stop_after_ns: Option<u64>,
    pub conns: u32,
}

/// Sleeps until `deadline`, in slices short enough to notice a stop request. No spinning:
/// with the thread's timer slack at 1 ns (see [`run`]) a sleep ends within tens of
/// microseconds of its deadline, and spinning would cost a core at low rates.
fn wait_until(deadline: Instant, shared: &Shared) {
    loop {
        let now = Instant::now();
        if now >= deadline || shared.stop.load(Ordering::Relaxed) {
            return;
        }
        thread::sleep((deadline - now).min(Duration::from_millis(50)));
    }
}

fn key(r: &Record) -> Result<Key, String> {
    Ok(match &r.completes {
        Completion::Ok { id } => {
            let mut raw = [0u8; 32];
            hex::decode_to_slice(id, &mut raw).map_err(|e| format!("event id {id:?}: {e}"))?;
            Key::Ok(raw)
        }
        Completion::Eose { sub } => Key::Sub(sub.clone()),
        Completion::Sent => Key::None,
    })
}

/// Dispatches every record of the trace; records that are not sent (stop, `--duration`,
/// dropped) get their outcome row here, so every record leaves exactly one row.
pub fn run<R: std::io::Read>(
    mut trace: TraceReader<R>,
    senders: Vec<UnboundedSender<Dispatch>>,
    shared: Arc<Shared>,
    s: Schedule,
) -> anyhow::Result<u64> {
    // Linux lets a sleeping thread wake up to 50 µs late by default ("timer slack") to
    // batch wake-ups; the scheduler wants its deadlines, so it asks for 1 ns.
    // SAFETY: prctl(PR_SET_TIMERSLACK) only changes this thread's timer slack.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
    let mut index = 0u64;
    while let Some(r) = trace.next_record()? {
        let intended_ns = s.speed.intended_ns(r.offset_us);
        let conn = r.client % s.conns;
        let unsent = |outcome: Outcome| {
            let row = OutcomeRow {
                index,
                conn,
                op: r.op,
                intended_ns,
                sent_ns: None,
                completed_ns: None,
                outcome,
                bytes: r.frame.len() as u32,
                events_received: 0,
            };
            shared.record(&row);
            shared.emit(Row::Outcome(row));
        };
        let late = s.stop_after_ns.is_some_and(|limit| intended_ns > limit);
        if late || shared.stop.load(Ordering::Relaxed) {
            unsent(Outcome::NotSent);
            index += 1;
            continue;
        }
        wait_until(shared.t0 + Duration::from_nanos(intended_ns), &shared);
        while shared.rows_pending.load(Ordering::Relaxed) > ROWS_BACKLOG_MAX
            && !shared.stop.load(Ordering::Relaxed)
        {
            thread::sleep(Duration::from_millis(1));
        }
        let mut dropped = false;
        while shared.in_flight.load(Ordering::Acquire) >= s.max_in_flight {
            if s.overload == Overload::Drop {
                dropped = true;
                break;
            }
            if shared.stop.load(Ordering::Relaxed) {
                break;
            }
            thread::sleep(Duration::from_micros(50));
        }
        if dropped {
            unsent(Outcome::Dropped);
            index += 1;
            continue;
        }
        if shared.stop.load(Ordering::Relaxed) {
            unsent(Outcome::NotSent);
            index += 1;
            continue;
        }
        let key = key(&r).map_err(|e| anyhow::anyhow!("trace record {index}: {e}"))?;
        shared.in_flight.fetch_add(1, Ordering::AcqRel);
        let d = Dispatch {
            index,
            op: r.op,
            frame: r.frame,
            key,
            after: r.after,
            intended_ns,
            ready_ns: intended_ns,
        };
        if let Err(e) = senders[conn as usize].send(d) {
            // The connection's task is gone (it only ends after the scheduler): count the
            // record rather than lose it.
            let d = e.0;
            let row = OutcomeRow {
                index,
                conn,
                op: d.op,
                intended_ns,
                sent_ns: None,
                completed_ns: None,
                outcome: Outcome::Disconnected { code: None },
                bytes: d.frame.len() as u32,
                events_received: 0,
            };
            shared.complete(row, None);
        }
        index += 1;
    }
    Ok(index)
}
