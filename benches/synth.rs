//! `cargo bench --bench synth`: synth throughput, capture size and memory, each as a ratio
//! against a baseline measured in the same run.
//!
//! - throughput: wall time of the raw secp256k1 work a trace needs (a key creation plus a
//!   BIP-340 signature per view, a signature per other event) on all cores, divided by the
//!   wall time of `lt synth` making that trace (goal ≥ 0.8);
//! - size: file bytes per event against the floor of 64-byte signature + 32-byte id + the
//!   zstd-compressed rest of the frames (goal ≤ 1.3);
//! - memory: peak RSS of `lt synth` at 1M records against 100k records (goal: flat).
//!
//! `LT_BENCH_RECORDS` (default 1000000) sets the size of the large trace.

use std::path::Path;
use std::process::Command;

use lt_testkit::stats::median;
use std::time::Instant;

use lt::capture::{Op, Role, TraceReader};
use lt::nostr::keys;
use lt::workload::Options;
use rayon::prelude::*;
use secp256k1::SECP256K1;

/// Runs `lt synth` for about `records` records; returns (wall seconds, peak RSS KiB).
// The child is reaped by wait4, not Child::wait, to get its own peak RSS.
#[allow(clippy::zombie_processes)]
fn synth(records: f64, out: &Path) -> (f64, u64) {
    // 500 s of traffic at the rate that gives the asked record count.
    let probe = Options {
        rate_eps: 1.0,
        duration_s: 500.0,
        ..Options::default()
    };
    let rate = records / probe.expected_records();
    let started = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_lt"))
        .args([
            "synth",
            "--force",
            "--seed",
            "42",
            "--duration",
            "500",
            "--rate",
        ])
        .arg(format!("{rate}"))
        .arg("-o")
        .arg(out)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn lt synth");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data, zeroed is a valid value; wait4 fills it for our child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let mut peak_kib = 0u64;
    // Poll VmHWM of the child's own address space: ru_maxrss would include this bench
    // process's RSS at fork time (exec keeps the old address space's high-water mark).
    loop {
        let rc = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if rc == pid {
            break;
        }
        assert_eq!(rc, 0, "wait4 failed");
        let hwm = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmHWM:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse::<u64>().ok())
            })
            .unwrap_or(0);
        peak_kib = peak_kib.max(hwm);
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "lt synth failed"
    );
    (started.elapsed().as_secs_f64(), peak_kib)
}

struct Counts {
    views: u64,
    others: u64,
    records: u64,
    floor_rest: u64,
}

/// Reads the trace back: event counts for the baseline, and the size floor (frames without
/// id and sig, compressed in 1 MiB blocks at the writer's level).
fn count(path: &Path) -> Counts {
    let mut c = Counts {
        views: 0,
        others: 0,
        records: 0,
        floor_rest: 0,
    };
    let mut block = Vec::with_capacity(2 << 20);
    let flush = |block: &mut Vec<u8>, c: &mut Counts| {
        c.floor_rest += zstd::bulk::compress(block, lt::capture::stream::ZSTD_LEVEL)
            .expect("compress")
            .len() as u64;
        block.clear();
    };
    for r in TraceReader::open(path).expect("open trace") {
        let r = r.expect("read record");
        c.records += 1;
        match r.op {
            Op::Event {
                role: Role::View, ..
            } => c.views += 1,
            Op::Event { .. } => c.others += 1,
            _ => {}
        }
        let mut rest = r.frame.clone();
        if r.op.is_event() {
            // `"id":"<64 hex>",` and `,"sig":"<128 hex>"` are what the floor counts as 96 bytes.
            if let Some(i) = rest.find("\"id\":\"") {
                rest.replace_range(i..i + 6 + 64 + 2, "");
            }
            if let Some(i) = rest.find(",\"sig\":\"") {
                rest.replace_range(i..i + 8 + 128 + 1, "");
            }
        }
        block.extend_from_slice(rest.as_bytes());
        if block.len() >= 1 << 20 {
            flush(&mut block, &mut c);
        }
    }
    flush(&mut block, &mut c);
    c
}

/// The raw secp256k1 work for `views` fresh-key views and `others` creator-signed events,
/// on all cores; returns wall seconds.
fn raw_work(views: u64, others: u64) -> f64 {
    let creator = keys::keypair_from_material([7u8; 32]);
    let started = Instant::now();
    let sigs: u64 = (0..views + others)
        .into_par_iter()
        .map(|i| {
            let mut material = [1u8; 32];
            material[..8].copy_from_slice(&i.to_le_bytes());
            let msg = material;
            let sig = if i < views {
                let kp = keys::keypair_from_material(material);
                SECP256K1.sign_schnorr_with_aux_rand(&msg, &kp, &material)
            } else {
                SECP256K1.sign_schnorr_with_aux_rand(&msg, &creator, &material)
            };
            u64::from(sig.as_ref()[0] & 1)
        })
        .sum();
    std::hint::black_box(sigs);
    started.elapsed().as_secs_f64()
}

fn main() {
    let big: f64 = std::env::var("LT_BENCH_RECORDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1e6);
    let dir = tempfile::tempdir().expect("tempdir");
    let small_path = dir.path().join("small.ltc");
    let big_path = dir.path().join("big.ltc");
    let threads = rayon::current_num_threads();

    let rounds: usize = std::env::var("LT_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);

    let (_, rss_small) = synth(big / 10.0, &small_path);
    // Interleaved rounds, medians: this machine's speed drifts by ~10% over a minute, and
    // interleaving exposes both sides to the same drift.
    let (mut synth_s, mut raw_s, mut rss_big) = (Vec::new(), Vec::new(), 0);
    let mut counts = None;
    for _ in 0..rounds {
        let (t, rss) = synth(big, &big_path);
        synth_s.push(t);
        rss_big = rss_big.max(rss);
        let c = counts.get_or_insert_with(|| count(&big_path));
        raw_s.push(raw_work(c.views, c.others));
    }
    let c = counts.expect("at least one round");
    let (t_synth, t_raw) = (median(&synth_s), median(&raw_s));
    let events = c.views + c.others;
    let file_bytes = std::fs::metadata(&big_path).expect("stat").len();
    let floor = 96 * events + c.floor_rest;

    println!("synth bench, {threads} threads, median of {rounds} interleaved rounds");
    println!(
        "  throughput  lt synth {} records ({} events) in {t_synth:.2} s; raw secp256k1 work ({} key+sign, {} sign) in {t_raw:.2} s",
        c.records, events, c.views, c.others
    );
    println!(
        "              ratio raw/synth = {:.2}  (goal >= 0.8)   [{:.0} events/s vs raw {:.0}/s]",
        t_raw / t_synth,
        events as f64 / t_synth,
        events as f64 / t_raw
    );
    println!(
        "  size        {:.1} B/event on disk vs floor {:.1} B/event (96 + compressed rest): ratio {:.2}  (goal <= 1.3)",
        file_bytes as f64 / events as f64,
        floor as f64 / events as f64,
        file_bytes as f64 / floor as f64
    );
    println!(
        "  memory      peak RSS {} KiB at {:.0} records vs {} KiB at {:.0}: ratio {:.2}  (goal: flat, ~1.0)",
        rss_big,
        big,
        rss_small,
        big / 10.0,
        rss_big as f64 / rss_small as f64
    );
}
