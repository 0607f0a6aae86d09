//! The plan: one pass over the trace, before anything is sent. It verifies the whole trace
//! (a damaged trace is refused before it reaches a relay), gives the fingerprint the results
//! header needs, and is what `--dry-run` prints.

use std::collections::BTreeMap;
use std::path::Path;

use super::pace::Speed;
use crate::capture::results::Part;
use crate::capture::{Op, TraceReader};

#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub records: u64,
    pub events: u64,
    pub frame_bytes: u64,
    pub fingerprint: String,
    /// Connections the replay opens (trace clients, capped by `--clients`); records go to
    /// connection `client % connections`.
    pub connections: u32,
    /// Clients in the trace, and the `--clients` asked for.
    pub trace_clients: u32,
    pub clients_asked: Option<u32>,
    /// Intended time of the last record at the chosen speed (1x at `--speed max`), seconds.
    pub duration_s: f64,
    /// Most records due in one second at the chosen speed (1x at `--speed max`), and which
    /// second.
    pub peak_per_s: u64,
    pub peak_second: u64,
    /// Largest gap between consecutive intended times, seconds.
    pub largest_gap_s: f64,
    pub by_kind: BTreeMap<String, u64>,
    /// Live subscriptions (REQs held open after their EOSE), whose deliveries are counted.
    pub live_subs: u64,
    /// This process's part of a sharded replay (`--shard I/N`), once chosen.
    pub part: Option<Part>,
}

impl Plan {
    /// Records this process plays: the trace's, or its part's.
    pub fn records_played(&self) -> u64 {
        self.part.map_or(self.records, |p| p.records)
    }

    /// Connections this process opens.
    pub fn connections_played(&self) -> u32 {
        self.part.map_or(self.connections, |p| p.connections)
    }

    /// Said wherever the connection count is shown: `--clients` above the trace's own count
    /// cannot add connections (each trace client is one), so the run has fewer than asked.
    pub fn clients_capped(&self) -> Option<String> {
        let asked = self.clients_asked.filter(|a| *a > self.trace_clients)?;
        Some(format!(
            "--clients {asked} is more than the trace's {} clients: one connection per trace client",
            self.trace_clients
        ))
    }
}

/// The plan of replaying `path` at `speed`, as part `part` = (I, N) of a sharded replay
/// when given (`--shard I/N`: connection `c` is the part's when `c mod N == I`). At
/// `--speed max` every record is due at once, so its timing figures (duration, peak
/// second, largest gap) describe the trace at 1x.
pub fn plan(
    path: &Path,
    speed: Speed,
    conns_cap: Option<u32>,
    part: Option<(u32, u32)>,
) -> anyhow::Result<Plan> {
    if let Some((index, count)) = part.filter(|(i, n)| *n == 0 || i >= n) {
        return Err(anyhow::anyhow!(
            "--shard {index}/{count}: the index must be below the count (0/4 … 3/4)"
        ));
    }
    let speed = match speed {
        Speed::Max => Speed::Scaled(1.0),
        paced => paced,
    };
    let mut reader = TraceReader::open(path)?;
    let mut p = Plan {
        clients_asked: conns_cap,
        ..Plan::default()
    };
    // Records per trace client, only for a part's share (a map: client indices can be
    // sparse and large, up to 2^32 − 1).
    let mut by_client = std::collections::HashMap::<u32, u64>::new();
    // A recording's clients are the connections that sent something.
    let mut clients = reader.header().declared_clients().unwrap_or(0);
    let (mut second, mut in_second, mut last_ns) = (u64::MAX, 0u64, None::<u64>);
    while let Some(r) = reader.next_record()? {
        p.records += 1;
        clients = clients.max(r.client.saturating_add(1));
        if part.is_some() {
            *by_client.entry(r.client).or_default() += 1;
        }
        p.events += u64::from(r.op.is_event());
        p.live_subs += u64::from(matches!(r.op, Op::Req { query } if query.is_live()));
        p.frame_bytes += r.frame.len() as u64;
        *p.by_kind.entry(r.op.label()).or_default() += 1;
        let t = speed.intended_ns(r.offset_us);
        if let Some(prev) = last_ns {
            p.largest_gap_s = p.largest_gap_s.max(t.saturating_sub(prev) as f64 / 1e9);
        }
        last_ns = Some(t);
        let s = t / 1_000_000_000;
        if s != second {
            second = s;
            in_second = 0;
        }
        in_second += 1;
        if in_second > p.peak_per_s {
            p.peak_per_s = in_second;
            p.peak_second = s;
        }
    }
    p.duration_s = last_ns.unwrap_or(0) as f64 / 1e9;
    p.trace_clients = clients;
    p.connections = conns_cap.map_or(clients, |c| c.min(clients)).max(1);
    if let Some((index, count)) = part {
        let conns = p.connections;
        p.part = Some(Part {
            index,
            count,
            records: by_client
                .iter()
                .filter(|(client, _)| (**client % conns) % count == index)
                .map(|(_, n)| *n)
                .sum(),
            // c mod count == index for c in 0..conns.
            connections: (conns - index.min(conns)).div_ceil(count),
        });
    }
    let trailer = reader
        .trailer()
        .ok_or_else(|| anyhow::anyhow!("{}: no trailer", path.display()))?;
    p.fingerprint = trailer.fingerprint.clone();
    Ok(p)
}
