//! `lt record`: real clients through a WebSocket proxy into a trace.
//!
//! Clients connect to the proxy; each gets its own connection to the upstream relay, and
//! every frame goes through unchanged, both ways (`proxy.rs`). Each text frame a client
//! sends becomes a trace record, kept until the relay answers it so the answer can go in
//! the record (`book.rs`); records are written in the order they were sent, a block at
//! least every second, so a recording killed mid-way keeps all but its last second.

mod book;
mod proxy;
mod recover;
mod stamped;

use std::fs::{File, OpenOptions};
use std::io::BufWriter;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use tokio::sync::watch;

use book::Book;
pub use book::{Counts, AUTH_SKIPPED};
use proxy::{Note, Shared};
pub use recover::{recover, Recovered};

use crate::capture::trace::{Recording, Source, VERSION};
use crate::capture::{Header, TraceWriter, Trailer};
use crate::guard::Target;
use crate::transport::Stop;

pub struct Options {
    pub listen: SocketAddr,
    pub upstream: Target,
    /// For a wss:// upstream: CA files besides the system's roots.
    pub ca_files: Vec<PathBuf>,
    pub output: PathBuf,
    /// Stop by itself after this long.
    pub duration: Option<Duration>,
    /// How long a record waits for the relay's answer before it is written without one.
    pub answer_timeout: Duration,
}

/// Once a second while recording.
#[derive(Debug, Clone, Default)]
pub struct Status {
    pub elapsed: Duration,
    /// Client connections now open, and accepted so far.
    pub open: u64,
    pub connections: u64,
    /// Records waiting for the relay's answer (or the one before them) to be written.
    pub waiting: usize,
    pub counts: Counts,
}

/// Whoever shows a recording's progress.
pub trait RecordObserver: Send + Sync {
    /// The proxy listens: clients may connect.
    fn listening(&self, _at: SocketAddr) {}
    fn tick(&self, _status: &Status) {}
}

/// How a recording went.
#[derive(Debug, Clone)]
pub struct Summary {
    pub status: Status,
    pub trailer: Trailer,
    pub bytes: u64,
    /// Stopped by the stop handle (Ctrl-C), not by --duration.
    pub interrupted: bool,
    pub upstream_unreachable: u64,
    pub bad_handshakes: u64,
    pub client_aborts: u64,
    pub upstream_aborts: u64,
    pub client_protocol_errors: u64,
    pub upstream_protocol_errors: u64,
    pub control_frames: u64,
    pub info_requests: u64,
}

/// How often the recorder takes what the proxy read.
const POLL: Duration = Duration::from_millis(5);

/// How long open connections get to finish their close handshakes once recording stops.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// Records until `stop` is requested or `--duration` passes, then closes every client
/// connection (1001, going away) and completes the capture.
pub fn run(opts: Options, stop: Stop, watch_: Arc<dyn RecordObserver>) -> anyhow::Result<Summary> {
    let file = create_new(&opts.output)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        // One thread forwards: fewer cross-thread wake-ups per frame, and its ceiling
        // (~350k frames/s on a 2-core machine, `cargo bench --bench record`) is far above
        // what real clients send.
        .worker_threads(1)
        .thread_name("lt-record")
        .enable_all()
        .build()
        .context("starting the proxy's runtime")?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(opts.listen))
        .with_context(|| format!("listening on {}", opts.listen))?;
    let listen_at = listener.local_addr().unwrap_or(opts.listen);
    stamped::enable(&listener);
    let start = Instant::now();
    let header = Header {
        format_version: VERSION,
        lt_version: env!("CARGO_PKG_VERSION").to_owned(),
        generator: "lt record".into(),
        schema_source: "recorded clients".into(),
        source: Source::Recorded(Recording {
            upstream: opts.upstream.display_host(),
            started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        }),
    };
    let writer = TraceWriter::new(BufWriter::with_capacity(1 << 20, file), &header)
        .with_context(|| format!("writing {}", opts.output.display()))?;
    let (notes, inbox) = mpsc::channel::<Note>();
    let faults = Arc::new(proxy::Faults::default());
    let shared = Arc::new(Shared {
        upstream: opts.upstream.clone(),
        ca_files: opts.ca_files.clone(),
        notes,
        faults: faults.clone(),
        next_conn: std::sync::atomic::AtomicU32::new(0),
    });
    let (stop_tx, stop_rx) = watch::channel(false);

    // The recorder: the book and the file, off the forwarding path.
    let recorder = {
        let faults = faults.clone();
        let watch_ = watch_.clone();
        let output = opts.output.clone();
        let answer_timeout = opts.answer_timeout;
        std::thread::Builder::new()
            .name("lt-recorder".into())
            .spawn(move || {
                lower_priority();
                recorder(inbox, writer, start, answer_timeout, &faults, &*watch_)
                    .with_context(|| format!("writing {}", output.display()))
            })
            .context("starting the recorder thread")?
    };
    watch_.listening(listen_at);

    let deadline = opts.duration.map(|d| start + d);
    let interrupted = runtime.block_on(async {
        let mut sessions = tokio::task::JoinSet::new();
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        let interrupted = loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        sessions.spawn(proxy::serve(tcp, peer, shared.clone(), stop_rx.clone()));
                    }
                    // Out of descriptors and the like: say so, and keep serving the others.
                    Err(e) => {
                        eprintln!("lt record: accepting a connection on {listen_at}: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
                _ = tick.tick() => {
                    if stop.requested() {
                        break true;
                    }
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        break false;
                    }
                }
            }
        };
        drop(listener);
        let _ = stop_tx.send(true);
        let _ = tokio::time::timeout(STOP_GRACE, async {
            while sessions.join_next().await.is_some() {}
        })
        .await;
        sessions.abort_all();
        interrupted
    });
    // Dropping the runtime ends what is left; the last sender goes with `shared`, and the
    // recorder completes the file.
    drop(runtime);
    drop(shared);
    let (status, trailer, bytes) = recorder
        .join()
        .map_err(|_| anyhow!("the recorder thread panicked"))??;
    let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    Ok(Summary {
        status,
        trailer,
        bytes,
        interrupted,
        upstream_unreachable: get(&faults.upstream_unreachable),
        bad_handshakes: get(&faults.bad_handshakes),
        client_aborts: get(&faults.client_aborts),
        upstream_aborts: get(&faults.upstream_aborts),
        client_protocol_errors: get(&faults.client_protocol_errors),
        upstream_protocol_errors: get(&faults.upstream_protocol_errors),
        control_frames: get(&faults.control_frames),
        info_requests: get(&faults.info_requests),
    })
}

/// The recorder yields the CPU to forwarding: on a small machine, a recorder parsing a
/// large event while the client and the relay are busy delayed the proxy's next frame by
/// its scheduler slice (~3 ms). At nice 10 it is preempted when the proxy wakes. It falls
/// behind only while the machine is saturated, and catches up after.
fn lower_priority() {
    // SAFETY: setpriority on this thread's own id; failure leaves the priority as it was.
    unsafe {
        let tid = libc::gettid();
        let _ = libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10);
    }
}

/// A recording never replaces a file: it may be the only copy of real traffic.
fn create_new(path: &Path) -> anyhow::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => anyhow!(
                "{}: already exists; a recording never replaces a file (choose another -o)",
                path.display()
            ),
            _ => anyhow!("creating {}: {e}", path.display()),
        })
}

/// Takes the proxy's notes into the book and writes records as they complete; a block at
/// least every second. Ends when every sender is gone.
fn recorder(
    inbox: mpsc::Receiver<Note>,
    mut writer: TraceWriter<BufWriter<File>>,
    start: Instant,
    answer_timeout: Duration,
    faults: &proxy::Faults,
    watch_: &dyn RecordObserver,
) -> anyhow::Result<(Status, Trailer, u64)> {
    let mut book = Book::new(start, answer_timeout);
    let mut last_flush = Instant::now();
    let status = |book: &Book| Status {
        elapsed: start.elapsed(),
        open: faults.open.load(Ordering::Relaxed),
        connections: faults.connections.load(Ordering::Relaxed),
        waiting: book.pending(),
        counts: book.counts.clone(),
    };
    loop {
        // Polled rather than woken per note: a sender then never pays for waking this
        // thread, and the forwarding path stays free of it.
        let mut gone = false;
        loop {
            match inbox.try_recv() {
                Ok(Note::Client { conn, at, text }) => {
                    book.client_frame(conn, at, text.as_str().to_owned())
                }
                Ok(Note::Relay { conn, at, text }) => book.relay_frame(conn, at, text.as_str()),
                Ok(Note::Closed { conn, at }) => book.closed(conn, at),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    gone = true;
                    break;
                }
            }
        }
        while let Some(r) = book.pop_ready() {
            writer.push(&r)?;
        }
        if gone {
            break;
        }
        std::thread::sleep(POLL);
        if last_flush.elapsed() >= Duration::from_secs(1) {
            book.expire(Instant::now());
            while let Some(r) = book.pop_ready() {
                writer.push(&r)?;
            }
            writer.flush_block()?;
            last_flush = Instant::now();
            watch_.tick(&status(&book));
        }
    }
    for r in book.finish(Instant::now()) {
        writer.push(&r)?;
    }
    let final_status = status(&book);
    let (_, trailer, bytes) = writer.finish()?;
    Ok((final_status, trailer, bytes))
}
