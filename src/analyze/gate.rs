//! A comparison as a release gate (`lt ab … --fail-on worse`, `--fail-on
//! response_p99,success_rate`): which verdicts fail it, and what the comparison says about
//! the gate.

use super::compare::{Comparison, Gate, Verdict};
use super::thresholds;

/// What fails the gate.
#[derive(Debug, Clone, PartialEq)]
pub enum FailOn {
    /// B is worse on any metric: the overall verdict is `worse`, or `mixed` (worse on some,
    /// better on others). A gate that let `mixed` through would pass a build that lost
    /// success rate as long as it gained speed somewhere.
    Worse,
    /// Any of these metrics is worse.
    Metrics(Vec<String>),
}

impl std::str::FromStr for FailOn {
    type Err = String;

    fn from_str(s: &str) -> Result<FailOn, String> {
        let s = s.trim();
        if s == "worse" {
            return Ok(FailOn::Worse);
        }
        let ids: Vec<String> = s.split(',').map(|m| m.trim().to_owned()).collect();
        for id in &ids {
            if thresholds::find(id).is_none() {
                let mut near: Vec<(usize, &str)> = thresholds::METRICS
                    .iter()
                    .map(|m| (strsim::levenshtein(m.id, id), m.id))
                    .collect();
                near.sort();
                let near: Vec<&str> = near.iter().take(3).map(|(_, m)| *m).collect();
                return Err(format!(
                    "{id:?} is not a compared metric; `worse` or a comma-separated list of metrics (nearest: {})",
                    near.join(", ")
                ));
            }
        }
        Ok(FailOn::Metrics(ids))
    }
}

impl std::fmt::Display for FailOn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FailOn::Worse => f.write_str("worse"),
            FailOn::Metrics(ids) => f.write_str(&ids.join(",")),
        }
    }
}

/// Applies `fail_on` to `c`.
pub fn apply(c: &Comparison, fail_on: &FailOn) -> Gate {
    let worse: Vec<String> = c
        .metrics
        .iter()
        .filter(|m| m.verdict == Verdict::Worse)
        .filter(|m| match fail_on {
            FailOn::Worse => true,
            FailOn::Metrics(ids) => ids.contains(&m.id),
        })
        .map(|m| m.id.clone())
        .collect();
    let passed = worse.is_empty();
    let line = match (fail_on, passed) {
        (FailOn::Worse, true) => format!(
            "Gate passed: B ({}) is worse on no metric (overall {}).",
            c.b.name, c.overall
        ),
        (FailOn::Worse, false) => format!(
            "Gate FAILED: B ({}) is worse on {} (overall {}).",
            c.b.name,
            worse.join(", "),
            c.overall
        ),
        (FailOn::Metrics(ids), true) => {
            format!("Gate passed: none of {} is worse.", ids.join(", "))
        }
        (FailOn::Metrics(_), false) => {
            format!(
                "Gate FAILED: B ({}) is worse on {}.",
                c.b.name,
                worse.join(", ")
            )
        }
    };
    Gate {
        fail_on: fail_on.to_string(),
        passed,
        failed: if passed { Vec::new() } else { worse },
        line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_on_reads_worse_or_known_metrics() {
        assert_eq!("worse".parse::<FailOn>(), Ok(FailOn::Worse));
        assert_eq!(
            "response_p99,success_rate".parse::<FailOn>(),
            Ok(FailOn::Metrics(vec![
                "response_p99".into(),
                "success_rate".into()
            ]))
        );
        let e = "respons_p99".parse::<FailOn>().unwrap_err();
        assert!(e.contains("response_p99"), "{e}");
    }
}
