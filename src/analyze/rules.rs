//! The remediation rules: each rule looks at one measured figure, compares it with a stated
//! threshold (at or above its value fires), and when it fires says what to change; then the
//! ranked remediation list.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::model::{self, Measured, SecondCounts};
use super::stats::figure;
use super::trust::{harness_reasons, partial_reasons, LAG_P99_BOUND_MS};
use crate::capture::options::Speed;

mod scraped;

/// lt and the relay together above this share of all cores: the machine was (percent).
pub const MACHINE_CPU_BOUND_PCT: f64 = 90.0;
/// Relay CPU (percent of one core) at which a relay counts as CPU-bound.
pub const RELAY_CPU_BOUND_PCT: f64 = 90.0;
/// Share of attempted records (percent) at which an error class is worth acting on.
pub const SHARE_BOUND_PCT: f64 = 1.0;
/// Late-run p99 over early-run p99 at which latency counts as rising.
pub const RISE_FACTOR: f64 = 2.0;
/// ... provided the late p99 is at least this (ms): doubling from 0.2 ms is not a backlog.
pub const RISE_FLOOR_MS: f64 = 10.0;
/// RSS growth (MB) and trend (MB/min) that suggest a leak, over runs of at least a minute.
pub const RSS_GROWTH_BOUND_MB: f64 = 50.0;
pub const RSS_SLOPE_BOUND_MB_PER_MIN: f64 = 10.0;
pub const RSS_MIN_RUN_S: f64 = 60.0;
/// Replies a latency window needs before its p99 is a percentile rather than its maximum
/// (at 100, the p99 is the second-highest reply).
pub const MIN_WINDOW_REPLIES: u64 = 100;
/// Delivery p99 over publish response p99 at which fan-out counts as slow.
pub const SLOW_FANOUT_FACTOR: f64 = 2.0;
/// ... provided the delivery p99 is at least this (ms).
pub const SLOW_FANOUT_FLOOR_MS: f64 = 10.0;

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RuleCheck {
    pub id: String,
    pub fired: bool,
    /// Why the rule could not be judged on this run (too short, too few replies per window,
    /// relay not sampled); `None` when it was. A rule not judged neither fired nor passed:
    /// it is never counted towards an all-clear.
    pub not_evaluated: Option<String>,
    /// The measured figure the rule looked at, and the threshold that fires it.
    pub value: f64,
    pub threshold: f64,
    pub unit: String,
    /// The figure in words, e.g. "rate-limited rejects: 3.2% of attempted (fires at ≥ 1%)".
    pub evidence: String,
    /// What to change when it fires.
    pub action: String,
    /// Higher first in the remediation list.
    pub priority: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Remediation {
    pub rank: u32,
    /// The rule behind it (`none` for the "no bottleneck" item).
    pub rule: String,
    /// Whether the rule fired (false for headroom notes that fill the list up to three).
    pub fired: bool,
    pub evidence: String,
    pub action: String,
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

struct Check {
    fired: bool,
    not_evaluated: Option<String>,
    value: f64,
    threshold: f64,
    unit: &'static str,
    evidence: String,
    action: String,
    priority: u32,
}

impl Check {
    fn judged(self, id: &str) -> RuleCheck {
        RuleCheck {
            id: id.into(),
            fired: self.fired && self.not_evaluated.is_none(),
            not_evaluated: self.not_evaluated,
            value: super::stats::round3(self.value),
            threshold: self.threshold,
            unit: self.unit.into(),
            evidence: self.evidence,
            action: self.action,
            priority: self.priority,
        }
    }
}

/// What a rule is about, which says who acts on it: only the relay's rules get an issue
/// draft for the relay's team.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum About {
    /// The relay under test.
    Relay,
    /// lt itself (it was the bottleneck).
    Lt,
    /// The run: the machine it ran on, or what the results file holds.
    Run,
}

/// One rule: its id (in the report), the title and labels its issue draft gets, what it is
/// about, and the check that judges a run.
pub struct Rule {
    pub id: &'static str,
    /// The symptom, as an issue's title starts.
    pub title: &'static str,
    pub labels: &'static [&'static str],
    pub about: About,
    check: fn(&Measured) -> Check,
    /// What the run must have for the rule to apply: elsewhere it has nothing to judge, and
    /// a rule not judged would stand in the way of an all-clear.
    needs: Needs,
}

const PERFORMANCE: &[&str] = &["performance"];
const RELIABILITY: &[&str] = &["reliability"];
const CONFIGURATION: &[&str] = &["reliability", "configuration"];
const CORRECTNESS: &[&str] = &["correctness"];
const LOSS: &[&str] = &["correctness", "reliability"];

const fn rule(
    id: &'static str,
    title: &'static str,
    labels: &'static [&'static str],
    about: About,
    check: fn(&Measured) -> Check,
) -> Rule {
    Rule {
        id,
        title,
        labels,
        about,
        check,
        needs: Needs::Nothing,
    }
}

/// What a rule needs from a run to be judged on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Needs {
    Nothing,
    /// Live subscriptions.
    Live,
    /// Host figures: a node_exporter scraped, or this machine's `/proc` read.
    Host,
    /// A relay's own metrics scraped (`--scrape` of its `/metrics`).
    RelayMetrics,
}

const fn live(rule: Rule) -> Rule {
    Rule {
        needs: Needs::Live,
        ..rule
    }
}

const fn host(rule: Rule) -> Rule {
    Rule {
        needs: Needs::Host,
        ..rule
    }
}

const fn relay_metrics(rule: Rule) -> Rule {
    Rule {
        needs: Needs::RelayMetrics,
        ..rule
    }
}

/// Every rule, in the order the report lists them. A new rule is one entry here and its
/// check below.
// One line per rule reads as a table.
#[rustfmt::skip]
pub static RULES: [Rule; 27] = [
    rule("harness_bottleneck", "lt was the bottleneck", PERFORMANCE, About::Lt, harness_bottleneck),
    rule("machine_saturated", "The load machine was saturated", PERFORMANCE, About::Run, machine_saturated),
    rule("lost_events", "Accepted events are not stored", LOSS, About::Relay, lost_events),
    rule("cpu_bound", "Relay is CPU-bound at this load", PERFORMANCE, About::Relay, cpu_bound),
    rule("overload", "Relay does not keep up with the offered rate", PERFORMANCE, About::Relay, overload),
    rule("latency_rising", "Latency rises through the run", PERFORMANCE, About::Relay, latency_rising),
    rule("timeouts_without_cpu", "Requests time out while the relay's CPU is idle", RELIABILITY, About::Relay, timeouts_not_cpu),
    rule("rate_limited", "Relay rate-limits ordinary traffic", CONFIGURATION, About::Relay, rate_limited),
    rule("missing_acks", "Events get no OK in time", RELIABILITY, About::Relay, missing_acks),
    rule("connect_failures", "Connections fail", RELIABILITY, About::Relay, connect_failures),
    rule("disconnects", "Connections drop mid-run", RELIABILITY, About::Relay, disconnects),
    rule("subscription_limits", "Subscriptions are refused", CONFIGURATION, About::Relay, subscription_limits),
    rule("message_size", "Events are refused for their size", CONFIGURATION, About::Relay, oversized),
    rule("invalid_rejects", "Valid events are rejected as invalid", CORRECTNESS, About::Relay, invalid_rejects),
    rule("policy_rejects", "Events are refused by policy", CORRECTNESS, About::Relay, policy_rejects),
    rule("other_rejects", "Events are rejected", CORRECTNESS, About::Relay, other_rejects),
    rule("rss_growth", "Relay memory grows through the run", PERFORMANCE, About::Relay, rss_growth),
    rule("duplicates", "Events come back as duplicates", CORRECTNESS, About::Relay, duplicates),
    live(rule("missed_deliveries", "Live subscribers miss events they match", LOSS, About::Relay, missed_deliveries)),
    live(rule("slow_fanout", "Events reach live subscribers slowly", PERFORMANCE, About::Relay, slow_fanout)),
    relay_metrics(rule("relay_count_mismatch", "The relay's own event count disagrees with lt's", CORRECTNESS, About::Relay, scraped::relay_count_mismatch)),
    host(rule("disk_bound", "The relay's disk is the bottleneck", PERFORMANCE, About::Run, scraped::disk_bound)),
    host(rule("memory_pressure", "The relay's host runs short of memory", PERFORMANCE, About::Run, scraped::memory_pressure)),
    host(rule("network_errors", "Packets are dropped or resent", RELIABILITY, About::Run, scraped::network_errors)),
    relay_metrics(rule("queueing_before_relay", "Time is lost before the relay's own timer", PERFORMANCE, About::Relay, scraped::queueing_before_relay)),
    relay_metrics(rule("slowdown_in_relay", "The slowdown is inside the relay", PERFORMANCE, About::Relay, scraped::slowdown_in_relay)),
    relay_metrics(rule("slowdown_before_relay", "The slowdown is before the relay's own timer", PERFORMANCE, About::Relay, scraped::slowdown_before_relay)),
];

/// The catalogue entry of rule `id`.
pub fn rule_named(id: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.id == id)
}

/// Every rule that applies to this run, fired or not.
pub fn check(r: &Measured) -> Vec<RuleCheck> {
    RULES
        .iter()
        .filter(|rule| match rule.needs {
            Needs::Nothing => true,
            Needs::Live => r.live_deliveries.is_some(),
            Needs::Host => scraped::has_host(r),
            Needs::RelayMetrics => scraped::has_relay_metrics(r),
        })
        .map(|rule| (rule.check)(r).judged(rule.id))
        .collect()
}

fn share_of_attempted(r: &Measured, n: u64) -> f64 {
    pct(n, r.totals.attempted)
}

/// `OK false` replies with this NIP-01 prefix.
fn rejected(r: &Measured, prefix: &str) -> u64 {
    r.errors
        .rejected_by_prefix
        .get(prefix)
        .copied()
        .unwrap_or(0)
}

/// A rule that fires when `n` records, described by `what`, reach
/// [`SHARE_BOUND_PCT`] of those attempted; `more` is appended to the evidence.
fn share_check(
    r: &Measured,
    n: u64,
    what: &str,
    more: String,
    action: &str,
    priority: u32,
) -> Check {
    let share = share_of_attempted(r, n);
    Check {
        not_evaluated: None,
        fired: share >= SHARE_BOUND_PCT,
        value: share,
        threshold: SHARE_BOUND_PCT,
        unit: "% of attempted",
        evidence: format!(
            "{n} {what}: {}% of attempted (fires at ≥ {SHARE_BOUND_PCT}%){more}",
            figure(share)
        ),
        action: action.into(),
        priority,
    }
}

fn missed_deliveries(r: &Measured) -> Check {
    let live = r.live_deliveries.as_ref();
    let (missed, expected) = live.map_or((0, 0), |d| (d.total.missed, d.total.expected));
    let example = live
        .and_then(|d| d.missed_examples.first())
        .map_or(String::new(), |e| {
            format!(
                "; e.g. event {} on {} (connection {})",
                e.event_id, e.subscription, e.connection
            )
        });
    Check {
        not_evaluated: None,
        fired: missed > 0,
        value: missed as f64,
        threshold: 1.0,
        unit: "deliveries",
        evidence: format!(
            "{missed} of {expected} expected deliveries to live subscriptions never arrived ({}%, fires at ≥ 1){example}",
            figure(pct(missed, expected))
        ),
        action: "The relay accepted events and did not push them to open subscriptions they match (NIP-01): a correctness bug in its fan-out (subscription matching, a per-connection queue that drops when full). The report's Live subscriptions section lists examples by event and subscription.".into(),
        priority: 87,
    }
}

fn slow_fanout(r: &Measured) -> Check {
    let live = r.live_deliveries.as_ref();
    let delivery = live
        .and_then(|d| {
            d.by_subscription
                .iter()
                .filter_map(|s| s.latency_ms.as_ref().map(|p| p.p99))
                .reduce(f64::max)
        })
        .unwrap_or(0.0);
    let publish = ["view", "video_post", "mirror", "other_event"]
        .iter()
        .filter_map(|t| r.latency.by_type.get(*t))
        .filter_map(|l| l.response_ms.as_ref().map(|p| p.p99))
        .reduce(f64::max)
        .unwrap_or(0.0);
    let ratio = if publish > 0.0 {
        delivery / publish
    } else {
        0.0
    };
    Check {
        not_evaluated: (delivery == 0.0).then(|| "no delivery was received".to_owned()),
        fired: ratio >= SLOW_FANOUT_FACTOR && delivery >= SLOW_FANOUT_FLOOR_MS,
        value: ratio,
        threshold: SLOW_FANOUT_FACTOR,
        unit: "× publish p99",
        evidence: format!(
            "delivery latency p99 {} ms against publish response p99 {} ms: ×{} (fires at ≥ ×{SLOW_FANOUT_FACTOR} and ≥ {SLOW_FANOUT_FLOOR_MS} ms)",
            figure(delivery),
            figure(publish),
            figure(ratio)
        ),
        action: "The relay answers publishers well before it reaches their subscribers: fan-out waits behind something (filter matching for every open subscription, per-connection write queues, a broadcast channel). Profile the relay under live subscribers (--profile) and look at its broadcast path.".into(),
        priority: 70,
    }
}

fn relay_cpu_p95(r: &Measured) -> Option<f64> {
    r.resources.relay.as_ref().map(|x| x.cpu_pct.p95)
}

fn harness_bottleneck(r: &Measured) -> Check {
    // lt's own part: time the relay held lt back is the relay's (see the trust verdict).
    let lag = r
        .latency
        .own_lag_ms
        .as_ref()
        .or(r.latency.overall.schedule_lag_ms.as_ref())
        .map_or(0.0, |p| p.p99);
    let (reasons, _) = harness_reasons(r);
    Check {
        not_evaluated: None,
        fired: !reasons.is_empty(),
        value: lag,
        threshold: LAG_P99_BOUND_MS,
        unit: "ms",
        evidence: if reasons.is_empty() {
            format!(
                "lt's own schedule lag p99 {} ms (fires above {LAG_P99_BOUND_MS} ms, or when lt's CPU binds or records were dropped)",
                figure(lag)
            )
        } else {
            reasons.join("; ")
        },
        action: "Lower --speed, use --on-overload wait rather than drop, or run lt on its own cores or machine; then measure again.".into(),
        priority: 100,
    }
}

fn machine_saturated(r: &Measured) -> Check {
    let cores = f64::from(r.config.machine.cores.max(1));
    let relay = r.resources.relay.as_ref().map_or(0.0, |x| x.cpu_pct.avg);
    let lt = r.resources.harness_cpu_pct.as_ref().map_or(0.0, |x| x.avg);
    let share = (relay + lt) / cores;
    Check {
        not_evaluated: r
            .resources
            .relay
            .is_none()
            .then(|| model::relay_not_sampled(r).to_owned()),
        fired: r.resources.relay.is_some() && share >= MACHINE_CPU_BOUND_PCT,
        value: share,
        threshold: MACHINE_CPU_BOUND_PCT,
        unit: "% of all cores",
        evidence: format!(
            "relay {}% + lt {}% of a core on {} cores = {}% of the machine (fires at ≥ {MACHINE_CPU_BOUND_PCT}%)",
            figure(relay),
            figure(lt),
            cores,
            figure(share)
        ),
        action: "The relay and lt competed for CPU: pin them to separate cores (taskset) or put the relay on a dedicated test host (--allow-host) before reading latency.".into(),
        priority: 90,
    }
}

fn lost_events(r: &Measured) -> Check {
    let n = r.errors.lost;
    Check {
        not_evaluated: None,
        fired: n > 0,
        value: n as f64,
        threshold: 1.0,
        unit: "events",
        evidence: format!(
            "{n} events got no OK and are not on the relay (fires at ≥ 1)"
        ),
        action: "The relay dropped accepted events silently: check its write path under load (nostr-rs-relay: [limits] event_persist_buffer and the SQLite writer; its log) — a client would think these were published.".into(),
        priority: 85,
    }
}

fn timeouts_share(r: &Measured) -> (u64, f64) {
    let n = r.errors.timeouts + r.errors.lost + r.errors.stored_unacked;
    (n, share_of_attempted(r, n))
}

fn cpu_bound(r: &Measured) -> Check {
    let (n, share) = timeouts_share(r);
    let cpu = relay_cpu_p95(r);
    let fired = share >= SHARE_BOUND_PCT && cpu.is_some_and(|c| c >= RELAY_CPU_BOUND_PCT);
    Check {
        not_evaluated: cpu.is_none().then(|| model::relay_not_sampled(r).to_owned()),
        fired,
        value: cpu.unwrap_or(0.0),
        threshold: RELAY_CPU_BOUND_PCT,
        unit: "% of a core",
        evidence: match cpu {
            Some(c) => format!(
                "{n} records unanswered in time ({}% of attempted, fires at ≥ {SHARE_BOUND_PCT}%) while relay CPU p95 was {}% of a core (fires at ≥ {RELAY_CPU_BOUND_PCT}%)",
                figure(share),
                figure(c)
            ),
            None => model::relay_not_sampled(r).into(),
        },
        action: format!(
            "The relay is CPU-bound at about {} succeeded records/s (while the trace was played, not counting the drain after it): profile it at this rate (perf record -p PID), look for per-event work to cut (signature checks, JSON, index updates), or give it more cores.",
            figure(per_s(r, played_seconds(r), |s| s.ok))
        ),
        priority: 80,
    }
}

/// Median of a slice of window p99s.
fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The seconds of the run in which records were scheduled: the played part, without the
/// drain after it (capacity figures are rates over this, or a named part of it).
fn played_seconds(r: &Measured) -> &[SecondCounts] {
    let secs = &r.throughput.per_second;
    let span = secs
        .iter()
        .rposition(|s| s.scheduled > 0)
        .map_or(0, |i| i + 1);
    &secs[..span]
}

/// A per-second count averaged over `secs`, per run when runs are merged.
fn per_s(r: &Measured, secs: &[SecondCounts], f: fn(&SecondCounts) -> u64) -> f64 {
    if secs.is_empty() {
        return 0.0;
    }
    let runs = f64::from(r.config.runs.max(1));
    secs.iter().map(|s| f(s) as f64).sum::<f64>() / secs.len() as f64 / runs
}

/// The two spans of latency windows a rise is read between: the first tenth (at least two
/// windows) and the last third; `None` under six windows. The first tenth is the baseline:
/// a relay that saturates within seconds would already be slow over the whole first third.
pub(super) fn rise_spans(
    w: &[model::LatencyWindow],
) -> Option<(&[model::LatencyWindow], &[model::LatencyWindow])> {
    let third = w.len() / 3;
    let head = (w.len() / 10).max(2);
    (third >= 2).then(|| (&w[..head], &w[w.len() - third..]))
}

/// Whether a p99 going from `early` to `late` (ms) is a rise: ×[`RISE_FACTOR`] and at least
/// [`RISE_FLOOR_MS`].
pub(super) fn rose(early: f64, late: f64) -> bool {
    early > 0.0 && late / early >= RISE_FACTOR && late >= RISE_FLOOR_MS
}

/// How many of the windows compared are too thin for a p99: a p99 of a window with a few
/// dozen replies is its maximum, not a percentile (two early windows of ~40 replies each
/// made a steady 44 ms tail look like a rise).
pub(super) fn thin_windows(early: &[model::LatencyWindow], late: &[model::LatencyWindow]) -> usize {
    early
        .iter()
        .chain(late)
        .filter(|x| x.count < MIN_WINDOW_REPLIES)
        .count()
}

pub(super) fn median_p99(w: &[model::LatencyWindow]) -> f64 {
    median(w.iter().map(|x| x.p99_ms).collect())
}

fn latency_rising(r: &Measured) -> Check {
    let w = &r.latency_over_time.windows;
    let spans = rise_spans(w);
    let (early, late) = spans.map_or((0.0, 0.0), |(e, l)| (median_p99(e), median_p99(l)));
    let ratio = if early > 0.0 { late / early } else { 0.0 };
    let fired = spans.is_some() && rose(early, late);
    let thin = spans.map_or(0, |(e, l)| thin_windows(e, l));
    let not_evaluated = if spans.is_none() {
        Some(format!(
            "{} latency window(s); a trend needs at least 6",
            w.len()
        ))
    } else if thin > 0 {
        Some(format!(
            "{thin} of the windows compared have fewer than {MIN_WINDOW_REPLIES} replies, too few for a p99 (a longer or busier run has more)"
        ))
    } else {
        None
    };
    // What the relay completed per second over the last third of the schedule (not the
    // drain after it): its capacity while the backlog grew. Per run when runs are merged.
    let played = played_seconds(r);
    let tail = &played[played.len() - played.len() / 3..];
    let (capacity, offered) = (per_s(r, tail, |s| s.ok), per_s(r, tail, |s| s.scheduled));
    Check {
        not_evaluated,
        fired,
        value: ratio,
        threshold: RISE_FACTOR,
        unit: "× early p99",
        evidence: format!(
            "p99 response time went from {} ms (first tenth of the run, at least two windows) to {} ms (last third): ×{} (fires at ≥ ×{RISE_FACTOR} and ≥ {RISE_FLOOR_MS} ms)",
            figure(early),
            figure(late),
            figure(ratio)
        ),
        action: format!(
            "Offered load is above capacity: {} records/s were scheduled and about {} records/s completed in the last third of the played part, so a backlog builds. Estimated capacity ≈ {} records/s (the last third's completion rate); run below it, or find what limits throughput (CPU, database writes, locks).",
            figure(offered),
            figure(capacity),
            figure(capacity)
        ),
        priority: 75,
    }
}

fn timeouts_not_cpu(r: &Measured) -> Check {
    let (n, share) = timeouts_share(r);
    let cpu = relay_cpu_p95(r);
    Check {
        not_evaluated: None,
        fired: share >= SHARE_BOUND_PCT && cpu.is_none_or(|c| c < RELAY_CPU_BOUND_PCT),
        value: share,
        threshold: SHARE_BOUND_PCT,
        unit: "% of attempted",
        evidence: format!(
            "{n} records unanswered in time: {}% of attempted (fires at ≥ {SHARE_BOUND_PCT}%), relay CPU p95 {}",
            figure(share),
            cpu.map_or("not sampled".to_owned(), |c| format!("{}% of a core", figure(c)))
        ),
        action: "The relay stalls without using its CPU: look for a serialised write path, lock or disk waits (SQLite writer, fsync), or a per-connection queue that drops replies; compare with --per-conn-in-flight lowered.".into(),
        priority: 72,
    }
}

fn rate_limited(r: &Measured) -> Check {
    let n = rejected(r, "rate-limited")
        + r.errors
            .closed_by_prefix
            .get("rate-limited")
            .copied()
            .unwrap_or(0);
    share_check(
        r,
        n,
        "rate-limited replies",
        String::new(),
        "The relay's rate limiter, not its capacity, answered: raise or disable it for the test (nostr-rs-relay [limits] messages_per_sec / subscriptions_per_min; rnostr [rate_limiter]) or spread the trace over more clients.",
        70,
    )
}

/// Share of the offered rate (percent) left unanswered while the trace played at or above
/// which the relay did not keep up: a backlog builds whatever the run's length.
pub const BACKLOG_BOUND_PCT: f64 = 10.0;
/// Share of records (percent) the relay held lt back for at or above which it, not the
/// schedule, set the pace.
pub const HELD_BOUND_PCT: f64 = 10.0;

/// Judged on any run from what is always measured: the rate offered and the rate answered
/// (OK, EOSE, CLOSED, rejections included) over the part of the run that was played, and
/// the time the relay held lt back. A 20 s overload at 4x got "no bottleneck observed"
/// before: too short for a trend, and the CPU rule's other condition unmet.
fn overload(r: &Measured) -> Check {
    let played = played_seconds(r);
    let offered = per_s(r, played, |s| s.scheduled);
    let answered = per_s(r, played, |s| s.ok + s.rejected);
    let backlog = if offered > 0.0 {
        (100.0 - answered * 100.0 / offered).max(0.0)
    } else {
        0.0
    };
    let held = r.latency.relay_held.share_pct;
    Check {
        not_evaluated: played.is_empty().then(|| "no record was scheduled".to_owned()),
        fired: backlog >= BACKLOG_BOUND_PCT || held >= HELD_BOUND_PCT,
        value: backlog,
        threshold: BACKLOG_BOUND_PCT,
        unit: "% of offered unanswered",
        evidence: format!(
            "{} records/s offered over the {} s played, {} answered per second in that time: {}% unanswered (fires at ≥ {BACKLOG_BOUND_PCT}%); the relay held lt back for {}% of records (fires at ≥ {HELD_BOUND_PCT}%)",
            figure(offered),
            played.len(),
            figure(answered),
            figure(backlog),
            figure(held)
        ),
        action: format!(
            "The relay did not keep up with the offered load: it answered about {} records/s of {} offered while the trace played (its capacity at this load). Run below that rate, or find what limits throughput (CPU, database writes, locks).",
            figure(answered),
            figure(offered)
        ),
        priority: 78,
    }
}

/// nostr-rs-relay 0.8.12 drops OKs beyond about this many outstanding on one connection
/// (reference/relays.md).
const NOSTR_RS_RELAY_OK_QUEUE: u64 = 128;

fn missing_acks(r: &Measured) -> Check {
    let (stored, late) = (r.errors.stored_unacked, r.errors.late_acks);
    let per_conn = r.config.options.per_conn_in_flight.map(|n| n as u64);
    // What lt saw decides the advice: OKs that came after the timeout were late, not
    // dropped; a dropped-reply queue is only the cause above its known depth.
    let action = if late * 2 >= stored {
        format!(
            "The relay answered, but after the {} timeout: lt counted {late} OKs that came late. It is slower than the timeout, not dropping replies: lower the rate to find its real ack latency, or raise --timeout to measure it (clients with this timeout would report these events as failed).",
            r.config.options.timeout_ms.map_or("record".to_owned(), |ms| format!("{ms} ms")),
        )
    } else if per_conn.is_some_and(|n| n > NOSTR_RS_RELAY_OK_QUEUE) {
        format!(
            "The relay stored these events but sent no OK, late or at all, with up to {} outstanding per connection: some relays drop OK replies beyond a queue depth (nostr-rs-relay beyond ~{NOSTR_RS_RELAY_OK_QUEUE}). Lower --per-conn-in-flight below it and compare.",
            per_conn.unwrap_or(0)
        )
    } else {
        "The relay stored these events but sent no OK, late or at all: clients will retry or report failure. Look at its reply path (a queue that drops replies, a writer that acknowledges before it stores) and its log.".to_owned()
    };
    share_check(
        r,
        stored,
        "events stored without an OK in time",
        format!("; {late} OKs arrived after the timeout"),
        &action,
        65,
    )
}

fn connect_failures(r: &Measured) -> Check {
    let c = &r.connections;
    let share = pct(c.initial_failed, c.initial);
    Check {
        not_evaluated: None,
        fired: c.initial_failed > 0,
        value: c.initial_failed as f64,
        threshold: 1.0,
        unit: "connections",
        evidence: format!(
            "{} of {} connections failed at ramp-up ({}%; fires at ≥ 1){}",
            c.initial_failed,
            c.initial,
            figure(share),
            c.failure_causes
                .first()
                .map_or(String::new(), |f| format!(", most often: {}", f.text))
        ),
        action: "Connection or file-descriptor limits: raise the relay's max connections and `ulimit -n` for both processes, or lower --connect-concurrency.".into(),
        priority: 60,
    }
}

fn disconnects(r: &Measured) -> Check {
    let n = r.errors.disconnects;
    let codes: Vec<String> = r
        .errors
        .close_codes
        .iter()
        .map(|(code, n)| format!("{code}: {n}"))
        .collect();
    Check {
        not_evaluated: None,
        fired: n > 0,
        value: n as f64,
        threshold: 1.0,
        unit: "records",
        evidence: format!(
            "{n} records lost to dropped connections (fires at ≥ 1); close codes {}",
            if codes.is_empty() { "none".to_owned() } else { codes.join(", ") }
        ),
        action: "The relay closed connections under load: check its log for the reason (idle or ping timeouts, per-connection limits, message size) and the close codes above.".into(),
        priority: 55,
    }
}

fn subscription_limits(r: &Measured) -> Check {
    let closed: u64 = r.errors.closed_by_prefix.values().sum();
    let reads = r
        .totals
        .by_type
        .iter()
        .find(|t| t.record_type == "read")
        .map_or(0, |t| t.records);
    let share = pct(closed, reads);
    Check {
        not_evaluated: None,
        fired: share >= SHARE_BOUND_PCT,
        value: share,
        threshold: SHARE_BOUND_PCT,
        unit: "% of reads",
        evidence: format!(
            "{closed} of {reads} REQs answered by CLOSED: {}% (fires at ≥ {SHARE_BOUND_PCT}%)",
            figure(share)
        ),
        action: "Subscription limits refused reads: raise the relay's subscriptions per connection (nostr-rs-relay: fixed at 32; rnostr [limitation] max_subscriptions) or lower the trace's read share per client.".into(),
        priority: 50,
    }
}

/// Reply texts that speak of size.
fn about_size(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "too large",
        "too big",
        "too long",
        "exceeds",
        "max size",
        "size limit",
        "length",
    ]
    .iter()
    .any(|w| m.contains(w))
}

fn oversized(r: &Measured) -> Check {
    let rejects: u64 = r
        .errors
        .top_messages
        .iter()
        .filter(|m| about_size(&m.message))
        .map(|m| m.count)
        .sum();
    let n = rejects + r.errors.oversized_frames;
    Check {
        not_evaluated: None,
        fired: n > 0,
        value: n as f64,
        threshold: 1.0,
        unit: "rejects",
        evidence: format!(
            "{rejects} rejects that mention size, {} oversized relay frames (fires at ≥ 1)",
            r.errors.oversized_frames
        ),
        action: "The relay's message size limit refuses the platform's events: raise it (nostr-rs-relay [limits] max_event_bytes / max_ws_message_bytes; rnostr [limitation] max_message_length) to the largest event the trace holds.".into(),
        priority: 45,
    }
}

fn invalid_rejects(r: &Measured) -> Check {
    share_check(
        r,
        rejected(r, "invalid"),
        "invalid: rejects",
        String::new(),
        "The relay judged the events invalid: most often created_at outside its window (synth --epoch) or a tag limit; the top messages above name the cause.",
        40,
    )
}

fn policy_rejects(r: &Measured) -> Check {
    let n = ["blocked", "restricted", "auth-required", "pow"]
        .iter()
        .map(|p| rejected(r, p))
        .sum();
    share_check(
        r,
        n,
        "blocked / restricted / auth-required / pow rejects",
        String::new(),
        "Relay policy (allow-lists, NIP-42 auth, proof of work) refused the trace's events: configure the test relay to accept them, or the figures measure refusals.",
        40,
    )
}

/// Prefixes other rules speak for.
const COVERED_PREFIXES: [&str; 6] = [
    "rate-limited",
    "invalid",
    "blocked",
    "restricted",
    "auth-required",
    "pow",
];

fn other_rejects(r: &Measured) -> Check {
    let n: u64 = r
        .errors
        .rejected_by_prefix
        .iter()
        .filter(|(p, _)| !COVERED_PREFIXES.contains(&p.as_str()))
        .map(|(_, n)| n)
        .sum();
    let top = r
        .errors
        .top_messages
        .iter()
        .find(|m| {
            m.outcome.starts_with("rejected")
                && !COVERED_PREFIXES
                    .iter()
                    .any(|p| m.outcome.ends_with(&format!("{p}:")))
        })
        .map_or(String::new(), |m| {
            format!("; most often {:?} ({} times)", m.message, m.count)
        });
    share_check(
        r,
        n,
        "events refused with OK false for other reasons",
        top,
        "The relay refused events the platform publishes: read the top messages and their example ids (lt analyze --trace) — a relay bug (e.g. rnostr 0.4.8 reads an addressable event's d tag only from its first tag, so it refuses 30078 posts as \"replaced\"), a storage error, or a policy to relax for the test.",
        68,
    )
}

fn rss_growth(r: &Measured) -> Check {
    let (growth, slope) = r
        .resources
        .relay
        .as_ref()
        .map_or((0.0, 0.0), |x| (x.rss_growth_mb, x.rss_slope_mb_per_min));
    let long_enough = r.config.duration_s >= RSS_MIN_RUN_S;
    let not_evaluated = if r.resources.relay.is_none() {
        Some(model::relay_not_sampled(r).to_owned())
    } else if !long_enough {
        Some(format!(
            "the run lasted {} s; a memory trend needs at least {RSS_MIN_RUN_S} s",
            figure(r.config.duration_s)
        ))
    } else {
        None
    };
    Check {
        not_evaluated,
        fired: long_enough && growth >= RSS_GROWTH_BOUND_MB && slope >= RSS_SLOPE_BOUND_MB_PER_MIN,
        value: slope,
        threshold: RSS_SLOPE_BOUND_MB_PER_MIN,
        unit: "MB/min",
        evidence: format!(
            "relay RSS grew {} MB, trend {} MB/min over {} s (fires at ≥ {RSS_GROWTH_BOUND_MB} MB and ≥ {RSS_SLOPE_BOUND_MB_PER_MIN} MB/min on runs ≥ {RSS_MIN_RUN_S} s)",
            figure(growth),
            figure(slope),
            figure(r.config.duration_s)
        ),
        action: "Memory grows steadily with traffic: a possible leak or an unbounded cache or queue. Run longer at the same rate to see whether it levels off; take a heap profile.".into(),
        priority: 35,
    }
}

fn duplicates(r: &Measured) -> Check {
    share_check(
        r,
        r.errors.duplicates,
        "duplicate: replies",
        String::new(),
        "The relay already had these events: its data directory was not fresh. Start each run from an empty database, or the figures measure duplicate checks, not writes.",
        30,
    )
}

/// Fired rules by priority, at most ten. With fewer than three, the rules nearest to firing
/// follow as headroom notes, each with its figure and threshold; with none, the first item
/// says no bottleneck was observed and which rate to try next.
pub fn remediation(checks: &[RuleCheck], r: &Measured) -> Vec<Remediation> {
    let mut fired: Vec<&RuleCheck> = checks.iter().filter(|c| c.fired).collect();
    fired.sort_by_key(|c| std::cmp::Reverse(c.priority));
    let mut items: Vec<Remediation> = fired
        .iter()
        .take(10)
        .map(|c| Remediation {
            rank: 0,
            rule: c.id.clone(),
            fired: true,
            evidence: c.evidence.clone(),
            action: c.action.clone(),
        })
        .collect();
    if !r.config.partial.is_empty() {
        // First, and never an all-clear: the rules saw only part of the run.
        items.insert(
            0,
            Remediation {
                rank: 0,
                rule: "partial".into(),
                fired: true,
                evidence: partial_reasons(r).join("; "),
                action: "These results are partial: the rules judged only the part of the run the file kept. Replay again to the end (one Ctrl-C stops cleanly and keeps a complete file) before acting on them.".into(),
            },
        );
    }
    if items.is_empty() {
        items.push(no_rule_fired(checks, r));
    }
    if items.len() < 3 {
        let room = 3 - items.len();
        items.extend(headroom(checks, room));
    }
    for (i, item) in items.iter_mut().enumerate() {
        item.rank = i as u32 + 1;
    }
    items
}

/// What to say when no rule fired: that some rules could not be judged (never a false
/// all-clear), else that no bottleneck was observed and which rate to try next.
fn no_rule_fired(checks: &[RuleCheck], r: &Measured) -> Remediation {
    let unjudged: Vec<&RuleCheck> = checks
        .iter()
        .filter(|c| c.not_evaluated.is_some())
        .collect();
    if !unjudged.is_empty() {
        // Not an all-clear: a false one is the worst thing lt can say.
        return Remediation {
            rank: 0,
            rule: "not_evaluated".into(),
            fired: false,
            evidence: unjudged
                .iter()
                .map(|c| format!("{}: {}", c.id, c.not_evaluated.as_deref().unwrap_or("")))
                .collect::<Vec<_>>()
                .join("; "),
            action: format!(
                "No rule fired, but {} of {} rules could not be judged on this run, so this is no all-clear: fix what their evidence names and run again.",
                unjudged.len(),
                checks.len()
            ),
        };
    }
    let speed = r.config.options.speed.unwrap_or(Speed::Scaled(1.0));
    Remediation {
        rank: 0,
        rule: "none".into(),
        fired: false,
        evidence: format!(
            "no rule fired: success rate {}%, response p99 {} ms, {} succeeded/s",
            figure(r.totals.success_rate_pct),
            r.latency
                .overall
                .response_ms
                .as_ref()
                .map_or("n/a".to_owned(), |p| figure(p.p99)),
            figure(r.throughput.ok_per_s)
        ),
        action: match speed {
            // Twice "as fast as it goes" is no advice.
            Speed::Max => "No bottleneck observed at this load. At --speed max lt sent as fast as its in-flight caps allowed: raise --max-in-flight and --per-conn-in-flight to push harder.".into(),
            Speed::Scaled(x) => format!(
                "No bottleneck observed at this load. Next rate worth trying: twice this one (--speed {}x).",
                x * 2.0
            ),
        },
    }
}

/// Up to `room` rules that did not fire, nearest to their threshold first: real headroom.
/// A rule with two conditions can be past one and still not fire; those come after, said
/// as such.
fn headroom(checks: &[RuleCheck], room: usize) -> Vec<Remediation> {
    let ratio = |c: &RuleCheck| c.value / c.threshold;
    let mut near: Vec<&RuleCheck> = checks
        .iter()
        .filter(|c| !c.fired && c.not_evaluated.is_none() && c.threshold > 0.0)
        .collect();
    near.sort_by(|a, b| {
        (ratio(a) >= 1.0)
            .cmp(&(ratio(b) >= 1.0))
            .then(ratio(b).total_cmp(&ratio(a)))
            .then(b.priority.cmp(&a.priority))
    });
    near.into_iter().take(room).map(|c| {
        let action = if ratio(c) < 1.0 {
            format!(
                "Headroom: {} {} against a threshold of {} {}; nothing to change here.",
                c.value, c.unit, c.threshold, c.unit
            )
        } else {
            format!(
                "Not triggered: {} {} reaches the threshold of {} {}, but the rule's other condition does not hold (see the evidence).",
                c.value, c.unit, c.threshold, c.unit
            )
        };
        Remediation {
            rank: 0,
            rule: c.id.clone(),
            fired: false,
            evidence: c.evidence.clone(),
            action,
        }
    }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_rule_is_one_entry_with_a_title_and_labels_of_its_own() {
        let mut ids: Vec<&str> = RULES.iter().map(|r| r.id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), RULES.len(), "a rule id twice");
        for rule in &RULES {
            assert!(
                !rule.title.is_empty() && rule.title != rule.id,
                "{}",
                rule.id
            );
            assert!(!rule.labels.is_empty(), "{}", rule.id);
            assert!(std::ptr::eq(rule_named(rule.id).unwrap(), rule));
        }
        assert_eq!(rule_named("slow_fanout").unwrap().labels, ["performance"]);
        assert_eq!(rule_named("harness_bottleneck").unwrap().about, About::Lt);
        assert!(rule_named("partial").is_none());
    }
}
