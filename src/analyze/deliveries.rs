//! Live subscriptions (issue #16): what each kind received against what it should have, how
//! late, and how far each event fanned out. Read from the results' `Fanout` and
//! `Deliveries` rows (written by the replay's fan-out ledger); a leaf like `against`.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::stats::{percentiles_ms, round3, Percentiles};
use crate::capture::results::{
    Buckets, DeliveryCounts, DeliveryExample, DeliverySecond, FanoutRow,
};
use crate::capture::Query;

/// Examples the report keeps of each kind.
const EXAMPLES: usize = 10;

#[derive(Clone)]
struct Kind {
    counts: DeliveryCounts,
    latency: Histogram<u64>,
    from_sent: Histogram<u64>,
}

impl Default for Kind {
    fn default() -> Self {
        Kind {
            counts: DeliveryCounts::default(),
            latency: crate::histogram::latency(),
            from_sent: crate::histogram::latency(),
        }
    }
}

/// What the rows of one or more results files hold, merged.
#[derive(Clone)]
pub struct Deliveries {
    /// Files that had a `Fanout` row.
    pub runs: u64,
    grace_ns: u64,
    kinds: BTreeMap<Query, Kind>,
    fanout: Histogram<u64>,
    missed_examples: Vec<DeliveryExample>,
    unexpected_examples: Vec<DeliveryExample>,
    read_deliveries: u64,
    /// Per second of the run, summed over files: deliveries and their latency.
    seconds: BTreeMap<u32, (u64, Histogram<u64>)>,
}

impl Default for Deliveries {
    fn default() -> Self {
        Deliveries {
            runs: 0,
            grace_ns: 0,
            kinds: BTreeMap::new(),
            fanout: crate::histogram::counts(),
            missed_examples: Vec::new(),
            unexpected_examples: Vec::new(),
            read_deliveries: 0,
            seconds: BTreeMap::new(),
        }
    }
}

fn add_buckets(h: &mut Histogram<u64>, b: &Buckets) {
    for &(value, count) in b {
        h.saturating_record_n(value, count);
    }
}

impl Deliveries {
    pub fn fanout_row(&mut self, f: &FanoutRow) {
        let mut one = Deliveries {
            runs: 1,
            grace_ns: f.grace_ns,
            missed_examples: f.missed_examples.clone(),
            unexpected_examples: f.unexpected_examples.clone(),
            read_deliveries: f.read_deliveries,
            ..Deliveries::default()
        };
        for q in &f.by_query {
            let mut k = Kind {
                counts: q.counts,
                ..Kind::default()
            };
            add_buckets(&mut k.latency, &q.latency_us);
            add_buckets(&mut k.from_sent, &q.latency_from_sent_us);
            one.kinds.insert(q.query, k);
        }
        add_buckets(&mut one.fanout, &f.fanout);
        self.add(&one);
    }

    pub fn second(&mut self, d: &DeliverySecond) {
        let (n, h) = self
            .seconds
            .entry(d.second)
            .or_insert_with(|| (0, crate::histogram::latency()));
        *n += d.deliveries;
        add_buckets(h, &d.latency_us);
    }

    pub fn add(&mut self, other: &Deliveries) {
        self.runs += other.runs;
        self.grace_ns = self.grace_ns.max(other.grace_ns);
        for (q, o) in &other.kinds {
            let k = self.kinds.entry(*q).or_default();
            k.counts.add(&o.counts);
            let _ = k.latency.add(&o.latency);
            let _ = k.from_sent.add(&o.from_sent);
        }
        let _ = self.fanout.add(&other.fanout);
        for (into, from) in [
            (&mut self.missed_examples, &other.missed_examples),
            (&mut self.unexpected_examples, &other.unexpected_examples),
        ] {
            let room = EXAMPLES.saturating_sub(into.len());
            into.extend(from.iter().take(room).cloned());
        }
        self.read_deliveries += other.read_deliveries;
        for (s, (n, h)) in &other.seconds {
            let e = self
                .seconds
                .entry(*s)
                .or_insert_with(|| (0, crate::histogram::latency()));
            e.0 += n;
            let _ = e.1.add(h);
        }
    }
}

/// The report's section: present only when the trace had live subscriptions.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct LiveDeliveries {
    /// In a sentence: deliveries expected, received, missed and unexpected, and how late.
    pub headline: String,
    /// How long after an event's OK an expected delivery could come before it was missed.
    pub grace_ms: f64,
    pub by_subscription: Vec<SubscriptionDeliveries>,
    /// Every type together.
    pub total: DeliveryCounts,
    /// Delivery latency over every type (ms, from the intended send time).
    pub latency_ms: Option<Percentiles>,
    /// Missed deliveries, percent of those expected (every type).
    pub missed_pct: f64,
    /// Deliveries per event that reached at least one live subscription (or should have).
    pub fanout_per_event: Option<Percentiles>,
    /// Up to ten each, with the subscription, the event and why.
    pub missed_examples: Vec<Example>,
    pub unexpected_examples: Vec<Example>,
    /// Events pushed on read subscriptions between their EOSE and CLOSE: allowed, not
    /// checked.
    pub read_deliveries: u64,
    /// Deliveries received per second of the run (summed over runs) and their latency.
    pub per_second: Vec<DeliveryPoint>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SubscriptionDeliveries {
    /// `live-feed`, `live-views`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(flatten)]
    pub counts: DeliveryCounts,
    /// `missed / expected`, percent.
    pub missed_pct: f64,
    /// Receipt − the publishing record's intended send time (ms): free of coordinated
    /// omission, as response time is.
    pub latency_ms: Option<Percentiles>,
    /// Receipt − when the publishing record was sent (ms).
    pub latency_from_sent_ms: Option<Percentiles>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Example {
    pub subscription: String,
    pub connection: u32,
    pub event_id: String,
    /// The trace record that published it, if lt did.
    pub record: Option<u64>,
    pub why: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct DeliveryPoint {
    pub second: u32,
    pub deliveries: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

fn example(e: &DeliveryExample) -> Example {
    Example {
        subscription: e.sub.clone(),
        connection: e.conn,
        event_id: e.event_id.clone(),
        record: e.record,
        why: e.why.clone(),
    }
}

/// Missed deliveries, percent of those expected.
fn missed_pct(c: &DeliveryCounts) -> f64 {
    round3(100.0 * c.missed as f64 / c.expected.max(1) as f64)
}

/// The section, or `None` when no file had a `Fanout` row.
pub fn report(d: &Deliveries) -> Option<LiveDeliveries> {
    if d.runs == 0 {
        return None;
    }
    let by_subscription: Vec<SubscriptionDeliveries> = d
        .kinds
        .iter()
        .map(|(q, k)| SubscriptionDeliveries {
            kind: q.label().to_owned(),
            counts: k.counts,
            missed_pct: missed_pct(&k.counts),
            latency_ms: percentiles_ms(&k.latency),
            latency_from_sent_ms: percentiles_ms(&k.from_sent),
        })
        .collect();
    let mut total = DeliveryCounts::default();
    for k in d.kinds.values() {
        total.add(&k.counts);
    }
    let (expected, delivered, missed, unexpected) = (
        total.expected,
        total.delivered,
        total.missed,
        total.unexpected,
    );
    let mut all = crate::histogram::latency();
    for k in d.kinds.values() {
        let _ = all.add(&k.latency);
    }
    let latency_ms = percentiles_ms(&all);
    let mut headline = format!(
        "live subscriptions should have received {expected} deliveries and received {delivered}: {missed} missed, {unexpected} unexpected"
    );
    if let Some(p) = &latency_ms {
        headline.push_str(&format!(
            "; delivery latency p50 {} ms, p99 {} ms",
            p.p50, p.p99
        ));
    }
    Some(LiveDeliveries {
        headline,
        grace_ms: round3(d.grace_ns as f64 / 1e6),
        by_subscription,
        total,
        latency_ms,
        missed_pct: missed_pct(&total),
        fanout_per_event: super::stats::percentiles_scaled(&d.fanout, 1.0),
        missed_examples: d.missed_examples.iter().map(example).collect(),
        unexpected_examples: d.unexpected_examples.iter().map(example).collect(),
        read_deliveries: d.read_deliveries,
        per_second: d
            .seconds
            .iter()
            .map(|(s, (n, h))| DeliveryPoint {
                second: *s,
                deliveries: *n,
                p50_ms: round3(h.value_at_quantile(0.5) as f64 / 1e3),
                p99_ms: round3(h.value_at_quantile(0.99) as f64 / 1e3),
            })
            .collect(),
    })
}
