//! `--scrape` and lt's reading of this machine's `/proc` during real runs: nostr-rs-relay's
//! own `/metrics` and a real node_exporter (Debian's `prometheus-node-exporter`, installed
//! by `scripts/install-relays`), rnostr's key-guarded `/metrics`, and endpoints that die,
//! answer garbage or hang (in-process peers: fault injection beside the real ones).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use lt::analyze::scraped::{Scraped, ScrapedSource};

use crate::exporter::{http_get, NodeExporter};
use crate::relay::{Relay, RelayKind, RelayOptions};
use crate::util::{lt, outcomes, replay, report_of, small_trace, synth, text};

/// The host's CPU ticks from `/proc/stat`, read here, independently of lt: (busy, total),
/// busy being every mode but idle and iowait.
fn cpu_ticks() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let line = stat.lines().find(|l| l.starts_with("cpu ")).unwrap();
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|x| x.parse().unwrap())
        .collect();
    let total: f64 = v.iter().sum();
    (total - v[3] - v[4], total)
}

fn source<'a>(s: &'a Scraped, preset: &str) -> &'a ScrapedSource {
    s.sources
        .iter()
        .find(|x| x.preset == preset)
        .unwrap_or_else(|| panic!("no {preset} source in {s:#?}"))
}

fn figure(s: &ScrapedSource, id: &str) -> f64 {
    s.figures
        .iter()
        .find(|f| f.id == id)
        .unwrap_or_else(|| panic!("no figure {id} in {s:#?}"))
        .value
}

#[test]
fn the_relays_own_count_and_node_exporter_agree_with_lt_and_proc() {
    let _machine = crate::util::busy();
    let dir = tempfile::tempdir().unwrap();
    let trace = small_trace(dir.path());
    let relay = Relay::start(RelayKind::NostrRsRelay, RelayOptions { raise_limits: true });
    let exporter = NodeExporter::start();
    let out = dir.path().join("r.ltr");
    let before = cpu_ticks();
    let run = replay(
        &trace,
        &relay.url,
        &out,
        &[
            "--speed",
            "2x",
            "--relay-pid",
            &relay.pid.to_string(),
            // `{port}`: the relay URL's port, where nostr-rs-relay serves its metrics.
            "--scrape",
            "http://127.0.0.1:{port}/metrics",
            "--scrape",
            &exporter.url,
        ],
    );
    let after = cpu_ticks();
    assert!(run.status.success(), "{}", text(&run.stderr));
    outcomes(&out);
    let report = report_of(std::slice::from_ref(&out));
    let scraped = report.measured.scraped.as_ref().expect("a scraped section");
    // Detected from their answers: nobody named the presets.
    let relay_side = source(scraped, "nostr-rs-relay");
    let node = scraped
        .sources
        .iter()
        .find(|s| s.preset == "node-exporter" && s.location.starts_with("http"))
        .unwrap();
    let local = scraped
        .sources
        .iter()
        .find(|s| s.location == "/proc")
        .unwrap();
    source(scraped, "process");
    for s in &scraped.sources {
        assert_eq!(s.gaps, 0, "{s:#?}");
        assert!(s.scrapes >= 10, "{s:#?}");
    }
    let agreement = scraped.events_agreement.as_ref().unwrap();
    assert!(agreement.lt_events_sent > 500, "{agreement:?}");
    assert_eq!(
        agreement.relay_events, agreement.lt_events_sent as f64,
        "the events nostr-rs-relay's writer handled against lt's EVENT frames sent"
    );
    assert!(agreement.agree);
    assert!(figure(relay_side, "write_p99_ms") > 0.0);
    // The host's CPU as node_exporter saw it, as lt's own /proc reading saw it, and as
    // /proc/stat read here over the same window: within 10 points.
    let independent = 100.0 * (after.0 - before.0) / (after.1 - before.1);
    for s in [node, local] {
        let busy = figure(s, "cpu_busy_pct");
        assert!(
            (busy - independent).abs() <= 10.0,
            "{}: host CPU busy {busy}% against {independent}% from /proc/stat",
            s.location
        );
    }
    // The run's traffic is on loopback: lt's /proc reading shows it (this node_exporter
    // build leaves `lo` out of its netdev collector).
    assert!(figure(local, "net.lo.receive_bytes_per_s") > 0.0);
    // The Markdown shows each source.
    let md_dir = dir.path().join("report");
    let analyze = lt()
        .args(["analyze", "--allow-untrusted", "--out-dir"])
        .arg(&md_dir)
        .arg(&out)
        // Scraped figures are gates too: by preset and id, and as headlines.
        .args(["--check", "scraped.nostr-rs-relay.events_received > 500"])
        .args(["--check", "scraped.node.cpu_busy_pct <= 100%"])
        .args(["--check", "summary.relay_write_p99 < 10s"])
        .args(["--check", "summary.host_cpu_per_event > 0ms"])
        .output()
        .unwrap();
    assert!(analyze.status.success(), "{}", text(&analyze.stderr));
    let summary = &report.measured.summary;
    for id in [
        "relay_write_p99",
        "relay_query_p99",
        "host_cpu_busy",
        "host_cpu_per_event",
    ] {
        assert!(summary.iter().any(|h| h.id == id), "no headline {id}");
    }
    let failing = lt()
        .args(["analyze", "--allow-untrusted", "--out-dir"])
        .arg(dir.path().join("report-failing"))
        .arg(&out)
        .args(["--check", "scraped.nostr-rs-relay.events_received < 1"])
        .output()
        .unwrap();
    assert_eq!(failing.status.code(), Some(1), "{}", text(&failing.stderr));
    let md = std::fs::read_dir(&md_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "md"))
        .unwrap();
    let md = std::fs::read_to_string(md).unwrap();
    assert!(md.contains("## The relay's side"), "{md}");
    assert!(
        md.contains("(nostr-rs-relay)") && md.contains("(node-exporter)"),
        "{md}"
    );
    assert!(md.contains("they agree"), "{md}");
}

#[test]
fn rnostr_is_scraped_with_its_key_and_the_key_is_never_kept() {
    let _machine = crate::util::busy();
    let dir = tempfile::tempdir().unwrap();
    let trace = small_trace(dir.path());
    let template = dir.path().join("rnostr.toml");
    let base = std::fs::read_to_string(lt_testkit::relay::config_template(
        RelayKind::Rnostr,
        RelayOptions { raise_limits: true },
    ))
    .unwrap();
    std::fs::write(
        &template,
        base.replace(
            "[metrics]\nenabled = false",
            "[metrics]\nenabled = true\nauth = \"s3cret\"",
        ),
    )
    .unwrap();
    let relay = Relay::start_with_template(RelayKind::Rnostr, &template);
    let out = dir.path().join("r.ltr");
    let run = replay(
        &trace,
        &relay.url,
        &out,
        &[
            "--speed",
            "2x",
            "--no-host-stats",
            "--scrape",
            &format!("rnostr=http://127.0.0.1:{}/metrics?auth=s3cret", relay.port),
        ],
    );
    assert!(run.status.success(), "{}", text(&run.stderr));
    let report = report_of(std::slice::from_ref(&out));
    let scraped = report.measured.scraped.as_ref().unwrap();
    assert_eq!(scraped.sources.len(), 1, "--no-host-stats: no /proc source");
    let s = source(scraped, "rnostr");
    assert_eq!(s.gaps, 0, "{s:#?}");
    let agreement = scraped.events_agreement.as_ref().unwrap();
    assert_eq!(agreement.relay_events, agreement.lt_events_sent as f64);
    assert!(figure(s, "events_stored") > 0.0);
    // The key went to the relay and nowhere else: not in the results, not in the report.
    let mut results = lt::capture::results::ResultsReader::open(&out).unwrap();
    assert!(!format!("{:?}", results.header()).contains("s3cret"));
    while let Some(row) = results.next_row().unwrap() {
        assert!(!format!("{row:?}").contains("s3cret"), "{row:?}");
    }
    assert!(!serde_json::to_string(&report).unwrap().contains("s3cret"));
    assert!(!s.location.contains('?'), "{}", s.location);
}

/// An endpoint answering every request with 200 and `body`; after `answers` requests (if
/// given) it stops listening, and later scrapes are refused.
fn serving(body: &'static str, answers: Option<usize>) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/metrics", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in l.incoming().take(answers.unwrap_or(usize::MAX)) {
            let Ok(mut s) = stream else { return };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

/// An endpoint that answers a valid exposition `good` times, then stops listening.
fn dying(good: usize) -> String {
    serving("# TYPE up gauge\nup 1\n", Some(good))
}

/// An endpoint that answers every request with 200 and a page that is not the format.
fn garbage() -> String {
    serving("<html><body>upstream error</body></html>\n", None)
}

/// An endpoint that accepts connections and never answers.
fn hanging() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/metrics", l.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in l.incoming() {
            match stream {
                Ok(s) => held.push(s),
                Err(_) => return,
            }
        }
    });
    url
}

#[test]
fn a_dying_a_garbage_and_a_hanging_endpoint_cost_gaps_and_nothing_else() {
    let _machine = crate::util::busy();
    let dir = tempfile::tempdir().unwrap();
    let trace = small_trace(dir.path());
    let relay = Relay::start(RelayKind::NostrRsRelay, RelayOptions { raise_limits: true });
    let out = dir.path().join("r.ltr");
    let (dies, junk, hangs) = (dying(4), garbage(), hanging());
    let started = Instant::now();
    let run = replay(
        &trace,
        &relay.url,
        &out,
        &[
            "--speed",
            "2x",
            "--no-host-stats",
            "--scrape",
            &format!("other={dies}"),
            "--scrape",
            &format!("other={junk}"),
            "--scrape",
            &format!("other={hangs}"),
        ],
    );
    let took = started.elapsed();
    assert!(run.status.success(), "{}", text(&run.stderr));
    // The run is whole: every record has its outcome, and it took its own time (10 s of
    // trace, the connect phase, the wind-down), not the endpoints'.
    let (counts, _) = outcomes(&out);
    for lost in ["timeout", "disconnected", "not_sent", "lost", "dropped"] {
        assert!(!counts.contains_key(lost), "{counts:?}");
    }
    assert!(took < Duration::from_secs(25), "{took:?}");
    let report = report_of(std::slice::from_ref(&out));
    let scraped = report.measured.scraped.as_ref().unwrap();
    let by_location = |url: &str| {
        scraped
            .sources
            .iter()
            .find(|s| url.starts_with(&s.location))
            .unwrap_or_else(|| panic!("{url} not in {scraped:#?}"))
    };
    let d = by_location(&dies);
    assert!(d.gaps > 0 && d.gaps < d.scrapes, "{d:#?}");
    let g = by_location(&junk);
    assert_eq!(g.gaps, g.scrapes, "{g:#?}");
    assert!(
        g.first_gap
            .as_deref()
            .unwrap()
            .contains("not the Prometheus text format"),
        "{g:#?}"
    );
    let h = by_location(&hangs);
    assert_eq!(h.gaps, h.scrapes, "{h:#?}");
    assert!(
        h.scrapes >= 5,
        "a hanging endpoint is still asked, interval after interval: {h:#?}"
    );
}

#[test]
fn a_scrape_url_on_a_host_not_allowed_is_refused_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let trace = small_trace(dir.path());
    for url in [
        "http://203.0.113.9:9100/metrics?auth=secret",
        "https://relay.damus.io/metrics",
        "ftp://127.0.0.1/metrics",
    ] {
        let out = dir.path().join("never.ltr");
        // Port 9 (discard): nothing listens; a refusal must come before any connection.
        let run = replay(&trace, "ws://127.0.0.1:9/", &out, &["--scrape", url]);
        assert!(!run.status.success());
        let err = text(&run.stderr);
        assert!(err.contains("refusing to scrape"), "{url}: {err}");
        assert!(!err.contains("secret"), "{err}");
        assert!(!out.exists());
    }
}

/// (name, sorted labels, value as `{:?}` prints it, so NaN equals NaN).
type Sample = (String, Vec<(String, String)>, String);

/// Every sample of an exposition as `prometheus-parse` (the community's reader) reads it:
/// (name, sorted labels, value), histograms and summaries flattened as lt flattens them.
fn as_prometheus_parse_reads(text: &str) -> Vec<Sample> {
    use prometheus_parse::{Scrape, Value};
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let mut out = Vec::new();
    for s in scrape.samples {
        let labels: Vec<(String, String)> = s
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let with = |k: &str, v: f64| {
            let mut l = labels.clone();
            l.push((
                k.to_owned(),
                if v.is_infinite() {
                    "+Inf".into()
                } else {
                    v.to_string()
                },
            ));
            l.sort();
            l
        };
        match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => {
                let mut l = labels.clone();
                l.sort();
                out.push((s.metric.clone(), l, format!("{v:?}")));
            }
            Value::Histogram(buckets) => {
                for b in buckets {
                    out.push((
                        format!("{}_bucket", s.metric),
                        with("le", b.less_than),
                        format!("{:?}", b.count),
                    ));
                }
            }
            Value::Summary(qs) => {
                for q in qs {
                    out.push((
                        s.metric.clone(),
                        with("quantile", q.quantile),
                        format!("{:?}", q.count),
                    ));
                }
            }
        }
    }
    out.sort();
    out
}

#[test]
fn lts_exposition_reader_reads_real_answers_as_prometheus_parse_does() {
    let exporter = NodeExporter::start();
    let relay = Relay::start(RelayKind::NostrRsRelay, RelayOptions { raise_limits: true });
    let relay_metrics = format!("http://127.0.0.1:{}/metrics", relay.port);
    for url in [&exporter.url, &relay_metrics] {
        let text = http_get(url).unwrap_or_else(|| panic!("no answer from {url}"));
        let mut ours: Vec<_> = lt::scrape::exposition::parse(&text)
            .unwrap()
            .into_iter()
            .map(|m| (m.name, m.labels, format!("{:?}", m.value)))
            .collect();
        ours.sort();
        let theirs = as_prometheus_parse_reads(&text);
        assert!(ours.len() > 20, "{url}: {} series", ours.len());
        assert_eq!(ours, theirs, "{url}");
    }
}

/// A slowdown before the relay: nostr-rs-relay behind lt-delay-proxy's OK limiter, offered
/// more than the limiter passes, so lt's response time climbs through the run while the
/// relay's own event-write timer (scraped at the relay's port, not the proxy's) stays
/// flat. `slowdown_before_relay` fires on exactly that; `slowdown_in_relay` does not. The
/// report charts the relay's timers and host on lt's timeline.
#[test]
fn a_slowdown_before_the_relay_is_told_from_one_inside_it() {
    let _machine = crate::util::busy();
    let dir = tempfile::tempdir().unwrap();
    // 250 events/s for 12 s, views only; the front passes 180 OKs a second.
    let trace = synth(
        dir.path(),
        "t",
        &[
            "--seed",
            "3",
            "--duration",
            "12",
            "--rate",
            "250",
            "--clients",
            "20",
            "--mix",
            "1",
            "--read-share",
            "0",
        ],
    );
    let relay = Relay::start(RelayKind::NostrRsRelay, RelayOptions { raise_limits: true });
    let front_port = crate::exporter::free_port();
    let mut front = std::process::Command::new(env!("CARGO_BIN_EXE_lt-delay-proxy"))
        .args(["--listen", &front_port.to_string()])
        .args([
            "--to",
            &format!("127.0.0.1:{}", relay.port),
            "--max-oks-per-s",
            "180",
        ])
        .spawn()
        .unwrap();
    let front_url = format!("ws://127.0.0.1:{front_port}/");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", front_port)).is_err() {
        assert!(Instant::now() < deadline, "lt-delay-proxy did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = dir.path().join("r.ltr");
    let run = replay(
        &trace,
        &front_url,
        &out,
        &[
            "--timeout",
            "30s",
            "--scrape",
            &format!("nostr-rs-relay=http://127.0.0.1:{}/metrics", relay.port),
        ],
    );
    let _ = front.kill();
    let _ = front.wait();
    assert!(run.status.success(), "{}", text(&run.stderr));
    let report = report_of(std::slice::from_ref(&out));
    let rule = |id: &str| {
        report
            .rules
            .iter()
            .find(|c| c.id == id)
            .unwrap_or_else(|| panic!("no rule {id} in {:#?}", report.rules))
    };
    let before = rule("slowdown_before_relay");
    assert!(
        before.fired && before.not_evaluated.is_none(),
        "{before:#?}"
    );
    assert!(
        before.value < 10.0,
        "the relay's timer added {}% of lt's rise",
        before.value
    );
    assert!(
        before.evidence.contains("http://127.0.0.1:"),
        "{}",
        before.evidence
    );
    let inside = rule("slowdown_in_relay");
    assert!(
        !inside.fired && inside.not_evaluated.is_none(),
        "{inside:#?}"
    );
    assert!(rule("latency_rising").fired);
    // The relay's own p99 per interval is in the report, on lt's clock.
    let scraped = report.measured.scraped.as_ref().unwrap();
    let line = source(scraped, "nostr-rs-relay")
        .line("write_p99_ms")
        .unwrap();
    assert!(line.points.len() >= 10, "{line:#?}");
    assert!(line.points.iter().all(|p| p.value < 100.0), "{line:#?}");
    // And charted: the analysis writes the relay's and the host's charts.
    let report_dir = dir.path().join("report");
    let analyzed = lt()
        .arg("analyze")
        .arg(&out)
        .arg("--out-dir")
        .arg(&report_dir)
        .output()
        .unwrap();
    assert!(analyzed.status.success(), "{}", text(&analyzed.stderr));
    for chart in ["relay-latency", "relay-events", "host"] {
        let svg = std::fs::read_dir(&report_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with(&format!("-{chart}.svg")))
            .unwrap_or_else(|| panic!("no {chart} chart in {}", report_dir.display()));
        let body = std::fs::read_to_string(&svg).unwrap();
        assert!(body.contains("<polyline"), "{chart}: {body}");
    }
}
