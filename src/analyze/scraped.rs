//! What the relay's side said during the run (`--scrape`, this machine's `/proc`): the
//! `series` and `scrape` rows of a results file, read into figures by each source's preset.
//! A counter's figure is its increase over the run (the baseline scrape is taken before the
//! clock starts, the last one at the end), a gauge's its mean, least or most, a histogram's
//! quantile is taken from its buckets' increase (never an average of quantiles).

use std::collections::{BTreeMap, HashMap};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::capture::results::{Header, ScrapeRow, ScrapeSource, SeriesKind, SeriesRow};

/// One results file's scraped rows, as read.
#[derive(Debug, Clone, Default)]
pub struct ScrapedRows {
    pub series: Vec<SeriesRow>,
    pub scrapes: Vec<ScrapeRow>,
    /// EVENT frames lt sent in the file, for the relay's own count to agree with.
    pub events_sent: u64,
}

impl ScrapedRows {
    pub fn add(&mut self, other: ScrapedRows) {
        self.series.extend(other.series);
        self.scrapes.extend(other.scrapes);
        self.events_sent += other.events_sent;
    }
}

/// The report's section.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Scraped {
    /// One per source, in the order the results header lists them.
    pub sources: Vec<ScrapedSource>,
    /// The relay's own count of EVENT commands over the run against the EVENT frames lt
    /// sent, when a relay's metrics were scraped: they must agree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_agreement: Option<EventsAgreement>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ScrapedSource {
    pub source: u16,
    /// `http://host:port/path`, or `/proc`, `/proc/PID` for lt's own reading.
    pub location: String,
    pub preset: String,
    /// Scrapes asked for, and of them those without values (failed, timed out, garbage,
    /// or not taken because the one before was still running).
    pub scrapes: u64,
    pub gaps: u64,
    /// The first gap's reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_gap: Option<String>,
    pub figures: Vec<ScrapedFigure>,
    /// A few figures interval by interval, on lt's clock: the report's charts of the
    /// relay's side and the rules that need a trend read them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub over_time: Vec<ScrapedLine>,
}

/// One figure over the run: a point per interval between scrapes (neighbouring intervals
/// merged, from their counters and buckets, never by averaging, past [`LINE_POINTS`]).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ScrapedLine {
    /// The run-wide figure's id it follows (`write_p99_ms`, `cpu_busy_pct`, …).
    pub id: String,
    pub label: String,
    pub unit: String,
    pub points: Vec<ScrapedPoint>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema)]
pub struct ScrapedPoint {
    /// The interval's end, seconds from t0.
    pub t_s: f64,
    pub value: f64,
}

/// At most this many points per line: a run of hours still charts, and its report stays small.
pub const LINE_POINTS: usize = 300;

impl ScrapedSource {
    /// Its line `id`, when it has one.
    pub fn line(&self, id: &str) -> Option<&ScrapedLine> {
        self.over_time.iter().find(|l| l.id == id)
    }
}

/// One figure of one source: `id` is what `--check` names (`scraped.<preset>.<id>`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ScrapedFigure {
    pub id: String,
    pub label: String,
    pub value: f64,
    pub unit: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct EventsAgreement {
    /// The source whose counter it is.
    pub source: u16,
    /// The relay's counter's increase over the run.
    pub relay_events: f64,
    /// EVENT frames lt sent in the run.
    pub lt_events_sent: u64,
    pub agree: bool,
}

/// The section for the first file's scrapes (`header` is its header), or `None` when it
/// has none.
pub fn scraped(header: &Header, rows: &ScrapedRows) -> Option<Scraped> {
    if header.scrapes.is_empty() {
        return None;
    }
    let events_sent = rows.events_sent;
    let sources: Vec<ScrapedSource> = header
        .scrapes
        .iter()
        .map(|s| source_figures(s, rows))
        .collect();
    let events_agreement = sources.iter().find_map(|s| {
        let relay_events = s.figures.iter().find(|f| f.id == "events_received")?.value;
        Some(EventsAgreement {
            source: s.source,
            relay_events,
            lt_events_sent: events_sent,
            agree: relay_events.round() as u64 == events_sent,
        })
    });
    Some(Scraped {
        sources,
        events_agreement,
    })
}

/// One figure of the first source with `preset` (a `--scrape` comes before lt's own
/// reading of this machine, so a staging host's node_exporter is the host).
pub fn figure(scraped: Option<&Scraped>, preset: &str, id: &str) -> Option<f64> {
    scraped?
        .sources
        .iter()
        .filter(|s| s.preset == preset)
        .find_map(|s| s.figures.iter().find(|f| f.id == id))
        .map(|f| f.value)
}

/// One source's series over the run: time (s from t0) and value per successful scrape.
struct Data<'a> {
    series: Vec<&'a SeriesRow>,
    points: HashMap<u32, Vec<(f64, f64)>>,
    /// The source's successful scrapes, s from t0, in order.
    times: Vec<f64>,
    /// EVENT frames lt sent over the run, for figures per event.
    events_sent: u64,
}

impl<'a> Data<'a> {
    fn new(source: u16, rows: &'a ScrapedRows) -> Data<'a> {
        let series = rows.series.iter().filter(|s| s.source == source).collect();
        let mut scrapes: Vec<&ScrapeRow> = rows
            .scrapes
            .iter()
            .filter(|r| r.source == source && r.error.is_none())
            .collect();
        scrapes.sort_by_key(|r| r.at_ns);
        let first = scrapes.first().map(|r| r.at_ns as f64 / 1e9);
        let times: Vec<f64> = scrapes.iter().map(|r| r.at_ns as f64 / 1e9).collect();
        let events_sent = rows.events_sent;
        let mut points: HashMap<u32, Vec<(f64, f64)>> = HashMap::new();
        for r in scrapes {
            let t = r.at_ns as f64 / 1e9;
            for (id, v) in &r.values {
                points.entry(*id).or_default().push((t, *v));
            }
        }
        // A counter first seen after the source's first answer began at 0 then: a relay
        // exports a counter only once it has counted something (rnostr's first EVENT), and
        // its first value already holds what it counted before.
        let Some(first) = first else {
            return Data {
                series,
                points,
                times,
                events_sent,
            };
        };
        for s in &series {
            let counts = matches!(s.kind, SeriesKind::Counter | SeriesKind::Histogram)
                || s.name.ends_with("_total")
                || s.name.ends_with("_count");
            if let Some(p) = points.get_mut(&s.id).filter(|p| counts && p[0].0 > first) {
                p.insert(0, (first, 0.0));
            }
        }
        Data {
            series,
            points,
            times,
            events_sent,
        }
    }

    fn named(&self, name: &str) -> impl Iterator<Item = &&'a SeriesRow> + '_ {
        let name = name.to_owned();
        self.series.iter().filter(move |s| s.name == name)
    }

    fn points(&self, s: &SeriesRow) -> &[(f64, f64)] {
        self.points.get(&s.id).map_or(&[], Vec::as_slice)
    }

    /// The increase of every series named `name` (summed), over the run.
    fn increase(&self, name: &str) -> Option<f64> {
        let mut total = None;
        for s in self.named(name) {
            *total.get_or_insert(0.0) += increase(self.points(s))?;
        }
        total
    }

    /// The increase of `name` per value of its label `label`.
    fn increase_by(&self, name: &str, label: &str) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for s in self.named(name) {
            if let (Some(v), Some(inc)) = (label_of(s, label), increase(self.points(s))) {
                *out.entry(v.to_owned()).or_default() += inc;
            }
        }
        out
    }

    /// Per interval, the summed rate of `name`'s series that `keep` accepts.
    fn rates(&self, name: &str, keep: impl Fn(&SeriesRow) -> bool) -> Vec<f64> {
        let mut by_interval: BTreeMap<u64, f64> = BTreeMap::new();
        for s in self.named(name).filter(|s| keep(s)) {
            for w in self.points(s).windows(2) {
                let dt = w[1].0 - w[0].0;
                if dt > 0.0 {
                    let d = if w[1].1 >= w[0].1 {
                        w[1].1 - w[0].1
                    } else {
                        w[1].1
                    };
                    *by_interval.entry((w[1].0 * 1000.0) as u64).or_default() += d / dt;
                }
            }
        }
        by_interval.into_values().collect()
    }

    /// Gauge `name` summed over its series at each scrape.
    fn gauge(&self, name: &str) -> Vec<f64> {
        let mut at: BTreeMap<u64, f64> = BTreeMap::new();
        for s in self.named(name) {
            for (t, v) in self.points(s) {
                *at.entry((t * 1e6) as u64).or_default() += v;
            }
        }
        at.into_values().collect()
    }

    /// Quantile `q` of histogram `base` (all its series together) over the run.
    fn quantile(&self, base: &str, q: f64) -> Option<f64> {
        let mut buckets: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
        for s in self.named(&format!("{base}_bucket")) {
            let le = label_of(s, "le").and_then(crate::scrape::exposition::number)?;
            let inc = increase(self.points(s))?;
            let e = buckets.entry(le.to_bits()).or_insert((le, 0.0));
            e.1 += inc;
        }
        let mut b: Vec<(f64, f64)> = buckets.into_values().collect();
        b.sort_by(|x, y| x.0.total_cmp(&y.0));
        histogram_quantile(&b, q)
    }
}

impl Data<'_> {
    /// The intervals a line has: between successive scrapes, or, past [`LINE_POINTS`],
    /// between every k-th, so a line has at most that many points.
    fn intervals(&self) -> Vec<(f64, f64)> {
        let n = self.times.len();
        if n < 2 {
            return Vec::new();
        }
        let k = (n - 1).div_ceil(LINE_POINTS).max(1);
        let mut ends: Vec<usize> = (0..n).step_by(k).collect();
        if ends.last() != Some(&(n - 1)) {
            ends.push(n - 1);
        }
        ends.windows(2)
            .map(|w| (self.times[w[0]], self.times[w[1]]))
            .collect()
    }

    /// Per interval of [`Data::intervals`], the summed rate of `name`'s series that `keep`
    /// accepts: (interval end, per second).
    fn rate_line(&self, name: &str, keep: impl Fn(&SeriesRow) -> bool) -> Vec<(f64, f64)> {
        let kept: Vec<&SeriesRow> = self.named(name).filter(|s| keep(s)).copied().collect();
        if kept.is_empty() {
            return Vec::new();
        }
        self.intervals()
            .into_iter()
            .filter(|(a, b)| b > a)
            .map(|(a, b)| {
                let d: f64 = kept.iter().map(|s| increase_in(self.points(s), a, b)).sum();
                (b, d / (b - a))
            })
            .collect()
    }

    /// Per interval, quantile `q` of histogram `base` from its buckets' increase within the
    /// interval; intervals that observed nothing have no point.
    fn quantile_line(&self, base: &str, q: f64) -> Vec<(f64, f64)> {
        let buckets: Vec<(f64, &SeriesRow)> = self
            .named(&format!("{base}_bucket"))
            .filter_map(|s| {
                let le = label_of(s, "le").and_then(crate::scrape::exposition::number)?;
                Some((le, *s))
            })
            .collect();
        if buckets.is_empty() {
            return Vec::new();
        }
        self.intervals()
            .into_iter()
            .filter_map(|(a, b)| {
                let mut by_le: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
                for (le, s) in &buckets {
                    by_le.entry(le.to_bits()).or_insert((*le, 0.0)).1 +=
                        increase_in(self.points(s), a, b);
                }
                let mut cumulative: Vec<(f64, f64)> = by_le.into_values().collect();
                cumulative.sort_by(|x, y| x.0.total_cmp(&y.0));
                Some((b, histogram_quantile(&cumulative, q)?))
            })
            .collect()
    }
}

/// A counter's increase over the steps of `points` that end in `(a, b]` (across resets).
fn increase_in(points: &[(f64, f64)], a: f64, b: f64) -> f64 {
    points
        .windows(2)
        .filter(|w| w[1].0 > a && w[1].0 <= b)
        .map(|w| {
            if w[1].1 >= w[0].1 {
                w[1].1 - w[0].1
            } else {
                w[1].1
            }
        })
        .sum()
}

fn label_of<'s>(s: &'s SeriesRow, name: &str) -> Option<&'s str> {
    s.labels
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A counter's increase over `points`, across resets (a value lower than the one before
/// starts again from zero, as Prometheus' `increase` reads it).
fn increase(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    Some(
        points
            .windows(2)
            .map(|w| {
                if w[1].1 >= w[0].1 {
                    w[1].1 - w[0].1
                } else {
                    w[1].1
                }
            })
            .sum(),
    )
}

/// Prometheus' `histogram_quantile` over cumulative buckets `(le, count)`, sorted by `le`:
/// linear within the bucket the rank falls in; the `+Inf` bucket answers its lower bound.
pub fn histogram_quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut prev = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(prev.0);
            }
            let within = count - prev.1;
            let frac = if within > 0.0 {
                (rank - prev.1) / within
            } else {
                1.0
            };
            return Some(prev.0 + (le - prev.0) * frac);
        }
        prev = (le, count);
    }
    Some(prev.0)
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

fn max(v: &[f64]) -> Option<f64> {
    v.iter().copied().reduce(f64::max)
}

fn min(v: &[f64]) -> Option<f64> {
    v.iter().copied().reduce(f64::min)
}

/// The figures a source's preset makes of its series.
fn source_figures(source: &ScrapeSource, rows: &ScrapedRows) -> ScrapedSource {
    let own: Vec<&ScrapeRow> = rows
        .scrapes
        .iter()
        .filter(|r| r.source == source.source)
        .collect();
    let gaps: Vec<&&ScrapeRow> = own.iter().filter(|r| r.error.is_some()).collect();
    let data = Data::new(source.source, rows);
    let mut figures = Figures::default();
    match source.preset.as_str() {
        "node-exporter" => host(&data, &mut figures),
        "nostr-rs-relay" => nostr_rs_relay(&data, &mut figures),
        "rnostr" => rnostr(&data, &mut figures),
        "process" => process(&data, &mut figures),
        _ => other(&data, &mut figures),
    }
    ScrapedSource {
        source: source.source,
        location: source.location.clone(),
        preset: source.preset.clone(),
        scrapes: own.len() as u64,
        gaps: gaps.len() as u64,
        first_gap: gaps.first().and_then(|r| r.error.clone()),
        figures: figures.figures,
        over_time: figures.lines,
    }
}

#[derive(Default)]
struct Figures {
    figures: Vec<ScrapedFigure>,
    lines: Vec<ScrapedLine>,
}

impl Figures {
    /// Figure `id` interval by interval; a line of fewer than two points says nothing.
    fn line(&mut self, id: &str, label: &str, points: Vec<(f64, f64)>, unit: &str) {
        let points: Vec<ScrapedPoint> = points
            .into_iter()
            .filter(|(_, v)| v.is_finite())
            .map(|(t_s, value)| ScrapedPoint {
                t_s: (t_s * 1000.0).round() / 1000.0,
                value: (value * 1000.0).round() / 1000.0,
            })
            .collect();
        if points.len() >= 2 {
            self.lines.push(ScrapedLine {
                id: id.to_owned(),
                label: label.to_owned(),
                unit: unit.to_owned(),
                points,
            });
        }
    }

    fn put(
        &mut self,
        id: impl Into<String>,
        label: impl Into<String>,
        value: Option<f64>,
        unit: &str,
    ) {
        if let Some(value) = value.filter(|v| v.is_finite()) {
            self.figures.push(ScrapedFigure {
                id: id.into(),
                label: label.into(),
                value: (value * 1000.0).round() / 1000.0,
                unit: unit.to_owned(),
            });
        }
    }
}

/// node_exporter's series (or lt's reading of this machine's `/proc`).
fn host(d: &Data, f: &mut Figures) {
    host_cpu(d, f);
    host_memory(d, f);
    host_disks(d, f);
    host_network(d, f);
    f.put(
        "tcp_retransmits",
        "TCP segments retransmitted",
        d.increase("node_netstat_Tcp_RetransSegs"),
        "segments",
    );
    f.put(
        "tcp_out_segments",
        "TCP segments sent",
        d.increase("node_netstat_Tcp_OutSegs"),
        "segments",
    );
    f.put(
        "open_files_max",
        "open files (host), most",
        max(&d.gauge("node_filefd_allocated")),
        "",
    );
}

/// CPU by mode, as a share of all the cores' time.
fn host_cpu(d: &Data, f: &mut Figures) {
    let cpu = "node_cpu_seconds_total";
    let all = d.rates(cpu, |_| true);
    let mode = |m: &'static str| d.rates(cpu, move |s| label_of(s, "mode") == Some(m));
    let (idle, iowait) = (mode("idle"), mode("iowait"));
    // Busy: every mode but idle and iowait, as a share of all the cores' time.
    let busy: Vec<f64> = all
        .iter()
        .zip(
            idle.iter()
                .zip(iowait.iter().chain(std::iter::repeat(&0.0))),
        )
        .filter(|(a, _)| **a > 0.0)
        .map(|(a, (i, w))| 100.0 * (1.0 - (i + w) / a))
        .collect();
    let share = |m: Vec<f64>| -> Vec<f64> {
        m.iter()
            .zip(&all)
            .filter(|(_, a)| **a > 0.0)
            .map(|(x, a)| 100.0 * x / a)
            .collect()
    };
    f.put(
        "cpu_busy_pct",
        "host CPU busy, mean (all cores)",
        mean(&busy),
        "%",
    );
    host_cpu_lines(d, f);
    f.put(
        "cpu_busy_pct_max",
        "host CPU busy, busiest interval",
        max(&busy),
        "%",
    );
    let by_mode = d.increase_by(cpu, "mode");
    let busy_core_s: Option<f64> = (!by_mode.is_empty()).then(|| {
        by_mode
            .iter()
            .filter(|(m, _)| !matches!(m.as_str(), "idle" | "iowait"))
            .map(|(_, v)| v)
            .sum()
    });
    f.put(
        "cpu_busy_core_s",
        "host CPU busy, core-seconds",
        busy_core_s,
        "s",
    );
    // Every process's busy time on that host (lt's own too, when it runs there) per EVENT
    // lt sent: builds that take the same load compared on what it cost.
    f.put(
        "cpu_per_event_ms",
        "host CPU busy per EVENT sent (core-ms)",
        busy_core_s
            .filter(|_| d.events_sent > 0)
            .map(|s| s * 1e3 / d.events_sent as f64),
        "ms",
    );
    for m in ["user", "system", "iowait", "softirq", "steal"] {
        f.put(
            format!("cpu_{m}_pct"),
            format!("host CPU in {m}, mean"),
            mean(&share(mode(m))),
            "%",
        );
    }
}

/// Host CPU busy and iowait interval by interval, for the host chart.
fn host_cpu_lines(d: &Data, f: &mut Figures) {
    let cpu = "node_cpu_seconds_total";
    let line = |m: Option<&'static str>| {
        d.rate_line(cpu, move |s| m.is_none() || label_of(s, "mode") == m)
    };
    let (all_l, idle_l, iowait_l) = (line(None), line(Some("idle")), line(Some("iowait")));
    f.line(
        "cpu_busy_pct",
        "host CPU busy (all cores)",
        all_l
            .iter()
            .zip(&idle_l)
            .filter(|((_, a), _)| *a > 0.0)
            .map(|(&(t, a), &(_, i))| {
                let w = iowait_l
                    .iter()
                    .find(|(tw, _)| *tw == t)
                    .map_or(0.0, |x| x.1);
                (t, 100.0 * (1.0 - (i + w) / a))
            })
            .collect(),
        "%",
    );
    f.line(
        "cpu_iowait_pct",
        "host CPU in iowait",
        all_l
            .iter()
            .zip(&iowait_l)
            .filter(|((_, a), _)| *a > 0.0)
            .map(|(&(t, a), &(_, w))| (t, 100.0 * w / a))
            .collect(),
        "%",
    );
}

/// Load, memory and swap.
fn host_memory(d: &Data, f: &mut Figures) {
    f.put(
        "load1_max",
        "load average (1 min), highest",
        max(&d.gauge("node_load1")),
        "",
    );
    f.put(
        "mem_total_bytes",
        "memory in all",
        max(&d.gauge("node_memory_MemTotal_bytes")),
        "bytes",
    );
    let avail = d.gauge("node_memory_MemAvailable_bytes");
    f.put(
        "mem_available_bytes_min",
        "memory available, least",
        min(&avail),
        "bytes",
    );
    f.put(
        "mem_available_drop_bytes",
        "memory available, fall from the start",
        avail.first().zip(min(&avail)).map(|(a, m)| a - m),
        "bytes",
    );
    let (total, free) = (
        d.gauge("node_memory_SwapTotal_bytes"),
        d.gauge("node_memory_SwapFree_bytes"),
    );
    let used: Vec<f64> = total.iter().zip(&free).map(|(t, f)| t - f).collect();
    f.put(
        "swap_used_bytes_max",
        "swap in use, most",
        max(&used),
        "bytes",
    );
    f.put(
        "swap_out_pages",
        "pages swapped out",
        d.increase("node_vmstat_pswpout"),
        "pages",
    );
}

/// Every disk that did something: busy time and bytes.
fn host_disks(d: &Data, f: &mut Figures) {
    let devices: Vec<String> = d
        .named("node_disk_io_time_seconds_total")
        .filter_map(|s| label_of(s, "device").map(str::to_owned))
        .collect();
    for dev in devices {
        let on = |s: &SeriesRow| label_of(s, "device") == Some(dev.as_str());
        let busy: Vec<f64> = d
            .rates("node_disk_io_time_seconds_total", on)
            .iter()
            .map(|r| 100.0 * r)
            .collect();
        let (read, written) = (
            d.rates("node_disk_read_bytes_total", on),
            d.rates("node_disk_written_bytes_total", on),
        );
        // Idle devices say nothing: left out.
        if max(&busy).unwrap_or(0.0) == 0.0 && max(&written).unwrap_or(0.0) == 0.0 {
            continue;
        }
        f.put(
            format!("disk.{dev}.busy_pct_max"),
            format!("disk {dev} busy, busiest interval"),
            max(&busy),
            "%",
        );
        f.put(
            format!("disk.{dev}.busy_pct"),
            format!("disk {dev} busy, mean"),
            mean(&busy),
            "%",
        );
        f.line(
            &format!("disk.{dev}.busy_pct"),
            &format!("disk {dev} busy"),
            d.rate_line("node_disk_io_time_seconds_total", on)
                .into_iter()
                .map(|(t, r)| (t, 100.0 * r))
                .collect(),
            "%",
        );
        f.put(
            format!("disk.{dev}.read_bytes_per_s"),
            format!("disk {dev} read, mean"),
            mean(&read),
            "bytes/s",
        );
        f.put(
            format!("disk.{dev}.written_bytes_per_s"),
            format!("disk {dev} written, mean"),
            mean(&written),
            "bytes/s",
        );
    }
}

/// Every network device that carried something: bytes, drops and errors.
fn host_network(d: &Data, f: &mut Figures) {
    let nets: Vec<String> = d
        .named("node_network_receive_bytes_total")
        .filter_map(|s| label_of(s, "device").map(str::to_owned))
        .collect();
    for dev in nets {
        let on = |s: &SeriesRow| label_of(s, "device") == Some(dev.as_str());
        let (rx, tx) = (
            d.rates("node_network_receive_bytes_total", on),
            d.rates("node_network_transmit_bytes_total", on),
        );
        if max(&rx).unwrap_or(0.0) == 0.0 && max(&tx).unwrap_or(0.0) == 0.0 {
            continue;
        }
        let sum = |names: [&str; 2]| -> Option<f64> {
            let mut total = None;
            for n in names {
                for s in d.named(n).filter(|s| on(s)) {
                    *total.get_or_insert(0.0) += increase(d.points(s))?;
                }
            }
            total
        };
        f.put(
            format!("net.{dev}.receive_bytes_per_s"),
            format!("network {dev} received, mean"),
            mean(&rx),
            "bytes/s",
        );
        f.put(
            format!("net.{dev}.transmit_bytes_per_s"),
            format!("network {dev} sent, mean"),
            mean(&tx),
            "bytes/s",
        );
        f.put(
            format!("net.{dev}.drops"),
            format!("network {dev} packets dropped"),
            sum([
                "node_network_receive_drop_total",
                "node_network_transmit_drop_total",
            ]),
            "packets",
        );
        f.put(
            format!("net.{dev}.errors"),
            format!("network {dev} errors"),
            sum([
                "node_network_receive_errs_total",
                "node_network_transmit_errs_total",
            ]),
            "packets",
        );
    }
}

/// nostr-rs-relay 0.8.12's `/metrics` (its `src/server.rs`).
fn nostr_rs_relay(d: &Data, f: &mut Figures) {
    // Every EVENT that parsed goes to the writer, which times it: one count per event. Its
    // `nostr_cmd_event_total` is no such count: 0.8.12 counts each EVENT twice (1,744 for
    // 872 sent, measured), so it is shown as what it is.
    f.put(
        "events_received",
        "EVENTs the relay's writer handled",
        d.increase("nostr_events_write_seconds_count"),
        "events",
    );
    f.put(
        "cmd_event_total",
        "nostr_cmd_event_total's increase (0.8.12 counts each EVENT twice)",
        d.increase("nostr_cmd_event_total"),
        "",
    );
    f.put(
        "reqs_received",
        "REQ commands the relay counted",
        d.increase("nostr_cmd_req_total"),
        "requests",
    );
    f.put(
        "connections",
        "connections the relay counted",
        d.increase("nostr_connections_total"),
        "",
    );
    for (q, name) in [(0.5, "p50"), (0.99, "p99")] {
        f.put(
            format!("write_{name}_ms"),
            format!("event write time, {name} (the relay's own timer)"),
            d.quantile("nostr_events_write_seconds", q).map(|s| s * 1e3),
            "ms",
        );
        f.put(
            format!("query_{name}_ms"),
            format!("query time, {name} (the relay's own timer)"),
            d.quantile("nostr_query_seconds", q).map(|s| s * 1e3),
            "ms",
        );
    }
    for (reason, n) in d.increase_by("nostr_disconnects_total", "reason") {
        f.put(
            format!("disconnects.{reason}"),
            format!("disconnects: {reason}"),
            Some(n),
            "",
        );
    }
    for (reason, n) in d.increase_by("nostr_query_abort_total", "reason") {
        f.put(
            format!("query_aborts.{reason}"),
            format!("queries aborted: {reason}"),
            Some(n),
            "",
        );
    }
    f.put(
        "db_connections_max",
        "database connections, most",
        max(&d.gauge("nostr_db_connections")),
        "",
    );
    nostr_rs_relay_lines(d, f);
}

/// nostr-rs-relay's own timers and its events per second, interval by interval.
fn nostr_rs_relay_lines(d: &Data, f: &mut Figures) {
    let ms = |points: Vec<(f64, f64)>| points.into_iter().map(|(t, v)| (t, v * 1e3)).collect();
    f.line(
        "write_p99_ms",
        "event write time, p99 (the relay's own timer)",
        ms(d.quantile_line("nostr_events_write_seconds", 0.99)),
        "ms",
    );
    f.line(
        "query_p99_ms",
        "query time, p99 (the relay's own timer)",
        ms(d.quantile_line("nostr_query_seconds", 0.99)),
        "ms",
    );
    f.line(
        "events_received",
        "EVENTs the relay's writer handled per second",
        d.rate_line("nostr_events_write_seconds_count", |_| true),
        "events/s",
    );
}

/// rnostr 0.4.8's `/metrics` (nostr-extensions' `src/metrics.rs`).
fn rnostr(d: &Data, f: &mut Figures) {
    let by_command = d.increase_by("nostr_relay_message_total", "command");
    f.put(
        "events_received",
        "EVENT messages the relay counted",
        by_command.get("EVENT").copied(),
        "events",
    );
    f.put(
        "reqs_received",
        "REQ messages the relay counted",
        by_command.get("REQ").copied(),
        "requests",
    );
    // Counted when written, so not duplicates or refusals.
    f.put(
        "events_stored",
        "new events the relay stored",
        d.increase("nostr_relay_new_event"),
        "events",
    );
    f.line(
        "events_stored",
        "new events the relay stored per second",
        d.rate_line("nostr_relay_new_event", |_| true),
        "events/s",
    );
    f.put(
        "sessions",
        "sessions the relay counted",
        d.increase("nostr_relay_session_total"),
        "",
    );
    f.put(
        "sessions_stopped",
        "sessions the relay stopped",
        d.increase("nostr_relay_session_stop_total"),
        "",
    );
    f.put(
        "sessions_max",
        "active sessions, most",
        max(&d.gauge("nostr_relay_session")),
        "",
    );
}

/// A relay process on this machine (`/proc/PID`).
fn process(d: &Data, f: &mut Figures) {
    let cpu: Vec<f64> = d
        .rates("process_cpu_seconds_total", |_| true)
        .iter()
        .map(|r| 100.0 * r)
        .collect();
    f.put(
        "cpu_pct",
        "relay process CPU, mean (% of one core)",
        mean(&cpu),
        "%",
    );
    f.put(
        "cpu_pct_max",
        "relay process CPU, busiest interval",
        max(&cpu),
        "%",
    );
    f.put(
        "rss_bytes_max",
        "relay process RSS, most",
        max(&d.gauge("process_resident_memory_bytes")),
        "bytes",
    );
    f.put(
        "threads_max",
        "relay process threads, most",
        max(&d.gauge("process_threads")),
        "",
    );
    f.put(
        "open_fds_max",
        "relay process open fds, most",
        max(&d.gauge("process_open_fds")),
        "",
    );
    f.put(
        "read_bytes",
        "relay process read from storage",
        d.increase("process_io_read_bytes_total"),
        "bytes",
    );
    f.put(
        "written_bytes",
        "relay process written to storage",
        d.increase("process_io_write_bytes_total"),
        "bytes",
    );
    for (kind, n) in d.increase_by("process_context_switches_total", "kind") {
        f.put(
            format!("context_switches.{kind}"),
            format!("relay process context switches, {kind}"),
            Some(n),
            "",
        );
    }
}

/// Any exposition: counters as their increase, gauges as their mean and most, histograms
/// as p50 and p99; at most [`OTHER_FIGURES`] figures.
fn other(d: &Data, f: &mut Figures) {
    let mut families: BTreeMap<String, SeriesKind> = BTreeMap::new();
    for s in &d.series {
        let base = match s.kind {
            SeriesKind::Histogram => s
                .name
                .strip_suffix("_bucket")
                .or_else(|| s.name.strip_suffix("_sum"))
                .or_else(|| s.name.strip_suffix("_count"))
                .unwrap_or(&s.name),
            _ => &s.name,
        };
        families.entry(base.to_owned()).or_insert(s.kind);
    }
    for (name, kind) in families {
        if f.figures.len() >= OTHER_FIGURES {
            break;
        }
        match kind {
            SeriesKind::Counter | SeriesKind::Untyped
                if name.ends_with("_total") || kind == SeriesKind::Counter =>
            {
                f.put(
                    name.clone(),
                    format!("{name}, increase"),
                    d.increase(&name),
                    "",
                )
            }
            SeriesKind::Histogram => {
                f.put(
                    format!("{name}.p50"),
                    format!("{name}, p50"),
                    d.quantile(&name, 0.5),
                    "",
                );
                f.put(
                    format!("{name}.p99"),
                    format!("{name}, p99"),
                    d.quantile(&name, 0.99),
                    "",
                );
            }
            SeriesKind::Summary => {}
            _ => {
                let g = d.gauge(&name);
                f.put(
                    format!("{name}.mean"),
                    format!("{name}, mean"),
                    mean(&g),
                    "",
                );
                f.put(format!("{name}.max"), format!("{name}, most"), max(&g), "");
            }
        }
    }
}

/// Figures an `other` source may add to a report.
const OTHER_FIGURES: usize = 200;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_within_their_bucket() {
        let b = [
            (0.005, 50.0),
            (0.01, 90.0),
            (0.1, 100.0),
            (f64::INFINITY, 100.0),
        ];
        assert_eq!(histogram_quantile(&b, 0.5), Some(0.005));
        let p99 = histogram_quantile(&b, 0.99).unwrap();
        assert!((p99 - 0.091).abs() < 1e-9, "{p99}");
        assert_eq!(
            histogram_quantile(&[(1.0, 0.0), (f64::INFINITY, 0.0)], 0.5),
            None
        );
        // A rank in the +Inf bucket is its lower bound: the highest finite one.
        assert_eq!(
            histogram_quantile(&[(1.0, 1.0), (f64::INFINITY, 10.0)], 0.99),
            Some(1.0)
        );
    }

    #[test]
    fn a_counter_increase_survives_a_reset() {
        assert_eq!(
            increase(&[(0.0, 10.0), (1.0, 15.0), (2.0, 3.0), (3.0, 5.0)]),
            Some(10.0)
        );
        assert_eq!(increase(&[(0.0, 10.0)]), None);
    }

    /// A histogram with buckets le=0.01 and +Inf, and its _count, scraped at 0..=n s.
    fn histogram_rows(per_s: &[(f64, f64)]) -> ScrapedRows {
        let series = |id, name: &str, le: Option<&str>, kind| SeriesRow {
            source: 0,
            id,
            name: name.into(),
            labels: le
                .map(|v| vec![("le".into(), v.into())])
                .unwrap_or_default(),
            kind,
        };
        let mut rows = ScrapedRows {
            series: vec![
                series(0, "w_bucket", Some("0.01"), SeriesKind::Histogram),
                series(1, "w_bucket", Some("+Inf"), SeriesKind::Histogram),
                series(2, "w_count", None, SeriesKind::Histogram),
            ],
            ..Default::default()
        };
        // Cumulative: each second adds `fast` observations under 10 ms and `slow` over.
        let (mut fast, mut all) = (0.0, 0.0);
        for (t, (f, slow)) in std::iter::once((0.0, 0.0))
            .chain(per_s.iter().copied())
            .enumerate()
        {
            fast += f;
            all += f + slow;
            rows.scrapes.push(ScrapeRow {
                source: 0,
                at_ns: t as u64 * 1_000_000_000,
                took_us: 1,
                values: vec![(0, fast), (1, all), (2, all)],
                error: None,
            });
        }
        rows
    }

    #[test]
    fn a_line_has_a_quantile_and_a_rate_per_interval_from_its_buckets() {
        // Two fast seconds, then two where half is slow.
        let rows = histogram_rows(&[(100.0, 0.0), (100.0, 0.0), (50.0, 50.0), (50.0, 50.0)]);
        let d = Data::new(0, &rows);
        let p99 = d.quantile_line("w", 0.99);
        assert_eq!(p99.len(), 4);
        assert!(p99[0].1 <= 0.01 && p99[1].1 <= 0.01, "{p99:?}");
        // A rank in +Inf answers the highest finite bound.
        assert_eq!((p99[2].0, p99[2].1), (3.0, 0.01));
        let rate = d.rate_line("w_count", |_| true);
        assert_eq!(
            rate,
            vec![(1.0, 100.0), (2.0, 100.0), (3.0, 100.0), (4.0, 100.0)]
        );
    }

    #[test]
    fn a_long_run_merges_intervals_from_their_counts_not_by_averaging() {
        // 1,000 one-second intervals of 10 observations each: at most LINE_POINTS points,
        // each still 10 per second.
        let rows = histogram_rows(&vec![(10.0, 0.0); 1000]);
        let d = Data::new(0, &rows);
        let rate = d.rate_line("w_count", |_| true);
        assert!(
            rate.len() <= LINE_POINTS && rate.len() >= LINE_POINTS / 2,
            "{}",
            rate.len()
        );
        assert!(rate.iter().all(|(_, r)| (r - 10.0).abs() < 1e-9));
        assert_eq!(rate.last().unwrap().0, 1000.0);
    }
}
