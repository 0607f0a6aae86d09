//! Rules on what the relay's side said (`--scrape`, this machine's `/proc`): each cites its
//! figure and the source it came from, and says "not evaluated" when no source had it.

use super::{figure, Check};
use crate::analyze::model::Measured;
use crate::analyze::rules;
use crate::analyze::scraped::{ScrapedFigure, ScrapedSource};

/// A disk busy this share of the run (mean of its intervals) bounds the relay's writes.
pub const DISK_BUSY_BOUND_PCT: f64 = 80.0;
/// ... as does the host's CPU waiting for I/O this share of its time.
pub const IOWAIT_BOUND_PCT: f64 = 10.0;
/// Memory available below this share of the total is pressure (besides any swapping out).
pub const MEM_AVAILABLE_FLOOR_PCT: f64 = 5.0;
/// TCP segments retransmitted, as a share of those sent, that count as a network problem.
pub const RETRANSMIT_BOUND_PCT: f64 = 1.0;
/// lt's response p99 over the relay's own write p99 at which the time is spent before the
/// relay's timer starts (its input queue, the network, lt) ...
pub const OUTSIDE_FACTOR: f64 = 5.0;
/// ... provided lt's p99 is at least this (ms): 5 × 0.2 ms is no queue.
pub const OUTSIDE_FLOOR_MS: f64 = 50.0;
/// When lt's p99 rises through the run, the share of the milliseconds it added that the
/// relay's own write p99 added too, from which the slowdown is the relay's (below it, the
/// time was added before the relay's timer started).
pub const INSIDE_SHARE_PCT: f64 = 50.0;

const NO_HOST: &str =
    "no host metrics (add --scrape with a node_exporter, or --relay-pid for a relay on this machine)";
const NO_RELAY: &str = "no relay metrics (add --scrape with the relay's own /metrics)";

/// Whether the run has host figures (a node_exporter, or this machine's `/proc`): the host
/// rules apply only then, as the live rules apply only to runs with live subscriptions.
pub(super) fn has_host(r: &Measured) -> bool {
    sources(r, "node-exporter").next().is_some()
}

/// Whether a relay's own metrics were scraped: the relay-metric rules apply only then.
pub(super) fn has_relay_metrics(r: &Measured) -> bool {
    sources(r, "nostr-rs-relay").next().is_some() || sources(r, "rnostr").next().is_some()
}

/// Sources of `preset`, in the header's order.
fn sources<'a>(r: &'a Measured, preset: &'a str) -> impl Iterator<Item = &'a ScrapedSource> {
    r.scraped
        .iter()
        .flat_map(|s| s.sources.iter())
        .filter(move |s| s.preset == preset)
}

/// The first `preset` source that has figure `id`, and the figure.
fn first<'a>(r: &'a Measured, preset: &'a str, id: &str) -> Option<(&'a ScrapedSource, f64)> {
    sources(r, preset).find_map(|s| s.figures.iter().find(|f| f.id == id).map(|f| (s, f.value)))
}

/// Figures of the first `preset` source whose id `matches`.
fn matching<'a>(
    r: &'a Measured,
    preset: &'a str,
    matches: impl Fn(&str) -> bool,
) -> Option<(&'a ScrapedSource, Vec<&'a ScrapedFigure>)> {
    sources(r, preset).find_map(|s| {
        let found: Vec<&ScrapedFigure> = s.figures.iter().filter(|f| matches(&f.id)).collect();
        (!found.is_empty()).then_some((s, found))
    })
}

fn not_evaluated(
    why: &str,
    threshold: f64,
    unit: &'static str,
    action: &str,
    priority: u32,
) -> Check {
    Check {
        fired: false,
        not_evaluated: Some(why.to_owned()),
        value: 0.0,
        threshold,
        unit,
        evidence: why.to_owned(),
        action: action.to_owned(),
        priority,
    }
}

pub(super) fn disk_bound(r: &Measured) -> Check {
    let action = "The relay waits for its disk: put its database on faster storage (local NVMe, not network block storage), batch its writes (nostr-rs-relay: SQLite WAL and synchronous settings), or move what else writes to that disk.";
    let Some((_, disks)) = matching(r, "node-exporter", |id| {
        id.starts_with("disk.") && id.ends_with(".busy_pct")
    }) else {
        return match first(r, "node-exporter", "cpu_iowait_pct") {
            Some(_) => disk_check(r, None, 0.0, action),
            None => not_evaluated(NO_HOST, DISK_BUSY_BOUND_PCT, "% of the run", action, 75),
        };
    };
    let busiest = disks
        .iter()
        .copied()
        .max_by(|a, b| a.value.total_cmp(&b.value));
    let value = busiest.map_or(0.0, |f| f.value);
    disk_check(r, busiest, value, action)
}

fn disk_check(r: &Measured, busiest: Option<&ScrapedFigure>, busy: f64, action: &str) -> Check {
    let iowait = first(r, "node-exporter", "cpu_iowait_pct");
    let wait = iowait.map_or(0.0, |(_, v)| v);
    let location = iowait.map_or("", |(s, _)| s.location.as_str());
    let disk = busiest.map_or_else(
        || "no disk was busy".to_owned(),
        |f| {
            let dev =
                f.id.trim_start_matches("disk.")
                    .trim_end_matches(".busy_pct");
            format!("disk {dev} busy {}% of the run", figure(busy))
        },
    );
    Check {
        fired: busy >= DISK_BUSY_BOUND_PCT || wait >= IOWAIT_BOUND_PCT,
        not_evaluated: None,
        value: busy,
        threshold: DISK_BUSY_BOUND_PCT,
        unit: "% of the run",
        evidence: format!(
            "{disk} (fires at ≥ {DISK_BUSY_BOUND_PCT}%), host CPU in iowait {}% (fires at ≥ {IOWAIT_BOUND_PCT}%), from {location}",
            figure(wait)
        ),
        action: action.to_owned(),
        priority: 75,
    }
}

pub(super) fn memory_pressure(r: &Measured) -> Check {
    let action = "The host ran short of memory: the relay's caches (SQLite page cache, LMDB map) lose to swapping. Give the host more memory, lower the relay's cache sizes, or move other processes off it before reading latency.";
    let Some((src, swapped)) = first(r, "node-exporter", "swap_out_pages") else {
        return not_evaluated(NO_HOST, 1.0, "pages", action, 75);
    };
    let avail = first(r, "node-exporter", "mem_available_bytes_min").map(|(_, v)| v);
    let total = first(r, "node-exporter", "mem_total_bytes").map(|(_, v)| v);
    let avail_pct = avail
        .zip(total)
        .filter(|(_, t)| *t > 0.0)
        .map(|(a, t)| 100.0 * a / t);
    Check {
        fired: swapped >= 1.0 || avail_pct.is_some_and(|p| p < MEM_AVAILABLE_FLOOR_PCT),
        not_evaluated: None,
        value: swapped,
        threshold: 1.0,
        unit: "pages",
        evidence: format!(
            "{} pages swapped out during the run (fires at ≥ 1); memory available at least {} of the total (fires below {MEM_AVAILABLE_FLOOR_PCT}%), from {}",
            figure(swapped),
            avail_pct.map_or_else(|| "unknown".to_owned(), |p| format!("{}%", figure(p))),
            src.location
        ),
        action: action.to_owned(),
        priority: 75,
    }
}

pub(super) fn network_errors(r: &Measured) -> Check {
    let action = "Packets were dropped or resent between lt and the relay: check the interfaces' queues and errors (ip -s link), the NIC and its driver, a proxy or load balancer in between, and the host's socket buffers (net.core.rmem_max).";
    let Some((src, faults)) = matching(r, "node-exporter", |id| {
        id.starts_with("net.") && (id.ends_with(".drops") || id.ends_with(".errors"))
    })
    .or_else(|| first(r, "node-exporter", "tcp_retransmits").map(|(s, _)| (s, Vec::new()))) else {
        return not_evaluated(NO_HOST, 1.0, "packets", action, 60);
    };
    let packets: f64 = faults.iter().map(|f| f.value).sum();
    let retrans = first(r, "node-exporter", "tcp_retransmits").map(|(_, v)| v);
    let out = first(r, "node-exporter", "tcp_out_segments").map(|(_, v)| v);
    let retrans_pct = retrans
        .zip(out)
        .filter(|(_, o)| *o > 0.0)
        .map(|(n, o)| 100.0 * n / o);
    Check {
        fired: packets >= 1.0 || retrans_pct.is_some_and(|p| p >= RETRANSMIT_BOUND_PCT),
        not_evaluated: None,
        value: packets,
        threshold: 1.0,
        unit: "packets",
        evidence: format!(
            "{} packets dropped or in error on the host's network devices (fires at ≥ 1); TCP retransmitted {} of segments sent (fires at ≥ {RETRANSMIT_BOUND_PCT}%), from {}",
            figure(packets),
            retrans_pct.map_or_else(|| "an unknown share".to_owned(), |p| format!("{}%", figure(p))),
            src.location
        ),
        action: action.to_owned(),
        priority: 60,
    }
}

pub(super) fn queueing_before_relay(r: &Measured) -> Check {
    let action = "Most of the response time passed before the relay's own write timer started: the relay's input queue (one connection task per client, a writer channel), the network, or lt. Raise the relay's writer buffer (nostr-rs-relay: [limits] event_persist_buffer), check its connection handling, and lt's trust verdict.";
    let Some((src, write_p99)) = first(r, "nostr-rs-relay", "write_p99_ms") else {
        return not_evaluated(NO_RELAY, OUTSIDE_FACTOR, "×", action, 55);
    };
    let lt_p99 = r
        .latency
        .overall
        .response_ms
        .as_ref()
        .map_or(0.0, |p| p.p99);
    let ratio = if write_p99 > 0.0 {
        lt_p99 / write_p99
    } else {
        0.0
    };
    Check {
        fired: ratio >= OUTSIDE_FACTOR && lt_p99 >= OUTSIDE_FLOOR_MS,
        not_evaluated: None,
        value: ratio,
        threshold: OUTSIDE_FACTOR,
        unit: "×",
        evidence: format!(
            "lt's response p99 {} ms is {}× the relay's own event-write p99 {} ms (fires at ≥ {OUTSIDE_FACTOR}× with lt's p99 ≥ {OUTSIDE_FLOOR_MS} ms), from {}",
            figure(lt_p99),
            figure(ratio),
            figure(write_p99),
            src.location
        ),
        action: action.to_owned(),
        priority: 55,
    }
}

pub(super) fn relay_count_mismatch(r: &Measured) -> Check {
    let action = "The relay's own count of events differs from what lt sent: frames were lost or duplicated on the way (a proxy, a load balancer), another client wrote to the relay during the run, or the relay counts differently. Run against a relay no one else uses, without anything in between, and compare again.";
    let Some(a) = r.scraped.as_ref().and_then(|s| s.events_agreement.as_ref()) else {
        return not_evaluated(NO_RELAY, 1.0, "events", action, 85);
    };
    let diff = (a.relay_events - a.lt_events_sent as f64).abs();
    let location = r
        .scraped
        .iter()
        .flat_map(|s| s.sources.iter())
        .find(|s| s.source == a.source)
        .map_or("", |s| s.location.as_str());
    Check {
        fired: diff >= 1.0,
        not_evaluated: None,
        value: diff,
        threshold: 1.0,
        unit: "events",
        evidence: format!(
            "the relay counted {} events, lt sent {} (fires at a difference ≥ 1), from {location}",
            figure(a.relay_events),
            a.lt_events_sent
        ),
        action: action.to_owned(),
        priority: 85,
    }
}

/// lt's response p99 and the relay's own event-write p99 early in the run and late in it,
/// over the spans `latency_rising` compares (the first tenth of lt's latency windows, at
/// least two, and the last third), each the median of its span's p99s.
struct Slowdown {
    lt: (f64, f64),
    relay: (f64, f64),
    location: String,
}

impl Slowdown {
    /// lt's p99 rose as `latency_rising` fires on.
    fn rose(&self) -> bool {
        rules::rose(self.lt.0, self.lt.1)
    }

    /// The share of the ms lt's p99 added that the relay's own p99 added, %.
    fn inside_pct(&self) -> f64 {
        let added = self.lt.1 - self.lt.0;
        if added <= 0.0 {
            return 0.0;
        }
        (100.0 * (self.relay.1 - self.relay.0) / added).max(0.0)
    }

    fn evidence(&self) -> String {
        format!(
            "lt's response p99 went from {} ms to {} ms (first tenth of the run to the last third; a rise is ×{} and ≥ {} ms); the relay's own event-write p99 over the same spans from {} ms to {} ms: {}% of the time lt's p99 added (the relay's at ≥ {INSIDE_SHARE_PCT}%), from {}",
            figure(self.lt.0),
            figure(self.lt.1),
            rules::RISE_FACTOR,
            rules::RISE_FLOOR_MS,
            figure(self.relay.0),
            figure(self.relay.1),
            figure(self.inside_pct()),
            self.location
        )
    }
}

fn slowdown(r: &Measured) -> Result<Slowdown, String> {
    let Some((src, line)) =
        sources(r, "nostr-rs-relay").find_map(|s| s.line("write_p99_ms").map(|l| (s, l)))
    else {
        return Err(NO_RELAY.to_owned());
    };
    let w = &r.latency_over_time.windows;
    let Some((early, late)) = rules::rise_spans(w) else {
        return Err(format!(
            "{} latency window(s); a trend needs at least 6",
            w.len()
        ));
    };
    let width = r.latency_over_time.window_s as f64;
    let early_end = early[early.len() - 1].t_s as f64 + width;
    let late_start = late[0].t_s as f64;
    let median = |mut v: Vec<f64>| -> Option<f64> {
        (v.len() >= 2).then(|| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        })
    };
    let span = |keep: &dyn Fn(f64) -> bool| {
        median(
            line.points
                .iter()
                .filter(|p| keep(p.t_s))
                .map(|p| p.value)
                .collect(),
        )
    };
    // A point is its interval's end: an interval ending within a second after the early
    // span ended is still mostly in it.
    let relay = span(&|t| t <= early_end + 1.0)
        .zip(span(&|t| t > late_start))
        .ok_or_else(|| {
            format!(
                "the relay's write p99 has fewer than two intervals in the first tenth or the last third of the run (from {})",
                src.location
            )
        })?;
    let thin = rules::thin_windows(early, late);
    if thin > 0 {
        return Err(format!(
            "{thin} of lt's latency windows compared have fewer than {} replies, too few for a p99",
            rules::MIN_WINDOW_REPLIES
        ));
    }
    Ok(Slowdown {
        lt: (rules::median_p99(early), rules::median_p99(late)),
        relay,
        location: src.location.clone(),
    })
}

fn slowdown_check(r: &Measured, inside: bool, action: &str, priority: u32) -> Check {
    let s = match slowdown(r) {
        Ok(s) => s,
        Err(why) => {
            return not_evaluated(&why, INSIDE_SHARE_PCT, "% of lt's rise", action, priority)
        }
    };
    let share = s.inside_pct();
    let fired = s.rose() && (share >= INSIDE_SHARE_PCT) == inside;
    Check {
        fired,
        not_evaluated: None,
        value: share,
        threshold: INSIDE_SHARE_PCT,
        unit: "% of lt's rise",
        evidence: s.evidence(),
        action: action.to_owned(),
        priority,
    }
}

/// lt's latency rose and the relay's own write timer rose with it: the slowdown is inside
/// the relay (its storage, its locks).
pub(super) fn slowdown_in_relay(r: &Measured) -> Check {
    slowdown_check(
        r,
        true,
        "The relay's own event-write time rose as lt's response time did: the slowdown is inside the relay's write path. Look at its storage (disk busy, fsync, SQLite WAL checkpoints, LMDB map growth), its write lock, and the database's size as the run went on.",
        74,
    )
}

/// lt's latency rose while the relay's own write timer stayed flat: the time was added
/// before the relay timed the write (its input queue, the network, lt).
pub(super) fn slowdown_before_relay(r: &Measured) -> Check {
    slowdown_check(
        r,
        false,
        "lt's response time rose while the relay's own event-write time stayed flat: the time is added before the relay's timer starts: its connection tasks and writer queue (nostr-rs-relay: [limits] event_persist_buffer), the network, or lt (see the trust verdict). Compare the offered rate with what the relay completed.",
        74,
    )
}
