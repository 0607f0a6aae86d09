//! When each imported event is sent: the events' own `created_at` spacing, or seeded
//! Poisson arrivals. Pure cores, tested with tables; offsets are microseconds and never go
//! back.

use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rand_distr::{Distribution, Exp};
use sha2::{Digest, Sha256};

/// Events of one `created_at` second held back at most, to learn how many share it: a run
/// longer than this is sent this many per spreading window (a second, or --max-gap if
/// shorter). A synth trace at 1,000 events/s has runs of about 1,000; 4,096 events of
/// ~700 B are ~3 MiB held.
pub const RUN_EVENTS_MAX: usize = 4096;
/// Bytes of one run held back at most, for the same reason (large events).
pub const RUN_BYTES_MAX: usize = 8 << 20;

const SECOND_US: u64 = 1_000_000;

/// `created_at` spacing, in input order. A clock follows the largest `created_at` seen: an
/// event past it moves it on, and the gap between them (capped at `max_gap`) is the gap in
/// the trace; the events from one move of the clock to the next (those of one second, and
/// stragglers from a little earlier among them) are spread evenly over a window of a second
/// (or `max_gap` if shorter) from where the clock moved. A step back of more than `max_gap`
/// restarts the clock there with no gap, as a step forward of more than it is cut to it.
///
/// Why a clock and not the difference from the previous event: dumps are in arrival order,
/// and `created_at` jitters by a second or more. Gaps taken from the previous event turn
/// each step back and forth into an extra second: a 20 s `lt synth` trace (9 steps back of
/// 1 s among 2,016 events) exported and imported that way spanned 32.8 s.
///
/// Only the current run is held; it comes out when the clock moves on.
pub struct Spacing<T> {
    max_gap_us: u64,
    window_us: u64,
    run: Vec<T>,
    run_bytes: usize,
    /// The largest `created_at` since the clock last restarted; `None` before the first
    /// event.
    clock: Option<u64>,
    run_start_us: u64,
    /// Offset of the last event given out.
    last_us: u64,
}

impl<T> Spacing<T> {
    pub fn new(max_gap_us: u64) -> Self {
        Spacing {
            max_gap_us,
            window_us: max_gap_us.min(SECOND_US),
            run: Vec::new(),
            run_bytes: 0,
            clock: None,
            run_start_us: 0,
            last_us: 0,
        }
    }

    /// Takes the next event (`bytes` is its size, for the bound on what is held); hands
    /// `emit` every event whose offset is now known, in order.
    pub fn push<E>(
        &mut self,
        created_at: u64,
        bytes: usize,
        item: T,
        emit: &mut impl FnMut(u64, T) -> Result<(), E>,
    ) -> Result<(), E> {
        match self.clock {
            None => self.clock = Some(created_at),
            Some(clock) if created_at > clock => {
                self.flush(emit)?;
                let gap_us = (created_at - clock)
                    .saturating_mul(SECOND_US)
                    .min(self.max_gap_us);
                self.run_start_us = (self.run_start_us + gap_us).max(self.last_us);
                self.clock = Some(created_at);
            }
            Some(clock) if (clock - created_at).saturating_mul(SECOND_US) > self.max_gap_us => {
                self.flush(emit)?;
                self.run_start_us = self.last_us;
                self.clock = Some(created_at);
            }
            Some(_) => {
                let full = self.run.len() >= RUN_EVENTS_MAX
                    || self.run_bytes.saturating_add(bytes) > RUN_BYTES_MAX;
                if full && !self.run.is_empty() {
                    self.flush(emit)?;
                    self.run_start_us += self.window_us;
                }
            }
        }
        self.run.push(item);
        self.run_bytes = self.run_bytes.saturating_add(bytes);
        Ok(())
    }

    /// Hands out the events still held.
    pub fn finish<E>(&mut self, emit: &mut impl FnMut(u64, T) -> Result<(), E>) -> Result<(), E> {
        self.flush(emit)
    }

    fn flush<E>(&mut self, emit: &mut impl FnMut(u64, T) -> Result<(), E>) -> Result<(), E> {
        let n = self.run.len() as u64;
        for (k, item) in (0u64..).zip(self.run.drain(..)) {
            // k < n, so the product fits: window ≤ 1 s and n ≤ RUN_EVENTS_MAX.
            let offset_us = self.run_start_us + self.window_us * k / n;
            self.last_us = offset_us;
            emit(offset_us, item)?;
        }
        self.run_bytes = 0;
        Ok(())
    }
}

/// Seeded Poisson arrivals at `rate_eps`: the first event at 0, then exponential gaps.
pub struct Arrivals {
    rng: ChaCha20Rng,
    gaps: Exp<f64>,
    next_us: Option<u64>,
}

impl Arrivals {
    pub fn new(rate_eps: f64, seed: u64) -> Result<Self, String> {
        if !(rate_eps.is_finite() && rate_eps > 0.0) {
            return Err(format!(
                "--rate must be a positive number of events per second, not {rate_eps}"
            ));
        }
        let gaps = Exp::new(rate_eps).map_err(|e| format!("--rate {rate_eps}: {e}"))?;
        // Its own stream, apart from synth's (`lt/synth/v1/rng`), for the same seed.
        let key: [u8; 32] =
            Sha256::digest([b"lt/import/v1/arrivals".as_slice(), &seed.to_le_bytes()].concat())
                .into();
        Ok(Arrivals {
            rng: ChaCha20Rng::from_seed(key),
            gaps,
            next_us: None,
        })
    }

    /// The offset of the next event.
    pub fn next_offset_us(&mut self) -> u64 {
        let at = match self.next_us {
            None => 0,
            Some(prev) => {
                let gap_us = (self.gaps.sample(&mut self.rng) * 1e6).round();
                // A gap too large for u64 is not a real rate; saturate rather than wrap.
                prev.saturating_add(if gap_us < u64::MAX as f64 {
                    gap_us as u64
                } else {
                    u64::MAX
                })
            }
        };
        self.next_us = Some(at);
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Offsets of events with these `created_at`, in order.
    fn offsets(max_gap_us: u64, created_at: &[u64]) -> Vec<u64> {
        let mut spacing = Spacing::new(max_gap_us);
        let mut out = Vec::new();
        let mut emit = |at: u64, i: usize| -> Result<(), ()> {
            assert_eq!(i, out.len(), "events come out in input order");
            out.push(at);
            Ok(())
        };
        for (i, &c) in created_at.iter().enumerate() {
            spacing.push(c, 100, i, &mut emit).unwrap();
        }
        spacing.finish(&mut emit).unwrap();
        out
    }

    const S: u64 = 1_000_000;

    #[test]
    fn created_at_spacing() {
        // (max gap, created_at of the events, offsets)
        let table: &[(u64, &[u64], &[u64])] = &[
            (5 * S, &[], &[]),
            (5 * S, &[100], &[0]),
            // Gaps as they are, within the cap.
            (5 * S, &[100, 101, 104], &[0, S, 4 * S]),
            // A gap over the cap is clamped to it.
            (5 * S, &[100, 160, 161], &[0, 5 * S, 6 * S]),
            // Same second: spread evenly over it.
            (
                5 * S,
                &[100, 100, 100, 100, 101],
                &[0, S / 4, S / 2, 3 * S / 4, S],
            ),
            (5 * S, &[100, 101, 101], &[0, S, S + S / 2]),
            // With a cap under a second, the same second spreads over the cap.
            (S / 2, &[100, 100, 102], &[0, S / 4, S / 2]),
            // Stragglers a little back in time join the second they come in: no extra
            // second for each step back and forth.
            (
                5 * S,
                &[100, 100, 99, 100, 100, 101],
                &[0, S / 5, 2 * S / 5, 3 * S / 5, 4 * S / 5, S],
            ),
            (5 * S, &[100, 98, 101], &[0, S / 2, S]),
            (5 * S, &[100, 95, 101], &[0, S / 2, S]),
            // Back by more than the cap: the clock restarts there, gap 0 from the last
            // event, never backwards.
            (5 * S, &[100, 100, 90, 91], &[0, S / 2, S / 2, S / 2 + S]),
            (5 * S, &[100, 103, 50], &[0, 3 * S, 3 * S]),
            (S / 2, &[100, 99, 100], &[0, 0, S / 2]),
            // A clock far ahead (a wrong clock) costs one cap, then the clock restarts.
            (
                5 * S,
                &[100, 9_999_999, 101, 102],
                &[0, 5 * S, 5 * S, 6 * S],
            ),
            // A very old then a very new event: the cap, not an overflow.
            (5 * S, &[0, u64::MAX], &[0, 5 * S]),
        ];
        for (max_gap, created, want) in table {
            assert_eq!(
                offsets(*max_gap, created),
                *want,
                "max gap {max_gap}, created_at {created:?}"
            );
        }
    }

    #[test]
    fn a_run_over_the_cap_goes_out_at_the_cap_per_window() {
        let n = RUN_EVENTS_MAX * 2 + 10;
        let mut created = vec![100u64; n];
        created.push(101);
        let got = offsets(5 * S, &created);
        assert_eq!(got[1], S / RUN_EVENTS_MAX as u64);
        assert_eq!(got[RUN_EVENTS_MAX], S, "second window");
        assert_eq!(got[2 * RUN_EVENTS_MAX], 2 * S, "third window");
        assert_eq!(got[2 * RUN_EVENTS_MAX + 1], 2 * S + S / 10);
        // The next second starts a second after the last window began.
        assert_eq!(got[n], 3 * S);
        assert!(got.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn a_run_over_the_byte_cap_is_cut_too() {
        let mut spacing = Spacing::new(5 * S);
        let mut out = Vec::new();
        let mut emit = |at: u64, _: ()| -> Result<(), ()> {
            out.push(at);
            Ok(())
        };
        for _ in 0..3 {
            spacing.push(7, RUN_BYTES_MAX / 2, (), &mut emit).unwrap();
        }
        spacing.finish(&mut emit).unwrap();
        assert_eq!(out, [0, S / 2, S]);
    }

    #[test]
    fn poisson_arrivals_are_seeded() {
        let take = |rate: f64, seed: u64, n: usize| -> Vec<u64> {
            let mut a = Arrivals::new(rate, seed).unwrap();
            (0..n).map(|_| a.next_offset_us()).collect()
        };
        let a = take(100.0, 42, 20_000);
        assert_eq!(a, take(100.0, 42, 20_000), "same seed, same offsets");
        assert_ne!(a, take(100.0, 43, 20_000), "another seed, other offsets");
        assert_eq!(a[0], 0);
        assert!(a.windows(2).all(|w| w[0] <= w[1]));
        // 20,000 gaps of mean 10 ms: within 3% of 200 s (the sd is 0.7%).
        let span_s = *a.last().unwrap() as f64 / 1e6;
        assert!((194.0..206.0).contains(&span_s), "{span_s}");
        // Exponential gaps: the coefficient of variation is about 1.
        let gaps: Vec<f64> = a.windows(2).map(|w| (w[1] - w[0]) as f64).collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let sd = (gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64).sqrt();
        assert!((0.95..1.05).contains(&(sd / mean)), "cv {}", sd / mean);
        // Pinned: a change of the generator or its seeding changes every imported trace.
        assert_eq!(&a[..4], &[0, 4251, 5175, 14682]);
        assert!(Arrivals::new(0.0, 1).is_err());
        assert!(Arrivals::new(f64::NAN, 1).is_err());
    }
}
