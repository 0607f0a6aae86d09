//! The SLO a capacity step is judged by: an AND of `--check` expressions, plus what is
//! always included — lt kept its schedule (the trust verdict), lt sent what was scheduled,
//! the connections opened, and lt's own in-flight cap could carry the rate. A step that
//! fails one of those is [`Verdict::LtLimited`]: neither a pass nor the relay's failure.

use serde::{Deserialize, Serialize};

use super::search::{Outcome, Verdict};
use crate::analyze::checks::{self, Expr};
use crate::analyze::report::Report;

/// The SLO when no `--slo` is given. p99 under 200 ms leaves room for rnostr's 100 ms
/// batch commits (its OKs take 0–100 ms at any load); 99.9% success allows one failure in
/// a thousand.
pub const DEFAULT_SLO: [&str; 2] = ["response.p99 < 200ms", "success >= 99.9%"];

/// A figure within this share of its bound is borderline: its step is tried again.
pub const BORDERLINE: f64 = 0.10;

/// At least this share of the step's scheduled records must have been sent.
pub const SENT_SHARE_MIN: f64 = 0.99;

/// The SLO: its terms, as `--check` parses them.
#[derive(Debug, Clone)]
pub struct Slo {
    pub terms: Vec<Expr>,
}

impl Slo {
    /// `given`, or [`DEFAULT_SLO`] when none.
    pub fn new(given: Vec<Expr>) -> Slo {
        let terms = if given.is_empty() {
            DEFAULT_SLO
                .iter()
                .map(|t| t.parse().expect("the default SLO parses"))
                .collect()
        } else {
            given
        };
        Slo { terms }
    }

    /// The terms as written, for the report and the first line of output.
    pub fn texts(&self) -> Vec<String> {
        self.terms.iter().map(ToString::to_string).collect()
    }
}

/// What every step must show besides the SLO to count as the relay's result, in words.
pub fn always() -> Vec<String> {
    vec![
        format!(
            "the step is trustworthy: lt kept its schedule (its own schedule lag p99 ≤ {} ms, its CPU p95 below {}% of the cores, nothing dropped)",
            crate::analyze::trust::LAG_P99_BOUND_MS,
            crate::analyze::trust::HARNESS_CPU_BOUND_PCT
        ),
        format!(
            "lt sent at least {}% of the records scheduled",
            100.0 * SENT_SHARE_MIN
        ),
        "every connection opened".to_owned(),
        "a failing step's rate × the SLO's latency bound fits in --max-in-flight (Little's law): otherwise lt's cap, not the relay, was the queue".to_owned(),
    ]
}

/// One SLO term on one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Term {
    /// The term as written.
    pub expression: String,
    /// The figure, in `unit`; null when the step did not measure it (the term fails).
    pub observed: Option<f64>,
    /// The bound, in `unit`.
    pub bound: f64,
    pub unit: String,
    pub passed: bool,
}

/// A step as the SLO sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Judged {
    pub verdict: Verdict,
    /// A figure within [`BORDERLINE`] of its bound.
    pub borderline: bool,
    pub terms: Vec<Term>,
    /// The trust verdict of the step's report.
    pub trusted: bool,
    /// Why lt (not the relay) was the limit, when it was.
    pub lt_limit: Option<String>,
    /// The first SLO term that failed, when the relay's result is a failure.
    pub failed_term: Option<String>,
}

impl Judged {
    pub fn outcome(&self) -> Outcome {
        Outcome {
            verdict: self.verdict,
            borderline: self.borderline,
        }
    }
}

/// Judges a step's `report` at `rate` events per second under `slo`, with lt's global
/// in-flight cap `max_in_flight`. An unknown metric in a term is an error.
pub fn judge(
    slo: &Slo,
    report: &Report,
    rate: f64,
    max_in_flight: usize,
) -> Result<Judged, String> {
    let json = serde_json::to_value(report).map_err(|e| e.to_string())?;
    let terms: Vec<Term> = checks::evaluate_each(&slo.terms, &json)?
        .into_iter()
        .map(|(r, bound)| Term {
            expression: r.expression,
            observed: r.observed,
            bound,
            unit: r.unit,
            passed: r.passed,
        })
        .collect();
    let passed = terms.iter().all(|t| t.passed);
    let borderline = terms.iter().any(near_bound);
    let lt_limit = lt_limit(report, &terms, rate, max_in_flight, passed);
    let verdict = match (&lt_limit, passed) {
        (Some(_), _) => Verdict::LtLimited,
        (None, true) => Verdict::Pass,
        (None, false) => Verdict::Fail,
    };
    let failed_term = (verdict == Verdict::Fail)
        .then(|| terms.iter().find(|t| !t.passed))
        .flatten()
        .map(|t| t.expression.clone());
    Ok(Judged {
        verdict,
        borderline,
        terms,
        trusted: report.trust.trustworthy,
        lt_limit,
        failed_term,
    })
}

/// Whether a term's figure came within [`BORDERLINE`] of its bound (either side). A
/// percentage bound near 100% is compared by what it leaves out: 99.85% against 99.9% is
/// 0.15% of failures against 0.1%, far apart.
fn near_bound(t: &Term) -> bool {
    let Some(observed) = t.observed else {
        return false;
    };
    let (x, bound) = if t.unit == "%" && t.bound > 50.0 {
        (100.0 - observed, 100.0 - t.bound)
    } else {
        (observed, t.bound)
    };
    if bound == 0.0 {
        return false;
    }
    ((x - bound) / bound).abs() < BORDERLINE
}

/// Why the step measured lt rather than the relay, if it did.
fn lt_limit(
    report: &Report,
    terms: &[Term],
    rate: f64,
    max_in_flight: usize,
    passed: bool,
) -> Option<String> {
    let m = &report.measured;
    if !report.trust.trustworthy {
        return Some(format!(
            "lt did not keep its schedule: {}",
            report.trust.reasons.join("; ")
        ));
    }
    if m.connections.initial_failed > 0 {
        return Some(format!(
            "the connection setup was the limit: {} of {} connections failed to open",
            m.connections.initial_failed, m.connections.initial
        ));
    }
    let scheduled = m.totals.attempted + m.totals.not_sent + m.totals.dropped;
    let sent_share = m.totals.attempted as f64 / scheduled.max(1) as f64;
    if sent_share < SENT_SHARE_MIN {
        return Some(format!(
            "lt sent {:.1}% of the records scheduled (not sent {}, dropped {}), below {:.0}%",
            100.0 * sent_share,
            m.totals.not_sent,
            m.totals.dropped,
            100.0 * SENT_SHARE_MIN
        ));
    }
    // Little's law: a relay answering at the SLO's latency bound keeps rate × bound records
    // in flight. A cap below that makes lt, not the relay, the queue a failing step measured.
    let latency_bound_s = terms
        .iter()
        .filter(|t| t.unit == "ms")
        .map(|t| t.bound / 1000.0)
        .reduce(f64::max);
    if let (false, Some(bound)) = (passed, latency_bound_s) {
        let needed = rate * bound;
        if (max_in_flight as f64) < needed {
            return Some(format!(
                "lt's in-flight cap was the limit: --max-in-flight {max_in_flight} is below the {needed:.0} records a relay answering within {:.0} ms keeps in flight at {rate:.0} events/s",
                bound * 1000.0
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn term(unit: &str, observed: f64, bound: f64) -> Term {
        Term {
            expression: String::new(),
            observed: Some(observed),
            bound,
            unit: unit.into(),
            passed: true,
        }
    }

    #[test]
    fn borderline_is_near_the_bound_on_either_side() {
        assert!(near_bound(&term("ms", 190.0, 200.0)));
        assert!(near_bound(&term("ms", 215.0, 200.0)));
        assert!(!near_bound(&term("ms", 120.0, 200.0)));
        assert!(!near_bound(&term("ms", 400.0, 200.0)));
        // 99.95% success against 99.9%: half the failures allowed, not borderline.
        assert!(!near_bound(&term("%", 99.95, 99.9)));
        assert!(near_bound(&term("%", 99.895, 99.9)));
        assert!(!near_bound(&Term {
            observed: None,
            ..term("ms", 0.0, 200.0)
        }));
    }

    #[test]
    fn the_default_slo_parses() {
        assert_eq!(Slo::new(Vec::new()).texts(), DEFAULT_SLO.to_vec());
    }
}
