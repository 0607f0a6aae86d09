//! The record book of one connection, without the socket: which records are queued, which
//! wait for the record they follow (`after`), which are in flight (by event id or by
//! subscription id) with their deadlines, and what each one's outcome is. Every record
//! that enters a book leaves it as exactly one outcome row.
//!
//! The connection (`conn`) owns the socket and the clock; it tells the book what
//! happened (a record arrived, a batch was written, a reply came, time passed, the socket
//! died) with the time in ns after t0, and collects the finished rows. Nothing here waits,
//! so every path is tested in microseconds below.

use std::borrow::Cow;
use std::collections::VecDeque;

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use super::dispatch::{Dispatch, Key};
use super::hold::Holds;
use crate::capture::results::{Outcome, OutcomeRow};
use crate::capture::{Answer, Op};
use crate::nostr::Prefix;

/// A record on the wire, waiting for its reply.
struct InFlight {
    index: u64,
    op: Op,
    intended_ns: u64,
    sent_ns: u64,
    /// The part of its schedule lag during which the relay held lt back (see `hold`).
    held_ns: u64,
    bytes: u32,
    events: u32,
    recorded: Option<Box<Answer>>,
}

/// A finished record: its row, and the event id when it is an event that timed out (held
/// back for reconciliation, which decides between `stored_unacked` and `lost`).
pub type Done = (OutcomeRow, Option<[u8; 32]>);

pub struct Book {
    conn: u32,
    per_conn_in_flight: usize,
    timeout_ns: u64,
    // Fx rather than SipHash: these maps are touched several times per record, and their
    // keys come from the user's own trace (event ids, record indexes), not from the relay,
    // so there is no hash flooding to defend against.
    by_id: HashMap<[u8; 32], InFlight>,
    by_sub: HashMap<String, InFlight>,
    /// Deadlines (ns after t0) in send order, which is deadline order since the timeout is
    /// the same for all.
    deadlines: VecDeque<(u64, Key)>,
    /// Records here: queued, waiting on a dependency, or in flight.
    open: HashSet<u64>,
    /// Ready to send once the per-connection cap allows.
    queue: VecDeque<Dispatch>,
    /// Waiting for record `after` to complete.
    waiting: HashMap<u64, Vec<Dispatch>>,
    /// When this connection could not write what was due: its per-connection cap was
    /// reached, or the relay's socket was full.
    holds: Holds,
    /// Records finished since the connection last took them (see [`Book::take_done`]).
    done: Vec<Done>,
}

impl Book {
    pub fn new(conn: u32, per_conn_in_flight: usize, timeout_ns: u64) -> Book {
        Book {
            conn,
            per_conn_in_flight: per_conn_in_flight.max(1),
            timeout_ns,
            by_id: HashMap::default(),
            by_sub: HashMap::default(),
            deadlines: VecDeque::new(),
            open: HashSet::default(),
            queue: VecDeque::new(),
            waiting: HashMap::default(),
            holds: Holds::default(),
            done: Vec::new(),
        }
    }

    pub fn in_flight(&self) -> usize {
        self.by_id.len() + self.by_sub.len()
    }

    /// Nothing queued, waiting or in flight.
    pub fn idle(&self) -> bool {
        self.open.is_empty()
    }

    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// The earliest deadline of a record in flight, ns after t0.
    pub fn next_deadline(&self) -> Option<u64> {
        self.deadlines.front().map(|(t, _)| *t)
    }

    /// The rows finished since the last call.
    pub fn take_done(&mut self) -> Vec<Done> {
        std::mem::take(&mut self.done)
    }

    /// A record arrives from the scheduler at `now`; `up` says whether the socket is open.
    pub fn accept(&mut self, mut d: Dispatch, up: bool, now: u64) {
        if !up {
            // The connection is down when the record is due: it is not silently queued
            // behind a reconnect that may never come.
            self.finish_unsent(d, Outcome::Disconnected { code: None }, now);
            return;
        }
        // Held time counts from when the record reached this connection (it may have
        // waited while its connection was blocked writing or connecting).
        let reached = d.dispatched_ns.max(d.ready_ns);
        d.held_mark = self.holds.held_before(reached);
        self.holds.forget_before(reached);
        self.open.insert(d.index);
        match d.after {
            Some(dep) if self.open.contains(&dep) => self.waiting.entry(dep).or_default().push(d),
            _ => self.queue.push_back(d),
        }
    }

    /// The queued records that may be written now, at most the room the per-connection cap
    /// leaves. When records are due and there is no room, the relay is holding lt back
    /// from `now`: the hold lasts until the backlog is written, since writing the records
    /// ahead of one in the backlog is pace the relay set too.
    pub fn take_ready(&mut self, now: u64) -> Vec<Dispatch> {
        let room = self.per_conn_in_flight.saturating_sub(self.in_flight());
        if self.queue.is_empty() {
            return Vec::new();
        }
        if room == 0 {
            self.holds.start(now);
            return Vec::new();
        }
        self.queue.drain(..room.min(self.queue.len())).collect()
    }

    /// The socket could not take a write at once from `at`: its buffer is full, so the
    /// relay has not read what lt wrote before (TCP backpressure), and the wait is its.
    pub fn socket_blocked(&mut self, at: u64) {
        self.holds.start(at);
    }

    /// A write ended at `now`; with nothing left queued, lt is no longer held back.
    pub fn write_ended(&mut self, now: u64) {
        if self.queue.is_empty() {
            self.holds.end(now);
        }
    }

    /// `batch` (with each frame's size in `bytes`) was written at `sent_ns`: each record is
    /// in flight until its reply or its deadline, or done at `now` (a clock reading after
    /// the write) when nothing answers it (a CLOSE).
    pub fn sent(&mut self, batch: Vec<Dispatch>, bytes: &[u32], sent_ns: u64, now: u64) {
        let deadline = sent_ns + self.timeout_ns;
        for (d, &bytes) in batch.into_iter().zip(bytes) {
            // Held by the relay: the scheduler's share (the global cap) and this
            // connection's, never more than the lag itself.
            let here = self.holds.held_before(sent_ns).saturating_sub(d.held_mark);
            let held_ns = (d.held_ns + here).min(sent_ns.saturating_sub(d.ready_ns));
            let flight = InFlight {
                index: d.index,
                op: d.op,
                intended_ns: d.intended_ns,
                sent_ns,
                held_ns,
                bytes,
                events: 0,
                recorded: d.recorded,
            };
            // A reply names an id, so two records in flight with the same id cannot be told
            // apart: the earlier one is closed now rather than silently lost.
            let superseded = match d.key {
                Key::Ok(id) => {
                    self.deadlines.push_back((deadline, Key::Ok(id)));
                    self.by_id.insert(id, flight)
                }
                Key::Sub(sub) => {
                    self.deadlines.push_back((deadline, Key::Sub(sub.clone())));
                    self.by_sub.insert(sub, flight)
                }
                Key::None => {
                    self.complete(flight, Outcome::Ok, now);
                    None
                }
            };
            if let Some(old) = superseded {
                let outcome = Outcome::Rejected {
                    prefix: Prefix::Other,
                    message: "lt: sent again while still in flight; replies cannot be told apart"
                        .into(),
                };
                self.complete(old, outcome, now);
            }
        }
    }

    /// Writing `batch` (frames of `bytes`) failed with close `code`, or the socket was
    /// already down: whether any of it reached the relay is unknown, so none gets an answer.
    /// (The connection then calls [`Book::disconnect`] for the rest.)
    pub fn write_failed(
        &mut self,
        batch: Vec<Dispatch>,
        bytes: &[u32],
        code: Option<u16>,
        now: u64,
    ) {
        for (d, &bytes) in batch.into_iter().zip(bytes) {
            let mut row = d.unsent_row(Outcome::Disconnected { code });
            row.bytes = bytes;
            self.done.push((row, None));
            self.release(d.index, now);
        }
    }

    /// An `OK` for event `id` at `now`. False when nothing with that id is in flight here:
    /// the OK came after its record's timeout (or names an event lt never sent).
    pub fn on_ok(
        &mut self,
        id: &[u8; 32],
        accepted: bool,
        message: Cow<'_, str>,
        now: u64,
    ) -> bool {
        let Some(f) = self.by_id.remove(id) else {
            return false;
        };
        let prefix = Prefix::of(&message);
        let outcome = match (accepted, prefix) {
            (true, Prefix::Duplicate) => Outcome::Duplicate,
            (true, _) => Outcome::Ok,
            (false, prefix) => Outcome::Rejected {
                prefix,
                message: message.into_owned(),
            },
        };
        self.complete(f, outcome, now);
        true
    }

    /// `EOSE` for subscription `sub` at `now`.
    pub fn on_eose(&mut self, sub: &str, now: u64) {
        if let Some(f) = self.by_sub.remove(sub) {
            self.complete(f, Outcome::Ok, now);
        }
    }

    /// `CLOSED` for subscription `sub` at `now`.
    pub fn on_closed(&mut self, sub: &str, message: Cow<'_, str>, now: u64) {
        if let Some(f) = self.by_sub.remove(sub) {
            let outcome = Outcome::Closed {
                prefix: Prefix::of(&message),
                message: message.into_owned(),
            };
            self.complete(f, outcome, now);
        }
    }

    /// An `EVENT` for subscription `sub`: counted for its REQ while the REQ is in flight.
    /// False when it is not (the REQ has its EOSE): then it is a delivery.
    pub fn on_event(&mut self, sub: &str) -> bool {
        match self.by_sub.get_mut(sub) {
            Some(f) => {
                f.events += 1;
                true
            }
            None => false,
        }
    }

    /// Drops deadlines of records already answered from the front of the queue. Replies
    /// come roughly in send order, so this keeps the queue about as long as what is in
    /// flight, rather than everything sent in the last timeout.
    pub fn trim_deadlines(&mut self) {
        while let Some((_, key)) = self.deadlines.front() {
            let open = match key {
                Key::Ok(id) => self.by_id.contains_key(id),
                Key::Sub(sub) => self.by_sub.contains_key(sub),
                Key::None => false,
            };
            if open {
                break;
            }
            self.deadlines.pop_front();
        }
    }

    /// Records whose deadline is at or before `now` time out.
    pub fn expire(&mut self, now: u64) {
        while let Some((t, _)) = self.deadlines.front() {
            if *t > now {
                break;
            }
            let Some((_, key)) = self.deadlines.pop_front() else {
                break;
            };
            match key {
                Key::Ok(id) => {
                    if let Some(f) = self.by_id.remove(&id) {
                        let row = self.flight_row(&f, None, Outcome::Timeout);
                        self.done.push((row, Some(id)));
                        self.release(f.index, now);
                    }
                }
                Key::Sub(sub) => {
                    if let Some(f) = self.by_sub.remove(&sub) {
                        self.complete(f, Outcome::Timeout, now);
                    }
                }
                Key::None => {}
            }
        }
    }

    /// The connection died at `now` (close `code`, if it sent one): everything in flight,
    /// queued or waiting becomes `disconnected`.
    pub fn disconnect(&mut self, code: Option<u16>, now: u64) {
        self.holds.end(now);
        let flights: Vec<InFlight> = self
            .by_id
            .drain()
            .map(|(_, f)| f)
            .chain(self.by_sub.drain().map(|(_, f)| f))
            .collect();
        for f in flights {
            self.complete(f, Outcome::Disconnected { code }, now);
        }
        self.deadlines.clear();
        let unsent: Vec<Dispatch> = self
            .queue
            .drain(..)
            .chain(self.waiting.drain().flat_map(|(_, v)| v))
            .collect();
        for d in unsent {
            self.finish_unsent(d, Outcome::Disconnected { code }, now);
        }
        self.open.clear();
    }

    /// The row of a record that was sent.
    fn flight_row(&self, f: &InFlight, completed_ns: Option<u64>, outcome: Outcome) -> OutcomeRow {
        OutcomeRow {
            index: f.index,
            conn: self.conn,
            op: f.op,
            intended_ns: f.intended_ns,
            sent_ns: Some(f.sent_ns),
            completed_ns,
            outcome,
            bytes: f.bytes,
            events_received: f.events,
            held_ns: f.held_ns,
            recorded: f.recorded.clone(),
        }
    }

    fn finish_unsent(&mut self, d: Dispatch, outcome: Outcome, now: u64) {
        self.done.push((d.unsent_row(outcome), None));
        self.release(d.index, now);
    }

    /// A sent record leaves this connection with its outcome at `now`.
    fn complete(&mut self, f: InFlight, outcome: Outcome, now: u64) {
        let completed = match outcome {
            Outcome::Timeout | Outcome::Disconnected { .. } => None,
            _ => Some(now),
        };
        let row = self.flight_row(&f, completed, outcome);
        self.done.push((row, None));
        self.release(f.index, now);
    }

    /// Frees a record's slot at `now` and queues what waited on it.
    fn release(&mut self, index: u64, now: u64) {
        self.open.remove(&index);
        if let Some(ready) = self.waiting.remove(&index) {
            let mark = self.holds.held_before(now);
            self.queue.extend(ready.into_iter().map(|mut d| {
                d.ready_ns = d.ready_ns.max(now);
                d.held_mark = mark;
                d
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::{Query, Role};

    const MS: u64 = 1_000_000;
    const TIMEOUT: u64 = 1_000 * MS;

    fn id(n: u8) -> [u8; 32] {
        [n; 32]
    }

    fn record(index: u64, key: Key, after: Option<u64>, at: u64) -> Dispatch {
        let op = match &key {
            Key::Ok(_) => Op::Event {
                kind: 30079,
                role: Role::View,
            },
            Key::Sub(_) => Op::Req { query: Query::Feed },
            Key::None => Op::Close,
        };
        Dispatch {
            index,
            conn: 3,
            op,
            frame: format!("[\"frame {index}\"]"),
            key,
            after,
            intended_ns: at,
            ready_ns: at,
            dispatched_ns: at,
            held_ns: 0,
            held_mark: 0,
            recorded: None,
        }
    }

    fn book() -> Book {
        Book::new(3, 100, TIMEOUT)
    }

    /// Takes what is ready at `now` and says it was written then.
    fn send_ready(b: &mut Book, now: u64) -> Vec<u64> {
        let batch = b.take_ready(now);
        let indexes = batch.iter().map(|d| d.index).collect();
        let bytes: Vec<u32> = batch.iter().map(|d| d.frame.len() as u32).collect();
        b.sent(batch, &bytes, now, now);
        indexes
    }

    fn outcomes(b: &mut Book) -> Vec<(u64, Outcome)> {
        b.take_done()
            .into_iter()
            .map(|(row, _)| (row.index, row.outcome))
            .collect()
    }

    #[test]
    fn an_ok_completes_its_event_with_its_times() {
        let mut b = book();
        b.accept(record(0, Key::Ok(id(1)), None, 5 * MS), true, 5 * MS);
        assert_eq!(send_ready(&mut b, 6 * MS), vec![0]);
        assert_eq!(b.in_flight(), 1);
        assert!(b.on_ok(&id(1), true, "".into(), 9 * MS));
        let done = b.take_done();
        let row = &done[0].0;
        assert_eq!(row.outcome, Outcome::Ok);
        assert_eq!(
            (row.intended_ns, row.sent_ns, row.completed_ns),
            (5 * MS, Some(6 * MS), Some(9 * MS))
        );
        assert_eq!(row.conn, 3);
        assert!(b.idle());
    }

    #[test]
    fn a_rejection_and_a_duplicate_keep_their_prefix() {
        let mut b = book();
        b.accept(record(0, Key::Ok(id(1)), None, 0), true, 0);
        b.accept(record(1, Key::Ok(id(2)), None, 0), true, 0);
        send_ready(&mut b, 0);
        b.on_ok(&id(1), false, "rate-limited: slow down".into(), MS);
        b.on_ok(&id(2), true, "duplicate: have it".into(), MS);
        let got = outcomes(&mut b);
        assert_eq!(
            got[0].1,
            Outcome::Rejected {
                prefix: Prefix::RateLimited,
                message: "rate-limited: slow down".into()
            }
        );
        assert_eq!(got[1].1, Outcome::Duplicate);
    }

    #[test]
    fn an_id_sent_again_while_in_flight_closes_the_first() {
        let mut b = book();
        b.accept(record(0, Key::Ok(id(7)), None, 0), true, 0);
        send_ready(&mut b, 0);
        b.accept(record(1, Key::Ok(id(7)), None, MS), true, MS);
        send_ready(&mut b, MS);
        let got = outcomes(&mut b);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, 0);
        assert!(
            matches!(&got[0].1, Outcome::Rejected { message, .. } if message.contains("sent again"))
        );
        // The reply goes to the one still in flight.
        assert!(b.on_ok(&id(7), true, "".into(), 2 * MS));
        assert_eq!(outcomes(&mut b), vec![(1, Outcome::Ok)]);
    }

    #[test]
    fn a_record_waits_for_the_one_it_follows_and_its_lag_counts_from_then() {
        let mut b = book();
        b.accept(record(0, Key::Sub("s".into()), None, 0), true, 0);
        send_ready(&mut b, 0);
        // The CLOSE follows the REQ: due at 1 ms, it waits for the EOSE at 40 ms.
        b.accept(record(1, Key::None, Some(0), MS), true, MS);
        assert!(b.take_ready(MS).is_empty());
        b.on_event("s");
        b.on_event("s");
        b.on_eose("s", 40 * MS);
        let req = b.take_done();
        assert_eq!(req[0].0.events_received, 2);
        assert_eq!(req[0].0.outcome, Outcome::Ok);
        let ready = b.take_ready(41 * MS);
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].ready_ns, 40 * MS, "ready when the REQ completed");
        b.sent(ready, &[10], 41 * MS, 41 * MS + 1);
        // Nothing answers a CLOSE: it is done when written.
        let close = b.take_done();
        assert_eq!(close[0].0.outcome, Outcome::Ok);
        assert_eq!(close[0].0.completed_ns, Some(41 * MS + 1));
        assert!(b.idle());
    }

    #[test]
    fn a_record_following_one_already_done_goes_at_once() {
        let mut b = book();
        b.accept(record(1, Key::None, Some(0), MS), true, MS);
        assert_eq!(b.take_ready(MS).len(), 1);
    }

    #[test]
    fn deadlines_expire_in_send_order_and_a_late_ok_is_not_matched() {
        let mut b = book();
        b.accept(record(0, Key::Ok(id(1)), None, 0), true, 0);
        send_ready(&mut b, 0);
        b.accept(
            record(1, Key::Sub("q".into()), None, 10 * MS),
            true,
            10 * MS,
        );
        send_ready(&mut b, 10 * MS);
        b.accept(record(2, Key::Ok(id(2)), None, 20 * MS), true, 20 * MS);
        send_ready(&mut b, 20 * MS);
        assert_eq!(b.next_deadline(), Some(TIMEOUT));
        b.expire(TIMEOUT + 10 * MS);
        let done = b.take_done();
        let expired: Vec<(u64, &Outcome, Option<[u8; 32]>)> = done
            .iter()
            .map(|(r, id)| (r.index, &r.outcome, *id))
            .collect();
        assert_eq!(
            expired,
            vec![
                (0, &Outcome::Timeout, Some(id(1))),
                (1, &Outcome::Timeout, None)
            ],
            "an event that timed out is held for reconciliation by its id; a REQ is not"
        );
        assert!(done.iter().all(|(r, _)| r.completed_ns.is_none()));
        assert_eq!(b.next_deadline(), Some(20 * MS + TIMEOUT));
        // The OK for record 0 comes after its timeout: not matched, so the caller counts
        // it as late.
        assert!(!b.on_ok(&id(1), true, "".into(), TIMEOUT + 20 * MS));
        assert!(b.on_ok(&id(2), true, "".into(), TIMEOUT + 20 * MS));
        b.trim_deadlines();
        assert_eq!(b.next_deadline(), None);
    }

    #[test]
    fn a_disconnect_ends_every_record_here_as_disconnected() {
        // Two in flight, one queued behind the cap of 2, one waiting on the REQ.
        let mut b = Book::new(3, 2, TIMEOUT);
        b.accept(record(0, Key::Ok(id(1)), None, 0), true, 0);
        b.accept(record(1, Key::Sub("s".into()), None, 0), true, 0);
        send_ready(&mut b, 0);
        b.accept(record(2, Key::Ok(id(3)), None, MS), true, MS);
        b.accept(record(3, Key::None, Some(1), MS), true, MS);
        assert!(b.take_ready(MS).is_empty(), "the cap of 2 is reached");
        b.disconnect(Some(1001), 2 * MS);
        let mut got = outcomes(&mut b);
        got.sort_by_key(|(i, _)| *i);
        assert_eq!(got.len(), 4);
        for (_, outcome) in &got {
            assert_eq!(*outcome, Outcome::Disconnected { code: Some(1001) });
        }
        assert!(b.idle());
        assert_eq!(b.next_deadline(), None);
    }

    #[test]
    fn a_record_due_while_the_socket_is_down_is_disconnected_unsent() {
        let mut b = book();
        b.accept(record(0, Key::Ok(id(1)), None, 0), false, 0);
        let done = b.take_done();
        assert_eq!(done[0].0.outcome, Outcome::Disconnected { code: None });
        assert_eq!(done[0].0.sent_ns, None);
        assert!(b.idle());
    }

    #[test]
    fn a_failed_write_gives_its_batch_no_answer() {
        let mut b = book();
        b.accept(record(0, Key::Ok(id(1)), None, 0), true, 0);
        let batch = b.take_ready(0);
        b.write_failed(batch, &[123], Some(1002), MS);
        let done = b.take_done();
        assert_eq!(
            done[0].0.outcome,
            Outcome::Disconnected { code: Some(1002) }
        );
        assert_eq!(done[0].0.bytes, 123);
        assert!(b.idle());
    }

    #[test]
    fn time_at_the_per_connection_cap_is_held_by_the_relay() {
        let mut b = Book::new(3, 1, TIMEOUT);
        b.accept(record(0, Key::Ok(id(1)), None, 0), true, 0);
        send_ready(&mut b, 0);
        // Due at 10 ms, but the one slot is taken until the OK at 50 ms.
        b.accept(record(1, Key::Ok(id(2)), None, 10 * MS), true, 10 * MS);
        assert!(b.take_ready(10 * MS).is_empty());
        b.on_ok(&id(1), true, "".into(), 50 * MS);
        b.take_done();
        let batch = b.take_ready(50 * MS);
        b.write_ended(51 * MS);
        b.sent(batch, &[10], 51 * MS, 51 * MS);
        b.on_ok(&id(2), true, "".into(), 60 * MS);
        let done = b.take_done();
        let row = &done[0].0;
        assert_eq!(row.sent_ns, Some(51 * MS));
        // Held from 10 ms until the write ended at 51 ms: all of its 41 ms of lag.
        assert_eq!(row.held_ns, 41 * MS);
    }
}
