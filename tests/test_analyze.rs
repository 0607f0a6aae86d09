//! `lt analyze` and `lt compare` on results files built here with known latencies and
//! outcomes: exact percentiles, counts, taxonomy, which rules fire, the schema, bad input.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use lt::analyze::report::{self, Report};
use lt::analyze::Ids;
use lt::capture::results::{
    self, ConnectRow, Header, Machine, Outcome, OutcomeRow, ResultsWriter, Row, Sample, Trailer,
};
use lt::capture::{Op, Query, Role};
use lt::nostr::Prefix;

use crate::util::{check_comparison, check_report_files, lt, one_line_error, text};

const MS: u64 = 1_000_000;
const S: u64 = 1_000_000_000;

fn header(fingerprint: &str, records: u64) -> Header {
    let mut options = BTreeMap::new();
    options.insert("speed".to_owned(), "1x".to_owned());
    options.insert("max_in_flight".to_owned(), "10000".to_owned());
    options.insert("per_conn_in_flight".to_owned(), "100".to_owned());
    Header {
        format_version: results::VERSION,
        lt_version: "test".into(),
        trace_fingerprint: fingerprint.into(),
        trace_records: records,
        trace_header: lt::capture::Header {
            format_version: 1,
            lt_version: "test".into(),
            generator: "test".into(),
            schema_source: "test".into(),
            source: lt::capture::Source::Synth(lt::workload::Options::default()),
        },
        options: lt::capture::options::RunOptions::from_map(options).expect("options"),
        target: "127.0.0.1:7777".into(),
        started_at: "2026-11-27T00:00:00Z".into(),
        machine: Machine {
            cores: 2,
            kernel: "test".into(),
            cpu: "test".into(),
        },
        preflight: None,
        part: None,
        start_at: None,
        scrapes: Vec::new(),
    }
}

/// Writes `rows` as a complete results file.
fn write(path: &Path, fingerprint: &str, rows: &[Row]) {
    write_with(path, fingerprint, &[], 0, rows);
}

/// As `write`, with replay `options` added to the header's, and the trailer's count of OKs
/// that came after their timeout.
fn write_with(
    path: &Path,
    fingerprint: &str,
    options: &[(&str, &str)],
    late_acks: u64,
    rows: &[Row],
) {
    let records = rows.iter().filter(|r| matches!(r, Row::Outcome(_))).count() as u64;
    let f = BufWriter::new(File::create(path).unwrap());
    let mut header = header(fingerprint, records);
    let mut map = header.options.to_map();
    for (k, v) in options {
        map.insert((*k).to_owned(), (*v).to_owned());
    }
    header.options = lt::capture::options::RunOptions::from_map(map).expect("options");
    let mut w = ResultsWriter::new(f, &header).unwrap();
    for r in rows {
        w.push(r).unwrap();
    }
    let elapsed_ns = rows
        .iter()
        .filter_map(|r| match r {
            Row::Outcome(o) => Some(o.completed_ns.unwrap_or(o.intended_ns)),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    w.finish(Trailer {
        finished_at: "2026-11-27T00:01:00Z".into(),
        elapsed_ns,
        late_acks,
        ..Default::default()
    })
    .unwrap();
}

fn view() -> Op {
    Op::Event {
        kind: 30079,
        role: Role::View,
    }
}

fn feed() -> Op {
    Op::Req { query: Query::Feed }
}

fn row(index: u64, op: Op, intended: u64, lag: u64, latency: Option<u64>, outcome: Outcome) -> Row {
    Row::Outcome(OutcomeRow {
        index,
        conn: (index % 10) as u32,
        op,
        intended_ns: intended,
        sent_ns: Some(intended + lag),
        completed_ns: latency.map(|l| intended + l),
        outcome,
        bytes: 200,
        events_received: if matches!(op, Op::Req { .. }) { 3 } else { 0 },
        held_ns: 0,
        recorded: None,
    })
}

fn analyze(path: &Path) -> Report {
    crate::util::report_of(&[path.to_owned()])
}

fn close_to(got: f64, want: f64) {
    // Three significant digits of HDR precision.
    assert!(
        (got - want).abs() <= want * 0.001 + 0.001,
        "got {got}, want {want}"
    );
}

#[test]
fn percentiles_are_exact_within_hdr_precision() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lat.ltr");
    // 1000 views answered in 1, 2, … 1000 ms, sent 100 µs late.
    let rows: Vec<Row> = (0..1000u64)
        .map(|i| {
            row(
                i,
                view(),
                i * 10 * MS,
                100_000,
                Some((i + 1) * MS),
                Outcome::Ok,
            )
        })
        .collect();
    write(&path, "f1", &rows);
    let r = analyze(&path);
    let resp = r.measured.latency.overall.response_ms.as_ref().unwrap();
    assert_eq!(resp.count, 1000);
    close_to(resp.p50, 500.0);
    close_to(resp.p90, 900.0);
    close_to(resp.p99, 990.0);
    close_to(resp.p99_9, 999.0);
    close_to(resp.max, 1000.0);
    close_to(resp.mean, 500.5);
    // Service time = response − lag.
    let service = r.measured.latency.overall.service_ms.as_ref().unwrap();
    close_to(service.p50, 499.9);
    let lag = r.measured.latency.overall.schedule_lag_ms.as_ref().unwrap();
    close_to(lag.p99, 0.1);
    assert_eq!(r.measured.totals.attempted, 1000);
    assert_eq!(r.measured.totals.success_rate_pct, 100.0);
    let views = &r.measured.latency.by_type["view"];
    close_to(views.response_ms.as_ref().unwrap().p50, 500.0);
    assert!(r.measured.latency.by_type["read"].response_ms.is_none());
}

#[test]
fn totals_and_taxonomy_count_every_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tax.ltr");
    let rejected = |p: Prefix, m: &str| Outcome::Rejected {
        prefix: p,
        message: m.into(),
    };
    let mut outcomes: Vec<Outcome> = Vec::new();
    outcomes.extend(std::iter::repeat_n(Outcome::Ok, 50));
    outcomes.extend(std::iter::repeat_n(Outcome::Duplicate, 7));
    outcomes.extend(std::iter::repeat_n(
        rejected(Prefix::RateLimited, "rate-limited: slow down"),
        10,
    ));
    outcomes.extend(std::iter::repeat_n(
        rejected(Prefix::Invalid, "invalid: bad sig"),
        4,
    ));
    outcomes.extend(std::iter::repeat_n(Outcome::Timeout, 5));
    outcomes.extend(std::iter::repeat_n(
        Outcome::Disconnected { code: Some(1006) },
        3,
    ));
    outcomes.extend(std::iter::repeat_n(Outcome::Disconnected { code: None }, 2));
    outcomes.extend(std::iter::repeat_n(Outcome::StoredUnacked, 6));
    outcomes.push(Outcome::Lost);
    let mut rows: Vec<Row> = outcomes
        .into_iter()
        .enumerate()
        .map(|(i, o)| row(i as u64, view(), i as u64 * MS, 0, Some(MS), o))
        .collect();
    let n = rows.len() as u64;
    // Two records lt never sent, and a read refused with CLOSED.
    for (k, o) in [Outcome::NotSent, Outcome::Dropped].into_iter().enumerate() {
        rows.push(Row::Outcome(OutcomeRow {
            index: n + k as u64,
            conn: 0,
            op: view(),
            intended_ns: MS,
            sent_ns: None,
            completed_ns: None,
            outcome: o,
            bytes: 100,
            events_received: 0,
            held_ns: 0,
            recorded: None,
        }));
    }
    rows.push(row(
        n + 2,
        feed(),
        MS,
        0,
        Some(MS),
        Outcome::Closed {
            prefix: Prefix::Error,
            message: "error: too many subscriptions".into(),
        },
    ));
    // Issue #17: a CLOSE frame, written after its REQ's EOSE; nothing answers it.
    rows.push(row(n + 3, Op::Close, MS, 0, Some(MS), Outcome::Ok));
    rows.push(Row::Connect(ConnectRow {
        conn: 0,
        at_ns: 0,
        initial: true,
        latency_ns: 0,
        error: Some("connection refused".into()),
        tcp_ns: None,
        tls_ns: None,
        upgrade_ns: None,
    }));
    write(&path, "f1", &rows);
    let r = analyze(&path);
    let t = &r.measured.totals;
    // Requests only: the CLOSE is neither attempted nor succeeded.
    assert_eq!(t.attempted, 50 + 7 + 10 + 4 + 5 + 3 + 2 + 6 + 1 + 1);
    // Issue #17: stored_unacked is stored, but the client waited out its timeout: failed.
    assert_eq!(t.succeeded, 50 + 7);
    assert_eq!(t.failed, t.attempted - t.succeeded);
    assert_eq!(t.failed_by_class["stored_unacked"], 6);
    assert_eq!(t.failed_by_class.values().sum::<u64>(), t.failed);
    let timeouts = r
        .measured
        .summary
        .iter()
        .find(|h| h.id == "timeouts")
        .unwrap();
    assert_eq!(
        timeouts.value,
        (5 + 6 + 1) as f64,
        "every request with no answer in time"
    );
    assert_eq!((t.not_sent, t.dropped), (1, 1));
    assert_eq!(t.failed_by_class["rejected"], 14);
    assert_eq!(t.failed_by_class["closed"], 1);
    assert_eq!(t.failed_by_class["timeout"], 5);
    assert_eq!(t.failed_by_class["disconnected"], 5);
    assert_eq!(t.failed_by_class["lost"], 1);
    assert_eq!(t.by_outcome.values().sum::<u64>(), n + 4);
    let e = &r.measured.errors;
    assert_eq!(e.rejected_by_prefix["rate-limited"], 10);
    assert_eq!(e.rejected_by_prefix["invalid"], 4);
    assert_eq!(e.closed_by_prefix["error"], 1);
    assert_eq!(e.close_codes["1006"], 3);
    assert_eq!(e.close_codes["none"], 2);
    assert_eq!(
        (e.duplicates, e.timeouts, e.stored_unacked, e.lost),
        (7, 5, 6, 1)
    );
    let top = &e.top_messages[0];
    assert_eq!(top.message, "rate-limited: slow down");
    assert_eq!(top.count, 10);
    // The first three records that got it, by trace index.
    let ex: Vec<u64> = top.examples.iter().map(|x| x.record).collect();
    assert_eq!(ex, vec![57, 58, 59]);
    assert_eq!(r.measured.connections.initial_failed, 1);
    assert_eq!(
        r.measured.connections.failure_causes[0].text,
        "connection refused"
    );
}

/// A healthy run the rules below disturb one figure at a time: 60 s at 100 records/s, one
/// REQ in ten, 2 ms answers, relay at 20% CPU and flat memory.
#[derive(Clone)]
struct Scenario {
    seconds: u64,
    latency_ms: fn(f64) -> f64,
    lag_us: u64,
    /// Outcomes given to evenly spread views (count, outcome).
    views: Vec<(u64, Outcome)>,
    /// Outcomes given to evenly spread reads.
    reads: Vec<(u64, Outcome)>,
    relay_cpu: f32,
    harness_cpu: f32,
    rss_mb_per_s: f64,
    initial_connect_failures: u32,
    reconnect_failures: u32,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            seconds: 90,
            latency_ms: |_| 2.0,
            lag_us: 100,
            views: Vec::new(),
            reads: Vec::new(),
            relay_cpu: 20.0,
            harness_cpu: 10.0,
            rss_mb_per_s: 0.0,
            initial_connect_failures: 0,
            reconnect_failures: 0,
        }
    }
}

const RATE: u64 = 100;

impl Scenario {
    fn rows(&self) -> Vec<Row> {
        let n = self.seconds * RATE;
        let views_total = n - n / 10;
        let reads_total = n / 10;
        // Which view / read (by its position among its kind) gets which special outcome.
        let assign = |specials: &[(u64, Outcome)], total: u64| -> BTreeMap<u64, Outcome> {
            let count: u64 = specials.iter().map(|s| s.0).sum();
            let mut m = BTreeMap::new();
            let mut k = 0;
            for (c, o) in specials {
                for _ in 0..*c {
                    m.insert(k * total / count.max(1), o.clone());
                    k += 1;
                }
            }
            m
        };
        let special_views = assign(&self.views, views_total);
        let special_reads = assign(&self.reads, reads_total);
        let (mut v, mut q) = (0u64, 0u64);
        let mut rows = Vec::new();
        for i in 0..n {
            let intended = i * S / RATE;
            let lat = ((self.latency_ms)(intended as f64 / S as f64) * MS as f64) as u64;
            let is_read = i % 10 == 9;
            let (op, outcome) = if is_read {
                q += 1;
                (
                    feed(),
                    special_reads.get(&(q - 1)).cloned().unwrap_or(Outcome::Ok),
                )
            } else {
                v += 1;
                (
                    view(),
                    special_views.get(&(v - 1)).cloned().unwrap_or(Outcome::Ok),
                )
            };
            let latency = match outcome {
                Outcome::Timeout | Outcome::Disconnected { .. } | Outcome::Lost => None,
                _ => Some(lat),
            };
            rows.push(row(i, op, intended, self.lag_us * 1000, latency, outcome));
        }
        for s in 0..self.seconds {
            rows.push(Row::Sample(Sample {
                at_ns: (s + 1) * S,
                relay_cpu_pct: Some(self.relay_cpu),
                relay_rss_bytes: Some(((100.0 + self.rss_mb_per_s * s as f64) * 1048576.0) as u64),
                harness_cpu_pct: self.harness_cpu,
                harness_rss_bytes: 50 << 20,
                lag_max_us: self.lag_us,
                connections_open: 10,
                in_flight: 1,
                sent: 0,
                completed: 0,
            }));
        }
        for c in 0..10 {
            rows.push(Row::Connect(ConnectRow {
                conn: c,
                at_ns: 0,
                initial: true,
                latency_ns: MS,
                error: (c < self.initial_connect_failures).then(|| "too many open files".into()),
                tcp_ns: None,
                tls_ns: None,
                upgrade_ns: None,
            }));
        }
        for c in 0..self.reconnect_failures {
            rows.push(Row::Connect(ConnectRow {
                conn: c,
                at_ns: 5 * S,
                initial: false,
                latency_ns: MS,
                error: Some("connection refused".into()),
                tcp_ns: None,
                tls_ns: None,
                upgrade_ns: None,
            }));
        }
        rows
    }

    fn fired(&self) -> BTreeSet<String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.ltr");
        write(&path, "f1", &self.rows());
        analyze(&path)
            .rules
            .iter()
            .filter(|c| c.fired)
            .map(|c| c.id.clone())
            .collect()
    }
}

fn rejected(prefix: Prefix, message: &str) -> Outcome {
    Outcome::Rejected {
        prefix,
        message: message.into(),
    }
}

/// 0.9% of the 9000 records in the default scenario (1% of its 8100 views).
const ONE_PCT: u64 = 81;

#[test]
fn a_healthy_run_fires_no_rule_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ok.ltr");
    write(&path, "f1", &Scenario::default().rows());
    let r = analyze(&path);
    let fired: Vec<&str> = r
        .rules
        .iter()
        .filter(|c| c.fired)
        .map(|c| c.id.as_str())
        .collect();
    assert!(fired.is_empty(), "{fired:?}");
    assert!(r.trust.trustworthy);
    assert_eq!(r.rules.len(), 18);
    // Three items: "no bottleneck" first, with the next rate, then headroom notes.
    assert_eq!(r.remediation.len(), 3);
    assert!(r.remediation[0]
        .action
        .starts_with("No bottleneck observed at this load"));
    assert!(
        r.remediation[0].action.contains("--speed 2x"),
        "{}",
        r.remediation[0].action
    );
    for item in &r.remediation {
        assert!(!item.evidence.is_empty());
    }
}

/// Each rule: a scenario that fires it, and a near miss that does not.
#[test]
fn each_rule_fires_on_its_case_and_not_on_its_near_miss() {
    let base = Scenario::default();
    let timeouts = |n| vec![(n, Outcome::Timeout)];
    let cases: Vec<(&str, Scenario, Scenario)> = vec![
        (
            "harness_bottleneck",
            Scenario {
                lag_us: 8_000,
                ..base.clone()
            },
            Scenario {
                lag_us: 4_000,
                ..base.clone()
            },
        ),
        (
            "machine_saturated",
            Scenario {
                relay_cpu: 150.0,
                harness_cpu: 40.0,
                ..base.clone()
            },
            Scenario {
                relay_cpu: 120.0,
                harness_cpu: 40.0,
                ..base.clone()
            },
        ),
        (
            "lost_events",
            Scenario {
                views: vec![(1, Outcome::Lost)],
                ..base.clone()
            },
            Scenario {
                views: vec![(1, Outcome::StoredUnacked)],
                ..base.clone()
            },
        ),
        (
            // Issue #17: answers fall behind the schedule by half a second per second: a
            // third of what was offered is unanswered while the trace plays.
            "overload",
            Scenario {
                latency_ms: |t| 2.0 + t * 500.0,
                ..base.clone()
            },
            Scenario {
                latency_ms: |t| 2.0 + t * 50.0,
                ..base.clone()
            },
        ),
        (
            "cpu_bound",
            Scenario {
                views: timeouts(2 * ONE_PCT),
                relay_cpu: 95.0,
                ..base.clone()
            },
            Scenario {
                views: timeouts(2 * ONE_PCT),
                relay_cpu: 80.0,
                ..base.clone()
            },
        ),
        (
            "timeouts_without_cpu",
            Scenario {
                views: timeouts(2 * ONE_PCT),
                ..base.clone()
            },
            Scenario {
                views: timeouts(ONE_PCT / 2),
                ..base.clone()
            },
        ),
        (
            "latency_rising",
            Scenario {
                latency_ms: |t| 2.0 + t * 2.0,
                ..base.clone()
            },
            Scenario {
                latency_ms: |t| 2.0 + t * 0.01,
                ..base.clone()
            },
        ),
        (
            "rate_limited",
            Scenario {
                views: vec![(
                    2 * ONE_PCT,
                    rejected(Prefix::RateLimited, "rate-limited: slow down"),
                )],
                ..base.clone()
            },
            Scenario {
                views: vec![(
                    ONE_PCT / 2,
                    rejected(Prefix::RateLimited, "rate-limited: slow down"),
                )],
                ..base.clone()
            },
        ),
        (
            "missing_acks",
            Scenario {
                views: vec![(2 * ONE_PCT, Outcome::StoredUnacked)],
                ..base.clone()
            },
            Scenario {
                views: vec![(ONE_PCT / 2, Outcome::StoredUnacked)],
                ..base.clone()
            },
        ),
        (
            "connect_failures",
            Scenario {
                initial_connect_failures: 1,
                ..base.clone()
            },
            Scenario {
                reconnect_failures: 1,
                ..base.clone()
            },
        ),
        (
            "disconnects",
            Scenario {
                views: vec![(1, Outcome::Disconnected { code: Some(1001) })],
                ..base.clone()
            },
            base.clone(),
        ),
        (
            "subscription_limits",
            Scenario {
                reads: vec![(
                    20,
                    Outcome::Closed {
                        prefix: Prefix::Error,
                        message: "error: too many subscriptions".into(),
                    },
                )],
                ..base.clone()
            },
            Scenario {
                reads: vec![(
                    5,
                    Outcome::Closed {
                        prefix: Prefix::Error,
                        message: "error: too many subscriptions".into(),
                    },
                )],
                ..base.clone()
            },
        ),
        (
            "message_size",
            Scenario {
                views: vec![(1, rejected(Prefix::Invalid, "invalid: event too large"))],
                ..base.clone()
            },
            Scenario {
                views: vec![(1, rejected(Prefix::Invalid, "invalid: bad signature"))],
                ..base.clone()
            },
        ),
        (
            "invalid_rejects",
            Scenario {
                views: vec![(
                    2 * ONE_PCT,
                    rejected(Prefix::Invalid, "invalid: created_at too early"),
                )],
                ..base.clone()
            },
            Scenario {
                views: vec![(
                    ONE_PCT / 2,
                    rejected(Prefix::Invalid, "invalid: created_at too early"),
                )],
                ..base.clone()
            },
        ),
        (
            "policy_rejects",
            Scenario {
                views: vec![(
                    2 * ONE_PCT,
                    rejected(Prefix::Blocked, "blocked: not on the allow-list"),
                )],
                ..base.clone()
            },
            Scenario {
                views: vec![(
                    ONE_PCT / 2,
                    rejected(Prefix::Blocked, "blocked: not on the allow-list"),
                )],
                ..base.clone()
            },
        ),
        (
            "other_rejects",
            Scenario {
                views: vec![(
                    2 * ONE_PCT,
                    rejected(Prefix::Other, "replaced: have newer event"),
                )],
                ..base.clone()
            },
            // Refusals another rule speaks for do not count here.
            Scenario {
                views: vec![(
                    2 * ONE_PCT,
                    rejected(Prefix::RateLimited, "rate-limited: slow down"),
                )],
                ..base.clone()
            },
        ),
        (
            "rss_growth",
            Scenario {
                rss_mb_per_s: 2.0,
                ..base.clone()
            },
            // The same growth over a run too short to tell a leak from warm-up.
            Scenario {
                rss_mb_per_s: 2.0,
                seconds: 40,
                ..base.clone()
            },
        ),
        (
            "duplicates",
            Scenario {
                views: vec![(2 * ONE_PCT, Outcome::Duplicate)],
                ..base.clone()
            },
            Scenario {
                views: vec![(ONE_PCT / 2, Outcome::Duplicate)],
                ..base.clone()
            },
        ),
    ];
    let mut covered = BTreeSet::new();
    for (rule, fires, misses) in cases {
        let f = fires.fired();
        assert!(f.contains(rule), "{rule} did not fire: {f:?}");
        let m = misses.fired();
        assert!(!m.contains(rule), "{rule} fired on its near miss: {m:?}");
        covered.insert(rule.to_owned());
    }
    // Every rule the report knows has a case here.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("all.ltr");
    write(&path, "f1", &base.rows());
    let all: BTreeSet<String> = analyze(&path).rules.iter().map(|c| c.id.clone()).collect();
    assert_eq!(all, covered);
}

#[test]
fn remediation_ranks_fired_rules_first_and_cites_their_figures() {
    let s = Scenario {
        views: vec![
            (2 * ONE_PCT, Outcome::Timeout),
            (2 * ONE_PCT, Outcome::Duplicate),
        ],
        relay_cpu: 97.0,
        ..Scenario::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.ltr");
    write(&path, "f1", &s.rows());
    let r = analyze(&path);
    let order: Vec<&str> = r.remediation.iter().map(|x| x.rule.as_str()).collect();
    assert_eq!(&order[..2], &["cpu_bound", "duplicates"], "{order:?}");
    assert!(r.remediation.len() >= 3 && r.remediation.len() <= 10);
    assert!(r.remediation[0].fired && r.remediation[1].fired && !r.remediation[2].fired);
    assert!(
        r.remediation[0].evidence.contains("97.0% of a core"),
        "{}",
        r.remediation[0].evidence
    );
    assert!(
        r.remediation[1].evidence.contains("1.80% of attempted"),
        "{}",
        r.remediation[1].evidence
    );
    // Issue #17: a capacity figure says what it measures (it was the whole run's average,
    // drain included, beside another rule's last-third figure).
    assert!(
        r.remediation[0]
            .action
            .contains("succeeded records/s (while the trace was played, not counting the drain"),
        "{}",
        r.remediation[0].action
    );
}

#[test]
fn committed_schemas_match_the_report_types() {
    let schemas = [
        ("docs/report.schema.json", schemars::schema_for!(Report)),
        (
            "docs/compare.schema.json",
            schemars::schema_for!(lt::analyze::compare::Comparison),
        ),
        (
            "docs/calibration.schema.json",
            schemars::schema_for!(lt::analyze::calibrate::Calibration),
        ),
        (
            "docs/capacity.schema.json",
            schemars::schema_for!(lt::capacity::report::CapacityReport),
        ),
        (
            "docs/capacity-comparison.schema.json",
            schemars::schema_for!(lt::capacity::compare::CapacityComparison),
        ),
    ];
    for (file, schema) in schemas {
        let generated = serde_json::to_string_pretty(&schema).unwrap() + "\n";
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        if std::env::var_os("LT_UPDATE_SCHEMA").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{file} is stale: run LT_UPDATE_SCHEMA=1 cargo test committed_schemas"
        );
    }
}

/// The comparison JSON written last into `dir` (names grow `-2`, `-3`, …), checked
/// against the schema.
fn newest_comparison(dir: &Path) -> serde_json::Value {
    let json = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .max_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap())
        .unwrap();
    let c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    check_comparison(&c);
    c
}

#[test]
fn analyze_writes_both_reports_at_the_default_paths_without_overwriting() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.ltr");
    write(&path, "f1", &Scenario::default().rows());
    let date = chrono::Utc::now().format("%Y-%m-%d").to_string();
    for suffix in ["", "-2"] {
        let out = lt()
            .current_dir(dir.path())
            .arg("analyze")
            .arg(&path)
            .arg("--hgrm")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        let base = dir.path().join("reports/load-test");
        let json = base.join(format!("load-report-{date}{suffix}.json"));
        let md = base.join(format!("load-test-report-{date}{suffix}.md"));
        assert!(text(&out.stdout).contains(&md.file_name().unwrap().to_string_lossy().to_string()));
        let value = check_report_files(&json, &md);
        // The schema can fail: a report without its trust verdict does not pass.
        let mut broken = value.clone();
        broken.as_object_mut().unwrap().remove("trust");
        let schema: serde_json::Value =
            serde_json::from_str(include_str!("../docs/report.schema.json")).unwrap();
        assert!(!jsonschema::validator_for(&schema)
            .unwrap()
            .is_valid(&broken));
        for chart in value["charts"].as_array().unwrap() {
            let svg = std::fs::read_to_string(base.join(chart.as_str().unwrap())).unwrap();
            assert!(
                svg.starts_with("<svg") || svg.starts_with("<?xml"),
                "{chart}"
            );
        }
        assert!(base
            .join(format!("load-report-{date}{suffix}-response.hgrm"))
            .exists());
    }
}

#[test]
fn merged_files_add_histograms_not_percentiles() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.ltr"), dir.path().join("b.ltr"));
    // A: 900 answers at 1 ms; B: 100 at 100 ms. Merged p95 must be 100 ms, which no
    // average of the two files' p95s (1 and 100) gives.
    let fast: Vec<Row> = (0..900)
        .map(|i| row(i, view(), i * MS, 0, Some(MS), Outcome::Ok))
        .collect();
    let slow: Vec<Row> = (0..100)
        .map(|i| row(i, view(), i * MS, 0, Some(100 * MS), Outcome::Ok))
        .collect();
    write(&a, "f1", &fast);
    write(&b, "f1", &slow);
    // Different record counts per file would be different traces in real life; here the
    // fingerprint is what merging checks.
    let r = crate::util::report_of(&[a, b]);
    let p = r.measured.latency.overall.response_ms.unwrap();
    assert_eq!(p.count, 1000);
    close_to(p.p50, 1.0);
    close_to(p.p95, 100.0);
    assert_eq!(r.measured.config.files.len(), 2);
}

#[test]
fn compare_refuses_different_traces_and_finds_nothing_between_a_run_and_itself() {
    let dir = tempfile::tempdir().unwrap();
    let (a, other) = (dir.path().join("a.ltr"), dir.path().join("other.ltr"));
    write(&a, "f1", &Scenario::default().rows());
    write(&other, "f2", &Scenario::default().rows());
    let out = lt()
        .current_dir(dir.path())
        .args(["compare"])
        .arg(&a)
        .arg("--")
        .arg(&other)
        .output()
        .unwrap();
    let line = one_line_error(&out);
    assert!(line.contains("same trace"), "{line}");
    // Issue #28: a refused comparison writes nothing (it once left its chart behind, and
    // every later comparison that day failed on the name the chart held).
    assert!(
        !dir.path().join("reports").exists(),
        "a refused compare wrote files"
    );

    // Three runs a side: copies of one run (a file given twice is refused, below).
    let copies: Vec<PathBuf> = (0..3)
        .map(|i| {
            let copy = dir.path().join(format!("a{i}.ltr"));
            std::fs::copy(&a, &copy).unwrap();
            copy
        })
        .collect();
    for per_side in [1, 3] {
        let side: &[PathBuf] = &copies[..per_side];
        let out = lt()
            .current_dir(dir.path())
            .args(["compare", "--out-dir", "cmp"])
            .args(side)
            .arg("--")
            .args(side)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        let c = newest_comparison(&dir.path().join("cmp"));
        assert_eq!(c["overall"], "inconclusive", "{per_side}");
        if per_side == 1 {
            // Issue #17: the warning that qualifies the verdict comes before the table.
            let stdout = text(&out.stdout);
            let warned = stdout.find("warning: A: one run only").expect("warned");
            assert!(warned < stdout.find("Success rate").unwrap(), "{stdout}");
            // Issue #12: one run a side measures no noise, so there is no verdict at all.
            assert!(
                c["overall_line"].as_str().unwrap().contains("not measured"),
                "{}",
                c["overall_line"]
            );
            assert!(c["suggested_runs"].is_null());
        }
        let metrics = c["metrics"].as_array().unwrap();
        assert!(metrics.len() >= 10);
        for m in metrics {
            assert_eq!(m["verdict"], "inconclusive", "{m}");
        }
    }
    // Issue #17: one file twice is one run counted twice; refused, in analyze and compare.
    for args in [
        vec!["analyze", "a.ltr", "a.ltr"],
        vec!["compare", "a.ltr", "./a.ltr", "--", "a0.ltr"],
    ] {
        let out = lt().current_dir(dir.path()).args(&args).output().unwrap();
        let line = one_line_error(&out);
        assert!(line.contains("a.ltr: given twice"), "{args:?}: {line}");
    }
}

/// Issue #12: three runs a side 10 ms apart are found worse, with a reason that names the
/// statistic, the interval, the threshold and the detectable difference; a threshold above
/// the difference makes it "under the threshold"; a threshold in the wrong unit is refused.
#[test]
fn compare_finds_a_real_slowdown_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let latencies: [fn(f64) -> f64; 6] = [|_| 2.0, |_| 2.1, |_| 1.9, |_| 12.0, |_| 12.2, |_| 11.9];
    let files: Vec<PathBuf> = latencies
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let path = dir.path().join(format!("run{i}.ltr"));
            let scenario = Scenario {
                latency_ms: *f,
                ..Scenario::default()
            };
            write(&path, "f1", &scenario.rows());
            path
        })
        .collect();
    let compare = |extra: &[&str]| {
        let out = lt()
            .current_dir(dir.path())
            .args(["compare", "--out-dir", "cmp"])
            .args(extra)
            .args(&files[..3])
            .arg("--")
            .args(&files[3..])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        let c = newest_comparison(&dir.path().join("cmp"));
        std::fs::remove_dir_all(dir.path().join("cmp")).unwrap();
        c
    };
    let metric = |c: &serde_json::Value, id: &str| -> serde_json::Value {
        c["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id)
            .unwrap()
            .clone()
    };
    let c = compare(&[]);
    assert_eq!(c["overall"], "worse", "{}", c["overall_line"]);
    let p50 = metric(&c, "response_p50");
    assert_eq!(p50["verdict"], "worse", "{p50}");
    assert_eq!(
        p50["threshold"], 0.5,
        "5% of 2 ms is under the 0.5 ms floor"
    );
    let why = p50["reason"].as_str().unwrap();
    for part in [
        "Welch t",
        "95% interval",
        "Holm-adjusted p",
        "threshold 0.5 ms",
        "detectable",
    ] {
        assert!(why.contains(part), "{part}: {why}");
    }
    // Success rates agree: no verdict, and the threshold is in percentage points.
    let success = metric(&c, "success_rate");
    assert_eq!(success["verdict"], "inconclusive");
    assert_eq!(success["threshold_rule"], "0.5 pp");

    let c = compare(&["--threshold", "response_p50=20ms"]);
    let p50 = metric(&c, "response_p50");
    assert_eq!(p50["verdict"], "inconclusive", "{p50}");
    assert!(
        p50["reason"]
            .as_str()
            .unwrap()
            .contains("under the threshold 20 ms"),
        "{p50}"
    );

    let out = lt()
        .current_dir(dir.path())
        .args(["compare", "--threshold", "success_rate=1%"])
        .args(&files[..1])
        .arg("--")
        .args(&files[3..4])
        .output()
        .unwrap();
    let line = one_line_error(&out);
    assert!(line.contains("write success_rate=1pp"), "{line}");
}

#[test]
fn bad_input_is_one_line_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.ltr");
    write(&good, "f1", &Scenario::default().rows());
    let bytes = std::fs::read(&good).unwrap();
    let truncated = dir.path().join("truncated.ltr");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let empty = dir.path().join("empty.ltr");
    std::fs::write(&empty, b"").unwrap();
    let trace = crate::util::synth(dir.path(), "t", &["--duration", "5", "--clients", "5"]);
    for (file, want) in [
        (&truncated, "byte"),
        (&empty, "byte"),
        (&trace, "trace"),
        (&dir.path().join("missing.ltr"), "missing.ltr"),
    ] {
        let out = lt()
            .current_dir(dir.path())
            .arg("analyze")
            .arg(file)
            .output()
            .unwrap();
        let line = one_line_error(&out);
        assert!(
            line.contains(&file.file_name().unwrap().to_string_lossy().to_string()),
            "{line}"
        );
        assert!(line.contains(want), "{line}");
    }
    // Nothing was written for the failed runs.
    assert!(!dir.path().join("reports").exists());
}

#[test]
fn hot_functions_come_only_from_a_profile_beside_the_results() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.ltr");
    write(&path, "f1", &Scenario::default().rows());
    let r = analyze(&path);
    assert!(!r.measured.hot_functions.measured);
    assert_eq!(r.measured.hot_functions.note, "not measured");
    assert!(r.measured.hot_functions.functions.is_empty());

    let profile = lt::profile::Profile {
        tool: "perf record -F 499 -p 1".into(),
        samples: 1000,
        functions: vec![
            lt::profile::HotFunction {
                symbol: "sqlite3VdbeExec".into(),
                dso: "nostr-rs-relay".into(),
                percent: 31.5,
                samples: 315,
            },
            lt::profile::HotFunction {
                symbol: "secp256k1_ecmult".into(),
                dso: "nostr-rs-relay".into(),
                percent: 12.25,
                samples: 122,
            },
        ],
    };
    std::fs::write(
        lt::profile::beside(&path),
        serde_json::to_string(&profile).unwrap(),
    )
    .unwrap();
    let r = analyze(&path);
    assert!(r.measured.hot_functions.measured);
    assert_eq!(
        r.measured.hot_functions.functions[0].symbol,
        "sqlite3VdbeExec"
    );
    assert_eq!(r.measured.hot_functions.functions[1].percent, 12.25);
    assert!(
        r.measured.hot_functions.note.contains("1000 samples"),
        "{}",
        r.measured.hot_functions.note
    );
    let md = lt::analyze::render::report::render(&r);
    assert!(
        md.contains("`sqlite3VdbeExec` | nostr-rs-relay | 31.5"),
        "{md}"
    );
}

/// Issue #17: a missing argument is named in the one-line error (clap's message spans
/// lines), and an option written after `lt compare`'s `--` is explained, not opened as a file.
#[test]
fn missing_arguments_are_named_and_options_after_the_separator_explained() {
    let dir = tempfile::tempdir().unwrap();
    let trace = crate::util::synth(dir.path(), "t", &["--duration", "5", "--clients", "5"]);
    let trace = trace.to_str().unwrap();
    for (args, want) in [
        (vec!["analyze"], "not provided: <FILES>"),
        (vec!["compare", "r.ltr", "--"], "not provided: <B>"),
        (
            vec!["replay", trace, "--relay", "ws://127.0.0.1:9/", "--profile"],
            "not provided: --relay-pid",
        ),
        (
            vec!["compare", "a.ltr", "--", "b.ltr", "--out-dir", "x"],
            "--out-dir: options go before `--`",
        ),
    ] {
        let out = lt().current_dir(dir.path()).args(&args).output().unwrap();
        let line = one_line_error(&out);
        assert!(line.contains(want), "{args:?}: {line}");
    }
}

/// Issue #17: the Markdown's per-window latency table shows about 20 rows and says which
/// (it showed every Nth window without a word).
#[test]
fn the_window_table_says_which_windows_it_shows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.ltr");
    write(&path, "f1", &Scenario::default().rows());
    let r = analyze(&path);
    let n = r.measured.latency_over_time.windows.len();
    assert!(n > 20, "{n} windows: too few to need thinning");
    let md = lt::analyze::render::report::render(&r);
    let want = format!("every {}th of {n} windows shown", n.div_ceil(20));
    assert!(md.contains(&want), "{want}: {md}");
}

/// Issue #17: records never answered within the timeout count in the latency percentiles at
/// the timeout (a lower bound), and each set says how many; leaving them out made a relay
/// that stopped answering look fast ("p99 2.97 s" over the 58% that were answered).
#[test]
fn unanswered_records_count_in_percentiles_at_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.ltr");
    // 90 answered in 2 ms; 10 sent and never answered within the 3 s timeout.
    let rows: Vec<Row> = (0..100)
        .map(|i| match i % 10 {
            9 => row(i, view(), i * MS, 0, None, Outcome::StoredUnacked),
            _ => row(i, view(), i * MS, 0, Some(2 * MS), Outcome::Ok),
        })
        .collect();
    write_with(&path, "f1", &[("timeout_ms", "3000")], 0, &rows);
    let r = analyze(&path);
    let p = r.measured.latency.overall.response_ms.clone().unwrap();
    assert_eq!((p.count, p.at_timeout), (100, 10));
    close_to(p.p50, 2.0);
    // The slowest 10% are at least the timeout: p95 cannot be 2 ms.
    assert!(p.p95 >= 3000.0, "{p:?}");
    let s = r.measured.latency.overall.service_ms.clone().unwrap();
    assert!(s.p99 >= 3000.0 && s.at_timeout == 10, "{s:?}");
    let md = lt::analyze::render::report::render(&r);
    assert!(md.contains("100 (10 at the timeout)"), "{md}");
    // The latency windows the rules read count them too.
    let counted: u64 = r
        .measured
        .latency_over_time
        .windows
        .iter()
        .map(|w| w.count)
        .sum();
    assert_eq!(counted, 100);
}

/// Issue #17: records `--duration` (or Ctrl-C) left unsent are not "scheduled": they ran
/// the throughput chart on past the end of the run and made the capacity estimate 0.
#[test]
fn records_cut_off_by_duration_are_not_scheduled() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.ltr");
    // 10 s played at 100/s, then 50 s of records never sent.
    let rows: Vec<Row> = (0..6000)
        .map(|i| {
            let at = i * 10 * MS;
            if i < 1000 {
                row(i, view(), at, 0, Some(2 * MS), Outcome::Ok)
            } else {
                Row::Outcome(OutcomeRow {
                    index: i,
                    conn: 0,
                    op: view(),
                    intended_ns: at,
                    sent_ns: None,
                    completed_ns: None,
                    outcome: Outcome::NotSent,
                    bytes: 200,
                    events_received: 0,
                    held_ns: 0,
                    recorded: None,
                })
            }
        })
        .collect();
    write(&path, "f1", &rows);
    let r = analyze(&path);
    assert_eq!(r.measured.totals.not_sent, 5000);
    let seconds = &r.measured.throughput.per_second;
    assert!(seconds.len() <= 11, "{} seconds charted", seconds.len());
    let scheduled: u64 = seconds.iter().map(|s| s.scheduled).sum();
    assert_eq!(scheduled, 1000);
    // Nothing fired as an overload: what was scheduled was answered.
    let fired: Vec<&str> = r
        .rules
        .iter()
        .filter(|c| c.fired)
        .map(|c| c.id.as_str())
        .collect();
    assert!(!fired.contains(&"latency_rising"), "{fired:?}");
    let md = lt::analyze::render::report::render(&r);
    assert!(
        md.contains(
            "**The run was cut short (`--duration`):** 5000 of the trace's records were never sent"
        ),
        "{md}"
    );
}

/// Issue #17: a rule that cannot be judged says "not evaluated" and why, and then no
/// all-clear is given. A 20 s run is too short for a memory trend; lt used to answer
/// "No bottleneck observed at this load" with rss_growth simply "no".
#[test]
fn a_run_too_short_to_judge_every_rule_gets_no_all_clear() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.ltr");
    let short = Scenario {
        seconds: 20,
        ..Scenario::default()
    };
    write(&path, "f1", &short.rows());
    let r = analyze(&path);
    let rss = r.rules.iter().find(|c| c.id == "rss_growth").unwrap();
    assert!(!rss.fired);
    assert!(
        rss.not_evaluated
            .as_deref()
            .unwrap()
            .contains("at least 60 s"),
        "{rss:?}"
    );
    assert_eq!(
        r.remediation[0].rule, "not_evaluated",
        "{:?}",
        r.remediation
    );
    assert!(r.remediation[0].action.contains("no all-clear"));
    assert!(r
        .remediation
        .iter()
        .all(|i| !i.action.contains("No bottleneck observed")));
    let md = lt::analyze::render::report::render(&r);
    assert!(
        md.contains("| rss_growth | not evaluated: the run lasted 20"),
        "{md}"
    );
    // The same traffic over 90 s is judged on every rule: then the all-clear may come.
    let long = dir.path().join("long.ltr");
    write(&long, "f1", &Scenario::default().rows());
    let r = analyze(&long);
    assert!(
        r.rules.iter().all(|c| c.not_evaluated.is_none()),
        "{:?}",
        r.rules
    );
    assert_eq!(r.remediation[0].rule, "none");
}

/// Issue #17: an idle relay's steady ~44 ms read tail, in windows of ~40 replies, is not a
/// rising latency: a p99 of 40 replies is their maximum. latency_rising fired in 3 of 4
/// such runs ("Offered load is above capacity … ≈ 41.3 records/s").
#[test]
fn windows_too_thin_for_a_p99_are_not_a_rising_latency() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.ltr");
    // 40 records/s for 30 s, 2 ms answers, one 44 ms read tail in every second but the
    // first two, whose maximum happens to be lower: "p99" × 20 by window maxima.
    let rows: Vec<Row> = (0..1200u64)
        .map(|i| {
            let latency = if i % 40 == 39 && i >= 80 {
                44 * MS
            } else {
                2 * MS
            };
            row(i, view(), i * 25 * MS, 0, Some(latency), Outcome::Ok)
        })
        .collect();
    write(&path, "f1", &rows);
    let r = analyze(&path);
    let rising = r.rules.iter().find(|c| c.id == "latency_rising").unwrap();
    assert!(!rising.fired, "{rising:?}");
    assert!(
        rising
            .not_evaluated
            .as_deref()
            .unwrap()
            .contains("fewer than 100 replies"),
        "{rising:?}"
    );
}

/// Issue #17: at --speed max the all-clear never says "twice this one".
#[test]
fn at_speed_max_the_all_clear_does_not_say_twice_this_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.ltr");
    write_with(
        &path,
        "f1",
        &[("speed", "max")],
        0,
        &Scenario::default().rows(),
    );
    let r = analyze(&path);
    assert_eq!(r.remediation[0].rule, "none", "{:?}", r.remediation);
    let action = &r.remediation[0].action;
    assert!(!action.contains("twice"), "{action}");
    assert!(action.contains("--max-in-flight"), "{action}");
}

/// Issue #17: `missing_acks` said the relay "drops OK replies" (and quoted nostr-rs-relay's
/// ~128-deep queue at --per-conn-in-flight 100) when lt itself had counted 3,834 OKs that
/// arrived after the timeout. Late is not dropped; the advice follows what lt saw.
#[test]
fn events_acknowledged_late_are_not_called_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<Row> = (0..1000)
        .map(|i| match i % 10 {
            9 => row(i, view(), i * MS, 0, None, Outcome::StoredUnacked),
            _ => row(i, view(), i * MS, 0, Some(2 * MS), Outcome::Ok),
        })
        .collect();
    let options = [("timeout_ms", "3000"), ("per_conn_in_flight", "100")];
    let cases = [
        (
            80,
            "after the 3000 ms timeout: lt counted 80 OKs that came late",
        ),
        (0, "sent no OK, late or at all"),
    ];
    for (late, want) in cases {
        let path = dir.path().join(format!("late-{late}.ltr"));
        write_with(&path, "f1", &options, late, &rows);
        let r = analyze(&path);
        assert_eq!(r.measured.errors.late_acks, late);
        let rule = r.rules.iter().find(|c| c.id == "missing_acks").unwrap();
        assert!(rule.fired, "{rule:?}");
        assert!(rule.action.contains(want), "{late}: {}", rule.action);
        assert!(
            !rule.action.contains("~128"),
            "per-conn 100 is below that queue: {}",
            rule.action
        );
        assert!(
            rule.evidence
                .contains(&format!("{late} OKs arrived after the timeout")),
            "{}",
            rule.evidence
        );
    }
}

/// Issue #17: a report never tells a user to pass a flag they passed: with --relay-pid
/// given but no relay samples, it says the samples failed.
#[test]
fn a_relay_pid_given_but_unsampled_is_not_told_to_pass_it() {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<Row> = (0..100)
        .map(|i| row(i, view(), i * MS, 0, Some(2 * MS), Outcome::Ok))
        .collect();
    for (given, want) in [
        ("true", "although --relay-pid was given"),
        ("false", "(replay with --relay-pid)"),
    ] {
        let path = dir.path().join(format!("pid-{given}.ltr"));
        write_with(&path, "f1", &[("relay_pid_sampled", given)], 0, &rows);
        let r = analyze(&path);
        assert!(r.measured.resources.relay.is_none());
        let md = lt::analyze::render::report::render(&r);
        assert!(md.contains(want), "{given}: {md}");
        let cpu = r.rules.iter().find(|c| c.id == "cpu_bound").unwrap();
        assert!(
            cpu.not_evaluated.as_deref().unwrap().contains(want),
            "{cpu:?}"
        );
        if given == "true" {
            assert!(!md.contains("replay with --relay-pid"), "{md}");
        }
    }
}

/// Issue #17: merging runs of different speeds (or relays, or an interrupted one) is said,
/// not silently labelled with the first file's options.
#[test]
fn merging_unlike_runs_is_warned() {
    let dir = tempfile::tempdir().unwrap();
    let rows = Scenario::default().rows();
    let (a, b) = (dir.path().join("a.ltr"), dir.path().join("b.ltr"));
    write(&a, "f1", &rows);
    write_with(&b, "f1", &[("speed", "4x")], 0, &rows);
    let out = lt()
        .current_dir(dir.path())
        .args(["analyze", "a.ltr", "b.ltr", "--out-dir", "rep"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let want = "replay option speed differs: 1x in the first file, 4x in b.ltr";
    assert!(stdout.contains(&format!("warning: {want}")), "{stdout}");
    let r = crate::util::report_of(&[a.clone(), b]);
    assert_eq!(
        r.measured.config.merge_warnings,
        vec![want.replace("b.ltr", &dir.path().join("b.ltr").display().to_string())]
    );
    assert!(lt::analyze::render::report::render(&r).contains("- ⚠️ replay option speed differs"));
    // lt compare says the same of its sides, through the same check.
    let out = lt()
        .current_dir(dir.path())
        .args(["compare", "--out-dir", "cmp", "a.ltr", "--", "b.ltr"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout
            .contains("warning: replay option speed differs: 1x in A's first run, 4x in B's b.ltr"),
        "{stdout}"
    );
    // Alike runs merge without a word.
    let alike = dir.path().join("c.ltr");
    write(&alike, "f1", &rows);
    let runs = lt::analyze::read_merged(&[a, alike]).unwrap();
    assert!(runs.merge_warnings.is_empty(), "{:?}", runs.merge_warnings);
}

/// Writes `blocks` blocks of 100 view records each (with a sample after each, as replay
/// does), then 50 records never flushed, and no trailer: a replay killed mid-run. The trace
/// has 400 records. Returns the byte offset at which each block ends.
fn write_cut_short(path: &Path, blocks: u64) -> Vec<u64> {
    let mut w = ResultsWriter::new(File::create(path).unwrap(), &header("f1", 400)).unwrap();
    let mut ends = Vec::new();
    for b in 0..blocks {
        for i in b * 100..(b + 1) * 100 {
            w.push(&row(i, view(), i * 10 * MS, 0, Some(2 * MS), Outcome::Ok))
                .unwrap();
        }
        w.push(&Row::Sample(Sample {
            at_ns: (b + 1) * S,
            relay_cpu_pct: None,
            relay_rss_bytes: None,
            harness_cpu_pct: 5.0,
            harness_rss_bytes: 10 << 20,
            lag_max_us: 100,
            connections_open: 10,
            in_flight: 1,
            sent: (b + 1) * 100,
            completed: (b + 1) * 100,
        }))
        .unwrap();
        w.flush().unwrap();
        ends.push(std::fs::metadata(path).unwrap().len());
    }
    for i in blocks * 100..blocks * 100 + 50 {
        w.push(&row(i, view(), i * 10 * MS, 0, Some(2 * MS), Outcome::Ok))
            .unwrap();
    }
    drop(w);
    ends
}

/// Issue #17: a results file without its trailer (lt killed, disk full) is refused by
/// `lt analyze` with a pointer to `--partial`; with it, every complete block is read and
/// the report says first, in JSON, Markdown and on stdout, that it is partial, how much it
/// covers and why; it is not trustworthy and gives no all-clear.
#[test]
fn a_results_file_cut_short_is_read_with_partial_and_said_so() {
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("cut.ltr");
    let ends = write_cut_short(&cut, 3);
    // The same run torn inside its third block, as a full disk leaves it.
    let torn = dir.path().join("torn.ltr");
    let bytes = std::fs::read(&cut).unwrap();
    std::fs::write(&torn, &bytes[..(ends[1] + ends[2]) as usize / 2]).unwrap();

    let plain = lt().arg("analyze").arg(&cut).output().unwrap();
    let line = one_line_error(&plain);
    assert!(
        line.contains("cut.ltr") && line.contains("no trailer"),
        "{line}"
    );
    assert!(line.contains("--partial"), "{line}");

    for (file, outcomes, why) in [(&cut, 300, "no trailer"), (&torn, 200, "truncated")] {
        let out_dir = dir.path().join(format!("reports-{outcomes}"));
        let run = lt()
            .arg("analyze")
            .arg(file)
            .arg("--partial")
            .arg("--out-dir")
            .arg(&out_dir)
            .output()
            .unwrap();
        assert!(run.status.success(), "{}", text(&run.stderr));
        let stdout = text(&run.stdout);
        assert!(
            stdout.starts_with(&format!(
                "PARTIAL: {} ends before its trailer; {outcomes} of 400",
                file.file_name().unwrap().to_string_lossy()
            )),
            "{stdout}"
        );
        let find = |ext: &str| crate::util::file_with_extension(&out_dir, ext);
        let (json, md) = (find("json"), find("md"));
        let value = check_report_files(&json, &md);
        let partial = &value["config"]["partial"][0];
        assert_eq!(partial["outcome_rows"], outcomes, "{partial}");
        assert_eq!(partial["trace_records"], 400);
        assert!(
            partial["reason"].as_str().unwrap().contains(why),
            "{partial}"
        );
        assert_eq!(value["totals"]["attempted"], outcomes);
        assert_eq!(value["trust"]["trustworthy"], false);
        let remediation = value["remediation"].as_array().unwrap();
        assert_eq!(remediation[0]["rule"], "partial");
        assert!(remediation.iter().all(|r| r["rule"] != "none"));
        let text = std::fs::read_to_string(&md).unwrap();
        let banner = text.find("PARTIAL RESULTS").expect("a banner");
        assert!(banner < text.find("NOT TRUSTWORTHY").unwrap());
    }

    // A complete file read with --partial is simply complete.
    let whole = dir.path().join("whole.ltr");
    write(&whole, "f1", &Scenario::default().rows());
    let runs = lt::analyze::read_merged_each(
        std::slice::from_ref(&whole),
        lt::analyze::Completeness::AllowPartial,
        |_| {},
    )
    .unwrap();
    assert!(runs.partial.is_empty());
    let r = report::build(&runs, &Ids::new(), &[]);
    assert!(r.measured.config.partial.is_empty());
    assert!(r.trust.trustworthy, "{:?}", r.trust);
}

/// Issue #18: `--check` gates a CI job on the report. Exit 0 when every check passes, 1 when
/// one fails, 2 for a bad expression (nothing written); the report keeps each check with its
/// figure; `--checks FILE` reads TOML or JSON; a run that is not trustworthy (here partial)
/// fails the gate unless `--allow-untrusted`.
#[test]
fn checks_gate_the_exit_code_and_are_kept_in_the_report() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden");
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, file: &str, args: &[&str]| {
        let out = dir.path().join(name);
        let o = lt()
            .arg("analyze")
            .arg(golden.join(file))
            .arg("--out-dir")
            .arg(&out)
            .args(args)
            .output()
            .unwrap();
        (o, out)
    };
    let json_of = |out: &Path| {
        let find = |ext: &str| crate::util::file_with_extension(out, ext);
        (
            check_report_files(&find("json"), &find("md")),
            std::fs::read_to_string(find("md")).unwrap(),
        )
    };

    // a1: a healthy real run into nostr-rs-relay (p99 44.671 ms, success 100%).
    let (o, out) = run(
        "pass",
        "a1.ltr",
        &[
            "--check",
            "response.p99 < 50ms",
            "--check",
            "success >= 99.5%",
            "--check",
            "timeouts == 0",
            "--check",
            "own_lag.p99 < 5ms",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("checks: 4 of 4 passed"));
    let (json, md) = json_of(&out);
    let checks = json["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 4);
    assert_eq!(checks[0]["metric"], "latency.overall.response_ms.p99");
    assert_eq!(checks[0]["observed"], 44.671);
    assert!(checks.iter().all(|c| c["passed"] == true));
    assert!(
        md.contains("## Checks") && md.contains("4 of 4 passed"),
        "{md}"
    );

    let (o, out) = run("fail", "a1.ltr", &["--check", "response.p99 < 40ms"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("check FAIL: response.p99 < 40ms — observed 44.671ms"));
    let (json, md) = json_of(&out);
    assert_eq!(json["checks"][0]["passed"], false);
    assert!(md.contains("the gate fails"), "{md}");

    let (o, out) = run("typo", "a1.ltr", &["--check", "respons.p99 < 40ms"]);
    let line = one_line_error(&o);
    assert!(line.contains("nearest: response.p99"), "{line}");
    assert!(!out.exists(), "nothing is written for a bad gate");
    let (o, _) = run("unit", "a1.ltr", &["--check", "success >= 99.5"]);
    assert!(one_line_error(&o).contains("percent"));

    let toml = dir.path().join("gate.toml");
    std::fs::write(
        &toml,
        "checks = [\"response.p99 < 50ms\", \"failed == 0\"]\n",
    )
    .unwrap();
    let (o, _) = run("toml", "a1.ltr", &["--checks", toml.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let json_file = dir.path().join("gate.json");
    std::fs::write(&json_file, r#"{"checks": ["response.p99 < 1ms"]}"#).unwrap();
    let (o, _) = run("json", "a1.ltr", &["--checks", json_file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));

    // A partial run is not trustworthy: its gate fails, however good its figures.
    let (o, out) = run(
        "partial",
        "partial.ltr",
        &["--partial", "--check", "failed == 0"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stdout));
    let (json, _) = json_of(&out);
    let last = json["checks"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["metric"], "trust.trustworthy");
    assert_eq!(last["passed"], false);
    let (o, _) = run(
        "allowed",
        "partial.ltr",
        &["--partial", "--check", "failed == 0", "--allow-untrusted"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stdout));
}

/// Issue #18: `lt compare --fail-on` is a release gate on two real sides (nostr-rs-relay
/// against rnostr, two runs each): rnostr is worse on success rate, so `worse` and
/// `success_rate` fail it (exit 1) and a metric it is not worse on passes (exit 0); the
/// comparison keeps the gate and names the metrics; an unknown metric is a one-line error.
#[test]
fn fail_on_gates_a_comparison() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden");
    let dir = tempfile::tempdir().unwrap();
    let compare = |name: &str, fail_on: &str| {
        let out = dir.path().join(name);
        let o = lt()
            .current_dir(&golden)
            .args(["compare", "--fail-on", fail_on, "--out-dir"])
            .arg(&out)
            .args(["a1.ltr", "a2.ltr", "--", "b1.ltr", "b2.ltr"])
            .output()
            .unwrap();
        (o, out)
    };
    for (fail_on, code, failed) in [
        ("worse", 1, Some("success_rate")),
        ("success_rate,response_p99", 1, Some("success_rate")),
        ("response_p99", 0, None),
    ] {
        let (o, out) = compare(fail_on, fail_on);
        assert_eq!(
            o.status.code(),
            Some(code),
            "{fail_on}: {}",
            text(&o.stderr)
        );
        let c = newest_comparison(&out);
        assert_eq!(c["gate"]["fail_on"], fail_on);
        assert_eq!(c["gate"]["passed"], code == 0);
        if let Some(m) = failed {
            assert!(c["gate"]["failed"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x == m));
            assert!(text(&o.stdout).contains("gate: Gate FAILED"));
        }
    }
    let (o, _) = compare("typo", "succes_rate");
    let line = one_line_error(&o);
    assert!(line.contains("success_rate"), "{line}");
}

/// Issue #18: `--issues DIR` writes a draft per bottleneck the rules found on the relay
/// (not on lt), each with its evidence, the exact commands to reproduce it and labels; with
/// no profile, no claim about cryptography. `--summary pr` prints a block for a pull request
/// with the safety statement, the commands and links to the drafts.
#[test]
fn issue_drafts_and_the_pr_summary_carry_evidence_and_commands() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden");
    let dir = tempfile::tempdir().unwrap();
    let drafts_dir = dir.path().join("drafts");
    // `over`: nostr-rs-relay overloaded at 8x with a 300 ms timeout (lost events, CPU-bound,
    // overload, missing OKs).
    let o = lt()
        .arg("analyze")
        .arg(golden.join("over.ltr"))
        .arg("--out-dir")
        .arg(dir.path().join("rep"))
        .arg("--issues")
        .arg(&drafts_dir)
        .args(["--summary", "pr"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&drafts_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(names.contains(&"01-lost-events.md".to_owned()), "{names:?}");
    assert!(
        names.iter().any(|n| n.ends_with("cpu-bound.md")),
        "{names:?}"
    );
    assert!(
        !names.iter().any(|n| n.contains("cryptography")),
        "no profile, no crypto claim"
    );
    for f in &files {
        let d = std::fs::read_to_string(f).unwrap();
        assert!(d.starts_with("# "), "{d}");
        assert!(d.contains("Labels: "), "{d}");
        assert!(
            d.contains("## Evidence") && d.contains("## How to reproduce"),
            "{d}"
        );
        assert!(
            d.contains("lt synth --seed 12 --clients 200 --duration 20")
                && d.contains("--speed 8x")
                && d.contains("--timeout 300ms"),
            "{d}"
        );
        assert!(!d.contains("requires-security-review"), "{d}");
    }
    let lost = std::fs::read_to_string(&files[0]).unwrap();
    assert!(
        lost.contains("Accepted events are not stored: 7 events"),
        "{lost}"
    );
    assert!(lost.contains("Labels: correctness, reliability"), "{lost}");

    let pr = text(&o.stdout);
    assert!(pr.starts_with("### Load test: 127.0.0.1:"), "{pr}");
    assert!(
        pr.contains("does not target public relays; requires RELAY_URL"),
        "{pr}"
    );
    assert!(
        pr.contains("lt replay trace.ltc --relay ws://127.0.0.1:"),
        "{pr}"
    );
    assert!(pr.contains("| Success rate | 49.836 % |"), "{pr}");
    assert!(
        pr.contains("- Issue draft: [Accepted events are not stored"),
        "{pr}"
    );
}

/// Writes shard `index` of `count` of a 1,000-record trace, holding `rows`.
fn write_shard(path: &Path, index: u32, count: u32, rows: &[Row]) {
    let records = rows.iter().filter(|r| matches!(r, Row::Outcome(_))).count() as u64;
    let mut h = header("fs", 1000);
    h.part = Some(lt::capture::results::Part {
        index,
        count,
        records,
        connections: 1,
    });
    let mut w = ResultsWriter::new(BufWriter::new(File::create(path).unwrap()), &h).unwrap();
    for r in rows {
        w.push(r).unwrap();
    }
    w.finish(Trailer {
        finished_at: "2026-11-27T00:01:00Z".into(),
        elapsed_ns: 10 * S,
        ..Default::default()
    })
    .unwrap();
}

/// Issue #19: a shard whose lt fell behind makes the merged run untrustworthy, even when
/// the merged figures hide it (its 5 late sends are 0.5% of the run's, 5% of its own).
#[test]
fn a_shard_that_fell_behind_makes_the_merged_run_untrustworthy() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("s0.ltr"), dir.path().join("s1.ltr"));
    let calm: Vec<Row> = (0..900u64)
        .map(|i| row(i, view(), i * 10 * MS, 0, Some(2 * MS), Outcome::Ok))
        .collect();
    let late: Vec<Row> = (900..1000u64)
        .map(|i| {
            let lag = if i % 20 == 0 { 50 * MS } else { 0 };
            row(i, view(), i * 10 * MS, lag, Some(2 * MS), Outcome::Ok)
        })
        .collect();
    write_shard(&a, 0, 2, &calm);
    write_shard(&b, 1, 2, &late);
    let built = crate::util::report_of(&[a.clone(), b.clone()]);
    let merged_lag = built.measured.latency.overall.schedule_lag_ms.unwrap().p99;
    assert!(merged_lag < 5.0, "the merged figures hide it: {merged_lag}");
    // Issue #28: the library's report is the CLI's, trust verdict included (the list of
    // untrustworthy parts was once filled in by the CLI after building).
    assert!(!built.trust.trustworthy, "{:?}", built.trust);
    let untrusted = &built.measured.config.untrusted_shards;
    assert_eq!(untrusted.len(), 1, "{untrusted:?}");
    assert!(
        untrusted[0].starts_with("shard 1/2 (s1.ltr) was not trustworthy"),
        "{untrusted:?}"
    );

    // Through the CLI: the report's verdict names the shard.
    let out = lt()
        .arg("analyze")
        .arg(&a)
        .arg(&b)
        .arg("--out-dir")
        .arg(dir.path().join("r"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json = crate::util::file_with_extension(&dir.path().join("r"), "json");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    assert_eq!(v["trust"]["trustworthy"], false, "{}", v["trust"]);
    assert!(
        v["trust"]["reasons"].to_string().contains("shard 1/2"),
        "{}",
        v["trust"]
    );
}
