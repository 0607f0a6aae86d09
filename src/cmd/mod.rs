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
pub mod compare;
mod export;
mod fmt;
mod inspect;
mod replay;
mod synth;

use std::process::ExitCode;

use crate::cli::{Cli, Command};

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Synth(args) => synth::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Export(args) => export::run(args),
        Command::Replay(args) => replay::run(args),
        Command::Analyze(args) => analyze::run(args),
        Command::Compare(args) => compare::run(args),
        Command::Ab(args) => ab::run(args),
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

/// Ctrl-C and SIGTERM for a command that replays: the first asks `stop` to stop (records not
/// yet sent become `not_sent`, replies in flight get up to `timeout`); the second runs
/// `quit` (`lt ab` kills the relay it started) and ends lt at once with status 130, leaving
/// the results file at its last complete block.
pub fn on_interrupt(
    stop: crate::replay::Stop,
    timeout: std::time::Duration,
    quit: impl Fn() + Send + 'static,
) -> anyhow::Result<()> {
    use anyhow::Context;
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .context("installing signal handlers")?;
    std::thread::Builder::new()
        .name("lt-signals".into())
        .spawn(move || {
            for (n, _) in signals.forever().enumerate() {
                if n == 0 {
                    stop.request();
                    eprintln!(
                        "\nlt: stopping: no new records; waiting up to {timeout:?} for replies in flight (again to quit at once)"
                    );
                } else {
                    eprintln!("\nlt: quitting at once; the results file ends at its last complete block (no trailer): read it with `lt analyze --partial`");
                    quit();
                    std::process::exit(130);
                }
            }
        })
        .context("starting the signal thread")?;
    Ok(())
}

/// The replay's progress on a terminal: a bar of records finished, with what was sent, how
/// many succeeded and failed, the send rate and the response p99 so far. Hidden when stderr
/// is not a terminal.
pub struct ProgressLine(indicatif::ProgressBar);

impl ProgressLine {
    pub fn new(records: u64) -> std::sync::Arc<ProgressLine> {
        use std::io::IsTerminal;
        let bar = if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(records);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} replay [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        } else {
            indicatif::ProgressBar::hidden()
        };
        std::sync::Arc::new(ProgressLine(bar))
    }

    pub fn finish(&self) {
        self.0.finish_and_clear();
    }
}

impl crate::replay::Observer for ProgressLine {
    fn phase(&self, what: &str) {
        self.0.set_message(what.to_owned());
    }

    fn tick(&self, p: &crate::replay::Progress) {
        self.0.set_position(p.completed);
        self.0.set_message(format!(
            "sent {} · ok {} · errors {} · {:.0}/s · p99 {:.1} ms",
            p.sent, p.succeeded, p.failed, p.sent_per_s, p.response_p99_ms
        ));
    }
}
