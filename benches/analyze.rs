//! `cargo bench --bench analyze`: rows per second `lt analyze` reads from a results file of
//! 5M outcome rows (goal ≥ 5M rows/s), against a baseline measured in the same run (reading
//! and decompressing the same blocks without decoding them), and its peak RSS at 1M and at
//! 5M rows (goal: flat).
//!
//! `LT_BENCH_ROWS` sets the big file's row count (default 5,000,000); `LT_BENCH_KEEP=PATH`
//! keeps a copy of the big file for profiling.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use lt::capture::container::{BlockReader, FileKind};
use lt::capture::results::{
    self, ConnectRow, Header, Machine, Outcome, OutcomeRow, ResultsWriter, Row, Sample, Trailer,
};
use lt::capture::{Op, Query, Role};
use lt::nostr::Prefix;
use lt_testkit::stats::median;

/// Writes a results file shaped like a real run at 10k records/s: mostly views answered in
/// a few ms, some reads, mirrors, rejects and timeouts, one sample per second.
fn make(path: &Path, rows: u64) {
    let header = Header {
        format_version: results::VERSION,
        lt_version: "bench".into(),
        trace_fingerprint: "bench".into(),
        trace_records: rows,
        trace_header: lt::capture::Header {
            format_version: 1,
            lt_version: "bench".into(),
            generator: "bench".into(),
            schema_source: "bench".into(),
            source: lt::capture::Source::Synth(lt::workload::Options::default()),
        },
        options: Default::default(),
        target: "127.0.0.1:1".into(),
        started_at: "2026-11-27T00:00:00Z".into(),
        machine: Machine {
            cores: 2,
            kernel: "bench".into(),
            cpu: "bench".into(),
        },
        preflight: None,
        part: None,
        start_at: None,
        scrapes: Vec::new(),
    };
    let f = BufWriter::with_capacity(1 << 20, File::create(path).expect("create"));
    let mut w = ResultsWriter::new(f, &header).expect("header");
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let per_s = 10_000u64;
    for c in 0..1000 {
        w.push(&Row::Connect(ConnectRow {
            conn: c,
            at_ns: 0,
            initial: true,
            latency_ns: 1_000_000,
            error: None,
            tcp_ns: None,
            tls_ns: None,
            upgrade_ns: None,
        }))
        .expect("write");
    }
    for i in 0..rows {
        let intended = i * 1_000_000_000 / per_s;
        let roll: u32 = rng.random_range(0..1000);
        let op = match roll {
            0..=799 => Op::Event {
                kind: 30079,
                role: Role::View,
            },
            800..=849 => Op::Event {
                kind: 30078,
                role: Role::VideoPost,
            },
            850..=899 => Op::Event {
                kind: 1063,
                role: Role::Nip94Mirror,
            },
            900..=949 => Op::Req { query: Query::Feed },
            _ => Op::Close,
        };
        let outcome = match rng.random_range(0..1000u32) {
            0..=989 => Outcome::Ok,
            990..=994 => Outcome::Rejected {
                prefix: Prefix::RateLimited,
                message: "rate-limited: slow down".into(),
            },
            995..=997 => Outcome::Duplicate,
            _ => Outcome::Timeout,
        };
        let lag = rng.random_range(1_000..200_000u64);
        let service = (rng.random::<f64>().powi(4) * 50e6) as u64 + 200_000;
        let done = !matches!(outcome, Outcome::Timeout);
        w.push(&Row::Outcome(OutcomeRow {
            index: i,
            conn: rng.random_range(0..1000),
            op,
            intended_ns: intended,
            sent_ns: Some(intended + lag),
            completed_ns: done.then_some(intended + lag + service),
            outcome,
            bytes: 400,
            events_received: if matches!(op, Op::Req { .. }) { 50 } else { 0 },
            // One row in 20 waited on the relay for half its lag.
            held_ns: if i % 20 == 0 { lag / 2 } else { 0 },
            recorded: None,
        }))
        .expect("write");
        if (i + 1) % per_s == 0 {
            w.push(&Row::Sample(Sample {
                at_ns: intended,
                relay_cpu_pct: Some(80.0),
                relay_rss_bytes: Some(200 << 20),
                harness_cpu_pct: 30.0,
                harness_rss_bytes: 80 << 20,
                lag_max_us: 300,
                connections_open: 1000,
                in_flight: 40,
                sent: i,
                completed: i,
            }))
            .expect("write");
            w.flush().expect("write");
        }
    }
    w.finish(Trailer {
        elapsed_ns: rows * 1_000_000_000 / per_s,
        ..Default::default()
    })
    .expect("trailer");
}

/// Reads every block (CRC check and zstd) without decoding a row: the floor for a pass.
fn read_blocks(path: &Path) -> f64 {
    let started = Instant::now();
    let f = std::io::BufReader::with_capacity(1 << 20, File::open(path).expect("open"));
    let mut r = BlockReader::open(f, FileKind::Results, results::VERSION).expect("prefix");
    let mut bytes = 0usize;
    while let Some(b) = r.next_block().expect("block") {
        bytes += b.data.len();
    }
    assert!(bytes > 0);
    started.elapsed().as_secs_f64()
}

/// Runs `lt analyze` on `path`; returns (seconds, peak RSS in KiB) of the child.
// The child is reaped by wait4, not Child::wait, to get its own peak RSS.
#[allow(clippy::zombie_processes)]
fn analyze(path: &Path, out: &Path) -> (f64, u64) {
    let started = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_lt"))
        .arg("analyze")
        .arg(path)
        .arg("--out-dir")
        .arg(out)
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn lt analyze");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(rc, pid, "wait4");
    assert_eq!(status, 0, "lt analyze failed");
    (started.elapsed().as_secs_f64(), usage.ru_maxrss as u64)
}

fn main() {
    let big: u64 = std::env::var("LT_BENCH_ROWS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let small_path = dir.path().join("small.ltr");
    let big_path = dir.path().join("big.ltr");
    let small = big / 5;
    make(&small_path, small);
    make(&big_path, big);
    if let Some(keep) = std::env::var_os("LT_BENCH_KEEP") {
        // For profiling by hand: `perf record lt analyze $LT_BENCH_KEEP`.
        std::fs::copy(&big_path, &keep).expect("copy the results file");
    }
    let size = std::fs::metadata(&big_path).map(|m| m.len()).unwrap_or(0);
    println!(
        "results file: {big} outcome rows, {:.1} MB ({:.1} B/row)",
        size as f64 / 1e6,
        size as f64 / big as f64
    );
    let (mut floor, mut pass, mut rss_big, mut rss_small) = (vec![], vec![], 0, 0);
    for round in 0..3 {
        floor.push(read_blocks(&big_path));
        let (secs, rss) = analyze(&big_path, &dir.path().join(format!("out-big-{round}")));
        pass.push(secs);
        rss_big = rss_big.max(rss);
        let (_, rss) = analyze(&small_path, &dir.path().join(format!("out-small-{round}")));
        rss_small = rss_small.max(rss);
    }
    let (floor, pass) = (median(&floor), median(&pass));
    let rows = big as f64;
    println!(
        "lt analyze: {pass:.2} s for {big} rows = {:.2}M rows/s (goal ≥ 5M rows/s)",
        rows / pass / 1e6
    );
    println!(
        "baseline (read + CRC + zstd only, no decoding): {floor:.2} s = {:.2}M rows/s; analyze / baseline speed ratio {:.2}",
        rows / floor / 1e6,
        floor / pass
    );
    println!(
        "peak RSS: {:.1} MB at {small} rows, {:.1} MB at {big} rows: ratio {:.2} (goal: flat)",
        rss_small as f64 / 1024.0,
        rss_big as f64 / 1024.0,
        rss_big as f64 / rss_small.max(1) as f64
    );
}
