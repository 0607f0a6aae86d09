//! A network thread's scheduler, on that thread or on one of its own
//! (`network::Setup::scheduler_thread`): it hands each record to the network loop (`net`),
//! which gives it to its connection, at `t0 + offset / speed`. It waits on absolute
//! deadlines (never the gap since the previous record), so lateness never accumulates;
//! what lateness there is, is recorded as schedule lag when the record is written.
//!
//! Deadlines are kept with a timerfd, not tokio's timer: tokio's timer wheel has 1 ms
//! granularity, a timerfd has the kernel's high-resolution clock.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::{Receiver, UnboundedSender};

use super::dispatch::Dispatch;
use super::hold::Holds;
use super::shared::Shared;
use super::timer::Deadline;
pub use crate::capture::options::Overload;
use crate::capture::results::Outcome;

#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub max_in_flight: usize,
    pub overload: Overload,
    /// `--speed max`: no schedule. Every record is due at once, so a record's intended time
    /// becomes the moment the in-flight window let it go. Response time then measures the
    /// relay under the window's load, not the record's place in a queue of the whole trace
    /// (which would grow with the trace, whatever the relay did).
    pub unpaced: bool,
    /// `--duration`, ns after t0. Paced records past it never reach the scheduler (the
    /// feeder marks them by their intended time); unpaced ones all have intended time 0, so
    /// here it is the clock that ends the run.
    pub stop_after_ns: Option<u64>,
}

/// The longest single wait, so a stop request is noticed promptly.
const WAIT_SLICE_NS: u64 = 50_000_000;

/// Dispatches every record fed to this thread to its network loop. Records that are
/// not sent (stop, dropped) get their row here.
pub async fn run(
    mut feed: Receiver<Vec<Dispatch>>,
    net: UnboundedSender<Dispatch>,
    shared: Arc<Shared>,
    s: Schedule,
) -> std::io::Result<()> {
    let mut timer = Deadline::new(shared.t0())?;
    // When this thread waited at the global in-flight cap.
    let mut holds = Holds::default();
    while let Some(batch) = feed.recv().await {
        for mut d in batch {
            if shared.stopping() {
                shared.finish_unsent(&d, Outcome::NotSent);
                continue;
            }
            let now = shared.now_ns();
            if now < d.intended_ns {
                // Caught up: whatever held the scheduler back is over.
                holds.end(now);
            }
            wait_until(&mut timer, d.intended_ns, &shared).await?;
            if s.unpaced && s.stop_after_ns.is_some_and(|limit| shared.now_ns() > limit) {
                shared.finish_unsent(&d, Outcome::NotSent);
                continue;
            }
            while shared.writer_behind() && !shared.stopping() {
                // lt's own writer is behind: from here the delay is not the relay's.
                holds.end(shared.now_ns());
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            if !take_slot(&shared, s, &mut holds).await {
                let outcome = if shared.stopping() {
                    Outcome::NotSent
                } else {
                    Outcome::Dropped
                };
                shared.finish_unsent(&d, outcome);
                continue;
            }
            d.dispatched_ns = shared.now_ns();
            if s.unpaced {
                d.intended_ns = d.dispatched_ns;
                d.ready_ns = d.dispatched_ns;
            }
            d.held_ns = holds.within(d.ready_ns, d.dispatched_ns);
            // Records come in intended order: no earlier moment is asked about again.
            holds.forget_before(d.ready_ns);
            if let Err(e) = net.send(d) {
                // The network loop is gone (it only ends after the scheduler): count the
                // record rather than lose it.
                let row = e.0.unsent_row(Outcome::Disconnected { code: None });
                shared.complete(row, None);
            }
        }
    }
    Ok(())
}

/// Waits until `ns` after t0, in slices short enough to notice a stop request.
async fn wait_until(timer: &mut Deadline, ns: u64, shared: &Shared) -> std::io::Result<()> {
    loop {
        // Not `now_ns() >= ns`: before t0 `now_ns` reads 0, which would let a record due
        // at t0 (every one at --speed max) go before it, with its times clamped to 0.
        if shared.reached(ns) || shared.stopping() {
            return Ok(());
        }
        timer.wait(ns.min(shared.now_ns() + WAIT_SLICE_NS)).await?;
    }
}

/// Takes an in-flight slot under the global cap: waits for one (`--on-overload wait`) or
/// gives up at once (`drop`). False when no slot was taken (dropped, or stopped). A wait
/// starts a hold: the relay has not answered enough of what was sent. The hold lasts until
/// the scheduler has caught up with its schedule (see `run`).
async fn take_slot(shared: &Shared, s: Schedule, holds: &mut Holds) -> bool {
    loop {
        if shared.stopping() {
            return false;
        }
        if shared.try_take_slot(s.max_in_flight) {
            return true;
        }
        if s.overload == Overload::Drop {
            return false;
        }
        holds.start(shared.now_ns());
        // Woken by the next completion anywhere (see `Shared::complete_all`).
        shared.slot_freed(s.max_in_flight).await;
    }
}
