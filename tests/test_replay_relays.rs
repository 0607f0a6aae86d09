//! `lt replay` against the two real relays (nostr-rs-relay 0.8.12, rnostr 0.4.8), checked
//! against what each relay actually stored, asked independently of lt's own bookkeeping.

use std::collections::HashMap;
use std::path::Path;

use lt::capture::results::{Outcome, ResultsReader, Row};
use lt::capture::{Completion, TraceReader};
use lt::nostr::Event;

use crate::relay::{Relay, RelayKind, RelayOptions};
use crate::util::{lt, stored, synth, text};
use crate::util::{outcomes, replay};

/// Every event of a trace by record index.
fn trace_events(path: &Path) -> HashMap<u64, Event> {
    let mut out = HashMap::new();
    for (i, r) in TraceReader::open(path).unwrap().enumerate() {
        let r = r.unwrap();
        if let Completion::Ok { .. } = r.completes {
            let frame: serde_json::Value = serde_json::from_str(&r.frame).unwrap();
            out.insert(i as u64, Event::from_json(&frame[1].to_string()).unwrap());
        }
    }
    out
}

fn results(path: &Path) -> HashMap<u64, Outcome> {
    let mut r = ResultsReader::open(path).unwrap();
    let mut out = HashMap::new();
    while let Some(row) = r.next_row().unwrap() {
        if let Row::Outcome(o) = row {
            out.insert(o.index, o.outcome);
        }
    }
    out
}

#[test]
fn replay_outcomes_match_what_each_real_relay_stored() {
    let _machine = crate::util::busy();
    let dir = tempfile::tempdir().unwrap();
    // ~4,300 records over 60 clients; at 10x about 700 records/s.
    let trace = synth(
        dir.path(),
        "t",
        &[
            "--seed",
            "42",
            "--duration",
            "60",
            "--rate",
            "50",
            "--clients",
            "60",
        ],
    );
    let events = trace_events(&trace);
    let ids: Vec<String> = events.values().map(|e| hex::encode(e.id)).collect();
    for kind in RelayKind::ALL {
        let relay = Relay::start(kind, RelayOptions { raise_limits: true });
        let pid = relay.pid.to_string();
        let first = dir.path().join(format!("{kind:?}-1.ltr"));
        let run = replay(
            &trace,
            &relay.url,
            &first,
            &["--speed", "10x", "--relay-pid", &pid],
        );
        assert!(
            run.status.success(),
            "{kind:?}: {}\n{}",
            text(&run.stderr),
            relay.log_tail(20)
        );
        let (counts, _) = outcomes(&first);
        let got = results(&first);
        let have = stored(&relay.url, &ids);
        assert!(!have.is_empty(), "{kind:?} stored nothing: {counts:?}");

        for (index, ev) in &events {
            let id = hex::encode(ev.id);
            let outcome = &got[index];
            let acked = matches!(outcome, Outcome::Ok | Outcome::StoredUnacked);
            if have.contains(&id) {
                // What the relay stored, lt saw acknowledged (or reconciled as stored).
                assert!(acked, "{kind:?}: stored event {id} has outcome {outcome:?}");
            } else if acked {
                // An acknowledged event missing from the relay must have been replaced: an
                // addressable event with a stored successor of the same kind and author.
                assert!(
                    (30000..40000).contains(&ev.kind),
                    "{kind:?}: ok event {id} (kind {}) not stored",
                    ev.kind
                );
                let replaced = events.values().any(|o| {
                    o.kind == ev.kind
                        && o.pubkey == ev.pubkey
                        && o.created_at >= ev.created_at
                        && have.contains(&hex::encode(o.id))
                });
                assert!(
                    replaced,
                    "{kind:?}: ok event {id} neither stored nor replaced"
                );
            }
        }

        // The same trace again into the same data directory: what is stored comes back
        // as `duplicate:`, classified as such.
        let second = dir.path().join(format!("{kind:?}-2.ltr"));
        let run = replay(&trace, &relay.url, &second, &["--speed", "10x"]);
        assert!(run.status.success(), "{kind:?}: {}", text(&run.stderr));
        let again = results(&second);
        let mut duplicates = 0;
        for (index, ev) in &events {
            if have.contains(&hex::encode(ev.id)) {
                assert_eq!(again[index], Outcome::Duplicate, "{kind:?}: record {index}");
                duplicates += 1;
            }
        }
        assert!(duplicates > 1000, "{kind:?}: {duplicates}");
        analyze_real_runs(dir.path(), kind, &trace, &first, &second, &counts);
        let samples_with_relay_cpu = {
            let mut r = ResultsReader::open(&first).unwrap();
            let mut n = 0;
            while let Some(row) = r.next_row().unwrap() {
                if let Row::Sample(s) = row {
                    n += usize::from(s.relay_rss_bytes.is_some());
                }
            }
            n
        };
        assert!(
            samples_with_relay_cpu > 0,
            "relay RSS sampled via --relay-pid"
        );
    }
}

/// `lt analyze` on the real runs: both reports at their default paths, valid against the
/// schema, the Markdown summary equal to the JSON, totals equal to the results file's; the
/// second run's duplicates fire the "data directory not fresh" rule with example event ids
/// from the trace; a run compared with itself is inconclusive everywhere.
fn analyze_real_runs(
    dir: &Path,
    kind: RelayKind,
    trace: &Path,
    first: &Path,
    second: &Path,
    counts: &std::collections::BTreeMap<String, u64>,
) {
    let work = dir.join(format!("analyze-{kind:?}"));
    std::fs::create_dir_all(&work).unwrap();
    let out = lt()
        .current_dir(&work)
        .arg("analyze")
        .arg(first)
        .output()
        .unwrap();
    assert!(out.status.success(), "{kind:?}: {}", text(&out.stderr));
    let date = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let base = work.join("reports/load-test");
    let json = base.join(format!("load-report-{date}.json"));
    let md = base.join(format!("load-test-report-{date}.md"));
    let report = crate::util::check_report_files(&json, &md);
    let by_outcome = report["totals"]["by_outcome"].as_object().unwrap();
    for (label, n) in counts {
        assert_eq!(by_outcome[label].as_u64(), Some(*n), "{kind:?}: {label}");
    }
    assert_eq!(
        report["config"]["target"]
            .as_str()
            .unwrap()
            .split(':')
            .next(),
        Some("127.0.0.1")
    );
    assert!(report["resources"]["relay"].is_object(), "relay sampled");

    let out = lt()
        .current_dir(&work)
        .arg("analyze")
        .arg(second)
        .arg("--trace")
        .arg(trace)
        .output()
        .unwrap();
    assert!(out.status.success(), "{kind:?}: {}", text(&out.stderr));
    let json = base.join(format!("load-report-{date}-2.json"));
    let md = base.join(format!("load-test-report-{date}-2.md"));
    let again = crate::util::check_report_files(&json, &md);
    let fired: Vec<&str> = again["remediation"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["fired"] == true)
        .map(|r| r["rule"].as_str().unwrap())
        .collect();
    assert!(fired.contains(&"duplicates"), "{kind:?}: {fired:?}");
    let events = trace_events(trace);
    for m in again["errors"]["top_messages"].as_array().unwrap() {
        for ex in m["examples"].as_array().unwrap() {
            let record = ex["record"].as_u64().unwrap();
            if let Some(ev) = events.get(&record) {
                assert_eq!(ex["id"].as_str(), Some(hex::encode(ev.id).as_str()));
            }
        }
    }

    let out = lt()
        .current_dir(&work)
        .args(["compare", "--out-dir", "cmp"])
        .arg(first)
        .arg("--")
        .arg(first)
        .output()
        .unwrap();
    assert!(out.status.success(), "{kind:?}: {}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("overall: inconclusive"),
        "{}",
        text(&out.stdout)
    );
}

/// `replay --profile` attaches `perf record` to the relay and keeps its hot functions beside
/// the results. Needs `perf` with permission to attach (linux-perf; perf_event_paranoid ≤ 2
/// as root): where it is missing the test says so and checks the fallback instead.
#[test]
fn profile_names_the_relays_hot_functions_when_perf_works() {
    let _machine = crate::util::busy();
    let dir = tempfile::tempdir().unwrap();
    let trace = synth(
        dir.path(),
        "p",
        &["--seed", "3", "--duration", "20", "--clients", "20"],
    );
    let relay = Relay::start(RelayKind::NostrRsRelay, RelayOptions { raise_limits: true });
    let results = dir.path().join("p.ltr");
    let run = replay(
        &trace,
        &relay.url,
        &results,
        &[
            "--speed",
            "4x",
            "--relay-pid",
            &relay.pid.to_string(),
            "--profile",
        ],
    );
    assert!(run.status.success(), "{}", text(&run.stderr));
    let profile = lt::profile::beside(&results);
    // perf is a real part of this test (scripts/install-relays installs it): missing, the
    // test fails rather than passing on the fallback path.
    let perf_works = std::process::Command::new("perf")
        .args(["stat", "-e", "task-clock", "true"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        perf_works,
        "perf does not run here: install linux-perf (scripts/install-relays does)"
    );
    assert!(profile.exists(), "{}", text(&run.stderr));
    let p = lt::profile::load_beside(&results).expect("a profile beside the results");
    assert!(p.samples > 0, "{p:?}");
    assert!(!p.functions.is_empty());
    assert!(
        p.functions.iter().any(|f| f.dso.contains("nostr-rs-relay")),
        "no function of the relay itself: {:?}",
        &p.functions[..p.functions.len().min(5)]
    );
    let out = lt()
        .current_dir(dir.path())
        .args(["analyze", "--out-dir", "rep"])
        .arg(&results)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let md = std::fs::read_dir(dir.path().join("rep"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "md"))
        .unwrap();
    let md = std::fs::read_to_string(md).unwrap();
    let hot = md.split("## Hot functions").nth(1).unwrap();
    assert!(!hot.trim_start().starts_with("not measured"), "{hot}");

    // Issue #18: nostr-rs-relay verifies a schnorr signature per event; its secp256k1 code
    // ranks among its top user-space functions, so the drafts include one marked for
    // security review, citing the profile; the load test proposes no change to crypto.
    let out = lt()
        .current_dir(dir.path())
        .args(["analyze", "--out-dir", "rep2", "--issues", "drafts"])
        .arg(&results)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let drafts: Vec<String> = std::fs::read_dir(dir.path().join("drafts"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    let crypto = drafts
        .iter()
        .find(|d| d.contains("requires-security-review"))
        .unwrap_or_else(|| panic!("no draft for security review; hot functions: {hot}"));
    assert!(crypto.contains("secp256k1"), "{crypto}");
    assert!(
        crypto.contains("does not change cryptographic code"),
        "{crypto}"
    );
}

/// `url`'s target, through the guard (loopback).
fn target(url: &str) -> lt::guard::Target {
    let allow = lt::guard::AllowList::parse(&[]).unwrap();
    lt::guard::check(url, &allow, &lt::guard::system_resolver).unwrap()
}

/// Issue #14: both relays' NIP-11 documents are read, whatever fields each serves; the
/// report and the results header name the build.
#[test]
fn both_relays_say_what_they_are_by_nip11() {
    for kind in RelayKind::ALL {
        let relay = Relay::start(kind, RelayOptions::default());
        let p = lt::nip11::fetch(&target(&relay.url), &[]);
        assert!(p.note.is_none(), "{kind:?}: {p:?}");
        let doc = lt::nip11::Document::parse(p.document.as_deref().unwrap()).unwrap();
        match kind {
            RelayKind::NostrRsRelay => {
                assert_eq!(doc.build().as_deref(), Some("nostr-rs-relay 0.8.12"));
                assert_eq!(doc.limitation.payment_required, Some(false));
            }
            RelayKind::Rnostr => {
                assert_eq!(doc.version.as_deref(), Some("0.4.8"));
                assert_eq!(doc.limitation.max_message_length, Some(524_288));
                assert_eq!(doc.limitation.max_subscriptions, Some(20));
            }
        }
    }
}

/// Issue #14: rnostr configured with a small message limit advertises it; the preflight
/// predicts how many records it refuses, the run refuses exactly those, the report sets
/// the prediction beside what it saw, and `--strict-limits` refuses to run at all.
#[test]
fn the_preflight_predicts_the_records_a_small_message_limit_refuses() {
    let _machine = crate::util::busy();
    let dir = tempfile::tempdir().unwrap();
    const LIMIT: usize = 1200;
    let template = dir.path().join("rnostr-small.toml");
    let base = std::fs::read_to_string(crate::relay::config_template(
        RelayKind::Rnostr,
        RelayOptions::default(),
    ))
    .unwrap();
    std::fs::write(
        &template,
        format!("{base}\n[limitation]\nmax_message_length = {LIMIT}\n"),
    )
    .unwrap();
    let relay = Relay::start_with_template(RelayKind::Rnostr, &template);
    let trace = synth(
        dir.path(),
        "t",
        &[
            "--seed",
            "9",
            "--duration",
            "10",
            "--clients",
            "20",
            "--read-share",
            "0",
        ],
    );
    let too_long = TraceReader::open(&trace)
        .unwrap()
        .map(|r| r.unwrap())
        .filter(|r| r.frame.len() > LIMIT)
        .count() as u64;
    assert!(
        too_long > 5,
        "the trace must have frames over {LIMIT} B: {too_long}"
    );

    let strict = replay(
        &trace,
        &relay.url,
        &dir.path().join("strict.ltr"),
        &["--strict-limits"],
    );
    let line = crate::util::one_line_error(&strict);
    assert!(line.contains("max_message_length = 1200"), "{line}");
    assert!(!dir.path().join("strict.ltr").exists());

    let out = dir.path().join("r.ltr");
    let run = replay(&trace, &relay.url, &out, &["--timeout", "2s"]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert!(
        text(&run.stderr).contains(&format!(
            "predicted   {too_long} records hit max_message_length = {LIMIT}"
        )),
        "{}",
        text(&run.stderr)
    );
    let header = ResultsReader::open(&out).unwrap().header().clone();
    let p = header
        .preflight
        .expect("the preflight in the results header");
    assert_eq!(p.predictions.len(), 1, "{:?}", p.predictions);
    assert_eq!(p.predictions[0].records, too_long);
    // What the run saw: exactly the long frames went unaccepted.
    let mut r = ResultsReader::open(&out).unwrap();
    let (mut refused_long, mut refused_short) = (0u64, 0u64);
    while let Some(row) = r.next_row().unwrap() {
        if let Row::Outcome(o) = row {
            let accepted = matches!(o.outcome, Outcome::Ok | Outcome::Duplicate);
            match (o.bytes as usize > LIMIT, accepted) {
                (true, false) => refused_long += 1,
                (false, false) => refused_short += 1,
                _ => {}
            }
        }
    }
    assert_eq!(refused_long, too_long);
    assert_eq!(refused_short, 0);

    let rep = dir.path().join("rep");
    let a = lt()
        .arg("analyze")
        .arg(&out)
        .arg("--out-dir")
        .arg(&rep)
        .output()
        .unwrap();
    assert!(a.status.success(), "{}", text(&a.stderr));
    let md = std::fs::read_dir(&rep)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "md"))
        .unwrap();
    let md = std::fs::read_to_string(md).unwrap();
    assert!(md.contains("| Relay (NIP-11) | version 0.4.8 |"), "{md}");
    assert!(
        md.contains("## Preflight: predicted against observed"),
        "{md}"
    );
    assert!(
        md.contains(&format!("| `max_message_length` | {LIMIT} | {too_long} |")),
        "{md}"
    );
}
