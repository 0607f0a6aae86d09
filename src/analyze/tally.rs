//! One streaming pass over results rows into counters and HDR histograms. A `Tally` is
//! mergeable: several files of one trace (repeats or shards) add up exactly, histograms by
//! addition, never by averaging percentiles.

use super::against::Against;
use super::deliveries::Deliveries;
use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use super::class::Class;
use super::timeline::Timeline;
use crate::capture::results::{ConnectRow, NoticeRow, Outcome, OutcomeRow, Row, Sample, Trailer};
use crate::histogram::{self, record_ns};

/// Distinct messages (and NOTICE texts) kept with their counts; the rest are counted as
/// "other", so memory stays bounded whatever a relay says.
const MESSAGES_MAX: usize = 200;
/// Example records kept per message.
const EXAMPLES_MAX: usize = 3;

/// Response, service and lag for one class of records.
#[derive(Clone)]
pub struct Latencies {
    /// completed − intended: what a user waiting on the schedule saw.
    pub response: Histogram<u64>,
    /// completed − sent: the relay's part.
    pub service: Histogram<u64>,
    /// sent − intended: lt's own delay.
    pub lag: Histogram<u64>,
    /// Records in `response` and `service` at their lower bound: sent, but no answer within
    /// the timeout (`timeout`, `stored_unacked`, `lost`), so their time is at least the
    /// timeout. Leaving them out would make a relay that stops answering look fast.
    pub at_timeout: u64,
}

impl Latencies {
    fn new() -> Latencies {
        Latencies {
            response: histogram::latency(),
            service: histogram::latency(),
            lag: histogram::latency(),
            at_timeout: 0,
        }
    }

    fn add(&mut self, other: &Latencies) {
        self.at_timeout += other.at_timeout;
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.response.add(&other.response);
        let _ = self.service.add(&other.service);
        let _ = self.lag.add(&other.lag);
    }
}

/// Records (of the independent classes) the relay held back for part of their schedule
/// lag: its socket was full, or an in-flight cap was reached (see `OutcomeRow::held_ns`).
/// Kept for these rows only; lt's own lag over all rows is the plain lag histogram with
/// these rows' lag swapped for their own part (`own_lag`).
#[derive(Clone)]
pub struct Held {
    pub records: u64,
    /// How long each was held.
    pub held: Histogram<u64>,
    /// Their schedule lag, and its part that was lt's own (lag − held).
    pub lag: Histogram<u64>,
    pub own: Histogram<u64>,
}

impl Held {
    fn new() -> Held {
        Held {
            records: 0,
            held: histogram::latency(),
            lag: histogram::latency(),
            own: histogram::latency(),
        }
    }

    fn add(&mut self, other: &Held) {
        self.records += other.records;
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.held.add(&other.held);
        let _ = self.lag.add(&other.lag);
        let _ = self.own.add(&other.own);
    }

    /// lt's own schedule lag over every row of `lag` (the plain lag of the same rows).
    pub fn own_lag(&self, lag: &Histogram<u64>) -> Histogram<u64> {
        let mut own = lag.clone();
        // These rows are in `lag` with their full lag: take that out, put their own part in.
        let _ = own.subtract(&self.lag);
        let _ = own.add(&self.own);
        own
    }
}

#[derive(Clone)]
pub struct ClassTally {
    pub records: u64,
    /// Records lt sent (see `Outcome::attempted`).
    pub attempted: u64,
    pub succeeded: u64,
    pub latency: Latencies,
}

/// A message text seen in replies, with how often and a few records that got it.
#[derive(Debug, Clone, Default)]
pub struct MessageTally {
    pub count: u64,
    pub examples: Vec<u64>,
}

/// Messages keyed by (outcome label, text), bounded.
#[derive(Debug, Clone, Default)]
pub struct Messages {
    pub by_text: BTreeMap<(String, String), MessageTally>,
    /// Occurrences of messages beyond the first `MESSAGES_MAX` distinct ones.
    pub other: u64,
}

impl Messages {
    fn note(&mut self, label: String, text: &str, index: u64) {
        let key = (label, text.to_owned());
        let full = self.by_text.len() >= MESSAGES_MAX;
        match self.by_text.get_mut(&key) {
            Some(m) => m.push(index),
            None if full => self.other += 1,
            None => {
                let mut m = MessageTally::default();
                m.push(index);
                self.by_text.insert(key, m);
            }
        }
    }

    fn add(&mut self, other: &Messages) {
        self.other += other.other;
        for (key, m) in &other.by_text {
            let full = self.by_text.len() >= MESSAGES_MAX;
            match self.by_text.get_mut(key) {
                Some(mine) => {
                    mine.count += m.count;
                    for &e in &m.examples {
                        if mine.examples.len() < EXAMPLES_MAX {
                            mine.examples.push(e);
                        }
                    }
                }
                None if full => self.other += m.count,
                None => {
                    self.by_text.insert(key.clone(), m.clone());
                }
            }
        }
    }
}

impl MessageTally {
    fn push(&mut self, index: u64) {
        self.count += 1;
        if self.examples.len() < EXAMPLES_MAX {
            self.examples.push(index);
        }
    }
}

/// Connection attempts.
#[derive(Clone)]
pub struct Connects {
    pub initial: u64,
    pub initial_failed: u64,
    pub reconnects: u64,
    pub reconnects_failed: u64,
    pub latency: Histogram<u64>,
    /// The phases of successful attempts: TCP connect, then the WebSocket upgrade.
    pub tcp: Histogram<u64>,
    pub tls: Histogram<u64>,
    pub upgrade: Histogram<u64>,
    /// Failure causes, bounded like messages.
    pub causes: BTreeMap<String, u64>,
}

impl Connects {
    fn new() -> Connects {
        Connects {
            initial: 0,
            initial_failed: 0,
            reconnects: 0,
            reconnects_failed: 0,
            latency: histogram::latency(),
            tcp: histogram::latency(),
            tls: histogram::latency(),
            upgrade: histogram::latency(),
            causes: BTreeMap::new(),
        }
    }

    fn note(&mut self, c: &ConnectRow) {
        let failed = c.error.is_some();
        if c.initial {
            self.initial += 1;
            self.initial_failed += u64::from(failed);
        } else {
            self.reconnects += 1;
            self.reconnects_failed += u64::from(failed);
        }
        match &c.error {
            Some(cause) => bump_bounded(&mut self.causes, cause, 1),
            None => {
                record_ns(&mut self.latency, c.latency_ns);
                if let Some(ns) = c.tcp_ns {
                    record_ns(&mut self.tcp, ns);
                }
                if let Some(ns) = c.tls_ns {
                    record_ns(&mut self.tls, ns);
                }
                if let Some(ns) = c.upgrade_ns {
                    record_ns(&mut self.upgrade, ns);
                }
            }
        }
    }

    fn add(&mut self, o: &Connects) {
        self.initial += o.initial;
        self.initial_failed += o.initial_failed;
        self.reconnects += o.reconnects;
        self.reconnects_failed += o.reconnects_failed;
        let _ = self.latency.add(&o.latency);
        let _ = self.tcp.add(&o.tcp);
        let _ = self.tls.add(&o.tls);
        let _ = self.upgrade.add(&o.upgrade);
        for (k, v) in &o.causes {
            bump_bounded(&mut self.causes, k, *v);
        }
    }
}

fn bump_bounded(map: &mut BTreeMap<String, u64>, key: &str, by: u64) {
    if let Some(n) = map.get_mut(key) {
        *n += by;
    } else if map.len() < MESSAGES_MAX {
        map.insert(key.to_owned(), by);
    } else {
        *map.entry("(other)".to_owned()).or_default() += by;
    }
}

/// Everything one pass learns from one or more results files of the same trace.
#[derive(Clone)]
pub struct Tally {
    pub files: u32,
    pub outcomes: u64,
    pub by_outcome: BTreeMap<String, u64>,
    pub classes: Vec<ClassTally>,
    /// Events a REQ received before its EOSE.
    pub events_returned: Histogram<u64>,
    pub messages: Messages,
    /// Disconnected outcomes by WebSocket close code ("none" when the socket just died).
    pub close_codes: BTreeMap<String, u64>,
    pub notices: BTreeMap<String, u64>,
    pub connects: Connects,
    pub timeline: Timeline,
    /// Samples, per file, in file order (each file's clock starts at its own t0).
    pub samples: Vec<Vec<Sample>>,
    pub trailers: Vec<Trailer>,
    pub bytes_sent: u64,
    pub held: Held,
    /// The replay's `--timeout`: where an unanswered record's latency is counted (see
    /// `Latencies::at_timeout`); `None` when the results do not say (no such records then).
    pub timeout_ns: Option<u64>,
    /// For a recorded trace: the replay set against the recorded relay's answers.
    pub against: Against,
    /// For a trace with live subscriptions: their deliveries.
    pub deliveries: Deliveries,
    /// Files per run: N when the files are the N shards of one sharded replay, else 1.
    pub shards: u32,
    /// Runs the files make (shards of one run count once).
    pub runs: u32,
    /// Scraped series (`--scrape`, this machine's `/proc`), per file in file order.
    pub scraped: Vec<super::scraped::ScrapedRows>,
}

impl Tally {
    /// A tally of rows replayed with `--timeout` `timeout_ns`.
    pub fn with_timeout(timeout_ns: Option<u64>) -> Tally {
        Tally {
            timeout_ns,
            ..Tally::new()
        }
    }

    pub fn new() -> Tally {
        Tally {
            timeout_ns: None,
            files: 0,
            outcomes: 0,
            by_outcome: BTreeMap::new(),
            classes: Class::ALL
                .iter()
                .map(|_| ClassTally {
                    records: 0,
                    attempted: 0,
                    succeeded: 0,
                    latency: Latencies::new(),
                })
                .collect(),
            events_returned: histogram::latency(),
            messages: Messages::default(),
            close_codes: BTreeMap::new(),
            notices: BTreeMap::new(),
            connects: Connects::new(),
            timeline: Timeline::new(),
            samples: Vec::new(),
            trailers: Vec::new(),
            bytes_sent: 0,
            held: Held::new(),
            against: Against::default(),
            deliveries: Deliveries::default(),
            shards: 1,
            runs: 0,
            scraped: Vec::new(),
        }
    }

    /// Starts a new file: samples go into their own series.
    pub fn begin_file(&mut self) {
        self.files += 1;
        self.samples.push(Vec::new());
        self.scraped.push(Default::default());
    }

    /// This file's scraped rows.
    fn scraped_mut(&mut self) -> &mut super::scraped::ScrapedRows {
        if self.scraped.is_empty() {
            self.scraped.push(Default::default());
        }
        let last = self.scraped.len() - 1;
        &mut self.scraped[last]
    }

    pub fn end_file(&mut self, trailer: Trailer) {
        self.trailers.push(trailer);
        self.runs += 1;
    }

    /// Response and service time over requests (not CLOSE and other frames); schedule lag over the
    /// independent classes only (see `Class::is_independent`). Added up from the classes
    /// once, rather than recorded twice per row.
    pub fn overall(&self) -> Latencies {
        let mut all = Latencies::new();
        for c in Class::ALL {
            let l = &self.class(c).latency;
            // Same bounds everywhere, so adding cannot fail.
            if c.is_request() {
                let _ = all.response.add(&l.response);
                let _ = all.service.add(&l.service);
                all.at_timeout += l.at_timeout;
            }
            if c.is_independent() {
                let _ = all.lag.add(&l.lag);
            }
        }
        all
    }

    /// Requests: every class but CLOSE and other frames. A CLOSE frame is written, never
    /// answered, so it is neither a success nor a failure, and counts in no total or rate.
    pub fn requests(&self) -> impl Iterator<Item = &ClassTally> {
        Class::ALL
            .iter()
            .filter(|c| c.is_request())
            .map(|c| self.class(*c))
    }

    pub fn class(&self, c: Class) -> &ClassTally {
        &self.classes[c.index()]
    }

    pub fn count(&self, label: &str) -> u64 {
        self.by_outcome.get(label).copied().unwrap_or(0)
    }

    pub fn push(&mut self, row: &Row) {
        match row {
            Row::Outcome(o) => self.outcome(o),
            Row::Sample(s) => match self.samples.last_mut() {
                Some(series) => series.push(s.clone()),
                None => self.samples.push(vec![s.clone()]),
            },
            Row::Connect(c) => self.connects.note(c),
            Row::Notice(NoticeRow { text, .. }) => bump_bounded(&mut self.notices, text, 1),
            Row::Deliveries(d) => self.deliveries.second(d),
            Row::Fanout(f) => self.deliveries.fanout_row(f),
            // The `Fanout` row has the account; these are for the user's own digging.
            Row::Delivery(_) => {}
            Row::Series(r) => self.scraped_mut().series.push(r.clone()),
            Row::Scrape(r) => self.scraped_mut().scrapes.push(r.clone()),
        }
    }

    fn outcome(&mut self, o: &OutcomeRow) {
        self.outcomes += 1;
        if o.op.is_event() && o.sent_ns.is_some() {
            self.scraped_mut().events_sent += 1;
        }
        o.outcome.count_into(&mut self.by_outcome);
        let class = Class::of(o.op);
        let succeeded = o.outcome.succeeded();
        let ct = &mut self.classes[class.index()];
        ct.records += 1;
        ct.attempted += u64::from(o.outcome.attempted());
        ct.succeeded += u64::from(succeeded);
        if o.sent_ns.is_some() {
            self.bytes_sent += u64::from(o.bytes);
        }
        let replied = o.outcome.replied();
        let unanswered = matches!(
            o.outcome,
            Outcome::Timeout | Outcome::StoredUnacked | Outcome::Lost
        );
        let mut response_ns = None;
        let lat = &mut ct.latency;
        if let Some(sent) = o.sent_ns {
            let lag = sent.saturating_sub(o.intended_ns);
            record_ns(&mut lat.lag, lag);
            if o.held_ns > 0 && class.is_independent() {
                let h = &mut self.held;
                h.records += 1;
                record_ns(&mut h.held, o.held_ns);
                record_ns(&mut h.lag, lag);
                record_ns(&mut h.own, lag.saturating_sub(o.held_ns));
            }
            // Answered: its real time. Unanswered in time: the timeout, a lower bound.
            let done = match (o.completed_ns, self.timeout_ns) {
                (Some(done), _) if replied => Some(done),
                (_, Some(timeout)) if unanswered => {
                    lat.at_timeout += 1;
                    Some(sent + timeout)
                }
                _ => None,
            };
            if let Some(done) = done {
                let response = done.saturating_sub(o.intended_ns);
                record_ns(&mut lat.response, response);
                record_ns(&mut lat.service, done.saturating_sub(sent));
                response_ns = Some(response);
            }
        }
        if class == Class::Read && o.outcome == Outcome::Ok {
            self.events_returned
                .saturating_record(u64::from(o.events_received));
        }
        match &o.outcome {
            Outcome::Rejected { message, .. } | Outcome::Closed { message, .. } => {
                self.messages
                    .note(o.outcome.label().into_owned(), message, o.index);
            }
            Outcome::Disconnected { code } => {
                let key = code.map_or_else(|| "none".to_owned(), |c| c.to_string());
                *self.close_codes.entry(key).or_default() += 1;
            }
            _ => {}
        }
        self.timeline.note(o, response_ns);
        self.against.note(o);
    }

    /// Adds a tally of other rows of the same file (another decoder's share): its samples
    /// join this file's series, in time order.
    pub fn merge_rows(&mut self, mut other: Tally) {
        let samples: Vec<Sample> = std::mem::take(&mut other.samples)
            .into_iter()
            .flatten()
            .collect();
        for rows in std::mem::take(&mut other.scraped) {
            self.scraped_mut().add(rows);
        }
        self.merge(other);
        match self.samples.last_mut() {
            Some(series) => {
                series.extend(samples);
                series.sort_by_key(|s| s.at_ns);
            }
            None => self.samples.push(samples),
        }
    }

    /// Adds another tally of the same trace (another file, or another worker's share).
    pub fn merge(&mut self, other: Tally) {
        self.files += other.files;
        self.runs += other.runs;
        self.shards = self.shards.max(other.shards);
        self.outcomes += other.outcomes;
        for (k, v) in other.by_outcome {
            *self.by_outcome.entry(k).or_default() += v;
        }
        for (mine, theirs) in self.classes.iter_mut().zip(&other.classes) {
            mine.records += theirs.records;
            mine.attempted += theirs.attempted;
            mine.succeeded += theirs.succeeded;
            mine.latency.add(&theirs.latency);
        }
        let _ = self.events_returned.add(&other.events_returned);
        self.messages.add(&other.messages);
        for (k, v) in other.close_codes {
            *self.close_codes.entry(k).or_default() += v;
        }
        for (k, v) in &other.notices {
            bump_bounded(&mut self.notices, k, *v);
        }
        self.connects.add(&other.connects);
        self.timeline.merge(other.timeline);
        self.samples.extend(other.samples);
        self.scraped.extend(other.scraped);
        self.trailers.extend(other.trailers);
        self.bytes_sent += other.bytes_sent;
        self.held.add(&other.held);
        self.against.add(&other.against);
        self.deliveries.add(&other.deliveries);
    }
}

impl Default for Tally {
    fn default() -> Self {
        Tally::new()
    }
}
