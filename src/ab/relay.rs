//! Starts one relay build for one A/B run and stops it afterwards.
//!
//! A build is a command template ([`BuildSpec`]) run by `/bin/sh -c` in its own process group,
//! with `{port}` (a free loopback port), `{dir}` (a fresh, empty data directory) and
//! `{config}` (the build's config template, filled in and written into the run directory).
//! The run directory then holds `data/`, `config.EXT` and `relay.log` (stdout and stderr).
//!
//! The relay must listen on 127.0.0.1 only: lt connects to `127.0.0.1:{port}`, and after the
//! relay answers, `/proc` is checked for a listener on another address (a warning in
//! [`RunningRelay::warnings`]). nostr-rs-relay listens on 0.0.0.0 unless its config says
//! `address = "127.0.0.1"`.
//!
//! Stopping sends SIGTERM to the whole group, waits, then SIGKILLs the group, so nothing the
//! command started is left behind (unless it left the group itself, e.g. with `setsid`).

mod error;
mod probe;
mod procfs;
mod spec;
mod template;
#[cfg(test)]
mod tests;

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use error::io_error;
pub use error::{LogTail, StartError, StopError};
pub use spec::{shell_quote, BuildSpec};
use spec::{Quoting, Values};
use template::Template;

/// How long `Drop` gives a relay to exit after SIGTERM.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3);
/// How often readiness is probed.
const POLL: Duration = Duration::from_millis(50);
/// A start that fails with "address already in use" is retried on a new port this often.
const START_ATTEMPTS: u32 = 3;
/// Log lines an error carries.
const ERROR_TAIL_LINES: usize = 20;
/// How long a listener held by another process may answer before we accept it (a relay in a
/// container answers through a proxy outside our group; a relay that lost the race for its
/// port exits well within this).
const FOREIGN_SETTLE: Duration = Duration::from_secs(1);
/// How long the group may take to vanish after SIGKILL.
const KILL_SETTLE: Duration = Duration::from_secs(1);
/// Bytes read from the end of `relay.log` for a tail (logs at INFO can be gigabytes).
const TAIL_BYTES: u64 = 64 << 10;

/// A relay that answered on `127.0.0.1:port`. Dropping it stops the process group.
#[derive(Debug)]
pub struct RunningRelay {
    /// The build's name.
    pub name: String,
    /// The shell's pid, which is also the process group id. dash (Debian's `/bin/sh`) forks
    /// the relay as its child rather than exec'ing it, unless the command starts with `exec`.
    pub pid: u32,
    /// The process holding the listening socket: the relay itself, to sample for CPU and
    /// memory (the shell's pid when `/proc` cannot tell).
    pub relay_pid: u32,
    pub port: u16,
    /// `ws://127.0.0.1:PORT/`
    pub url: String,
    /// `RUN_DIR/relay.log`: the relay's stdout and stderr.
    pub log: PathBuf,
    /// `RUN_DIR/data`, the `{dir}` of this run.
    pub dir: PathBuf,
    /// The filled-in config file, the `{config}` of this run.
    pub config: Option<PathBuf>,
    /// Things the caller should print: a listener on a non-loopback address, or a port held
    /// by a process outside the relay's group.
    pub warnings: Vec<String>,
    /// Addresses other than loopback the relay also listens on (`lt ab` refuses these).
    pub exposed: Vec<std::net::IpAddr>,
    /// The TLS client configuration for a build that listens with TLS (its CA).
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// `None` once stopped.
    child: Option<Child>,
}

/// How a stopped relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitInfo {
    /// The shell's status: the relay's exit code, or 128+N when the relay died of signal N;
    /// a signal status when the shell itself had to be killed.
    pub status: ExitStatus,
    /// The group did not exit within the grace period and was sent SIGKILL.
    pub killed: bool,
    /// It had already exited before `stop` (crashed or killed mid-run).
    pub exited_before_stop: bool,
}

/// Starts `spec` with its data in `run_dir/data` and waits until it answers on its port.
/// `run_dir/data` must be absent or empty. Retries on a new port (up to 3 starts in all) when
/// the relay exits with "address already in use": another program took the free port first.
pub fn start(
    spec: &BuildSpec,
    run_dir: &Path,
    ready_timeout: Duration,
) -> Result<RunningRelay, StartError> {
    let run_dir =
        std::path::absolute(run_dir).map_err(io_error(&spec.name, "locate run dir", run_dir))?;
    let data = run_dir.join("data");
    ensure_empty_dir(spec, &data)?;
    let template = spec
        .config_template
        .as_deref()
        .map(|path| Template::read(spec, path))
        .transpose()?;
    let mut attempt = 1;
    loop {
        match start_once(spec, &run_dir, template.as_ref(), ready_timeout) {
            Err(StartError::AddrInUse { .. }) if attempt < START_ATTEMPTS => {
                attempt += 1;
                // The failed attempt may have created its database already.
                fs::remove_dir_all(&data).map_err(io_error(&spec.name, "clear data dir", &data))?;
                ensure_empty_dir(spec, &data)?;
            }
            Err(StartError::AddrInUse {
                name,
                port,
                log_tail,
                ..
            }) => {
                return Err(StartError::AddrInUse {
                    name,
                    port,
                    attempts: attempt,
                    log_tail,
                })
            }
            other => return other,
        }
    }
}

/// Creates `data` if absent; refuses one that holds anything.
fn ensure_empty_dir(spec: &BuildSpec, data: &Path) -> Result<(), StartError> {
    match fs::read_dir(data) {
        Ok(mut entries) => match entries.next() {
            Some(_) => Err(StartError::DataDirNotEmpty {
                name: spec.name.clone(),
                path: data.to_path_buf(),
            }),
            None => Ok(()),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(data).map_err(io_error(&spec.name, "create data dir", data))
        }
        Err(e) => Err(io_error(&spec.name, "read data dir", data)(e)),
    }
}

/// One start on one free port: write the config, spawn, wait for an answer.
fn start_once(
    spec: &BuildSpec,
    run_dir: &Path,
    template: Option<&Template>,
    ready_timeout: Duration,
) -> Result<RunningRelay, StartError> {
    let command_err = |reason: String| StartError::Command {
        name: spec.name.clone(),
        reason,
    };
    let port = free_port().map_err(|e| command_err(format!("no free port on 127.0.0.1: {e}")))?;
    let data = run_dir.join("data");
    let dir = utf8(&data).map_err(command_err)?;
    let mut values = Values {
        port,
        dir,
        config: None,
    };
    let config = template
        .map(|t| t.write(spec, run_dir, values))
        .transpose()?;
    let config_text = config
        .as_deref()
        .map(utf8)
        .transpose()
        .map_err(command_err)?;
    values.config = config_text;
    let command = spec::fill(&spec.command, values, Quoting::Shell).map_err(command_err)?;
    let tls = spec
        .tls_ca
        .as_ref()
        .map(|ca| crate::tls::client_config(std::slice::from_ref(ca)))
        .transpose()
        .map_err(|e| command_err(format!("{e:#}")))?;
    let log = run_dir.join("relay.log");
    let child = spawn(spec, &command, &log)?;
    let mut relay = RunningRelay {
        name: spec.name.clone(),
        pid: child.id(),
        relay_pid: child.id(),
        port,
        url: if spec.tls_ca.is_some() {
            // The name a test certificate carries; it resolves to 127.0.0.1 here.
            format!("wss://localhost:{port}/")
        } else {
            format!("ws://127.0.0.1:{port}/")
        },
        log,
        dir: data.clone(),
        config,
        warnings: Vec::new(),
        exposed: Vec::new(),
        tls,
        child: Some(child),
    };
    // On error `relay` is dropped here, which stops whatever the command started.
    relay.wait_ready(ready_timeout)?;
    if let Some(pid) = procfs::listener_pid(relay.pid, port) {
        relay.relay_pid = pid;
    }
    Ok(relay)
}

fn utf8(path: &Path) -> Result<&str, String> {
    path.to_str()
        .ok_or_else(|| format!("path {} is not UTF-8", path.display()))
}

/// A port nothing listens on right now: the kernel's pick for `127.0.0.1:0`. Someone else may
/// take it before the relay binds it; `start` retries then.
fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

fn spawn(spec: &BuildSpec, command: &str, log: &Path) -> Result<Child, StartError> {
    let out = File::create(log).map_err(io_error(&spec.name, "create log", log))?;
    let err = out
        .try_clone()
        .map_err(io_error(&spec.name, "open log", log))?;
    // dash forks the relay as its child and would die of the group's SIGTERM at once,
    // orphaning the relay; a no-op trap makes it wait for the relay and report its status.
    // (A handler, unlike an ignored signal, is reset in the relay by exec.)
    let script = format!("trap : TERM\n{command}");
    Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        // Both relays log a line per stored event at INFO, which costs throughput; a
        // `RUST_LOG=…` in the command still wins, as the shell sets it later.
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        // Its own group, so stop signals everything the command started, and Ctrl-C in
        // lt's terminal does not reach it.
        .process_group(0)
        .spawn()
        .map_err(|source| StartError::Spawn {
            name: spec.name.clone(),
            source,
        })
}

impl RunningRelay {
    /// Polls every 50 ms until the relay answers (NIP-11 or a WebSocket upgrade), exits, or
    /// `timeout` passes.
    fn wait_ready(&mut self, timeout: Duration) -> Result<(), StartError> {
        let deadline = Instant::now() + timeout;
        let mut last_error;
        let mut foreign_since: Option<Instant> = None;
        loop {
            if let Some(status) = self.peek_exit() {
                return Err(self.exit_error(status));
            }
            let budget = deadline
                .saturating_duration_since(Instant::now())
                .clamp(POLL, Duration::from_secs(1));
            match probe::ready(self.port, budget, self.tls.as_ref()) {
                Ok(()) => {
                    let report = procfs::inspect_port(self.port, self.pid);
                    let since = *foreign_since.get_or_insert_with(Instant::now);
                    let settled = since.elapsed() >= FOREIGN_SETTLE || Instant::now() >= deadline;
                    if report.owner != procfs::Owner::Other || settled {
                        self.warnings = self.port_warnings(&report);
                        self.exposed = report.exposed.clone();
                        return Ok(());
                    }
                    last_error = format!(
                        "127.0.0.1:{} answers, but from a process outside the relay's group",
                        self.port
                    );
                }
                Err(e) => last_error = e,
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(StartError::Timeout {
                    name: self.name.clone(),
                    port: self.port,
                    timeout,
                    last_error,
                    log_tail: self.tail(),
                });
            }
            std::thread::sleep(POLL.min(deadline - now));
        }
    }

    fn exit_error(&self, status: ExitStatus) -> StartError {
        let log_tail = self.tail();
        let lower = log_tail.text.to_ascii_lowercase();
        if lower.contains("address already in use") || lower.contains("addrinuse") {
            return StartError::AddrInUse {
                name: self.name.clone(),
                port: self.port,
                attempts: 1,
                log_tail,
            };
        }
        StartError::Exited {
            name: self.name.clone(),
            port: self.port,
            status,
            log_tail,
        }
    }

    fn port_warnings(&self, report: &procfs::PortReport) -> Vec<String> {
        let mut warnings: Vec<String> = report
            .exposed
            .iter()
            .map(|addr| {
                format!(
                    "relay {} also listens on {addr} port {}, reachable from other hosts; \
                     bind it to 127.0.0.1 in its config or command",
                    self.name, self.port
                )
            })
            .collect();
        if report.owner == procfs::Owner::Other {
            warnings.push(format!(
                "relay {}: the listener on 127.0.0.1:{} belongs to a process outside its \
                 process group (pid {}); fine for a relay in a container, otherwise another \
                 program may be answering",
                self.name, self.port, self.pid
            ));
        }
        warnings
    }

    fn tail(&self) -> LogTail {
        LogTail {
            path: self.log.clone(),
            text: self.log_tail(ERROR_TAIL_LINES),
        }
    }

    /// The last `lines` lines of `relay.log`, or a note saying why there are none.
    /// The relay as a load target, through the guard: a relay lt started must listen on
    /// loopback only (one also reachable from other hosts is refused), and its URL still
    /// passes the guard as every target does.
    pub fn loopback_target(&self) -> Result<crate::guard::Target, String> {
        if let Some(addr) = self.exposed.first() {
            return Err(format!(
                "refusing to load relay {}: it also listens on {addr} port {}, reachable from other hosts; bind it to 127.0.0.1 (as scripts/relay-configs do)",
                self.name, self.port
            ));
        }
        let allow = crate::guard::AllowList::parse(&[])?;
        crate::guard::check(&self.url, &allow, &crate::guard::system_resolver)
            .map(|t| t.with_tls(self.tls.clone()))
            .map_err(|refusal| format!("refusing to send load: {refusal}"))
    }

    pub fn log_tail(&self, lines: usize) -> String {
        match read_tail(&self.log, lines) {
            Ok(text) => text,
            Err(e) => format!("(cannot read {}: {e})", self.log.display()),
        }
    }

    /// Whether the relay's shell is still running (`false` once the relay died or was
    /// stopped). Does not reap it, so its group id cannot be reused before `stop`.
    pub fn is_alive(&mut self) -> bool {
        self.child.is_some() && self.peek_exit().is_none()
    }

    /// SIGTERM to the group, up to `grace` for it to exit, then SIGKILL to the group; reaps
    /// the shell and waits until no process of the group runs.
    pub fn stop(mut self, grace: Duration) -> Result<ExitInfo, StopError> {
        self.shutdown(grace)
    }

    fn shutdown(&mut self, grace: Duration) -> Result<ExitInfo, StopError> {
        let Some(mut child) = self.child.take() else {
            return Err(self.wait_error(io::Error::other("already stopped")));
        };
        let exited_before_stop = self.peek_exit().is_some();
        signal_group(self.pid, libc::SIGTERM);
        let deadline = Instant::now() + grace;
        let mut killed = false;
        while !self.group_done() {
            if Instant::now() >= deadline {
                killed = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Also catches anything the command left running in the background. The shell is
        // not reaped yet, so the group id still names our group.
        signal_group(self.pid, libc::SIGKILL);
        let status = child.wait().map_err(|e| self.wait_error(e))?;
        self.await_empty_group()?;
        Ok(ExitInfo {
            status,
            killed,
            exited_before_stop,
        })
    }

    /// The shell has exited and no other process of the group runs (when `/proc` says).
    fn group_done(&self) -> bool {
        if self.peek_exit().is_none() {
            return false;
        }
        // The exited shell is a zombie until reaped, so it is not counted as running.
        procfs::running_members(self.pid).is_none_or(|n| n == 0)
    }

    /// SIGKILL is delivered asynchronously; give the kernel a moment before calling it a leak.
    fn await_empty_group(&self) -> Result<(), StopError> {
        let deadline = Instant::now() + KILL_SETTLE;
        loop {
            let running = procfs::running_members(self.pid).unwrap_or(0);
            if running == 0 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(StopError::Survivors {
                    name: self.name.clone(),
                    pid: self.pid,
                    count: running,
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn wait_error(&self, source: io::Error) -> StopError {
        StopError::Wait {
            name: self.name.clone(),
            pid: self.pid,
            source,
        }
    }

    /// The shell's exit status if it has exited, without reaping it (`waitid` with
    /// `WNOWAIT`): while it is an unreaped zombie its pid, and so our group id, stays
    /// reserved, and signalling the group cannot reach an unrelated process.
    fn peek_exit(&self) -> Option<ExitStatus> {
        // SAFETY: siginfo_t is plain old data; all zeroes is a valid value, and si_pid stays
        // 0 when WNOHANG finds no state change.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
        // SAFETY: waitid(2) writes only into `info`, which lives for the call; WNOWAIT leaves
        // the child waitable, so std's Child::wait still reaps it later.
        let rc = unsafe { libc::waitid(libc::P_PID, self.pid as libc::id_t, &mut info, flags) };
        // SAFETY: waitid filled `info` for a SIGCHLD-style record, whose si_pid/si_status
        // fields are the ones these accessors read.
        let (pid, code, value) = unsafe { (info.si_pid(), info.si_code, info.si_status()) };
        if rc != 0 || pid == 0 {
            return None;
        }
        // Rebuild the wait(2) status word std understands.
        let raw = match code {
            libc::CLD_EXITED => (value & 0xff) << 8,
            libc::CLD_DUMPED => value | 0x80,
            _ => value,
        };
        Some(ExitStatus::from_raw(raw))
    }
}

impl Drop for RunningRelay {
    /// Stops the group if `stop` was not called; always reaps the shell.
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.shutdown(DEFAULT_GRACE);
        }
    }
}

/// Sends `signal` to the process group `pgid`. A group that is already gone (ESRCH) is fine.
fn signal_group(pgid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) with a negative pid signals the process group lt created
    // (process_group(0) makes the shell's pid the group id); it touches no memory.
    unsafe { libc::kill(-(pgid as libc::pid_t), signal) };
}

/// The last `lines` lines of the file at `path`, read from at most its last 64 KiB.
fn read_tail(path: &Path, lines: usize) -> io::Result<String> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let start = len.saturating_sub(TAIL_BYTES);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    // A read that started mid-file begins with a partial line: drop it.
    let first = usize::from(start > 0);
    let from = all.len().saturating_sub(lines).max(first);
    Ok(all[from..].join("\n"))
}
