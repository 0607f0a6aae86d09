//! `lt ab --capacity`: the capacity search for A and for B, alternating in ABBA order
//! (drift cancels), each search with a fresh relay per step, then their capacities
//! compared ([`compare`](super::compare)).

use std::path::{Path, PathBuf};

use super::compare::{self, CapacityComparison};
use super::report::CapacityReport;
use super::run::{self, Observer, Setup};
use crate::ab::relay::BuildSpec;
use crate::ab::session::Interrupt;
use crate::ab::{run_order, Side};

/// What `lt ab --capacity` left: the comparison and its files, and whether it was cut
/// short.
pub struct Compared {
    pub comparison: CapacityComparison,
    pub json: PathBuf,
    pub markdown: PathBuf,
    pub interrupted: bool,
}

/// Runs `runs` searches of each build into `out/runs/NN-SIDE-NAME/`, `setup` giving each
/// search its settings for a build (a fresh relay per step) and a folder; then compares
/// them into `out`.
pub fn session(
    a: &BuildSpec,
    b: &BuildSpec,
    runs: u32,
    setup: &dyn Fn(&BuildSpec, PathBuf) -> anyhow::Result<Setup>,
    out: &Path,
    interrupt: &Interrupt,
    observer: &dyn Observer,
) -> anyhow::Result<Compared> {
    let mut searches: [Vec<(String, CapacityReport)>; 2] = [Vec::new(), Vec::new()];
    let order = run_order(runs);
    for (i, side) in order.iter().enumerate() {
        if interrupt.stop.requested() {
            observer.warn(&format!(
                "interrupted; {i} of {} searches done",
                order.len()
            ));
            break;
        }
        let spec = match side {
            Side::A => a,
            Side::B => b,
        };
        let folder = format!("runs/{:02}-{}-{}", i + 1, side.letter(), spec.name);
        observer.warn(&format!(
            "search {}/{} {} {}: {}",
            i + 1,
            order.len(),
            side.letter(),
            spec.name,
            out.join(&folder).display()
        ));
        let done = run::search(setup(spec, out.join(&folder))?, interrupt, observer)?;
        let path = done
            .json
            .strip_prefix(out)
            .unwrap_or(&done.json)
            .display()
            .to_string();
        observer.warn(&done.report.sentence);
        searches[usize::from(*side == Side::B)].push((path, done.report));
    }
    let comparison = compare::compare(&a.name, &searches[0], &b.name, &searches[1]);
    let (json, markdown) = compare::write(out, &comparison)?;
    Ok(Compared {
        comparison,
        json,
        markdown,
        interrupted: interrupt.stop.requested(),
    })
}
