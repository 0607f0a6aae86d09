//! The trace file: what to send, when, on which connection, and what completes it.
//! The format is described for users in `docs/capture-format.md`.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::container::{FileKind, PREFIX_LEN};
use super::error::{Error, ErrorKind, Position, Result};
use super::stream::{Reader, Writer};

/// Trace format version this lt writes and the newest it reads. Version 2 added recorded
/// and imported traces (the header's `source`, the records' `recorded` answers, and the
/// `COUNT`, `AUTH` and other frames); version 1 traces are read as synthesized ones.
pub const VERSION: u16 = 2;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "HeaderOnDisk")]
pub struct Header {
    pub format_version: u16,
    pub lt_version: String,
    /// Which program and model made the trace.
    pub generator: String,
    /// Where the event shapes come from.
    pub schema_source: String,
    /// Where the trace came from, with everything that shaped it.
    pub source: Source,
}

/// The header as either version stores it: version 1 kept synth's options in `options`.
#[derive(Deserialize)]
struct HeaderOnDisk {
    format_version: u16,
    lt_version: String,
    generator: String,
    schema_source: String,
    #[serde(default)]
    source: Option<Source>,
    #[serde(default)]
    options: Option<SynthOptions>,
}

impl TryFrom<HeaderOnDisk> for Header {
    type Error = &'static str;

    fn try_from(h: HeaderOnDisk) -> std::result::Result<Self, Self::Error> {
        let source = match (h.source, h.options) {
            (Some(source), _) => source,
            (None, Some(options)) => Source::Synth(options),
            (None, None) => return Err(
                "the header says neither where the trace came from (source) nor synth's options",
            ),
        };
        Ok(Header {
            format_version: h.format_version,
            lt_version: h.lt_version,
            generator: h.generator,
            schema_source: h.schema_source,
            source,
        })
    }
}

impl Header {
    /// Connections the trace declares, idle ones included; `None` for a recording, whose
    /// connections are the clients that sent something (counted from its records).
    pub fn declared_clients(&self) -> Option<u32> {
        match &self.source {
            Source::Synth(o) => Some(o.clients),
            Source::Imported(i) => Some(i.clients),
            Source::Recorded(_) => None,
        }
    }

    /// Synth's options, for a synthesized trace.
    pub fn synth_options(&self) -> Option<&SynthOptions> {
        match &self.source {
            Source::Synth(o) => Some(o),
            _ => None,
        }
    }
}

/// Where a trace came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// `lt synth`: the traffic model and its options.
    Synth(SynthOptions),
    /// `lt record`: real clients through the proxy.
    Recorded(Recording),
    /// `lt import`: an event dump.
    Imported(Import),
}

impl Source {
    pub fn label(&self) -> &'static str {
        match self {
            Source::Synth(_) => "synthesized",
            Source::Recorded(_) => "recorded",
            Source::Imported(_) => "imported",
        }
    }
}

/// How `lt record` made a trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recording {
    /// `host:port` of the relay the clients were recorded against: never a path, query or
    /// userinfo.
    pub upstream: String,
    /// Wall-clock time of offset 0, RFC 3339 UTC with microseconds.
    pub started_at: String,
}

/// How `lt import` made a trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Import {
    /// The input's file name (no directories), or `-` for standard input.
    pub input: String,
    pub timing: ImportTiming,
    /// Connections the events are spread over (one author stays on one).
    pub clients: u32,
    /// Whether ids and signatures were checked (lines that failed are not in the trace).
    pub verified: bool,
}

/// How `lt import` timed the events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportTiming {
    /// The events' own `created_at` spacing, in input order, gaps capped at `max_gap_us`;
    /// events of the same second spread evenly over it.
    CreatedAt { max_gap_us: u64 },
    /// Seeded Poisson arrivals at `rate_eps` events per second.
    Rate { rate_eps: f64, seed: u64 },
}

/// How `lt synth` made a trace: every option that shaped it, seed, epoch and client count
/// included. The traffic model (`workload::Options`) gives them their defaults and checks;
/// here they are what the header stores (named fields, so the header reads back as it
/// grows).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthOptions {
    pub seed: u64,
    /// Connections the trace is spread over.
    pub clients: u32,
    /// Length of the arrival process in seconds.
    pub duration_s: f64,
    /// Mean EVENT frames per second over the trace (Poisson arrivals).
    pub rate_eps: f64,
    /// Share of publish actions that are view events; the rest are video bundles (`MIX`).
    pub view_share: f64,
    /// Share of arrivals that are reads (REQ … CLOSE) rather than publish actions.
    pub read_share: f64,
    /// Share of video bundles that edit an existing video instead of publishing a new one.
    pub edit_share: f64,
    /// Share of new hosted videos that also get a NIP-71 (34235/34236) mirror.
    pub nip71_share: f64,
    /// Distinct creator keys publishing videos.
    pub creators: u32,
    /// `created_at` of the trace start, unix seconds.
    pub epoch: u64,
    /// Share of clients that hold live subscriptions (a feed and the watched video's views).
    /// Absent from headers when 0, so traces without live subscribers keep their bytes.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub live_share: f64,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

/// One thing to send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Intended send time, microseconds from the start of the trace (at 1x).
    pub offset_us: u64,
    /// Connection index, `0..clients`.
    pub client: u32,
    pub op: Op,
    /// The exact wire frame.
    pub frame: String,
    /// The relay reply that completes this record.
    pub completes: Completion,
    /// Index of an earlier record this one follows in a client's sequence (a NIP-94 mirror
    /// after its post, a NIP-71 mirror after the NIP-94 one, a CLOSE after its REQ). The
    /// planner puts it a fixed delay after that record's planned time; a replayer sends it
    /// no earlier than `offset_us` and no earlier than the completion of record `after`.
    pub after: Option<u64>,
    /// For a recorded trace, what the recorded relay answered (absent in synthesized and
    /// imported traces, and in version 1).
    #[serde(default)]
    pub recorded: Option<Answer>,
}

/// What the recorded relay answered a record, as the proxy saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    /// From the client's frame to the answer, microseconds (0 when there was none).
    pub after_us: u64,
    pub reply: Reply,
}

/// The recorded relay's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    /// `["OK",id,accepted,message]`; the message is kept up to [`MESSAGE_KEPT`] bytes.
    Ok { accepted: bool, message: String },
    /// `["EOSE",sub]` after this many stored events.
    Eose { events: u32 },
    /// `["CLOSED",sub,message]`, after this many events.
    Closed { events: u32, message: String },
    /// `["COUNT",sub,{"count":n}]`.
    Count { count: u64 },
    /// Nothing was expected (CLOSE, AUTH, other frames).
    NotExpected,
    /// Nothing came before the connection closed or the recording ended.
    None,
}

/// Longest relay message a recording keeps per record, in bytes: enough for the prefix and
/// the reason, and a bound on what one answer can add to a capture.
pub const MESSAGE_KEPT: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Op {
    Event {
        kind: u16,
        role: Role,
    },
    Req {
        query: Query,
    },
    Close,
    /// NIP-45 `["COUNT",sub,filter…]`, completed by the relay's COUNT (or CLOSED).
    Count,
    /// NIP-42 `["AUTH",event]`: recorded, never replayed (it answers a challenge only the
    /// recorded relay issued).
    Auth,
    /// Any other frame a recorded client sent (unknown types, text that is not JSON):
    /// replayed as it was, complete once written.
    Other,
}

/// What an event is in the platform's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Role {
    /// Kind 30079 view event.
    View,
    /// Kind 30078 video post, first publish.
    VideoPost,
    /// Kind 30078 re-published with the same `d` and a larger `created_at`.
    VideoEdit,
    /// Kind 30078 revert / soft-delete tombstone at the same `d`.
    Tombstone,
    /// Kind 1063 NIP-94 mirror of a post.
    Nip94Mirror,
    /// Kind 34235/34236 NIP-71 addressable mirror of a post.
    Nip71Mirror,
    /// Any other event (a recorded or imported kind the platform model does not name).
    Other,
}

/// Which playback-adjacent read a REQ is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Query {
    /// `{"kinds":[30078],"#t":["video"],"limit":150}`
    Feed,
    /// `{"kinds":[30079],"#t":["view"],"#a":[coord]}`
    ViewCount,
    /// `{"kinds":[30078],"authors":[pk],"#t":["video"],"limit":50}`
    Channel,
    /// Any other filter (recorded clients).
    Other,
    /// A live home feed: `{"kinds":[30078],"#t":["video"],"since":now}`, held open after
    /// EOSE until the client's session ends (then a CLOSE), receiving new posts.
    LiveFeed,
    /// A viewer's live view counter: `{"kinds":[30079],"#t":["view"],"#a":[coord],
    /// "since":now}`, held open while the video is watched, receiving its new views.
    LiveViews,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Completion {
    /// `["OK",id,…]` for this event id (lowercase hex).
    Ok { id: String },
    /// `["EOSE",sub]` (or `["CLOSED",sub,…]`) for this subscription.
    Eose { sub: String },
    /// Nothing answers it (CLOSE): complete once written.
    Sent,
    /// `["COUNT",sub,…]` (or `["CLOSED",sub,…]`) for this subscription.
    Count { sub: String },
    /// Not replayed (a NIP-42 AUTH): its outcome is `skipped` with this reason.
    Skip { reason: String },
}

impl Op {
    /// A short, stable label for reports and `inspect`.
    pub fn label(self) -> String {
        match self {
            Op::Event { kind, role } => format!("{} {kind}", role.label()),
            Op::Req { query } => format!("REQ {}", query.label()),
            Op::Close => "CLOSE".into(),
            Op::Count => "COUNT".into(),
            Op::Auth => "AUTH".into(),
            Op::Other => "other frame".into(),
        }
    }

    pub fn is_event(self) -> bool {
        matches!(self, Op::Event { .. })
    }
}

impl Role {
    /// What an event of `kind` is in the platform's terms, for events lt did not model
    /// (recorded or imported): `is_view` says it has a `["t","view"]` tag. A 30078 is taken
    /// as a post (telling an edit needs every earlier post).
    pub fn of(kind: u16, is_view: bool) -> Role {
        match kind {
            30079 if is_view => Role::View,
            30078 => Role::VideoPost,
            1063 => Role::Nip94Mirror,
            34235 | 34236 => Role::Nip71Mirror,
            _ => Role::Other,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Role::View => "view",
            Role::VideoPost => "video-post",
            Role::VideoEdit => "video-edit",
            Role::Tombstone => "tombstone",
            Role::Nip94Mirror => "nip94-mirror",
            Role::Nip71Mirror => "nip71-mirror",
            Role::Other => "event",
        }
    }
}

impl Query {
    /// Which read a recorded REQ's first filter is, by the shapes the platform's client
    /// sends (see the variants); anything else is [`Query::Other`].
    pub fn of(filter: &serde_json::Value) -> Query {
        let kinds = filter.get("kinds").and_then(|k| k.as_array());
        let only = |kind: u64| kinds.is_some_and(|k| k.len() == 1 && k[0] == kind);
        let has = |key: &str| filter.get(key).is_some();
        if only(30079) && has("#a") {
            Query::ViewCount
        } else if only(30078) && has("authors") {
            Query::Channel
        } else if only(30078) && has("#t") {
            Query::Feed
        } else {
            Query::Other
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Query::Feed => "feed",
            Query::ViewCount => "view-count",
            Query::Channel => "channel",
            Query::Other => "other",
            Query::LiveFeed => "live-feed",
            Query::LiveViews => "live-views",
        }
    }

    /// A subscription held open after its EOSE, whose later events are deliveries.
    pub fn is_live(self) -> bool {
        matches!(self, Query::LiveFeed | Query::LiveViews)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trailer {
    pub records: u64,
    pub events: u64,
    /// Sum of frame lengths in bytes.
    pub frame_bytes: u64,
    /// Offset of the last record.
    pub last_offset_us: u64,
    /// sha256 over the frames' bytes, concatenated in record order (lowercase hex).
    pub fingerprint: String,
}

/// Running totals both the writer and the reader keep, so the reader can check the trailer.
#[derive(Default)]
struct Tally {
    /// Not hashing: the fingerprint was verified on an earlier pass (see
    /// [`TraceReader::with_verified_fingerprint`]).
    known_fingerprint: Option<String>,
    hasher: Sha256,
    records: u64,
    events: u64,
    frame_bytes: u64,
    last_offset_us: u64,
}

impl Tally {
    fn add(&mut self, r: &Record) {
        if self.known_fingerprint.is_none() {
            self.hasher.update(r.frame.as_bytes());
        }
        self.records += 1;
        self.events += u64::from(r.op.is_event());
        self.frame_bytes += r.frame.len() as u64;
        self.last_offset_us = r.offset_us;
    }

    fn trailer(&self) -> Trailer {
        Trailer {
            records: self.records,
            events: self.events,
            frame_bytes: self.frame_bytes,
            last_offset_us: self.last_offset_us,
            fingerprint: match &self.known_fingerprint {
                Some(known) => known.clone(),
                None => hex::encode(self.hasher.clone().finalize()),
            },
        }
    }
}

pub struct TraceWriter<W: Write> {
    inner: Writer<W>,
    tally: Tally,
}

impl<W: Write> TraceWriter<W> {
    pub fn new(out: W, header: &Header) -> std::io::Result<Self> {
        Self::with_block_target(out, header, super::stream::BLOCK_TARGET_BYTES)
    }

    /// Writes what is gathered as a block and flushes the output: everything pushed so far
    /// survives the process being killed (a recording does this every second).
    pub fn flush_block(&mut self) -> std::io::Result<()> {
        self.inner.flush_block()
    }

    /// With a custom block size (tests use small blocks to get many of them).
    pub fn with_block_target(
        out: W,
        header: &Header,
        block_target: usize,
    ) -> std::io::Result<Self> {
        Ok(TraceWriter {
            inner: Writer::with_block_target(out, FileKind::Trace, VERSION, header, block_target)?,
            tally: Tally::default(),
        })
    }

    pub fn push(&mut self, record: &Record) -> std::io::Result<()> {
        self.tally.add(record);
        self.inner.push(record)
    }

    pub fn records(&self) -> u64 {
        self.tally.records
    }

    /// Writes the trailer; returns it with the total file size in bytes.
    pub fn finish(self) -> std::io::Result<(W, Trailer, u64)> {
        let trailer = self.tally.trailer();
        let (out, bytes) = self.inner.finish(&trailer)?;
        Ok((out, trailer, bytes))
    }
}

/// Streams a trace's records, checking the trailer (count and fingerprint) at the end.
pub struct TraceReader<R: Read> {
    inner: Reader<R>,
    header: Header,
    tally: Tally,
    trailer: Option<Trailer>,
    path: Option<PathBuf>,
}

impl TraceReader<BufReader<File>> {
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::from(e).with_path(path))?;
        let mut r = TraceReader::new(BufReader::with_capacity(1 << 20, file))
            .map_err(|e| e.with_path(path))?;
        r.path = Some(path.to_owned());
        Ok(r)
    }
}

impl<R: Read> TraceReader<R> {
    pub fn new(inp: R) -> Result<Self> {
        let (inner, header): (_, Header) = Reader::open(inp, FileKind::Trace, VERSION)?;
        if header.format_version != inner.version() {
            return Err(Error::at(
                ErrorKind::Corrupt {
                    what: format!(
                        "header says format version {}, file prefix says {}",
                        header.format_version,
                        inner.version()
                    ),
                },
                Position {
                    byte: PREFIX_LEN,
                    block: Some(0),
                    record: None,
                },
            ));
        }
        Ok(TraceReader {
            inner,
            header,
            tally: Tally::default(),
            trailer: None,
            path: None,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// For a second pass over a file whose fingerprint an earlier pass computed (replay
    /// reads the trace once to plan, then again to send): frames are not hashed again, and
    /// the trailer must carry `fingerprint`. Counts, CRCs and decoding are still checked.
    /// Hashing was the largest single cost of replay at `--speed max`.
    pub fn with_verified_fingerprint(mut self, fingerprint: &str) -> Self {
        self.tally.known_fingerprint = Some(fingerprint.to_owned());
        self
    }

    /// Records read so far; the index of the next one.
    pub fn records_read(&self) -> u64 {
        self.tally.records
    }

    /// The trailer, once every record has been read and checked.
    pub fn trailer(&self) -> Option<&Trailer> {
        self.trailer.as_ref()
    }

    fn located(&self, e: Error) -> Error {
        e.in_file(self.path.as_deref())
    }

    /// The next record; `None` after the last one, once the trailer has been verified.
    pub fn next_record(&mut self) -> Result<Option<Record>> {
        if self.trailer.is_some() {
            return Ok(None);
        }
        match self.inner.next_record::<Record>() {
            Ok(Some(r)) => {
                self.tally.add(&r);
                Ok(Some(r))
            }
            Ok(None) => {
                let pos = self.inner.position();
                let trailer: Trailer = self.inner.trailer().map_err(|e| self.located(e))?;
                let ours = self.tally.trailer();
                if trailer.records != ours.records {
                    return Err(self.located(Error::at(
                        ErrorKind::CountMismatch {
                            trailer: trailer.records,
                            counted: ours.records,
                        },
                        pos,
                    )));
                }
                if trailer.fingerprint != ours.fingerprint {
                    return Err(self.located(Error::at(
                        ErrorKind::FingerprintMismatch {
                            trailer: trailer.fingerprint,
                            computed: ours.fingerprint,
                        },
                        pos,
                    )));
                }
                if trailer != ours {
                    return Err(self.located(Error::at(
                        ErrorKind::Corrupt {
                            what: format!(
                                "trailer totals {trailer:?} do not match the records {ours:?}"
                            ),
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

impl<R: Read> Iterator for TraceReader<R> {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_record().transpose()
    }
}

/// Reads a whole trace from bytes, checking everything; the fuzz target's entry point.
pub fn read_all(bytes: &[u8]) -> Result<(Header, Vec<Record>, Trailer)> {
    let mut reader = TraceReader::new(bytes)?;
    let mut records = Vec::new();
    while let Some(r) = reader.next_record()? {
        records.push(r);
    }
    let trailer = reader.trailer().cloned().ok_or_else(|| {
        Error::new(
            ErrorKind::Corrupt {
                what: "no trailer".into(),
            },
            None,
        )
    })?;
    Ok((reader.header, records, trailer))
}
