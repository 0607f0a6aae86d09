//! What each chart shows: the data of a report's charts and of a comparison's, as
//! [`Chart`]s for [`super::svg`] to draw.

use hdrhistogram::Histogram;

use super::svg::{Chart, Series, XAxis};
use crate::analyze::compare::BuildRuns;
use crate::analyze::model::{Measured, ResourcePoint, SecondCounts};
use crate::analyze::scraped::{Scraped, ScrapedSource};
use crate::analyze::tally::Tally;

/// `(percentile, ms)` points of a histogram for a percentile-spectrum chart.
pub fn spectrum(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    h.iter_quantiles(5)
        .map(|v| {
            (
                v.quantile_iterated_to() * 100.0,
                v.value_iterated_to() as f64 / 1_000.0,
            )
        })
        .filter(|(p, _)| *p < 100.0)
        .collect()
}

fn series(name: &str, points: Vec<(f64, f64)>) -> Series {
    Series {
        name: name.into(),
        points,
    }
}

/// A report's charts, each with the name its file ends in (`throughput`, …), in the order
/// the report lists them. The percentile spectrum comes from the histograms in `tally`.
pub fn report(m: &Measured, tally: &Tally) -> Vec<(&'static str, Chart)> {
    let mut charts = load_charts(m, tally);
    charts.extend(resource_charts(m));
    // Live subscriptions only where there are some: the other reports keep their charts.
    if let Some(live) = &m.live_deliveries {
        charts.extend(live_charts(live));
    }
    if let Some(scraped) = &m.scraped {
        charts.extend(scraped_charts(m, scraped));
    }
    charts
}

/// The relay's side on lt's timeline, for the sources that have lines: the relay's own
/// latency beside lt's response time, its event count per second beside lt's OKs, and the
/// host's CPU and disks. A chart only when its source was scraped.
fn scraped_charts(m: &Measured, scraped: &Scraped) -> Vec<(&'static str, Chart)> {
    let first = |preset: &str| {
        scraped
            .sources
            .iter()
            .find(|s| s.preset == preset && !s.over_time.is_empty())
    };
    let mut charts = Vec::new();
    if let Some(relay) = first("nostr-rs-relay").or_else(|| first("rnostr")) {
        charts.extend(relay_charts(m, relay));
    }
    if let Some(host) = first("node-exporter") {
        charts.push(("host", host_chart(host)));
    }
    charts
}

/// A line of a source as chart points.
fn scraped_line(s: &ScrapedSource, id: &str) -> Vec<(f64, f64)> {
    s.line(id)
        .map(|l| l.points.iter().map(|p| (p.t_s, p.value)).collect())
        .unwrap_or_default()
}

/// The relay's own timers beside lt's response p99, and its event count beside lt's OKs.
fn relay_charts(m: &Measured, relay: &ScrapedSource) -> Vec<(&'static str, Chart)> {
    let mut charts = Vec::new();
    if relay.line("write_p99_ms").is_some() {
        let width = m.latency_over_time.window_s as f64;
        let lt_p99 = m
            .latency_over_time
            .windows
            .iter()
            .map(|w| (w.t_s as f64 + width, w.p99_ms))
            .collect();
        charts.push((
            "relay-latency",
            Chart {
                title: "The relay's own timers beside lt's response time (p99)".into(),
                x_label: "seconds from start".into(),
                y_label: "ms".into(),
                x_axis: XAxis::Linear,
                series: vec![
                    series("lt response p99 (per window)", lt_p99),
                    series("relay event write p99", scraped_line(relay, "write_p99_ms")),
                    series("relay query p99", scraped_line(relay, "query_p99_ms")),
                ],
            },
        ));
    }
    let counted = ["events_received", "events_stored"]
        .into_iter()
        .find(|id| relay.line(id).is_some());
    if let Some(id) = counted {
        let ok = m
            .throughput
            .per_second
            .iter()
            .map(|s| (s.t_s as f64 + 1.0, s.ok as f64))
            .collect();
        charts.push((
            "relay-events",
            Chart {
                title: format!(
                    "Events the relay counted ({}) beside lt's OKs, per second",
                    relay.preset
                ),
                x_label: "seconds from start".into(),
                y_label: "per second".into(),
                x_axis: XAxis::Linear,
                series: vec![
                    series("lt OK", ok),
                    series("relay counted", scraped_line(relay, id)),
                ],
            },
        ));
    }
    charts
}

/// The host's CPU busy and iowait, and each active disk's busy time.
fn host_chart(host: &ScrapedSource) -> Chart {
    let mut lines = vec![
        series("CPU busy", scraped_line(host, "cpu_busy_pct")),
        series("CPU iowait", scraped_line(host, "cpu_iowait_pct")),
    ];
    for l in host.over_time.iter().filter(|l| l.id.starts_with("disk.")) {
        lines.push(series(&l.label, scraped_line(host, &l.id)));
    }
    Chart {
        title: format!("The relay's host ({})", host.location),
        x_label: "seconds from start".into(),
        y_label: "% (CPU of all cores; disk time busy)".into(),
        x_axis: XAxis::Linear,
        series: lines,
    }
}

/// Throughput, latency over time and the percentile spectrum.
fn load_charts(m: &Measured, tally: &Tally) -> Vec<(&'static str, Chart)> {
    let overall = tally.overall();
    let per_s = &m.throughput.per_second;
    let col = |f: fn(&SecondCounts) -> u64| -> Vec<(f64, f64)> {
        per_s.iter().map(|s| (s.t_s as f64, f(s) as f64)).collect()
    };
    let w = &m.latency_over_time.windows;
    vec![
        (
            "throughput",
            Chart {
                title: "Throughput per second".into(),
                x_label: "seconds from start".into(),
                y_label: "records / s".into(),
                x_axis: XAxis::Linear,
                series: vec![
                    series("scheduled", col(|s| s.scheduled)),
                    series("sent", col(|s| s.sent)),
                    series("ok", col(|s| s.ok)),
                    series("rejected", col(|s| s.rejected)),
                    series("failed", col(|s| s.failed)),
                ],
            },
        ),
        (
            "latency-over-time",
            Chart {
                title: format!(
                    "Response time per {} s window",
                    m.latency_over_time.window_s
                ),
                x_label: "seconds from start (intended send time)".into(),
                y_label: "ms".into(),
                x_axis: XAxis::Linear,
                series: vec![
                    series("p50", w.iter().map(|x| (x.t_s as f64, x.p50_ms)).collect()),
                    series("p99", w.iter().map(|x| (x.t_s as f64, x.p99_ms)).collect()),
                ],
            },
        ),
        (
            "percentiles",
            Chart {
                title: "Latency by percentile (all records but CLOSE)".into(),
                x_label: "percentile".into(),
                y_label: "ms".into(),
                x_axis: XAxis::PercentileLog,
                series: vec![
                    series("response", spectrum(&overall.response)),
                    series("service", spectrum(&overall.service)),
                    series("schedule lag", spectrum(&overall.lag)),
                ],
            },
        ),
    ]
}

/// CPU and relay memory over the first run.
fn resource_charts(m: &Measured) -> [(&'static str, Chart); 2] {
    let pts = &m.resources.series;
    let first_run = |f: fn(&ResourcePoint) -> Option<f64>| -> Vec<(f64, f64)> {
        pts.iter()
            .filter(|p| p.run == 0)
            .filter_map(|p| Some((p.t_s, f(p)?)))
            .collect()
    };
    [
        (
            "resources",
            Chart {
                title: "CPU over time (first run)".into(),
                x_label: "seconds from start".into(),
                y_label: "% of a core".into(),
                x_axis: XAxis::Linear,
                series: vec![
                    series("relay CPU", first_run(|p| p.relay_cpu_pct)),
                    series("lt CPU", first_run(|p| Some(p.harness_cpu_pct))),
                ],
            },
        ),
        (
            "memory",
            Chart {
                title: "Relay RSS over time (first run)".into(),
                x_label: "seconds from start".into(),
                y_label: "MB".into(),
                x_axis: XAxis::Linear,
                series: vec![series("relay RSS", first_run(|p| p.relay_rss_mb))],
            },
        ),
    ]
}

/// Delivery latency and deliveries per second to live subscriptions.
fn live_charts(live: &crate::analyze::deliveries::LiveDeliveries) -> [(&'static str, Chart); 2] {
    let by_s = |f: fn(&crate::analyze::deliveries::DeliveryPoint) -> f64| -> Vec<(f64, f64)> {
        live.per_second
            .iter()
            .map(|p| (f64::from(p.second), f(p)))
            .collect()
    };
    [
        (
            "delivery-latency",
            Chart {
                title: "Delivery latency to live subscriptions, per second received".into(),
                x_label: "seconds from start".into(),
                y_label: "ms (receipt − intended send time)".into(),
                x_axis: XAxis::Linear,
                series: vec![
                    series("p50", by_s(|p| p.p50_ms)),
                    series("p99", by_s(|p| p.p99_ms)),
                ],
            },
        ),
        (
            "deliveries",
            Chart {
                title: "Deliveries to live subscriptions per second".into(),
                x_label: "seconds from start".into(),
                y_label: "deliveries / s".into(),
                x_axis: XAxis::Linear,
                series: vec![series("received", by_s(|p| p.deliveries as f64))],
            },
        ),
    ]
}

/// A comparison's chart: response-time percentiles of both sides, runs merged.
pub fn comparison(a: &BuildRuns, b: &BuildRuns) -> (&'static str, Chart) {
    (
        "percentiles",
        Chart {
            title: "Response time by percentile, A vs B (runs merged)".into(),
            x_label: "percentile".into(),
            y_label: "ms".into(),
            x_axis: XAxis::PercentileLog,
            series: vec![
                series(
                    &format!("A: {}", a.name),
                    spectrum(&a.tally().overall().response),
                ),
                series(
                    &format!("B: {}", b.name),
                    spectrum(&b.tally().overall().response),
                ),
            ],
        },
    )
}
