//! `--metrics-listen`: lt's own progress served during a real run against nostr-rs-relay,
//! read mid-run as a Prometheus server would and checked by Debian's `promtool` (package
//! `prometheus`, installed by `scripts/install-relays`).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lt::scrape::exposition::{self, Metric};

use crate::relay::{Relay, RelayKind, RelayOptions};
use crate::util::{http_get, lt, outcomes, small_trace, text};

/// Debian's promtool (package `prometheus`).
fn promtool() -> PathBuf {
    crate::exporter::debian_binary("/usr/bin/promtool", "prometheus")
}

/// `promtool check metrics` of an exposition: its verdict and what it said.
fn promtool_check(exposition: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!("{}{}", text(&out.stdout), text(&out.stderr)),
    )
}

fn value(metrics: &[Metric], name: &str, labels: &[(&str, &str)]) -> f64 {
    metrics
        .iter()
        .filter(|m| m.name == name)
        .find(|m| {
            labels
                .iter()
                .all(|(k, v)| m.labels.iter().any(|(mk, mv)| mk == k && mv == v))
        })
        .unwrap_or_else(|| panic!("no {name}{labels:?} in {metrics:#?}"))
        .value
}

#[test]
fn lts_own_metrics_are_served_mid_run_and_pass_promtool() {
    let _machine = crate::util::busy();
    promtool();
    let dir = tempfile::tempdir().unwrap();
    let trace = small_trace(dir.path());
    let relay = Relay::start(RelayKind::NostrRsRelay, RelayOptions { raise_limits: true });
    let out = dir.path().join("r.ltr");
    let mut child = lt()
        .arg("replay")
        .arg(&trace)
        .args(["--relay", &relay.url, "--speed", "2x", "-o"])
        .arg(&out)
        .args(["--metrics-listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The address is said on stderr (port 0: lt picked it); the rest of stderr is kept.
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in stderr.lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("lt: live metrics at ") {
                let _ = addr_tx.send(url.to_owned());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let url = addr_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("lt said where its metrics are");
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with("/metrics"),
        "{url}"
    );

    // Mid-run, twice, 2 s apart: a trace of 10 s at 2x is still playing.
    let read = || {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(body) = http_get(&url) {
                break body;
            }
            assert!(Instant::now() < deadline, "no answer from {url}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    std::thread::sleep(Duration::from_secs(3));
    let first = read();
    std::thread::sleep(Duration::from_secs(2));
    let second = read();
    let status = child.wait().unwrap();
    let stderr = reader.join().unwrap();
    assert!(status.success(), "{stderr}");

    for body in [&first, &second] {
        let (ok, said) = promtool_check(body);
        assert!(
            ok,
            "promtool check metrics refused lt's exposition: {said}\n{body}"
        );
        assert!(said.trim().is_empty(), "promtool found problems: {said}");
    }
    let (first, second) = (
        exposition::parse(&first).unwrap(),
        exposition::parse(&second).unwrap(),
    );
    let (_, records) = outcomes(&out);
    assert_eq!(value(&first, "lt_run_records", &[]), records as f64);
    assert_eq!(value(&first, "lt_runs_started_total", &[]), 1.0);
    assert_eq!(value(&first, "lt_connections_open", &[]), 20.0);
    let sent = |m: &[Metric]| value(m, "lt_records_sent_total", &[]);
    assert!(sent(&first) > 0.0, "{first:#?}");
    assert!(sent(&second) > sent(&first) && sent(&second) < records as f64);
    // Every record answered is in the response-time histogram, every one sent in the
    // schedule-lag one; all answered OK by a relay with room to spare.
    let ok = value(&second, "lt_records_done_total", &[("outcome", "ok")]);
    assert!(ok > 0.0 && ok <= sent(&second));
    let answered = value(&second, "lt_response_time_seconds_count", &[]);
    assert!(answered >= ok, "{answered} answered, {ok} ok");
    assert_eq!(
        value(&second, "lt_schedule_lag_seconds_count", &[]),
        sent(&second)
    );
    // ~80 records/s into a relay answering in a millisecond: a handful at any instant.
    let in_flight = value(&second, "lt_in_flight_records", &[]);
    assert!((0.0..=20.0).contains(&in_flight), "{in_flight} in flight");
    // Buckets are cumulative up to +Inf, which holds them all.
    let inf = value(
        &second,
        "lt_response_time_seconds_bucket",
        &[("le", "+Inf")],
    );
    assert_eq!(inf, answered);
}
