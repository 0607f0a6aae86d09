//! Analysis of results files: one streaming pass per file into a [`tally::Tally`], then a
//! [`report::Report`] (JSON), rendered as Markdown with SVG charts; and comparisons of two
//! sets of runs of one trace ([`compare`]).

pub mod compare;
pub mod hgrm;
pub mod markdown;
pub mod output;
pub mod report;
pub mod rules;
pub mod stats;
pub mod svg;
pub mod tally;
pub mod timeline;

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use anyhow::{anyhow, Context};

use crate::capture::container::{BlockReader, Tag};
use crate::capture::results::{self, Header, ResultsReader, Row};
use crate::capture::{Error, ErrorKind, Position};
use tally::Tally;

/// One or more results files of the same trace, read and added up.
pub struct Runs {
    /// The first file's header (the others share its trace fingerprint).
    pub header: Header,
    pub files: Vec<PathBuf>,
    pub tally: Tally,
}

/// Reads every file into one tally; refuses files of different traces.
pub fn read_merged(paths: &[PathBuf]) -> anyhow::Result<Runs> {
    let mut merged: Option<Runs> = None;
    for path in paths {
        let (header, tally) = read_file(path)?;
        match &mut merged {
            None => {
                merged = Some(Runs {
                    header,
                    files: vec![path.clone()],
                    tally,
                })
            }
            Some(runs) => {
                same_trace(&runs.header, &runs.files[0], &header, path)?;
                runs.files.push(path.clone());
                runs.tally.merge(tally);
            }
        }
    }
    merged.ok_or_else(|| anyhow!("no results file given"))
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

/// One pass over one file. Blocks are read, checked and decompressed on this thread while a
/// second thread decodes rows and tallies them: the two halves cost about the same.
pub fn read_file(path: &Path) -> anyhow::Result<(Header, Tally)> {
    // The header and the row/trailer checks come from the ordinary reader; the pipeline
    // below only splits its work across two threads.
    let header = ResultsReader::open(path)?.header().clone();
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut blocks = BlockReader::open(
        std::io::BufReader::with_capacity(1 << 20, file),
        crate::capture::container::FileKind::Results,
        results::VERSION,
    )
    .map_err(|e| e.with_path(path))?;
    let (tx, rx) = mpsc::sync_channel::<crate::capture::container::Block>(4);
    let decoder = std::thread::Builder::new()
        .name("lt-analyze".into())
        .spawn(move || decode_blocks(rx))
        .context("starting the decoder thread")?;
    let mut trailer_block = None;
    let mut read_error = None;
    loop {
        match blocks.next_block() {
            Ok(Some(b)) if b.tag == Tag::Records => {
                if tx.send(b).is_err() {
                    break; // the decoder stopped on an error; it reports it
                }
            }
            Ok(Some(b)) if b.tag == Tag::Trailer => {
                trailer_block = Some(b);
                break;
            }
            Ok(Some(b)) => {
                // The header block was read and checked by `ResultsReader::open`.
                if b.index != 0 {
                    read_error = Some(Error::at(
                        ErrorKind::Corrupt {
                            what: "a second header block".into(),
                        },
                        Position {
                            byte: b.offset,
                            block: Some(b.index),
                            record: None,
                        },
                    ));
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                read_error = Some(e);
                break;
            }
        }
    }
    drop(tx);
    let decoded = decoder
        .join()
        .map_err(|_| anyhow!("{}: the decoder thread panicked", path.display()))?;
    let (mut tally, rows) = decoded.map_err(|e| anyhow!(e.with_path(path)))?;
    if let Some(e) = read_error {
        return Err(anyhow!(e.with_path(path)));
    }
    let Some(block) = trailer_block else {
        return Err(anyhow!(Error::at(
            ErrorKind::Truncated {
                what: format!(
                    "no trailer: file ends at byte {} after {rows} complete rows",
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
    if tally.outcomes != header.trace_records {
        return Err(anyhow!(
            "{}: {} outcome rows for a trace of {} records",
            path.display(),
            tally.outcomes,
            header.trace_records
        ));
    }
    tally.end_file(trailer);
    Ok((header, tally))
}

fn trailer_of(
    block: &crate::capture::container::Block,
) -> crate::capture::error::Result<results::Trailer> {
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

/// Decodes every row of every block into a tally; returns it with the number of rows.
fn decode_blocks(
    rx: mpsc::Receiver<crate::capture::container::Block>,
) -> crate::capture::error::Result<(Tally, u64)> {
    let mut tally = Tally::new();
    tally.begin_file();
    let mut rows = 0u64;
    for block in rx {
        let mut rest = &block.data[..];
        for _ in 0..block.records {
            let pos = Position {
                byte: block.offset,
                block: Some(block.index),
                record: Some(rows),
            };
            let row = <Row as serde::Deserialize>::deserialize(&mut rmp_serde::Deserializer::new(
                &mut rest,
            ))
            .map_err(|e| Error::at(ErrorKind::Decode(e), pos))?;
            tally.push(&row);
            rows += 1;
        }
        if !rest.is_empty() {
            return Err(Error::at(
                ErrorKind::Corrupt {
                    what: format!(
                        "{} bytes left over after the last row of block {}",
                        rest.len(),
                        block.index
                    ),
                },
                Position {
                    byte: block.offset,
                    block: Some(block.index),
                    record: Some(rows),
                },
            ));
        }
    }
    Ok((tally, rows))
}
