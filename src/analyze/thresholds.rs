//! The metrics `lt compare` and `lt ab` judge, and the smallest difference that counts for
//! each, in the metric's own units: latencies and resources relative to A with an absolute
//! floor, the success rate in percentage points, failure counts in records. `--threshold`
//! overrides any of them (parsed here, without touching a file).

use super::verdict::{Better, Threshold};

/// The relative share every relative threshold starts from (percent of A).
pub const DEFAULT_PCT: f64 = 5.0;

/// How a metric's default threshold is set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Preset {
    /// `pct` percent of A, at least `floor` in the metric's unit.
    Relative { pct: f64, floor: f64 },
    /// A fixed amount in the metric's unit (percentage points for the success rate).
    Fixed(f64),
    /// A count: this percentage of the records attempted, so that it says the same as the
    /// success rate's threshold does (at least one record).
    ShareOfAttempted(f64),
}

/// One compared metric: a headline id of the per-run reports.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    pub id: &'static str,
    pub better: Better,
    pub default: Preset,
    /// What a floor may be written with (`0.5ms`), besides a bare number.
    pub suffix: &'static str,
}

/// The success rate's threshold in percentage points: a 1.5-point drop (rnostr's `replaced:`
/// on the demo trace) is a verdict; run-to-run noise on a relay that keeps up is 0 points.
const SUCCESS_PP: f64 = 0.5;
/// Missed deliveries, in percentage points of those expected: a healthy relay misses none,
/// so a tenth of a percent more is already a change in its fan-out.
const MISSED_PP: f64 = 0.1;
/// Latency floors, ms. A difference below the machine's timer and scheduling noise is not a
/// verdict however steady: a bare timerfd loop on this 2-core VM wakes 0.2–0.9 ms late at
/// p99 (benches/replay.rs, the timer floor), so medians need 0.5 ms and tails 1 ms.
const MEDIAN_FLOOR_MS: f64 = 0.5;
const TAIL_FLOOR_MS: f64 = 1.0;
/// Relay CPU, in % of a core, read from /proc once a second: differences under 2 points of
/// a core on average (5 at the busiest second) are not what a comparison of builds is for,
/// whatever the runs say.
const CPU_AVG_FLOOR: f64 = 2.0;
const CPU_MAX_FLOOR: f64 = 5.0;
/// Relay RSS, MB: a couple of allocator arenas; fresh starts of nostr-rs-relay varied by
/// 0.6 MB (standard deviation) on the A/A trace here (tests/fixtures).
const RSS_FLOOR_MB: f64 = 2.0;
/// Host CPU busy, % of all the cores: the relay's own CPU floor, 2 points. Not yet
/// calibrated by A/A runs of its own (the fixtures predate it); `--threshold` overrides.
const HOST_CPU_FLOOR: f64 = 2.0;
/// Host CPU per EVENT, core-ms, lt's own share in it: a chosen floor, not yet calibrated
/// (the A/A test of `lt ab` finds it inconclusive, as it must, at 3 runs a side).
const CPU_PER_EVENT_FLOOR_MS: f64 = 0.05;

const fn relative(floor: f64) -> Preset {
    Preset::Relative {
        pct: DEFAULT_PCT,
        floor,
    }
}

const fn metric(id: &'static str, better: Better, default: Preset, suffix: &'static str) -> Metric {
    Metric {
        id,
        better,
        default,
        suffix,
    }
}

/// lt's own schedule lag is not among them: it says whether a run can be trusted (see the
/// warnings), not which build is better.
pub const METRICS: &[Metric] = &[
    metric(
        "success_rate",
        Better::Higher,
        Preset::Fixed(SUCCESS_PP),
        "pp",
    ),
    metric("ok_per_s", Better::Higher, relative(0.0), "/s"),
    metric(
        "failed",
        Better::Lower,
        Preset::ShareOfAttempted(SUCCESS_PP),
        "records",
    ),
    metric(
        "timeouts",
        Better::Lower,
        Preset::ShareOfAttempted(SUCCESS_PP),
        "records",
    ),
    metric(
        "response_p50",
        Better::Lower,
        relative(MEDIAN_FLOOR_MS),
        "ms",
    ),
    metric(
        "response_p90",
        Better::Lower,
        relative(MEDIAN_FLOOR_MS),
        "ms",
    ),
    metric("response_p99", Better::Lower, relative(TAIL_FLOOR_MS), "ms"),
    metric(
        "response_p99_9",
        Better::Lower,
        relative(TAIL_FLOOR_MS),
        "ms",
    ),
    metric("response_max", Better::Lower, relative(TAIL_FLOOR_MS), "ms"),
    metric(
        "service_p50",
        Better::Lower,
        relative(MEDIAN_FLOOR_MS),
        "ms",
    ),
    metric("service_p99", Better::Lower, relative(TAIL_FLOOR_MS), "ms"),
    metric("eose_p50", Better::Lower, relative(MEDIAN_FLOOR_MS), "ms"),
    metric("eose_p99", Better::Lower, relative(TAIL_FLOOR_MS), "ms"),
    metric("relay_cpu_avg", Better::Lower, relative(CPU_AVG_FLOOR), ""),
    metric("relay_cpu_max", Better::Lower, relative(CPU_MAX_FLOOR), ""),
    metric("relay_rss_max", Better::Lower, relative(RSS_FLOOR_MB), "MB"),
    // The relay's side (runs that scraped it only; elsewhere these are left out).
    metric(
        "relay_write_p99",
        Better::Lower,
        relative(TAIL_FLOOR_MS),
        "ms",
    ),
    metric(
        "relay_query_p99",
        Better::Lower,
        relative(TAIL_FLOOR_MS),
        "ms",
    ),
    metric("host_cpu_busy", Better::Lower, relative(HOST_CPU_FLOOR), ""),
    metric(
        "host_cpu_per_event",
        Better::Lower,
        relative(CPU_PER_EVENT_FLOOR_MS),
        "ms",
    ),
    // Live subscriptions (traces with them only; elsewhere these are left out).
    metric(
        "delivery_p50",
        Better::Lower,
        relative(MEDIAN_FLOOR_MS),
        "ms",
    ),
    metric("delivery_p99", Better::Lower, relative(TAIL_FLOOR_MS), "ms"),
    metric(
        "missed_share",
        Better::Lower,
        Preset::Fixed(MISSED_PP),
        "pp",
    ),
];

impl Metric {
    /// The unit differences and thresholds are given in: the report's unit, except that a
    /// difference of success rates is in percentage points.
    pub fn threshold_unit<'a>(&self, unit: &'a str) -> &'a str {
        if self.suffix == "pp" {
            "pp"
        } else {
            unit
        }
    }
}

pub fn find(id: &str) -> Option<&'static Metric> {
    METRICS.iter().find(|m| m.id == id)
}

/// One `--threshold` as typed.
#[derive(Debug, Clone, PartialEq)]
pub enum Override {
    /// `--threshold 5%`: the relative share of every relative metric.
    AllPct(f64),
    /// `--threshold response_p50=10%,2ms`: one metric's share and/or floor.
    Metric {
        id: &'static str,
        pct: Option<f64>,
        floor: Option<f64>,
    },
}

impl std::str::FromStr for Override {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let Some((id, value)) = s.split_once('=') else {
            return pct(s).map(Override::AllPct).ok_or_else(|| {
                format!("{s:?}: expected a percentage (5%) or METRIC=VALUE (response_p50=1ms)")
            });
        };
        let id = id.trim();
        let m = find(id).ok_or_else(|| {
            let ids: Vec<&str> = METRICS.iter().map(|m| m.id).collect();
            format!(
                "{id:?} is not a compared metric (one of {})",
                ids.join(", ")
            )
        })?;
        let (mut share, mut floor) = (None, None);
        for part in value.split(',').map(str::trim) {
            if part.ends_with('%') {
                if !matches!(m.default, Preset::Relative { .. }) {
                    let unit = if m.suffix.is_empty() {
                        "records"
                    } else {
                        m.suffix
                    };
                    return Err(format!(
                        "{id} is judged in {unit}, not relative to A: write {id}={}{}",
                        part.trim_end_matches('%'),
                        m.suffix
                    ));
                }
                share =
                    Some(pct(part).ok_or_else(|| {
                        format!("{part:?}: expected a percentage from 0 to 1000")
                    })?);
            } else {
                let number = part
                    .strip_suffix(m.suffix)
                    .filter(|_| !m.suffix.is_empty())
                    .unwrap_or(part);
                let v: f64 = number.trim().parse().map_err(|_| {
                    format!(
                        "{part:?}: expected N% (of A) or a number in {id}'s unit ({})",
                        if m.suffix.is_empty() {
                            "% of a core"
                        } else {
                            m.suffix
                        }
                    )
                })?;
                if !(v.is_finite() && v >= 0.0) {
                    return Err(format!("{part:?}: a threshold is zero or more"));
                }
                floor = Some(v);
            }
        }
        Ok(Override::Metric {
            id: m.id,
            pct: share,
            floor,
        })
    }
}

/// `5`, `5%`: a percentage from 0 to 1000.
fn pct(s: &str) -> Option<f64> {
    let v: f64 = s.trim().trim_end_matches('%').trim().parse().ok()?;
    (v.is_finite() && (0.0..1000.0).contains(&v)).then_some(v)
}

/// The overrides a user gave, applied to the defaults.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Thresholds {
    pub overrides: Vec<Override>,
}

impl Thresholds {
    pub fn new(overrides: Vec<Override>) -> Thresholds {
        Thresholds { overrides }
    }

    /// The relative share applied to relative metrics unless one says otherwise.
    pub fn default_pct(&self) -> f64 {
        self.overrides
            .iter()
            .rev()
            .find_map(|o| match o {
                Override::AllPct(p) => Some(*p),
                Override::Metric { .. } => None,
            })
            .unwrap_or(DEFAULT_PCT)
    }

    /// The threshold of `m` for a comparison whose runs attempted `attempted` records.
    pub fn of(&self, m: &Metric, attempted: f64) -> Threshold {
        let mut t = match m.default {
            Preset::Relative { floor, .. } => Threshold {
                pct_of_a: Some(self.default_pct()),
                floor,
            },
            Preset::Fixed(v) => Threshold {
                pct_of_a: None,
                floor: v,
            },
            Preset::ShareOfAttempted(p) => Threshold {
                pct_of_a: None,
                floor: (p / 100.0 * attempted).ceil().max(1.0),
            },
        };
        for o in &self.overrides {
            if let Override::Metric { id, pct, floor } = o {
                if *id == m.id {
                    t.pct_of_a = pct.or(t.pct_of_a);
                    t.floor = floor.unwrap_or(t.floor);
                }
            }
        }
        t
    }
}

/// The threshold in words: "5% of A, at least 0.5 ms".
pub fn describe(t: &Threshold, unit: &str) -> String {
    let floor = format!("{} {unit}", super::stats::round3(t.floor));
    match t.pct_of_a {
        Some(p) if t.floor > 0.0 => format!("{}% of A, at least {floor}", super::stats::round3(p)),
        Some(p) => format!("{}% of A", super::stats::round3(p)),
        None => floor,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_compared_metric_is_a_headline() {
        for m in METRICS {
            let h = crate::analyze::measure::headline_named(m.id);
            assert!(h.is_some(), "{} is compared but is no headline", m.id);
        }
    }

    #[test]
    fn every_metric_has_a_default_in_its_own_units() {
        let t = Thresholds::default();
        let p50 = t.of(find("response_p50").unwrap(), 10_000.0);
        assert_eq!(p50.bound(2.0), 0.5, "the floor wins on a 2 ms p50");
        assert_eq!(p50.bound(40.0), 2.0, "5% wins on a 40 ms p50");
        let success = t.of(find("success_rate").unwrap(), 10_000.0);
        assert_eq!(success.bound(99.0), 0.5, "percentage points, not 5% of 99");
        // A count says what the success rate says: 0.5% of 10,000 records.
        assert_eq!(t.of(find("failed").unwrap(), 10_000.0).bound(3.0), 50.0);
        assert_eq!(t.of(find("timeouts").unwrap(), 10.0).bound(0.0), 1.0);
    }

    /// (typed, what it parses to or the start of its error)
    #[test]
    fn overrides_parse_with_units_and_refuse_the_ambiguous() {
        let ok: &[(&str, Override)] = &[
            ("5", Override::AllPct(5.0)),
            ("7.5%", Override::AllPct(7.5)),
            (
                "response_p50=10%",
                Override::Metric {
                    id: "response_p50",
                    pct: Some(10.0),
                    floor: None,
                },
            ),
            (
                "response_p50=2ms",
                Override::Metric {
                    id: "response_p50",
                    pct: None,
                    floor: Some(2.0),
                },
            ),
            (
                "response_p50=0%,2",
                Override::Metric {
                    id: "response_p50",
                    pct: Some(0.0),
                    floor: Some(2.0),
                },
            ),
            (
                "success_rate=1pp",
                Override::Metric {
                    id: "success_rate",
                    pct: None,
                    floor: Some(1.0),
                },
            ),
            (
                "failed=25",
                Override::Metric {
                    id: "failed",
                    pct: None,
                    floor: Some(25.0),
                },
            ),
        ];
        for (typed, want) in ok {
            assert_eq!(typed.parse::<Override>().as_ref(), Ok(want), "{typed}");
        }
        let bad: &[(&str, &str)] = &[
            ("success_rate=1%", "success_rate is judged in pp"),
            ("failed=2%", "failed is judged in records"),
            ("latency=5%", "\"latency\" is not a compared metric"),
            ("response_p50=fast", "\"fast\": expected"),
            ("response_p50=-1", "\"-1\": a threshold is zero or more"),
            ("many", "\"many\": expected a percentage"),
        ];
        for (typed, want) in bad {
            let e = typed.parse::<Override>().unwrap_err();
            assert!(e.starts_with(want), "{typed}: {e}");
        }
    }

    #[test]
    fn overrides_apply_over_the_defaults_last_one_wins() {
        let t = Thresholds::new(vec![
            "10".parse().unwrap(),
            "response_p50=2ms".parse().unwrap(),
            "failed=25".parse().unwrap(),
        ]);
        let p50 = t.of(find("response_p50").unwrap(), 1000.0);
        assert_eq!((p50.pct_of_a, p50.floor), (Some(10.0), 2.0));
        assert_eq!(
            t.of(find("response_p99").unwrap(), 1000.0).pct_of_a,
            Some(10.0)
        );
        assert_eq!(t.of(find("failed").unwrap(), 1000.0).floor, 25.0);
        assert_eq!(describe(&p50, "ms"), "10% of A, at least 2 ms");
    }
}
