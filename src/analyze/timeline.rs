//! Throughput per second and latency per window, over the run's own clock (ns from t0).
//!
//! Per-second counts are exact. Latency windows hold a small HDR histogram each; a run
//! longer than `WINDOWS_MAX` seconds doubles the window width (merging neighbours) as often
//! as needed, so memory depends on neither the number of rows nor the run's length.

use hdrhistogram::Histogram;

use super::class::Class;
use crate::capture::results::{Outcome, OutcomeRow};
use crate::histogram;

/// At most this many latency windows.
const WINDOWS_MAX: usize = 100;

/// Counts for one second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Second {
    /// Records whose intended time falls in this second.
    pub scheduled: u64,
    /// Records written to the socket in this second.
    pub sent: u64,
    /// Records that succeeded (ok, duplicate, stored unacked), by completion time (events
    /// found by reconciliation have none: by intended time).
    pub ok: u64,
    /// Records the relay refused (`OK false`, `CLOSED`), by completion time.
    pub rejected: u64,
    /// Timeouts, disconnects, lost and dropped records, by intended time.
    pub failed: u64,
}

#[derive(Clone)]
pub struct Timeline {
    pub seconds: Vec<Second>,
    /// Width of a latency window in seconds (a power of two).
    pub window_s: u64,
    /// Response time of replied records by intended time, per window.
    pub windows: Vec<Histogram<u32>>,
}

fn window_histogram() -> Histogram<u32> {
    histogram::latency_window()
}

fn second_of(ns: u64) -> usize {
    // Longer than any real run; a corrupt time must not make us allocate for it.
    const SECONDS_MAX: u64 = 31 * 24 * 3600;
    (ns / 1_000_000_000).min(SECONDS_MAX) as usize
}

impl Timeline {
    pub fn new() -> Timeline {
        Timeline {
            seconds: Vec::new(),
            window_s: 1,
            windows: Vec::new(),
        }
    }

    fn at(&mut self, ns: u64) -> &mut Second {
        let s = second_of(ns);
        if s >= self.seconds.len() {
            self.seconds.resize(s + 1, Second::default());
        }
        &mut self.seconds[s]
    }

    /// Counts one row; `response_ns` is its response time as the tally counted it (the
    /// real one, or the timeout's lower bound for a record never answered in time).
    pub fn note(&mut self, o: &OutcomeRow, response_ns: Option<u64>) {
        // Requests only, so that scheduled, sent and answered compare like with like: a
        // CLOSE is written and never answered. And only the part of the run that was
        // played: records `--duration` or Ctrl-C left unsent were never scheduled (counted
        // as scheduled, they ran the chart on past the end and drove the capacity
        // estimate to 0).
        if !Class::of(o.op).is_request() || o.outcome == Outcome::NotSent {
            return;
        }
        self.at(o.intended_ns).scheduled += 1;
        if let Some(sent) = o.sent_ns {
            self.at(sent).sent += 1;
        }
        let done = o.completed_ns.unwrap_or(o.intended_ns);
        match &o.outcome {
            x if x.succeeded() => self.at(done).ok += 1,
            Outcome::Rejected { .. } | Outcome::Closed { .. } => self.at(done).rejected += 1,
            Outcome::Timeout
            | Outcome::Disconnected { .. }
            | Outcome::Lost
            | Outcome::StoredUnacked
            | Outcome::Dropped => self.at(o.intended_ns).failed += 1,
            _ => {}
        }
        if let Some(response) = response_ns {
            let w = self.window_of(o.intended_ns);
            let us = histogram::latency_us(response);
            self.windows[w].saturating_record(us);
        }
    }

    /// The window holding `ns`, widening windows first if it lies beyond the last allowed.
    fn window_of(&mut self, ns: u64) -> usize {
        let s = second_of(ns) as u64;
        while s / self.window_s >= WINDOWS_MAX as u64 {
            self.widen();
        }
        let w = (s / self.window_s) as usize;
        if w >= self.windows.len() {
            self.windows.resize_with(w + 1, window_histogram);
        }
        w
    }

    /// Doubles the window width, merging neighbouring windows.
    fn widen(&mut self) {
        let old = std::mem::take(&mut self.windows);
        let mut it = old.into_iter();
        while let Some(mut a) = it.next() {
            if let Some(b) = it.next() {
                // Same bounds, so adding cannot fail.
                let _ = a.add(&b);
            }
            self.windows.push(a);
        }
        self.window_s *= 2;
    }

    pub fn merge(&mut self, mut other: Timeline) {
        if other.seconds.len() > self.seconds.len() {
            self.seconds.resize(other.seconds.len(), Second::default());
        }
        for (mine, theirs) in self.seconds.iter_mut().zip(&other.seconds) {
            mine.scheduled += theirs.scheduled;
            mine.sent += theirs.sent;
            mine.ok += theirs.ok;
            mine.rejected += theirs.rejected;
            mine.failed += theirs.failed;
        }
        while self.window_s < other.window_s {
            self.widen();
        }
        while other.window_s < self.window_s {
            other.widen();
        }
        if other.windows.len() > self.windows.len() {
            self.windows
                .resize_with(other.windows.len(), window_histogram);
        }
        for (mine, theirs) in self.windows.iter_mut().zip(&other.windows) {
            let _ = mine.add(theirs);
        }
    }
}

impl Default for Timeline {
    fn default() -> Self {
        Timeline::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::{Op, Role};

    fn row(intended_s: f64, latency_ms: f64, outcome: Outcome) -> OutcomeRow {
        let intended_ns = (intended_s * 1e9) as u64;
        OutcomeRow {
            index: 0,
            conn: 0,
            op: Op::Event {
                kind: 30079,
                role: Role::View,
            },
            intended_ns,
            sent_ns: Some(intended_ns),
            completed_ns: Some(intended_ns + (latency_ms * 1e6) as u64),
            outcome,
            bytes: 100,
            events_received: 0,
            held_ns: 0,
            recorded: None,
        }
    }

    /// Notes `r` with its response time when answered, as the tally does.
    fn note(t: &mut Timeline, r: OutcomeRow) {
        let response = r
            .completed_ns
            .filter(|_| r.outcome.replied())
            .map(|done| done - r.intended_ns);
        t.note(&r, response);
    }

    #[test]
    fn counts_land_in_their_seconds() {
        let mut t = Timeline::new();
        note(&mut t, row(0.5, 700.0, Outcome::Ok));
        note(&mut t, row(1.2, 1.0, Outcome::Timeout));
        assert_eq!(t.seconds.len(), 2);
        assert_eq!(t.seconds[0].scheduled, 1);
        // Completed at 1.2 s: its ok counts in second 1.
        assert_eq!(t.seconds[1].ok, 1);
        assert_eq!(t.seconds[1].failed, 1);
        assert_eq!(t.seconds[0].ok, 0);
    }

    #[test]
    fn long_runs_widen_windows_and_keep_every_value() {
        let mut t = Timeline::new();
        for s in 0..1000 {
            note(&mut t, row(s as f64, 5.0, Outcome::Ok));
        }
        assert!(t.windows.len() <= WINDOWS_MAX);
        // 1000 s in at most 100 windows: 16 s each (8 s would need 125).
        assert_eq!(t.window_s, 16);
        let total: u64 = t.windows.iter().map(|h| h.len()).sum();
        assert_eq!(total, 1000);
    }

    #[test]
    fn merging_aligns_window_widths() {
        let mut a = Timeline::new();
        let mut b = Timeline::new();
        note(&mut a, row(3.0, 5.0, Outcome::Ok));
        for s in 0..600 {
            note(&mut b, row(s as f64, 5.0, Outcome::Ok));
        }
        a.merge(b);
        // 600 s need 8 s windows; the first holds a's record and b's first eight.
        assert_eq!(a.window_s, 8);
        assert_eq!(a.windows[0].len(), 9);
        assert_eq!(a.seconds[3].scheduled, 2);
    }
}
