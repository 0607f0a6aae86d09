//! Starts the real relays lt is tested against (nostr-rs-relay, rnostr) on free loopback ports,
//! each with a fresh data directory, and stops them when dropped.
//!
//! The binaries come from `scripts/install-relays` (into `.relays/bin/` or
//! `$LT_RELAYS_DIR/bin/`); how each relay is configured and behaves is in
//! `docs/relays.md`. Each relay runs in its own process group so that a test that panics
//! still leaves nothing behind: `Drop` signals the whole group.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a relay may take to answer its NIP-11 document (both take ~0.1 s here).
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a relay may take to exit after SIGTERM before it gets SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(3);
/// Sizes the raised limits allow: far above anything lt's traces contain.
const RAISED_BYTES: usize = 16 << 20;

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
    /// Lift rate, size and subscription limits (for tests that push volume or large events);
    /// otherwise each relay runs with its defaults, the behaviour users meet.
    pub raise_limits: bool,
}

/// A running relay. Dropping it stops the process group and deletes the data directory.
pub struct Relay {
    pub kind: RelayKind,
    /// `ws://127.0.0.1:PORT/`
    pub url: String,
    pub port: u16,
    pub pid: u32,
    child: Child,
    /// Holds `config.toml`, `relay.log` and `data/` (the database).
    data_dir: tempfile::TempDir,
}

/// `$LT_RELAYS_DIR/bin/NAME`, else `<crate>/.relays/bin/NAME`, if it exists.
pub fn binary(name: &str) -> Option<PathBuf> {
    let root = match std::env::var_os("LT_RELAYS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join(".relays"),
    };
    let path = root.join("bin").join(name);
    path.is_file().then_some(path)
}

impl Relay {
    /// Starts `kind` and waits until it answers NIP-11. Panics with the relay's log tail if
    /// the binary is missing, it exits, or it is not ready within 15 s.
    pub fn start(kind: RelayKind, opts: RelayOptions) -> Relay {
        let name = kind.binary_name();
        let bin = binary(name)
            .unwrap_or_else(|| panic!("relay binary {name} not found: run scripts/install-relays"));
        // Another test may take the free port between our probe and the relay's bind; a
        // fresh port makes that a retry instead of a failure.
        let mut attempt = 1;
        loop {
            let mut relay = Relay::spawn(kind, &bin, opts);
            match relay.wait_ready() {
                Ok(()) => return relay,
                Err(Failure::AddrInUse) if attempt < 3 => attempt += 1,
                Err(Failure::AddrInUse) => panic!(
                    "{name}: port {} stayed in use after {attempt} tries\n--- log tail ---\n{}",
                    relay.port,
                    relay.log_tail(40)
                ),
                Err(Failure::Exited(status)) => panic!(
                    "{name} exited before it was ready ({status})\n--- log tail ---\n{}",
                    relay.log_tail(40)
                ),
                Err(Failure::Timeout(last)) => panic!(
                    "{name} not ready on port {} within {READY_TIMEOUT:?} (last: {last})\n\
                     --- log tail ---\n{}",
                    relay.port,
                    relay.log_tail(40)
                ),
            }
        }
    }

    fn spawn(kind: RelayKind, bin: &Path, opts: RelayOptions) -> Relay {
        let data_dir = tempfile::Builder::new()
            .prefix(&format!("lt-{}-", kind.binary_name()))
            .tempdir()
            .expect("create relay temp dir");
        let port = free_port();
        let db = data_dir.path().join("data");
        std::fs::create_dir_all(&db).expect("create relay data dir");
        let config = data_dir.path().join("config.toml");
        std::fs::write(&config, config_toml(kind, port, opts)).expect("write relay config");
        let log = File::create(data_dir.path().join("relay.log")).expect("create relay log");
        let log_err = log.try_clone().expect("clone relay log handle");

        let mut cmd = Command::new(bin);
        match kind {
            // --db must exist or it exits.
            RelayKind::NostrRsRelay => cmd.arg("--config").arg(&config).arg("--db").arg(&db),
            // It creates data/events itself; every config key can also be set by env.
            RelayKind::Rnostr => cmd
                .arg("relay")
                .arg("-c")
                .arg(&config)
                .env("RNOSTR_DATA__PATH", &db),
        };
        cmd.current_dir(data_dir.path())
            // Both log a line per stored event at INFO: too much under load.
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            // Its own group, so Drop can signal everything it started.
            .process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        Relay {
            kind,
            url: format!("ws://127.0.0.1:{port}/"),
            port,
            pid: child.id(),
            child,
            data_dir,
        }
    }

    /// Polls NIP-11 every 50 ms: the relay is ready when it answers 200 with a JSON object.
    fn wait_ready(&mut self) -> Result<(), Failure> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = self.log_tail(40);
                return Err(if log.contains("ddress already in use") {
                    Failure::AddrInUse
                } else {
                    Failure::Exited(status.to_string())
                });
            }
            let last = match nip11(self.port) {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if Instant::now() > deadline {
                return Err(Failure::Timeout(last));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The temp directory: `config.toml`, `relay.log`, and `data/` with the database.
    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// The last `lines` lines of the relay's stdout and stderr.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = match std::fs::read(self.data_dir.path().join("relay.log")) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => return format!("(no log: {e})"),
        };
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Relay {
    /// SIGTERM to the group, up to 3 s to exit, then SIGKILL; always reaps the child so its
    /// pid is really gone when this returns.
    fn drop(&mut self) {
        let group = -(self.pid as libc::pid_t);
        // SAFETY: kill(2) with a negative pid signals the process group we created for the
        // relay (process_group(0) makes its pid the group id); it touches no memory.
        unsafe { libc::kill(group, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // SAFETY: as above. Also catches anything the relay left in its group.
        unsafe { libc::kill(group, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

enum Failure {
    AddrInUse,
    Exited(String),
    Timeout(String),
}

/// A port nothing listens on right now (the kernel's pick for :0).
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

fn config_toml(kind: RelayKind, port: u16, opts: RelayOptions) -> String {
    match kind {
        RelayKind::NostrRsRelay => {
            let mut c = format!(
                "[info]\nrelay_url = \"ws://127.0.0.1:{port}/\"\n\
                 [database]\nengine = \"sqlite\"\n\
                 [network]\naddress = \"127.0.0.1\"\nport = {port}\n\
                 [options]\nreject_future_seconds = 1800\n"
            );
            if opts.raise_limits {
                // Keys from nostr-rs-relay 0.8.12 `src/config.rs` (`Limits`). 0 means no rate
                // limit; sizes default to 262144. Subscriptions per connection are fixed at 32
                // in its source, not configurable.
                c.push_str(&format!(
                    "[limits]\nmessages_per_sec = 0\nsubscriptions_per_min = 0\n\
                     max_event_bytes = {RAISED_BYTES}\nmax_ws_message_bytes = {RAISED_BYTES}\n\
                     max_ws_frame_bytes = {RAISED_BYTES}\nbroadcast_buffer = 65536\n\
                     event_persist_buffer = 16384\n"
                ));
            }
            c
        }
        RelayKind::Rnostr => {
            let mut c = format!(
                "[network]\nhost = \"127.0.0.1\"\nport = {port}\n\
                 [metrics]\nenabled = false\n\
                 [rate_limiter]\nenabled = false\n"
            );
            if opts.raise_limits {
                // Keys from nostr-relay 0.4.8 `src/setting.rs` (`Limitation`, read by rnostr
                // 0.4.8); defaults are 524288 bytes per message (also its WebSocket frame
                // size), 20 subscriptions per connection, 10 filters per REQ, a filter's
                // `limit` clamped to 300 (and set to 300 when absent), 100-byte subscription
                // ids, 5000 tags. The created_at window stays as it is.
                c.push_str(&format!(
                    "[limitation]\nmax_message_length = {RAISED_BYTES}\n\
                     max_subscriptions = 10000\nmax_filters = 1000\nmax_limit = 100000\n\
                     max_subid_length = 1024\nmax_event_tags = 100000\n"
                ));
            }
            c
        }
    }
}

/// One NIP-11 request over a plain socket: `Ok` on 200 with a JSON object as the body.
fn nip11(port: u16) -> Result<(), String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_millis(500)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    let req = format!(
        "GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: application/nostr+json\r\n\
         Connection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).map_err(|e| e.to_string())?;
    let resp = String::from_utf8_lossy(&resp);
    let status = resp.lines().next().unwrap_or("");
    if !status.starts_with("HTTP/1.1 200") {
        return Err(format!("status {status:?}"));
    }
    // The body may be chunked; the JSON object sits between the first '{' and the last '}'.
    let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let json = match (body.find('{'), body.rfind('}')) {
        (Some(a), Some(b)) if a < b => &body[a..=b],
        _ => return Err(format!("no JSON object in {body:?}")),
    };
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(v) if v.is_object() => Ok(()),
        _ => Err(format!("not a JSON object: {json:?}")),
    }
}
