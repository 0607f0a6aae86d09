//! The comparison's decision rule, tested the way a user meets it: thousands of simulated
//! `lt ab` sessions drawn from run-to-run noise measured on the real relays.
//! `tests/fixtures/aa-*.json` are `lt ab --aa` calibrations (each relay against itself,
//! the seed-7 trace of 20 s over 40 clients at `--speed 4x`), copied unchanged; their
//! `figures` hold every run's metrics. Issue #12: a build compared with itself must come
//! out inconclusive on every metric in at least 19 sessions of 20, while a 5 ms slowdown
//! is still found.

use std::path::Path;

use lt::analyze::calibrate::Calibration;
use lt::analyze::compare::{self, Verdict};
use lt::analyze::thresholds::{self, Thresholds};
use lt::analyze::verdict::{resample_sessions, Better, SessionRates};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

const SESSIONS: u32 = 2000;

fn fixture(name: &str) -> Calibration {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    crate::util::check_calibration(&serde_json::from_str(&text).unwrap());
    let c: Calibration = serde_json::from_str(&text).expect("a calibration report");
    let ids: Vec<&str> = thresholds::METRICS.iter().map(|m| m.id).collect();
    assert_eq!(c.metrics, ids, "the fixture's columns are today's metrics");
    c
}

/// Every relay whose noise was measured, with all its runs pooled (the same build, trace
/// and speed in every calibration of one relay).
fn pools() -> Vec<(&'static str, Calibration)> {
    [
        (
            "nostr-rs-relay",
            &[
                "aa-nostr-rs-relay-runs3.json",
                "aa-nostr-rs-relay-runs5.json",
            ][..],
        ),
        ("rnostr", &["aa-rnostr-runs3.json"][..]),
    ]
    .into_iter()
    .map(|(relay, files)| {
        let mut all = fixture(files[0]);
        for f in &files[1..] {
            let more = fixture(f);
            assert_eq!(more.attempted, all.attempted, "{f}: another trace");
            all.figures.extend(more.figures);
        }
        (relay, all)
    })
    .collect()
}

fn column(k: &str) -> usize {
    thresholds::METRICS.iter().position(|m| m.id == k).unwrap()
}

fn todays_rule(c: &Calibration) -> impl FnMut(&[Vec<f64>], &[Vec<f64>]) -> Vec<Verdict> + '_ {
    let t = Thresholds::default();
    move |a: &[Vec<f64>], b: &[Vec<f64>]| compare::verdicts(&t, c.attempted, a, b)
}

#[test]
fn aa_sessions_resampled_from_real_runs_rarely_call_a_difference() {
    for (name, c) in pools() {
        assert!(c.figures.len() >= 30, "{name}: {} runs", c.figures.len());
        for runs in [3, 5] {
            let rates = resample_sessions(&c.figures, runs, SESSIONS, 12, todays_rule(&c)).unwrap();
            eprintln!("{name}, {runs} runs a side: {:?}", rates);
            assert!(
                rates.rate() <= 0.05,
                "{name}, {runs} runs: {:.1}% of A/A sessions called a difference ({:?})",
                rates.rate() * 100.0,
                rates
            );
        }
    }
}

/// The rule lt used before issue #12, kept here only to show the simulation can fail:
/// a percentile bootstrap of the difference of means (fewer resamples than it used, which
/// changes nothing at three runs a side), 5% of A for every metric, and the spread
/// between repeats, with no correction over metrics.
fn old_rule(a: &[Vec<f64>], b: &[Vec<f64>], rng: &mut ChaCha20Rng) -> Vec<Verdict> {
    let mean = |x: &[f64]| x.iter().sum::<f64>() / x.len() as f64;
    let spread = |x: &[f64]| {
        x.iter().copied().fold(f64::MIN, f64::max) - x.iter().copied().fold(f64::MAX, f64::min)
    };
    a.iter()
        .zip(b)
        .zip(thresholds::METRICS)
        .map(|((a, b), m)| {
            if a.len() < 2 || b.len() < 2 {
                return Verdict::Inconclusive;
            }
            let (ma, mb) = (mean(a), mean(b));
            let delta = mb - ma;
            let bound = 0.05 * ma.abs();
            if delta == 0.0 || (ma != 0.0 && delta.abs() < bound) {
                return Verdict::Inconclusive;
            }
            let mut diffs: Vec<f64> = (0..1000)
                .map(|_| {
                    let pick = |x: &[f64], rng: &mut ChaCha20Rng| {
                        (0..x.len())
                            .map(|_| x[rng.random_range(0..x.len())])
                            .sum::<f64>()
                            / x.len() as f64
                    };
                    pick(b, rng) - pick(a, rng)
                })
                .collect();
            diffs.sort_by(f64::total_cmp);
            let (lo, hi) = (diffs[24], diffs[974]);
            let noise = spread(a).max(spread(b));
            if (lo <= 0.0 && hi >= 0.0) || lo.abs().min(hi.abs()) < bound || delta.abs() <= noise {
                Verdict::Inconclusive
            } else if (delta < 0.0) == (m.better == Better::Lower) {
                Verdict::Better
            } else {
                Verdict::Worse
            }
        })
        .collect()
}

#[test]
fn the_rule_before_issue_12_fails_the_same_simulation() {
    let (name, c) = &pools()[0];
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let rates = resample_sessions(&c.figures, 3, 400, 12, |a, b| old_rule(a, b, &mut rng)).unwrap();
    eprintln!("old rule on {name}: {rates:?}");
    assert!(
        rates.rate() > 0.05,
        "the old rule should call false differences here: {rates:?}"
    );
}

/// B: the A pool with `shift` added to the named metrics of every B run.
fn shifted(pool: &[Vec<Option<f64>>], shift: &[(&str, f64)]) -> Vec<Vec<Option<f64>>> {
    pool.iter()
        .map(|run| {
            let mut run = run.clone();
            for (id, by) in shift {
                if let Some(Some(v)) = run.get_mut(column(id)) {
                    *v += by;
                }
            }
            run
        })
        .collect()
}

/// How often each metric came out `want` when A is drawn from `pool` and B from `b_pool`.
fn power(c: &Calibration, b_pool: &[Vec<Option<f64>>], runs: usize, want: Verdict) -> SessionRates {
    // Runs are drawn from both pools at once: indices below len are A's, the rest B's.
    let n = c.figures.len();
    let mut both: Vec<Vec<Option<f64>>> = c.figures.clone();
    both.extend(b_pool.iter().cloned());
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let mut rule = todays_rule(c);
    let mut rates = SessionRates {
        sessions: 1000,
        sessions_with_a_verdict: 0,
        per_metric: vec![0; thresholds::METRICS.len()],
    };
    for _ in 0..rates.sessions {
        let a_idx = rand::seq::index::sample(&mut rng, n, runs).into_vec();
        let b_idx: Vec<usize> = rand::seq::index::sample(&mut rng, n, runs)
            .into_iter()
            .map(|i| i + n)
            .collect();
        let col = |idx: &[usize]| -> Vec<Vec<f64>> {
            (0..thresholds::METRICS.len())
                .map(|k| idx.iter().filter_map(|&i| both[i][k]).collect())
                .collect()
        };
        let verdicts = rule(&col(&a_idx), &col(&b_idx));
        for (k, v) in verdicts.iter().enumerate() {
            rates.per_metric[k] += u32::from(*v == want);
        }
    }
    rates
}

const LATENCIES: [&str; 9] = [
    "response_p50",
    "response_p90",
    "response_p99",
    "response_p99_9",
    "response_max",
    "service_p50",
    "service_p99",
    "eose_p50",
    "eose_p99",
];

/// A relay, what B adds to its runs (metric, amount), the metrics that must come out
/// worse, and in at least what share of sessions.
type PowerCase<'a> = (&'a str, Vec<(&'a str, f64)>, [&'a str; 2], f64);

/// Power, at 3 runs a side: B is A's pool with a real difference added to every run. The
/// issue's bar is for nostr-rs-relay (p50 ≈ 1 ms): a 5 ms delay found in 9 sessions of 10,
/// 20 ms in all, a build refusing 1.5% of events worse on success rate. rnostr is the
/// harder case and is held to what was measured, so the rule cannot quietly lose power:
/// its p50 is ≈ 47 ms (5 ms is twice its 5% threshold, and one run in 36 sat 3 ms high),
/// and its success rate already varies between runs (94.77–95.23%), so with three runs
/// a side the test has few degrees of freedom.
#[test]
fn real_differences_are_found_slowdowns_and_refusals() {
    let pools = pools();
    let pool = |relay: &str| &pools.iter().find(|(r, _)| *r == relay).unwrap().1;
    let slower =
        |ms: f64| -> Vec<(&'static str, f64)> { LATENCIES.iter().map(|id| (*id, ms)).collect() };
    let refusing = |c: &Calibration| vec![("success_rate", -1.5), ("failed", 0.015 * c.attempted)];
    let cases: Vec<PowerCase> = vec![
        (
            "nostr-rs-relay",
            slower(5.0),
            ["response_p50", "service_p50"],
            0.9,
        ),
        (
            "nostr-rs-relay",
            slower(20.0),
            ["response_p50", "service_p50"],
            1.0,
        ),
        (
            "nostr-rs-relay",
            refusing(pool("nostr-rs-relay")),
            ["success_rate", "failed"],
            0.99,
        ),
        ("rnostr", slower(5.0), ["response_p50", "service_p50"], 0.75),
        ("rnostr", slower(20.0), ["response_p50", "service_p50"], 1.0),
        (
            "rnostr",
            refusing(pool("rnostr")),
            ["success_rate", "failed"],
            0.75,
        ),
    ];
    for (relay, shift, metrics, want) in cases {
        let c = pool(relay);
        let rates = power(c, &shifted(&c.figures, &shift), 3, Verdict::Worse);
        for id in metrics {
            let found = f64::from(rates.per_metric[column(id)]) / f64::from(rates.sessions);
            eprintln!(
                "{relay}, B {} {:+}…: {id} worse in {:.1}%",
                shift[0].0,
                shift[0].1,
                found * 100.0
            );
            assert!(
                found >= want,
                "{relay}: {id} worse in {:.1}% of sessions, want {:.0}% ({shift:?})",
                found * 100.0,
                want * 100.0
            );
        }
    }
}
