//! The analysis report: what `lt analyze` writes as JSON (schema in
//! `docs/report.schema.json`, generated from these types). A report is what was measured
//! ([`Measured`]) with the verdicts on it ([`Verdicts`]), each computed once.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::judge::{self, Verdicts};
use super::measure::{self, Measured};
use super::read::{Ids, Runs};
use super::rules::{Remediation, RuleCheck};
use super::trust::Trust;
use crate::profile::Profile;

/// Version of this report layout.
pub const REPORT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Report {
    pub report_version: u32,
    /// lt that wrote this report.
    pub generated_by: String,
    pub generated_at: String,
    /// Whether the figures measure the relay, or lt got in the way. Read this first.
    pub trust: Trust,
    /// Every figure, as measured.
    #[serde(flatten)]
    pub measured: Measured,
    /// Every remediation rule, with the figure it looked at and whether it fired.
    pub rules: Vec<RuleCheck>,
    /// What to do, most important first: 3 to 10 items.
    pub remediation: Vec<Remediation>,
    /// Chart files written beside the report (relative paths).
    pub charts: Vec<String>,
}

impl Report {
    /// The report of `measured` with `verdicts` on it; `charts` are the chart files written
    /// beside it (none when the report is not written).
    pub fn new(measured: Measured, verdicts: Verdicts, charts: Vec<String>) -> Report {
        let Verdicts {
            trust,
            rules,
            remediation,
        } = verdicts;
        Report {
            report_version: REPORT_VERSION,
            generated_by: format!("lt {}", env!("CARGO_PKG_VERSION")),
            generated_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            trust,
            measured,
            rules,
            remediation,
            charts,
        }
    }
}

/// Measures and judges `runs` (see [`measure::measure`]): the report, without charts.
pub fn build(runs: &Runs, ids: &Ids, profiles: &[Profile]) -> Report {
    let measured = measure::measure(runs, ids, profiles);
    let verdicts = judge::judge(&measured);
    Report::new(measured, verdicts, Vec::new())
}
