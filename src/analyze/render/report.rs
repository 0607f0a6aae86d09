//! The Markdown of a [`Report`]. Every figure is printed from the report itself (already
//! rounded), so the Markdown and the JSON hold the same numbers.

use std::fmt::Write;

use super::{cell, num};
use crate::analyze::model::{Dist, LatencySet, Percentiles};
use crate::analyze::report::Report;

fn opt(p: &Option<Percentiles>, f: fn(&Percentiles) -> f64) -> String {
    p.as_ref().map_or_else(|| "–".to_owned(), |p| num(f(p)))
}

pub fn render(r: &Report) -> String {
    let mut s = String::new();
    // Writing into a String cannot fail.
    let _ = write_report(&mut s, r);
    s
}

fn write_report(s: &mut String, r: &Report) -> std::fmt::Result {
    let c = &r.measured.config;
    writeln!(s, "# Load test report: {}", cell(&c.target))?;
    writeln!(s)?;
    writeln!(
        s,
        "Trace `{}` · {} run(s) · started {} · {} s · {}",
        short(&c.trace_fingerprint),
        c.files.len(),
        cell(&c.started_at),
        num(c.duration_s),
        cell(&r.generated_by)
    )?;
    writeln!(s)?;
    // Before anything else: every figure below covers only part of the run.
    for p in &c.partial {
        writeln!(
            s,
            "> ⛔ **PARTIAL RESULTS: {}** ends before its trailer ({}). {} of the trace's {} records have an outcome ({} rows), covering the first {} s of the run; figures below cover only that part.",
            cell(&p.file),
            cell(&p.reason),
            p.outcome_rows,
            p.trace_records,
            p.rows,
            num(p.covered_s)
        )?;
        writeln!(s)?;
    }
    let mark = if r.trust.trustworthy { "✅" } else { "⚠️" };
    writeln!(s, "> {mark} **{}**", cell(&r.trust.verdict))?;
    for reason in &r.trust.reasons {
        writeln!(s, "> - {}", cell(reason))?;
    }
    writeln!(s)?;
    if !r.checks.is_empty() {
        checks(s, r)?;
    }
    // Merged runs that are not alike: said before any figure that adds them up.
    for w in &c.merge_warnings {
        writeln!(s, "- ⚠️ {}", cell(w))?;
    }
    if !c.merge_warnings.is_empty() {
        writeln!(s)?;
    }
    summary(s, r)?;
    remediation(s, r)?;
    config(s, r)?;
    preflight(s, r)?;
    totals(s, r)?;
    against_recording(s, r)?;
    live_deliveries(s, r)?;
    latency(s, r)?;
    throughput(s, r)?;
    errors(s, r)?;
    connections(s, r)?;
    resources(s, r)?;
    scraped(s, r)?;
    writeln!(s, "## Hot functions")?;
    writeln!(s)?;
    if r.measured.hot_functions.measured {
        writeln!(s, "{}.", cell(&r.measured.hot_functions.note))?;
        writeln!(s)?;
        writeln!(s, "| Function | Object | % of samples |")?;
        writeln!(s, "|---|---|---:|")?;
        for f in &r.measured.hot_functions.functions {
            writeln!(
                s,
                "| `{}` | {} | {} |",
                cell(&f.symbol),
                cell(&f.dso),
                num(f.percent)
            )?;
        }
    } else {
        writeln!(s, "{}", cell(&r.measured.hot_functions.note))?;
    }
    writeln!(s)?;
    rules(s, r)
}

fn short(fingerprint: &str) -> &str {
    fingerprint.get(..16).unwrap_or(fingerprint)
}

fn summary(s: &mut String, r: &Report) -> std::fmt::Result {
    writeln!(s, "## Summary")?;
    writeln!(s)?;
    writeln!(s, "| Metric | Value | Unit |")?;
    writeln!(s, "|---|---:|---|")?;
    for h in &r.measured.summary {
        writeln!(
            s,
            "| {} | {} | {} |",
            cell(&h.label),
            num(h.value),
            cell(&h.unit)
        )?;
    }
    writeln!(s)
}

fn remediation(s: &mut String, r: &Report) -> std::fmt::Result {
    writeln!(s, "## What to do")?;
    writeln!(s)?;
    for item in &r.remediation {
        let tag = if item.fired { "" } else { " (not triggered)" };
        writeln!(
            s,
            "{}. **{}**{tag}: {}  \n   Evidence: {}",
            item.rank,
            cell(&item.rule),
            cell(&item.action),
            cell(&item.evidence)
        )?;
    }
    writeln!(s)
}

/// Where the trace came from, in a few words, from the trace header as the results keep it.
fn trace_source(h: &serde_json::Value) -> String {
    let text = |p: &str| {
        h.pointer(p)
            .and_then(|v| v.as_str())
            .unwrap_or("?")
            .to_owned()
    };
    if let Some(seed) = h.pointer("/source/synth/seed") {
        format!("lt synth, seed {seed}")
    } else if h.pointer("/source/recorded").is_some() {
        format!(
            "lt record from {}, started {}",
            text("/source/recorded/upstream"),
            text("/source/recorded/started_at")
        )
    } else if h.pointer("/source/imported").is_some() {
        format!("lt import of {}", text("/source/imported/input"))
    } else {
        "unknown".into()
    }
}

fn config(s: &mut String, r: &Report) -> std::fmt::Result {
    let c = &r.measured.config;
    writeln!(s, "## Configuration")?;
    writeln!(s)?;
    writeln!(s, "| | |")?;
    writeln!(s, "|---|---|")?;
    writeln!(s, "| Relay | {} |", cell(&c.target))?;
    writeln!(s, "| Trace fingerprint | `{}` |", c.trace_fingerprint)?;
    writeln!(s, "| Trace records | {} |", c.trace_records)?;
    writeln!(
        s,
        "| Trace source | {} |",
        cell(&trace_source(&c.trace_header))
    )?;
    for (k, v) in &c.options.to_map() {
        writeln!(s, "| replay {} | {} |", cell(k), cell(v))?;
    }
    writeln!(s, "| lt (replay) | {} |", cell(&c.lt_version))?;
    writeln!(
        s,
        "| Machine | {} cores, {}, kernel {} |",
        c.machine.cores,
        cell(&c.machine.cpu),
        cell(&c.machine.kernel)
    )?;
    writeln!(s, "| Started | {} |", cell(&c.started_at))?;
    writeln!(s, "| Duration | {} s |", num(c.duration_s))?;
    writeln!(s, "| Files | {} |", cell(&c.files.join(", ")))?;
    writeln!(s, "| Interrupted | {} |", c.interrupted)?;
    if let Some(relay) = &c.relay {
        let said = relay
            .build
            .clone()
            .or_else(|| relay.note.clone())
            .unwrap_or_else(|| "a document without software or version".into());
        writeln!(s, "| Relay (NIP-11) | {} |", cell(&said))?;
        if let Some(l) = &relay.limitation {
            writeln!(s, "| Advertised limits | `{}` |", cell(&l.to_string()))?;
        }
    }
    if !c.partial.is_empty() {
        let files: Vec<&str> = c.partial.iter().map(|p| p.file.as_str()).collect();
        writeln!(
            s,
            "| Partial (read with --partial) | {} |",
            cell(&files.join(", "))
        )?;
    }
    writeln!(s)
}

/// Rejections predicted from the relay's advertised limits, beside what the run saw.
fn preflight(s: &mut String, r: &Report) -> std::fmt::Result {
    let Some(relay) = &r.measured.config.relay else {
        return Ok(());
    };
    if relay.predictions.is_empty() {
        return Ok(());
    }
    let e = &r.measured.errors;
    let refused: u64 =
        e.rejected_by_prefix.values().sum::<u64>() + e.closed_by_prefix.values().sum::<u64>();
    writeln!(s, "## Preflight: predicted against observed")?;
    writeln!(s)?;
    writeln!(
        s,
        "| Advertised limit | Value | Records predicted | What happens |"
    )?;
    writeln!(s, "|---|---:|---:|---|")?;
    for p in &relay.predictions {
        writeln!(
            s,
            "| `{}` | {} | {} | {} |",
            cell(&p.limit),
            cell(&p.advertised),
            p.records,
            cell(&p.what)
        )?;
    }
    writeln!(s)?;
    writeln!(
        s,
        "Observed: {refused} rejected or CLOSED, {} unanswered in time (timeout, stored_unacked, lost), {} NOTICEs.",
        e.timeouts + e.stored_unacked + e.lost,
        e.notices
    )?;
    writeln!(s)
}

/// For a recorded trace: this run against the relay that served the recorded clients.
fn against_recording(s: &mut String, r: &Report) -> std::fmt::Result {
    let Some(a) = &r.measured.against_recording else {
        return Ok(());
    };
    writeln!(s, "## Against the recording")?;
    writeln!(s)?;
    writeln!(
        s,
        "{}.",
        capitalized(&a.headline).replace(['\n', '\r'], " ")
    )?;
    writeln!(s)?;
    writeln!(s, "| | Recorded relay | This run |")?;
    writeln!(s, "|---|---:|---:|")?;
    writeln!(
        s,
        "| Events accepted (of {}) | {} | {} |",
        a.events, a.events_recorded_accepted, a.events_replayed_accepted
    )?;
    writeln!(
        s,
        "| Reads answered (of {}) | {} | {} |",
        a.reads, a.reads_recorded_answered, a.reads_replayed_answered
    )?;
    writeln!(
        s,
        "| Records answered the same way | {} of {} | |",
        a.same, a.records
    )?;
    if let Some(p) = &a.recorded_response_ms {
        writeln!(
            s,
            "| Recorded response p50 / p99 (ms, at the proxy) | {} / {} | |",
            num(p.p50),
            num(p.p99)
        )?;
    }
    writeln!(s)?;
    if !a.changes.is_empty() {
        writeln!(
            s,
            "| Recorded | This run | Records | First record | This run's message |"
        )?;
        writeln!(s, "|---|---|---:|---:|---|")?;
        for c in &a.changes {
            writeln!(
                s,
                "| {} | {} | {} | #{} | {} |",
                cell(&c.recorded),
                cell(&c.replayed),
                c.records,
                c.example_record,
                cell(&c.example_message)
            )?;
        }
        writeln!(s)?;
    }
    Ok(())
}

/// For a trace with live subscriptions: what they received against what they should have.
/// A table per scraped source, then whether the relay's own event count agrees with lt's.
fn scraped(s: &mut String, r: &Report) -> std::fmt::Result {
    let Some(sc) = &r.measured.scraped else {
        return Ok(());
    };
    writeln!(s, "## The relay's side")?;
    writeln!(s)?;
    if let Some(a) = &sc.events_agreement {
        let verdict = if a.agree {
            "they agree".to_string()
        } else {
            format!(
                "**they disagree by {}**: events lost or counted twice on the way, or another client writing to the relay",
                num((a.relay_events - a.lt_events_sent as f64).abs())
            )
        };
        writeln!(
            s,
            "The relay counted {} EVENT commands over the run; lt sent {}: {verdict}.",
            num(a.relay_events),
            a.lt_events_sent
        )?;
        writeln!(s)?;
    }
    for src in &sc.sources {
        let gaps = match &src.first_gap {
            Some(why) => format!(", {} gaps (first: {})", src.gaps, cell(why)),
            None => String::new(),
        };
        writeln!(
            s,
            "### {} ({}): {} scrapes{gaps}",
            cell(&src.location),
            src.preset,
            src.scrapes
        )?;
        writeln!(s)?;
        if src.figures.is_empty() {
            writeln!(s, "No figures: no two scrapes with values.")?;
            writeln!(s)?;
            continue;
        }
        writeln!(s, "| figure | value | unit | id |")?;
        writeln!(s, "|---|---:|---|---|")?;
        for f in &src.figures {
            writeln!(
                s,
                "| {} | {} | {} | `{}` |",
                cell(&f.label),
                num(f.value),
                f.unit,
                f.id
            )?;
        }
        writeln!(s)?;
    }
    chart(
        s,
        r,
        "-relay-latency.svg",
        "The relay's own timers beside lt's response time",
    )?;
    chart(
        s,
        r,
        "-relay-events.svg",
        "Events the relay counted beside lt's OKs",
    )?;
    chart(s, r, "-host.svg", "The relay's host over time")
}

fn live_deliveries(s: &mut String, r: &Report) -> std::fmt::Result {
    let Some(d) = &r.measured.live_deliveries else {
        return Ok(());
    };
    writeln!(s, "## Live subscriptions")?;
    writeln!(s)?;
    writeln!(s, "{}.", capitalized(&d.headline))?;
    writeln!(s)?;
    writeln!(
        s,
        "A delivery is expected when the relay accepted a matching event that lt sent after the \
         subscription's EOSE and before its CLOSE; one not received within {} ms of the event's \
         OK is missed. Deliveries of events that crossed the EOSE or the CLOSE are uncertain: \
         either answer is right.",
        num(d.grace_ms)
    )?;
    writeln!(s)?;
    deliveries_by_type(s, d)?;
    writeln!(s)?;
    writeln!(
        s,
        "Latency is receipt − the publishing record's intended send time, so a relay (or lt) \
         that falls behind cannot hide it."
    )?;
    if let Some(f) = &d.fanout_per_event {
        writeln!(
            s,
            "Fan-out: {} events reached live subscriptions, {} deliveries each on average, at most {}.",
            f.count,
            num(f.mean),
            num(f.max)
        )?;
    }
    if d.read_deliveries > 0 {
        writeln!(
            s,
            "Reads received {} events pushed between their EOSE and CLOSE (allowed; not checked).",
            d.read_deliveries
        )?;
    }
    writeln!(s)?;
    chart(s, r, "delivery-latency", "Delivery latency over time")?;
    chart(s, r, "-deliveries.svg", "Deliveries per second")?;
    delivery_examples(s, d)
}

/// A row per subscription type: counts and delivery latency.
fn deliveries_by_type(
    s: &mut String,
    d: &crate::analyze::deliveries::LiveDeliveries,
) -> std::fmt::Result {
    writeln!(
        s,
        "| Type | Subscriptions | Expected | Delivered | Missed | Late | Uncertain | Unexpected | p50 ms | p99 ms | p99.9 ms | max ms |"
    )?;
    writeln!(
        s,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )?;
    for k in &d.by_subscription {
        let p = |f: fn(&crate::analyze::stats::Percentiles) -> f64| {
            k.latency_ms.as_ref().map_or("–".to_owned(), |p| num(f(p)))
        };
        writeln!(
            s,
            "| {} | {} | {} | {} | {} ({}%) | {} | {} | {} | {} | {} | {} | {} |",
            cell(&k.kind),
            k.counts.subscriptions,
            k.counts.expected,
            k.counts.delivered,
            k.counts.missed,
            num(k.missed_pct),
            k.counts.late,
            k.counts.uncertain,
            k.counts.unexpected,
            p(|p| p.p50),
            p(|p| p.p99),
            p(|p| p.p99_9),
            p(|p| p.max),
        )?;
    }
    Ok(())
}

/// The first missed and unexpected deliveries, each with why.
fn delivery_examples(
    s: &mut String,
    d: &crate::analyze::deliveries::LiveDeliveries,
) -> std::fmt::Result {
    for (title, list) in [
        ("Missed deliveries", &d.missed_examples),
        ("Unexpected deliveries", &d.unexpected_examples),
    ] {
        if list.is_empty() {
            continue;
        }
        writeln!(s, "{title} (first {}):", list.len())?;
        writeln!(s)?;
        writeln!(s, "| Subscription | Connection | Event | Record | Why |")?;
        writeln!(s, "|---|---:|---|---:|---|")?;
        for e in list {
            writeln!(
                s,
                "| {} | {} | `{}` | {} | {} |",
                cell(&e.subscription),
                e.connection,
                e.event_id,
                e.record.map_or("–".to_owned(), |r| format!("#{r}")),
                cell(&e.why)
            )?;
        }
        writeln!(s)?;
    }
    Ok(())
}

fn capitalized(text: &str) -> String {
    let mut c = text.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn totals(s: &mut String, r: &Report) -> std::fmt::Result {
    let t = &r.measured.totals;
    writeln!(s, "## Totals")?;
    writeln!(s)?;
    writeln!(
        s,
        "{} attempted, {} succeeded ({}%), {} failed; {} not sent, {} dropped; {} bytes sent.",
        t.attempted,
        t.succeeded,
        num(t.success_rate_pct),
        t.failed,
        t.not_sent,
        t.dropped,
        t.bytes_sent
    )?;
    if t.not_sent > 0 {
        // Said where the figures are read: every rate and chart covers the played part only.
        let why = if r.measured.config.interrupted {
            "interrupted (Ctrl-C)"
        } else {
            "cut short (`--duration`)"
        };
        writeln!(s)?;
        writeln!(
            s,
            "**The run was {why}:** {} of the trace's records were never sent. Rates, charts and rules cover the part that was played.",
            t.not_sent
        )?;
    }
    writeln!(s)?;
    writeln!(s, "| Outcome | Records |")?;
    writeln!(s, "|---|---:|")?;
    for (label, n) in &t.by_outcome {
        writeln!(s, "| {} | {n} |", cell(label))?;
    }
    writeln!(s)?;
    writeln!(s, "| Record type | Records | Succeeded |")?;
    writeln!(s, "|---|---:|---:|")?;
    // Types the trace has none of are left out (a synthesized trace has no other events).
    for ty in t.by_type.iter().filter(|ty| ty.records > 0) {
        writeln!(
            s,
            "| {} | {} | {} |",
            ty.record_type, ty.records, ty.succeeded
        )?;
    }
    writeln!(s)
}

fn latency_rows(s: &mut String, name: &str, set: &LatencySet) -> std::fmt::Result {
    for (what, p) in [
        ("response", &set.response_ms),
        ("service", &set.service_ms),
        ("schedule lag", &set.schedule_lag_ms),
    ] {
        percentile_row(s, name, what, p)?;
    }
    Ok(())
}

fn percentile_row(
    s: &mut String,
    name: &str,
    what: &str,
    p: &Option<Percentiles>,
) -> std::fmt::Result {
    let Some(counted) = p else {
        return Ok(());
    };
    // How many records the row covers, and how many of them only at a lower bound.
    let count = match counted.at_timeout {
        0 => num(counted.count as f64),
        n => format!(
            "{} ({} at the timeout)",
            num(counted.count as f64),
            num(n as f64)
        ),
    };
    writeln!(
        s,
        "| {name} | {what} | {count} | {} | {} | {} | {} | {} | {} |",
        opt(p, |p| p.p50),
        opt(p, |p| p.p90),
        opt(p, |p| p.p95),
        opt(p, |p| p.p99),
        opt(p, |p| p.p99_9),
        opt(p, |p| p.max),
    )
}

fn chart(s: &mut String, r: &Report, stem: &str, title: &str) -> std::fmt::Result {
    if let Some(path) = r.charts.iter().find(|c| c.contains(stem)) {
        writeln!(s, "![{title}]({path})")?;
        writeln!(s)?;
    }
    Ok(())
}

fn latency(s: &mut String, r: &Report) -> std::fmt::Result {
    let l = &r.measured.latency;
    writeln!(s, "## Latency (ms)")?;
    writeln!(s)?;
    writeln!(s, "{}", cell(&l.note))?;
    writeln!(s)?;
    writeln!(
        s,
        "| Records | Time | Count | p50 | p90 | p95 | p99 | p99.9 | max |"
    )?;
    writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|---:|")?;
    latency_rows(s, "all", &l.overall)?;
    percentile_row(s, "all", "lt's own lag", &l.own_lag_ms)?;
    for (ty, set) in &l.by_type {
        latency_rows(s, ty, set)?;
    }
    writeln!(s)?;
    let held = &l.relay_held;
    writeln!(
        s,
        "Held back by the relay (its socket full, or an in-flight cap reached): {} records ({}% of those sent at their own time), for p50 {} ms, p99 {} ms, max {} ms.",
        held.records,
        num(held.share_pct),
        opt(&held.held_ms, |p| p.p50),
        opt(&held.held_ms, |p| p.p99),
        opt(&held.held_ms, |p| p.max),
    )?;
    writeln!(s)?;
    writeln!(
        s,
        "Reads: REQ → EOSE p50 {} ms, p99 {} ms; events returned before EOSE p50 {}, p99 {}, max {}.",
        opt(&l.reads.req_to_eose_ms, |p| p.p50),
        opt(&l.reads.req_to_eose_ms, |p| p.p99),
        opt(&l.reads.events_returned, |p| p.p50),
        opt(&l.reads.events_returned, |p| p.p99),
        opt(&l.reads.events_returned, |p| p.max),
    )?;
    writeln!(s)?;
    chart(s, r, "percentiles", "Latency percentile spectrum")?;
    chart(s, r, "latency-over-time", "Latency over time")
}

fn throughput(s: &mut String, r: &Report) -> std::fmt::Result {
    let t = &r.measured.throughput;
    writeln!(s, "## Throughput")?;
    writeln!(s)?;
    writeln!(
        s,
        "{} succeeded records/s on average; peak {} scheduled and {} succeeded in one second. Per-second counts are in the JSON (`throughput.per_second`).",
        num(t.ok_per_s),
        t.peak_scheduled_per_s,
        t.peak_ok_per_s
    )?;
    writeln!(s)?;
    chart(s, r, "throughput", "Throughput over time")?;
    let w = &r.measured.latency_over_time;
    if !w.windows.is_empty() {
        // A readable table: about 20 rows whatever the run's length, saying which ones.
        let step = w.windows.len().div_ceil(20).max(1);
        let shown = if step > 1 {
            format!(
                "; every {step}th of {} windows shown, all of them in the JSON report",
                w.windows.len()
            )
        } else {
            String::new()
        };
        writeln!(
            s,
            "Latency per {} s window (by intended send time{shown}):",
            w.window_s
        )?;
        writeln!(s)?;
        writeln!(s, "| t (s) | count | p50 ms | p99 ms |")?;
        writeln!(s, "|---:|---:|---:|---:|")?;
        for win in w.windows.iter().step_by(step) {
            writeln!(
                s,
                "| {} | {} | {} | {} |",
                win.t_s,
                win.count,
                num(win.p50_ms),
                num(win.p99_ms)
            )?;
        }
        writeln!(s)?;
    }
    Ok(())
}

fn errors(s: &mut String, r: &Report) -> std::fmt::Result {
    let e = &r.measured.errors;
    writeln!(s, "## Errors")?;
    writeln!(s)?;
    writeln!(s, "| Class | Count |")?;
    writeln!(s, "|---|---:|")?;
    for (p, n) in &e.rejected_by_prefix {
        writeln!(s, "| OK false `{}:` | {n} |", cell(p))?;
    }
    for (p, n) in &e.closed_by_prefix {
        writeln!(s, "| CLOSED `{}:` | {n} |", cell(p))?;
    }
    for (label, n) in [
        ("duplicate", e.duplicates),
        ("timeout", e.timeouts),
        ("disconnected", e.disconnects),
        ("dropped (lt's cap)", e.dropped),
        ("not sent", e.not_sent),
        ("stored without OK", e.stored_unacked),
        ("lost", e.lost),
        ("NOTICEs", e.notices),
        ("unparseable relay frames", e.unparseable_frames),
        ("oversized relay frames", e.oversized_frames),
    ] {
        writeln!(s, "| {label} | {n} |")?;
    }
    writeln!(s)?;
    if !e.close_codes.is_empty() {
        let codes: Vec<String> = e
            .close_codes
            .iter()
            .map(|(c, n)| format!("{c}: {n}"))
            .collect();
        writeln!(s, "Disconnects by close code: {}.", codes.join(", "))?;
        writeln!(s)?;
    }
    if !e.top_messages.is_empty() {
        writeln!(s, "Top messages:")?;
        writeln!(s)?;
        writeln!(s, "| Outcome | Message | Count | Examples |")?;
        writeln!(s, "|---|---|---:|---|")?;
        for m in &e.top_messages {
            let ex: Vec<String> = m
                .examples
                .iter()
                .map(|x| match &x.id {
                    Some(id) => format!("`{}` (record {})", cell(id), x.record),
                    None => format!("record {}", x.record),
                })
                .collect();
            writeln!(
                s,
                "| {} | {} | {} | {} |",
                cell(&m.outcome),
                cell(&m.message),
                m.count,
                ex.join(", ")
            )?;
        }
        writeln!(s)?;
    }
    if !e.notice_texts.is_empty() {
        writeln!(s, "NOTICEs:")?;
        writeln!(s)?;
        for n in &e.notice_texts {
            writeln!(s, "- {} × {}", n.count, cell(&n.text))?;
        }
        writeln!(s)?;
    }
    Ok(())
}

fn connections(s: &mut String, r: &Report) -> std::fmt::Result {
    let c = &r.measured.connections;
    writeln!(s, "## Connections")?;
    writeln!(s)?;
    writeln!(
        s,
        "{} opened at ramp-up ({} failed), {} reconnects ({} failed); connect time p50 {} ms, p99 {} ms.",
        c.initial,
        c.initial_failed,
        c.reconnects,
        c.reconnects_failed,
        opt(&c.connect_ms, |p| p.p50),
        opt(&c.connect_ms, |p| p.p99)
    )?;
    if c.tcp_connect_ms.is_some() || c.upgrade_ms.is_some() {
        let tls = match &c.tls_handshake_ms {
            Some(p) => format!(
                "TLS handshake p50 {} ms, p99 {} ms; ",
                num(p.p50),
                num(p.p99)
            ),
            None => String::new(),
        };
        writeln!(s)?;
        writeln!(
            s,
            "Phases: TCP connect p50 {} ms, p99 {} ms; {tls}WebSocket upgrade p50 {} ms, p99 {} ms.",
            opt(&c.tcp_connect_ms, |p| p.p50),
            opt(&c.tcp_connect_ms, |p| p.p99),
            opt(&c.upgrade_ms, |p| p.p50),
            opt(&c.upgrade_ms, |p| p.p99)
        )?;
    }
    for f in &c.failure_causes {
        writeln!(s, "- {} × {}", f.count, cell(&f.text))?;
    }
    writeln!(s)
}

fn dist_row(s: &mut String, name: &str, d: &Option<Dist>) -> std::fmt::Result {
    if let Some(d) = d {
        writeln!(
            s,
            "| {name} | {} | {} | {} |",
            num(d.avg),
            num(d.p95),
            num(d.max)
        )?;
    }
    Ok(())
}

fn resources(s: &mut String, r: &Report) -> std::fmt::Result {
    let x = &r.measured.resources;
    writeln!(s, "## Resources")?;
    writeln!(s)?;
    writeln!(s, "{} samples (one per second per run).", x.samples)?;
    writeln!(s)?;
    writeln!(s, "| Series | avg | p95 | max |")?;
    writeln!(s, "|---|---:|---:|---:|")?;
    if let Some(relay) = &x.relay {
        dist_row(s, "relay CPU (% of a core)", &Some(relay.cpu_pct.clone()))?;
        dist_row(s, "relay RSS (MB)", &Some(relay.rss_mb.clone()))?;
    }
    dist_row(s, "lt CPU (% of a core)", &x.harness_cpu_pct)?;
    dist_row(s, "lt RSS (MB)", &x.harness_rss_mb)?;
    dist_row(
        s,
        "schedule lag, worst per second (ms)",
        &x.schedule_lag_max_ms,
    )?;
    dist_row(s, "connections open", &x.connections_open)?;
    dist_row(s, "records in flight", &x.in_flight)?;
    writeln!(s)?;
    match &x.relay {
        Some(relay) => writeln!(
            s,
            "Relay RSS grew {} MB (trend {} MB/min).",
            num(relay.rss_growth_mb),
            num(relay.rss_slope_mb_per_min)
        )?,
        None => writeln!(
            s,
            "Not measured: {}.",
            crate::analyze::model::relay_not_sampled(&r.measured)
        )?,
    }
    writeln!(s)?;
    chart(s, r, "resources", "Relay and lt CPU over time")?;
    chart(s, r, "memory", "Relay memory over time")
}

fn rules(s: &mut String, r: &Report) -> std::fmt::Result {
    writeln!(s, "## Rules checked")?;
    writeln!(s)?;
    writeln!(s, "| Rule | Fired | Value | Threshold | Unit |")?;
    writeln!(s, "|---|---|---:|---:|---|")?;
    for c in &r.rules {
        // A "no" beside a value past its threshold says why; a rule not judged says so.
        let fired = match (&c.not_evaluated, c.fired) {
            (Some(why), _) => format!("not evaluated: {}", cell(why)),
            (None, true) => "yes".to_owned(),
            (None, false) if c.threshold > 0.0 && c.value >= c.threshold => {
                "no (its other condition did not hold: see the evidence)".to_owned()
            }
            (None, false) => "no".to_owned(),
        };
        writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            cell(&c.id),
            fired,
            num(c.value),
            num(c.threshold),
            cell(&c.unit)
        )?;
    }
    Ok(())
}

fn checks(s: &mut String, r: &Report) -> std::fmt::Result {
    writeln!(s, "## Checks")?;
    writeln!(s)?;
    let fails = if r.passed() {
        ""
    } else {
        ": **the gate fails**"
    };
    writeln!(s, "{}{fails}.", r.checks_line())?;
    writeln!(s)?;
    writeln!(s, "| Check | Observed | Result | Note |")?;
    writeln!(s, "|---|---:|---|---|")?;
    for c in &r.checks {
        let observed = c
            .observed
            .map_or_else(|| "–".to_owned(), |x| format!("{}{}", num(x), c.unit));
        writeln!(
            s,
            "| `{}` | {} | {} | {} |",
            cell(&c.expression),
            cell(&observed),
            if c.passed { "pass" } else { "**FAIL**" },
            cell(c.note.as_deref().unwrap_or(""))
        )?;
    }
    writeln!(s)
}
