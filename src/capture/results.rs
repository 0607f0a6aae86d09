//! The results file `lt replay` writes: one outcome per trace record, samples every second,
//! connection attempts and NOTICEs, in the same block container as traces (kind `'R'`).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::container::FileKind;
use super::error::{Error, ErrorKind, Result};
use super::stream::{Reader, Writer};
use super::trace;
use crate::capture::Op;
use crate::nostr::Prefix;

/// Results format version this lt writes and the newest it reads. Version 2: the trace
/// header of trace format 2, and the `skipped` outcome. Version 3: scraped series (`series`
/// and `scrape` rows, the header's `scrapes`); a run without them is still written as
/// version 2, so an older lt reads it.
pub const VERSION: u16 = 3;

/// The version a results file with this header is written as (see [`VERSION`]).
pub fn version_for(scrapes: &[ScrapeSource]) -> u16 {
    if scrapes.is_empty() {
        2
    } else {
        VERSION
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub format_version: u16,
    pub lt_version: String,
    /// The trace replayed: its fingerprint (results of different traces never compare),
    /// record count and header.
    pub trace_fingerprint: String,
    pub trace_records: u64,
    pub trace_header: trace::Header,
    /// The replay options, as given.
    pub options: super::options::RunOptions,
    /// `host:port` of the relay: never userinfo, path or query.
    pub target: String,
    /// Wall-clock start, RFC 3339 UTC.
    pub started_at: String,
    pub machine: Machine,
    /// What the relay said about itself before the run (NIP-11) and what lt predicted from
    /// it; absent from results written before lt asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preflight: Option<Preflight>,
    /// One part of a sharded replay (`--shard I/N`); absent for a whole replay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<Part>,
    /// `--start-at`: the wall-clock instant (RFC 3339 UTC) the run's clock started at, the
    /// same for every shard of one run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at: Option<String>,
    /// What was scraped during the run (`--scrape`, this host's and the relay process's
    /// `/proc`), indexed by `source` in `series` and `scrape` rows; absent when nothing was.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scrapes: Vec<ScrapeSource>,
}

/// One source of scraped series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScrapeSource {
    /// Its index, as rows name it.
    pub source: u16,
    /// Where: `http://host:port/path` (never userinfo or query: a key may be in it), or
    /// `/proc` and `/proc/PID` for lt's own reading of this machine.
    pub location: String,
    /// What its series mean: `node-exporter`, `nostr-rs-relay`, `rnostr`, `process`,
    /// `other` (named with `--scrape PRESET=URL`, else detected from the first answer).
    pub preset: String,
    /// Seconds between scrapes.
    pub interval_s: f64,
}

/// What a scraped series' family is, as its `# TYPE` line says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeriesKind {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Untyped,
}

/// A scraped series, defined once, before the first `scrape` row that has its value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesRow {
    pub source: u16,
    /// Its number within the source.
    pub id: u32,
    pub name: String,
    /// Sorted by name; a histogram bucket's `le` among them.
    pub labels: Vec<(String, String)>,
    pub kind: SeriesKind,
}

/// One scrape of one source: the values of its series then, or why there are none (a gap).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScrapeRow {
    pub source: u16,
    /// When the scrape was asked for, ns from t0.
    pub at_ns: u64,
    /// How long the answer took.
    pub took_us: u64,
    /// `(series id, value)`; empty for a gap.
    pub values: Vec<(u32, f64)>,
    /// Why this scrape has no values: the endpoint failed, timed out, answered garbage, or
    /// the scrape before was still running.
    pub error: Option<String>,
}

/// A part of a sharded replay: trace connections `c` with `c mod count == index`, whole
/// (each connection's order and dependencies stay intact), and the records they carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    pub index: u32,
    pub count: u32,
    /// Trace records this part plays: its outcome rows.
    pub records: u64,
    /// Connections it opens.
    pub connections: u32,
}

/// The relay information document (NIP-11) fetched before the run, and the records each
/// limit it advertises would affect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preflight {
    /// Where it was asked for (http or https, the relay's host and path).
    pub url: String,
    /// The document as served (JSON text), when there was one.
    pub document: Option<String>,
    /// Why there is none, or what was wrong with it ("not advertised: …").
    pub note: Option<String>,
    /// Per advertised limit, the trace records it would affect.
    pub predictions: Vec<Prediction>,
}

/// What one advertised limit would do to the trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Prediction {
    /// The NIP-11 field (`max_message_length`, `auth_required`, …).
    pub limit: String,
    /// Its advertised value, as served.
    pub advertised: String,
    /// Trace records it would affect.
    pub records: u64,
    /// What happens to them, in words ("frames longer than 2000 bytes").
    pub what: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    pub cores: u32,
    pub kernel: String,
    pub cpu: String,
}

/// One row of a results file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Row {
    Outcome(OutcomeRow),
    Sample(Sample),
    Connect(ConnectRow),
    Notice(NoticeRow),
    /// Deliveries to live subscriptions received in one second (traces with live
    /// subscribers only).
    Deliveries(DeliverySecond),
    /// What live subscriptions received against what they should have: one row at the end
    /// of a run whose trace has live subscribers.
    Fanout(Box<FanoutRow>),
    /// One delivery, with `--delivery-rows` only.
    Delivery(DeliveryRow),
    /// A scraped series' definition (results format 3).
    Series(SeriesRow),
    /// One scrape of one source (results format 3).
    Scrape(ScrapeRow),
}

/// An EVENT received on a subscription after its EOSE (`--delivery-rows`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryRow {
    /// The trace record (REQ) that opened the live subscription; `None` for a read's.
    pub req: Option<u64>,
    /// Lowercase hex.
    pub event_id: String,
    pub at_ns: u64,
}

/// A latency histogram as the `(value, count)` pairs of its recorded buckets (each value
/// the highest of its bucket, µs): exact, mergeable, and small for one second's deliveries.
pub type Buckets = Vec<(u64, u64)>;

/// Deliveries received in second `second` of the run (from t0), and their latency from the
/// publishing record's intended send time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliverySecond {
    pub second: u32,
    pub deliveries: u64,
    pub latency_us: Buckets,
}

/// A run's live subscriptions: what they received and what they should have.
///
/// A delivery is an EVENT received on a live subscription after its EOSE. It is *expected*
/// when the event matches the subscription's filters, the relay accepted it (`OK true`),
/// lt sent it after the EOSE arrived and its OK came before lt sent the CLOSE: then the
/// relay had the subscription before the event and stored the event while it was open.
/// Where those windows overlap (sent before the EOSE, acknowledged after the CLOSE, no OK
/// at all) either answer is right: such deliveries are *uncertain*, never missed nor
/// unexpected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FanoutRow {
    /// How long after an event's OK an expected delivery may come before it is missed.
    pub grace_ns: u64,
    pub by_query: Vec<FanoutQuery>,
    /// Deliveries per published event that went to at least one live subscription.
    pub fanout: Buckets,
    pub missed_examples: Vec<DeliveryExample>,
    pub unexpected_examples: Vec<DeliveryExample>,
    /// Events pushed on subscriptions lt holds only until EOSE and CLOSE (reads): allowed
    /// by NIP-01, not checked.
    pub read_deliveries: u64,
}

/// The deliveries of one kind of live subscription.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FanoutQuery {
    pub query: crate::capture::Query,
    pub counts: DeliveryCounts,
    /// Receipt − the publishing record's intended send time, every delivery of lt's events.
    pub latency_us: Buckets,
    /// Receipt − when the publishing record was sent.
    pub latency_from_sent_us: Buckets,
}

/// What live subscriptions received against what they should have (see [`FanoutRow`]).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct DeliveryCounts {
    /// Live subscriptions that got their EOSE.
    pub subscriptions: u64,
    pub expected: u64,
    /// Expected and received (within the grace, or later: `late`).
    pub delivered: u64,
    /// Of `delivered`, after the grace.
    pub late: u64,
    /// Expected and never received.
    pub missed: u64,
    /// Received where either answer was right.
    pub uncertain: u64,
    /// Received though not expected: a filter it does not match, an event the relay
    /// rejected or had before the subscription, one lt never published, or a second time.
    pub unexpected: u64,
    /// Of `unexpected`, the same event a second time on the same subscription.
    pub duplicates: u64,
}

impl DeliveryCounts {
    pub fn add(&mut self, o: &DeliveryCounts) {
        self.subscriptions += o.subscriptions;
        self.expected += o.expected;
        self.delivered += o.delivered;
        self.late += o.late;
        self.missed += o.missed;
        self.uncertain += o.uncertain;
        self.unexpected += o.unexpected;
        self.duplicates += o.duplicates;
    }
}

/// One missed or unexpected delivery, for the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryExample {
    /// The subscription id and its connection.
    pub sub: String,
    pub conn: u32,
    /// The event (lowercase hex) and the trace record that published it, if lt did.
    pub event_id: String,
    pub record: Option<u64>,
    /// Why, in words.
    pub why: String,
}

/// What happened to one trace record. Times are nanoseconds from t0, the monotonic anchor
/// taken after the connect phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutcomeRow {
    /// Index of the record in the trace.
    pub index: u64,
    /// Connection the record went on.
    pub conn: u32,
    pub op: Op,
    /// When it was meant to go: `offset_us / speed`.
    pub intended_ns: u64,
    pub sent_ns: Option<u64>,
    pub completed_ns: Option<u64>,
    pub outcome: Outcome,
    /// Frame bytes sent.
    pub bytes: u32,
    /// For a REQ: events received before its EOSE.
    pub events_received: u32,
    /// The part of its schedule lag (sent − intended) during which the relay held lt back:
    /// its socket was full, or an in-flight cap was reached waiting for its answers. The
    /// rest of the lag is lt's own. 0 in results files written before lt recorded it.
    #[serde(default)]
    pub held_ns: u64,
    /// For a recorded trace, what the recorded relay answered this record (copied from
    /// the trace, so a report can set the replay against the recording).
    #[serde(default)]
    pub recorded: Option<Box<crate::capture::Answer>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Outcome {
    /// `OK true` (without `duplicate:`), `EOSE` for a REQ, a CLOSE written.
    Ok,
    /// `OK true "duplicate: …"`: the relay already had it.
    Duplicate,
    /// `OK false`, classified by its NIP-01 prefix.
    Rejected { prefix: Prefix, message: String },
    /// `CLOSED` in answer to a REQ.
    Closed { prefix: Prefix, message: String },
    /// No answer within the record timeout (and not reconciled).
    Timeout,
    /// The connection died with the record in flight, or was down when it was due.
    Disconnected { code: Option<u16> },
    /// At the in-flight cap with `--on-overload drop`.
    Dropped,
    /// Not sent: the run stopped early (`--duration`, Ctrl-C).
    NotSent,
    /// No OK, but the relay has the event (found by reconciliation).
    StoredUnacked,
    /// No OK, and the relay does not have the event.
    Lost,
    /// Not replayed by design (a recorded NIP-42 AUTH), with the reason.
    Skipped { reason: String },
}

impl Outcome {
    /// A stable name for counts and reports.
    pub fn label(&self) -> Cow<'static, str> {
        match self {
            Outcome::Ok => "ok".into(),
            Outcome::Duplicate => "duplicate".into(),
            Outcome::Rejected { prefix, .. } => format!("rejected {}", prefix.as_str()).into(),
            Outcome::Closed { prefix, .. } => format!("closed {}", prefix.as_str()).into(),
            Outcome::Timeout => "timeout".into(),
            Outcome::Disconnected { .. } => "disconnected".into(),
            Outcome::Dropped => "dropped".into(),
            Outcome::NotSent => "not_sent".into(),
            Outcome::StoredUnacked => "stored_unacked".into(),
            Outcome::Lost => "lost".into(),
            Outcome::Skipped { .. } => "skipped".into(),
        }
    }

    /// Adds one to this outcome's count, allocating only for a label not counted yet (the
    /// writer and `analyze` do this for every row).
    pub fn count_into(&self, counts: &mut BTreeMap<String, u64>) {
        let label = self.label();
        match counts.get_mut(label.as_ref()) {
            Some(n) => *n += 1,
            None => {
                counts.insert(label.into_owned(), 1);
            }
        }
    }

    /// The relay answered it (`OK`, `EOSE`, `CLOSED`), so it has a response time.
    /// Reconciled events were found, not answered: their latency is unknown.
    pub fn replied(&self) -> bool {
        matches!(
            self,
            Outcome::Ok | Outcome::Duplicate | Outcome::Rejected { .. } | Outcome::Closed { .. }
        )
    }

    /// The relay did what was asked and said so in time (OK for the event, EOSE for the
    /// query), as the platform's client sees it. `stored_unacked` is not a success: the
    /// relay has the event, but the client waited out its timeout and called it failed.
    pub fn succeeded(&self) -> bool {
        matches!(self, Outcome::Ok | Outcome::Duplicate)
    }

    /// lt sent it (or it was due on a dead connection): everything but `not_sent`,
    /// `dropped` and `skipped`.
    pub fn attempted(&self) -> bool {
        !matches!(
            self,
            Outcome::NotSent | Outcome::Dropped | Outcome::Skipped { .. }
        )
    }
}

/// Once a second.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub at_ns: u64,
    /// Relay process CPU over the last interval, percent of one core (`--relay-pid`).
    pub relay_cpu_pct: Option<f32>,
    pub relay_rss_bytes: Option<u64>,
    /// lt's own CPU, percent of one core, and RSS.
    pub harness_cpu_pct: f32,
    pub harness_rss_bytes: u64,
    /// Schedule lag (sent − intended) over the interval.
    pub lag_max_us: u64,
    pub connections_open: u32,
    pub in_flight: u32,
    /// Cumulative counts.
    pub sent: u64,
    pub completed: u64,
}

/// One connection attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectRow {
    pub conn: u32,
    /// When the attempt started, ns from t0 (negative phases are clamped to 0: the initial
    /// connect phase happens before t0 and is recorded with `at_ns` 0 and `initial` true).
    pub at_ns: u64,
    pub initial: bool,
    pub latency_ns: u64,
    /// The cause, when it failed.
    pub error: Option<String>,
    /// The phases of `latency_ns`: the TCP connect, the TLS handshake (`wss://` only), and
    /// the WebSocket upgrade (`None` for a phase not reached, and in files of older lt).
    #[serde(default)]
    pub tcp_ns: Option<u64>,
    #[serde(default)]
    pub tls_ns: Option<u64>,
    #[serde(default)]
    pub upgrade_ns: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoticeRow {
    pub conn: u32,
    pub at_ns: u64,
    pub text: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Trailer {
    pub rows: u64,
    /// Outcome rows: equals the trace's record count.
    pub outcomes: u64,
    pub by_outcome: BTreeMap<String, u64>,
    pub samples: u64,
    pub finished_at: String,
    pub elapsed_ns: u64,
    /// Stopped by Ctrl-C / SIGTERM.
    pub interrupted: bool,
    pub unparseable_frames: u64,
    pub oversized_frames: u64,
    pub notices: u64,
    /// OKs that came after their record's timeout (the record is already `timeout`, or
    /// `stored_unacked` / `lost` after reconciliation): answered late, not dropped. Absent
    /// from files written before it was kept (read as 0).
    #[serde(default)]
    pub late_acks: u64,
    /// How long the connect phase took (every connection opened or failed, before t0);
    /// absent from files of older lt.
    #[serde(default)]
    pub connect_phase_ns: Option<u64>,
    /// With `--start-at`: the wall clock at t0 minus the instant asked for (ns; how far
    /// this process's start was off, beside the machines' own clock sync).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_offset_ns: Option<i64>,
}

pub struct ResultsWriter<W: Write> {
    inner: Writer<W>,
    rows: u64,
    outcomes: u64,
    samples: u64,
    by_outcome: BTreeMap<String, u64>,
}

impl<W: Write> ResultsWriter<W> {
    pub fn new(out: W, header: &Header) -> std::io::Result<Self> {
        Ok(ResultsWriter {
            inner: Writer::new(out, FileKind::Results, version_for(&header.scrapes), header)?,
            rows: 0,
            outcomes: 0,
            samples: 0,
            by_outcome: BTreeMap::new(),
        })
    }

    pub fn push(&mut self, row: &Row) -> std::io::Result<()> {
        self.rows += 1;
        match row {
            Row::Outcome(o) => {
                self.outcomes += 1;
                o.outcome.count_into(&mut self.by_outcome);
            }
            Row::Sample(_) => self.samples += 1,
            _ => {}
        }
        self.inner.push(row)
    }

    /// Writes what is gathered as a block, so a crash loses at most what came after.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush_block()
    }

    pub fn outcomes(&self) -> u64 {
        self.outcomes
    }

    /// Rows pushed so far, of every kind.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    pub fn by_outcome(&self) -> &BTreeMap<String, u64> {
        &self.by_outcome
    }

    /// Fills in the row counts and writes the trailer.
    pub fn finish(self, mut trailer: Trailer) -> std::io::Result<(W, Trailer)> {
        trailer.rows = self.rows;
        trailer.outcomes = self.outcomes;
        trailer.samples = self.samples;
        trailer.by_outcome = self.by_outcome;
        let (out, _) = self.inner.finish(&trailer)?;
        Ok((out, trailer))
    }
}

/// Streams a results file's rows; checks the trailer's counts at the end.
pub struct ResultsReader<R: Read> {
    inner: Reader<R>,
    header: Header,
    rows: u64,
    outcomes: u64,
    trailer: Option<Trailer>,
    path: Option<PathBuf>,
}

impl ResultsReader<BufReader<File>> {
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::from(e).with_path(path))?;
        let mut r = ResultsReader::new(BufReader::with_capacity(1 << 20, file))
            .map_err(|e| e.with_path(path))?;
        r.path = Some(path.to_owned());
        Ok(r)
    }
}

impl<R: Read> ResultsReader<R> {
    pub fn new(inp: R) -> Result<Self> {
        let (inner, header) = Reader::open(inp, FileKind::Results, VERSION)?;
        Ok(ResultsReader {
            inner,
            header,
            rows: 0,
            outcomes: 0,
            trailer: None,
            path: None,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The header and the blocks after it, before any row has been read.
    pub fn into_blocks(self) -> (Header, super::container::BlockReader<R>) {
        (self.header, self.inner.into_blocks())
    }

    pub fn trailer(&self) -> Option<&Trailer> {
        self.trailer.as_ref()
    }

    fn located(&self, e: Error) -> Error {
        e.in_file(self.path.as_deref())
    }

    pub fn next_row(&mut self) -> Result<Option<Row>> {
        if self.trailer.is_some() {
            return Ok(None);
        }
        match self.inner.next_record::<Row>() {
            Ok(Some(row)) => {
                self.rows += 1;
                self.outcomes += u64::from(matches!(row, Row::Outcome(_)));
                Ok(Some(row))
            }
            Ok(None) => {
                let pos = self.inner.position();
                let trailer: Trailer = self.inner.trailer().map_err(|e| self.located(e))?;
                if trailer.rows != self.rows || trailer.outcomes != self.outcomes {
                    return Err(self.located(Error::at(
                        ErrorKind::CountMismatch {
                            trailer: trailer.rows,
                            counted: self.rows,
                        },
                        pos,
                    )));
                }
                self.trailer = Some(trailer);
                Ok(None)
            }
            Err(e) => Err(self.located(e)),
        }
    }
}
