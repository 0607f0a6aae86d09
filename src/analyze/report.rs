//! The analysis report: what `lt analyze` writes as JSON (schema in
//! `docs/report.schema.json`, generated from these types). A report is what was measured
//! ([`Measured`]) with the verdicts on it ([`Verdicts`]), each computed once.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::checks::{self, CheckResult, Expr};
use super::judge::{self, Verdicts};
use super::measure;
use super::model::Measured;
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
    /// The gate's checks (`lt analyze --check`), each with its figure and whether it
    /// passed; absent when none were asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckResult>,
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

/// Measures and judges `runs` (see [`measure::measure`]): the one way a report is made, by
/// the CLI and the library alike, so both get one trust verdict. Its `charts` are named
/// when it is written (`analyze::write_report`).
pub fn build(runs: &Runs, ids: &Ids, profiles: &[Profile]) -> Report {
    let measured = measure::measure(runs, ids, profiles);
    let Verdicts {
        trust,
        rules,
        remediation,
    } = judge::judge(&measured);
    Report {
        report_version: REPORT_VERSION,
        generated_by: format!("lt {}", env!("CARGO_PKG_VERSION")),
        generated_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        trust,
        checks: Vec::new(),
        measured,
        rules,
        remediation,
        charts: Vec::new(),
    }
}

impl Report {
    /// Evaluates `gate` against this report (see [`checks::evaluate`]) and keeps the results.
    pub fn check(&mut self, gate: &[Expr], allow_untrusted: bool) -> Result<(), String> {
        if gate.is_empty() {
            return Ok(());
        }
        let json = serde_json::to_value(&*self).map_err(|e| e.to_string())?;
        self.checks = checks::evaluate(gate, &json, allow_untrusted)?;
        Ok(())
    }

    /// Whether every check passed (true when there were none).
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }

    /// "3 of 4 passed": the checks in words, for every place that says so.
    pub fn checks_line(&self) -> String {
        let passed = self.checks.iter().filter(|c| c.passed).count();
        format!("{passed} of {} passed", self.checks.len())
    }
}
