//! `cargo bench --bench fanout`: what counting live deliveries costs lt (issue #16), against
//! the bare reader floor, in the same run.
//!
//! `LT_BENCH_SUBS` live subscribers (default 1,000), each on its own connection with a live
//! feed subscription, receive every event one more connection publishes at `LT_BENCH_EPS`
//! events/s (default 100) for `LT_BENCH_SECS` seconds (default 20): 100k deliveries/s by
//! default. The relay is the fault peer's `FanOut` behaviour (`lt_testkit::peer`) in a process of
//! its own, so what is measured is the client side. Printed:
//!
//! - lt's own schedule lag p99 (goal ≤ 5 ms) and the deliveries it counted (expected,
//!   delivered, missed);
//! - lt's CPU per delivery against the floor: a client with the same connections that sends
//!   the same REQs and events at their times and reads every frame as raw bytes through
//!   epoll, without decoding or parsing anything (`lt_testkit::bench`: lt's mechanisms
//!   without lt);
//! - lt's peak RSS.

use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use lt::capture::trace::{Import, ImportTiming, Source, VERSION};
use lt::capture::{Completion, Header, Op, Query, Record, Role, TraceReader, TraceWriter};
use lt::nostr::{keys, Unsigned};
use lt_testkit::bench::{
    blocking_sockets, mono_ns, read_raw_until, role_figures, run, self_cpu_s, serving_role,
    RoleProcess, Timer,
};
use lt_testkit::peer::{Behavior, Peer};
use tokio_tungstenite::tungstenite::Message;

const LT: &str = env!("CARGO_BIN_EXE_lt");
const EPOCH: u64 = 1_770_000_000;
/// When the first event goes: the subscriptions are all open by then.
const EVENTS_FROM_US: u64 = 2_000_000;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The trace: REQs of `subs` live feeds on connections 0..subs over the first second,
/// `eps` posts/s on connection `subs`, then every CLOSE.
fn write_trace(path: &Path, subs: u32, eps: u64, secs: u64) {
    let header = Header {
        format_version: VERSION,
        lt_version: env!("CARGO_PKG_VERSION").to_owned(),
        generator: "benches/fanout.rs".to_owned(),
        schema_source: "the platform's feed filter (docs/workload.md 6a)".to_owned(),
        source: Source::Imported(Import {
            input: "fan-out bench".to_owned(),
            timing: ImportTiming::Rate {
                rate_eps: eps as f64,
                seed: 0,
            },
            clients: subs + 1,
            verified: true,
        }),
    };
    let file = std::fs::File::create(path).expect("trace file");
    let mut w = TraceWriter::new(std::io::BufWriter::new(file), &header).expect("trace writer");
    let mut index = 0u64;
    let mut push = |w: &mut TraceWriter<_>, r: Record| {
        w.push(&r).expect("record");
        index += 1;
        index - 1
    };
    let mut reqs = Vec::new();
    for c in 0..subs {
        let sub = format!("live-feed-{c:x}");
        let frame =
            format!(r##"["REQ","{sub}",{{"kinds":[30078],"#t":["video"],"since":{EPOCH}}}]"##);
        let i = push(
            &mut w,
            Record {
                offset_us: u64::from(c) * 1_000_000 / u64::from(subs),
                client: c,
                op: Op::Req {
                    query: Query::LiveFeed,
                },
                frame,
                completes: Completion::Eose { sub },
                after: None,
                recorded: None,
            },
        );
        reqs.push((c, i));
    }
    let kp = keys::keypair_from_material([7; 32]);
    for k in 0..eps * secs {
        let ev = Unsigned {
            pubkey: keys::pubkey(&kp),
            created_at: EPOCH + 10 + k / eps,
            kind: 30078,
            tags: vec![
                vec!["t".into(), "video".into()],
                vec!["d".into(), format!("bench-{k}")],
            ],
            content: "x".repeat(400),
        }
        .sign_frame(&kp, &[1; 32]);
        push(
            &mut w,
            Record {
                offset_us: EVENTS_FROM_US + k * 1_000_000 / eps,
                client: subs,
                op: Op::Event {
                    kind: 30078,
                    role: Role::VideoPost,
                },
                frame: ev.frame,
                completes: Completion::Ok {
                    id: hex::encode(ev.id),
                },
                after: None,
                recorded: None,
            },
        );
    }
    let end_us = EVENTS_FROM_US + secs * 1_000_000 + 500_000;
    for (c, req) in reqs {
        push(
            &mut w,
            Record {
                offset_us: end_us,
                client: c,
                op: Op::Close,
                frame: format!(r#"["CLOSE","live-feed-{c:x}"]"#),
                completes: Completion::Sent,
                after: Some(req),
                recorded: None,
            },
        );
    }
    w.finish().expect("finish the trace");
}

/// The floor (role `live-floor`): blocking sockets, the REQs sent in order, then the events
/// at their times on the publisher's connection (a timerfd wait each), while a second thread
/// reads every socket through epoll as raw bytes. Prints the CPU seconds of the whole
/// process and the p99 of how late its own event sends went (µs): the machine's floor for
/// schedule lag under this fan-out.
fn live_floor(url: &str, trace: &Path) -> (u64, f64) {
    use std::os::fd::AsRawFd;
    let records: Vec<Record> = TraceReader::open(trace)
        .expect("trace")
        .map(|r| r.expect("record"))
        .collect();
    let conns = records.iter().map(|r| r.client + 1).max().unwrap_or(1);
    let mut sockets = blocking_sockets(url, conns);
    let fds: Vec<i32> = sockets.iter().map(|ws| ws.get_ref().as_raw_fd()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        std::thread::spawn(move || read_raw_until(&fds, &stop))
    };
    let timer = Timer::new();
    let t0 = mono_ns() + 10_000_000;
    let mut late_us = Vec::with_capacity(records.len());
    for r in &records {
        let due = t0 + r.offset_us * 1000;
        timer.sleep_until(due);
        sockets[r.client as usize]
            .send(Message::text(r.frame.clone()))
            .expect("send");
        // The events, as lt's own lag counts them (CLOSEs go in a burst at one instant).
        if r.op.is_event() {
            late_us.push(mono_ns().saturating_sub(due) / 1000);
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let read = reader.join().expect("reader thread");
    assert!(read > 0, "the floor's reader read nothing");
    late_us.sort_unstable();
    let p99 = late_us[(late_us.len() * 99 / 100).min(late_us.len() - 1)];
    (p99, self_cpu_s())
}

fn role_main(role: &str) {
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} unset"));
    match role {
        "fanout-peer" => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            let peer = rt
                .block_on(Peer::start(Behavior::FanOut {
                    drop_every: 0,
                    duplicate_every: 0,
                }))
                .expect("peer");
            println!("{}", peer.url());
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
            drop(peer);
        }
        "live-floor" => {
            let (lag_p99_us, cpu_s) =
                live_floor(&var("LT_BENCH_URL"), Path::new(&var("LT_BENCH_TRACE")));
            println!("{lag_p99_us} {cpu_s}");
        }
        other => panic!("unknown LT_BENCH_ROLE {other}"),
    }
}

/// The fan-out peer in a process of its own, and its URL; it serves until dropped.
fn peer_process() -> (RoleProcess, String) {
    serving_role("fanout-peer")
}

fn main() {
    if let Ok(role) = std::env::var("LT_BENCH_ROLE") {
        role_main(&role);
        return;
    }
    let subs = env_or("LT_BENCH_SUBS", 1000) as u32;
    let eps = env_or("LT_BENCH_EPS", 100);
    let secs = env_or("LT_BENCH_SECS", 20);
    let dir = tempfile::tempdir().expect("tempdir");
    let trace = dir.path().join("fanout.ltc");
    write_trace(&trace, subs, eps, secs);
    println!(
        "fan-out bench: {subs} live subscribers × {eps} matching events/s for {secs} s ({} deliveries/s), {} cores",
        u64::from(subs) * eps,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    let (peer, url) = peer_process();
    let results = dir.path().join("fanout.ltr");
    let usage = run(
        Command::new(LT)
            .arg("replay")
            .arg(&trace)
            .args(["--relay", &url, "--no-reconcile", "-o"])
            .arg(&results)
            .args(
                std::env::var("LT_BENCH_THREADS")
                    .map(|t| vec!["--threads".to_owned(), t])
                    .unwrap_or_default(),
            ),
        None,
    );
    drop(peer);
    let runs = lt::analyze::read_merged(std::slice::from_ref(&results)).expect("results");
    let report = lt::analyze::report::build(&runs, &lt::analyze::Ids::new(), &[]);
    let live = report
        .measured
        .live_deliveries
        .as_ref()
        .expect("a live section");
    let (expected, delivered, missed) = live.by_subscription.iter().fold((0, 0, 0), |a, s| {
        (
            a.0 + s.counts.expected,
            a.1 + s.counts.delivered,
            a.2 + s.counts.missed,
        )
    });
    let lag = report
        .measured
        .latency
        .own_lag_ms
        .as_ref()
        .map_or(f64::NAN, |p| p.p99);
    let latency = live.latency_ms.as_ref();
    println!(
        "  lt          {delivered} of {expected} expected deliveries ({missed} missed), delivery p50 {} ms p99 {} ms; lt's own schedule lag p99 {lag:.3} ms (goal <= 5)",
        latency.map_or(f64::NAN, |p| p.p50),
        latency.map_or(f64::NAN, |p| p.p99),
    );

    let (peer, url) = peer_process();
    let (floor_lag_us, floor_cpu_s) = role_figures(
        "live-floor",
        &[
            ("LT_BENCH_URL", &url),
            ("LT_BENCH_TRACE", &trace.to_string_lossy()),
        ],
    );
    drop(peer);
    let lt_us = usage.cpu_s * 1e6 / delivered.max(1) as f64;
    let floor_us = floor_cpu_s * 1e6 / delivered.max(1) as f64;
    println!(
        "  cpu         lt {lt_us:.2} CPU-µs/delivery ({:.1} CPU-s), bare reader floor {floor_us:.2} ({floor_cpu_s:.1} CPU-s): ratio {:.2}",
        usage.cpu_s,
        lt_us / floor_us
    );
    println!(
        "  lag floor   the bare client's own sends went {:.3} ms late at p99 (send − due, timerfd) under the same fan-out",
        floor_lag_us as f64 / 1000.0
    );
    println!(
        "  memory      lt peak RSS {:.1} MiB",
        usage.max_rss_kib as f64 / 1024.0
    );
}
