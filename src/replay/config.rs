//! What a replay is asked to do: the load options as the user gave them ([`Load`], already
//! validated by the command line), and the whole configuration of one replay into one
//! target ([`Config`]), which `lt replay` and `lt ab` build the same way.

use std::collections::BTreeMap;
use std::time::Duration;

use super::pace::Speed;
use super::schedule::Overload;
use crate::guard::Target;

/// The load options: how fast, how many connections, how much in flight, when to give up.
#[derive(Debug, Clone)]
pub struct Load {
    pub speed: Speed,
    /// At most this many connections (`--clients`); `None` keeps the trace's.
    pub clients: Option<u32>,
    /// Network threads (`--threads`); `None` sizes them from the plan.
    pub threads: Option<usize>,
    pub connect_concurrency: usize,
    pub max_in_flight: usize,
    pub per_conn_in_flight: usize,
    pub overload: Overload,
    pub timeout: Duration,
    /// Stop sending records due after this many seconds (`--duration`).
    pub duration_s: Option<f64>,
    /// `--reconcile` / `--no-reconcile`; `None` decides by the target (see [`Load::reconcile_for`]).
    pub reconcile: Option<bool>,
    /// `--delivery-rows`: a results row per delivery to a live subscription.
    pub delivery_rows: bool,
    /// `--start-at`: start the clock at this wall-clock instant, once connected.
    pub start_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl Load {
    /// Reconciliation is on by default for loopback targets only: asking a shared host for
    /// every unacknowledged id is more load than the user asked for.
    pub fn reconcile_for(&self, target: &Target) -> bool {
        self.reconcile.unwrap_or(target.loopback())
    }

    /// `--duration` as ns after t0: records due later are not sent.
    pub fn stop_after_ns(&self) -> Option<u64> {
        self.duration_s
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .map(|d| d.as_nanos() as u64)
    }
}

/// `--on-overload` as the user spells it.
pub fn overload_word(o: Overload) -> &'static str {
    match o {
        Overload::Wait => "wait",
        Overload::Drop => "drop",
    }
}

pub struct Config {
    /// The relay, through the guard.
    pub target: Target,
    pub load: Load,
    /// Whether events left unacknowledged are looked up afterwards (see `reconcile`).
    pub reconcile: bool,
    /// The relay process, sampled every second.
    pub relay_pid: Option<u32>,
    /// The options as given, for the results header.
    pub options: BTreeMap<String, String>,
    /// The relay's NIP-11 document and the predictions made from it, for the header.
    pub preflight: Option<crate::capture::results::Preflight>,
}

impl Config {
    /// The replay of `load` into `target` (already through the guard), sampling the relay
    /// process `relay_pid` when given.
    pub fn new(load: &Load, target: Target, relay_pid: Option<u32>) -> Config {
        let reconcile = load.reconcile_for(&target);
        Config {
            target,
            load: load.clone(),
            reconcile,
            relay_pid,
            options: options_text(load, reconcile, relay_pid),
            preflight: None,
        }
    }
}

/// An instant as the results header writes it: RFC 3339 UTC, milliseconds.
pub fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The options as the results header keeps them.
fn options_text(load: &Load, reconcile: bool, relay_pid: Option<u32>) -> BTreeMap<String, String> {
    let mut o = BTreeMap::new();
    o.insert("speed".into(), load.speed.to_string());
    if let Some(c) = load.clients {
        o.insert("clients".into(), c.to_string());
    }
    if let Some(t) = load.threads {
        o.insert("threads".into(), t.to_string());
    }
    o.insert(
        "connect_concurrency".into(),
        load.connect_concurrency.to_string(),
    );
    o.insert("max_in_flight".into(), load.max_in_flight.to_string());
    o.insert(
        "per_conn_in_flight".into(),
        load.per_conn_in_flight.to_string(),
    );
    o.insert("on_overload".into(), overload_word(load.overload).into());
    o.insert("timeout_ms".into(), load.timeout.as_millis().to_string());
    if let Some(d) = load.duration_s {
        o.insert("duration_s".into(), d.to_string());
    }
    o.insert("reconcile".into(), reconcile.to_string());
    o.insert("relay_pid_sampled".into(), relay_pid.is_some().to_string());
    // Only when asked: the headers of runs without it stay as they were.
    if load.delivery_rows {
        o.insert("delivery_rows".into(), "true".into());
    }
    if let Some(t) = load.start_at {
        o.insert("start_at".into(), rfc3339(t));
    }
    o
}
