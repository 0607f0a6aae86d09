//! The results writer: a thread of its own that compresses and writes rows off the network
//! path, and what becomes of the file when a run ends well or badly.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, Context};
use tokio::sync::mpsc;

use super::shared::ToWriter;
use crate::capture::results::{Header, ResultsWriter, Row, Trailer};

/// How long the writer sleeps when it has caught up: each wake-up costs CPU that shows in
/// lt's cost per event at low rates. The long nap follows a round of fewer than
/// [`FEW_ROWS`] rows. It is bounded by a burst after a quiet round: rows that come in
/// faster than the backlog cap (`shared::ROWS_BACKLOG_MAX`, 8,192) per nap make the
/// scheduler wait for the writer, which 50 ms allows up to 160k rows/s (20 ms: 400k).
const NAP: Duration = Duration::from_millis(20);
const NAP_LONG: Duration = Duration::from_millis(50);
const FEW_ROWS: usize = 256;

type Results = ResultsWriter<BufWriter<File>>;

/// The writer thread of one results file.
pub struct Writer {
    thread: JoinHandle<anyhow::Result<Results>>,
    out: PathBuf,
}

impl Writer {
    /// Creates `out` (and its folder) with `header` and starts the thread; rows go to it
    /// through the returned sender. The file is written in place, not renamed at the end:
    /// if lt is killed, every complete block of what it recorded is still readable.
    pub fn start(out: &Path, header: &Header) -> anyhow::Result<(Writer, ToWriter)> {
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let file = File::create(out).with_context(|| format!("creating {}", out.display()))?;
        let writer = ResultsWriter::new(BufWriter::with_capacity(1 << 20, file), header)
            .with_context(|| format!("writing {}", out.display()))?;
        // Rows travel in batches (a connection's completions of one wake-up), so the thread
        // is woken once per batch rather than once per record.
        let (rows, rows_rx) = mpsc::unbounded_channel::<Vec<Row>>();
        // Rows sent to the writer and not yet written (see `shared::ROWS_BACKLOG_MAX`).
        let pending = Arc::new(AtomicUsize::new(0));
        let name = out.display().to_string();
        let left = pending.clone();
        let thread = std::thread::Builder::new()
            .name("lt-results".into())
            .spawn(move || write_rows(writer, rows_rx, &left, &name))
            .context("starting the results writer")?;
        let writer = Writer {
            thread,
            out: out.to_owned(),
        };
        Ok((writer, ToWriter { rows, pending }))
    }

    /// Waits for every row (the thread ends when the last sender is dropped) and closes the
    /// file with `trailer`; returns the trailer as written, with its counts.
    pub fn finish(self, trailer: Trailer) -> anyhow::Result<Trailer> {
        let out = self.out;
        let writer = self
            .thread
            .join()
            .map_err(|_| anyhow!("the results writer panicked"))?
            .map_err(|e| anyhow!("{e:#}; {}", partial_hint(&out)))?;
        let (_, trailer) = writer
            .finish(trailer)
            .with_context(|| format!("writing {}", out.display()))?;
        Ok(trailer)
    }

    /// A run that failed before it finished: the rows gathered so far go into the file as
    /// a last complete block, readable with `lt analyze --partial`; a file that got no row
    /// at all (no connection opened, nothing sent) is removed rather than left as a header
    /// alone. Returns `error` with what became of the file.
    pub fn abandon(self, error: anyhow::Error) -> anyhow::Error {
        let out = self.out;
        let hint = |error: anyhow::Error| anyhow!("{error:#}; {}", partial_hint(&out));
        // The thread ends when its channel closes (every task has ended).
        let Ok(Ok(mut writer)) = self.thread.join() else {
            return hint(error);
        };
        if writer.rows() == 0 {
            drop(writer);
            return match std::fs::remove_file(&out) {
                Ok(()) => anyhow!(
                    "{error:#}; nothing was sent, so no results file was kept ({} removed)",
                    out.display()
                ),
                Err(_) => error,
            };
        }
        // The rows gathered since the last block would be lost with the writer.
        let _ = writer.flush();
        drop(writer);
        hint(error)
    }
}

/// The thread: woken by the clock, not by each batch (at light load every batch would
/// cost a wake-up, and rows need not be written at once); a sample row ends a block.
fn write_rows(
    mut writer: Results,
    mut rows: mpsc::UnboundedReceiver<Vec<Row>>,
    pending: &AtomicUsize,
    name: &str,
) -> anyhow::Result<Results> {
    // Rows written since the last nap.
    let mut round = 0usize;
    loop {
        let batch = match rows.try_recv() {
            Ok(batch) => batch,
            Err(mpsc::error::TryRecvError::Empty) => {
                std::thread::sleep(if round < FEW_ROWS { NAP_LONG } else { NAP });
                round = 0;
                continue;
            }
            Err(mpsc::error::TryRecvError::Disconnected) => return Ok(writer),
        };
        round += batch.len();
        pending.fetch_sub(batch.len(), Ordering::Relaxed);
        for row in batch {
            let sample = matches!(row, Row::Sample(_));
            writer
                .push(&row)
                .with_context(|| format!("writing {name}"))?;
            if sample {
                writer.flush().with_context(|| format!("writing {name}"))?;
            }
        }
    }
}

/// What to do with a results file a failed run left behind.
fn partial_hint(out: &Path) -> String {
    format!(
        "the run did not finish: {} keeps every complete block; read it with `lt analyze --partial {}`",
        out.display(),
        out.display()
    )
}
