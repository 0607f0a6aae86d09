//! `cargo bench --bench replay`: lt replay's own costs, each as a ratio against a baseline
//! measured in the same run.
//!
//! 1. ceiling: events/s `lt replay --speed max` pushes into a minimal ack-only WebSocket peer
//!    (`lt_testkit::peer`), against a bare tokio-tungstenite client with the same connections and
//!    window into the same peer (goal ≥ 0.8);
//! 2. schedule lag p99 replaying 20k events/s over 1000 connections into that peer
//!    (goal ≤ 1 ms), beside the machine's own floor: how late a bare timerfd loop at 20k
//!    deadlines/s wakes on the idle machine just before each round;
//! 3. CPU-µs per published event: lt against nostr-bench 0.4.0, same relay
//!    (nostr-rs-relay 0.8.12), at nostr-bench's lowest rate (goal ≤ 0.25×), beside two
//!    floors: a bare open-loop sender, and the same sender also reading every reply (the
//!    goal: lt ≤ 1.3× this one, issue #13). The floors count their send loop only, so lt
//!    is counted over its play, t0 to its last sample, from its own samples; the whole
//!    process's figure is printed too;
//! 4. peak RSS replaying 1M records against 100k (goal ≤ 1.2×);
//! 5. TLS: CPU per event over `wss://` against `ws://` (goal ≤ 1.15×), and the connect
//!    phase of 1,000 TLS connections at `--connect-concurrency 200` (goal < 2 s);
//! 6. memory per open connection: lt's RSS holding 10,000 connections against 100 on the
//!    same light trace, the difference per extra connection (goal ≤ 8 KiB), at steady
//!    state (lt's own RSS samples in the results) and at the peak (VmHWM);
//! 7. the cost of watching the relay's side (issue #30): lt's CPU per event replaying into
//!    the peer while scraping every second a real node_exporter and a real nostr-rs-relay's
//!    `/metrics` and reading this machine's `/proc` (host and relay process), against the
//!    same replay with none of it (goal ≤ 1.02), rounds alternating which goes first.
//!
//! 1, 2, 3 and 4 are the median of three rounds, with their range: on a small machine one round
//! alone is too noisy to compare builds by.
//!
//! The peer and the baseline client each run in a process of their own (this bench binary
//! started again with `LT_BENCH_ROLE`), as lt does: a client sharing the peer's process and
//! runtime has its sockets in the peer's epoll set and its tasks on the peer's threads, an
//! advantage no client of a real relay has.
//!
//! Needs the relays from `scripts/install-relays`. `LT_BENCH_BIG` (default 1000000) sets
//! the large trace of step 4; `LT_BENCH_ONLY` (e.g. `ceiling,lag`) runs only the named steps
//! (`ceiling`, `lag`, `cpu`, `memory`, `tls`, `connections`, `scrape`). `LT_BENCH_CONNS` (default
//! 10000) sets the many connections of step 6.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use lt::capture::results::{Outcome, ResultsReader, Row};
use lt::capture::TraceReader;
use lt_testkit::peer::{Behavior, Peer};
use lt_testkit::stats::{median, median_index, range};
use lt_testkit::{relay, tls};
use tokio_tungstenite::tungstenite::Message;

use lt_testkit::bench::{
    blocking_sockets, mono_ns, read_raw_until, role_figures, run, self_cpu_s, serving_role,
    RoleProcess, Timer, Usage,
};

const LT: &str = env!("CARGO_BIN_EXE_lt");

fn synth(path: &Path, args: &[&str]) {
    let u = run(
        Command::new(LT)
            .args(["synth", "--force"])
            .args(args)
            .arg("-o")
            .arg(path),
        None,
    );
    assert!(path.exists(), "synth failed: {}", u.stdout);
}

/// `lt replay TRACE --relay URL --no-reconcile EXTRA… -o RESULTS`.
fn replay(trace: &Path, url: &str, results: &Path, extra: &[&str]) -> Usage {
    run(
        Command::new(LT)
            .arg("replay")
            .arg(trace)
            .args(["--relay", url, "--no-reconcile"])
            .args(extra)
            .arg("-o")
            .arg(results),
        None,
    )
}

/// Events acknowledged and the span from first send to last completion, from a results file.
fn acked_rate(results: &Path) -> (u64, f64) {
    let mut r = ResultsReader::open(results).expect("results");
    let (mut ok, mut first, mut last) = (0u64, u64::MAX, 0u64);
    while let Some(row) = r.next_row().expect("row") {
        if let Row::Outcome(o) = row {
            if o.op.is_event() && o.outcome == Outcome::Ok {
                ok += 1;
            }
            if let Some(s) = o.sent_ns {
                first = first.min(s);
            }
            if let Some(c) = o.completed_ns {
                last = last.max(c);
            }
        }
    }
    (ok, (last.saturating_sub(first)) as f64 / 1e9)
}

/// The baseline: a bare tokio-tungstenite client, `conns` connections each keeping `window`
/// events in flight, sending the trace's event frames into the peer as fast as acks allow.
/// Runs in its own process (role `bare-client`).
async fn bare_client(url: &str, frames: Vec<Vec<String>>, window: usize) -> (u64, f64) {
    let acked = Arc::new(AtomicU64::new(0));
    let mut sockets = Vec::new();
    for _ in &frames {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("connect");
        sockets.push(ws);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (ws, frames) in sockets.into_iter().zip(frames) {
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            let (mut sink, mut stream) = ws.split();
            let total = frames.len();
            let mut frames = frames.into_iter();
            let mut done = 0usize;
            for f in frames.by_ref().take(window) {
                sink.send(Message::text(f)).await.expect("send");
            }
            while done < total {
                match stream.next().await {
                    Some(Ok(Message::Text(t))) if t.as_str().starts_with("[\"OK\"") => {
                        done += 1;
                        acked.fetch_add(1, Ordering::Relaxed);
                        if let Some(f) = frames.next() {
                            sink.send(Message::text(f)).await.expect("send");
                        }
                    }
                    Some(Ok(_)) => {}
                    _ => break,
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    (
        acked.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64(),
    )
}

fn frames_by_conn(trace: &Path, conns: u32) -> Vec<Vec<String>> {
    let mut out = vec![Vec::new(); conns as usize];
    for r in TraceReader::open(trace).expect("trace") {
        let r = r.expect("record");
        if r.op.is_event() {
            out[(r.client % conns) as usize].push(r.frame);
        }
    }
    out
}

/// Rounds of the noisiest measurements (ceiling, lag).
const ROUNDS: usize = 3;

/// Step 7's pairs: a 2% difference needs more than three on two shared cores.
const SCRAPE_ROUNDS: usize = 5;

/// The machine's own floor for schedule lag, measured in the same run: one thread sleeping
/// on a timerfd armed at absolute deadlines every `period` (lt's mechanism, without lt),
/// for `secs`. Returns the p99 of how late it woke, ms. On this 2-core VM even this loop,
/// alone on an idle machine, wakes up to milliseconds late now and then (the host
/// preempting the VM).
fn timer_floor_p99_ms(period: Duration, secs: u64) -> f64 {
    let timer = Timer::new();
    let period = period.as_nanos() as u64;
    let n = secs * 1_000_000_000 / period;
    let start = mono_ns() + period;
    let mut late = Vec::with_capacity(n as usize);
    for i in 0..n {
        let due = start + i * period;
        timer.sleep_until(due);
        late.push(mono_ns().saturating_sub(due));
    }
    late.sort_unstable();
    late[(late.len() * 99 / 100).min(late.len() - 1)] as f64 / 1e6
}

/// The floor for CPU per event (role `open-loop-floor`): the least an open-loop sender can
/// spend. One thread, blocking sockets, each event frame written at its own time after a
/// timerfd wait; no bookkeeping, no results. With `read_replies`, a second thread waits on
/// every socket with epoll and reads what arrives as raw bytes (no WebSocket decoding, no
/// parsing, no matching); without, replies are left unread (they pile up in socket buffers,
/// harmlessly at these sizes). Returns events sent and the CPU seconds of the send loop
/// alone (connecting and loading the trace excluded).
fn open_loop_floor(url: &str, trace: &Path, conns: u32, read_replies: bool) -> (u64, f64) {
    use std::os::fd::AsRawFd;
    let mut sockets = blocking_sockets(url, conns);
    let events: Vec<(u64, u32, String)> = TraceReader::open(trace)
        .expect("trace")
        .map(|r| r.expect("record"))
        .filter(|r| r.op.is_event())
        .map(|r| (r.offset_us, r.client % conns, r.frame))
        .collect();
    let fds: Vec<i32> = sockets.iter().map(|ws| ws.get_ref().as_raw_fd()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = read_replies.then(|| {
        let stop = stop.clone();
        std::thread::spawn(move || read_raw_until(&fds, &stop))
    });
    let timer = Timer::new();
    let cpu_before = self_cpu_s();
    let t0 = mono_ns() + 10_000_000;
    let mut sent = 0u64;
    for (offset_us, conn, frame) in events {
        timer.sleep_until(t0 + offset_us * 1000);
        sockets[conn as usize]
            .send(Message::text(frame))
            .expect("send");
        sent += 1;
    }
    if let Some(reader) = reader {
        // The last replies.
        std::thread::sleep(Duration::from_millis(200));
        stop.store(true, Ordering::Relaxed);
        let read = reader.join().expect("reader thread");
        assert!(read > 0, "the floor's reader read nothing");
    }
    (sent, self_cpu_s() - cpu_before)
}

fn lag_p99_ms(stdout: &str) -> Option<f64> {
    let line = stdout.lines().find(|l| l.starts_with("schedule lag"))?;
    let p99 = line.split("p99 ").nth(1)?.split(' ').next()?;
    p99.parse().ok()
}

/// Which steps run: all, or those `LT_BENCH_ONLY` names.
fn wanted(step: &str) -> bool {
    std::env::var("LT_BENCH_ONLY").map_or(true, |only| only.split(',').any(|s| s.trim() == step))
}

/// The ack-only peer in a process of its own, and its URL. It serves until its stdin closes.
fn peer_process() -> (RoleProcess, String) {
    serving_role("peer")
}

/// The baseline client in a process of its own: events acked and seconds taken.
fn bare_client_process(url: &str, trace: &Path, conns: u32, window: usize) -> (u64, f64) {
    role_figures(
        "bare-client",
        &[
            ("LT_BENCH_URL", url),
            ("LT_BENCH_TRACE", &trace.to_string_lossy()),
            ("LT_BENCH_CONNS", &conns.to_string()),
            ("LT_BENCH_WINDOW", &window.to_string()),
        ],
    )
}

/// Runs this process as one of the bench's helpers (see the module docs).
fn role_main(role: &str) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} unset"));
    match role {
        "peer" => {
            let peer = rt.block_on(Peer::start(Behavior::AckAll)).expect("peer");
            println!("{}", peer.url());
            // Serve until the bench closes our stdin (or exits).
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
            drop(peer);
        }
        "bare-client" => {
            let conns: u32 = var("LT_BENCH_CONNS").parse().expect("LT_BENCH_CONNS");
            let window: usize = var("LT_BENCH_WINDOW").parse().expect("LT_BENCH_WINDOW");
            let frames = frames_by_conn(Path::new(&var("LT_BENCH_TRACE")), conns);
            let (acked, secs) = rt.block_on(bare_client(&var("LT_BENCH_URL"), frames, window));
            println!("{acked} {secs}");
        }
        "open-loop-floor" => {
            let conns: u32 = var("LT_BENCH_CONNS").parse().expect("LT_BENCH_CONNS");
            let trace = var("LT_BENCH_TRACE");
            let read_replies = var("LT_BENCH_READ_REPLIES") == "1";
            let (sent, cpu_s) =
                open_loop_floor(&var("LT_BENCH_URL"), Path::new(&trace), conns, read_replies);
            println!("{sent} {cpu_s}");
        }
        other => panic!("unknown LT_BENCH_ROLE {other}"),
    }
}

fn main() {
    if let Ok(role) = std::env::var("LT_BENCH_ROLE") {
        role_main(&role);
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    println!(
        "replay bench, {} cores",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    if wanted("ceiling") {
        ceiling(d);
    }
    if wanted("lag") {
        lag(d);
    }
    if wanted("cpu") {
        cpu_per_event(d);
    }
    if wanted("memory") {
        memory(d);
    }
    if wanted("tls") {
        tls_costs(d);
    }
    if wanted("connections") {
        per_connection(d);
    }
    if wanted("scrape") {
        scrape_cost(d);
    }
}

/// What one scrape costs lt, part by part, on this thread: reading node_exporter's answer
/// (its text into series) and this machine's `/proc` as node_exporter would report it.
fn scrape_parts(exporter: &str) {
    let text = lt_testkit::exporter::http_get(exporter).expect("node_exporter answers");
    let per_call_us = |f: &mut dyn FnMut()| {
        let (n, started) = (200, self_cpu_s());
        for _ in 0..n {
            f();
        }
        (self_cpu_s() - started) * 1e6 / f64::from(n)
    };
    let mut series = 0;
    let parse_us = per_call_us(&mut || {
        series = lt::scrape::exposition::parse(&text).expect("parses").len();
    });
    let proc_us = per_call_us(&mut || {
        lt::scrape::local::host().expect("reads /proc");
    });
    println!(
        "  scrape      one scrape's parts: node_exporter's answer ({} lines, {series} series) read in {parse_us:.0} CPU-µs; this machine's /proc read as node_exporter would in {proc_us:.0} CPU-µs",
        text.lines().count()
    );
}

/// Step 7: whole-process CPU-µs per event of the same replay (1,000 events/s for 20 s
/// over 100 connections, into the peer, so the relay's load does not blur lt's figure)
/// with scraping every second and without any; [`SCRAPE_ROUNDS`] pairs, alternating which
/// runs first, the median of the pairs' ratios. What is scraped is what a user scrapes: a
/// real node_exporter (its ~1,500-series exposition is the largest part), an idle
/// nostr-rs-relay's own `/metrics`, this machine's `/proc` and the relay process.
fn scrape_cost(d: &Path) {
    let trace = d.join("scrape.ltc");
    synth(
        &trace,
        &[
            "--rate",
            "1000",
            "--duration",
            "20",
            "--clients",
            "100",
            "--read-share",
            "0",
        ],
    );
    let exporter = lt_testkit::exporter::NodeExporter::start();
    let relay = fresh_relay();
    scrape_parts(&exporter.url);
    let (peer, url) = peer_process();
    let relay_metrics = format!("nostr-rs-relay=http://127.0.0.1:{}/metrics", relay.port);
    let pid = relay.pid.to_string();
    let watched = [
        "--scrape",
        &exporter.url,
        "--scrape",
        &relay_metrics,
        "--relay-pid",
        &pid,
    ];
    // (whole process, play) CPU-µs per event: the play is t0 to lt's last sample, from its
    // own samples, as step 3 counts it, so set-up and the summary (fixed costs of a run,
    // whatever its length) do not count as scraping's cost per second.
    let cpu_us = |name: &str, extra: &[&str]| {
        let results = d.join(format!("{name}.ltr"));
        let u = replay(&trace, &url, &results, extra);
        let (mut samples, mut sent_at) = (Vec::new(), Vec::new());
        let mut r = ResultsReader::open(&results).expect("results");
        while let Some(row) = r.next_row().expect("row") {
            match row {
                Row::Outcome(o) => sent_at.extend(o.sent_ns.filter(|_| o.op.is_event())),
                Row::Sample(s) => samples.push((s.at_ns, f64::from(s.harness_cpu_pct))),
                _ => {}
            }
        }
        let (play_cpu_s, play_sent) = play_window(&samples, &sent_at);
        (
            u.cpu_s * 1e6 / sent_at.len().max(1) as f64,
            play_cpu_s * 1e6 / play_sent.max(1) as f64,
        )
    };
    let mut pairs = Vec::new();
    for round in 0..SCRAPE_ROUNDS {
        let (without, with) = if round % 2 == 0 {
            let without = cpu_us("plain", &["--no-host-stats"]);
            (without, cpu_us("scraped", &watched))
        } else {
            let with = cpu_us("scraped", &watched);
            (cpu_us("plain", &["--no-host-stats"]), with)
        };
        pairs.push((with.1 / without.1, with, without));
    }
    drop(peer);
    let ratios: Vec<f64> = pairs.iter().map(|p| p.0).collect();
    let (ratio, (with_whole, with), (without_whole, without)) = pairs[median_index(&ratios)];
    // The cost is per second, not per event: what it is, and the rate from which it is
    // within the goal.
    let events_per_s = 1000.0;
    let ms_per_s = (with - without) * events_per_s / 1000.0;
    println!(
        "  scrape      lt over its play {with:.1} CPU-µs/event scraping every 1 s (node_exporter, nostr-rs-relay's /metrics, /proc host and relay process) vs {without:.1} without, 1,000 events/s into the peer: ratio {ratio:.3}, median of {SCRAPE_ROUNDS} pairs (range {})  (goal <= 1.02; whole process {with_whole:.1} vs {without_whole:.1}, ratio {:.3})",
        range(&ratios, 3),
        with_whole / without_whole
    );
    println!(
        "              scraping costs {ms_per_s:.2} CPU-ms per second of the run: within 2% from {:.0} events/s",
        ms_per_s * 1000.0 / (0.02 * without)
    );
}

/// Step 6, memory per open connection: the same 20 s trace (200 events/s) folded onto 100
/// and onto `LT_BENCH_CONNS` connections, into the peer; lt's RSS with many minus with few,
/// per extra connection. Steady state is the median of lt's own RSS samples once every
/// connection is open; peak is VmHWM (the connect phase included).
fn per_connection(d: &Path) {
    let many: u32 = std::env::var("LT_BENCH_CONNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let few = 100u32;
    let trace = d.join("conns.ltc");
    synth(
        &trace,
        &[
            "--rate",
            "200",
            "--duration",
            "20",
            "--clients",
            &many.to_string(),
        ],
    );
    let (_peer, url) = peer_process();
    let mut steady: HashMap<u32, Vec<f64>> = HashMap::new();
    let mut peak: HashMap<u32, Vec<f64>> = HashMap::new();
    for round in 0..ROUNDS {
        for conns in [few, many] {
            let out = d.join(format!("conns-{conns}-{round}.ltr"));
            let u = replay(&trace, &url, &out, &["--clients", &conns.to_string()]);
            let mut rss = Vec::new();
            let mut r = ResultsReader::open(&out).expect("results");
            while let Some(row) = r.next_row().expect("row") {
                if let Row::Sample(s) = row {
                    if s.connections_open == conns {
                        rss.push(s.harness_rss_bytes as f64 / 1024.0);
                    }
                }
            }
            assert!(!rss.is_empty(), "{conns} connections were never all open");
            rss.sort_by(f64::total_cmp);
            steady.entry(conns).or_default().push(rss[rss.len() / 2]);
            peak.entry(conns).or_default().push(u.max_rss_kib as f64);
        }
    }
    let extra = f64::from(many - few);
    for (what, m) in [("steady", &steady), ("peak", &peak)] {
        let (a, b) = (median(&m[&few]), median(&m[&many]));
        println!(
            "  per conn    {what:<6} {:.1} KiB per extra open connection: RSS {b:.0} KiB with {many} (range {}) vs {a:.0} KiB with {few} (range {}), medians of {ROUNDS}  (goal <= 8)",
            (b - a) / extra,
            range(&m[&many], 0),
            range(&m[&few], 0),
        );
    }
}

/// Step 5, what TLS costs: lt's CPU per event over `wss://` (nginx terminating TLS in front
/// of nostr-rs-relay, a test CA) against `ws://` straight to a fresh relay, same trace at
/// ~2k events/s, median of three rounds (goal ≤ 1.15); and the connect phase of 1,000 TLS
/// connections at `--connect-concurrency 200` (goal < 2 s).
fn tls_costs(d: &Path) {
    let certs = tls::certs(d, &["localhost"]);
    let trace = d.join("tls.ltc");
    synth(
        &trace,
        &[
            "--rate",
            "2000",
            "--duration",
            "10",
            "--clients",
            "100",
            "--read-share",
            "0",
        ],
    );
    let events = |results: &Path| -> u64 {
        let mut n = 0;
        let mut r = ResultsReader::open(results).expect("results");
        while let Some(row) = r.next_row().expect("row") {
            if let Row::Outcome(o) = row {
                n += u64::from(o.sent_ns.is_some() && o.op.is_event());
            }
        }
        n
    };
    let ca = certs.ca.to_string_lossy().into_owned();
    let mut ratios = Vec::new();
    for round in 0..3 {
        let plain_relay = fresh_relay();
        let plain = d.join(format!("plain-{round}.ltr"));
        let u = replay(&trace, &plain_relay.url, &plain, &[]);
        let plain_us = u.cpu_s * 1e6 / events(&plain).max(1) as f64;
        drop(plain_relay);
        let behind = fresh_relay();
        let nginx = tls::Nginx::start(&certs, behind.port);
        let wss = d.join(format!("wss-{round}.ltr"));
        let url = format!("wss://localhost:{}/", nginx.port);
        let u = replay(&trace, &url, &wss, &["--ca-file", &ca]);
        let wss_us = u.cpu_s * 1e6 / events(&wss).max(1) as f64;
        ratios.push((wss_us / plain_us, wss_us, plain_us));
    }
    ratios.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (ratio, wss_us, plain_us) = ratios[1];
    println!(
        "  tls         lt {wss_us:.1} CPU-µs/event over wss:// vs {plain_us:.1} over ws:// (~2k events/s, nostr-rs-relay behind nginx): ratio {ratio:.2}, median of 3 (range {:.2}–{:.2})  (goal <= 1.15)",
        ratios[0].0, ratios[2].0
    );
    // 1,000 connections, one event each, so the run is the connect phase.
    let many = d.join("handshakes.ltc");
    synth(
        &many,
        &[
            "--rate",
            "100",
            "--duration",
            "10",
            "--clients",
            "1000",
            "--read-share",
            "0",
        ],
    );
    let behind = fresh_relay();
    let nginx = tls::Nginx::start(&certs, behind.port);
    let results = d.join("handshakes.ltr");
    let url = format!("wss://localhost:{}/", nginx.port);
    let u = replay(
        &many,
        &url,
        &results,
        &[
            "--ca-file",
            &ca,
            "--connect-concurrency",
            "200",
            "--speed",
            "10x",
        ],
    );
    let mut r = ResultsReader::open(&results)
        .unwrap_or_else(|e| panic!("the 1,000-connection replay failed ({e}): {}", u.stdout));
    while r.next_row().expect("row").is_some() {}
    let phase_ms = r
        .trailer()
        .and_then(|t| t.connect_phase_ns)
        .map_or(f64::NAN, |ns| ns as f64 / 1e6);
    println!(
        "              1,000 TLS connections at --connect-concurrency 200: connect phase {phase_ms:.0} ms  (goal < 2000)"
    );
    drop(nginx);
}

/// Step 1, the ceiling into the ack-only peer. 500k events: over a second of sending per round
/// at the rates seen here, so connection set-up and the last stragglers are a small part.
fn ceiling(d: &Path) {
    let conns = 50u32;
    let trace = d.join("ceiling.ltc");
    synth(
        &trace,
        &[
            "--rate",
            "20000",
            "--duration",
            "25",
            "--clients",
            "50",
            "--read-share",
            "0",
        ],
    );
    let (_peer, url) = peer_process();
    // Rounds alternate lt and the baseline; the median ratio is the figure, the range shows
    // the noise (one round on this 2-core VM ranged from 0.60 to 0.86).
    let mut rounds = Vec::new();
    for round in 0..ROUNDS {
        let results = d.join(format!("ceiling-{round}.ltr"));
        replay(
            &trace,
            &url,
            &results,
            &[
                "--speed",
                "max",
                "--max-in-flight",
                "5000",
                "--per-conn-in-flight",
                "100",
            ],
        );
        let (lt_acked, lt_span) = acked_rate(&results);
        let (bare_acked, bare_span) = bare_client_process(&url, &trace, conns, 100);
        rounds.push((lt_acked as f64 / lt_span, bare_acked as f64 / bare_span));
    }
    let ratios: Vec<f64> = rounds.iter().map(|(lt, bare)| lt / bare).collect();
    let (lt_rate, bare_rate) = rounds[median_index(&ratios)];
    println!(
        "  ceiling     lt replay {lt_rate:.0} events/s vs bare tokio-tungstenite client {bare_rate:.0}/s ({conns} conns, window 100): ratio {:.2}, median of {ROUNDS} (range {})  (goal >= 0.8)",
        lt_rate / bare_rate,
        range(&ratios, 2)
    );
}

/// Step 2, schedule lag at 20k events/s over 1000 connections.
fn lag(d: &Path) {
    let trace = d.join("lag.ltc");
    synth(
        &trace,
        &[
            "--rate",
            "20000",
            "--duration",
            "15",
            "--clients",
            "1000",
            "--read-share",
            "0",
        ],
    );
    let (_peer, url) = peer_process();
    let mut runs = Vec::new();
    let mut floors = Vec::new();
    for round in 0..ROUNDS {
        floors.push(timer_floor_p99_ms(Duration::from_micros(50), 5));
        let results = d.join(format!("lag-{round}.ltr"));
        let u = replay(&trace, &url, &results, &["--connect-concurrency", "200"]);
        let (acked, span) = acked_rate(&results);
        let p99 = lag_p99_ms(&u.stdout).unwrap_or(f64::NAN);
        runs.push((p99, acked as f64 / span, 100.0 * u.cpu_s / u.wall_s));
    }
    let p99s: Vec<f64> = runs.iter().map(|r| r.0).collect();
    let (p99, acked_rate_s, cpu_pct) = runs[median_index(&p99s)];
    println!(
        "  lag         20k events/s asked, {acked_rate_s:.0}/s acked over 1000 connections: schedule lag p99 {p99:.2} ms, median of {ROUNDS} (range {} ms)  (goal <= 1 ms); lt CPU {cpu_pct:.0}% of one core",
        range(&p99s, 2)
    );
    println!(
        "              baseline: a bare timerfd loop at 20k deadlines/s on the idle machine wakes late by p99 {:.2} ms, median of {ROUNDS} (range {} ms); lt/floor {:.1}",
        floors[median_index(&floors)],
        range(&floors, 2),
        p99 / floors[median_index(&floors)]
    );
}

/// nostr-rs-relay with its limits raised, on a fresh data directory.
fn fresh_relay() -> relay::Relay {
    relay::Relay::start(
        relay::RelayKind::NostrRsRelay,
        relay::RelayOptions { raise_limits: true },
    )
}

/// Step 3, CPU per event against nostr-bench, same relay, same rate; and against the floor
/// of an open-loop sender. Median of [`ROUNDS`] rounds (by lt's ratio to the floor), each
/// with every figure measured afresh: on two shared cores one run varies by ±10%.
fn cpu_per_event(d: &Path) {
    let Some(nb) = relay::binary("nostr-bench") else {
        println!("  cpu/event   skipped: nostr-bench not installed (scripts/install-relays)");
        return;
    };
    let rounds: Vec<CpuRound> = (0..ROUNDS).map(|_| cpu_round(d, &nb)).collect();
    let ratios: Vec<f64> = rounds.iter().map(|r| r.lt_us / r.floor_read_us).collect();
    let r = &rounds[median_index(&ratios)];
    println!(
        "  cpu/event   lt {:.1} CPU-µs/event (the whole process) sending {:.0} events/s ({:.0}/s acked) vs nostr-bench {:.1} at {:.0}/s (nostr-rs-relay): ratio {:.2}  (goal <= 0.25)",
        r.lt_whole_us, r.sent_rate, r.acked_rate, r.nb_us, r.nb_rate, r.lt_whole_us / r.nb_us
    );
    // What the goal can be judged against: the send loop of any open-loop sender pays at
    // least one wake-up and one write system call per event (on loopback the write also
    // runs the relay side's TCP receive), and reading the replies at least one more wake-up
    // and read, whatever else it does.
    println!(
        "              floor: a bare open-loop sender (a timerfd wait and one write per event, send loop only) {:.1} CPU-µs/event, ratio {:.2} to nostr-bench; reading the replies too (epoll, raw bytes, nothing parsed) {:.1}, ratio {:.2}",
        r.floor_send_us,
        r.floor_send_us / r.nb_us,
        r.floor_read_us,
        r.floor_read_us / r.nb_us,
    );
    // Like for like: the floor's figure leaves out connecting and loading the trace, so
    // lt's leaves out its own setup (reading and checking the whole trace for the plan,
    // connecting) and teardown (the summary), counting its CPU from t0 to its last sample.
    println!(
        "              lt over its play (t0 to its last sample, {} events; every thread: scheduling, sockets, reading the trace, writing results) {:.1} CPU-µs/event: lt/floor {:.2}, median of {ROUNDS} (range {})  (goal <= 1.3; whole process {:.2})",
        r.play_sent,
        r.lt_us,
        r.lt_us / r.floor_read_us,
        range(&ratios, 2),
        r.lt_whole_us / r.floor_read_us
    );
}

/// One round of step 3's figures (µs are CPU-µs per event).
struct CpuRound {
    nb_us: f64,
    nb_rate: f64,
    lt_whole_us: f64,
    lt_us: f64,
    play_sent: u64,
    sent_rate: f64,
    acked_rate: f64,
    floor_send_us: f64,
    floor_read_us: f64,
}

fn cpu_round(d: &Path, nb: &Path) -> CpuRound {
    let relay = fresh_relay();
    let secs = 12u64;
    // One client: nostr-bench is closed-loop, and with more clients it saturates
    // nostr-rs-relay (~1000 events/s), a rate at which the relay falls behind on lt's
    // larger, addressable video events. One client gives ~700/s, a rate the relay sustains
    // for both, so both are measured at the same achieved rate.
    let u = run(
        Command::new(nb).args(["event", "-c", "1", "--json", &relay.url]),
        Some(Duration::from_secs(secs)),
    );
    let last: Option<serde_json::Value> = u
        .stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok());
    let (nb_events, nb_elapsed) = last
        .map(|v| {
            (
                v["message_stats"]["complete"].as_u64().unwrap_or(0),
                v["elapsed"].as_f64().unwrap_or(1.0) / 1000.0,
            )
        })
        .unwrap_or((0, 1.0));
    let nb_rate = nb_events as f64 / nb_elapsed.max(1e-3);
    let nb_us = u.cpu_s * 1e6 / nb_events.max(1) as f64;
    drop(relay);
    let relay = fresh_relay();
    let trace = d.join("cpu.ltc");
    synth(
        &trace,
        &[
            "--rate",
            &format!("{nb_rate:.0}"),
            "--duration",
            &secs.to_string(),
            "--clients",
            "100",
            "--read-share",
            "0",
        ],
    );
    let results = d.join("cpu.ltr");
    let u = replay(&trace, &relay.url, &results, &[]);
    let (mut sent, mut first, mut last) = (0u64, u64::MAX, 0u64);
    // lt's own samples, one a second from t0: (at_ns, CPU % of a core since the last).
    let mut samples = Vec::new();
    let mut sent_at = Vec::new();
    let mut r = ResultsReader::open(&results).expect("results");
    while let Some(row) = r.next_row().expect("row") {
        match row {
            Row::Outcome(o) => {
                if let (Some(at), true) = (o.sent_ns, o.op.is_event()) {
                    sent += 1;
                    first = first.min(at);
                    last = last.max(at);
                    sent_at.push(at);
                }
            }
            Row::Sample(s) => samples.push((s.at_ns, f64::from(s.harness_cpu_pct))),
            _ => {}
        }
    }
    let sent_rate = sent as f64 / (last.saturating_sub(first) as f64 / 1e9).max(1e-3);
    let (acked, span) = acked_rate(&results);
    let (play_cpu_s, play_sent) = play_window(&samples, &sent_at);
    drop(relay);
    // Each floor against a fresh relay, as lt had.
    let floor_us = |read_replies: &str| {
        let relay = fresh_relay();
        let (sent, cpu_s) = role_figures(
            "open-loop-floor",
            &[
                ("LT_BENCH_URL", &relay.url),
                ("LT_BENCH_TRACE", &trace.to_string_lossy()),
                ("LT_BENCH_CONNS", "100"),
                ("LT_BENCH_READ_REPLIES", read_replies),
            ],
        );
        cpu_s * 1e6 / sent.max(1) as f64
    };
    CpuRound {
        nb_us,
        nb_rate,
        lt_whole_us: u.cpu_s * 1e6 / sent.max(1) as f64,
        lt_us: play_cpu_s * 1e6 / play_sent.max(1) as f64,
        play_sent,
        sent_rate,
        acked_rate: acked as f64 / span,
        floor_send_us: floor_us("0"),
        floor_read_us: floor_us("1"),
    }
}

/// lt's CPU seconds from t0 to its last sample, from its samples (each: CPU % of a core
/// since the one before), and the events it sent in that window.
fn play_window(samples: &[(u64, f64)], sent_at: &[u64]) -> (f64, u64) {
    let cpu_s = samples
        .windows(2)
        .map(|w| w[1].1 / 100.0 * w[1].0.saturating_sub(w[0].0) as f64 / 1e9)
        .sum();
    let end = samples.last().map_or(0, |s| s.0);
    (
        cpu_s,
        sent_at.iter().filter(|at| **at <= end).count() as u64,
    )
}

/// Step 4, memory: 1M records against 100k, into the peer as fast as it acks.
fn memory(d: &Path) {
    let big: u64 = std::env::var("LT_BENCH_BIG")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let sizes = [("small", big / 10), ("big", big)];
    for (name, records) in sizes {
        // ~1.45 records per event at the default read share.
        let rate = records as f64 / 1.45 / 100.0;
        synth(
            &d.join(format!("{name}.ltc")),
            &[
                "--rate",
                &format!("{rate:.0}"),
                "--duration",
                "100",
                "--clients",
                "200",
            ],
        );
    }
    // Both traces are written, and flushed to disk, before either is replayed, so neither
    // replay shares the machine with synth or with the write-back of a fresh trace.
    // SAFETY: sync takes no arguments and only flushes the page cache.
    unsafe { libc::sync() };
    let (_peer, url) = peer_process();
    let mut rss: HashMap<&str, Vec<f64>> = HashMap::new();
    for round in 0..ROUNDS {
        for (name, _) in sizes {
            let u = replay(
                &d.join(format!("{name}.ltc")),
                &url,
                &d.join(format!("{name}-{round}.ltr")),
                &["--speed", "max"],
            );
            rss.entry(name).or_default().push(u.max_rss_kib as f64);
        }
    }
    let (small, large) = (median(&rss["small"]), median(&rss["big"]));
    println!(
        "  memory      peak RSS {large:.0} KiB replaying {big} records (range {}) vs {small:.0} KiB for {} (range {}): ratio {:.2}, medians of {ROUNDS}  (goal <= 1.2)",
        range(&rss["big"], 0),
        big / 10,
        range(&rss["small"], 0),
        large / small
    );
}
