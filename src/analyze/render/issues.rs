//! From a report to action: an issue draft per bottleneck the rules found (`lt analyze
//! --issues DIR`), a draft marked for security review when the relay's profile puts
//! cryptography among its top costs, and a block for a pull request's body (`--summary
//! pr`). Each draft carries its evidence and the exact commands that reproduce it.

use std::fmt::Write;

use super::{cell, num};
use crate::analyze::compare::{Comparison, MetricDelta, Verdict};
use crate::analyze::report::Report;
use crate::analyze::rules::{self, About, Rule, RuleCheck};
use crate::profile::{is_crypto, HotFunction};

/// Cryptography counts as a top cost when its functions together rank among the relay's top
/// this many user-space costs…
const CRYPTO_TOP_RANK: usize = 5;
/// … or its functions together take at least this share of the profile (percent).
const CRYPTO_SHARE_PCT: f64 = 10.0;

/// One issue draft: a file name, a title, labels, and the Markdown body.
#[derive(Debug, Clone, PartialEq)]
pub struct Draft {
    pub file: String,
    pub title: String,
    pub labels: Vec<&'static str>,
    pub body: String,
}

/// What the relay's profile says about cryptography, when it was profiled.
#[derive(Debug, Clone, PartialEq)]
pub struct CryptoFinding {
    /// The cryptographic functions among the profile's top functions.
    pub functions: Vec<HotFunction>,
    /// Their share of the relay's samples, percent.
    pub share_pct: f64,
    /// Where cryptography as a whole ranks among the relay's user-space functions (1 = the
    /// top cost).
    pub best_rank: usize,
}

/// Cryptography among the relay's top costs, from a real profile only: without one, no such
/// claim is made.
pub fn crypto_finding(r: &Report) -> Option<CryptoFinding> {
    let hot = &r.measured.hot_functions;
    if !hot.measured {
        return None;
    }
    let crypto = hot.crypto.as_ref().filter(|c| !c.functions.is_empty())?;
    let share_pct = crypto.percent;
    // Cryptography as a whole (a signature check spreads over many small field and scalar
    // functions, most too small to be listed alone), ranked among the relay's user-space
    // functions: the kernel's scheduling and network code tops any profile of a relay
    // under load, and says nothing of the relay's own costs.
    let best_rank = 1 + hot
        .functions
        .iter()
        .filter(|f| !f.dso.contains("kernel") && !is_crypto(&f.symbol))
        .filter(|f| f.percent > share_pct)
        .count();
    (best_rank <= CRYPTO_TOP_RANK || share_pct >= CRYPTO_SHARE_PCT).then(|| CryptoFinding {
        functions: crypto.functions.clone(),
        share_pct,
        best_rank,
    })
}

/// The commands that reproduce the run: the trace, the replay, the analysis.
pub fn reproduce(r: &Report) -> Vec<String> {
    let c = &r.measured.config;
    let mut out = Vec::new();
    let o = c
        .trace_header
        .pointer("/source/synth")
        .unwrap_or(&serde_json::Value::Null);
    if o.is_object() {
        let f = |k: &str| o[k].to_string();
        out.push(format!(
            "lt synth --seed {} --clients {} --duration {} --rate {} --mix {} --read-share {} --edit-share {} --nip71-share {} --creators {} --epoch {} -o trace.ltc   # fingerprint {}",
            f("seed"),
            f("clients"),
            f("duration_s"),
            f("rate_eps"),
            f("view_share"),
            f("read_share"),
            f("edit_share"),
            f("nip71_share"),
            f("creators"),
            f("epoch"),
            c.trace_fingerprint
        ));
    } else {
        out.push(format!(
            "# the trace with fingerprint {} ({} records)",
            c.trace_fingerprint, c.trace_records
        ));
    }
    // The results keep the host only; the NIP-11 URL says whether it was TLS.
    let tls = c
        .relay
        .as_ref()
        .is_some_and(|r| r.url.starts_with("https://"));
    let mut replay = if tls {
        format!(
            "lt replay trace.ltc --relay wss://{}/ --ca-file CA.pem",
            c.target
        )
    } else {
        format!("lt replay trace.ltc --relay ws://{}/", c.target)
    };
    // A host that is not loopback must be named as test infrastructure, as it was.
    let host = c
        .target
        .rsplit_once(':')
        .map_or(c.target.as_str(), |(h, _)| h);
    let loopback = host.starts_with("127.") || host == "localhost" || host == "[::1]";
    if !loopback {
        replay.push_str(&format!(" --allow-host {host}"));
    }
    replay.push_str(&c.options.load_flags());
    if c.options.relay_pid_sampled == Some(true) {
        replay.push_str(" --relay-pid RELAY_PID");
        if r.measured.hot_functions.measured {
            replay.push_str(" --profile");
        }
    }
    replay.push_str(" -o results.ltr");
    out.push(replay);
    out.push("lt analyze results.ltr".into());
    out
}

fn write_reproduce(s: &mut String, r: &Report) -> std::fmt::Result {
    writeln!(s, "## How to reproduce")?;
    writeln!(s)?;
    writeln!(
        s,
        "On a machine with the relay on loopback (lt sends load only to loopback or to hosts named as test infrastructure with `--allow-host`):"
    )?;
    writeln!(s)?;
    writeln!(s, "```sh")?;
    for line in reproduce(r) {
        writeln!(s, "{line}")?;
    }
    writeln!(s, "```")?;
    writeln!(s)?;
    let c = &r.measured.config;
    let build = match c.relay.as_ref().and_then(|relay| relay.build.as_deref()) {
        Some(b) => format!("The relay said it is {} (NIP-11).", cell(b)),
        None => "The relay's software and version are not recorded in these results: name the build here.".to_owned(),
    };
    writeln!(
        s,
        "Measured with lt {} on {} ({} cores, kernel {}), started {}. {build}",
        cell(&c.lt_version),
        cell(&c.machine.cpu),
        c.machine.cores,
        cell(&c.machine.kernel),
        cell(&c.started_at)
    )?;
    writeln!(s)
}

fn write_context(s: &mut String, r: &Report) -> std::fmt::Result {
    writeln!(s, "## Context")?;
    writeln!(s)?;
    let t = &r.measured.totals;
    writeln!(
        s,
        "- {} requests attempted, {}% succeeded, {} failed",
        t.attempted,
        num(t.success_rate_pct),
        t.failed
    )?;
    if let Some(p) = &r.measured.latency.overall.response_ms {
        writeln!(
            s,
            "- response time p50 {} ms, p99 {} ms ({} requests, {} at the timeout)",
            num(p.p50),
            num(p.p99),
            p.count,
            p.at_timeout
        )?;
    }
    if let Some(relay) = &r.measured.resources.relay {
        writeln!(
            s,
            "- relay CPU avg {}%, max {}% of a core; RSS max {} MB",
            num(relay.cpu_pct.avg),
            num(relay.cpu_pct.max),
            num(relay.rss_mb.max)
        )?;
    }
    writeln!(s, "- trust: {}", cell(&r.trust.verdict))?;
    writeln!(s)
}

/// A short, file-safe name.
fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').chars().take(60).collect()
}

/// The title of a fired rule's draft: its symptom and its figure.
fn title(rule: &Rule, c: &RuleCheck) -> String {
    format!(
        "{}: {} {} (threshold {} {})",
        rule.title,
        num(c.value),
        c.unit,
        num(c.threshold),
        c.unit
    )
}

/// One draft per fired rule about the relay, and one for cryptography among its top costs
/// (from a real profile). In the order of the remediation list.
pub fn drafts(r: &Report) -> Vec<Draft> {
    let crypto = crypto_finding(r);
    let mut out = Vec::new();
    // Only the relay's rules: the others are about lt or the run, no issue for its team.
    let fired = r
        .remediation
        .iter()
        .filter(|item| item.fired)
        .filter_map(|item| {
            let entry = rules::rule_named(&item.rule).filter(|e| e.about == About::Relay)?;
            let check = r.rules.iter().find(|c| c.id == item.rule)?;
            Some((item, entry, check))
        });
    for (item, entry, check) in fired {
        let mut labels = entry.labels.to_vec();
        if entry.id == "cpu_bound" && crypto.is_some() {
            labels.push("requires-security-review");
        }
        let title = title(entry, check);
        let mut body = String::new();
        let _ = write_rule_draft(&mut body, r, check, &item.action, &title, &labels);
        out.push(Draft {
            file: format!("{:02}-{}.md", out.len() + 1, slug(entry.id)),
            title,
            labels,
            body,
        });
    }
    if let Some(found) = &crypto {
        let title = format!(
            "Cryptography among the relay's top costs: {}% of its CPU samples",
            num((found.share_pct * 10.0).round() / 10.0)
        );
        let labels = vec!["performance", "requires-security-review"];
        let mut body = String::new();
        let _ = write_crypto_draft(&mut body, r, found, &title, &labels);
        out.push(Draft {
            file: format!("{:02}-cryptography.md", out.len() + 1),
            title,
            labels,
            body,
        });
    }
    out
}

fn write_header(s: &mut String, r: &Report, title: &str, labels: &[&str]) -> std::fmt::Result {
    writeln!(s, "# {title}")?;
    writeln!(s)?;
    writeln!(s, "Labels: {}", labels.join(", "))?;
    writeln!(s)?;
    if !r.trust.trustworthy {
        writeln!(
            s,
            "> ⚠️ The run behind this draft is not trustworthy: {} Check the figures before filing.",
            cell(&r.trust.verdict)
        )?;
        writeln!(s)?;
    }
    Ok(())
}

fn write_rule_draft(
    s: &mut String,
    r: &Report,
    rule: &RuleCheck,
    action: &str,
    title: &str,
    labels: &[&str],
) -> std::fmt::Result {
    write_header(s, r, title, labels)?;
    writeln!(s, "## Evidence")?;
    writeln!(s)?;
    writeln!(s, "{}", cell(&rule.evidence))?;
    writeln!(s)?;
    writeln!(
        s,
        "Rule `{}` fired: {} {} against a threshold of {} {} (docs/reports.md, section 5).",
        rule.id,
        num(rule.value),
        rule.unit,
        num(rule.threshold),
        rule.unit
    )?;
    writeln!(s)?;
    let examples: Vec<String> = r
        .measured
        .errors
        .top_messages
        .iter()
        .take(3)
        .map(|m| {
            let ids: Vec<String> = m
                .examples
                .iter()
                .map(|e| match &e.id {
                    Some(id) => format!("`{id}` (record {})", e.record),
                    None => format!("record {}", e.record),
                })
                .collect();
            format!(
                "- {} × {} \"{}\": {}",
                m.count,
                m.outcome,
                cell(&m.message),
                ids.join(", ")
            )
        })
        .collect();
    if !examples.is_empty() {
        writeln!(s, "Messages from the relay, with example records:")?;
        writeln!(s)?;
        for e in examples {
            writeln!(s, "{e}")?;
        }
        writeln!(s)?;
    }
    write_context(s, r)?;
    writeln!(s, "## Suggested next step")?;
    writeln!(s)?;
    writeln!(s, "{}", cell(action))?;
    writeln!(s)?;
    write_reproduce(s, r)
}

fn write_crypto_draft(
    s: &mut String,
    r: &Report,
    found: &CryptoFinding,
    title: &str,
    labels: &[&str],
) -> std::fmt::Result {
    write_header(s, r, title, labels)?;
    writeln!(s, "## Evidence")?;
    writeln!(s)?;
    writeln!(
        s,
        "A real profile of the relay during the run ({}) puts cryptographic code among its top costs: taken together, #{} of the relay's user-space costs, {}% of the relay's samples.",
        cell(&r.measured.hot_functions.note),
        found.best_rank,
        num((found.share_pct * 1000.0).round() / 1000.0)
    )?;
    writeln!(s)?;
    writeln!(s, "| Function | Object | % of samples |")?;
    writeln!(s, "|---|---|---:|")?;
    for f in &found.functions {
        writeln!(
            s,
            "| `{}` | {} | {} |",
            cell(&f.symbol),
            cell(&f.dso),
            num(f.percent)
        )?;
    }
    writeln!(s)?;
    writeln!(s, "## Requires security review")?;
    writeln!(s)?;
    writeln!(
        s,
        "The load test does not change cryptographic code, and this draft proposes no change to it. Signature verification and hashing are what make a Nostr relay trustworthy; any optimisation (batch verification, caching verified ids, another implementation or library) needs a security review before anyone starts on it."
    )?;
    writeln!(s)?;
    write_context(s, r)?;
    write_reproduce(s, r)
}

/// A Markdown block for a pull request's body: the safety statement, the commands, the
/// configuration, the results and the next steps, with links to the drafts written.
pub fn pr_summary(r: &Report, drafts: &[(String, String)]) -> String {
    let mut s = String::new();
    // Writing into a String cannot fail.
    let _ = write_pr_summary(&mut s, r, drafts);
    s
}

fn write_pr_summary(s: &mut String, r: &Report, drafts: &[(String, String)]) -> std::fmt::Result {
    let c = &r.measured.config;
    writeln!(s, "### Load test: {}", cell(&c.target))?;
    writeln!(s)?;
    writeln!(
        s,
        "**Safety:** does not target public relays; requires RELAY_URL (lt sends load only to loopback or to hosts explicitly named as test infrastructure, and refuses everything else)."
    )?;
    writeln!(s)?;
    writeln!(s, "**Run**")?;
    writeln!(s)?;
    writeln!(s, "```sh")?;
    for line in reproduce(r) {
        writeln!(s, "{line}")?;
    }
    writeln!(s, "```")?;
    writeln!(s)?;
    writeln!(
        s,
        "**Config:** trace `{}` ({} records); {} run(s); replay {}; lt {} on {} cores.",
        c.trace_fingerprint
            .get(..16)
            .unwrap_or(&c.trace_fingerprint),
        c.trace_records,
        c.files.len(),
        c.options
            .load_options()
            .into_iter()
            .map(|(k, _, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", "),
        cell(&c.lt_version),
        c.machine.cores
    )?;
    writeln!(s)?;
    writeln!(s, "**Results:** {}", cell(&r.trust.verdict))?;
    writeln!(s)?;
    writeln!(s, "| Figure | Value |")?;
    writeln!(s, "|---|---:|")?;
    for h in &r.measured.summary {
        writeln!(
            s,
            "| {} | {} {} |",
            cell(&h.label),
            num(h.value),
            cell(&h.unit)
        )?;
    }
    writeln!(s)?;
    if !r.checks.is_empty() {
        let fails = if r.passed() {
            ""
        } else {
            " — the gate fails"
        };
        writeln!(s, "**Checks:** {}{fails}.", r.checks_line())?;
        writeln!(s)?;
    }
    writeln!(s, "**Next steps**")?;
    writeln!(s)?;
    for item in r.remediation.iter().take(3) {
        writeln!(s, "- {}", cell(&item.action))?;
    }
    for (title, path) in drafts {
        writeln!(s, "- Issue draft: [{}]({})", cell(title), path)?;
    }
    writeln!(s)
}

/// The draft of a regression that `lt ab` (or `lt compare`) found: B worse than A on some
/// metric, with each worse metric's figures and interval, and `reproduce` (the commands
/// that made the comparison). `None` when B is worse on nothing.
pub fn regression_draft(c: &Comparison, reproduce: &[String]) -> Option<Draft> {
    let worse: Vec<&MetricDelta> = c
        .metrics
        .iter()
        .filter(|m| m.verdict == Verdict::Worse)
        .collect();
    if worse.is_empty() {
        return None;
    }
    let named: Vec<String> = worse
        .iter()
        .take(3)
        .map(|m| {
            let pct = m
                .delta_pct
                .map(|p| format!(" ({p:+}%)"))
                .unwrap_or_default();
            format!("{} {:+} {}{pct}", m.id, m.delta, m.unit)
        })
        .collect();
    let title = format!(
        "{} is worse than {} on {} metric(s): {}",
        c.b.name,
        c.a.name,
        worse.len(),
        named.join(", ")
    );
    let mut labels = vec!["performance"];
    if worse
        .iter()
        .any(|m| matches!(m.id.as_str(), "success_rate" | "failed" | "timeouts"))
    {
        labels.push("reliability");
    }
    labels.push("regression");
    let mut body = String::new();
    let _ = write_regression(&mut body, c, &worse, &title, &labels, reproduce);
    Some(Draft {
        file: "00-regression.md".into(),
        title,
        labels,
        body,
    })
}

fn write_regression(
    s: &mut String,
    c: &Comparison,
    worse: &[&MetricDelta],
    title: &str,
    labels: &[&str],
    reproduce: &[String],
) -> std::fmt::Result {
    writeln!(s, "# {}", cell(title))?;
    writeln!(s)?;
    writeln!(s, "Labels: {}", labels.join(", "))?;
    writeln!(s)?;
    if !(c.a.trustworthy && c.b.trustworthy) {
        writeln!(
            s,
            "> ⚠️ Not every run of this comparison was trustworthy; see its warnings before filing."
        )?;
        writeln!(s)?;
    }
    writeln!(s, "## Evidence")?;
    writeln!(s)?;
    writeln!(
        s,
        "{} ({} runs) against {} ({} runs) on trace `{}`: {}",
        cell(&c.b.name),
        c.b.runs,
        cell(&c.a.name),
        c.a.runs,
        c.trace_fingerprint
            .get(..16)
            .unwrap_or(&c.trace_fingerprint),
        cell(&c.overall_line)
    )?;
    writeln!(s)?;
    worse_table(s, worse)?;
    writeln!(s)?;
    writeln!(
        s,
        "Each is worse beyond run-to-run noise (Welch's t test, one 5% error budget over all metrics) and by at least its threshold: {}",
        cell(&c.method)
    )?;
    writeln!(s)?;
    for w in &c.warnings {
        writeln!(s, "- ⚠️ {}", cell(w))?;
    }
    if !c.warnings.is_empty() {
        writeln!(s)?;
    }
    writeln!(s, "## How to reproduce")?;
    writeln!(s)?;
    writeln!(s, "```sh")?;
    for line in reproduce {
        writeln!(s, "{line}")?;
    }
    writeln!(s, "```")?;
    writeln!(s)?;
    writeln!(
        s,
        "The drafts beside this one come from {}'s own runs: what the rules found on it.",
        cell(&c.b.name)
    )
}

/// A row per metric B is worse on, with its interval and threshold.
fn worse_table(s: &mut String, worse: &[&MetricDelta]) -> std::fmt::Result {
    writeln!(
        s,
        "| Metric | A | B | Δ | 95% interval of Δ | p (Holm) | Threshold |"
    )?;
    writeln!(s, "|---|---:|---:|---:|---|---:|---:|")?;
    for m in worse {
        let ci = m.ci95.map_or_else(
            || "–".to_owned(),
            |[lo, hi]| format!("{} to {}", num(lo), num(hi)),
        );
        writeln!(
            s,
            "| {} | {} | {} | {} {} | {} | {} | {} {} |",
            cell(&m.label),
            num(m.a),
            num(m.b),
            num(m.delta),
            cell(&m.unit),
            ci,
            m.p_adjusted.map_or_else(|| "–".to_owned(), num),
            num(m.threshold),
            cell(&m.unit)
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crypto_symbols_are_recognised_and_others_are_not() {
        // (`is_crypto` is the profile's; checked here where the drafts depend on it.)
        for s in [
            "secp256k1_ecmult_strauss_wnaf",
            "secp256k1::schnorr::verify",
            "sha2::sha256::x86::digest_blocks",
            "sha256_block_data_order_avx2",
        ] {
            assert!(is_crypto(s), "{s}");
        }
        for s in ["sqlite3VdbeExec", "tokio::runtime::park", "memcpy"] {
            assert!(!is_crypto(s), "{s}");
        }
    }

    #[test]
    fn slugs_are_file_safe() {
        assert_eq!(slug("cpu_bound"), "cpu-bound");
        assert_eq!(slug("A / b: c"), "a-b-c");
    }
}
