//! `lt export`: a capture's events as JSONL, one event object per line.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::process::ExitCode;

use anyhow::{anyhow, Context};

use crate::capture::TraceReader;
use crate::cli::ExportArgs;
use crate::nostr::ClientMessage;

pub fn run(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let mut reader = TraceReader::open(&args.file)?;
    let (mut out, target): (Box<dyn Write>, String) = match &args.output {
        Some(p) if p.as_os_str() != "-" => (
            Box::new(BufWriter::with_capacity(
                1 << 20,
                File::create(p).with_context(|| format!("creating {}", p.display()))?,
            )),
            p.display().to_string(),
        ),
        _ => (
            Box::new(BufWriter::with_capacity(1 << 20, io::stdout().lock())),
            "stdout".into(),
        ),
    };
    let mut events = 0u64;
    while let Some(r) = reader.next_record()? {
        if !r.op.is_event() {
            continue;
        }
        let index = reader.records_read() - 1;
        let ClientMessage::Event(raw) = ClientMessage::parse(&r.frame).map_err(|e| {
            anyhow!(
                "{}: record {index}: frame is not a NIP-01 message: {e}",
                args.file.display()
            )
        })?
        else {
            return Err(anyhow!(
                "{}: record {index}: an event record whose frame is not an EVENT",
                args.file.display()
            ));
        };
        out.write_all(raw.get().as_bytes())
            .and_then(|_| out.write_all(b"\n"))
            .with_context(|| format!("writing to {target}"))?;
        events += 1;
    }
    out.flush()
        .with_context(|| format!("writing to {target}"))?;
    eprintln!("lt: exported {events} events to {target}");
    Ok(ExitCode::SUCCESS)
}
