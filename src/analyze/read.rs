//! Reading results files: one streaming pass per file into a [`Tally`], files of one trace
//! merged into [`Runs`]; a file cut short is an error, or with `--partial` read up to its
//! last complete block.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};

use anyhow::{anyhow, Context};

use super::tally::Tally;
use crate::capture::container::{Block, BlockReader, Tag};
use crate::capture::options::RunOptions;
use crate::capture::results::{self, Header, ResultsReader, Row};
use crate::capture::{Completion, Error, ErrorKind, Position, TraceReader};

/// One or more results files of the same trace, read and added up.
#[derive(Clone)]
pub struct Runs {
    /// The first file's header (the others share its trace fingerprint).
    pub header: Header,
    pub files: Vec<PathBuf>,
    pub tally: Tally,
    /// What makes the merged files unlike one another (another speed, another relay), said
    /// in the report: their sum is labelled with the first file's options.
    pub merge_warnings: Vec<String>,
    /// Files read with `--partial` that had no trailer: what each covers and why it ends.
    pub partial: Vec<Partial>,
    /// When the files are shards of sharded runs: each shard's file alone, as read (for
    /// its own trust verdict, `measure`); empty otherwise.
    pub parts: Vec<Runs>,
}

/// Whether a results file without its trailer (lt killed, disk full) is an error or is read
/// up to its last complete block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completeness {
    /// Every file must end with its trailer, and hold an outcome for every trace record.
    Required,
    /// `lt analyze --partial`: read every complete block of a file that ends early.
    AllowPartial,
}

/// A results file read up to its last complete block (`lt analyze --partial`): what the
/// report covers of that run, and why it stops there.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Partial {
    /// The file's name.
    pub file: String,
    /// Why the file ends early, with the byte offset of its end.
    pub reason: String,
    /// Complete rows read, and how many of them are outcome rows (one per trace record).
    pub rows: u64,
    pub outcome_rows: u64,
    /// Records in the trace: `trace_records - outcome_rows` have no outcome in this file.
    pub trace_records: u64,
    /// Seconds of the run the complete rows cover (the last per-second sample).
    pub covered_s: f64,
}

/// What the trace says about records, for examples: record index → event or subscription id.
pub type Ids = HashMap<u64, String>;

/// The load options in which `other` differs from `first`, each side given with the name
/// the message calls it by.
pub fn option_differences(
    (first, first_name): (&RunOptions, &str),
    (other, name): (&RunOptions, &str),
) -> Vec<String> {
    first
        .differences(other)
        .into_iter()
        .map(|d| {
            let show = |v: Option<String>| v.unwrap_or_else(|| "unset".to_owned());
            format!(
                "replay option {} differs: {} in {first_name}, {} in {name}",
                d.key,
                show(d.first),
                show(d.other)
            )
        })
        .collect()
}

/// How `header` (of `path`) differs from `first` in what a merge assumes alike: the load
/// options and the target.
fn differences(first: &Header, header: &Header, path: &Path) -> Vec<String> {
    let mut out = option_differences(
        (&first.options, "the first file"),
        (&header.options, &path.display().to_string()),
    );
    if first.target != header.target {
        out.push(format!(
            "{} replayed into {}, the first file into {}",
            path.display(),
            header.target,
            first.target
        ));
    }
    out
}

/// Reads every file into one tally; refuses files of different traces.
pub fn read_merged(paths: &[PathBuf]) -> anyhow::Result<Runs> {
    read_merged_each(paths, Completeness::Required, |_| {})
}

/// One results file as a run of its own, a part of a sharded replay included: what that
/// part's replay summary is about (the merged analysis needs every part, [`read_merged`]).
pub fn read_one(path: &Path) -> anyhow::Result<Runs> {
    let (header, tally, partial) = read_file(path, Completeness::Required)?;
    Ok(Runs {
        header,
        files: vec![path.to_path_buf()],
        tally,
        merge_warnings: Vec::new(),
        partial: partial.into_iter().collect(),
        parts: Vec::new(),
    })
}

/// As [`read_merged`], showing `each` every file's own tally before it is added in (for
/// per-run figures without reading a file twice).
pub fn read_merged_each(
    paths: &[PathBuf],
    completeness: Completeness,
    mut each: impl FnMut(&Runs),
) -> anyhow::Result<Runs> {
    let files = read_each(paths, completeness)?;
    let mut merged: Option<Runs> = None;
    for group in by_run(files) {
        let run = merge_run(group, completeness)?;
        each(&run);
        match &mut merged {
            None => merged = Some(run),
            Some(all) => {
                all.merge_warnings
                    .extend(differences(&all.header, &run.header, &run.files[0]));
                merge_into(all, run);
            }
        }
    }
    let mut merged = merged.ok_or_else(|| anyhow!("no results file given"))?;
    if merged.files.len() == 1 && merged.header.part.is_none() {
        // Nothing merged: an interrupted run is said by the report itself.
        merged.merge_warnings.clear();
    }
    Ok(merged)
}

/// Each file read on its own, all of one trace, none given twice.
fn read_each(paths: &[PathBuf], completeness: Completeness) -> anyhow::Result<Vec<Runs>> {
    let mut seen = std::collections::HashSet::new();
    let mut files: Vec<Runs> = Vec::new();
    for path in paths {
        // One file given twice would count its run twice (and, in a comparison, fake a
        // side with no noise at all).
        let canonical = path.canonicalize().unwrap_or_else(|_| path.clone());
        if !seen.insert(canonical) {
            return Err(anyhow!(
                "{}: given twice; each results file is one run, to be counted once",
                path.display()
            ));
        }
        let (header, tally, partial) = read_file(path, completeness)?;
        if let Some(first) = files.first() {
            same_trace(&first.header, &first.files[0], &header, path)?;
        }
        let mut merge_warnings = Vec::new();
        if tally.trailers.iter().any(|t| t.interrupted) {
            merge_warnings.push(format!(
                "{} is an interrupted run (Ctrl-C or SIGTERM)",
                path.display()
            ));
        }
        files.push(Runs {
            header,
            files: vec![path.clone()],
            tally,
            merge_warnings,
            partial: partial.into_iter().collect(),
            parts: Vec::new(),
        });
    }
    Ok(files)
}

/// Files grouped into runs: a whole replay's file alone, or the shards of one sharded
/// replay together (the same N and start instant), in the order first seen.
fn by_run(files: Vec<Runs>) -> Vec<Vec<Runs>> {
    let run_of = |h: &Header| h.part.map(|p| (p.count, h.start_at.clone()));
    let mut groups: Vec<Vec<Runs>> = Vec::new();
    for f in files {
        let key = run_of(&f.header);
        let home = key.as_ref().and_then(|k| {
            groups
                .iter()
                .position(|g| run_of(&g[0].header).as_ref() == Some(k))
        });
        match home {
            Some(g) => groups[g].push(f),
            None => groups.push(vec![f]),
        }
    }
    groups
}

/// One run's files as one: a whole run as it is, a sharded run's shards checked (each
/// index once) and added up, each shard's own figures kept.
fn merge_run(group: Vec<Runs>, completeness: Completeness) -> anyhow::Result<Runs> {
    let headers: Vec<(PathBuf, Header)> = group
        .iter()
        .map(|r| (r.files[0].clone(), r.header.clone()))
        .collect();
    let (shards, shard_warnings) =
        check_shards(&headers, completeness == Completeness::AllowPartial)?;
    // A shard's own figures are kept (a copy of its tally) so that its trust verdict
    // needs no second read of its file.
    let parts = if shards.is_some() {
        group.clone()
    } else {
        Vec::new()
    };
    let mut run = merge_all(group);
    if let Some(n) = shards {
        run.tally.shards = n;
        run.tally.runs = 1;
        run.merge_warnings.extend(shard_warnings);
        run.parts = parts;
    }
    Ok(run)
}

/// The files of one group added up, in order.
fn merge_all(group: Vec<Runs>) -> Runs {
    let mut it = group.into_iter();
    let mut first = it.next().expect("a group has a file");
    for f in it {
        merge_into(&mut first, f);
    }
    first
}

fn merge_into(all: &mut Runs, one: Runs) {
    all.merge_warnings.extend(one.merge_warnings);
    all.files.extend(one.files);
    all.partial.extend(one.partial);
    all.parts.extend(one.parts);
    all.tally.merge(one.tally);
}

/// The records a results file holds an outcome for: the trace's, or its shard's.
fn records_played(header: &Header) -> u64 {
    header.part.map_or(header.trace_records, |p| p.records)
}

/// Shards of one sharded replay (`--shard I/N`) merge into one run: each index 0..N−1
/// exactly once, all of the same N. A missing or repeated shard is an error naming it;
/// with `allow_missing`, missing shards are a warning instead. Returns the number of
/// shards, or `None` for a whole run.
fn check_shards(
    headers: &[(PathBuf, Header)],
    allow_missing: bool,
) -> anyhow::Result<(Option<u32>, Vec<String>)> {
    let parts: Vec<_> = headers
        .iter()
        .filter_map(|(p, h)| h.part.map(|x| (p, x)))
        .collect();
    if parts.is_empty() {
        return Ok((None, Vec::new()));
    }
    let count = parts[0].1.count;
    let mut by_index: std::collections::BTreeMap<u32, Vec<&PathBuf>> = Default::default();
    for (path, part) in &parts {
        if part.count != count {
            return Err(anyhow!(
                "{} is shard {}/{} but {} is shard {}/{}: shards of one run share N",
                path.display(),
                part.index,
                part.count,
                parts[0].0.display(),
                parts[0].1.index,
                count
            ));
        }
        by_index.entry(part.index).or_default().push(path);
    }
    if let Some((index, files)) = by_index.iter().find(|(_, f)| f.len() > 1) {
        return Err(anyhow!(
            "shard {index}/{count} is given twice ({} and {}): each shard of a run counts once (shards of repeated runs are told apart by their --start-at)",
            files[0].display(),
            files[1].display()
        ));
    }
    let missing: Vec<String> = (0..count)
        .filter(|i| !by_index.contains_key(i))
        .map(|i| format!("{i}/{count}"))
        .collect();
    let mut warnings = Vec::new();
    if !missing.is_empty() {
        let text = format!(
            "shard{} {} of this run {} missing: its records have no outcome here",
            if missing.len() > 1 { "s" } else { "" },
            missing.join(", "),
            if missing.len() > 1 { "are" } else { "is" }
        );
        if !allow_missing {
            return Err(anyhow!(
                "{text}; give every shard's results, or --partial to analyze what is there"
            ));
        }
        warnings.push(text);
    }
    Ok((Some(count), warnings))
}

/// Results of different traces never add up or compare.
pub fn same_trace(a: &Header, a_path: &Path, b: &Header, b_path: &Path) -> anyhow::Result<()> {
    if a.trace_fingerprint == b.trace_fingerprint {
        return Ok(());
    }
    Err(anyhow!(
        "{} replayed trace {}…, but {} replayed trace {}…: only results of the same trace (same fingerprint) can be merged or compared",
        b_path.display(),
        short(&b.trace_fingerprint),
        a_path.display(),
        short(&a.trace_fingerprint)
    ))
}

fn short(fingerprint: &str) -> &str {
    fingerprint.get(..12).unwrap_or(fingerprint)
}

/// One pass over one file. This thread reads, checks and decompresses blocks; decoder
/// threads (one per core) decode rows into tallies of their own, added up at the end, since
/// a tally does not depend on row order. With [`Completeness::AllowPartial`], a file that
/// ends early (no trailer, or a last block cut off or damaged) is read up to its last
/// complete block and said to be [`Partial`].
pub fn read_file(
    path: &Path,
    completeness: Completeness,
) -> anyhow::Result<(Header, Tally, Option<Partial>)> {
    // The ordinary reader checks the prefix and the header; the blocks after it are ours.
    let (header, mut blocks) = ResultsReader::open(path)?.into_blocks();
    let timeout_ns = header.options.timeout_ms.map(|ms| ms * 1_000_000);
    let decoders = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let (tx, rx) = mpsc::sync_channel::<(Block, u64)>(2 * decoders);
    let rx = Arc::new(Mutex::new(rx));
    let mut workers = Vec::new();
    for _ in 0..decoders {
        let rx = rx.clone();
        let worker = std::thread::Builder::new()
            .name("lt-analyze".into())
            .spawn(move || decode_blocks(&rx, timeout_ns))
            .context("starting a decoder thread")?;
        workers.push(worker);
    }
    let (trailer_block, rows, mut read_error) = feed(&mut blocks, &tx);
    drop(tx);
    // A file cut short ends in a torn or damaged block; with --partial that is where the
    // readable part ends, not an error.
    let cut = match (&read_error, completeness) {
        (Some(e), Completeness::AllowPartial)
            if matches!(
                e.kind(),
                ErrorKind::Truncated { .. } | ErrorKind::Corrupt { .. }
            ) =>
        {
            read_error.take()
        }
        _ => None,
    };
    let mut tally = Tally::with_timeout(timeout_ns);
    tally.begin_file();
    let first_error = join_decoders(workers, &mut tally, path)?;
    if let Some(e) = first_error.or(read_error) {
        return Err(anyhow!(e.with_path(path)));
    }
    let Some(block) = trailer_block else {
        if completeness == Completeness::AllowPartial {
            let partial = partial(path, &header, &tally, rows, blocks.bytes(), cut);
            let trailer = stand_in_trailer(&tally, rows, &partial);
            tally.end_file(trailer);
            return Ok((header, tally, Some(partial)));
        }
        return Err(anyhow!(Error::at(
            ErrorKind::Truncated {
                what: format!(
                    "no trailer: file ends at byte {} after {rows} complete rows; `lt analyze --partial` reads them",
                    blocks.bytes()
                ),
            },
            Position {
                byte: blocks.bytes(),
                block: None,
                record: Some(rows),
            },
        )
        .with_path(path)));
    };
    let trailer = trailer_of(&block).map_err(|e| anyhow!(e.with_path(path)))?;
    blocks
        .expect_eof()
        .map_err(|e| anyhow!(e.with_path(path)))?;
    check_counts(path, &header, &tally, &trailer, rows, &block)?;
    tally.end_file(trailer);
    Ok((header, tally, None))
}

/// The decoder threads' tallies added into `tally`; the error at the earliest byte, if any.
fn join_decoders(
    workers: Vec<std::thread::JoinHandle<Result<Tally, Error>>>,
    tally: &mut Tally,
    path: &Path,
) -> anyhow::Result<Option<Error>> {
    let mut first_error: Option<Error> = None;
    for w in workers {
        match w.join() {
            Ok(Ok(t)) => tally.merge_rows(t),
            Ok(Err(e)) => {
                // The earliest position is the one to report.
                if first_error
                    .as_ref()
                    .is_none_or(|f| byte_of(&e) < byte_of(f))
                {
                    first_error = Some(e);
                }
            }
            Err(_) => return Err(anyhow!("{}: a decoder thread panicked", path.display())),
        }
    }
    Ok(first_error)
}

/// The trailer's counts against the rows read, and the outcomes against the records the
/// file was to play.
fn check_counts(
    path: &Path,
    header: &Header,
    tally: &Tally,
    trailer: &results::Trailer,
    rows: u64,
    block: &Block,
) -> anyhow::Result<()> {
    if trailer.rows != rows || trailer.outcomes != tally.outcomes {
        return Err(anyhow!(Error::at(
            ErrorKind::CountMismatch {
                trailer: trailer.rows,
                counted: rows,
            },
            Position {
                byte: block.offset,
                block: Some(block.index),
                record: None,
            },
        )
        .with_path(path)));
    }
    if tally.outcomes != records_played(header) {
        return Err(anyhow!(
            "{}: {} outcome rows for {} records{}",
            path.display(),
            tally.outcomes,
            records_played(header),
            match header.part {
                Some(p) => format!(" (shard {}/{} of the trace)", p.index, p.count),
                None => " (the trace)".to_owned(),
            }
        ));
    }
    Ok(())
}

/// What a file read up to its last complete block covers, and why it ends there.
fn partial(
    path: &Path,
    header: &Header,
    tally: &Tally,
    rows: u64,
    end: u64,
    cut: Option<Error>,
) -> Partial {
    let reason = match cut {
        Some(e) => format!("{e}; read up to byte {end}"),
        None => format!("no trailer: the file ends at byte {end}, after a complete block"),
    };
    let covered_ns = tally
        .samples
        .last()
        .and_then(|series| series.iter().map(|s| s.at_ns).max())
        .unwrap_or(0);
    Partial {
        file: path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into(),
        ),
        reason,
        rows,
        outcome_rows: tally.outcomes,
        trace_records: records_played(header),
        covered_s: (covered_ns / 1_000_000) as f64 / 1000.0,
    }
}

/// The trailer a partial file lacks, from what its rows say. The counts only the trailer
/// keeps (NOTICEs, unparseable and oversized frames, late OKs) are unknown, so 0; the
/// report says the run is partial.
fn stand_in_trailer(tally: &Tally, rows: u64, partial: &Partial) -> results::Trailer {
    results::Trailer {
        rows,
        outcomes: tally.outcomes,
        by_outcome: tally.by_outcome.clone(),
        samples: tally.samples.last().map_or(0, |s| s.len() as u64),
        elapsed_ns: (partial.covered_s * 1e9) as u64,
        ..Default::default()
    }
}

fn byte_of(e: &Error) -> u64 {
    e.position().map_or(u64::MAX, |p| p.byte)
}

/// Hands record blocks (with the index of their first row) to the decoders until the
/// trailer block; returns it, the rows seen, and a read error if one stopped the pass.
fn feed<R: std::io::Read>(
    blocks: &mut BlockReader<R>,
    tx: &mpsc::SyncSender<(Block, u64)>,
) -> (Option<Block>, u64, Option<Error>) {
    let mut rows = 0u64;
    loop {
        match blocks.next_block() {
            Ok(Some(b)) if b.tag == Tag::Records => {
                let first = rows;
                rows += u64::from(b.records);
                if tx.send((b, first)).is_err() {
                    // Every decoder stopped on an error; they report it.
                    return (None, rows, None);
                }
            }
            Ok(Some(b)) if b.tag == Tag::Trailer => return (Some(b), rows, None),
            Ok(Some(b)) => {
                let pos = Position {
                    byte: b.offset,
                    block: Some(b.index),
                    record: Some(rows),
                };
                let what = "a second header block".into();
                return (
                    None,
                    rows,
                    Some(Error::at(ErrorKind::Corrupt { what }, pos)),
                );
            }
            Ok(None) => return (None, rows, None),
            Err(e) => return (None, rows, Some(e)),
        }
    }
}

fn trailer_of(block: &Block) -> crate::capture::error::Result<results::Trailer> {
    let pos = Position {
        byte: block.offset,
        block: Some(block.index),
        record: None,
    };
    let mut rest = &block.data[..];
    let t = serde::Deserialize::deserialize(&mut rmp_serde::Deserializer::new(&mut rest))
        .map_err(|e| Error::at(ErrorKind::Decode(e), pos))?;
    if block.records != 1 || !rest.is_empty() {
        return Err(Error::at(
            ErrorKind::Corrupt {
                what: "trailer block must hold exactly one value".into(),
            },
            pos,
        ));
    }
    Ok(t)
}

/// Decodes the rows of the blocks it takes from the shared queue into a tally of its own.
fn decode_blocks(
    rx: &Mutex<mpsc::Receiver<(Block, u64)>>,
    timeout_ns: Option<u64>,
) -> crate::capture::error::Result<Tally> {
    let mut tally = Tally::with_timeout(timeout_ns);
    loop {
        // The lock is held only to take the next block.
        let next = match rx.lock() {
            Ok(guard) => guard.recv(),
            Err(_) => return Ok(tally), // another decoder panicked; join reports it
        };
        let Ok((block, first)) = next else {
            return Ok(tally);
        };
        decode_block(&block, first, &mut tally)?;
    }
}

fn decode_block(block: &Block, first: u64, tally: &mut Tally) -> crate::capture::error::Result<()> {
    // Borrowing the block (rather than reading through `io::Read`) spares a copy per value.
    let mut de = rmp_serde::Deserializer::from_read_ref(&block.data[..]);
    for i in 0..u64::from(block.records) {
        let pos = Position {
            byte: block.offset,
            block: Some(block.index),
            record: Some(first + i),
        };
        let row = <Row as serde::Deserialize>::deserialize(&mut de)
            .map_err(|e| Error::at(ErrorKind::Decode(e), pos))?;
        tally.push(&row);
    }
    // The borrowing reader does not say how much is left, so try to read one more value:
    // only a clean end of input (no marker to read) means the block held exactly its rows.
    match <serde::de::IgnoredAny as serde::Deserialize>::deserialize(&mut de) {
        Err(rmp_serde::decode::Error::InvalidMarkerRead(e))
            if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        _ => {
            return Err(Error::at(
                ErrorKind::Corrupt {
                    what: format!(
                        "bytes left over after the last row of block {}",
                        block.index
                    ),
                },
                Position {
                    byte: block.offset,
                    block: Some(block.index),
                    record: Some(first + u64::from(block.records)),
                },
            ))
        }
    }
    Ok(())
}

/// Event (or subscription) ids of the records the report gives as examples, read from the
/// trace, which must be the one replayed.
pub fn example_ids(runs: &Runs, trace: &Path) -> anyhow::Result<Ids> {
    let wanted: HashSet<u64> = runs
        .tally
        .messages
        .by_text
        .values()
        .flat_map(|m| m.examples.iter().copied())
        .collect();
    let mut ids = Ids::new();
    let mut reader = TraceReader::open(trace)?;
    let mut index = 0u64;
    while let Some(r) = reader.next_record()? {
        if wanted.contains(&index) {
            let id = match r.completes {
                Completion::Ok { id } => id,
                Completion::Eose { sub } | Completion::Count { sub } => sub,
                Completion::Sent | Completion::Skip { .. } => String::new(),
            };
            ids.insert(index, id);
        }
        index += 1;
    }
    let fingerprint = reader
        .trailer()
        .map(|t| t.fingerprint.clone())
        .unwrap_or_default();
    if fingerprint != runs.header.trace_fingerprint {
        return Err(anyhow!(
            "{}: this trace (fingerprint {}…) is not the one replayed ({}…)",
            trace.display(),
            fingerprint.get(..12).unwrap_or(&fingerprint),
            runs.header.trace_fingerprint.get(..12).unwrap_or("")
        ));
    }
    Ok(ids)
}
