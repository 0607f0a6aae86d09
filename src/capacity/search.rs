//! The capacity search as a pure core: outcomes of steps in, the next step (or the end)
//! out. No clock, no relay, no files: the driver (`capacity::run`) runs each step as a
//! real replay and hands back its outcome; the tests here drive it with tables.
//!
//! The search (see `docs/capacity.md`), in two phases as FD.io's MLRsearch (RFC 9971)
//! runs it: short trials to find the region, full-length trials for the answer.
//! 1. a warm-up step at the start rate, whose outcome is not judged;
//! 2. an exponential ramp from the start rate (times `factor`) until a step fails, or the
//!    start rate fails and the ramp goes down instead until a step passes;
//! 3. bisection between the highest pass and the lowest failure until they are within
//!    four times `precision` of each other;
//! 4. a borderline step (a figure near its SLO bound) is tried once more, and the worse
//!    outcome counts;
//! 5. the confirmation: a longer step at the highest short pass, and from then on *long
//!    mode*: every step is confirmation-length and only long passes count. If it passed,
//!    bisection goes on above it to `precision`; if it failed, the rate steps down from the
//!    failure by 1 + 4 × precision until a long step passes, then bisects. Short steps can
//!    flatter a relay whose pace falls as its database grows (nostr-rs-relay passes 750
//!    events/s for 10 s and fails it over 20 s), so the answer always rests on a step of
//!    the confirmation's length; the short phase only saves time finding where to look.
//!
//! The bounds are always computed from every judged step, conservatively: the upper bound
//! is the lowest rate that failed (or that lt could not offer), the lower bound the highest
//! rate that passed *below* it. A lower rate failing where a higher one passed (an
//! inversion) therefore moves the answer down, never up.

/// The short phase ends when its bounds are this many precisions apart: the long phase
/// then needs about two bisections (log2 of 4) to the precision.
pub const SHORT_WIDTH: f64 = 4.0;

/// What the search is asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// Events per second of the first step.
    pub start: f64,
    /// The ramp's factor between steps (2: doubling).
    pub factor: f64,
    /// The search ends when `upper ≤ lower × (1 + precision)` (and the short phase when
    /// `upper ≤ lower × (1 + SHORT_WIDTH × precision)`).
    pub precision: f64,
    /// No step above this rate; a pass at it ends the search.
    pub max_rate: Option<f64>,
    /// Below this rate the search gives up: nothing passes.
    pub min_rate: f64,
    /// Run a warm-up step first.
    pub warmup: bool,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            start: 100.0,
            factor: 2.0,
            precision: 0.05,
            max_rate: None,
            min_rate: 1.0,
            warmup: true,
        }
    }
}

/// Why a step is run.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Before the search: brings the relay and lt to a steady state; not judged.
    Warmup,
    /// Exponential: up from the start rate, or down when the start rate failed.
    Ramp,
    /// Between the highest pass and the lowest failure.
    Bisect,
    /// A borderline step, tried again.
    Repeat,
    /// The first long step, at the highest short pass; long mode follows.
    Confirm,
}

impl Phase {
    /// The phase as the report and folder names write it.
    pub fn word(self) -> &'static str {
        match self {
            Phase::Warmup => "warmup",
            Phase::Ramp => "ramp",
            Phase::Bisect => "bisect",
            Phase::Repeat => "repeat",
            Phase::Confirm => "confirm",
        }
    }
}

/// A step to run: its rate, why, and whether it is confirmation-length.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trial {
    pub rate: f64,
    pub phase: Phase,
    /// As long as a confirmation (a confirmation, or any step in long mode).
    pub long: bool,
}

/// How a step came out, as the SLO judges it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every SLO term held, and lt kept its schedule at the rate offered.
    Pass,
    /// An SLO term failed while lt kept its schedule: the relay's result.
    Fail,
    /// lt (or the connection setup) could not offer the rate: not the relay's result.
    LtLimited,
}

/// A step's outcome: its verdict, and whether a figure was close to its bound.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    pub verdict: Verdict,
    pub borderline: bool,
}

/// Why the search ended.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    /// The bounds are within the precision, the lower one a long step's pass.
    Found,
    /// As `Found`, but the upper bound is where lt could not offer the rate: the relay
    /// sustains at least the lower bound; how much more is not known.
    LtLimit,
    /// The highest rate allowed passed.
    MaxRate,
    /// Even the lowest rate tried failed.
    NothingPassed,
    /// The deadline came first: the bounds so far.
    Deadline,
    /// Stopped (Ctrl-C, or a step that could not run): the bounds so far.
    Interrupted,
    /// The trace has no records left for another step.
    TraceExhausted,
}

/// What the search has found so far.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Bounds {
    /// The highest rate that passed below `upper`.
    pub lower: Option<f64>,
    /// The lowest rate that failed or could not be offered.
    pub upper: Option<f64>,
    /// `upper` is where lt was the limit, not the relay.
    pub upper_is_lt: bool,
}

/// What to do next.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    Run(Trial),
    Done(Ending),
}

/// The search's state: every judged step so far.
#[derive(Debug, Clone)]
pub struct Search {
    params: Params,
    history: Vec<(Trial, Outcome)>,
    warmed: bool,
    repeat: Option<f64>,
    /// The confirmation ran: from now on every step is long, and only long passes count.
    long: bool,
}

impl Search {
    pub fn new(params: Params) -> Search {
        Search {
            warmed: !params.warmup,
            params,
            history: Vec::new(),
            repeat: None,
            long: false,
        }
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The next step, or the end. `out_of_time` says the deadline leaves no room for another
    /// step (the driver knows the clock and how long a step takes).
    pub fn next(&self, out_of_time: bool) -> Decision {
        if !self.warmed {
            return self.run(self.params.start, Phase::Warmup);
        }
        if out_of_time {
            return Decision::Done(Ending::Deadline);
        }
        if let Some(rate) = self.repeat {
            return self.run(rate, Phase::Repeat);
        }
        let b = self.bounds();
        match (b.lower, b.upper) {
            (None, None) => self.run(self.capped(self.params.start), Phase::Ramp),
            (Some(lower), None) => match self.params.max_rate {
                Some(max) if lower >= max => Decision::Done(Ending::MaxRate),
                _ => self.run(self.capped(lower * self.params.factor), Phase::Ramp),
            },
            (None, Some(upper)) => {
                // Down from a failure: by the ramp's factor, or in long mode by smaller
                // steps (the failure was at a rate short steps passed, so near it).
                let down = if self.long {
                    1.0 + 4.0 * self.params.precision
                } else {
                    self.params.factor
                };
                let rate = upper / down;
                if rate < self.params.min_rate {
                    Decision::Done(Ending::NothingPassed)
                } else {
                    self.run(rate, Phase::Ramp)
                }
            }
            (Some(lower), Some(upper)) => {
                let width = if self.long {
                    self.params.precision
                } else {
                    SHORT_WIDTH * self.params.precision
                };
                if upper > lower * (1.0 + width) {
                    self.run((lower + upper) / 2.0, Phase::Bisect)
                } else if !self.long {
                    self.run(lower, Phase::Confirm)
                } else if b.upper_is_lt {
                    Decision::Done(Ending::LtLimit)
                } else {
                    Decision::Done(Ending::Found)
                }
            }
        }
    }

    /// Takes the outcome of `trial`, the step [`Search::next`] asked for.
    pub fn record(&mut self, trial: Trial, outcome: Outcome) {
        match trial.phase {
            Phase::Warmup => {
                self.warmed = true;
                return;
            }
            Phase::Repeat => self.repeat = None,
            Phase::Confirm | Phase::Ramp | Phase::Bisect => {
                // Whatever the confirmation found, the answer rests on long steps from here.
                self.long |= trial.phase == Phase::Confirm;
                // A step near a bound may be either side of it: tried again. So is the
                // ramp's first failure, which alone would set the upper bound (one stall
                // of a 5 s step at 80% of a relay's capacity did).
                let first_failure = outcome.verdict == Verdict::Fail
                    && !trial.long
                    && self.bounds().upper.is_none();
                if (outcome.borderline || first_failure) && outcome.verdict != Verdict::LtLimited {
                    self.repeat = Some(trial.rate);
                }
            }
        }
        self.history.push((trial, outcome));
    }

    /// The bounds from every judged step (see the module's comment).
    pub fn bounds(&self) -> Bounds {
        let lowest = |v: Verdict| {
            self.history
                .iter()
                .filter(|(_, o)| o.verdict == v)
                .map(|(t, _)| t.rate)
                .reduce(f64::min)
        };
        let fail = lowest(Verdict::Fail);
        let lt = lowest(Verdict::LtLimited);
        let (upper, upper_is_lt) = match (fail, lt) {
            (Some(f), Some(l)) if l < f => (Some(l), true),
            (Some(f), _) => (Some(f), false),
            (None, Some(l)) => (Some(l), true),
            (None, None) => (None, false),
        };
        let lower = self
            .history
            .iter()
            .filter(|(t, o)| o.verdict == Verdict::Pass && upper.is_none_or(|u| t.rate < u))
            .filter(|(t, _)| t.long || !self.long)
            .map(|(t, _)| t.rate)
            .reduce(f64::max);
        Bounds {
            lower,
            upper,
            upper_is_lt,
        }
    }

    /// Steps where a lower rate failed (as the relay's result) after a higher one passed.
    pub fn inversions(&self) -> u32 {
        let mut count = 0;
        for (i, (t, o)) in self.history.iter().enumerate() {
            if o.verdict == Verdict::Fail
                && self.history[..i]
                    .iter()
                    .any(|(u, p)| p.verdict == Verdict::Pass && u.rate >= t.rate)
            {
                count += 1;
            }
        }
        count
    }

    /// Whether the search is in long mode (the confirmation ran).
    pub fn long_mode(&self) -> bool {
        self.long
    }

    fn capped(&self, rate: f64) -> f64 {
        self.params.max_rate.map_or(rate, |max| rate.min(max))
    }

    fn run(&self, rate: f64, phase: Phase) -> Decision {
        let long = phase == Phase::Confirm || (self.long && phase != Phase::Warmup);
        Decision::Run(Trial { rate, phase, long })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drives a search whose steps `judge` judges (given the trial and its index), out of
    /// time after `out_of_time_after` steps; returns every trial, the ending, the bounds.
    fn drive(
        params: Params,
        judge: impl Fn(&Trial, usize) -> Outcome,
        out_of_time_after: usize,
    ) -> (Vec<Trial>, Ending, Bounds) {
        let mut s = Search::new(params);
        let mut trials = Vec::new();
        loop {
            match s.next(trials.len() >= out_of_time_after) {
                Decision::Run(t) => {
                    let outcome = judge(&t, trials.len());
                    trials.push(t);
                    s.record(t, outcome);
                    assert!(trials.len() < 200, "the search does not end");
                }
                Decision::Done(e) => return (trials, e, s.bounds()),
            }
        }
    }

    fn below(capacity: f64) -> impl Fn(&Trial, usize) -> Outcome {
        move |t, _| Outcome {
            verdict: if t.rate <= capacity {
                Verdict::Pass
            } else {
                Verdict::Fail
            },
            borderline: false,
        }
    }

    fn rates(trials: &[Trial]) -> Vec<(u32, Phase)> {
        // Steps are long from the confirmation on, and only then.
        let confirm = trials.iter().position(|t| t.phase == Phase::Confirm);
        for (i, t) in trials.iter().enumerate() {
            assert_eq!(t.long, confirm.is_some_and(|c| i >= c), "{i}: {t:?}");
        }
        trials.iter().map(|t| (t.rate as u32, t.phase)).collect()
    }

    #[test]
    fn ramps_bisects_and_confirms() {
        let (trials, ending, b) = drive(Params::default(), below(500.0), usize::MAX);
        use Phase::*;
        assert_eq!(
            rates(&trials),
            vec![
                (100, Warmup),
                (100, Ramp),
                (200, Ramp),
                (400, Ramp),
                (800, Ramp),
                (800, Repeat),
                (600, Bisect),
                (500, Bisect),
                // within 4 × 5% of 600: the long phase, from the highest short pass
                (500, Confirm),
                (550, Bisect),
                (525, Bisect),
            ]
        );
        assert_eq!(ending, Ending::Found);
        assert_eq!(b.lower, Some(500.0));
        assert!(b.upper.unwrap() <= 500.0 * 1.05);
    }

    #[test]
    fn every_capacity_is_found_within_the_precision() {
        for capacity in [3.0, 37.0, 99.0, 101.0, 250.0, 999.0, 12_345.0] {
            let (_, ending, b) = drive(Params::default(), below(capacity), usize::MAX);
            assert_eq!(ending, Ending::Found, "{capacity}");
            let (lo, hi) = (b.lower.unwrap(), b.upper.unwrap());
            assert!(lo <= capacity && capacity < hi, "{capacity}: {lo}..{hi}");
            assert!(hi <= lo * 1.05, "{capacity}: {lo}..{hi}");
        }
    }

    #[test]
    fn a_failing_start_ramps_down() {
        let (trials, ending, b) = drive(Params::default(), below(30.0), usize::MAX);
        assert_eq!(
            rates(&trials)[1..5],
            [
                (100, Phase::Ramp),
                (100, Phase::Repeat),
                (50, Phase::Ramp),
                (25, Phase::Ramp)
            ]
        );
        assert_eq!(ending, Ending::Found);
        assert!(b.lower.unwrap() <= 30.0 && b.upper.unwrap() > 30.0);
    }

    #[test]
    fn nothing_passing_ends_below_the_minimum() {
        let (trials, ending, b) = drive(Params::default(), below(0.5), usize::MAX);
        assert_eq!(ending, Ending::NothingPassed);
        assert_eq!(b.lower, None);
        assert_eq!(trials.last().unwrap().rate, 1.5625);
    }

    #[test]
    fn a_borderline_step_is_repeated_and_the_worse_outcome_counts() {
        // 400 is borderline: passes the first time, fails the second.
        let judge = |t: &Trial, _: usize| Outcome {
            verdict: match (t.rate as u32, t.phase) {
                (400, Phase::Repeat) => Verdict::Fail,
                (r, _) if r <= 450 => Verdict::Pass,
                _ => Verdict::Fail,
            },
            borderline: t.rate == 400.0,
        };
        let (trials, ending, b) = drive(Params::default(), judge, usize::MAX);
        assert_eq!(
            rates(&trials)[3..5],
            [(400, Phase::Ramp), (400, Phase::Repeat)]
        );
        // The repeat's failure is an inversion of nothing yet higher, and makes 400 the
        // upper bound: the answer is below it.
        assert_eq!(ending, Ending::Found);
        assert!(b.upper.unwrap() <= 400.0, "{b:?}");
        // A repeat is asked once: no Repeat follows another.
        assert!(trials
            .windows(2)
            .all(|w| !(w[0].phase == Phase::Repeat && w[1].phase == Phase::Repeat)));
    }

    #[test]
    fn an_inversion_is_resolved_toward_the_lower_rate() {
        // 600 passed, then 550 failed (noise, or the relay's state grew): the answer must
        // lie below 550, and 600's pass no longer counts.
        let mut s = Search::new(Params {
            warmup: false,
            ..Params::default()
        });
        let step = |rate, phase, verdict| {
            (
                Trial {
                    rate,
                    phase,
                    long: false,
                },
                Outcome {
                    verdict,
                    borderline: false,
                },
            )
        };
        for (t, o) in [
            step(100.0, Phase::Ramp, Verdict::Pass),
            step(200.0, Phase::Ramp, Verdict::Pass),
            step(400.0, Phase::Ramp, Verdict::Pass),
            step(800.0, Phase::Ramp, Verdict::Fail),
            step(800.0, Phase::Repeat, Verdict::Fail),
            step(600.0, Phase::Bisect, Verdict::Pass),
            step(550.0, Phase::Bisect, Verdict::Fail),
        ] {
            s.record(t, o);
        }
        let b = s.bounds();
        assert_eq!((b.lower, b.upper), (Some(400.0), Some(550.0)));
        assert_eq!(s.inversions(), 1);
        assert_eq!(
            s.next(false),
            Decision::Run(Trial {
                rate: 475.0,
                phase: Phase::Bisect,
                long: false
            })
        );
    }

    #[test]
    fn a_failed_confirmation_goes_on_in_long_steps() {
        // Short steps pass up to 650, but only 520 holds for a confirmation's length (a
        // relay slowing as its database grows).
        let judge = |t: &Trial, _: usize| Outcome {
            verdict: match (t.rate, t.long) {
                (r, false) if r <= 650.0 => Verdict::Pass,
                (r, true) if r <= 520.0 => Verdict::Pass,
                _ => Verdict::Fail,
            },
            borderline: false,
        };
        let (trials, ending, b) = drive(Params::default(), judge, usize::MAX);
        let first_confirm = trials
            .iter()
            .position(|t| t.phase == Phase::Confirm)
            .unwrap();
        assert!(trials[first_confirm].rate > 520.0);
        // Everything after the failed confirmation is long.
        assert!(trials[first_confirm..].iter().all(|t| t.long));
        assert_eq!(ending, Ending::Found);
        let (lo, hi) = (b.lower.unwrap(), b.upper.unwrap());
        assert!(lo <= 520.0 && 520.0 < hi && hi <= lo * 1.05, "{lo}..{hi}");
    }

    #[test]
    fn a_confirmation_lt_could_not_offer_goes_on_in_long_steps() {
        // lt offers 4,800/s for a short step but not for a long one (its lag grows when
        // sharing the cores with the relay for longer): the answer is a long step's pass.
        let judge = |t: &Trial, _: usize| Outcome {
            verdict: match (t.rate, t.long) {
                (r, false) if r <= 5000.0 => Verdict::Pass,
                (r, true) if r <= 4200.0 => Verdict::Pass,
                _ => Verdict::LtLimited,
            },
            borderline: false,
        };
        let (trials, ending, b) = drive(Params::default(), judge, usize::MAX);
        rates(&trials);
        assert_eq!(ending, Ending::LtLimit);
        assert!(b.upper_is_lt);
        let (lo, hi) = (b.lower.unwrap(), b.upper.unwrap());
        assert!(lo <= 4200.0 && 4200.0 < hi && hi <= lo * 1.05, "{lo}..{hi}");
        let passed_long = |r: f64| trials.iter().any(|t| t.long && t.rate == r);
        assert!(passed_long(lo));
        assert!(trials.len() < 20, "{}", trials.len());
    }

    #[test]
    fn a_borderline_long_step_is_repeated_long() {
        // 550 is borderline over a long step: tried again (long), and fails the second time.
        let judge = |t: &Trial, _: usize| Outcome {
            verdict: match (t.rate as u32, t.phase) {
                (550, Phase::Repeat) => Verdict::Fail,
                (r, _) if r <= 560 => Verdict::Pass,
                _ => Verdict::Fail,
            },
            borderline: t.rate == 550.0,
        };
        let (trials, ending, b) = drive(Params::default(), judge, usize::MAX);
        let rates = rates(&trials);
        let at = rates
            .iter()
            .position(|r| *r == (550, Phase::Bisect))
            .unwrap();
        assert_eq!(rates[at + 1], (550, Phase::Repeat));
        assert!(trials[at + 1].long);
        assert_eq!(ending, Ending::Found);
        assert!(b.upper.unwrap() <= 550.0, "{b:?}");
    }

    #[test]
    fn max_rate_caps_the_ramp_and_ends_the_search() {
        let params = Params {
            max_rate: Some(300.0),
            ..Params::default()
        };
        let (trials, ending, b) = drive(params, below(10_000.0), usize::MAX);
        assert_eq!(
            rates(&trials),
            vec![
                (100, Phase::Warmup),
                (100, Phase::Ramp),
                (200, Phase::Ramp),
                (300, Phase::Ramp)
            ]
        );
        assert_eq!(ending, Ending::MaxRate);
        assert_eq!(b.lower, Some(300.0));
        assert_eq!(b.upper, None);
    }

    #[test]
    fn the_deadline_ends_with_the_bounds_so_far() {
        let (trials, ending, b) = drive(Params::default(), below(500.0), 7);
        assert_eq!(trials.len(), 7);
        assert_eq!(ending, Ending::Deadline);
        assert_eq!((b.lower, b.upper), (Some(400.0), Some(600.0)));
    }

    #[test]
    fn lt_as_the_limit_is_never_the_relays_capacity() {
        // The relay would take 10,000/s, but lt cannot offer more than 700/s.
        let judge = |t: &Trial, _: usize| Outcome {
            verdict: if t.rate > 700.0 {
                Verdict::LtLimited
            } else {
                Verdict::Pass
            },
            borderline: t.rate > 700.0, // never repeated: lt's limit is not noise
        };
        let (trials, ending, b) = drive(Params::default(), judge, usize::MAX);
        assert_eq!(ending, Ending::LtLimit);
        assert!(b.upper_is_lt);
        assert!(b.lower.unwrap() <= 700.0 && b.upper.unwrap() > 700.0);
        assert!(trials.iter().all(|t| t.phase != Phase::Repeat));
    }

    #[test]
    fn without_warmup_the_first_step_is_judged() {
        let params = Params {
            warmup: false,
            ..Params::default()
        };
        let (trials, _, _) = drive(params, below(150.0), usize::MAX);
        assert_eq!(trials[0].phase, Phase::Ramp);
    }
}
