//! The Markdown of a [`Calibration`].

use std::fmt::Write;

use super::cell;
use crate::analyze::calibrate::Calibration;

pub fn render(c: &Calibration) -> String {
    let mut s = String::new();
    // Writing into a String cannot fail.
    let _ = write_calibration(&mut s, c);
    s
}

fn write_calibration(s: &mut String, c: &Calibration) -> std::fmt::Result {
    writeln!(s, "# A/A calibration: {} against itself", cell(&c.build))?;
    writeln!(s)?;
    writeln!(s, "> {}", cell(&c.verdict_line))?;
    writeln!(s)?;
    writeln!(
        s,
        "{} run(s) per side per session. A build compared with itself should come out inconclusive on every metric in at least {}% of sessions.",
        c.runs_per_side,
        100.0 - c.family_alpha * 100.0
    )?;
    writeln!(s)?;
    writeln!(s, "| Session | Overall | False verdicts |")?;
    writeln!(s, "|---|---|---|")?;
    for o in &c.sessions {
        writeln!(
            s,
            "| {} | {} | {} |",
            cell(&o.folder),
            cell(&o.overall),
            if let Some(e) = &o.error {
                cell(e)
            } else if o.false_verdicts.is_empty() {
                "none".to_owned()
            } else {
                cell(&o.false_verdicts.join(", "))
            }
        )?;
    }
    if let Some(r) = &c.resampled {
        writeln!(s)?;
        writeln!(
            s,
            "Resampled: {} sessions drawn from {} runs: {} with a false verdict ({:.1}%).",
            r.sessions,
            r.runs_pooled,
            r.false_sessions,
            r.rate * 100.0
        )?;
        for (id, n) in &r.per_metric {
            writeln!(s, "- {id}: {n}")?;
        }
    }
    Ok(())
}
