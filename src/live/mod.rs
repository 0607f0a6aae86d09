//! lt's own live metrics (`--metrics-listen ADDR`): a run's progress in the Prometheus
//! exposition format, so a long or sharded run can be watched in Grafana while it runs.
//!
//! The figures are the replay's own, counted where the replay counts them (`replay::shared`),
//! for the command's whole life: `lt ab` and `lt capacity` add every run's records to the
//! same counters, and `lt_runs_started_total` says how many runs that was. Latencies are
//! histograms with fixed buckets, never quantiles: a quantile of several shards or several
//! intervals cannot be computed from theirs, a histogram can (`histogram_quantile` over the
//! sum of their `rate`s). The run's report stays the one place of exact figures: these are
//! what a dashboard shows while it runs (a record that timed out counts as `timeout` here,
//! even when reconciliation later finds the relay stored it).

mod serve;

use std::borrow::Cow;

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

pub use serve::Server;

use crate::capture::results::Outcome;

/// Response-time buckets, seconds: sub-millisecond loopback answers to the longest
/// timeouts people give.
const RESPONSE_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0,
];

/// Schedule-lag buckets, seconds: on time is under a millisecond; seconds mean lt (or its
/// machine) could not keep the schedule.
const LAG_BUCKETS: &[f64] = &[
    0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
];

/// The metrics of one lt process; shared by the replay's threads and the HTTP server.
pub struct LiveMetrics {
    registry: Registry,
    runs: IntCounter,
    records: IntGauge,
    sent: IntCounter,
    done: IntCounterVec,
    in_flight: IntGauge,
    connections_open: IntGauge,
    connections_opened: IntCounter,
    lag: Histogram,
    response: Histogram,
}

impl LiveMetrics {
    pub fn new() -> anyhow::Result<LiveMetrics> {
        let registry = Registry::new();
        let m = LiveMetrics {
            runs: IntCounter::new(
                "lt_runs_started_total",
                "Replays started by this lt process (one per lt ab run and per lt capacity step).",
            )?,
            records: IntGauge::new(
                "lt_run_records",
                "Trace records the current replay plays (this part's, in a sharded run).",
            )?,
            sent: IntCounter::new(
                "lt_records_sent_total",
                "Trace records written to the relay.",
            )?,
            done: IntCounterVec::new(
                Opts::new(
                    "lt_records_done_total",
                    "Trace records finished, by outcome (ok, duplicate, rejected, closed, timeout, disconnected, dropped, not_sent, skipped) and, for rejected and closed, the relay's NIP-01 prefix.",
                ),
                &["outcome", "reason"],
            )?,
            in_flight: IntGauge::new(
                "lt_in_flight_records",
                "Records sent and not yet answered.",
            )?,
            connections_open: IntGauge::new(
                "lt_connections_open",
                "WebSocket connections to the relay open now.",
            )?,
            connections_opened: IntCounter::new(
                "lt_connections_opened_total",
                "WebSocket connections to the relay opened (initial and reconnects).",
            )?,
            lag: Histogram::with_opts(
                HistogramOpts::new(
                    "lt_schedule_lag_seconds",
                    "How late each record was written after its intended send time (lt's own delay, not the relay's).",
                )
                .buckets(LAG_BUCKETS.to_vec()),
            )?,
            response: Histogram::with_opts(
                HistogramOpts::new(
                    "lt_response_time_seconds",
                    "From each record's intended send time to its answer (no coordinated omission).",
                )
                .buckets(RESPONSE_BUCKETS.to_vec()),
            )?,
            registry,
        };
        m.registry.register(Box::new(m.runs.clone()))?;
        m.registry.register(Box::new(m.records.clone()))?;
        m.registry.register(Box::new(m.sent.clone()))?;
        m.registry.register(Box::new(m.done.clone()))?;
        m.registry.register(Box::new(m.in_flight.clone()))?;
        m.registry.register(Box::new(m.connections_open.clone()))?;
        m.registry
            .register(Box::new(m.connections_opened.clone()))?;
        m.registry.register(Box::new(m.lag.clone()))?;
        m.registry.register(Box::new(m.response.clone()))?;
        Ok(m)
    }

    /// A replay of `records` records starts.
    pub fn run_started(&self, records: u64) {
        self.runs.inc();
        self.records.set(i64::try_from(records).unwrap_or(i64::MAX));
    }

    /// A record written `lag_ns` after it was due.
    pub fn sent(&self, lag_ns: u64) {
        self.sent.inc();
        self.lag.observe(lag_ns as f64 / 1e9);
    }

    pub fn slot_taken(&self) {
        self.in_flight.inc();
    }

    pub fn slots_freed(&self, n: usize) {
        self.in_flight.sub(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub fn conn_opened(&self) {
        self.connections_open.inc();
        self.connections_opened.inc();
    }

    pub fn conn_closed(&self) {
        self.connections_open.dec();
    }

    /// A count of finished records, added to the metrics when dropped: one label lookup per
    /// outcome a batch has, not per record.
    pub fn tally(&self) -> Tally<'_> {
        Tally {
            metrics: self,
            by_outcome: Vec::new(),
        }
    }

    /// The exposition, in the text format `promtool check metrics` and Prometheus read.
    pub fn encode(&self) -> anyhow::Result<String> {
        Ok(prometheus::TextEncoder::new().encode_to_string(&self.registry.gather())?)
    }
}

/// Finished records of one batch, by outcome (see [`LiveMetrics::tally`]).
pub struct Tally<'m> {
    metrics: &'m LiveMetrics,
    by_outcome: Vec<(Cow<'static, str>, u64)>,
}

impl Tally<'_> {
    /// A record finished with `outcome`, answered `response_ns` after its intended send
    /// time when it was answered.
    pub fn add(&mut self, outcome: &Outcome, response_ns: Option<u64>) {
        if let Some(ns) = response_ns {
            self.metrics.response.observe(ns as f64 / 1e9);
        }
        let label = outcome.label();
        match self.by_outcome.iter_mut().find(|(l, _)| *l == label) {
            Some((_, n)) => *n += 1,
            None => self.by_outcome.push((label, 1)),
        }
    }
}

impl Drop for Tally<'_> {
    fn drop(&mut self) {
        for (label, n) in self.by_outcome.drain(..) {
            // "rejected rate-limited:" → outcome "rejected", reason "rate-limited".
            let (outcome, reason) = label.split_once(' ').unwrap_or((&label, ""));
            self.metrics
                .done
                .with_label_values(&[outcome, reason.trim_end_matches(':')])
                .inc_by(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nostr::message::Prefix;

    #[test]
    fn outcomes_are_counted_by_class_and_reason_and_latencies_as_histograms() {
        let m = LiveMetrics::new().unwrap();
        m.run_started(5);
        for lag in [1_000_000, 3_000_000, 0] {
            m.sent(lag);
        }
        let rejected = Outcome::Rejected {
            prefix: Prefix::RateLimited,
            message: "slow down".into(),
        };
        let mut tally = m.tally();
        tally.add(&Outcome::Ok, Some(4_000_000));
        tally.add(&Outcome::Ok, Some(40_000_000));
        tally.add(&rejected, Some(1_000_000));
        tally.add(&Outcome::NotSent, None);
        drop(tally);
        let text = m.encode().unwrap();
        for line in [
            "lt_runs_started_total 1",
            "lt_run_records 5",
            "lt_records_sent_total 3",
            "lt_records_done_total{outcome=\"ok\",reason=\"\"} 2",
            "lt_records_done_total{outcome=\"rejected\",reason=\"rate-limited\"} 1",
            "lt_records_done_total{outcome=\"not_sent\",reason=\"\"} 1",
            "lt_response_time_seconds_bucket{le=\"0.005\"} 2",
            "lt_response_time_seconds_bucket{le=\"0.05\"} 3",
            "lt_response_time_seconds_count 3",
            "lt_schedule_lag_seconds_bucket{le=\"0.001\"} 2",
            "lt_schedule_lag_seconds_count 3",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
    }
}
