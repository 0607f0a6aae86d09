//! Where a capacity step's records come from, so that **no event is sent twice to one
//! relay** (a duplicate is answered fast, from an index lookup, and would flatter it):
//!
//! - a synth workload: each step is a trace synthesized at the step's rate, played at 1x.
//!   Against a running relay its seed is derived from the workload's seed and the step's
//!   number (other keys, other events); a relay started fresh for the step gets the same
//!   seed every time, so every step, and every search with the same options, plays the same
//!   workload at its rate: what differs between two steps at one rate is the relay alone
//!   (and `lt ab --capacity` gives A and B the same traces);
//! - a trace: each step plays the next slice of it, at the speed that gives the step's
//!   rate; a relay started fresh for each step gets the trace from its start every time.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use indicatif::ProgressBar;

use crate::capture::{TraceReader, TraceWriter};
use crate::replay::Speed;
use crate::workload::Options;

/// A step's trace, written: where, at what speed to play it, and its EVENT frames.
#[derive(Debug, Clone)]
pub struct StepTrace {
    pub path: PathBuf,
    pub speed: Speed,
    pub events: u64,
}

/// What a step cannot get.
#[derive(Debug)]
pub enum SourceError {
    /// The trace has too little left for another step.
    Exhausted {
        left_s: f64,
        needed_s: f64,
    },
    Other(anyhow::Error),
}

impl From<anyhow::Error> for SourceError {
    fn from(e: anyhow::Error) -> Self {
        SourceError::Other(e)
    }
}

/// The workload of a search.
#[derive(Debug, Clone)]
pub enum Source {
    /// Synth's options; the search sets the rate, the duration and each step's seed.
    Synth(Options),
    Trace(TraceSource),
}

#[derive(Debug, Clone)]
pub struct TraceSource {
    pub path: PathBuf,
    /// EVENT frames per second of the trace at 1x.
    pub native_eps: f64,
    /// Offset of the trace's last record, µs.
    pub last_offset_us: u64,
    /// Where the next step's slice starts, µs at 1x.
    cursor_us: u64,
}

impl TraceSource {
    /// `path`, read once through (verifying it) for its rate and length.
    pub fn open(path: &Path) -> anyhow::Result<TraceSource> {
        let plan = crate::replay::plan::plan(path, Speed::Scaled(1.0), None, None)?;
        if plan.events == 0 || plan.duration_s <= 0.0 {
            return Err(anyhow!(
                "{}: the trace has no events spread over time ({} events in {:.3} s); a capacity search needs a rate to scale",
                path.display(),
                plan.events,
                plan.duration_s
            ));
        }
        Ok(TraceSource {
            path: path.to_owned(),
            native_eps: plan.events as f64 / plan.duration_s,
            last_offset_us: (plan.duration_s * 1e6) as u64,
            cursor_us: 0,
        })
    }
}

/// The step number whose seed every step against a fresh relay uses: one no search reaches,
/// so its traces are none a running relay's search sends.
const FRESH_STEP: u32 = u32::MAX;

/// The seed of step `number` of a search seeded `seed`: distinct per step, and never the
/// seed itself (a trace made with `lt synth --seed SEED` may already be in the relay).
pub fn step_seed(seed: u64, number: u32) -> u64 {
    seed ^ u64::from(number).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

impl Source {
    /// A short description for the report: the workload and what shaped it.
    pub fn describe(&self) -> String {
        match self {
            Source::Synth(o) => format!(
                "synth: seed {}, {} clients, mix {} views, read share {}, live share {}",
                o.seed, o.clients, o.view_share, o.read_share, o.live_share
            ),
            Source::Trace(t) => format!(
                "trace {} ({:.1} events/s at 1x over {:.1} s)",
                t.path.display(),
                t.native_eps,
                t.last_offset_us as f64 / 1e6
            ),
        }
    }

    /// Writes step `number`'s trace, `duration_s` long at `rate` events per second, into
    /// `dir`. `fresh_relay`: the relay is new for this step, so a trace's slice may start
    /// at its beginning again.
    pub fn write_step(
        &mut self,
        number: u32,
        rate: f64,
        duration_s: f64,
        fresh_relay: bool,
        dir: &Path,
    ) -> Result<StepTrace, SourceError> {
        let path = dir.join("trace.ltc");
        match self {
            Source::Synth(base) => {
                let opts = Options {
                    seed: step_seed(base.seed, if fresh_relay { FRESH_STEP } else { number }),
                    rate_eps: rate,
                    duration_s,
                    ..base.clone()
                };
                opts.validate().map_err(|e| anyhow!(e))?;
                let file =
                    File::create(&path).with_context(|| format!("creating {}", path.display()))?;
                let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
                let (_, summary) = crate::synth::write(
                    &opts,
                    BufWriter::with_capacity(1 << 20, file),
                    threads,
                    &ProgressBar::hidden(),
                )?;
                Ok(StepTrace {
                    path,
                    speed: Speed::Scaled(1.0),
                    events: summary.trailer.events,
                })
            }
            Source::Trace(t) => {
                let speed = rate / t.native_eps;
                let span_us = (duration_s * speed * 1e6) as u64;
                if fresh_relay {
                    t.cursor_us = 0;
                }
                let left_us = t.last_offset_us.saturating_sub(t.cursor_us);
                if left_us < span_us {
                    return Err(SourceError::Exhausted {
                        left_s: left_us as f64 / 1e6 / speed,
                        needed_s: duration_s,
                    });
                }
                let events = slice(&t.path, t.cursor_us, span_us, &path)?;
                t.cursor_us += span_us;
                Ok(StepTrace {
                    path,
                    speed: Speed::Scaled(speed),
                    events,
                })
            }
        }
    }
}

/// Writes the records of `trace` due in `[from_us, from_us + span_us)` into `out` as a
/// trace of their own, their offsets counted from `from_us`. A record that follows one
/// before the slice (a mirror after its post, a CLOSE after its REQ) follows nothing: its
/// predecessor went in an earlier step. Returns the EVENT frames written.
fn slice(trace: &Path, from_us: u64, span_us: u64, out: &Path) -> anyhow::Result<u64> {
    let mut reader =
        TraceReader::open(trace).with_context(|| format!("reading {}", trace.display()))?;
    let header = reader.header().clone();
    let file = File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut writer = TraceWriter::new(BufWriter::with_capacity(1 << 20, file), &header)
        .with_context(|| format!("writing {}", out.display()))?;
    let (mut index, mut first, mut events) = (0u64, None, 0u64);
    while let Some(mut record) = reader
        .next_record()
        .with_context(|| format!("reading {}", trace.display()))?
    {
        let this = index;
        index += 1;
        if record.offset_us < from_us {
            continue;
        }
        if record.offset_us >= from_us + span_us {
            break;
        }
        let first = *first.get_or_insert(this);
        record.offset_us -= from_us;
        record.after = record.after.filter(|a| *a >= first).map(|a| a - first);
        events += u64::from(record.op.is_event());
        writer
            .push(&record)
            .with_context(|| format!("writing {}", out.display()))?;
    }
    let (mut w, _, _) = writer
        .finish()
        .with_context(|| format!("writing {}", out.display()))?;
    std::io::Write::flush(&mut w).with_context(|| format!("writing {}", out.display()))?;
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_seeds_differ_from_each_other_and_from_the_seed() {
        let seeds: std::collections::BTreeSet<u64> = (1..=1000).map(|n| step_seed(42, n)).collect();
        assert_eq!(seeds.len(), 1000);
        assert!(!seeds.contains(&42));
        assert!(!seeds.contains(&step_seed(42, FRESH_STEP)));
        assert_ne!(step_seed(42, FRESH_STEP), 42);
    }
}
