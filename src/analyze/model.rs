//! The measured half of a report: the types its JSON and Markdown are made of
//! (`docs/report.schema.json`), apart from the code that fills them (`measure.rs`), so a
//! renderer reads them without reaching the computation.
//!
//! Times are milliseconds, rounded to 3 decimals (microseconds) when the figures are built,
//! so the Markdown prints exactly the numbers the JSON holds.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::against::AgainstRecording;
use super::deliveries::LiveDeliveries;
pub use super::stats::Percentiles;

// Every measured section of a report, in the order the JSON has them (after `trust`). Not a
// doc comment: the report's schema flattens this struct, and would take it as its own.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Measured {
    /// The headline figures, in the order the Markdown summary shows them.
    pub summary: Vec<Headline>,
    pub config: Config,
    pub totals: Totals,
    pub latency: LatencyReport,
    pub throughput: Throughput,
    pub latency_over_time: LatencyOverTime,
    pub errors: Errors,
    pub connections: Connections,
    pub resources: Resources,
    pub hot_functions: HotFunctions,
    /// For a recorded trace: where this run answered differently from the recorded relay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub against_recording: Option<AgainstRecording>,
    /// For a trace with live subscriptions: what they received against what they should.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_deliveries: Option<LiveDeliveries>,
    /// What the relay's side said (`--scrape`, this machine's `/proc`); absent when nothing
    /// was scraped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scraped: Option<super::scraped::Scraped>,
}

/// A headline figure: `value` in `unit`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Headline {
    pub id: String,
    pub label: String,
    pub value: f64,
    pub unit: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Config {
    /// `host:port` of the relay only: never userinfo, path or query.
    pub target: String,
    pub trace_fingerprint: String,
    pub trace_records: u64,
    /// The trace's header: seed and every synth option.
    pub trace_header: serde_json::Value,
    /// Replay options as given.
    #[schemars(with = "BTreeMap<String, String>")]
    pub options: crate::capture::options::RunOptions,
    /// lt that ran the replay.
    pub lt_version: String,
    pub machine: MachineInfo,
    pub started_at: String,
    /// Longest run, seconds.
    pub duration_s: f64,
    /// Results files merged into this report (file names only).
    pub files: Vec<String>,
    /// Any run stopped by Ctrl-C or SIGTERM.
    pub interrupted: bool,
    /// When several files were merged: how they differ (load options, target) or that one
    /// was interrupted. Their sum is labelled with the first file's options.
    pub merge_warnings: Vec<String>,
    /// Files read with `lt analyze --partial` that end before their trailer: the report
    /// covers only their complete blocks and is not trustworthy. Absent when every file
    /// was complete.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partial: Vec<super::Partial>,
    /// What the relay said it is before the run (NIP-11), and the rejections lt predicted
    /// from its advertised limits (first run's); absent from results of older lt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<RelayInfo>,
    /// When the files are the shards of one sharded replay (`--shard I/N`): N. Their
    /// outcomes add up to the trace's records, and they count as one run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<u32>,
    /// Runs the files make (shards of one run count once), for per-run figures.
    #[serde(skip)]
    pub runs: u32,
    /// Shards not trustworthy on their own, and why (`measure.rs` judges each part alone):
    /// the run is then not trustworthy either.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub untrusted_shards: Vec<String>,
}

/// The relay's NIP-11 document, as the report shows it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RelayInfo {
    /// Where it was asked for.
    pub url: String,
    /// "nostr-rs-relay 0.8.12": the software's name and version as the relay gives them.
    pub build: Option<String>,
    pub name: Option<String>,
    pub software: Option<String>,
    pub version: Option<String>,
    /// The `limitation` object as served.
    pub limitation: Option<serde_json::Value>,
    /// Why there is no document ("not advertised: …").
    pub note: Option<String>,
    /// Per advertised limit the trace would hit, the records it would affect.
    pub predictions: Vec<crate::capture::results::Prediction>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct MachineInfo {
    pub cores: u32,
    pub kernel: String,
    pub cpu: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Totals {
    /// Requests sent to the relay: events and REQs, but not `not_sent` or `dropped` ones
    /// (CLOSE frames are written, never answered, and count in no total).
    pub attempted: u64,
    /// Requests answered in time as asked: `ok` and `duplicate`. Not `stored_unacked`: the
    /// relay has the event, but the client waited out its timeout.
    pub succeeded: u64,
    /// Attempted requests that did not succeed.
    pub failed: u64,
    /// Failed records by class: `rejected`, `closed`, `timeout`, `disconnected`, `lost`,
    /// `stored_unacked`.
    pub failed_by_class: BTreeMap<String, u64>,
    /// Records lt did not send: `--duration`, Ctrl-C (`not_sent`), or the in-flight cap with
    /// `--on-overload drop` (`dropped`).
    pub not_sent: u64,
    pub dropped: u64,
    /// succeeded / attempted, percent.
    pub success_rate_pct: f64,
    /// Every outcome label with its count (they add up to the trace's records × runs).
    pub by_outcome: BTreeMap<String, u64>,
    pub by_type: Vec<TypeTotals>,
    /// Frame bytes sent.
    pub bytes_sent: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TypeTotals {
    /// `view`, `video_post`, `mirror`, `read`, `close`.
    pub record_type: String,
    pub records: u64,
    pub succeeded: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct LatencySet {
    /// completed − intended: free of coordinated omission.
    pub response_ms: Option<Percentiles>,
    /// completed − sent: the relay's share.
    pub service_ms: Option<Percentiles>,
    /// sent − intended: lt's own delay in keeping the schedule.
    pub schedule_lag_ms: Option<Percentiles>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct LatencyReport {
    /// Every record type but CLOSE (which nothing answers).
    pub overall: LatencySet,
    /// Keyed by record type: `view`, `video_post`, `mirror`, `read`, `close`.
    pub by_type: BTreeMap<String, LatencySet>,
    /// Overall schedule lag with the time the relay held lt back taken out: lt's own part.
    /// The same as `overall.schedule_lag_ms` when the relay never held lt back.
    pub own_lag_ms: Option<Percentiles>,
    /// Records the relay held back for part of their schedule lag.
    pub relay_held: RelayHeld,
    /// REQ → EOSE (service time of reads) and the events returned before EOSE.
    pub reads: Reads,
    /// What the latency figures include.
    pub note: String,
}

/// When lt may not write what is due because of the relay: the relay has not read what lt
/// wrote (its socket is full: TCP backpressure), or has not answered enough records (an
/// in-flight cap is reached). The wait shows as schedule lag, but it is the relay setting
/// the pace, not lt falling behind; response times include it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RelayHeld {
    /// Records sent at their own time (as for overall schedule lag) that were held.
    pub records: u64,
    /// Their share of those records, percent.
    pub share_pct: f64,
    /// How long they were held.
    pub held_ms: Option<Percentiles>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Reads {
    pub req_to_eose_ms: Option<Percentiles>,
    pub events_returned: Option<Percentiles>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Throughput {
    /// Succeeded records per second over the run.
    pub ok_per_s: f64,
    /// Highest number of records scheduled in one second (summed over runs when merged).
    pub peak_scheduled_per_s: u64,
    /// Highest number of records succeeding in one second (summed over runs when merged).
    pub peak_ok_per_s: u64,
    /// Per second of the run's clock (summed over runs when several files are merged).
    pub per_second: Vec<SecondCounts>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SecondCounts {
    pub t_s: u64,
    pub scheduled: u64,
    pub sent: u64,
    pub ok: u64,
    pub rejected: u64,
    pub failed: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct LatencyOverTime {
    /// Window width in seconds.
    pub window_s: u64,
    pub windows: Vec<LatencyWindow>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct LatencyWindow {
    /// Start of the window, seconds from t0 (by intended send time).
    pub t_s: u64,
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Errors {
    /// `OK false` replies by NIP-01 prefix (`rate-limited`, `invalid`, …).
    pub rejected_by_prefix: BTreeMap<String, u64>,
    /// REQs answered by `CLOSED`, by prefix.
    pub closed_by_prefix: BTreeMap<String, u64>,
    /// `OK true "duplicate: …"`.
    pub duplicates: u64,
    pub timeouts: u64,
    pub disconnects: u64,
    /// Disconnected records by WebSocket close code (`none`: the socket just died).
    pub close_codes: BTreeMap<String, u64>,
    pub dropped: u64,
    pub not_sent: u64,
    /// Events with no OK that the relay stored (found by reconciliation).
    pub stored_unacked: u64,
    /// Events with no OK that the relay does not have.
    pub lost: u64,
    pub notices: u64,
    /// NOTICE texts with their counts, most frequent first.
    pub notice_texts: Vec<TextCount>,
    /// The most frequent reply messages, with example records.
    pub top_messages: Vec<MessageSummary>,
    /// Occurrences of messages beyond the distinct ones kept.
    pub other_messages: u64,
    pub unparseable_frames: u64,
    pub oversized_frames: u64,
    /// OKs that arrived after their record's timeout: answered late, not dropped.
    pub late_acks: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TextCount {
    pub text: String,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct MessageSummary {
    /// `rejected <prefix>` or `closed <prefix>`.
    pub outcome: String,
    pub message: String,
    pub count: u64,
    pub examples: Vec<Example>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Example {
    /// Index of the record in the trace.
    pub record: u64,
    /// The event id (or subscription id of a REQ), when the trace was at hand.
    pub id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Connections {
    pub initial: u64,
    pub initial_failed: u64,
    pub reconnects: u64,
    pub reconnects_failed: u64,
    pub connect_ms: Option<Percentiles>,
    /// Its phases: the TCP connect, the TLS handshake, and the WebSocket upgrade (absent
    /// when the results do not record them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_connect_ms: Option<Percentiles>,
    /// The TLS handshake (`wss://` targets only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_handshake_ms: Option<Percentiles>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade_ms: Option<Percentiles>,
    pub failure_causes: Vec<TextCount>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Dist {
    pub avg: f64,
    pub p95: f64,
    pub max: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RelayResources {
    /// Percent of one core.
    pub cpu_pct: Dist,
    pub rss_mb: Dist,
    /// Last sample minus first, MB (largest over runs).
    pub rss_growth_mb: f64,
    /// Least-squares trend of RSS, MB per minute (largest over runs).
    pub rss_slope_mb_per_min: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Resources {
    /// Samples taken (one per second per run).
    pub samples: u64,
    /// `None` unless replay sampled the relay (`--relay-pid`).
    pub relay: Option<RelayResources>,
    /// lt's CPU, percent of one core.
    pub harness_cpu_pct: Option<Dist>,
    pub harness_rss_mb: Option<Dist>,
    /// Worst schedule lag per second, ms.
    pub schedule_lag_max_ms: Option<Dist>,
    pub connections_open: Option<Dist>,
    pub in_flight: Option<Dist>,
    /// Per sample, every run (`run` counts from 0 in file order).
    pub series: Vec<ResourcePoint>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ResourcePoint {
    pub run: u32,
    pub t_s: f64,
    pub relay_cpu_pct: Option<f64>,
    pub relay_rss_mb: Option<f64>,
    pub harness_cpu_pct: f64,
    pub schedule_lag_max_ms: f64,
    pub connections_open: u32,
    pub in_flight: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct HotFunctions {
    pub measured: bool,
    /// "not measured" unless a real profiler run was attached (`--profile`); otherwise how.
    pub note: String,
    /// Share of the relay's samples, averaged over the profiled runs; most first.
    pub functions: Vec<crate::profile::HotFunction>,
    /// The relay's cryptographic functions (signatures, hashing) taken together, over the
    /// whole profile, not only the functions listed: percent of its samples, and those
    /// functions, most first. Absent without a profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crypto: Option<CryptoShare>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct CryptoShare {
    pub percent: f64,
    pub functions: Vec<crate::profile::HotFunction>,
}

/// Why a report has no relay CPU and memory: never a flag the user passed. With
/// `--relay-pid` given (the replay checked the process was there), the samples failed.
pub fn relay_not_sampled(r: &Measured) -> &'static str {
    if r.config.options.relay_pid_sampled == Some(true) {
        "relay CPU and memory could not be read although --relay-pid was given (the relay process ended, or its /proc entries were unreadable)"
    } else {
        "relay CPU and memory not sampled (replay with --relay-pid)"
    }
}
