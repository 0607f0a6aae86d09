//! `lt record`: real clients through a proxy into a trace.

use std::process::ExitCode;

use crate::cli::RecordArgs;

pub fn run(_args: RecordArgs) -> anyhow::Result<ExitCode> {
    Err(anyhow::anyhow!("lt record is being written"))
}
