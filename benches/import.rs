//! `cargo bench --bench import`: `lt import` throughput and memory, each as a ratio against a
//! baseline measured in the same run.
//!
//! - throughput: wall time of the floor — parsing and verifying the same events (id and
//!   BIP-340 signature) on all cores, the lines already in memory, nothing written — divided
//!   by the wall time of `lt import` of the file (goal ≥ 0.8);
//! - memory: peak RSS of `lt import` (its own VmHWM, from its summary) at 1M events against
//!   100k (goal: flat).
//!
//! Both are also given in CPU seconds (user + system, all threads): on a machine shared
//! with other work the wall times of one round swing with the neighbours' load, the CPU
//! each side spends much less; the wall ratio is the goal, the CPU ratio tells a slow
//! import from a busy machine.
//!
//! The input is a synth trace's events (`lt export`) repeated: duplicates are valid lines
//! and cost the same to verify. `LT_BENCH_EVENTS` (default 1000000) sets the large input,
//! `LT_BENCH_ROUNDS` (default 3) the interleaved rounds.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use lt::nostr::Event;
use lt_testkit::stats::median;
use rayon::prelude::*;

const LT: &str = env!("CARGO_BIN_EXE_lt");

fn run(args: &[&str]) -> Vec<u8> {
    let out = Command::new(LT).args(args).output().expect("run lt");
    assert!(
        out.status.success(),
        "lt {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// User + system CPU seconds of this process (`RUSAGE_SELF`, every thread) or of its
/// waited-for children (`RUSAGE_CHILDREN`).
fn cpu_s(who: libc::c_int) -> f64 {
    // SAFETY: rusage is plain data, zeroed is a valid value; getrusage fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(who, &mut usage) };
    assert_eq!(rc, 0, "getrusage failed");
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

struct Timed {
    wall_s: f64,
    cpu_s: f64,
}

/// `lt import INPUT -o OUT`; returns its times and peak RSS KiB (from the summary).
fn import(input: &Path, out: &Path) -> (Timed, u64) {
    let cpu_before = cpu_s(libc::RUSAGE_CHILDREN);
    let started = Instant::now();
    let result = Command::new(LT)
        .arg("import")
        .arg(input)
        .arg("-o")
        .arg(out)
        .output()
        .expect("run lt import");
    let wall_s = started.elapsed().as_secs_f64();
    let cpu_s = cpu_s(libc::RUSAGE_CHILDREN) - cpu_before;
    let summary = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success(), "lt import failed: {summary}");
    let peak_kib = summary
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("peak memory"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no peak memory in: {summary}"));
    (Timed { wall_s, cpu_s }, peak_kib)
}

/// The floor: every line parsed and verified on the rayon pool, as `lt import` does, with
/// the lines already in memory and nothing written.
fn floor(text: &[u8]) -> Timed {
    let cpu_before = cpu_s(libc::RUSAGE_SELF);
    let started = Instant::now();
    let lines: Vec<&[u8]> = text
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let valid: usize = lines
        .par_chunks(2048)
        .map(|chunk| {
            chunk
                .iter()
                .filter(|l| {
                    std::str::from_utf8(l)
                        .ok()
                        .and_then(|s| Event::from_json(s).ok())
                        .is_some_and(|e| e.verify().is_ok())
                })
                .count()
        })
        .sum();
    assert_eq!(valid, lines.len(), "every line of the input verifies");
    Timed {
        wall_s: started.elapsed().as_secs_f64(),
        cpu_s: cpu_s(libc::RUSAGE_SELF) - cpu_before,
    }
}

fn main() {
    let big: usize = std::env::var("LT_BENCH_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let rounds: usize = std::env::var("LT_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();

    // A tenth of the input, once: ~1,000 events/s for ~100 s (views, video bundles,
    // mirrors; reads are not exported).
    let small = big / 10;
    let trace = d.join("source.ltc");
    let duration = (small as f64 / 1000.0).ceil().max(1.0).to_string();
    run(&[
        "synth",
        "--seed",
        "42",
        "--rate",
        "1000",
        "--duration",
        &duration,
        "--read-share",
        "0",
        "-o",
        trace.to_str().expect("utf-8 path"),
    ]);
    let exported = run(&["export", trace.to_str().expect("utf-8 path")]);
    let per_copy = exported
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    let write = |path: &Path, events: usize| -> usize {
        let copies = ((events as f64 / per_copy as f64).round() as usize).max(1);
        let mut out = BufWriter::new(File::create(path).expect("create input"));
        for _ in 0..copies {
            out.write_all(&exported).expect("write input");
        }
        out.flush().expect("write input");
        copies * per_copy
    };
    let (small_path, big_path) = (d.join("small.jsonl"), d.join("big.jsonl"));
    let small_events = write(&small_path, small);
    let big_events = write(&big_path, big);
    let input_bytes = std::fs::metadata(&big_path).expect("stat").len();
    let out = d.join("out.ltc");

    let (_, rss_small) = import(&small_path, &out);
    let text = std::fs::read(&big_path).expect("read input");
    // Interleaved rounds, medians: the machine's speed drifts, and interleaving exposes
    // both sides to the same drift.
    let (mut import_s, mut floor_s, mut rss_big) = (Vec::new(), Vec::new(), 0);
    let (mut import_cpu, mut floor_cpu) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let (t, rss) = import(&big_path, &out);
        import_s.push(t.wall_s);
        import_cpu.push(t.cpu_s);
        rss_big = rss_big.max(rss);
        let f = floor(&text);
        floor_s.push(f.wall_s);
        floor_cpu.push(f.cpu_s);
    }
    let range = |v: &[f64]| {
        let (lo, hi) = v
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        format!("{lo:.1}–{hi:.1}")
    };
    let (import_range, floor_range) = (range(&import_s), range(&floor_s));
    let (t_import, t_floor) = (median(&import_s), median(&floor_s));
    let (c_import, c_floor) = (median(&import_cpu), median(&floor_cpu));
    let trace_bytes = std::fs::metadata(&out).expect("stat").len();

    println!(
        "import bench, {} threads, median of {rounds} interleaved rounds",
        rayon::current_num_threads()
    );
    println!(
        "  throughput  lt import {big_events} events ({:.0} MiB of JSONL, {:.0} MiB trace) in {t_import:.2} s [{import_range}]; parse + verify alone in {t_floor:.2} s [{floor_range}]",
        input_bytes as f64 / (1 << 20) as f64,
        trace_bytes as f64 / (1 << 20) as f64,
    );
    println!(
        "              ratio floor/import = {:.2}  (goal >= 0.8)   [{:.0} events/s vs floor {:.0}/s]",
        t_floor / t_import,
        big_events as f64 / t_import,
        big_events as f64 / t_floor
    );
    println!(
        "  cpu         lt import {c_import:.1} CPU-s ({:.1} µs/event), floor {c_floor:.1} CPU-s ({:.1} µs/event): ratio {:.2}",
        c_import * 1e6 / big_events as f64,
        c_floor * 1e6 / big_events as f64,
        c_floor / c_import
    );
    println!(
        "  memory      peak RSS {rss_big} KiB at {big_events} events vs {rss_small} KiB at {small_events}: ratio {:.2}  (goal: flat, ~1.0)",
        rss_big as f64 / rss_small as f64
    );
}
