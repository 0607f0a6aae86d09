//! A record on its way to a connection ([`Dispatch`]) and what completes it ([`Key`]): the
//! unit the feeder, the schedulers and the connections hand on.

use crate::capture::results::{Outcome, OutcomeRow};
use crate::capture::{Answer, Op};

/// What completes a record, in the form the connection matches on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    Ok([u8; 32]),
    Sub(String),
    None,
}

/// A record handed to a connection.
#[derive(Debug)]
pub struct Dispatch {
    pub index: u64,
    pub conn: u32,
    pub op: Op,
    pub frame: String,
    pub key: Key,
    pub after: Option<u64>,
    pub intended_ns: u64,
    /// When it could first go: its intended time, or later if it had to wait for the
    /// record it follows. Schedule lag is counted from here, so a mirror waiting for its
    /// post's OK is not mistaken for lt falling behind.
    pub ready_ns: u64,
    /// When the scheduler handed it to its connection (ns after t0).
    pub dispatched_ns: u64,
    /// Time the scheduler was held at the global in-flight cap while this record was due
    /// (see `hold`).
    pub held_ns: u64,
    /// Its connection's held-time clock when the record reached it (see `hold`).
    pub held_mark: u64,
    /// What the recorded relay answered (recorded traces), for the outcome row.
    pub recorded: Option<Box<Answer>>,
}

impl Dispatch {
    /// The row of this record when it leaves without being sent.
    pub fn unsent_row(&self, outcome: Outcome) -> OutcomeRow {
        OutcomeRow {
            index: self.index,
            conn: self.conn,
            op: self.op,
            intended_ns: self.intended_ns,
            sent_ns: None,
            completed_ns: None,
            outcome,
            bytes: self.frame.len() as u32,
            events_received: 0,
            held_ns: 0,
            recorded: self.recorded.clone(),
        }
    }
}

/// Which of a replay's connections this process plays (all, or those of its part of a
/// sharded replay: `conn mod parts == part`), and which network thread owns each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    part: u32,
    parts: u32,
    threads: usize,
}

impl Layout {
    /// Part `part` of `parts` (`0` of `1`: the whole replay) on `threads` network threads.
    pub fn new(part: u32, parts: u32, threads: usize) -> Layout {
        Layout {
            part,
            parts: parts.max(1),
            threads: threads.max(1),
        }
    }

    /// Whether this process plays connection `conn`.
    pub fn mine(&self, conn: u32) -> bool {
        conn % self.parts == self.part
    }

    /// The network thread that owns connection `conn` (one of this process's).
    pub fn owner(&self, conn: u32) -> usize {
        (conn / self.parts) as usize % self.threads
    }

    /// Where connection `conn` sits among its network thread's connections.
    pub fn local_index(&self, conn: u32) -> usize {
        (conn / self.parts) as usize / self.threads
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_connection_has_one_part_one_thread_and_one_slot() {
        for (parts, threads, conns) in [(1, 1, 7), (1, 3, 10), (4, 1, 10), (3, 2, 20), (5, 4, 3)] {
            let mut seen = std::collections::HashSet::new();
            for part in 0..parts {
                let l = Layout::new(part, parts, threads);
                // Each thread's slots are 0, 1, 2, … in connection order.
                let mut next = vec![0usize; threads];
                for c in (0..conns).filter(|&c| l.mine(c)) {
                    let t = l.owner(c);
                    assert_eq!(l.local_index(c), next[t], "{parts} {threads} conn {c}");
                    next[t] += 1;
                    assert!(seen.insert(c), "conn {c} in two parts");
                }
            }
            assert_eq!(seen.len(), conns as usize);
        }
    }
}
