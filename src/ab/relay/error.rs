//! What can go wrong starting and stopping a relay. Each message is one line that says what
//! and where; start errors after the relay ran add its log tail on the following lines.

use std::fmt;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use super::KILL_SETTLE;

/// The last lines of `relay.log`, printed under an error's first line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogTail {
    pub path: PathBuf,
    pub text: String,
}

impl fmt::Display for LogTail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.text.trim().is_empty() {
            return write!(f, "\n({} is empty)", self.path.display());
        }
        write!(f, "\n--- end of {} ---\n{}", self.path.display(), self.text)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "relay {name}: data dir {} is not empty; a stale database turns replayed events into \
         `duplicate:`, so give each run a fresh run dir",
        path.display()
    )]
    DataDirNotEmpty { name: String, path: PathBuf },
    #[error("relay {name}: {what} {}: {source}", path.display())]
    Io {
        name: String,
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("relay {name}: config template {}: {reason}", path.display())]
    Config {
        name: String,
        path: PathBuf,
        reason: String,
    },
    #[error("relay {name}: {reason}")]
    Command { name: String, reason: String },
    #[error("relay {name}: cannot run /bin/sh: {source}")]
    Spawn { name: String, source: io::Error },
    #[error(
        "relay {name} exited with {} before answering on 127.0.0.1:{port}{log_tail}",
        describe(*status)
    )]
    Exited {
        name: String,
        port: u16,
        status: ExitStatus,
        log_tail: LogTail,
    },
    #[error(
        "relay {name} did not answer on 127.0.0.1:{port} within {}: {last_error}{log_tail}",
        seconds(*timeout)
    )]
    Timeout {
        name: String,
        port: u16,
        timeout: Duration,
        last_error: String,
        log_tail: LogTail,
    },
    #[error(
        "relay {name} found its port in use {attempts} times in a row \
         (last 127.0.0.1:{port}){log_tail}"
    )]
    AddrInUse {
        name: String,
        port: u16,
        attempts: u32,
        log_tail: LogTail,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum StopError {
    #[error("relay {name} (pid {pid}): waiting for it failed: {source}")]
    Wait {
        name: String,
        pid: u32,
        source: io::Error,
    },
    #[error(
        "relay {name}: {count} process(es) of group {pid} still running {}s after SIGKILL",
        KILL_SETTLE.as_secs()
    )]
    Survivors {
        name: String,
        pid: u32,
        count: usize,
    },
}

/// A `map_err` adapter for an I/O failure of build `name` doing `what` on `path`.
pub(super) fn io_error(
    name: &str,
    what: &'static str,
    path: &Path,
) -> impl FnOnce(io::Error) -> StartError {
    let (name, path) = (name.to_string(), path.to_path_buf());
    move |source| StartError::Io {
        name,
        what,
        path,
        source,
    }
}

/// "exit code 3", "exit code 143 (signal 15 in the relay)", "signal 9".
pub(super) fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) if code > 128 && code < 160 => {
            format!("exit code {code} (signal {} in the relay)", code - 128)
        }
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        (None, None) => status.to_string(),
    }
}

/// "1s", "2.5s", "0.05s".
fn seconds(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}
