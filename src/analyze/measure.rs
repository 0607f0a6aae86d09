//! Measuring: every figure of a report (the types in `model.rs`), built from the tally of
//! the runs and the relay profiles passed in, without I/O and without judging it (that is
//! the next step, `judge`). Times are rounded to microseconds here, as `model.rs` says.

use std::collections::BTreeMap;

use super::against;
use super::class::Class;
use super::deliveries;
use super::model::{
    Config, Connections, CryptoShare, Dist, Errors, Example, Headline, HotFunctions,
    LatencyOverTime, LatencyReport, LatencySet, LatencyWindow, MachineInfo, Measured,
    MessageSummary, Reads, RelayHeld, RelayInfo, RelayResources, ResourcePoint, Resources,
    SecondCounts, TextCount, Throughput, Totals, TypeTotals,
};
use super::read::Ids;
use super::read::Runs;
use super::stats::{self, round3};
pub use super::stats::{percentiles_ms, percentiles_scaled, Percentiles};
use super::tally::{Latencies, Tally};
use crate::capture::results::{Machine, Sample};
use crate::profile::Profile;

/// Measures `runs`. `ids` resolves example records (empty when no trace is at hand);
/// `profiles` are the relay profiles kept beside the results files (`replay --profile`).
pub fn measure(runs: &Runs, ids: &Ids, profiles: &[Profile]) -> Measured {
    let t = &runs.tally;
    let h = &runs.header;
    let duration_s = t
        .trailers
        .iter()
        .map(|tr| tr.elapsed_ns as f64 / 1e9)
        .fold(0.0, f64::max);
    let config = Config {
        target: h.target.clone(),
        trace_fingerprint: h.trace_fingerprint.clone(),
        trace_records: h.trace_records,
        trace_header: serde_json::to_value(&h.trace_header).unwrap_or(serde_json::Value::Null),
        options: h.options.clone(),
        lt_version: h.lt_version.clone(),
        machine: machine(&h.machine),
        started_at: h.started_at.clone(),
        duration_s: round3(duration_s),
        files: runs
            .files
            .iter()
            .map(|p| {
                p.file_name()
                    .map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into())
            })
            .collect(),
        interrupted: t.trailers.iter().any(|tr| tr.interrupted),
        merge_warnings: runs.merge_warnings.clone(),
        partial: runs.partial.clone(),
        relay: h.preflight.as_ref().map(relay_info),
        shards: (t.shards > 1).then_some(t.shards),
        runs: t.runs.max(1),
        untrusted_shards: untrusted_parts(runs),
    };
    let mut m = Measured {
        summary: Vec::new(),
        config,
        totals: totals(t),
        latency: latency(t),
        throughput: throughput(t, duration_s),
        latency_over_time: latency_over_time(t),
        errors: errors(t, ids),
        connections: connections(t),
        resources: resources(t),
        hot_functions: hot_functions(runs.files.len(), profiles),
        against_recording: against::report(&t.against),
        live_deliveries: deliveries::report(&t.deliveries),
        scraped: t
            .scraped
            .first()
            .and_then(|rows| super::scraped::scraped(h, rows)),
    };
    m.summary = summary(&m);
    m
}

/// For each part of a sharded run (kept by `read` as it read them) that was not trustworthy
/// on its own: which, and why. A part whose lt fell behind can hide in the merged figures
/// (its late sends a small share of all of them), so each is judged on its own, and the
/// merged run is trustworthy only if every part was.
fn untrusted_parts(runs: &Runs) -> Vec<String> {
    let mut out = Vec::new();
    for one in &runs.parts {
        let (Some(part), Some(path)) = (one.header.part, one.files.first()) else {
            continue;
        };
        let t = super::trust::trust(&measure(one, &Ids::new(), &[]));
        if !t.trustworthy {
            out.push(format!(
                "shard {}/{} ({}) was not trustworthy on its own: {}",
                part.index,
                part.count,
                path.file_name().map_or_else(
                    || path.display().to_string(),
                    |n| n.to_string_lossy().into()
                ),
                t.reasons.join("; ")
            ));
        }
    }
    out
}

fn relay_info(p: &crate::capture::results::Preflight) -> RelayInfo {
    let doc = p
        .document
        .as_deref()
        .and_then(|t| crate::nip11::Document::parse(t).ok());
    let limitation = p
        .document
        .as_deref()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok())
        .and_then(|v| v.get("limitation").cloned());
    RelayInfo {
        url: p.url.clone(),
        build: doc.as_ref().and_then(crate::nip11::Document::build),
        name: doc.as_ref().and_then(|d| d.name.clone()),
        software: doc.as_ref().and_then(|d| d.software.clone()),
        version: doc.as_ref().and_then(|d| d.version.clone()),
        limitation,
        note: p.note.clone(),
        predictions: p.predictions.clone(),
    }
}

/// Response, service and lag over every request of `t`, as the report's `latency.overall`.
pub fn latency_overall(t: &Tally) -> LatencySet {
    latency_set(&t.overall())
}

fn latency_set(l: &Latencies) -> LatencySet {
    let bounded = |h| {
        percentiles_ms(h).map(|p| Percentiles {
            at_timeout: l.at_timeout,
            ..p
        })
    };
    LatencySet {
        response_ms: bounded(&l.response),
        service_ms: bounded(&l.service),
        schedule_lag_ms: percentiles_ms(&l.lag),
    }
}

/// Functions listed in a report.
const HOT_FUNCTIONS: usize = 15;

/// From the profiles kept beside the results files (`replay --profile`), if any, of `runs`
/// runs.
fn hot_functions(runs: usize, profiles: &[Profile]) -> HotFunctions {
    if profiles.is_empty() {
        return HotFunctions {
            measured: false,
            note: "not measured".into(),
            functions: Vec::new(),
            crypto: None,
        };
    }
    let mut by_fn: BTreeMap<(String, String), (f64, u64)> = BTreeMap::new();
    for p in profiles {
        for f in &p.functions {
            let e = by_fn.entry((f.symbol.clone(), f.dso.clone())).or_default();
            e.0 += f.percent / profiles.len() as f64;
            e.1 += f.samples;
        }
    }
    let mut functions: Vec<crate::profile::HotFunction> = by_fn
        .into_iter()
        .map(
            |((symbol, dso), (percent, samples))| crate::profile::HotFunction {
                symbol,
                dso,
                percent: round3(percent),
                samples,
            },
        )
        .collect();
    functions.sort_by(|a, b| b.percent.total_cmp(&a.percent));
    let crypto_functions: Vec<crate::profile::HotFunction> = functions
        .iter()
        .filter(|f| crate::profile::is_crypto(&f.symbol))
        .cloned()
        .collect();
    let crypto = CryptoShare {
        percent: round3(crypto_functions.iter().map(|f| f.percent).sum()),
        functions: crypto_functions,
    };
    functions.truncate(HOT_FUNCTIONS);
    let samples: u64 = profiles.iter().map(|p| p.samples).sum();
    HotFunctions {
        measured: true,
        note: format!(
            "{} of {} run(s) profiled ({}), {samples} samples of the relay",
            profiles.len(),
            runs,
            profiles[0].tool
        ),
        functions,
        crypto: Some(crypto),
    }
}

fn machine(m: &Machine) -> MachineInfo {
    MachineInfo {
        cores: m.cores,
        kernel: m.kernel.clone(),
        cpu: m.cpu.clone(),
    }
}

fn totals(t: &Tally) -> Totals {
    let not_sent = t.count("not_sent");
    let dropped = t.count("dropped");
    // Requests only: a CLOSE frame is never answered, so it cannot succeed or fail.
    let attempted: u64 = t.requests().map(|c| c.attempted).sum();
    let succeeded: u64 = t.requests().map(|c| c.succeeded).sum();
    let mut failed_by_class = BTreeMap::new();
    for (label, n) in &t.by_outcome {
        let class = match label.as_str() {
            l if l.starts_with("rejected") => "rejected",
            l if l.starts_with("closed") => "closed",
            "timeout" => "timeout",
            "disconnected" => "disconnected",
            "lost" => "lost",
            // Stored, but the client was never told: failed as the client saw it.
            "stored_unacked" => "stored_unacked",
            _ => continue,
        };
        *failed_by_class.entry(class.to_owned()).or_insert(0) += n;
    }
    Totals {
        attempted,
        succeeded,
        failed: attempted.saturating_sub(succeeded),
        failed_by_class,
        not_sent,
        dropped,
        success_rate_pct: if attempted == 0 {
            0.0
        } else {
            round3(succeeded as f64 * 100.0 / attempted as f64)
        },
        by_outcome: t.by_outcome.clone(),
        by_type: Class::ALL
            .iter()
            .map(|&c| TypeTotals {
                record_type: c.label().into(),
                records: t.class(c).records,
                succeeded: t.class(c).succeeded,
            })
            .collect(),
        bytes_sent: t.bytes_sent,
    }
}

fn latency(t: &Tally) -> LatencyReport {
    let read = t.class(Class::Read);
    let overall = t.overall();
    LatencyReport {
        overall: latency_set(&overall),
        own_lag_ms: percentiles_ms(&t.held.own_lag(&overall.lag)),
        relay_held: RelayHeld {
            records: t.held.records,
            share_pct: round3(if overall.lag.is_empty() {
                0.0
            } else {
                t.held.records as f64 * 100.0 / overall.lag.len() as f64
            }),
            held_ms: percentiles_ms(&t.held.held),
        },
        by_type: Class::ALL
            .iter()
            .map(|&c| (c.label().to_owned(), latency_set(&t.class(c).latency)))
            .collect(),
        reads: Reads {
            req_to_eose_ms: percentiles_ms(&read.latency.service),
            events_returned: percentiles_scaled(&t.events_returned, 1.0),
        },
        note: "Response and service times cover records the relay answered (OK, EOSE, CLOSED), \
               and records it did not answer within the timeout (timeout, stored_unacked, lost) \
               at the timeout itself, a lower bound (`at_timeout` says how many); disconnected \
               records have no time and are counted under errors. \
               Overall schedule lag covers records sent at their own time (views, video posts, \
               reads): mirrors wait for their post's OK and CLOSEs for their REQ's EOSE, so their \
               lag, shown per type, is the relay's answer time. Own lag is schedule lag less \
               the time the relay held lt back (its socket full, or an in-flight cap reached)."
            .into(),
    }
}

fn throughput(t: &Tally, duration_s: f64) -> Throughput {
    let s = &t.timeline.seconds;
    let ok: u64 = s.iter().map(|x| x.ok).sum();
    Throughput {
        ok_per_s: if duration_s > 0.0 {
            round3(ok as f64 / duration_s / f64::from(t.runs.max(1)))
        } else {
            0.0
        },
        peak_scheduled_per_s: s.iter().map(|x| x.scheduled).max().unwrap_or(0),
        peak_ok_per_s: s.iter().map(|x| x.ok).max().unwrap_or(0),
        per_second: s
            .iter()
            .enumerate()
            .map(|(i, x)| SecondCounts {
                t_s: i as u64,
                scheduled: x.scheduled,
                sent: x.sent,
                ok: x.ok,
                rejected: x.rejected,
                failed: x.failed,
            })
            .collect(),
    }
}

fn latency_over_time(t: &Tally) -> LatencyOverTime {
    let w = t.timeline.window_s;
    LatencyOverTime {
        window_s: w,
        windows: t
            .timeline
            .windows
            .iter()
            .enumerate()
            .filter(|(_, h)| !h.is_empty())
            .map(|(i, h)| LatencyWindow {
                t_s: i as u64 * w,
                count: h.len(),
                p50_ms: round3(h.value_at_quantile(0.5) as f64 / 1_000.0),
                p99_ms: round3(h.value_at_quantile(0.99) as f64 / 1_000.0),
            })
            .collect(),
    }
}

/// Top messages listed in a report.
const TOP_MESSAGES: usize = 10;

fn errors(t: &Tally, ids: &Ids) -> Errors {
    let mut rejected_by_prefix = BTreeMap::new();
    let mut closed_by_prefix = BTreeMap::new();
    for (label, n) in &t.by_outcome {
        // Labels carry the prefix as NIP-01 writes it (`rejected rate-limited:`).
        if let Some(p) = label.strip_prefix("rejected ") {
            rejected_by_prefix.insert(p.trim_end_matches(':').to_owned(), *n);
        } else if let Some(p) = label.strip_prefix("closed ") {
            closed_by_prefix.insert(p.trim_end_matches(':').to_owned(), *n);
        }
    }
    let mut top: Vec<MessageSummary> = t
        .messages
        .by_text
        .iter()
        .map(|((outcome, message), m)| MessageSummary {
            outcome: outcome.clone(),
            message: message.clone(),
            count: m.count,
            examples: m
                .examples
                .iter()
                .map(|&record| Example {
                    record,
                    id: ids.get(&record).cloned(),
                })
                .collect(),
        })
        .collect();
    top.sort_by(|a, b| b.count.cmp(&a.count).then(a.message.cmp(&b.message)));
    let kept: u64 = top.iter().skip(TOP_MESSAGES).map(|m| m.count).sum();
    top.truncate(TOP_MESSAGES);
    let sum = |f: fn(&crate::capture::results::Trailer) -> u64| t.trailers.iter().map(f).sum();
    Errors {
        rejected_by_prefix,
        closed_by_prefix,
        duplicates: t.count("duplicate"),
        timeouts: t.count("timeout"),
        disconnects: t.count("disconnected"),
        close_codes: t.close_codes.clone(),
        dropped: t.count("dropped"),
        not_sent: t.count("not_sent"),
        stored_unacked: t.count("stored_unacked"),
        lost: t.count("lost"),
        notices: sum(|tr| tr.notices),
        notice_texts: by_count(&t.notices),
        top_messages: top,
        other_messages: t.messages.other + kept,
        unparseable_frames: sum(|tr| tr.unparseable_frames),
        oversized_frames: sum(|tr| tr.oversized_frames),
        late_acks: sum(|tr| tr.late_acks),
    }
}

fn by_count(map: &BTreeMap<String, u64>) -> Vec<TextCount> {
    let mut v: Vec<TextCount> = map
        .iter()
        .map(|(text, &count)| TextCount {
            text: text.clone(),
            count,
        })
        .collect();
    v.sort_by(|a, b| b.count.cmp(&a.count).then(a.text.cmp(&b.text)));
    v.truncate(TOP_MESSAGES);
    v
}

fn connections(t: &Tally) -> Connections {
    let c = &t.connects;
    Connections {
        initial: c.initial,
        initial_failed: c.initial_failed,
        reconnects: c.reconnects,
        reconnects_failed: c.reconnects_failed,
        connect_ms: percentiles_ms(&c.latency),
        tcp_connect_ms: percentiles_ms(&c.tcp),
        tls_handshake_ms: percentiles_ms(&c.tls),
        upgrade_ms: percentiles_ms(&c.upgrade),
        failure_causes: by_count(&c.causes),
    }
}

fn dist(xs: &[f64]) -> Option<Dist> {
    stats::summarize(xs).map(|s| Dist {
        avg: round3(s.avg),
        p95: round3(s.p95),
        max: round3(s.max),
    })
}

const MB: f64 = 1024.0 * 1024.0;

fn resources(t: &Tally) -> Resources {
    let all: Vec<&Sample> = t.samples.iter().flatten().collect();
    let col = |f: &dyn Fn(&Sample) -> Option<f64>| -> Vec<f64> {
        all.iter().filter_map(|s| f(s)).collect()
    };
    let relay_cpu = col(&|s| s.relay_cpu_pct.map(f64::from));
    let relay_rss = col(&|s| s.relay_rss_bytes.map(|b| b as f64 / MB));
    let relay = match (dist(&relay_cpu), dist(&relay_rss)) {
        (Some(cpu_pct), Some(rss_mb)) => {
            let (growth, slope) = rss_trend(&t.samples);
            Some(RelayResources {
                cpu_pct,
                rss_mb,
                rss_growth_mb: round3(growth),
                rss_slope_mb_per_min: round3(slope),
            })
        }
        _ => None,
    };
    let series = t
        .samples
        .iter()
        .enumerate()
        .flat_map(|(run, ss)| {
            ss.iter().map(move |s| ResourcePoint {
                run: run as u32,
                t_s: round3(s.at_ns as f64 / 1e9),
                relay_cpu_pct: s.relay_cpu_pct.map(|c| round3(f64::from(c))),
                relay_rss_mb: s.relay_rss_bytes.map(|b| round3(b as f64 / MB)),
                harness_cpu_pct: round3(f64::from(s.harness_cpu_pct)),
                schedule_lag_max_ms: round3(s.lag_max_us as f64 / 1_000.0),
                connections_open: s.connections_open,
                in_flight: s.in_flight,
            })
        })
        .collect();
    Resources {
        samples: all.len() as u64,
        relay,
        harness_cpu_pct: dist(&col(&|s| Some(f64::from(s.harness_cpu_pct)))),
        harness_rss_mb: dist(&col(&|s| Some(s.harness_rss_bytes as f64 / MB))),
        schedule_lag_max_ms: dist(&col(&|s| Some(s.lag_max_us as f64 / 1_000.0))),
        connections_open: dist(&col(&|s| Some(f64::from(s.connections_open)))),
        in_flight: dist(&col(&|s| Some(f64::from(s.in_flight)))),
        series,
    }
}

/// Largest RSS growth (last − first, MB) and trend (MB/min) over the runs.
fn rss_trend(runs: &[Vec<Sample>]) -> (f64, f64) {
    let mut growth = f64::MIN;
    let mut slope = f64::MIN;
    for ss in runs {
        let pts: Vec<(f64, f64)> = ss
            .iter()
            .filter_map(|s| Some((s.at_ns as f64 / 60e9, s.relay_rss_bytes? as f64 / MB)))
            .collect();
        if let (Some(first), Some(last)) = (pts.first(), pts.last()) {
            growth = growth.max(last.1 - first.1);
        }
        if let Some(s) = stats::slope(&pts) {
            slope = slope.max(s);
        }
    }
    (
        if growth == f64::MIN { 0.0 } else { growth },
        if slope == f64::MIN { 0.0 } else { slope },
    )
}

/// One headline: its id (what `--check summary.ID` and comparisons name), its label and
/// unit, and where its figure comes from (`None`: the run measured nothing for it, and the
/// summary leaves it out).
pub struct HeadlineDef {
    pub id: &'static str,
    pub label: &'static str,
    pub unit: &'static str,
    value: fn(&Measured) -> Option<f64>,
}

const fn def(
    id: &'static str,
    label: &'static str,
    unit: &'static str,
    value: fn(&Measured) -> Option<f64>,
) -> HeadlineDef {
    HeadlineDef {
        id,
        label,
        unit,
        value,
    }
}

fn response(r: &Measured) -> Option<&Percentiles> {
    r.latency.overall.response_ms.as_ref()
}

fn service(r: &Measured) -> Option<&Percentiles> {
    r.latency.overall.service_ms.as_ref()
}

fn eose(r: &Measured) -> Option<&Percentiles> {
    r.latency.reads.req_to_eose_ms.as_ref()
}

fn delivery(r: &Measured) -> Option<&Percentiles> {
    r.live_deliveries.as_ref()?.latency_ms.as_ref()
}

fn relay(r: &Measured) -> Option<&RelayResources> {
    r.resources.relay.as_ref()
}

/// A figure of the relay's side (`--scrape`, this machine's `/proc`), by preset.
fn scraped(r: &Measured, preset: &str, id: &str) -> Option<f64> {
    super::scraped::figure(r.scraped.as_ref(), preset, id)
}

/// Every headline, in the order the summary shows them (the figures the Markdown summary
/// shows first, and `lt compare` compares). A new headline is one entry here.
// One line per headline reads as a table.
#[rustfmt::skip]
pub static HEADLINES: [HeadlineDef; 26] = [
    def("attempted", "Records attempted", "records", |r| Some(r.totals.attempted as f64)),
    def("succeeded", "Records succeeded", "records", |r| Some(r.totals.succeeded as f64)),
    def("failed", "Records failed", "records", |r| Some(r.totals.failed as f64)),
    def("success_rate", "Success rate", "%", |r| Some(r.totals.success_rate_pct)),
    def("ok_per_s", "Succeeded per second", "records/s", |r| Some(r.throughput.ok_per_s)),
    def("response_p50", "Response time p50", "ms", |r| response(r).map(|p| p.p50)),
    def("response_p90", "Response time p90", "ms", |r| response(r).map(|p| p.p90)),
    def("response_p99", "Response time p99", "ms", |r| response(r).map(|p| p.p99)),
    def("response_p99_9", "Response time p99.9", "ms", |r| response(r).map(|p| p.p99_9)),
    def("response_max", "Response time max", "ms", |r| response(r).map(|p| p.max)),
    def("service_p50", "Service time p50", "ms", |r| service(r).map(|p| p.p50)),
    def("service_p99", "Service time p99", "ms", |r| service(r).map(|p| p.p99)),
    def("eose_p50", "REQ → EOSE p50", "ms", |r| eose(r).map(|p| p.p50)),
    def("eose_p99", "REQ → EOSE p99", "ms", |r| eose(r).map(|p| p.p99)),
    // lt's own part of the lag (less the time the relay held it back): what the label
    // says. The whole lag is in the latency table.
    def("lag_p99", "lt's own schedule lag p99", "ms", |r| {
        r.latency.own_lag_ms.as_ref().or(r.latency.overall.schedule_lag_ms.as_ref()).map(|p| p.p99)
    }),
    // Every request the client would have timed out on, whatever reconciliation found
    // later: a stored_unacked event is a timeout the relay happened to keep.
    def("timeouts", "Timeouts (no answer in time)", "records", |r| {
        Some((r.errors.timeouts + r.errors.stored_unacked + r.errors.lost) as f64)
    }),
    def("delivery_p50", "Delivery latency p50", "ms", |r| delivery(r).map(|p| p.p50)),
    def("delivery_p99", "Delivery latency p99", "ms", |r| delivery(r).map(|p| p.p99)),
    def("missed_share", "Deliveries missed", "% of expected", |r| r.live_deliveries.as_ref().map(|d| d.missed_pct)),
    def("relay_cpu_avg", "Relay CPU avg", "% of a core", |r| relay(r).map(|x| x.cpu_pct.avg)),
    def("relay_cpu_max", "Relay CPU max", "% of a core", |r| relay(r).map(|x| x.cpu_pct.max)),
    def("relay_rss_max", "Relay RSS max", "MB", |r| relay(r).map(|x| x.rss_mb.max)),
    // The relay's side, from its own metrics and the host's (docs/relay-metrics.md).
    def("relay_write_p99", "Relay's own event write time p99", "ms", |r| scraped(r, "nostr-rs-relay", "write_p99_ms")),
    def("relay_query_p99", "Relay's own query time p99", "ms", |r| scraped(r, "nostr-rs-relay", "query_p99_ms")),
    def("host_cpu_busy", "Host CPU busy, mean", "%", |r| scraped(r, "node-exporter", "cpu_busy_pct")),
    def("host_cpu_per_event", "Host CPU per EVENT sent (core-ms)", "ms", |r| scraped(r, "node-exporter", "cpu_per_event_ms")),
];

/// The headline named `id`.
pub fn headline_named(id: &str) -> Option<&'static HeadlineDef> {
    HEADLINES.iter().find(|h| h.id == id)
}

fn summary(r: &Measured) -> Vec<Headline> {
    HEADLINES
        .iter()
        .filter_map(|h| {
            (h.value)(r).map(|value| Headline {
                id: h.id.into(),
                label: h.label.into(),
                value,
                unit: h.unit.into(),
            })
        })
        .collect()
}
