//! The fan-out ledger: which deliveries each live subscription should get, which it got,
//! and how late. No threads, sockets or clock: it is told the trace's events and live
//! subscriptions, each record's outcome and every delivery, in whatever order a replay's
//! threads produce them, with times in ns from t0, and `tick(now)` moves it on.
//!
//! An event is judged against the live subscriptions once its OK is `settle` old, so that the
//! outcomes of other connections (an EOSE, a CLOSE) have reached the ledger. What it keeps is
//! bounded by what is in flight: an event is forgotten `2 × grace` after its OK, a closed
//! subscription as long after its CLOSE, and expected deliveries are counted missed at
//! `grace` after their event's OK, whatever the fan-out.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use hdrhistogram::Histogram;

use crate::capture::results::{
    Buckets, DeliveryCounts, DeliveryExample, DeliverySecond, FanoutQuery, FanoutRow, Outcome,
};
use crate::capture::Query;
use crate::nostr::filter::{Filter, Keys};

/// Examples of missed and of unexpected deliveries the report shows.
const EXAMPLES: usize = 10;

/// How a record was answered, as far as deliveries go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// `OK true` for an event, EOSE for a REQ, a CLOSE written.
    Ok,
    /// `OK false` for an event, CLOSED for a REQ.
    Refused,
    /// A duplicate, a timeout, a disconnect, not sent: the relay may or may not have it.
    Unknown,
}

impl Answer {
    pub fn of(o: &Outcome) -> Answer {
        match o {
            Outcome::Ok => Answer::Ok,
            Outcome::Rejected { .. } | Outcome::Closed { .. } => Answer::Refused,
            _ => Answer::Unknown,
        }
    }
}

/// One record's outcome, as the ledger needs it.
#[derive(Debug, Clone, Copy)]
pub struct Fact {
    pub index: u64,
    pub sent_ns: Option<u64>,
    pub completed_ns: Option<u64>,
    pub answer: Answer,
}

struct Published {
    keys: Keys,
    intended_ns: u64,
    sent_ns: Option<u64>,
    /// When it was answered, and how.
    answer: Option<(u64, Answer)>,
    evaluated: bool,
    expected: u32,
    /// Live subscriptions (REQ indices) it was delivered on.
    delivered_to: HashSet<u64>,
    /// Deliveries before it was judged, judged with it.
    early: Vec<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No answer to the REQ yet.
    Waiting,
    Open {
        eose_ns: u64,
    },
    /// CLOSED instead of EOSE.
    Refused,
    /// No EOSE in time: the relay may hold it or not.
    Unanswered,
}

struct Sub {
    conn: u32,
    name: String,
    query: Query,
    filters: Vec<Filter>,
    req_sent_ns: Option<u64>,
    state: State,
    close_sent_ns: Option<u64>,
}

enum Verdict {
    Expected,
    Either,
    Not(&'static str),
}

#[derive(Default)]
struct Stats {
    counts: DeliveryCounts,
    latency: Option<Histogram<u64>>,
    from_sent: Option<Histogram<u64>>,
}

/// The recorded buckets of `h` as `(highest value of the bucket, count)`.
pub fn buckets(h: &Histogram<u64>) -> Buckets {
    h.iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect()
}

pub struct Ledger {
    grace_ns: u64,
    /// One part of a sharded replay: the other parts' events are unknown here, so a
    /// delivery of an event this process did not publish is uncertain, not unexpected.
    part_only: bool,
    settle_ns: u64,
    events: HashMap<u64, Published>,
    by_id: HashMap<[u8; 32], u64>,
    subs: HashMap<u64, Sub>,
    /// Live subscriptions by the kinds their filters name; those naming none are under
    /// `None`.
    by_kind: HashMap<Option<u16>, Vec<u64>>,
    /// CLOSE record → the REQ it closes.
    close_of: HashMap<u64, u64>,
    /// Answered events waiting to be judged, in the order their answers came.
    to_judge: VecDeque<(u64, u64)>,
    /// Expected deliveries not received yet: (deadline, REQ, event), roughly in deadline
    /// order, and the set of them.
    pending: VecDeque<(u64, u64, u64)>,
    pending_set: HashSet<(u64, u64)>,
    /// When to forget judged events and closed subscriptions.
    forget_events: VecDeque<(u64, u64)>,
    forget_subs: VecDeque<(u64, u64)>,
    stats: BTreeMap<Query, Stats>,
    fanout: Histogram<u64>,
    seconds: BTreeMap<u32, (u64, HashMap<u64, u64>)>,
    /// Only to name a value's bucket in `seconds`.
    shape: Histogram<u64>,
    missed_examples: Vec<DeliveryExample>,
    unexpected_examples: Vec<DeliveryExample>,
    read_deliveries: u64,
}

impl Ledger {
    pub fn new(grace_ns: u64, settle_ns: u64, part_only: bool) -> Ledger {
        Ledger {
            grace_ns,
            part_only,
            settle_ns,
            events: HashMap::new(),
            by_id: HashMap::new(),
            subs: HashMap::new(),
            by_kind: HashMap::new(),
            close_of: HashMap::new(),
            to_judge: VecDeque::new(),
            pending: VecDeque::new(),
            pending_set: HashSet::new(),
            forget_events: VecDeque::new(),
            forget_subs: VecDeque::new(),
            stats: BTreeMap::new(),
            fanout: crate::histogram::counts(),
            seconds: BTreeMap::new(),
            shape: crate::histogram::latency(),
            missed_examples: Vec::new(),
            unexpected_examples: Vec::new(),
            read_deliveries: 0,
        }
    }

    /// Trace record `index` publishes the event `keys`, meant to go at `intended_ns`.
    pub fn event(&mut self, index: u64, keys: Keys, intended_ns: u64) {
        self.by_id.insert(keys.id, index);
        self.events.insert(
            index,
            Published {
                keys,
                intended_ns,
                sent_ns: None,
                answer: None,
                evaluated: false,
                expected: 0,
                delivered_to: HashSet::new(),
                early: Vec::new(),
            },
        );
    }

    /// Trace record `index` opens live subscription `name` on connection `conn`.
    pub fn live_sub(
        &mut self,
        index: u64,
        conn: u32,
        name: String,
        query: Query,
        filters: Vec<Filter>,
    ) {
        let mut kinds: Vec<Option<u16>> = filters
            .iter()
            .flat_map(|f| match &f.kinds {
                Some(k) => k.iter().map(|k| Some(*k)).collect(),
                None => vec![None],
            })
            .collect();
        kinds.sort_unstable();
        kinds.dedup();
        for k in kinds {
            self.by_kind.entry(k).or_default().push(index);
        }
        self.subs.insert(
            index,
            Sub {
                conn,
                name,
                query,
                filters,
                req_sent_ns: None,
                state: State::Waiting,
                close_sent_ns: None,
            },
        );
    }

    /// Trace record `index` is the CLOSE of the live subscription opened by record `req`.
    pub fn live_close(&mut self, index: u64, req: u64) {
        self.close_of.insert(index, req);
    }

    /// A record's outcome.
    pub fn fact(&mut self, f: Fact) {
        if let Some(ev) = self.events.get_mut(&f.index) {
            ev.sent_ns = f.sent_ns;
            let at = f.completed_ns.or(f.sent_ns).unwrap_or(ev.intended_ns);
            ev.answer = Some((at, f.answer));
            self.to_judge.push_back((at, f.index));
        } else if let Some(sub) = self.subs.get_mut(&f.index) {
            sub.req_sent_ns = f.sent_ns;
            sub.state = match (f.answer, f.completed_ns) {
                (Answer::Ok, Some(eose_ns)) => State::Open { eose_ns },
                (Answer::Refused, _) => State::Refused,
                _ => State::Unanswered,
            };
            if matches!(sub.state, State::Open { .. }) {
                self.stats
                    .entry(sub.query)
                    .or_default()
                    .counts
                    .subscriptions += 1;
            }
        } else if let Some(req) = self.close_of.remove(&f.index) {
            if let (Some(sub), Some(at)) = (self.subs.get_mut(&req), f.sent_ns) {
                sub.close_sent_ns = Some(at);
                self.forget_subs.push_back((at + 2 * self.grace_ns, req));
            }
        }
    }

    /// An EVENT received after its subscription's EOSE at `at_ns`, on the live subscription
    /// opened by record `req` (`None`: a read's subscription, between its EOSE and CLOSE).
    pub fn delivery(&mut self, req: Option<u64>, id: [u8; 32], at_ns: u64) {
        let Some(query) = req.and_then(|r| self.subs.get(&r)).map(|s| s.query) else {
            self.read_deliveries += 1;
            return;
        };
        let Some(req) = req else {
            return;
        };
        let Some(&index) = self.by_id.get(&id) else {
            let stats = self.stats.entry(query).or_default();
            if self.part_only {
                stats.counts.uncertain += 1;
                return;
            }
            stats.counts.unexpected += 1;
            self.unexpected(
                req,
                id,
                None,
                "an event lt did not publish in this run (or forgot: it came long after its OK)",
            );
            return;
        };
        let Some(ev) = self.events.get_mut(&index) else {
            return;
        };
        let latency_us = at_ns.saturating_sub(ev.intended_ns) / 1000;
        let from_sent_us = ev.sent_ns.map(|s| at_ns.saturating_sub(s) / 1000);
        let fresh = ev.delivered_to.insert(req);
        let judged = ev.evaluated;
        if fresh && !judged {
            ev.early.push(req);
        }
        let stats = self.stats.entry(query).or_default();
        stats
            .latency
            .get_or_insert_with(crate::histogram::latency)
            .saturating_record(latency_us.max(1));
        if let Some(us) = from_sent_us {
            stats
                .from_sent
                .get_or_insert_with(crate::histogram::latency)
                .saturating_record(us.max(1));
        }
        let second = (at_ns / 1_000_000_000) as u32;
        let bucket = self.shape.highest_equivalent(latency_us.max(1));
        let slot = self.seconds.entry(second).or_default();
        slot.0 += 1;
        *slot.1.entry(bucket).or_default() += 1;
        if !fresh {
            let stats = self.stats.entry(query).or_default();
            stats.counts.duplicates += 1;
            stats.counts.unexpected += 1;
            self.unexpected(req, id, Some(index), "delivered a second time");
            return;
        }
        if judged {
            self.judge_delivery(req, index);
        }
    }

    /// Judges the events answered at least `settle` ago, counts missed what is past its
    /// grace, and forgets what can no longer matter.
    pub fn tick(&mut self, now_ns: u64) {
        while let Some(&(at, index)) = self.to_judge.front() {
            if at.saturating_add(self.settle_ns) > now_ns {
                break;
            }
            self.to_judge.pop_front();
            self.judge_event(index);
        }
        while let Some(&(deadline, req, index)) = self.pending.front() {
            if deadline > now_ns {
                break;
            }
            self.pending.pop_front();
            self.miss(req, index);
        }
        while let Some(&(at, index)) = self.forget_events.front() {
            if at > now_ns {
                break;
            }
            self.forget_events.pop_front();
            self.forget_event(index);
        }
        while let Some(&(at, req)) = self.forget_subs.front() {
            if at > now_ns {
                break;
            }
            self.forget_subs.pop_front();
            self.forget_sub(req);
        }
    }

    /// The run is over: every event is judged, every expected delivery not received is
    /// missed.
    pub fn finish(mut self) -> (FanoutRow, Vec<DeliverySecond>) {
        while let Some((_, index)) = self.to_judge.pop_front() {
            self.judge_event(index);
        }
        // Events never answered (the run stopped first) are judged as such.
        let unjudged: Vec<u64> = self
            .events
            .iter()
            .filter(|(_, e)| !e.evaluated)
            .map(|(i, _)| *i)
            .collect();
        for index in unjudged {
            if let Some(ev) = self.events.get_mut(&index) {
                ev.answer.get_or_insert((ev.intended_ns, Answer::Unknown));
            }
            self.judge_event(index);
        }
        while let Some((_, req, index)) = self.pending.pop_front() {
            self.miss(req, index);
        }
        let all: Vec<u64> = self.events.keys().copied().collect();
        for index in all {
            self.forget_event(index);
        }
        let by_query = std::mem::take(&mut self.stats)
            .into_iter()
            .map(|(query, s)| FanoutQuery {
                query,
                counts: s.counts,
                latency_us: s.latency.as_ref().map(buckets).unwrap_or_default(),
                latency_from_sent_us: s.from_sent.as_ref().map(buckets).unwrap_or_default(),
            })
            .collect();
        let seconds = std::mem::take(&mut self.seconds)
            .into_iter()
            .map(|(second, (deliveries, b))| {
                let mut latency_us: Buckets = b.into_iter().collect();
                latency_us.sort_unstable();
                DeliverySecond {
                    second,
                    deliveries,
                    latency_us,
                }
            })
            .collect();
        (
            FanoutRow {
                grace_ns: self.grace_ns,
                by_query,
                fanout: buckets(&self.fanout),
                missed_examples: self.missed_examples,
                unexpected_examples: self.unexpected_examples,
                read_deliveries: self.read_deliveries,
            },
            seconds,
        )
    }

    fn verdict(&self, req: u64, index: u64) -> Verdict {
        let (Some(sub), Some(ev)) = (self.subs.get(&req), self.events.get(&index)) else {
            return Verdict::Either;
        };
        if !sub.filters.iter().any(|f| f.matches(&ev.keys)) {
            return Verdict::Not("the event matches none of the subscription's filters");
        }
        let Some((answered_ns, answer)) = ev.answer else {
            return Verdict::Either;
        };
        match answer {
            Answer::Refused => return Verdict::Not("the relay rejected the event (OK false)"),
            Answer::Unknown => return Verdict::Either,
            Answer::Ok => {}
        }
        let sent = ev.sent_ns.unwrap_or(answered_ns);
        let close = sub.close_sent_ns.unwrap_or(u64::MAX);
        match sub.state {
            State::Refused => Verdict::Not("the relay refused the subscription (CLOSED)"),
            State::Waiting | State::Unanswered => Verdict::Either,
            State::Open { eose_ns } => {
                if sent >= eose_ns && answered_ns <= close {
                    Verdict::Expected
                } else if answered_ns >= sub.req_sent_ns.unwrap_or(0) && sent <= close {
                    Verdict::Either
                } else if sent > close {
                    Verdict::Not("published after the subscription was closed")
                } else {
                    Verdict::Not("stored before the subscription: a stored event, not a delivery")
                }
            }
        }
    }

    fn judge_event(&mut self, index: u64) {
        let Some(ev) = self.events.get(&index) else {
            return;
        };
        if ev.evaluated {
            return;
        }
        let answered_ns = ev.answer.map_or(ev.intended_ns, |(at, _)| at);
        let mut candidates: Vec<u64> = Vec::new();
        for k in [Some(ev.keys.kind), None] {
            if let Some(subs) = self.by_kind.get(&k) {
                candidates.extend(subs);
            }
        }
        let mut expected = Vec::new();
        for req in candidates {
            if let Verdict::Expected = self.verdict(req, index) {
                expected.push(req);
            }
        }
        let early = match self.events.get_mut(&index) {
            Some(ev) => {
                ev.evaluated = true;
                ev.expected = expected.len() as u32;
                std::mem::take(&mut ev.early)
            }
            None => return,
        };
        for req in expected {
            let query = self.subs[&req].query;
            let delivered = self.events[&index].delivered_to.contains(&req);
            let stats = self.stats.entry(query).or_default();
            stats.counts.expected += 1;
            if delivered {
                stats.counts.delivered += 1;
            } else {
                let deadline = answered_ns.saturating_add(self.grace_ns);
                self.pending.push_back((deadline, req, index));
                self.pending_set.insert((req, index));
            }
        }
        for req in early {
            match self.verdict(req, index) {
                Verdict::Expected => {} // counted above
                Verdict::Either => self.stats_of(req).counts.uncertain += 1,
                Verdict::Not(why) => self.unexpected_at(req, index, why),
            }
        }
        self.forget_events
            .push_back((answered_ns.saturating_add(2 * self.grace_ns), index));
    }

    fn judge_delivery(&mut self, req: u64, index: u64) {
        match self.verdict(req, index) {
            Verdict::Expected => {
                let late = !self.pending_set.remove(&(req, index));
                let stats = self.stats_of(req);
                stats.counts.delivered += 1;
                if late {
                    // Counted missed at its grace; it came after all.
                    stats.counts.late += 1;
                    stats.counts.missed = stats.counts.missed.saturating_sub(1);
                }
            }
            Verdict::Either => self.stats_of(req).counts.uncertain += 1,
            Verdict::Not(why) => self.unexpected_at(req, index, why),
        }
    }

    fn stats_of(&mut self, req: u64) -> &mut Stats {
        let query = self.subs.get(&req).map_or(Query::Other, |s| s.query);
        self.stats.entry(query).or_default()
    }

    fn unexpected_at(&mut self, req: u64, index: u64, why: &'static str) {
        self.stats_of(req).counts.unexpected += 1;
        let id = self.events.get(&index).map_or([0; 32], |e| e.keys.id);
        self.unexpected(req, id, Some(index), why);
    }

    fn unexpected(&mut self, req: u64, id: [u8; 32], index: Option<u64>, why: &str) {
        if self.unexpected_examples.len() < EXAMPLES {
            let example = self.example(req, id, index, why);
            self.unexpected_examples.push(example);
        }
    }

    fn miss(&mut self, req: u64, index: u64) {
        if !self.pending_set.remove(&(req, index)) {
            return;
        }
        self.stats_of(req).counts.missed += 1;
        if self.missed_examples.len() < EXAMPLES {
            let id = self.events.get(&index).map_or([0; 32], |e| e.keys.id);
            let example = self.example(
                req,
                id,
                Some(index),
                "accepted while the subscription was open, never delivered",
            );
            self.missed_examples.push(example);
        }
    }

    fn example(&self, req: u64, id: [u8; 32], index: Option<u64>, why: &str) -> DeliveryExample {
        let (sub, conn) = self
            .subs
            .get(&req)
            .map_or((String::new(), 0), |s| (s.name.clone(), s.conn));
        DeliveryExample {
            sub,
            conn,
            event_id: hex::encode(id),
            record: index,
            why: why.to_owned(),
        }
    }

    fn forget_event(&mut self, index: u64) {
        if let Some(ev) = self.events.remove(&index) {
            self.by_id.remove(&ev.keys.id);
            let n = ev.delivered_to.len() as u64;
            if n > 0 || ev.expected > 0 {
                self.fanout.saturating_record(n);
            }
        }
    }

    fn forget_sub(&mut self, req: u64) {
        if self.subs.remove(&req).is_some() {
            for list in self.by_kind.values_mut() {
                list.retain(|r| *r != req);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const GRACE: u64 = 1_000 * MS;

    fn keys(id: u8, kind: u16, coord: &str) -> Keys {
        Keys {
            id: [id; 32],
            pubkey: [7; 32],
            kind,
            created_at: 1_770_000_100,
            tags: vec![(b't', "view".into()), (b'a', coord.into())],
        }
    }

    fn views_filter(coord: &str) -> Vec<Filter> {
        crate::nostr::filter::of_req(&format!(
            r##"["REQ","s",{{"kinds":[30079],"#t":["view"],"#a":["{coord}"],"since":1770000000}}]"##
        ))
        .expect("filter")
        .1
    }

    fn fact(index: u64, sent: u64, done: u64, answer: Answer) -> Fact {
        Fact {
            index,
            sent_ns: Some(sent * MS),
            completed_ns: Some(done * MS),
            answer,
        }
    }

    /// A ledger with live subscription `s` (record 0, connection 1) on video `x`, open from
    /// its EOSE at 10 ms and closed (record 1) at `close` ms.
    fn open(close: Option<u64>) -> Ledger {
        let mut l = Ledger::new(GRACE, 0, false);
        l.live_sub(0, 1, "s".into(), Query::LiveViews, views_filter("x"));
        l.live_close(1, 0);
        l.fact(fact(0, 5, 10, Answer::Ok));
        if let Some(at) = close {
            l.fact(fact(1, at, at, Answer::Ok));
        }
        l
    }

    fn the(row: &FanoutRow) -> &FanoutQuery {
        assert_eq!(row.by_query.len(), 1, "{row:?}");
        &row.by_query[0]
    }

    #[test]
    fn an_event_accepted_while_open_and_delivered_is_expected_and_delivered() {
        let mut l = open(Some(500));
        l.event(10, keys(1, 30079, "x"), 20 * MS);
        l.fact(fact(10, 21, 25, Answer::Ok));
        // The relay pushes the event before it answers the publisher: judged later.
        l.delivery(Some(0), [1; 32], 24 * MS);
        l.tick(600 * MS);
        let (row, seconds) = l.finish();
        let q = the(&row);
        assert_eq!(
            (
                q.counts.subscriptions,
                q.counts.expected,
                q.counts.delivered,
                q.counts.missed,
                q.counts.unexpected
            ),
            (1, 1, 1, 0, 0)
        );
        // 24 ms after its intended time (20 ms), 3 ms after it was sent.
        assert_eq!(q.latency_us.len(), 1);
        assert!((3_990..=4_010).contains(&q.latency_us[0].0), "{q:?}");
        assert!((2_990..=3_010).contains(&q.latency_from_sent_us[0].0));
        assert_eq!(seconds.len(), 1);
        assert_eq!((seconds[0].second, seconds[0].deliveries), (0, 1));
        assert_eq!(row.fanout, vec![(1, 1)]);
    }

    #[test]
    fn an_expected_delivery_never_received_is_missed_at_its_grace() {
        let mut l = open(None);
        l.event(10, keys(2, 30079, "x"), 20 * MS);
        l.fact(fact(10, 20, 30, Answer::Ok));
        l.tick(31 * MS);
        l.tick(30 * MS + GRACE - 1);
        l.tick(30 * MS + GRACE);
        let (row, _) = l.finish();
        let q = the(&row);
        assert_eq!(
            (q.counts.expected, q.counts.delivered, q.counts.missed),
            (1, 0, 1)
        );
        assert_eq!(row.missed_examples.len(), 1);
        assert_eq!(row.missed_examples[0].event_id, hex::encode([2u8; 32]));
        assert_eq!(row.missed_examples[0].record, Some(10));
    }

    #[test]
    fn a_delivery_after_the_grace_is_late_not_missed() {
        let mut l = open(None);
        l.event(10, keys(2, 30079, "x"), 20 * MS);
        l.fact(fact(10, 20, 30, Answer::Ok));
        l.tick(30 * MS + GRACE);
        l.delivery(Some(0), [2; 32], 30 * MS + GRACE + 5 * MS);
        let (row, _) = l.finish();
        let q = the(&row);
        assert_eq!(
            (
                q.counts.expected,
                q.counts.delivered,
                q.counts.late,
                q.counts.missed
            ),
            (1, 1, 1, 0)
        );
    }

    #[test]
    fn what_does_not_match_or_was_rejected_or_came_twice_is_unexpected() {
        let mut l = open(None);
        l.event(10, keys(3, 30079, "other-video"), 20 * MS);
        l.fact(fact(10, 20, 30, Answer::Ok));
        l.event(11, keys(4, 30079, "x"), 20 * MS);
        l.fact(fact(11, 20, 30, Answer::Refused));
        l.event(12, keys(5, 30079, "x"), 20 * MS);
        l.fact(fact(12, 20, 30, Answer::Ok));
        l.tick(100 * MS);
        l.delivery(Some(0), [3; 32], 101 * MS);
        l.delivery(Some(0), [4; 32], 102 * MS);
        l.delivery(Some(0), [5; 32], 103 * MS);
        l.delivery(Some(0), [5; 32], 104 * MS);
        l.delivery(Some(0), [9; 32], 105 * MS);
        let (row, _) = l.finish();
        let q = the(&row);
        assert_eq!(
            (
                q.counts.expected,
                q.counts.delivered,
                q.counts.unexpected,
                q.counts.duplicates
            ),
            (1, 1, 4, 1)
        );
        let why: Vec<&str> = row
            .unexpected_examples
            .iter()
            .map(|e| e.why.as_str())
            .collect();
        assert_eq!(
            why,
            [
                "the event matches none of the subscription's filters",
                "the relay rejected the event (OK false)",
                "delivered a second time",
                "an event lt did not publish in this run (or forgot: it came long after its OK)",
            ]
        );
    }

    #[test]
    fn around_the_eose_and_the_close_either_answer_is_right() {
        let mut l = open(Some(100));
        // Sent before the EOSE arrived (10 ms), answered after: uncertain either way.
        l.event(10, keys(1, 30079, "x"), 8 * MS);
        l.fact(fact(10, 8, 12, Answer::Ok));
        // Sent before the CLOSE (100 ms), answered after it.
        l.event(11, keys(2, 30079, "x"), 99 * MS);
        l.fact(fact(11, 99, 101, Answer::Ok));
        // Answered before the REQ was sent (5 ms): a stored event, not a delivery.
        l.event(12, keys(3, 30079, "x"), MS);
        l.fact(fact(12, 1, 2, Answer::Ok));
        // Timed out: the relay may have it.
        l.event(13, keys(4, 30079, "x"), 50 * MS);
        l.fact(fact(13, 50, 60, Answer::Unknown));
        l.tick(200 * MS);
        l.delivery(Some(0), [1; 32], 201 * MS);
        l.delivery(Some(0), [4; 32], 202 * MS);
        l.delivery(Some(0), [3; 32], 203 * MS);
        l.tick(10 * GRACE);
        let (row, _) = l.finish();
        let q = the(&row);
        // Nothing was certainly expected, so nothing is missed: 11 was not delivered.
        assert_eq!(
            (
                q.counts.expected,
                q.counts.missed,
                q.counts.uncertain,
                q.counts.unexpected
            ),
            (0, 0, 2, 1)
        );
        assert_eq!(
            row.unexpected_examples[0].why,
            "stored before the subscription: a stored event, not a delivery"
        );
    }

    #[test]
    fn a_read_subscriptions_pushes_are_counted_apart() {
        let mut l = open(None);
        l.delivery(None, [1; 32], MS);
        let (row, _) = l.finish();
        assert_eq!(row.read_deliveries, 1);
        assert_eq!(the(&row).counts.unexpected, 0);
    }

    #[test]
    fn memory_is_given_back_as_events_and_subscriptions_age() {
        let mut l = open(Some(1_000));
        for i in 0..1_000u64 {
            let mut k = keys(0, 30079, "x");
            k.id[..8].copy_from_slice(&i.to_le_bytes());
            l.event(100 + i, k.clone(), 20 * MS);
            l.fact(fact(100 + i, 20, 30, Answer::Ok));
            l.delivery(Some(0), k.id, 40 * MS);
        }
        l.tick(100 * GRACE);
        assert!(l.events.is_empty() && l.by_id.is_empty());
        assert!(l.subs.is_empty() && l.pending_set.is_empty());
        let (row, _) = l.finish();
        let q = the(&row);
        assert_eq!(
            (q.counts.expected, q.counts.delivered, q.counts.missed),
            (1_000, 1_000, 0)
        );
        assert_eq!(row.fanout, vec![(1, 1_000)]);
    }
}
