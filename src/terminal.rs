//! What a command that replays needs from the terminal it runs in: a progress line, and
//! Ctrl-C. The replay library only takes a stop handle and an observer; what a second
//! signal does to the process is the command's (`cmd/`): it passes the way out.

use std::io::IsTerminal;
use std::sync::Arc;

use anyhow::Context;

use crate::replay::{Progress, ReplayObserver, Stop};

/// Ctrl-C and SIGTERM for a command that replays: the first asks `stop` to stop (records not
/// yet sent become `not_sent`, replies in flight get up to `timeout`); the second runs
/// `quit`, the command's way out (`lt ab` kills the relay it started; each command then
/// ends the process with status 130), leaving the results file at its last complete block.
pub fn on_interrupt(
    stop: Stop,
    timeout: std::time::Duration,
    quit: impl Fn() + Send + 'static,
) -> anyhow::Result<()> {
    on_signals(
        stop,
        format!("stopping: no new records; waiting up to {timeout:?} for replies in flight (again to quit at once)"),
        "quitting at once; the results file ends at its last complete block (no trailer): read it with `lt analyze --partial`".into(),
        quit,
    )
}

/// Ctrl-C and SIGTERM: the first asks `stop` to stop and says `first`; the second says
/// `second` and runs `quit` on the signal thread, which is meant to end the process (if it
/// returns, later signals say `second` and run it again).
pub fn on_signals(
    stop: Stop,
    first: String,
    second: String,
    quit: impl Fn() + Send + 'static,
) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .context("installing signal handlers")?;
    std::thread::Builder::new()
        .name("lt-signals".into())
        .spawn(move || {
            for (n, _) in signals.forever().enumerate() {
                if n == 0 {
                    stop.request();
                    eprintln!("\nlt: {first}");
                } else {
                    eprintln!("\nlt: {second}");
                    quit();
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
    pub fn new(records: u64) -> Arc<ProgressLine> {
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
        Arc::new(ProgressLine(bar))
    }
}

/// The line goes when the replay is done with it.
impl Drop for ProgressLine {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

impl ReplayObserver for ProgressLine {
    fn phase(&self, what: &str) {
        self.0.set_message(what.to_owned());
    }

    fn tick(&self, p: &Progress) {
        self.0.set_position(p.completed);
        self.0.set_message(format!(
            "sent {} · ok {} · errors {} · {:.0}/s · p99 {:.1} ms",
            p.sent, p.succeeded, p.failed, p.sent_per_s, p.response_p99_ms
        ));
    }
}

/// Ctrl-C for a command that starts relays (`lt ab`, `lt capacity --spec`): the first stops
/// the replay under way (and the session or search after it); the second kills the relay
/// lt started, if one is running, and ends lt at once with status 130.
pub fn on_interrupt_killing_relay(
    interrupt: &crate::ab::session::Interrupt,
    timeout: std::time::Duration,
) -> anyhow::Result<()> {
    let group = interrupt.relay_group.clone();
    on_interrupt(interrupt.stop.clone(), timeout, move || {
        let pid = group.load(std::sync::atomic::Ordering::Relaxed);
        if pid > 0 {
            // SAFETY: kill(2) on the process group lt started for the relay.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
        std::process::exit(130);
    })
}

/// A capacity search as lt shows it: a line per step and its outcome on stdout, a progress
/// line during each replay, warnings on stderr.
pub struct SearchLines;

impl crate::capacity::run::Observer for SearchLines {
    fn step_started(
        &self,
        number: u32,
        trial: &crate::capacity::search::Trial,
        duration: std::time::Duration,
    ) {
        crate::cmd::out(format_args!(
            "step {number:>2} {:<8} {:>8} events/s for {} s\n",
            trial.phase.word(),
            crate::units::count(trial.rate.round() as u64),
            duration.as_secs_f64()
        ));
    }

    fn step_ended(&self, step: &crate::capacity::report::Step) {
        use crate::capacity::search::Verdict;
        let ms = |x: Option<f64>| x.map_or_else(|| "—".to_owned(), |v| format!("{v:.1}"));
        let verdict = match (&step.judged, &step.error) {
            (Some(j), _) => match j.verdict {
                Verdict::Pass => "pass".to_owned(),
                Verdict::Fail => {
                    format!("FAIL ({})", j.failed_term.as_deref().unwrap_or("a term"))
                }
                Verdict::LtLimited => {
                    format!("LT LIMITED ({})", j.lt_limit.as_deref().unwrap_or("lt"))
                }
            },
            (None, Some(e)) => format!("not completed: {e}"),
            (None, None) => "not completed".to_owned(),
        };
        crate::cmd::out(format_args!(
            "        achieved {:.0} events/s · p50 {} ms · p99 {} ms · {verdict}\n",
            step.achieved_eps,
            ms(step.response_p50_ms),
            ms(step.response_p99_ms)
        ));
    }

    fn warn(&self, text: &str) {
        eprintln!("lt: {text}");
    }

    fn replay(&self, records: u64) -> Arc<dyn ReplayObserver> {
        ProgressLine::new(records)
    }
}
