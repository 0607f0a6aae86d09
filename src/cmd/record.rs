//! `lt record`: guard the upstream, listen, record until Ctrl-C or --duration, summarise.

use std::io::IsTerminal;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::anyhow;

use crate::cli::RecordArgs;
use crate::record::{self, RecordObserver, Status, Summary};
use crate::target;
use crate::terminal;
use crate::transport::Stop;
use crate::units;

pub fn run(args: RecordArgs) -> anyhow::Result<ExitCode> {
    if let Some(partial) = &args.recover {
        let r = record::recover(partial, &args.output)?;
        outln!(
            "lt record: recovered {} records ({} events) of {} into {}",
            units::count(r.trailer.records),
            units::count(r.trailer.events),
            partial.display(),
            args.output.display()
        );
        outln!("  it ended    {}", r.ended);
        outln!("  fingerprint sha256:{}", r.trailer.fingerprint);
        return Ok(ExitCode::SUCCESS);
    }
    let Some(upstream_url) = &args.upstream else {
        return Err(anyhow!(
            "--upstream is required: the relay to record against"
        ));
    };
    // The same guard as replay: the proxy only ever connects to loopback or named hosts.
    let upstream = target::check(&args.target, upstream_url, target::Role::Upstream)?;
    let listen = listen_addr(&args.listen)?;
    if !listen.ip().is_loopback() {
        eprintln!(
            "lt record: warning: listening on {listen}, which is not loopback: whoever can reach it is forwarded to {} and recorded",
            upstream.display_host()
        );
    }
    let stop = Stop::new();
    let output = args.output.clone();
    terminal::on_signals(
        stop.clone(),
        "stopping: no new connections; closing client connections and completing the capture (again to quit at once)".into(),
        format!(
            "quitting at once; {} ends at its last complete block (no trailer): `lt record --recover {} -o FILE` makes it a complete capture",
            output.display(),
            output.display()
        ),
        // A second Ctrl-C ends lt at once, as an interrupted command ends: status 130.
        || std::process::exit(130),
    )?;
    let watch: Arc<dyn RecordObserver> =
        Arc::new(Progress::new(args.quiet, upstream.display_host()));
    let summary = record::run(
        record::Options {
            listen,
            upstream,
            ca_files: args.target.ca_files.clone(),
            output: args.output.clone(),
            duration: args.duration.map(std::time::Duration::from_secs_f64),
            answer_timeout: args.answer_timeout,
        },
        stop,
        watch.clone(),
    )?;
    drop(watch);
    print_summary(&args, &summary);
    Ok(ExitCode::SUCCESS)
}

fn listen_addr(text: &str) -> anyhow::Result<SocketAddr> {
    text.to_socket_addrs()
        .map_err(|e| anyhow!("--listen {text}: not HOST:PORT ({e})"))?
        .next()
        .ok_or_else(|| anyhow!("--listen {text}: resolves to no address"))
}

/// The listening line, and a spinner with connections, frames, bytes and events.
struct Progress {
    bar: indicatif::ProgressBar,
    upstream: String,
}

impl Progress {
    fn new(quiet: bool, upstream: String) -> Progress {
        let bar = if quiet || !std::io::stderr().is_terminal() {
            indicatif::ProgressBar::hidden()
        } else {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} record [{elapsed_precise}] {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            bar
        };
        Progress { bar, upstream }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

impl RecordObserver for Progress {
    fn listening(&self, at: SocketAddr) {
        // Always said (tests and scripts wait for it): where to point clients.
        eprintln!(
            "lt record: listening on ws://{at}/ → {}; Ctrl-C to stop",
            self.upstream
        );
    }

    fn tick(&self, s: &Status) {
        let c = &s.counts;
        self.bar.set_message(format!(
            "{} open · {} connections · {} frames ({}) · {} events · {} answered",
            s.open,
            s.connections,
            units::count(c.records),
            units::bytes(c.client_bytes),
            units::count(c.events),
            units::count(c.answered)
        ));
        self.bar.tick();
    }
}

fn print_summary(args: &RecordArgs, s: &Summary) {
    let c = &s.status.counts;
    let t = &s.trailer;
    outln!(
        "lt record: {} records from {} client connections in {:.1} s, {} ({}) → {}",
        units::count(t.records),
        units::count(s.status.connections),
        s.status.elapsed.as_secs_f64(),
        args.output.display(),
        units::bytes(s.bytes),
        if s.interrupted {
            "stopped by Ctrl-C"
        } else {
            "complete"
        }
    );
    outln!(
        "  frames       {} events · {} REQ/COUNT · {} AUTH (recorded, not replayed) · {} other; {} from the relay ({})",
        units::count(c.events),
        units::count(c.reqs),
        units::count(c.auth),
        units::count(c.other),
        units::count(c.relay_frames),
        units::bytes(c.relay_bytes)
    );
    outln!(
        "  answers      {} answered by the relay · {} without an answer (connection closed, or none within {:?})",
        units::count(c.answered),
        units::count(c.unanswered),
        args.answer_timeout
    );
    let faults = [
        ("upstream unreachable", s.upstream_unreachable),
        ("failed client handshakes", s.bad_handshakes),
        ("clients gone without a close", s.client_aborts),
        ("relay connections gone without a close", s.upstream_aborts),
        ("bad frames from clients", s.client_protocol_errors),
        ("bad frames from the relay", s.upstream_protocol_errors),
        ("NIP-11 requests answered", s.info_requests),
        ("NOTICEs", c.notices),
        ("AUTH challenges", c.challenges),
        ("unreadable relay frames", c.relay_unreadable),
    ];
    let said: Vec<String> = faults
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(what, n)| format!("{what} {n}"))
        .collect();
    if !said.is_empty() {
        outln!("  noted        {}", said.join(" · "));
    }
    outln!("  fingerprint  sha256:{}", t.fingerprint);
    outln!(
        "  replay it    lt replay {} --relay ws://127.0.0.1:PORT/",
        args.output.display()
    );
}
