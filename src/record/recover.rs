//! A recording that was killed (a second Ctrl-C, SIGKILL, a crash) ends at its last
//! complete block, without a trailer: `lt record --recover` copies every record of its
//! complete blocks into a new, complete trace.

use std::io::BufWriter;
use std::path::Path;

use anyhow::{anyhow, Context};

use crate::capture::{TraceReader, TraceWriter, Trailer};

/// What a recovery found.
pub struct Recovered {
    pub trailer: Trailer,
    /// Where and why the damaged file ends.
    pub ended: String,
}

/// Copies the records of `partial`'s complete blocks into `out` (which must not exist; on
/// failure it is removed again).
pub fn recover(partial: &Path, out: &Path) -> anyhow::Result<Recovered> {
    let reader = TraceReader::open(partial)?;
    let file = super::create_new(out)?;
    copy(reader, file, partial, out).inspect_err(|_| {
        let _ = std::fs::remove_file(out);
    })
}

fn copy(
    mut reader: TraceReader<std::io::BufReader<std::fs::File>>,
    file: std::fs::File,
    partial: &Path,
    out: &Path,
) -> anyhow::Result<Recovered> {
    let header = reader.header().clone();
    let mut writer = TraceWriter::new(BufWriter::with_capacity(1 << 20, file), &header)
        .with_context(|| format!("writing {}", out.display()))?;
    let ended = loop {
        match reader.next_record() {
            Ok(Some(r)) => writer
                .push(&r)
                .with_context(|| format!("writing {}", out.display()))?,
            Ok(None) => {
                return Err(anyhow!(
                    "{}: the capture is complete (it has its trailer); nothing to recover",
                    partial.display()
                ));
            }
            // Records come only from blocks whose checksum held: everything before the
            // damage is whole.
            Err(e) => break e.to_string(),
        }
    };
    let (_, trailer, _) = writer
        .finish()
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(Recovered { trailer, ended })
}
