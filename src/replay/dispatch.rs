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

/// The shard (network thread) that owns connection `conn` of a replay on `shards` shards.
pub fn owner(conn: u32, shards: usize) -> usize {
    conn as usize % shards
}

/// Where connection `conn` sits among its shard's connections.
pub fn local_index(conn: u32, shards: usize) -> usize {
    conn as usize / shards
}
