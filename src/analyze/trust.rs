//! The trust verdict: whether the figures measure the relay, or lt itself got in the way
//! (lag, its own CPU, dropped records) or the results are not whole. One verdict, computed
//! here, for `lt analyze` and the replay summary alike.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::model::Measured;
use super::stats::figure;

/// Schedule lag p99 above this: lt could not keep the schedule (ms).
pub const LAG_P99_BOUND_MS: f64 = 5.0;
/// lt's CPU above this share of all cores: lt was saturated (percent).
pub const HARNESS_CPU_BOUND_PCT: f64 = 90.0;

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Trust {
    /// False when lt itself was a bottleneck: the figures then understate the relay.
    pub trustworthy: bool,
    /// One line for the top of the report.
    pub verdict: String,
    /// Each reason, with its figure and bound.
    pub reasons: Vec<String>,
}

/// The one trust verdict, for `lt analyze` and the replay summary alike: whether lt itself
/// got in the way (lag, its own CPU, dropped records) and whether the results are whole.
pub fn trust(r: &Measured) -> Trust {
    let (mut reasons, held_note) = harness_reasons(r);
    // A shard whose lt fell behind makes the run's figures understate the relay, even when
    // the merged figures hide it.
    reasons.extend(r.config.untrusted_shards.iter().cloned());
    let harness_bound = !reasons.is_empty();
    let partial = partial_reasons(r);
    reasons.extend(partial.iter().cloned());
    let trustworthy = reasons.is_empty();
    let mut verdict = match (harness_bound, partial.is_empty()) {
        (false, true) => "Trustworthy: lt kept the schedule; the figures measure the relay.",
        (true, true) => {
            "NOT TRUSTWORTHY: lt itself was a bottleneck, so these figures understate the relay."
        }
        (false, false) => {
            "NOT TRUSTWORTHY: these results are partial (read with --partial), so every figure covers only part of the run."
        }
        (true, false) => {
            "NOT TRUSTWORTHY: these results are partial (read with --partial), and lt itself was a bottleneck."
        }
    }
    .to_owned();
    if let Some(note) = held_note {
        verdict.push_str(&note);
    }
    if r.config.interrupted {
        verdict.push_str(" The run was interrupted: records not sent are excluded.");
    }
    Trust {
        trustworthy,
        verdict,
        reasons,
    }
}

/// One reason per partial file: where it ends and how much of the run it covers.
pub(super) fn partial_reasons(r: &Measured) -> Vec<String> {
    r.config
        .partial
        .iter()
        .map(|p| {
            format!(
                "{} is partial ({}): {} of the trace's {} records have an outcome, over the first {} s; NOTICEs, bad frames and late OKs are unknown",
                p.file,
                p.reason,
                p.outcome_rows,
                p.trace_records,
                figure(p.covered_s)
            )
        })
        .collect()
}

/// What lt itself did to the figures (each a reason the run is not trustworthy), and a
/// note when the relay held lt back (a finding about the relay, not a reason).
pub(super) fn harness_reasons(r: &Measured) -> (Vec<String>, Option<String>) {
    let mut reasons = Vec::new();
    let cores = f64::from(r.config.machine.cores.max(1));
    // Said in the verdict, not a reason: the relay holding lt back is a finding about the
    // relay, which response times (measured from the intended time) already include.
    let mut held_note = None;
    if let Some(lag) = &r.latency.overall.schedule_lag_ms {
        if lag.p99 > LAG_P99_BOUND_MS {
            let own = r.latency.own_lag_ms.as_ref().map_or(lag.p99, |p| p.p99);
            let held = &r.latency.relay_held;
            let held_p99 = held.held_ms.as_ref().map_or(0.0, |p| p.p99);
            if own > LAG_P99_BOUND_MS {
                let lt_busy = r
                    .resources
                    .harness_cpu_pct
                    .as_ref()
                    .is_some_and(|c| c.p95 / cores >= HARNESS_CPU_BOUND_PCT);
                let cause = if lt_busy {
                    "lt ran out of CPU"
                } else {
                    "lt's CPU was not saturated, so its threads waited for a core: the machine was shared (with the relay) or its host was busy"
                };
                reasons.push(format!(
                    "schedule lag p99 {} ms > {LAG_P99_BOUND_MS} ms, lt's own part p99 {} ms: lt sent late; {cause}",
                    figure(lag.p99),
                    figure(own)
                ));
            } else {
                held_note = Some(format!(
                    " Schedule lag p99 was {} ms, but lt's own part only {} ms: the relay held lt back ({}% of records waited, p99 {} ms, for its full socket or an in-flight cap); response times include that wait.",
                    figure(lag.p99),
                    figure(own),
                    figure(held.share_pct),
                    figure(held_p99)
                ));
            }
        }
    }
    if let Some(cpu) = &r.resources.harness_cpu_pct {
        let share = cpu.p95 / cores;
        if share >= HARNESS_CPU_BOUND_PCT {
            reasons.push(format!(
                "lt CPU p95 {}% of all cores ≥ {HARNESS_CPU_BOUND_PCT}%: lt was saturated",
                figure(share)
            ));
        }
    }
    if r.totals.dropped > 0 {
        reasons.push(format!(
            "{} records dropped at lt's in-flight cap (--on-overload drop)",
            r.totals.dropped
        ));
    }
    (reasons, held_note)
}
