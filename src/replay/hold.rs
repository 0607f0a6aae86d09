//! Time during which the relay held lt back, so a record's schedule lag can be split into
//! the relay's part and lt's own.
//!
//! lt is held back when it may not write what is due: the relay has not read what lt
//! wrote before (its socket is full: TCP backpressure), or has not answered enough records
//! (an in-flight cap is reached). Either way the relay sets the pace, and the wait is a
//! finding about the relay, not lt failing to keep its schedule. Response times already
//! include it: they are measured from the intended time.
//!
//! A [`Holds`] is one holder's clock of held time (a connection's, or a network thread's
//! scheduler's for the global cap): [`Holds::held_before`] is the total held time before a
//! moment, so the held part of any interval is a difference of two readings, however many
//! holds it spans (a relay that falls far behind holds a connection thousands of times over
//! one record's wait).

use std::collections::VecDeque;

/// Spans kept for reading the clock at past moments. Moments asked about only move
/// forward, so spans that ended before the last one are dropped as they go; this bounds the
/// rest. Dropping more only makes later answers smaller, never larger.
const SPANS_KEPT: usize = 4096;

#[derive(Debug, Default)]
pub struct Holds {
    /// Closed spans `(from, until, held before from)`, ns after t0, oldest first.
    spans: VecDeque<(u64, u64, u64)>,
    /// Held time in all closed spans, dropped ones included.
    total: u64,
    /// Start of the span in progress.
    open: Option<u64>,
}

impl Holds {
    /// The holder is held from `now` (no change if it already is).
    pub fn start(&mut self, now: u64) {
        self.open.get_or_insert(now);
    }

    /// The hold in progress, if any, ends at `now`.
    pub fn end(&mut self, now: u64) {
        if let Some(from) = self.open.take() {
            if now > from {
                if self.spans.len() == SPANS_KEPT {
                    self.spans.pop_front();
                }
                self.spans.push_back((from, now, self.total));
                self.total += now - from;
            }
        }
    }

    /// Total held time before `t` (a span still open counts up to `t`). `t` must not be
    /// earlier than a moment passed to [`Holds::forget_before`].
    pub fn held_before(&self, t: u64) -> u64 {
        if let Some(from) = self.open {
            if t >= from {
                return self.total + (t - from);
            }
        }
        let after = self.spans.partition_point(|&(from, _, _)| from < t);
        match after.checked_sub(1).map(|i| self.spans[i]) {
            Some((from, until, before)) => before + (t.min(until) - from),
            // Before every kept span: what the first one had before it.
            None => self
                .spans
                .front()
                .map_or(self.total, |&(_, _, before)| before),
        }
    }

    /// Held time within `[a, b)`.
    pub fn within(&self, a: u64, b: u64) -> u64 {
        self.held_before(b).saturating_sub(self.held_before(a))
    }

    /// No moment before `t` will be asked about again.
    pub fn forget_before(&mut self, t: u64) {
        while self.spans.front().is_some_and(|&(_, until, _)| until <= t) {
            self.spans.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_time_within_intervals_over_closed_and_open_spans() {
        let mut h = Holds::default();
        h.start(100);
        h.start(150); // already held: the span still starts at 100
        h.end(200);
        h.start(300);
        h.end(300); // empty: not kept
        h.start(400);
        // (a, b, held)
        let rows = [
            (0, 50, 0),      // before any hold
            (0, 1000, 700),  // both spans, the open one up to b: 100 + 600
            (120, 180, 60),  // inside the first span
            (150, 450, 100), // the end of one, the start of the other
            (200, 400, 0),   // between them
            (500, 600, 100), // inside the open span
        ];
        for (a, b, want) in rows {
            assert_eq!(h.within(a, b), want, "[{a}, {b})");
        }
    }

    #[test]
    fn a_wait_across_many_holds_counts_them_all() {
        // A relay far behind: the connection is held 10 µs of every 11 µs, thousands of
        // times, during one record's wait.
        let mut h = Holds::default();
        let spans = SPANS_KEPT as u64;
        for i in 0..spans {
            h.start(i * 11);
            h.end(i * 11 + 10);
        }
        assert_eq!(h.within(0, spans * 11), spans * 10);
        assert_eq!(h.within(55, 66), 10);
        // Past what is kept, the oldest spans drop out: a lower bound, never more.
        for i in spans..2 * spans {
            h.start(i * 11);
            h.end(i * 11 + 10);
        }
        let bounded = h.within(0, 2 * spans * 11);
        assert!((spans * 10..2 * spans * 10).contains(&bounded), "{bounded}");
    }

    #[test]
    fn forgetting_past_spans_keeps_later_answers() {
        let mut h = Holds::default();
        for i in 0..100u64 {
            h.start(i * 10);
            h.end(i * 10 + 5);
        }
        let before = h.within(500, 1000);
        h.forget_before(500);
        assert!(h.spans.len() <= 50);
        assert_eq!(h.within(500, 1000), before);
        assert_eq!(h.held_before(500), 250);
    }
}
