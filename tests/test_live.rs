//! Live subscribers (issue #16) against the two real relays: lt's account of the deliveries
//! each live subscription should get, set against one computed apart from lt (nostr-tools'
//! filter matching in Node, from the exported events and the results' times), what a
//! stalled relay does to delivery latency, and a fault peer's dropped and doubled deliveries.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use lt::analyze::deliveries::LiveDeliveries;
use lt::capture::results::{Outcome, ResultsReader, Row};
use lt::capture::{Op, TraceReader};

use crate::peer::{Behavior, Peer};
use crate::relay::{Relay, RelayKind, RelayOptions};
use crate::util::replay;
use crate::util::{synth, text};

/// The report's live section of a results file.
fn live_section(results: &Path) -> LiveDeliveries {
    crate::util::report_of(&[results.to_owned()])
        .measured
        .live_deliveries
        .expect("a live subscriptions section")
}

/// What Node (nostr-tools' `matchFilters`) says the live subscriptions of `trace`, replayed
/// into `results`, should have received.
fn expected_by_node(trace: &Path, results: &Path) -> u64 {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(
        root.join(".cache/node-client/node_modules/nostr-tools")
            .is_dir(),
        "nostr-tools is not installed: run scripts/install-node-client"
    );
    let records: Vec<lt::capture::Record> = TraceReader::open(trace)
        .expect("trace")
        .map(|r| r.expect("record"))
        .collect();
    let clients = records.iter().map(|r| r.client + 1).max().unwrap_or(1);
    let mut rows = HashMap::new();
    let mut r = ResultsReader::open(results).expect("results");
    while let Some(row) = r.next_row().expect("row") {
        if let Row::Outcome(o) = row {
            rows.insert(o.index, o);
        }
    }
    let mut events = Vec::new();
    let mut subs = Vec::new();
    let mut close_of = HashMap::new();
    for (i, rec) in records.iter().enumerate() {
        if let (Op::Close, Some(req)) = (rec.op, rec.after) {
            close_of.insert(req, i as u64);
        }
    }
    for (i, rec) in records.iter().enumerate() {
        let row = &rows[&(i as u64)];
        let frame: serde_json::Value = serde_json::from_str(&rec.frame).expect("frame");
        match rec.op {
            Op::Event { .. } => events.push(serde_json::json!({
                "event": frame[1],
                "sent": row.sent_ns,
                "answered": row.completed_ns,
                "accepted": row.outcome == Outcome::Ok,
            })),
            Op::Req { query } if query.is_live() => {
                let close = close_of.get(&(i as u64)).and_then(|c| rows[c].sent_ns);
                subs.push(serde_json::json!({
                    "name": frame[1],
                    "conn": rec.client % clients,
                    "filters": frame.as_array().expect("REQ")[2..],
                    "eose": if row.outcome == Outcome::Ok { row.completed_ns } else { None },
                    "close": close,
                }));
            }
            _ => {}
        }
    }
    let input = serde_json::json!({ "events": events, "subs": subs }).to_string();
    let mut child = Command::new("node")
        .arg(root.join("tests/node/expected.mjs"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node is on the machine");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write to node");
    let out = child.wait_with_output().expect("node ran");
    assert!(out.status.success(), "expected.mjs: {}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    v["expected"].as_u64().expect("expected")
}

fn live_trace(dir: &Path) -> std::path::PathBuf {
    synth(
        dir,
        "live",
        &[
            "--seed",
            "21",
            "--duration",
            "30",
            "--rate",
            "40",
            "--clients",
            "40",
            "--live-share",
            "0.5",
        ],
    )
}

/// Both real relays, a healthy run: lt expects exactly what Node computes, and every
/// expected delivery arrives, none unexpected.
#[test]
fn both_relays_deliver_what_live_subscriptions_should_get() {
    let _machine = crate::util::busy();
    let dir = tempfile::tempdir().expect("tempdir");
    let trace = live_trace(dir.path());
    for kind in RelayKind::ALL {
        let relay = Relay::start(kind, RelayOptions { raise_limits: true });
        let results = dir.path().join(format!("{kind:?}.ltr"));
        let run = replay(&trace, &relay.url, &results, &["--speed", "2x"]);
        assert!(
            run.status.success(),
            "{kind:?}: {}\n{}",
            text(&run.stderr),
            relay.log_tail(20)
        );
        let live = live_section(&results);
        let sum = |f: fn(&lt::analyze::deliveries::SubscriptionDeliveries) -> u64| {
            live.by_subscription.iter().map(f).sum::<u64>()
        };
        let expected = sum(|s| s.counts.expected);
        assert!(expected > 200, "{kind:?}: {}", live.headline);
        assert_eq!(
            expected,
            expected_by_node(&trace, &results),
            "{kind:?}: lt's expected deliveries against nostr-tools' ({})",
            live.headline
        );
        assert_eq!(
            (sum(|s| s.counts.missed), sum(|s| s.counts.unexpected)),
            (0, 0),
            "{kind:?}: {}; missed {:?}; unexpected {:?}",
            live.headline,
            live.missed_examples,
            live.unexpected_examples
        );
        assert_eq!(sum(|s| s.counts.delivered), expected, "{kind:?}");
        assert_eq!(live.by_subscription.len(), 2, "{kind:?}: both types");
        let fanout = live.fanout_per_event.as_ref().expect("fan-out");
        assert!(
            fanout.max >= 10.0,
            "{kind:?}: a post reaches every feed: {fanout:?}"
        );
    }
}

/// A relay stopped for a second mid-run (SIGSTOP, then SIGCONT): the deliveries due in that
/// second wait for it, and delivery latency's tail shows the stall, with nothing missed.
/// With `--delivery-rows`, the results hold a row for each delivery counted.
#[test]
fn a_stalled_relay_shows_in_delivery_latency() {
    let _machine = crate::util::busy();
    let dir = tempfile::tempdir().expect("tempdir");
    let trace = live_trace(dir.path());
    let relay = Relay::start(RelayKind::NostrRsRelay, RelayOptions { raise_limits: true });
    let results = dir.path().join("stalled.ltr");
    let pid = relay.pid as libc::pid_t;
    let staller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(6));
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        std::thread::sleep(Duration::from_secs(1));
        unsafe { libc::kill(pid, libc::SIGCONT) };
    });
    let run = replay(
        &trace,
        &relay.url,
        &results,
        &["--speed", "2x", "--delivery-rows"],
    );
    staller.join().expect("staller");
    assert!(run.status.success(), "{}", text(&run.stderr));
    let live = live_section(&results);
    let worst = live
        .by_subscription
        .iter()
        .filter_map(|s| s.latency_ms.as_ref())
        .map(|p| p.max)
        .fold(0.0, f64::max);
    assert!(
        worst >= 900.0,
        "the 1 s stall should hold deliveries back: {}",
        live.headline
    );
    let missed: u64 = live.by_subscription.iter().map(|s| s.counts.missed).sum();
    assert_eq!(missed, 0, "{}", live.headline);
    // The stalled second shows in the series: its p99 is far above a calm second's.
    let calm = live
        .per_second
        .iter()
        .map(|p| p.p99_ms)
        .fold(f64::MAX, f64::min);
    let peak = live.per_second.iter().map(|p| p.p99_ms).fold(0.0, f64::max);
    assert!(
        peak > 10.0 * calm.max(1.0),
        "calm {calm} ms, peak {peak} ms"
    );
    // With --delivery-rows, one row per delivery: as many as the ledger counted.
    let mut rows = 0u64;
    let mut r = ResultsReader::open(&results).expect("results");
    while let Some(row) = r.next_row().expect("row") {
        rows += u64::from(matches!(row, Row::Delivery(_)));
    }
    let counted: u64 = live
        .by_subscription
        .iter()
        .map(|s| s.counts.delivered + s.counts.uncertain + s.counts.unexpected)
        .sum::<u64>()
        + live.read_deliveries;
    assert_eq!(rows, counted, "{}", live.headline);
}

/// A peer that fans events out but drops some deliveries and sends others twice: lt counts
/// exactly those as missed and as unexpected, naming them.
#[test]
fn dropped_and_doubled_deliveries_are_missed_and_unexpected_exactly() {
    let _machine = crate::util::busy();
    let dir = tempfile::tempdir().expect("tempdir");
    let trace = live_trace(dir.path());
    let rt = crate::util::runtime();
    let peer = rt
        .block_on(Peer::start(Behavior::FanOut {
            drop_every: 37,
            duplicate_every: 53,
        }))
        .expect("peer");
    let results = dir.path().join("faults.ltr");
    // A short grace, so a dropped delivery is missed long before the run ends.
    let run = replay(
        &trace,
        &peer.url(),
        &results,
        &["--speed", "2x", "--timeout", "2s"],
    );
    assert!(run.status.success(), "{}", text(&run.stderr));
    let faults = peer.faults();
    let live = |list: &[(String, String)]| -> Vec<(String, String)> {
        list.iter()
            .filter(|(sub, _)| sub.starts_with("live-"))
            .cloned()
            .collect()
    };
    let (dropped, doubled) = (live(&faults.dropped), live(&faults.duplicated));
    assert!(dropped.len() >= 10 && doubled.len() >= 5, "{faults:?}");

    let report = live_section(&results);
    let sum = |f: fn(&lt::analyze::deliveries::SubscriptionDeliveries) -> u64| {
        report.by_subscription.iter().map(f).sum::<u64>()
    };
    // A second copy is unexpected wherever it falls. A dropped delivery is missed unless
    // its event crossed the subscription's EOSE or CLOSE (then either answer is right, and
    // the delivery would have been uncertain): that is the only slack.
    assert_eq!(
        sum(|s| s.counts.unexpected),
        doubled.len() as u64,
        "{}",
        report.headline
    );
    assert_eq!(sum(|s| s.counts.duplicates), doubled.len() as u64);
    let (missed, uncertain) = (sum(|s| s.counts.missed), sum(|s| s.counts.uncertain));
    assert!(
        missed <= dropped.len() as u64 && missed + uncertain >= dropped.len() as u64,
        "{} dropped; {}",
        dropped.len(),
        report.headline
    );
    assert!(uncertain <= 3, "{}", report.headline);
    for e in &report.missed_examples {
        assert!(
            dropped.contains(&(e.subscription.clone(), e.event_id.clone())),
            "{e:?} was not dropped"
        );
    }
    for e in &report.unexpected_examples {
        assert_eq!(e.why, "delivered a second time");
        assert!(doubled.contains(&(e.subscription.clone(), e.event_id.clone())));
    }
    // The rule names it, and the headline figure a comparison judges counts it.
    let full = crate::util::report_of(std::slice::from_ref(&results));
    let rule = full
        .rules
        .iter()
        .find(|r| r.id == "missed_deliveries")
        .expect("the rule");
    assert!(rule.fired && rule.value == missed as f64, "{rule:?}");
    // Issue #28: its draft has a title and labels of its own (it once had the rule's id as
    // its title and the catch-all label).
    let drafts = lt::analyze::render::issues::drafts(&full);
    let draft = drafts
        .iter()
        .find(|d| d.file.ends_with("missed-deliveries.md"))
        .expect("a draft for missed deliveries");
    assert!(
        draft
            .title
            .starts_with("Live subscribers miss events they match: "),
        "{}",
        draft.title
    );
    assert_eq!(draft.labels, ["correctness", "reliability"]);
    // …and a gate reads the delivery latency it measured (it was once refused as "not
    // measured by this lt yet").
    let mut gated = crate::util::report_of(std::slice::from_ref(&results));
    let gate: Vec<lt::analyze::checks::Expr> = vec!["delivery.p99 < 60s".parse().unwrap()];
    gated.check(&gate, true).unwrap();
    assert!(gated.checks[0].observed.is_some(), "{:?}", gated.checks);
    let share = full
        .measured
        .summary
        .iter()
        .find(|h| h.id == "missed_share")
        .expect("missed_share");
    assert!(share.value > 0.0, "{share:?}");
    drop(peer);
}
