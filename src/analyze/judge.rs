//! Verdicts on what was measured: the trust verdict, every rule checked, and the ranked
//! remediation that follows from them. Pure: figures in, verdicts out.

use super::model::Measured;
use super::rules::{self, Remediation, RuleCheck};
use super::trust::{self, Trust};

/// Everything a report concludes from its figures.
pub struct Verdicts {
    pub trust: Trust,
    pub rules: Vec<RuleCheck>,
    pub remediation: Vec<Remediation>,
}

pub fn judge(m: &Measured) -> Verdicts {
    let trust = trust::trust(m);
    let rules = rules::check(m);
    let remediation = rules::remediation(&rules, m);
    Verdicts {
        trust,
        rules,
        remediation,
    }
}
