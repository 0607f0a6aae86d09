//! The capacity report: what a search found, every step it took, and how it was asked
//! (`docs/capacity.schema.json`; `docs/capacity.md` reads it).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::search::{Bounds, Ending, Phase};
use super::slo::Judged;

/// Version of the capacity report's layout.
pub const CAPACITY_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct CapacityReport {
    pub capacity_version: u32,
    pub generated_by: String,
    pub generated_at: String,
    /// The relay searched: its URL's host and port, or the build's name.
    pub relay: String,
    /// Whether each step had a relay of its own (`--spec`) or all shared one (`--relay`).
    pub fresh_relay_per_step: bool,
    /// The workload, and what shaped it.
    pub workload: String,
    /// The SLO's terms as given (or the defaults), all of which a step must meet.
    pub slo: Vec<String>,
    /// What every step must also show to count as the relay's result.
    pub always: Vec<String>,
    pub settings: Settings,
    /// Why the search ended.
    pub ending: Ending,
    /// The search ended before its answer (deadline, Ctrl-C, a step that could not run, the
    /// trace exhausted): the bounds are those so far.
    pub partial: bool,
    /// The highest rate that passed below the upper bound, events per second: the relay's
    /// capacity under the SLO (null when nothing passed).
    pub capacity_eps: Option<f64>,
    /// The lowest rate that failed, or that lt could not offer (null when none did).
    pub upper_eps: Option<f64>,
    /// The upper bound is lt's limit, not the relay's: the relay sustains at least
    /// `capacity_eps`; how much more is not known.
    pub upper_is_lt: bool,
    /// EVENT frames the relay accepted per second in the best passing step at the capacity
    /// (the achieved rate, not the offered one).
    pub achieved_eps: Option<f64>,
    /// The SLO term that failed in the step at the upper bound.
    pub failed_first: Option<String>,
    /// Why lt was the limit at the upper bound, when it was.
    pub lt_limit: Option<String>,
    /// Steps where a lower rate failed after a higher one passed; resolved toward the
    /// lower rate.
    pub inversions: u32,
    pub steps: Vec<Step>,
    /// Wall time of the whole search, seconds.
    pub elapsed_s: f64,
    /// The answer in one sentence (the last line lt prints).
    pub sentence: String,
    /// Charts beside the report (file names).
    pub charts: Vec<String>,
}

/// How the search was asked to run.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Settings {
    pub start_eps: f64,
    pub factor: f64,
    pub precision: f64,
    pub max_rate_eps: Option<f64>,
    pub step_s: f64,
    pub warmup_s: f64,
    pub confirm_s: f64,
    pub cooldown_s: f64,
    pub deadline_s: Option<f64>,
}

/// One step: the rate offered, what came back, and the verdict.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Step {
    pub number: u32,
    pub phase: Phase,
    /// The rate asked for, events per second.
    pub offered_eps: f64,
    /// EVENT frames in the step's trace, and their rate over the step (Poisson arrivals
    /// make it differ a little from the rate asked for).
    pub scheduled_events: u64,
    pub scheduled_eps: f64,
    /// EVENT frames the relay accepted (OK true, in time) per second of the step.
    pub achieved_eps: f64,
    pub response_p50_ms: Option<f64>,
    pub response_p99_ms: Option<f64>,
    pub duration_s: f64,
    /// Events accepted by this relay in earlier steps: how much its database has grown
    /// (0 for a fresh relay).
    pub stored_before: u64,
    /// The relay's data directory after the step, bytes (fresh relays only).
    pub data_bytes: Option<u64>,
    /// The SLO's verdict: terms, trust, lt's limit. Null for a step that did not complete.
    pub judged: Option<Judged>,
    /// Why the step did not complete, when it did not.
    pub error: Option<String>,
    /// The step's results file and report (paths relative to the search's folder).
    pub results: String,
    pub report: Option<String>,
}

impl CapacityReport {
    /// Fills the search's answer from its bounds and steps.
    pub fn conclude(&mut self, bounds: Bounds, ending: Ending) {
        self.ending = ending;
        self.partial = matches!(
            ending,
            Ending::Deadline | Ending::Interrupted | Ending::TraceExhausted
        );
        self.capacity_eps = bounds.lower;
        self.upper_eps = bounds.upper;
        self.upper_is_lt = bounds.upper_is_lt;
        let at = |rate: Option<f64>| {
            move |s: &&Step| Some(s.offered_eps) == rate && s.phase != Phase::Warmup
        };
        self.achieved_eps = self
            .steps
            .iter()
            .filter(at(bounds.lower))
            .filter(|s| {
                s.judged
                    .as_ref()
                    .is_some_and(|j| j.verdict == super::search::Verdict::Pass)
            })
            .map(|s| s.achieved_eps)
            .reduce(f64::max);
        let upper_step = self
            .steps
            .iter()
            .filter(at(bounds.upper))
            .filter_map(|s| s.judged.as_ref())
            .find(|j| j.verdict != super::search::Verdict::Pass);
        self.failed_first = upper_step.and_then(|j| j.failed_term.clone());
        self.lt_limit = upper_step.and_then(|j| j.lt_limit.clone());
        self.sentence = sentence(self);
    }
}

/// The answer in one sentence.
pub fn sentence(r: &CapacityReport) -> String {
    let rate = |x: f64| format!("{} events/s", crate::units::count(x.round() as u64));
    let partial = if r.partial {
        format!(" (partial: {})", ending_words(r.ending))
    } else {
        String::new()
    };
    match (r.capacity_eps, r.upper_eps) {
        (None, None) => format!("No step of the search completed{partial}."),
        (None, Some(u)) => format!(
            "{} sustained none of the rates tried under the SLO: even {} failed ({}){partial}.",
            r.relay,
            rate(u),
            r.failed_first
                .as_deref()
                .or(r.lt_limit.as_deref())
                .unwrap_or("see the steps")
        ),
        (Some(l), None) => format!(
            "{} sustains at least {} under the SLO ({}){partial}.",
            r.relay,
            rate(l),
            ending_words(r.ending)
        ),
        (Some(l), Some(u)) if r.upper_is_lt => format!(
            "{} sustains at least {} under the SLO; lt could not offer {} on this machine, so its capacity above that is not known{partial}.",
            r.relay,
            rate(l),
            rate(u)
        ),
        (Some(l), Some(u)) => format!(
            "{} sustains {} under the SLO (bounds {}–{}; above it {} failed first){partial}.",
            r.relay,
            rate(l),
            rate(l),
            rate(u),
            r.failed_first.as_deref().unwrap_or("a term")
        ),
    }
}

pub fn ending_words(e: Ending) -> &'static str {
    match e {
        Ending::Found => "bounds within the precision, confirmed",
        Ending::LtLimit => "lt was the limit",
        Ending::MaxRate => "the highest rate allowed, --max-rate, passed",
        Ending::NothingPassed => "nothing passed down to the lowest rate",
        Ending::Deadline => "the deadline came first",
        Ending::Interrupted => "interrupted",
        Ending::TraceExhausted => "the trace had no records left for another step",
    }
}
