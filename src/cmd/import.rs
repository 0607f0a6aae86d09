//! `lt import`: an event dump into a trace.

use std::process::ExitCode;

use crate::cli::ImportArgs;

pub fn run(_args: ImportArgs) -> anyhow::Result<ExitCode> {
    Err(anyhow::anyhow!("lt import is being written"))
}
