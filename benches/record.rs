//! `cargo bench --bench record`: what `lt record`'s proxy costs a client, as differences
//! and ratios against the same client talking to the same peer directly, in the same run.
//!
//! 1. added latency: an open-loop client sends EVENT frames at 1k and then 20k frames/s over
//!    20 connections to the ack-only peer (`lt_testkit::peer`), directly and through
//!    `lt record`; each frame's round trip is timed from its write to its OK. Goal: the
//!    proxy adds ≤ 0.1 ms at p50 and ≤ 0.5 ms at p99;
//! 2. sustained rate: a closed-loop client (100 frames in flight per connection, 20
//!    connections) for 5 s, directly and through the proxy. Goal: ≥ 0.8× the direct rate.
//!
//! Each figure is the median of three rounds, direct and proxied alternating. The peer runs
//! on its own runtime; `lt record` is the release binary, in its own process.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use lt_testkit::peer::{Behavior, Peer};
use lt_testkit::stats::median;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

const LT: &str = env!("CARGO_BIN_EXE_lt");
const CONNS: usize = 20;
const ROUNDS: usize = 3;

fn event(n: u64) -> String {
    format!(r#"["EVENT",{{"id":"{n:064x}","kind":1,"tags":[],"content":"lt record bench"}}]"#)
}

/// `lt record` in front of `upstream`, listening on a free port.
struct Proxy {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Proxy {
    fn start(upstream: &str) -> Proxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = Command::new(LT)
            .args([
                "record",
                "--quiet",
                "--listen",
                "127.0.0.1:0",
                "--upstream",
                upstream,
            ])
            .arg("-o")
            .arg(dir.path().join("bench.ltc"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run lt record");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let url = loop {
            let line = lines
                .next()
                .expect("lt record exited before listening")
                .expect("read");
            if let Some(rest) = line.strip_prefix("lt record: listening on ") {
                break rest.split_whitespace().next().expect("url").to_owned();
            }
        };
        // Keep draining stderr so the proxy never blocks on it.
        std::thread::spawn(move || for _ in lines {});
        Proxy {
            child,
            url,
            _dir: dir,
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The floor: a bare WebSocket forwarder (tokio-tungstenite, one upstream connection per
/// client, every frame forwarded as read, nothing recorded) on its own runtime. What any
/// proxy hop costs on this machine; lt record's own share is what it adds above this.
fn bare_forwarder(rt: &tokio::runtime::Runtime, upstream: String) -> String {
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let _ = tcp.set_nodelay(true);
                    let Ok(client) = tokio_tungstenite::accept_async(tcp).await else {
                        return;
                    };
                    let Ok((relay, _)) = tokio_tungstenite::connect_async(upstream.as_str()).await
                    else {
                        return;
                    };
                    let (mut c_tx, mut c_rx) = client.split();
                    let (mut r_tx, mut r_rx) = relay.split();
                    let up = async {
                        while let Some(Ok(m)) = c_rx.next().await {
                            if r_tx.send(m).await.is_err() {
                                break;
                            }
                        }
                    };
                    let down = async {
                        while let Some(Ok(m)) = r_rx.next().await {
                            if c_tx.send(m).await.is_err() {
                                break;
                            }
                        }
                    };
                    tokio::select! { _ = up => {}, _ = down => {} }
                });
            }
        });
        format!("ws://{addr}/")
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Round-trip times (µs, from the moment each frame was written to the OK) of `rate`
/// frames/s for `secs` over CONNS connections to `url`, sent open loop. From the write, not
/// the intended time: the client's timer fires up to a millisecond late, the same for both
/// paths, and that noise would hide a tenth of a millisecond.
fn open_loop(rt: &tokio::runtime::Runtime, url: &str, rate: f64, secs: f64) -> Histogram<u64> {
    rt.block_on(async {
        let per_conn = rate / CONNS as f64;
        let n = (per_conn * secs) as u64;
        let t0 = tokio::time::Instant::now() + Duration::from_millis(200);
        let (tx, mut rx) = mpsc::unbounded_channel::<Histogram<u64>>();
        for c in 0..CONNS {
            let url = url.to_owned();
            let tx = tx.clone();
            let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
                .await
                .expect("connect");
            tokio::spawn(async move {
                let (mut sink, mut stream) = ws.split();
                let gap = Duration::from_secs_f64(1.0 / per_conn);
                // Staggered so the connections do not all send at once.
                let start = t0 + gap.mul_f64(c as f64 / CONNS as f64);
                let written =
                    std::sync::Arc::new(std::sync::Mutex::new(VecDeque::<Instant>::new()));
                let sent = written.clone();
                let reader = tokio::spawn(async move {
                    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("h");
                    let mut got = 0;
                    while got < n {
                        match stream.next().await {
                            Some(Ok(Message::Text(t))) if t.starts_with("[\"OK\"") => {
                                // The peer answers in order: the i-th OK is the i-th frame's.
                                let at = written.lock().expect("lock").pop_front();
                                let us = at.map_or(0, |at| at.elapsed().as_micros() as u64);
                                h.saturating_record(us.max(1));
                                got += 1;
                            }
                            Some(Ok(_)) => {}
                            _ => break,
                        }
                    }
                    h
                });
                for i in 0..n {
                    tokio::time::sleep_until(start + gap.mul_f64(i as f64)).await;
                    let frame = Message::text(event(((c as u64) << 40) | i));
                    // Stamped before the write: an answer can come before `send` returns.
                    sent.lock().expect("lock").push_back(Instant::now());
                    if sink.send(frame).await.is_err() {
                        break;
                    }
                }
                let h = reader.await.expect("reader");
                let _ = sink.close().await;
                let _ = tx.send(h);
            });
        }
        drop(tx);
        let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("h");
        while let Some(h) = rx.recv().await {
            all.add(&h).expect("same bounds");
        }
        all
    })
}

/// Frames acknowledged per second with 100 in flight per connection, for `secs`.
fn closed_loop(rt: &tokio::runtime::Runtime, url: &str, secs: f64) -> f64 {
    rt.block_on(async {
        let end = Instant::now() + Duration::from_secs_f64(secs);
        let (tx, mut rx) = mpsc::unbounded_channel::<u64>();
        for c in 0..CONNS {
            let (ws, _) = tokio_tungstenite::connect_async(url)
                .await
                .expect("connect");
            let tx = tx.clone();
            tokio::spawn(async move {
                let (mut sink, mut stream) = ws.split();
                let mut next = (c as u64) << 40;
                let mut in_flight = VecDeque::new();
                for _ in 0..100 {
                    let _ = sink.feed(Message::text(event(next))).await;
                    in_flight.push_back(next);
                    next += 1;
                }
                let _ = sink.flush().await;
                let mut acked = 0u64;
                while Instant::now() < end {
                    match stream.next().await {
                        Some(Ok(Message::Text(t))) if t.starts_with("[\"OK\"") => {
                            acked += 1;
                            in_flight.pop_front();
                            if sink.send(Message::text(event(next))).await.is_err() {
                                break;
                            }
                            next += 1;
                        }
                        Some(Ok(_)) => {}
                        _ => break,
                    }
                }
                let _ = tx.send(acked);
            });
        }
        drop(tx);
        let mut total = 0;
        while let Some(n) = rx.recv().await {
            total += n;
        }
        total as f64 / secs
    })
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

fn main() {
    let peer_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let peer = peer_rt
        .block_on(Peer::start(Behavior::AckAll))
        .expect("peer");
    let direct = peer.url();
    let proxy = Proxy::start(&direct);
    let bare_rt = runtime();
    let bare = bare_forwarder(&bare_rt, direct.clone());
    let client = runtime();
    println!("lt record bench: {CONNS} connections, ack-only peer; median of {ROUNDS} rounds");
    for rate in [1_000.0, 20_000.0] {
        let mut figures: [Vec<f64>; 6] = Default::default();
        for _ in 0..ROUNDS {
            for (i, url) in [&direct, &bare, &proxy.url].into_iter().enumerate() {
                let h = open_loop(&client, url, rate, 3.0);
                figures[2 * i].push(ms(&h, 0.5));
                figures[2 * i + 1].push(ms(&h, 0.99));
            }
        }
        let [d50, d99, b50, b99, p50, p99] = figures.map(|v| median(&v));
        println!(
            "added latency at {rate:>6} frames/s: p50 {:+.3} ms (goal ≤ 0.1), p99 {:+.3} ms (goal ≤ 0.5); a bare forwarder adds p50 {:+.3}, p99 {:+.3} (direct p50 {d50:.3} p99 {d99:.3} · bare {b50:.3} {b99:.3} · lt record {p50:.3} {p99:.3} ms)",
            p50 - d50,
            p99 - d99,
            b50 - d50,
            b99 - d99
        );
    }
    let mut rates: [Vec<f64>; 3] = Default::default();
    for _ in 0..ROUNDS {
        for (i, url) in [&direct, &bare, &proxy.url].into_iter().enumerate() {
            rates[i].push(closed_loop(&client, url, 5.0));
        }
    }
    let [d, b, p] = rates.map(|v| median(&v));
    println!(
        "sustained rate: {p:.0} frames/s through lt record, {d:.0} direct: {:.2}× (goal ≥ 0.8×); a bare forwarder {b:.0}: {:.2}×",
        p / d,
        b / d
    );
}
