//! `lt ab --aa`: how often a comparison of a build with itself calls a difference on this
//! machine. Counted twice: over the real A/A sessions that were run, and over many more
//! sessions resampled from all their runs (each session's runs drawn without replacement),
//! which gives a finer rate from the same runs if the runs are alike.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::compare::{self, Comparison, Verdict};
use super::thresholds::{self, Thresholds};
use super::verdict::{self, SessionRates, FAMILY_ALPHA};

/// Resampled sessions: enough that the rate's own noise (±1% at 5%) is below what it checks.
pub const RESAMPLED_SESSIONS: u32 = 2000;
/// Seed of the resampling, fixed so a calibration report is reproducible.
const SEED: u64 = 0x6c74_6161;

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Calibration {
    pub generated_by: String,
    pub build: String,
    pub runs_per_side: u32,
    /// The family-wise error budget the rule promises to keep.
    pub family_alpha: f64,
    /// Each real session: its folder and the metrics it called better or worse.
    pub sessions: Vec<SessionOutcome>,
    /// Real sessions with at least one better/worse verdict.
    pub false_sessions: u32,
    /// Sessions resampled from every run of every session; `None` when there are fewer
    /// runs than two sides need.
    pub resampled: Option<Resampled>,
    /// What this says, in one sentence.
    pub verdict_line: String,
    /// The metrics of `figures`' columns.
    pub metrics: Vec<String>,
    /// Every completed run's figure for each metric (`null` where a run lacks one): the
    /// measured run-to-run noise, to simulate other rules or run counts with.
    pub figures: Vec<Vec<Option<f64>>>,
    /// Records each run attempted (thresholds set as a share of them).
    pub attempted: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SessionOutcome {
    pub folder: String,
    /// The comparison's overall verdict, or `failed` when the session made none.
    pub overall: String,
    /// Why a failed session made no comparison.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `metric: verdict` for each metric that was not inconclusive.
    pub false_verdicts: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Resampled {
    pub runs_pooled: u32,
    pub sessions: u32,
    pub false_sessions: u32,
    pub rate: f64,
    /// Metric ids and how many resampled sessions called them.
    pub per_metric: Vec<(String, u32)>,
}

/// A session that made no comparison; it counts neither way.
pub fn failed(folder: &str, error: &str) -> SessionOutcome {
    SessionOutcome {
        folder: folder.into(),
        overall: "failed".into(),
        error: Some(error.into()),
        false_verdicts: Vec::new(),
    }
}

/// One real session's comparison.
pub fn outcome(folder: &str, c: &Comparison) -> SessionOutcome {
    SessionOutcome {
        folder: folder.into(),
        overall: c.overall.clone(),
        error: None,
        false_verdicts: c
            .metrics
            .iter()
            .filter(|m| m.verdict != Verdict::Inconclusive)
            .map(|m| format!("{}: {}", m.id, m.verdict.as_str()))
            .collect(),
    }
}

/// The calibration of `build` from its real sessions and the figures of all their runs
/// (`compare::figures`, both sides pooled: they are the same build).
pub fn calibrate(
    build: &str,
    runs_per_side: u32,
    sessions: Vec<SessionOutcome>,
    pool: &[Vec<Option<f64>>],
    attempted: f64,
    thresholds: &Thresholds,
) -> Calibration {
    let rule = |a: &[Vec<f64>], b: &[Vec<f64>]| compare::verdicts(thresholds, attempted, a, b);
    let resampled =
        verdict::resample_sessions(pool, runs_per_side as usize, RESAMPLED_SESSIONS, SEED, rule)
            .map(|r: SessionRates| Resampled {
                runs_pooled: pool.len() as u32,
                sessions: r.sessions,
                false_sessions: r.sessions_with_a_verdict,
                rate: super::stats::round3(r.rate()),
                per_metric: thresholds::METRICS
                    .iter()
                    .zip(&r.per_metric)
                    .filter(|(_, n)| **n > 0)
                    .map(|(m, n)| (m.id.to_owned(), *n))
                    .collect(),
            });
    let false_sessions = sessions
        .iter()
        .filter(|s| !s.false_verdicts.is_empty())
        .count() as u32;
    let compared = sessions.iter().filter(|s| s.error.is_none()).count();
    let real = format!(
        "{false_sessions} of {compared} A/A session(s) called a difference that is not there"
    );
    let verdict_line = match &resampled {
        Some(r) if r.rate > over_budget(r.sessions) => format!(
            "{real}; resampled from {} runs, {:.1}% of sessions did, over the {}% the rule allows: this machine's runs are noisier than the rule assumes (run-to-run drift, a busy machine): keep it idle, or use longer traces and more runs.",
            r.runs_pooled,
            r.rate * 100.0,
            FAMILY_ALPHA * 100.0
        ),
        Some(r) => format!(
            "{real}; resampled from {} runs, {:.1}% of sessions did (the rule allows {}%): comparisons on this machine can be trusted at these settings.",
            r.runs_pooled,
            r.rate * 100.0,
            FAMILY_ALPHA * 100.0
        ),
        None => format!("{real}; too few runs to resample."),
    };
    Calibration {
        generated_by: format!("lt {}", env!("CARGO_PKG_VERSION")),
        build: build.into(),
        runs_per_side,
        family_alpha: FAMILY_ALPHA,
        sessions,
        false_sessions,
        resampled,
        verdict_line,
        metrics: thresholds::METRICS
            .iter()
            .map(|m| m.id.to_owned())
            .collect(),
        figures: pool.to_vec(),
        attempted,
    }
}

/// A resampled rate above this is over the budget beyond the rate's own noise: the budget
/// plus two standard errors of a proportion over `sessions` (5% + 1.0% at 2,000).
fn over_budget(sessions: u32) -> f64 {
    let n = f64::from(sessions.max(1));
    FAMILY_ALPHA + 2.0 * (FAMILY_ALPHA * (1.0 - FAMILY_ALPHA) / n).sqrt()
}
