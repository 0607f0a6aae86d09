//! `lt record`: a real client (nostr-tools) through the proxy into a real relay, the
//! recording replayed into fresh relays, set against the recording, and the proxy's faults.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use lt::capture::{Op, Record, Reply, Source, TraceReader};
use tokio_tungstenite::tungstenite::Message;

use crate::peer::{Behavior, Peer};
use crate::relay::{Relay, RelayKind, RelayOptions};
use crate::util::{lt, one_line_error, runtime, stored, synth, text};

/// `lt record` running as a child process, listening on a free loopback port.
struct Recording {
    child: Option<Child>,
    /// `ws://127.0.0.1:PORT/`
    url: String,
    stderr: mpsc::Receiver<String>,
}

impl Recording {
    fn start(upstream: &str, output: &Path, extra: &[&str]) -> Recording {
        let mut child = lt()
            .args([
                "record",
                "--listen",
                "127.0.0.1:0",
                "--upstream",
                upstream,
                "-o",
            ])
            .arg(output)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run lt record");
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(15);
        let url = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("lt record did not start listening"));
            if let Some(rest) = line.strip_prefix("lt record: listening on ") {
                break rest.split_whitespace().next().expect("url").to_owned();
            }
        };
        Recording {
            child: Some(child),
            url,
            stderr: rx,
        }
    }

    /// Ctrl-C, then waits for lt to finish; returns stdout and the rest of stderr.
    fn interrupt(mut self) -> (Output, String) {
        let mut child = self.child.take().expect("running");
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGINT);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait().expect("wait").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("lt record did not stop within 20 s of Ctrl-C");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().expect("output");
        let rest: Vec<String> = self.stderr.try_iter().collect();
        (out, rest.join("\n"))
    }
}

/// A test that fails early does not leave the proxy running.
impl Drop for Recording {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn records(path: &Path) -> (lt::capture::Header, Vec<Record>) {
    let mut r = TraceReader::open(path).expect("a complete, valid capture");
    let header = r.header().clone();
    let mut out = Vec::new();
    while let Some(rec) = r.next_record().expect("record") {
        out.push(rec);
    }
    (header, out)
}

/// `node tests/node/session.mjs URL ARGS…`: the frames it logged and its summary.
struct Session {
    sent: Vec<(f64, String)>,
    received: Vec<String>,
    summary: serde_json::Value,
}

fn node_session(url: &str, args: &[&str]) -> Session {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(
        root.join(".cache/node-client/node_modules/nostr-tools")
            .is_dir(),
        "nostr-tools is not installed: run scripts/install-node-client"
    );
    let out = Command::new("node")
        .arg(root.join("tests/node/session.mjs"))
        .arg(url)
        .args(args)
        .output()
        .expect("node is on the machine");
    assert!(
        out.status.success(),
        "session.mjs failed ({}): {}",
        out.status,
        text(&out.stderr)
    );
    let mut s = Session {
        sent: Vec::new(),
        received: Vec::new(),
        summary: serde_json::Value::Null,
    };
    for line in text(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        if let Some(summary) = v.get("summary") {
            s.summary = summary.clone();
            continue;
        }
        let frame = v["frame"].as_str().expect("frame").to_owned();
        match v["dir"].as_str() {
            Some("send") => s.sent.push((v["t_ms"].as_f64().expect("t_ms"), frame)),
            _ => s.received.push(frame),
        }
    }
    s
}

const SESSION: &[&str] = &[
    "--seed",
    "11",
    "--created-at",
    "1796000000",
    "--deterministic-sig",
];

/// The issue's real-client test: nostr-tools publishes a platform-shaped session through
/// the proxy into nostr-rs-relay; it gets the answers it gets directly, the capture holds
/// every frame in order at the client's own timing, and the capture replayed into a fresh
/// relay stores the same events.
#[test]
fn a_real_client_through_the_proxy_is_recorded_and_its_session_replays() {
    // The 2 ms timing bound needs the machine to itself.
    let _machine = crate::util::quiet();
    let dir = tempfile::tempdir().expect("tempdir");
    let direct_relay = Relay::start(RelayKind::NostrRsRelay, RelayOptions::default());
    let recorded_relay = Relay::start(RelayKind::NostrRsRelay, RelayOptions::default());
    let direct = node_session(&direct_relay.url, SESSION);

    let capture = dir.path().join("session.ltc");
    let rec = Recording::start(&recorded_relay.url, &capture, &[]);
    let proxied = node_session(&rec.url, SESSION);
    let (out, stderr) = rec.interrupt();
    assert!(out.status.success(), "lt record: {stderr}");
    let stdout = text(&out.stdout);
    assert!(stdout.contains("7 events"), "{stdout}");

    // The same answers as directly (the views' OKs may come in another order).
    let sorted = |v: &[String]| {
        let mut v = v.to_vec();
        v.sort();
        v
    };
    assert_eq!(sorted(&proxied.received), sorted(&direct.received));
    assert_eq!(proxied.summary["published"], direct.summary["published"]);
    assert_eq!(
        proxied.summary["eose_events"],
        direct.summary["eose_events"]
    );

    // Every frame the client sent, in order, at its own timing (within 2 ms).
    let (header, recs) = records(&capture);
    let Source::Recorded(from) = &header.source else {
        panic!("not a recorded trace: {:?}", header.source)
    };
    assert_eq!(from.upstream, format!("127.0.0.1:{}", recorded_relay.port));
    let frames: Vec<&str> = recs.iter().map(|r| r.frame.as_str()).collect();
    let sent: Vec<&str> = proxied.sent.iter().map(|(_, f)| f.as_str()).collect();
    assert_eq!(frames, sent);
    // The two clocks have different origins: each frame's offset less its client time,
    // against the median of that difference over the session (a late stamp of the first
    // frame alone must not shift every other frame).
    let mut shifts: Vec<f64> = recs
        .iter()
        .zip(&proxied.sent)
        .map(|(r, (t, _))| r.offset_us as f64 / 1e3 - t)
        .collect();
    shifts.sort_by(f64::total_cmp);
    let shift = shifts[shifts.len() / 2];
    for (r, (t, frame)) in recs.iter().zip(&proxied.sent) {
        let drift = r.offset_us as f64 / 1e3 - t - shift;
        assert!(
            drift.abs() <= 2.0,
            "{frame}: {drift:.3} ms off the client's own timing"
        );
    }
    // The kinds, the CLOSE after its EOSE, and the relay's answers.
    let ops: Vec<String> = recs.iter().map(|r| r.op.label()).collect();
    assert_eq!(
        &ops[..4],
        ["video-post 30078", "nip94-mirror 1063", "REQ feed", "CLOSE"]
    );
    assert_eq!(recs[3].after, Some(2), "the CLOSE follows its REQ's EOSE");
    for r in recs.iter().filter(|r| r.op.is_event()) {
        let reply = &r.recorded.as_ref().expect("an answer").reply;
        assert!(
            matches!(reply, Reply::Ok { accepted: true, .. }),
            "{reply:?}"
        );
    }
    assert!(matches!(
        recs[2].recorded.as_ref().map(|a| &a.reply),
        Some(Reply::Eose { events: 1 })
    ));

    // Replayed into a fresh relay: the same event set, asked by id.
    let fresh = Relay::start(RelayKind::NostrRsRelay, RelayOptions::default());
    let results = dir.path().join("replayed.ltr");
    let out = lt()
        .args(["replay"])
        .arg(&capture)
        .args(["--relay", &fresh.url, "-o"])
        .arg(&results)
        .output()
        .expect("run lt replay");
    assert!(out.status.success(), "lt replay: {}", text(&out.stderr));
    let ids: Vec<String> = direct.summary["published"]
        .as_array()
        .expect("published")
        .iter()
        .map(|p| p["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(ids.len(), 7);
    let want: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(stored(&fresh.url, &ids), want);
}

/// Record against nostr-rs-relay, replay into rnostr: the report names the rejections
/// rnostr makes that the recorded relay did not (rnostr 0.4.8's `replaced:` for 30078
/// posts whose `d` tag is not their first tag).
#[test]
fn a_recording_replayed_into_another_relay_names_what_it_answers_differently() {
    let _machine = crate::util::busy();
    let dir = tempfile::tempdir().expect("tempdir");
    let trace = synth(
        dir.path(),
        "s5",
        &[
            "--seed",
            "5",
            "--duration",
            "10",
            "--rate",
            "40",
            "--clients",
            "20",
        ],
    );
    let recorded_relay = Relay::start(RelayKind::NostrRsRelay, RelayOptions::default());
    let capture = dir.path().join("rec.ltc");
    let rec = Recording::start(&recorded_relay.url, &capture, &[]);

    // The relay's NIP-11 document, through the proxy, as a browser asks for it.
    let addr = rec.url.trim_start_matches("ws://").trim_end_matches('/');
    let mut tcp = std::net::TcpStream::connect(addr).expect("connect to the proxy");
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: relay\r\nAccept: application/nostr+json\r\n\r\n")
        .expect("write");
    let mut info = String::new();
    let _ = tcp.read_to_string(&mut info);
    assert!(info.starts_with("HTTP/1.1 200"), "{info}");
    assert!(info.contains("nostr-rs-relay"), "{info}");

    let out = lt()
        .args(["replay"])
        .arg(&trace)
        .args(["--relay", &rec.url, "--speed", "4x", "-o"])
        .arg(dir.path().join("through.ltr"))
        .output()
        .expect("run lt replay");
    assert!(out.status.success(), "lt replay: {}", text(&out.stderr));
    let (out, stderr) = rec.interrupt();
    assert!(out.status.success(), "lt record: {stderr}");
    // The replay's 20 connections, numbered without gaps (its NIP-11 request and ours are
    // not connections of the trace).
    let (_, recs) = records(&capture);
    let clients: HashSet<u32> = recs.iter().map(|r| r.client).collect();
    assert_eq!(clients, (0..20).collect::<HashSet<u32>>());

    let rnostr = Relay::start(RelayKind::Rnostr, RelayOptions::default());
    let results = dir.path().join("rnostr.ltr");
    let out = lt()
        .args(["replay"])
        .arg(&capture)
        .args(["--relay", &rnostr.url, "--speed", "4x", "-o"])
        .arg(&results)
        .output()
        .expect("run lt replay");
    assert!(out.status.success(), "lt replay: {}", text(&out.stderr));
    let reports = dir.path().join("reports");
    let out = lt()
        .args(["analyze"])
        .arg(&results)
        .arg("--out-dir")
        .arg(&reports)
        .output()
        .expect("run lt analyze");
    assert!(out.status.success(), "lt analyze: {}", text(&out.stderr));
    let json = crate::util::file_with_extension(&reports, "json");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("read")).expect("JSON");
    let a = &report["against_recording"];
    assert_eq!(a["events_recorded_accepted"], a["events"], "{a}");
    let replaced = a["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .find(|c| c["replayed"] == "rejected replaced:")
        .unwrap_or_else(|| panic!("no replaced: rejections named: {a}"));
    assert_eq!(replaced["recorded"], "ok");
    assert!(replaced["records"].as_u64().expect("count") > 0);
    assert!(
        replaced["example_message"]
            .as_str()
            .expect("message")
            .starts_with("replaced:"),
        "{replaced}"
    );
    let accepted_now = a["events_replayed_accepted"].as_u64().expect("n");
    assert_eq!(
        accepted_now + replaced["records"].as_u64().expect("n"),
        a["events"].as_u64().expect("n"),
        "every other event accepted as recorded: {a}"
    );
    let md = crate::util::file_with_extension(&reports, "md");
    let md = std::fs::read_to_string(md).expect("read");
    assert!(md.contains("## Against the recording"), "{md}");
    assert!(
        md.contains("now `rejected replaced:` that were `ok`"),
        "{md}"
    );
}

fn event_frame(n: u32) -> String {
    format!(r#"["EVENT",{{"id":"{n:064x}","kind":1,"tags":[],"content":"x"}}]"#)
}

/// Garbage and oversized frames from the relay, text that is not JSON from the client, a
/// relay connection that drops mid-session and a client that vanishes: each is forwarded
/// or closed as it would be without the proxy, counted, and the capture stays whole.
#[test]
fn faults_on_either_side_are_forwarded_counted_and_leave_the_capture_whole() {
    let _machine = crate::util::busy();
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();

    // A relay that sends garbage, unknown messages and a 1 MiB frame besides its answers.
    let garbage = rt
        .block_on(Peer::start(Behavior::Garbage {
            oversized_every: 2,
            oversized_bytes: 1 << 20,
        }))
        .expect("peer");
    let capture = dir.path().join("garbage.ltc");
    let rec = Recording::start(&garbage.url(), &capture, &[]);
    let received = rt.block_on(async {
        let (mut ws, _) = tokio_tungstenite::connect_async(&rec.url)
            .await
            .expect("connect through the proxy");
        for n in 0..4 {
            ws.send(Message::text(event_frame(n))).await.expect("send");
        }
        ws.send(Message::text("hello, not json"))
            .await
            .expect("send");
        let mut frames = Vec::new();
        let mut oks = 0;
        while oks < 4 {
            match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    oks += usize::from(t.starts_with("[\"OK\""));
                    frames.push(t.to_string());
                }
                Ok(Some(Ok(_))) => {}
                other => panic!("connection ended early: {other:?}"),
            }
        }
        let _ = ws.close(None).await;
        frames
    });
    // Forwarded unchanged: the garbage, and the 1 MiB frame whole.
    assert!(
        received.iter().any(|f| f.len() == 1 << 20),
        "no oversized frame arrived"
    );
    assert!(
        received
            .iter()
            .any(|f| serde_json::from_str::<serde_json::Value>(f).is_err()),
        "no garbage arrived"
    );
    let (out, stderr) = rec.interrupt();
    assert!(out.status.success(), "lt record: {stderr}");
    let stdout = text(&out.stdout);
    assert!(stdout.contains("unreadable relay frames"), "{stdout}");
    let (_, recs) = records(&capture);
    assert_eq!(recs.len(), 5);
    assert_eq!(recs[4].op, Op::Other);
    assert_eq!(recs[4].frame, "hello, not json");
    for r in &recs[..4] {
        assert!(matches!(
            r.recorded.as_ref().map(|a| &a.reply),
            Some(Reply::Ok { accepted: true, .. })
        ));
    }

    // A relay that drops each connection after 2 answers, without a close frame: the
    // client's connection ends as well, and what it sent is recorded.
    let dropper = rt
        .block_on(Peer::start(Behavior::DropAfter { after_messages: 2 }))
        .expect("peer");
    let capture = dir.path().join("dropped.ltc");
    let rec = Recording::start(&dropper.url(), &capture, &[]);
    let ended = rt.block_on(async {
        let (mut ws, _) = tokio_tungstenite::connect_async(&rec.url)
            .await
            .expect("connect through the proxy");
        for n in 0..3 {
            ws.send(Message::text(event_frame(n))).await.expect("send");
        }
        loop {
            match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
                Ok(Some(Ok(Message::Text(_)))) => {}
                Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => break true,
                Ok(Some(Ok(_))) => {}
                Err(_) => break false,
            }
        }
    });
    assert!(
        ended,
        "the client's connection stayed open after the relay's dropped"
    );
    // A client that vanishes without a close frame, with an event unanswered.
    rt.block_on(async {
        let (mut ws, _) = tokio_tungstenite::connect_async(&rec.url)
            .await
            .expect("connect through the proxy");
        ws.send(Message::text(event_frame(9))).await.expect("send");
        drop(ws);
    });
    std::thread::sleep(Duration::from_millis(300));
    let (out, stderr) = rec.interrupt();
    assert!(out.status.success(), "lt record: {stderr}");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("relay connections gone without a close"),
        "{stdout}"
    );
    let (_, recs) = records(&capture);
    assert!(recs.len() >= 3, "{} records", recs.len());
    assert!(matches!(
        recs[0].recorded.as_ref().map(|a| &a.reply),
        Some(Reply::Ok { accepted: true, .. })
    ));
    let unanswered = recs
        .iter()
        .filter(|r| matches!(r.recorded.as_ref().map(|a| &a.reply), Some(Reply::None)))
        .count();
    assert!(
        unanswered >= 1,
        "the third event had no answer before the drop"
    );
}

/// Ctrl-C with 200 clients connected: every client gets a close frame (1001, going away),
/// lt exits 0 and the capture is complete.
#[test]
fn ctrl_c_with_200_clients_connected_closes_them_cleanly_and_completes_the_capture() {
    let _machine = crate::util::busy();
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = Relay::start(RelayKind::NostrRsRelay, RelayOptions { raise_limits: true });
    let capture = dir.path().join("200.ltc");
    let rec = Recording::start(&relay.url, &capture, &[]);
    let rt = runtime();
    let url = rec.url.clone();
    let clients = rt.block_on(async {
        let mut clients = Vec::new();
        for n in 0..200u32 {
            let (mut ws, _) = tokio_tungstenite::connect_async(&url)
                .await
                .expect("connect through the proxy");
            let sub = format!("s{n}");
            ws.send(Message::text(format!(
                r#"["REQ","{sub}",{{"kinds":[7],"limit":1}}]"#
            )))
            .await
            .expect("send");
            clients.push(ws);
        }
        // Every REQ answered before the stop, so none is left waiting.
        for ws in clients.iter_mut() {
            loop {
                match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
                    Ok(Some(Ok(Message::Text(t)))) if t.starts_with("[\"EOSE\"") => break,
                    Ok(Some(Ok(_))) => {}
                    other => panic!("no EOSE: {other:?}"),
                }
            }
        }
        clients
    });
    let waiter = std::thread::spawn(move || rec.interrupt());
    let codes = rt.block_on(async {
        let mut codes = Vec::new();
        for mut ws in clients {
            let code = loop {
                match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
                    Ok(Some(Ok(Message::Close(Some(f))))) => break Some(u16::from(f.code)),
                    Ok(Some(Ok(_))) => {}
                    _ => break None,
                }
            };
            codes.push(code);
        }
        codes
    });
    let (out, stderr) = waiter.join().expect("join");
    assert!(out.status.success(), "lt record: {stderr}");
    assert!(
        codes.iter().all(|c| *c == Some(1001)),
        "close codes: {:?}",
        codes
            .iter()
            .filter(|c| **c != Some(1001))
            .take(5)
            .collect::<Vec<_>>()
    );
    let (_, recs) = records(&capture);
    assert_eq!(recs.len(), 200);
    assert!(recs.iter().all(|r| matches!(
        r.recorded.as_ref().map(|a| &a.reply),
        Some(Reply::Eose { .. })
    )));
    let clients: HashSet<u32> = recs.iter().map(|r| r.client).collect();
    assert_eq!(clients.len(), 200);
}

#[test]
fn record_refuses_an_upstream_that_is_not_test_infrastructure_and_an_existing_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = lt()
        .args(["record", "--upstream", "ws://192.0.2.7:7777/", "-o"])
        .arg(dir.path().join("x.ltc"))
        .output()
        .expect("run");
    let line = one_line_error(&out);
    assert!(line.contains("refusing to record"), "{line}");
    assert!(!dir.path().join("x.ltc").exists());

    let existing = dir.path().join("kept.ltc");
    std::fs::write(&existing, b"precious").expect("write");
    let out = lt()
        .args([
            "record",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "ws://127.0.0.1:9/",
            "-o",
        ])
        .arg(&existing)
        .output()
        .expect("run");
    let line = one_line_error(&out);
    assert!(line.contains("already exists"), "{line}");
    assert_eq!(std::fs::read(&existing).expect("read"), b"precious");
}

/// A recording killed outright keeps every block written before (one a second at least):
/// `--recover` makes them a complete capture, and refuses a capture that is complete.
#[test]
fn a_killed_recording_is_recovered_up_to_its_last_complete_block() {
    let _machine = crate::util::busy();
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let peer = rt.block_on(Peer::start(Behavior::AckAll)).expect("peer");
    let capture = dir.path().join("killed.ltc");
    let mut rec = Recording::start(&peer.url(), &capture, &[]);
    rt.block_on(async {
        let (mut ws, _) = tokio_tungstenite::connect_async(&rec.url)
            .await
            .expect("connect through the proxy");
        for n in 0..50 {
            ws.send(Message::text(event_frame(n))).await.expect("send");
        }
        let mut oks = 0;
        while oks < 50 {
            if let Some(Ok(Message::Text(t))) = ws.next().await {
                oks += usize::from(t.starts_with("[\"OK\""));
            }
        }
        // Past the next block flush, then kill without a word.
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let mut child = rec.child.take().expect("running");
        child.kill().expect("kill");
        child.wait().expect("wait");
    });
    let out = lt().args(["inspect"]).arg(&capture).output().expect("run");
    let line = one_line_error(&out);
    assert!(line.contains("killed.ltc"), "{line}");

    let fixed = dir.path().join("fixed.ltc");
    let out = lt()
        .args(["record", "--recover"])
        .arg(&capture)
        .arg("-o")
        .arg(&fixed)
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("recovered 50 records"),
        "{}",
        text(&out.stdout)
    );
    let (header, recs) = records(&fixed);
    assert!(matches!(header.source, Source::Recorded(_)));
    assert_eq!(recs.len(), 50);

    let again = dir.path().join("again.ltc");
    let out = lt()
        .args(["record", "--recover"])
        .arg(&fixed)
        .arg("-o")
        .arg(&again)
        .output()
        .expect("run");
    let line = one_line_error(&out);
    assert!(line.contains("nothing to recover"), "{line}");
    assert!(!again.exists());
}
