//! `lt import`: an event dump (one event per line, as `lt export`, nak and strfry write it;
//! plain or zstd) into a trace.
//!
//! The pipeline: read (the caller's thread: decompression, lines) → parse and verify (the
//! rayon pool, order-preserving) → time and write (one thread). Bounded channels between the
//! stages, batches bounded in lines and bytes, and nothing kept per author or per event
//! (connections and roles are functions of the event; timing holds only the current
//! second's run, itself bounded), so memory is flat in the input's length; and because
//! batches stay in order and parsing is pure, the trace does not depend on the number of
//! threads.

mod assign;
mod error;
mod lines;
mod parse;
mod timing;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use rayon::prelude::*;

pub use assign::{client_of, role_of};
pub use error::Error;
pub use lines::{Line, Lines, MAX_LINE_BYTES, ZSTD_MAGIC};
pub use parse::{parse, Bad, Parsed, Reason};
pub use timing::{Arrivals, Spacing, RUN_BYTES_MAX, RUN_EVENTS_MAX};

use crate::capture::trace::{Import, ImportTiming, Source, VERSION};
use crate::capture::{Header, Op, Record, TraceWriter, Trailer};

/// Lines parsed per parallel batch: enough to keep every core busy between hand-offs (a
/// verification is ~40 µs, so a batch is ~40 ms of one core's work), few enough that the
/// stages overlap and memory stays a few MiB.
const BATCH_LINES: usize = 2048;
/// Bytes of line text per batch at most, so batches of large events stay small too.
const BATCH_BYTES: usize = 4 << 20;
/// Batches buffered between stages.
const DEPTH: usize = 4;
/// Line numbers the summary keeps per reason.
pub const FIRST_LINES_KEPT: usize = 5;
/// Up to this many connections, the summary counts those that got an event (a bit each).
const USED_COUNTED_UP_TO: u32 = 1 << 24;

/// What shapes an import (and is stored in the trace header), and how strict it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// The header's name for the input: the file name without directories, or `-`.
    pub input: String,
    pub timing: ImportTiming,
    /// Connections the events are spread over, one author per connection.
    pub clients: u32,
    /// Check every id and signature.
    pub verify: bool,
    /// A bad line stops the import instead of being counted and skipped.
    pub strict: bool,
}

impl Options {
    pub fn validate(&self) -> Result<(), String> {
        if self.clients == 0 {
            return Err("--clients must be at least 1".into());
        }
        match self.timing {
            ImportTiming::CreatedAt { max_gap_us: 0 } => Err("--max-gap must be positive".into()),
            ImportTiming::CreatedAt { .. } => Ok(()),
            ImportTiming::Rate { rate_eps, seed } => Arrivals::new(rate_eps, seed).map(|_| ()),
        }
    }
}

/// The header of a trace imported with `opts`: nothing in it depends on the clock or the
/// machine, so the same input and options give the same bytes.
pub fn header(opts: &Options) -> Header {
    Header {
        format_version: VERSION,
        lt_version: env!("CARGO_PKG_VERSION").to_owned(),
        generator: "lt import".to_owned(),
        schema_source: "the imported events, as they were".to_owned(),
        source: Source::Imported(Import {
            input: opts.input.clone(),
            timing: opts.timing.clone(),
            clients: opts.clients,
            verified: opts.verify,
        }),
    }
}

/// Lines left out for one reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BadLines {
    pub count: u64,
    /// The first [`FIRST_LINES_KEPT`] line numbers, 1-based.
    pub first: Vec<u64>,
}

#[derive(Debug, Clone)]
pub struct Summary {
    pub trailer: Trailer,
    /// Size of the trace in bytes.
    pub bytes: u64,
    /// Lines read, blank and bad ones included.
    pub lines: u64,
    pub blank: u64,
    pub bad: BTreeMap<Reason, BadLines>,
    /// Events by kind and role.
    pub by_op: BTreeMap<Op, u64>,
    /// Connections that got at least one event (not counted above 2^24 connections).
    pub clients_used: Option<u32>,
    /// The input was zstd.
    pub compressed: bool,
    pub elapsed: Duration,
}

impl Summary {
    pub fn bad_lines(&self) -> u64 {
        self.bad.values().map(|b| b.count).sum()
    }
}

/// One parsed batch: each line's number and outcome, in input order.
type Outcomes = Vec<(u64, Result<Parsed, Bad>)>;

/// Imports the events `input` holds into a trace written to `out`. `label` is how errors
/// name the input (its path as given, or "standard input"). On an error nothing written to
/// `out` is usable: the caller discards it.
pub fn import<R: Read, W: Write + Send>(
    input: R,
    label: &str,
    out: W,
    opts: &Options,
    progress: &ProgressBar,
) -> Result<(W, Summary), Error> {
    let started = Instant::now();
    opts.validate().map_err(Error::Options)?;
    let mut lines = Lines::new(input, label)?;
    let writer = TraceWriter::new(out, &header(opts)).map_err(Error::Write)?;
    let (line_tx, line_rx) = sync_channel::<Vec<Line>>(DEPTH);
    let (parsed_tx, parsed_rx) = sync_channel::<Outcomes>(DEPTH);
    let (clients, verify) = (opts.clients, opts.verify);

    thread::scope(|s| {
        let write = thread::Builder::new()
            .name("lt-import-write".into())
            .spawn_scoped(s, move || {
                write_stage(writer, parsed_rx, opts, label, progress)
            })
            .map_err(|_| Error::Thread("could not start the writer thread"))?;
        let parse = thread::Builder::new()
            .name("lt-import-parse".into())
            .spawn_scoped(s, move || {
                for batch in line_rx {
                    let outcomes: Outcomes = batch
                        .into_par_iter()
                        .map(|line| (line.number, parse_line(&line, clients, verify)))
                        .collect();
                    // A closed channel means the writer stopped; its error is reported.
                    if parsed_tx.send(outcomes).is_err() {
                        break;
                    }
                }
            });
        let read = match parse {
            Ok(_) => read_stage(&mut lines, line_tx),
            Err(_) => Err(Error::Thread("could not start the parsing thread")),
        };
        let written = write
            .join()
            .map_err(|_| Error::Thread("the writer thread panicked"))?;
        // The writer's error concerns an earlier line than the reader's (it has taken every
        // line before the reader stopped), or the output: it goes first.
        let (out, trailer, bytes, tally) = written?;
        read?;
        Ok((
            out,
            Summary {
                trailer,
                bytes,
                lines: lines.lines(),
                blank: lines.blank(),
                bad: tally.bad,
                by_op: tally.by_op,
                clients_used: tally.used.map(|u| u.iter().map(|w| w.count_ones()).sum()),
                compressed: lines.is_compressed(),
                elapsed: started.elapsed(),
            },
        ))
    })
}

fn parse_line(line: &Line, clients: u32, verify: bool) -> Result<Parsed, Bad> {
    if line.too_long {
        return Err(Bad {
            reason: Reason::TooLong,
            detail: format!("longer than {MAX_LINE_BYTES} bytes"),
        });
    }
    parse(&line.text, clients, verify)
}

/// Reads batches of lines until the input ends, an error, or a later stage stops.
fn read_stage<R: Read>(lines: &mut Lines<R>, batches: SyncSender<Vec<Line>>) -> Result<(), Error> {
    loop {
        let mut batch = Vec::with_capacity(BATCH_LINES);
        let mut bytes = 0;
        let mut ended = false;
        while batch.len() < BATCH_LINES && bytes < BATCH_BYTES {
            match lines.next_line()? {
                Some(line) => {
                    bytes += line.text.len();
                    batch.push(line);
                }
                None => {
                    ended = true;
                    break;
                }
            }
        }
        if !batch.is_empty() && batches.send(batch).is_err() {
            return Ok(());
        }
        if ended {
            return Ok(());
        }
    }
}

/// What the writer counts besides the trailer.
struct Tally {
    bad: BTreeMap<Reason, BadLines>,
    by_op: BTreeMap<Op, u64>,
    /// One bit per connection, when there are not too many to count.
    used: Option<Vec<u64>>,
}

impl Tally {
    fn new(clients: u32) -> Tally {
        Tally {
            bad: BTreeMap::new(),
            by_op: BTreeMap::new(),
            used: (clients <= USED_COUNTED_UP_TO).then(|| vec![0; clients.div_ceil(64) as usize]),
        }
    }

    fn event(&mut self, r: &Record) {
        *self.by_op.entry(r.op).or_default() += 1;
        if let Some(word) = self
            .used
            .as_mut()
            .and_then(|u| u.get_mut((r.client / 64) as usize))
        {
            *word |= 1 << (r.client % 64);
        }
    }

    fn bad(&mut self, line: u64, reason: Reason) {
        let b = self.bad.entry(reason).or_default();
        b.count += 1;
        if b.first.len() < FIRST_LINES_KEPT {
            b.first.push(line);
        }
    }
}

enum Timing {
    CreatedAt(Spacing<Record>),
    /// Boxed: the generator's state is several times the size of the other variant.
    Rate(Box<Arrivals>),
}

type Written<W> = (W, Trailer, u64, Tally);

fn write_stage<W: Write>(
    mut writer: TraceWriter<W>,
    batches: Receiver<Outcomes>,
    opts: &Options,
    label: &str,
    progress: &ProgressBar,
) -> Result<Written<W>, Error> {
    let mut tally = Tally::new(opts.clients);
    let mut timing = match opts.timing {
        ImportTiming::CreatedAt { max_gap_us } => Timing::CreatedAt(Spacing::new(max_gap_us)),
        ImportTiming::Rate { rate_eps, seed } => Timing::Rate(Box::new(
            Arrivals::new(rate_eps, seed).map_err(Error::Options)?,
        )),
    };
    {
        let mut emit = |offset_us: u64, mut r: Record| {
            r.offset_us = offset_us;
            writer.push(&r)
        };
        for batch in batches {
            let n = batch.len() as u64;
            for (line, outcome) in batch {
                match outcome {
                    Ok(p) => {
                        tally.event(&p.record);
                        match &mut timing {
                            Timing::CreatedAt(spacing) => spacing.push(
                                p.created_at,
                                p.record.frame.len(),
                                p.record,
                                &mut emit,
                            ),
                            Timing::Rate(arrivals) => emit(arrivals.next_offset_us(), p.record),
                        }
                        .map_err(Error::Write)?;
                    }
                    Err(bad) if opts.strict => {
                        return Err(Error::BadLine {
                            input: label.to_owned(),
                            line,
                            reason: bad.reason,
                            detail: bad.detail,
                        });
                    }
                    Err(bad) => tally.bad(line, bad.reason),
                }
            }
            progress.inc(n);
        }
        if let Timing::CreatedAt(spacing) = &mut timing {
            spacing.finish(&mut emit).map_err(Error::Write)?;
        }
    }
    let (out, trailer, bytes) = writer.finish().map_err(Error::Write)?;
    Ok((out, trailer, bytes, tally))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::trace::read_all;
    use crate::nostr::{keys, Unsigned};

    fn event_line(seed: u8, created_at: u64, kind: u16) -> String {
        let kp = keys::keypair_from_material([seed; 32]);
        Unsigned {
            pubkey: keys::pubkey(&kp),
            created_at,
            kind,
            tags: vec![],
            content: format!("event {seed}"),
        }
        .sign(&kp, &[seed; 32])
        .to_json()
    }

    fn opts(timing: ImportTiming) -> Options {
        Options {
            input: "-".into(),
            timing,
            clients: 4,
            verify: true,
            strict: false,
        }
    }

    fn run(input: &str, o: &Options) -> Result<(Vec<u8>, Summary), Error> {
        import(
            input.as_bytes(),
            "test",
            Vec::new(),
            o,
            &ProgressBar::hidden(),
        )
    }

    #[test]
    fn imports_in_order_with_offsets_and_counts_bad_lines() {
        let input = [
            event_line(1, 100, 1),
            String::new(),
            "not json".into(),
            event_line(2, 100, 30078),
            format!("[\"EVENT\",{}]", event_line(3, 102, 1063)),
            "{}".into(),
        ]
        .join("\n");
        let o = opts(ImportTiming::CreatedAt {
            max_gap_us: 5_000_000,
        });
        let (bytes, summary) = run(&input, &o).unwrap();
        let (header, records, trailer) = read_all(&bytes).unwrap();
        assert_eq!(header, super::header(&o));
        assert_eq!(records.len(), 3);
        assert_eq!(
            records.iter().map(|r| r.offset_us).collect::<Vec<_>>(),
            [0, 500_000, 2_000_000]
        );
        assert_eq!(trailer.events, 3);
        assert_eq!(
            (summary.lines, summary.blank, summary.bad_lines()),
            (6, 1, 2)
        );
        assert_eq!(summary.bad[&Reason::NotJson].first, [3]);
        assert_eq!(summary.bad[&Reason::NotEvent].first, [6]);

        let strict = Options { strict: true, ..o };
        let err = run(&input, &strict).unwrap_err().to_string();
        assert!(err.starts_with("test:3: not JSON"), "{err}");
    }

    #[test]
    fn lines_across_batches_keep_their_order_and_numbers() {
        // More lines than two batches, bad ones in between, through the real pipeline.
        let lines: Vec<String> = (0..BATCH_LINES * 2 + 7)
            .map(|i| {
                if i % 97 == 0 {
                    "garbage".to_owned()
                } else {
                    event_line((i % 200) as u8, 1000 + (i / 30) as u64, 1)
                }
            })
            .collect();
        let input = lines.join("\n");
        let o = opts(ImportTiming::Rate {
            rate_eps: 1000.0,
            seed: 5,
        });
        let (a, summary) = run(&input, &o).unwrap();
        let (_, records, _) = read_all(&a).unwrap();
        let frames: Vec<String> = records.into_iter().map(|r| r.frame).collect();
        let want: Vec<String> = lines
            .iter()
            .filter(|l| *l != "garbage")
            .map(|l| format!("[\"EVENT\",{l}]"))
            .collect();
        assert_eq!(frames, want);
        assert_eq!(
            summary.bad[&Reason::NotJson].count,
            lines.len().div_ceil(97) as u64
        );
        assert_eq!(summary.bad[&Reason::NotJson].first, [1, 98, 195, 292, 389]);
        let (b, _) = run(&input, &o).unwrap();
        assert_eq!(a, b, "the same input and options, the same bytes");
    }

    #[test]
    fn an_empty_input_is_an_empty_trace() {
        let (bytes, summary) = run("", &opts(ImportTiming::CreatedAt { max_gap_us: 1 })).unwrap();
        let (_, records, _) = read_all(&bytes).unwrap();
        assert!(records.is_empty());
        assert_eq!(summary.lines, 0);
    }
}
