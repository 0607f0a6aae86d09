//! One module per subcommand, each with a `run` entry point.

/// `println!` for what a subcommand tells the user on stdout, without `println!`'s panic
/// when stdout is a pipe its reader closed (`lt inspect t.ltc | head -1`): the line is
/// dropped and the command goes on, so a replay whose summary cannot be shown still
/// finishes its results file.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cmd::out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!`, as [`outln!`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cmd::out(format_args!($($arg)*))
    };
}

mod ab;
pub mod analyze;
mod capacity;
pub mod compare;
mod export;
mod import;
mod inspect;
mod record;
mod replay;
mod synth;

use std::process::ExitCode;

use crate::cli::{Cli, Command};

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Synth(args) => synth::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Export(args) => export::run(args),
        Command::Record(args) => record::run(args),
        Command::Import(args) => import::run(args),
        Command::Replay(args) => replay::run(args),
        Command::Analyze(args) => analyze::run(args),
        Command::Compare(args) => compare::run(args),
        Command::Ab(args) => ab::run(args),
        Command::Capacity(args) => capacity::run(args),
    }
}

/// Writes to stdout; an error (a closed pipe) is ignored, see [`outln!`].
pub fn out(args: std::fmt::Arguments) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_fmt(args);
}

/// A reader closed our stdout (`lt export … | head`): not an error worth a message.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
