//! The decision rule behind `lt compare` and `lt ab`: from each side's runs of every metric
//! to a verdict that a build compared with itself almost never gets wrong.
//!
//! Per metric, Welch's t test on the run values (each run is one observation; no assumption
//! that the two builds are equally noisy) gives a p-value and a 95% interval of B − A. The
//! p-values of all metrics share one error budget: Holm–Bonferroni at 5% family-wise, so
//! the chance of *any* false verdict in a comparison stays at or under 5%. A metric is
//! better or worse only when its adjusted p-value is within that budget *and* the
//! difference reaches the metric's threshold (in its own units). With one run on a side
//! nothing measures the noise, and there is no verdict at all.
//!
//! Why not the percentile bootstrap lt used before: with three runs a side it draws from a
//! handful of distinct resamples and its interval is far too narrow; over 16 uncorrected
//! metrics it gave a false verdict in 6 of 20 real A/A sessions (docs/comparing-builds.md).
//! An exact permutation test is honest but, at 3 runs against 3, cannot reach p < 0.05 at
//! all (20 arrangements), so it could never find a real difference at the default runs.

use rand::seq::index::sample;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, StudentsT};

use super::stats::{mean, stddev};

/// The chance of one or more false verdicts in a comparison, over all its metrics.
pub const FAMILY_ALPHA: f64 = 0.05;
/// The probability with which "detectable" differences are found (the usual 80%).
pub const POWER: f64 = 0.8;
/// The most runs per side lt suggests; past it the noise, not the run count, is the problem.
pub const MAX_SUGGESTED_RUNS: u32 = 100;

/// Which way is better for a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    Lower,
    Higher,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Better,
    Worse,
    Inconclusive,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Better => "better",
            Verdict::Worse => "worse",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

/// The smallest difference that counts for one metric: `pct_of_a` percent of side A's
/// value, but never less than `floor` (in the metric's unit).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Threshold {
    pub pct_of_a: Option<f64>,
    pub floor: f64,
}

impl Threshold {
    /// The threshold in the metric's unit, for side A's mean `a`.
    pub fn bound(&self, a: f64) -> f64 {
        let relative = self.pct_of_a.map_or(0.0, |p| p / 100.0 * a.abs());
        relative.max(self.floor)
    }
}

/// One metric of one comparison: each side's run values and what counts.
#[derive(Debug, Clone)]
pub struct MetricRuns {
    pub better: Better,
    pub a: Vec<f64>,
    pub b: Vec<f64>,
    pub threshold: Threshold,
}

/// Welch's t test of mean(b) − mean(a).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Welch {
    pub delta: f64,
    /// Standard error of the difference; 0 when every run of both sides agrees.
    pub se: f64,
    /// Welch–Satterthwaite degrees of freedom.
    pub df: f64,
    /// `None` when `se` is 0.
    pub t: Option<f64>,
    /// Two-sided p-value of "no difference".
    pub p: f64,
}

/// Welch's test; `None` unless both sides have at least two runs (one run measures no noise).
pub fn welch(a: &[f64], b: &[f64]) -> Option<Welch> {
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (sa, sb) = (stddev(a)?, stddev(b)?);
    let delta = mean(b)? - mean(a)?;
    let (va, vb) = (sa * sa / na, sb * sb / nb);
    let se = (va + vb).sqrt();
    if se == 0.0 {
        // Every run of each side gave the very same figure: a deterministic difference (a
        // relay that refuses the same events every time), or none.
        return Some(Welch {
            delta,
            se,
            df: na + nb - 2.0,
            t: None,
            p: if delta == 0.0 { 1.0 } else { 0.0 },
        });
    }
    let df = (va + vb).powi(2) / (va * va / (na - 1.0) + vb * vb / (nb - 1.0));
    let t = delta / se;
    let p = 2.0 * (1.0 - t_cdf(t.abs(), df));
    Some(Welch {
        delta,
        se,
        df,
        t: Some(t),
        p: p.clamp(0.0, 1.0),
    })
}

fn students_t(df: f64) -> StudentsT {
    // df is at least 1 for two runs a side; the fallback only guards against NaN.
    StudentsT::new(0.0, 1.0, if df.is_finite() && df > 0.0 { df } else { 1.0 })
        .unwrap_or_else(|_| unreachable!("location 0, scale 1 and a positive df are valid"))
}

fn t_cdf(t: f64, df: f64) -> f64 {
    students_t(df).cdf(t)
}

/// The `q` quantile of Student's t with `df` degrees of freedom.
pub fn t_quantile(q: f64, df: f64) -> f64 {
    students_t(df).inverse_cdf(q)
}

/// Holm–Bonferroni adjusted p-values, in the order given: a metric is significant at
/// family-wise level α exactly when its adjusted p-value is at most α.
pub fn holm(ps: &[f64]) -> Vec<f64> {
    let m = ps.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&i, &j| ps[i].total_cmp(&ps[j]));
    let mut adjusted = vec![1.0; m];
    let mut running = 0.0_f64;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((m - rank) as f64 * ps[i]).min(1.0));
        adjusted[i] = running;
    }
    adjusted
}

/// The smallest true difference these runs would find with probability [`POWER`]: it must
/// beat both the threshold and the noise at the strictest level Holm may ask of a metric
/// (α / m), plus the margin for power. With no noise at all, the threshold itself.
pub fn detectable(w: &Welch, bound: f64, family: usize) -> f64 {
    if w.se == 0.0 {
        return bound;
    }
    let level = FAMILY_ALPHA / family.max(1) as f64;
    let critical = t_quantile(1.0 - level / 2.0, w.df) * w.se;
    critical.max(bound) + t_quantile(POWER, w.df) * w.se
}

/// Runs per side after which a difference the size of the threshold would reach
/// significance with probability [`POWER`], at the noise these runs measured (their standard
/// deviations `sd_a`, `sd_b`); `None` past [`MAX_SUGGESTED_RUNS`].
pub fn runs_to_resolve(sd_a: f64, sd_b: f64, bound: f64, family: usize) -> Option<u32> {
    let level = FAMILY_ALPHA / family.max(1) as f64;
    let var = sd_a * sd_a + sd_b * sd_b;
    if var == 0.0 {
        return Some(2);
    }
    (2..=MAX_SUGGESTED_RUNS).find(|&n| {
        let n = f64::from(n);
        let se = (var / n).sqrt();
        let df = 2.0 * n - 2.0;
        (t_quantile(1.0 - level / 2.0, df) + t_quantile(POWER, df)) * se <= bound
    })
}

/// What the rule found for one metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    pub verdict: Verdict,
    /// mean(b) − mean(a).
    pub delta: f64,
    /// The threshold in the metric's unit.
    pub bound: f64,
    /// `None` with a single run on a side.
    pub welch: Option<Welch>,
    /// 95% interval of the difference (Welch).
    pub ci95: Option<[f64; 2]>,
    /// Holm-adjusted p-value over the metrics compared.
    pub p_adjusted: Option<f64>,
    /// See [`detectable`].
    pub detectable: Option<f64>,
    /// See [`runs_to_resolve`].
    pub runs_to_resolve: Option<u32>,
    /// How many metrics shared the error budget.
    pub family: usize,
}

impl Judged {
    /// Why this verdict, naming the statistic, the interval, the threshold (and `rule`, how
    /// it was set, when that says more than the number) and the detectable difference, in
    /// `unit`.
    pub fn reason(&self, unit: &str, rule: &str) -> String {
        let f = |x: f64| format!("{} {unit}", super::stats::round3(x));
        let threshold = if rule.is_empty() || rule == f(self.bound) {
            format!("threshold {}", f(self.bound))
        } else {
            format!("threshold {} ({rule})", f(self.bound))
        };
        let Some(w) = &self.welch else {
            return format!(
                "not enough runs to measure noise (a side has one run): no verdict; Δ {}, {threshold}",
                f(self.delta),
            );
        };
        if self.delta == 0.0 {
            return format!("no difference; {threshold}");
        }
        let statistic = match w.t {
            Some(t) => format!("Welch t = {:.2} (df {:.1})", t, w.df),
            None => "every run of each side gave the same figure".to_owned(),
        };
        let interval = self.ci95.map_or_else(String::new, |[lo, hi]| {
            format!(", 95% interval {} … {}", super::stats::round3(lo), f(hi))
        });
        let p = self.p_adjusted.unwrap_or(1.0);
        let shown = if p < 0.001 {
            "< 0.001".to_owned()
        } else {
            format!("= {p:.3}")
        };
        let budget = format!(
            "Holm-adjusted p {shown} over {} metrics ({} the {FAMILY_ALPHA} budget)",
            self.family,
            if p <= FAMILY_ALPHA {
                "within"
            } else {
                "beyond"
            },
        );
        let detect = self
            .detectable
            .map_or_else(String::new, |d| format!("; detectable ≈ {}", f(d)));
        let finding = match (p <= FAMILY_ALPHA, self.delta.abs() >= self.bound) {
            (true, true) => format!("beyond noise and at least the {threshold}"),
            (true, false) => format!("a real difference, but under the {threshold}"),
            (false, _) => format!("not beyond noise; {threshold}"),
        };
        format!("{statistic}{interval}, {budget}: {finding}{detect}")
    }
}

/// The decision alone, for every metric of one comparison, all sharing one family-wise
/// error budget: each metric's test (`None` with one run on a side), its Holm-adjusted
/// p-value, and its verdict. Cheap enough to simulate thousands of sessions with.
pub fn decide(metrics: &[MetricRuns]) -> Vec<(Option<Welch>, Option<f64>, Verdict)> {
    let tests: Vec<Option<Welch>> = metrics.iter().map(|m| welch(&m.a, &m.b)).collect();
    let tested: Vec<f64> = tests.iter().flatten().map(|w| w.p).collect();
    let mut adjusted = holm(&tested).into_iter();
    metrics
        .iter()
        .zip(tests)
        .map(|(m, w)| {
            let Some(w) = w else {
                return (None, None, Verdict::Inconclusive);
            };
            let p_adjusted = adjusted.next().unwrap_or(1.0);
            let bound = m.threshold.bound(mean(&m.a).unwrap_or(0.0));
            let decided = w.delta != 0.0 && p_adjusted <= FAMILY_ALPHA && w.delta.abs() >= bound;
            let verdict = if !decided {
                Verdict::Inconclusive
            } else if (w.delta < 0.0) == (m.better == Better::Lower) {
                Verdict::Better
            } else {
                Verdict::Worse
            };
            (Some(w), Some(p_adjusted), verdict)
        })
        .collect()
}

/// [`decide`], with what a report says beside each verdict: the interval, the detectable
/// difference and the runs that would resolve the threshold.
pub fn judge(metrics: &[MetricRuns]) -> Vec<Judged> {
    let decided = decide(metrics);
    let family = decided.iter().filter(|(w, ..)| w.is_some()).count();
    metrics
        .iter()
        .zip(decided)
        .map(|(m, (welch, p_adjusted, verdict))| {
            let a = mean(&m.a).unwrap_or(0.0);
            let delta = mean(&m.b).unwrap_or(0.0) - a;
            let bound = m.threshold.bound(a);
            Judged {
                verdict,
                delta,
                bound,
                welch,
                ci95: welch.map(|w| {
                    let half = t_quantile(0.975, w.df) * w.se;
                    [delta - half, delta + half]
                }),
                p_adjusted,
                detectable: welch.map(|w| detectable(&w, bound, family)),
                runs_to_resolve: welch.and_then(|_| {
                    runs_to_resolve(
                        stddev(&m.a).unwrap_or(0.0),
                        stddev(&m.b).unwrap_or(0.0),
                        bound,
                        family,
                    )
                }),
                family,
            }
        })
        .collect()
}

/// How often a rule called a difference over many simulated comparisons.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SessionRates {
    pub sessions: u32,
    /// Sessions with at least one better or worse verdict.
    pub sessions_with_a_verdict: u32,
    /// For each metric, the sessions in which it was better or worse.
    pub per_metric: Vec<u32>,
}

impl SessionRates {
    pub fn rate(&self) -> f64 {
        f64::from(self.sessions_with_a_verdict) / f64::from(self.sessions.max(1))
    }
}

/// Simulated A/A comparisons: each session draws `runs` runs for A and `runs` other runs
/// for B from `pool` (one row per real run, one column per metric; `None` where a run lacks
/// a metric), without replacement, and judges them with `rule`. Seeded, so reproducible.
pub fn resample_sessions(
    pool: &[Vec<Option<f64>>],
    runs: usize,
    sessions: u32,
    seed: u64,
    mut rule: impl FnMut(&[Vec<f64>], &[Vec<f64>]) -> Vec<Verdict>,
) -> Option<SessionRates> {
    if runs == 0 || pool.len() < 2 * runs {
        return None;
    }
    let width = pool.iter().map(Vec::len).max()?;
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut rates = SessionRates {
        sessions,
        sessions_with_a_verdict: 0,
        per_metric: vec![0; width],
    };
    for _ in 0..sessions {
        let picked = sample(&mut rng, pool.len(), 2 * runs).into_vec();
        let column = |rows: &[usize]| -> Vec<Vec<f64>> {
            (0..width)
                .map(|k| {
                    rows.iter()
                        .filter_map(|&r| pool[r].get(k).copied().flatten())
                        .collect()
                })
                .collect()
        };
        let (a, b) = (column(&picked[..runs]), column(&picked[runs..]));
        let verdicts = rule(&a, &b);
        let mut any = false;
        for (k, v) in verdicts.iter().enumerate() {
            if *v != Verdict::Inconclusive {
                any = true;
                if let Some(c) = rates.per_metric.get_mut(k) {
                    *c += 1;
                }
            }
        }
        rates.sessions_with_a_verdict += u32::from(any);
    }
    Some(rates)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(x: f64, want: f64, tol: f64) {
        assert!((x - want).abs() <= tol, "{x} is not {want} ± {tol}");
    }

    fn runs(better: Better, a: &[f64], b: &[f64], pct: f64, floor: f64) -> MetricRuns {
        MetricRuns {
            better,
            a: a.to_vec(),
            b: b.to_vec(),
            threshold: Threshold {
                pct_of_a: Some(pct),
                floor,
            },
        }
    }

    #[test]
    fn welch_matches_published_values() {
        // scipy.stats.ttest_ind(b, a, equal_var=False): t = 7.319251, df = 5.988358,
        // p = 0.000335116.
        let w = welch(&[19.1, 20.3, 21.0, 18.7], &[25.2, 24.1, 26.8, 25.5]).unwrap();
        close(w.t.unwrap(), 7.319_251, 1e-5);
        close(w.df, 5.988_358, 1e-5);
        close(w.p, 0.000_335_116, 1e-8);
        // Student's t quantiles from tables.
        close(t_quantile(0.975, 4.0), 2.776, 1e-3);
        close(t_quantile(0.975, 2.0), 4.303, 1e-3);
        close(t_quantile(0.8, 4.0), 0.941, 1e-3);
    }

    #[test]
    fn welch_needs_two_runs_a_side_and_handles_no_noise() {
        assert_eq!(welch(&[1.0], &[1.0, 2.0]), None);
        let same = welch(&[3.0, 3.0, 3.0], &[3.0, 3.0, 3.0]).unwrap();
        assert_eq!((same.p, same.t), (1.0, None));
        let apart = welch(&[98.5, 98.5, 98.5], &[100.0, 100.0, 100.0]).unwrap();
        assert_eq!((apart.p, apart.t), (0.0, None));
    }

    #[test]
    fn holm_adjusts_step_down_and_keeps_order() {
        // Hand-worked: sorted 0.01, 0.02, 0.04 over m = 3 -> 0.03, 0.04, 0.04.
        let adj = holm(&[0.04, 0.01, 0.02]);
        for (x, want) in adj.iter().zip([0.04, 0.03, 0.04]) {
            close(*x, want, 1e-12);
        }
        // Capped at 1, never below an earlier step.
        assert_eq!(holm(&[0.9, 0.8]), vec![1.0, 1.0]);
        assert!(holm(&[]).is_empty());
    }

    /// A row of the rule's table: what, better, A runs, B runs, threshold %, floor, verdict.
    type Case<'a> = (&'a str, Better, &'a [f64], &'a [f64], f64, f64, Verdict);

    #[test]
    fn the_rule_table() {
        use Better::{Higher, Lower};
        use Verdict::{Better as B, Inconclusive, Worse};
        let cases: &[Case] = &[
            (
                "identical runs",
                Lower,
                &[5.0, 5.0, 5.0],
                &[5.0, 5.0, 5.0],
                5.0,
                0.0,
                Inconclusive,
            ),
            // A/A from the issue: 3.4 t, p ≈ 0.03 alone — not a verdict over a family.
            (
                "issue's eose_p50",
                Lower,
                &[1.97, 1.832, 1.812],
                &[2.071, 2.032, 2.163],
                5.0,
                0.5,
                Inconclusive,
            ),
            (
                "20 ms slower",
                Lower,
                &[2.0, 2.2, 1.9],
                &[22.1, 22.3, 21.8],
                5.0,
                0.5,
                Worse,
            ),
            (
                "20 ms faster",
                Lower,
                &[22.1, 22.3, 21.8],
                &[2.0, 2.2, 1.9],
                5.0,
                0.5,
                B,
            ),
            (
                "more is better",
                Higher,
                &[2.0, 2.2, 1.9],
                &[22.1, 22.3, 21.8],
                5.0,
                0.5,
                B,
            ),
            // Clearly real, but 0.2 ms is under the 0.5 ms floor.
            (
                "steady but tiny",
                Lower,
                &[2.0, 2.01, 1.99],
                &[2.2, 2.21, 2.19],
                5.0,
                0.5,
                Inconclusive,
            ),
            // Same shift, noise as wide as the shift: not beyond noise.
            (
                "noisy",
                Lower,
                &[70.0, 130.0, 100.0],
                &[90.0, 150.0, 120.0],
                5.0,
                0.0,
                Inconclusive,
            ),
            (
                "one run a side",
                Lower,
                &[10.0],
                &[30.0],
                5.0,
                0.0,
                Inconclusive,
            ),
            (
                "deterministic refusals",
                Higher,
                &[100.0, 100.0, 100.0],
                &[98.5, 98.5, 98.5],
                0.0,
                0.5,
                Worse,
            ),
        ];
        for (what, better, a, b, pct, floor, want) in cases {
            let j = judge(&[runs(*better, a, b, *pct, *floor)]);
            assert_eq!(j[0].verdict, *want, "{what}: {}", j[0].reason("ms", ""));
        }
    }

    #[test]
    fn the_family_shares_one_budget() {
        // scipy: t = 2.840, df = 6.98, p = 0.0251: a verdict alone, not as one of 16 metrics
        // whose other 15 show nothing (0.0251 × 16 > 0.05).
        let a = [10.0, 10.4, 9.9, 10.2, 10.1];
        let b = [10.5, 10.8, 10.2, 10.9, 10.4];
        let alone = judge(&[runs(Better::Lower, &a, &b, 0.0, 0.0)]);
        assert_eq!(
            alone[0].verdict,
            Verdict::Worse,
            "{}",
            alone[0].reason("ms", "")
        );
        close(alone[0].welch.unwrap().p, 0.025_132, 1e-5);
        let mut family = vec![runs(Better::Lower, &a, &b, 0.0, 0.0)];
        family.extend((0..15).map(|_| runs(Better::Lower, &a, &a, 0.0, 0.0)));
        let j = judge(&family);
        assert_eq!(
            j[0].verdict,
            Verdict::Inconclusive,
            "{}",
            j[0].reason("ms", "")
        );
        close(j[0].p_adjusted.unwrap(), 0.025_132 * 16.0, 1e-4);
        assert_eq!(j[0].family, 16);
    }

    #[test]
    fn reasons_name_statistic_interval_threshold_and_detectable() {
        let j = judge(&[runs(
            Better::Lower,
            &[2.0, 2.2, 1.9],
            &[22.1, 22.3, 21.8],
            5.0,
            0.5,
        )]);
        let why = j[0].reason("ms", "");
        for part in [
            "Welch t",
            "95% interval",
            "threshold 0.5 ms",
            "detectable ≈",
            "Holm",
        ] {
            assert!(why.contains(part), "{part}: {why}");
        }
        let one = judge(&[runs(Better::Lower, &[2.0], &[3.0], 5.0, 0.5)]);
        assert!(one[0].reason("ms", "").contains("not enough runs"));
    }

    #[test]
    fn detectable_shrinks_with_runs_and_never_undercuts_the_threshold() {
        let w3 = welch(&[1.0, 1.2, 0.9], &[1.1, 0.95, 1.15]).unwrap();
        let w8 = welch(
            &[1.0, 1.2, 0.9, 1.0, 1.2, 0.9, 1.05, 1.1],
            &[1.1, 0.95, 1.15, 1.1, 0.95, 1.15, 1.0, 1.05],
        )
        .unwrap();
        assert!(detectable(&w8, 0.0, 16) < detectable(&w3, 0.0, 16));
        assert!(detectable(&w8, 5.0, 16) >= 5.0);
        // More runs resolve a smaller threshold; none at all when the noise dwarfs it.
        let few = runs_to_resolve(0.1, 0.1, 0.5, 16).unwrap();
        let many = runs_to_resolve(0.1, 0.1, 0.1, 16).unwrap();
        assert!(few < many, "{few} {many}");
        assert_eq!(runs_to_resolve(100.0, 100.0, 0.1, 16), None);
    }

    #[test]
    fn resampled_null_sessions_rarely_call_a_difference() {
        // A pool of 40 runs of 16 independent normal metrics: the rule must stay within its
        // family-wise budget; a rule with no correction does not.
        use rand_distr::{Distribution, Normal};
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let noise = Normal::new(10.0, 1.0).unwrap();
        let pool: Vec<Vec<Option<f64>>> = (0..40)
            .map(|_| (0..16).map(|_| Some(noise.sample(&mut rng))).collect())
            .collect();
        let threshold = Threshold {
            pct_of_a: None,
            floor: 0.0,
        };
        let specs = |a: &[Vec<f64>], b: &[Vec<f64>]| -> Vec<MetricRuns> {
            a.iter()
                .zip(b)
                .map(|(a, b)| MetricRuns {
                    better: Better::Lower,
                    a: a.clone(),
                    b: b.clone(),
                    threshold,
                })
                .collect()
        };
        let rule = |a: &[Vec<f64>], b: &[Vec<f64>]| {
            decide(&specs(a, b)).into_iter().map(|(.., v)| v).collect()
        };
        let rates = resample_sessions(&pool, 3, 2000, 1, rule).unwrap();
        assert!(rates.rate() <= 0.06, "{:?}", rates);
        let uncorrected = |a: &[Vec<f64>], b: &[Vec<f64>]| {
            specs(a, b)
                .iter()
                .map(|m| match welch(&m.a, &m.b) {
                    Some(w) if w.p <= 0.05 => Verdict::Worse,
                    _ => Verdict::Inconclusive,
                })
                .collect()
        };
        let loose = resample_sessions(&pool, 3, 2000, 1, uncorrected).unwrap();
        assert!(loose.rate() > 0.3, "{:?}", loose);
        assert_eq!(resample_sessions(&pool[..5], 3, 10, 1, rule), None);
    }
}
