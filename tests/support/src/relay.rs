//! The real relays lt is tested against (nostr-rs-relay, rnostr), started on free loopback
//! ports with fresh data directories by the launcher `lt ab` ships (`lt::ab::relay`), from
//! the config templates in `scripts/relay-configs/`, and stopped when dropped.
//!
//! The binaries come from `scripts/install-relays` (into `.relays/bin/` or
//! `$LT_RELAYS_DIR/bin/`); this is the one place tests look for them, and a missing one fails
//! the test that needs it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lt::ab::relay::{self, BuildSpec, RunningRelay};

/// How long a relay may take to answer (both take ~0.1 s here).
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a relay may take to exit after SIGTERM before it gets SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayKind {
    NostrRsRelay,
    Rnostr,
}

impl RelayKind {
    /// For tests that run against both relays.
    pub const ALL: [RelayKind; 2] = [RelayKind::NostrRsRelay, RelayKind::Rnostr];

    /// The installed binary's name.
    pub fn binary_name(self) -> &'static str {
        match self {
            RelayKind::NostrRsRelay => "nostr-rs-relay",
            RelayKind::Rnostr => "rnostr",
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct RelayOptions {
    /// Lift rate, size and subscription limits (for tests that push volume or large events):
    /// `scripts/relay-configs/NAME.toml`, as `lt ab` users get. Otherwise each relay runs with
    /// its defaults (`NAME-defaults.toml`), the behaviour users meet.
    pub raise_limits: bool,
}

/// A running relay. Dropping it stops the process group and deletes the data directory.
pub struct Relay {
    pub kind: RelayKind,
    /// `ws://127.0.0.1:PORT/`
    pub url: String,
    pub port: u16,
    /// The relay process itself (to sample with `--relay-pid`).
    pub pid: u32,
    running: Option<RunningRelay>,
    /// The run directory: the filled-in config, `relay.log` and `data/` (the database).
    run_dir: tempfile::TempDir,
}

/// lt's repository: this crate lives in its `tests/support/`.
fn repository() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// `$LT_RELAYS_DIR/bin/NAME`, else `<repository>/.relays/bin/NAME`, if it exists.
pub fn binary(name: &str) -> Option<PathBuf> {
    let root = match std::env::var_os("LT_RELAYS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => repository().join(".relays"),
    };
    let path = root.join("bin").join(name);
    path.is_file().then_some(path)
}

/// The installed binary `name`; panics, naming the install script, when it is missing.
pub fn installed(name: &str) -> PathBuf {
    binary(name).unwrap_or_else(|| {
        panic!("relay binary {name} not found: run scripts/install-relays (or set LT_RELAYS_DIR)")
    })
}

/// `scripts/relay-configs/NAME.toml` (raised limits) or `NAME-defaults.toml`.
pub fn config_template(kind: RelayKind, opts: RelayOptions) -> PathBuf {
    let variant = if opts.raise_limits { "" } else { "-defaults" };
    repository()
        .join("scripts/relay-configs")
        .join(format!("{}{variant}.toml", kind.binary_name()))
}

/// The command `lt ab` users give for `kind` (as in the README), with the installed binary.
pub fn command(kind: RelayKind) -> String {
    let bin = installed(kind.binary_name());
    let bin = relay::shell_quote(bin.to_str().expect("UTF-8 relay path"));
    match kind {
        // Both log a line per stored event at INFO: too much under load.
        RelayKind::NostrRsRelay => {
            format!("RUST_LOG=warn exec {bin} --config {{config}} --db {{dir}}")
        }
        RelayKind::Rnostr => {
            format!("RUST_LOG=warn RNOSTR_DATA__PATH={{dir}} exec {bin} relay -c {{config}}")
        }
    }
}

impl Relay {
    /// Starts `kind` and waits until it answers. Panics with the launcher's error (and the
    /// relay's log tail) if the binary is missing, the relay exits, or it is not ready within
    /// 15 s.
    pub fn start(kind: RelayKind, opts: RelayOptions) -> Relay {
        Relay::start_with_template(kind, &config_template(kind, opts))
    }

    /// As [`Relay::start`], from another config template (with `{port}` and `{dir}`).
    pub fn start_with_template(kind: RelayKind, template: &Path) -> Relay {
        let name = kind.binary_name();
        let spec = BuildSpec::parse(
            &format!("{name}={}", command(kind)),
            Some(template.to_owned()),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let run_dir = tempfile::Builder::new()
            .prefix(&format!("lt-{name}-"))
            .tempdir()
            .expect("create relay run dir");
        let running = relay::start(&spec, run_dir.path(), READY_TIMEOUT)
            .unwrap_or_else(|e| panic!("{name} did not start: {e}"));
        Relay {
            kind,
            url: running.url.clone(),
            port: running.port,
            pid: running.relay_pid,
            running: Some(running),
            run_dir,
        }
    }

    /// The run directory: the config, `relay.log`, and `data/` with the database.
    pub fn data_dir(&self) -> &Path {
        self.run_dir.path()
    }

    /// The last `lines` lines of the relay's stdout and stderr.
    pub fn log_tail(&self, lines: usize) -> String {
        self.running
            .as_ref()
            .map_or_else(String::new, |r| r.log_tail(lines))
    }
}

impl Drop for Relay {
    /// SIGTERM to the group, up to 3 s to exit, then SIGKILL (see `RunningRelay::stop`).
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            let _ = running.stop(STOP_TIMEOUT);
        }
    }
}
