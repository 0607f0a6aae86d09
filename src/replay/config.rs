//! What a replay is asked to do: the load options as the user gave them ([`Load`], already
//! validated by the command line), and the whole configuration of one replay into one
//! target ([`Config`]), which `lt replay` and `lt ab` build the same way.

use std::time::Duration;

use super::pace::Speed;
use super::schedule::Overload;
use crate::capture::options::RunOptions;
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

    /// The options as the results header keeps them, as far as the load says them: the
    /// replay's [`Config`] adds what depends on the target and the relay process.
    pub fn run_options(&self) -> RunOptions {
        RunOptions {
            speed: Some(self.speed),
            clients: self.clients,
            threads: self.threads,
            connect_concurrency: Some(self.connect_concurrency),
            max_in_flight: Some(self.max_in_flight),
            per_conn_in_flight: Some(self.per_conn_in_flight),
            on_overload: Some(self.overload),
            timeout_ms: Some(self.timeout.as_millis() as u64),
            duration_s: self.duration_s,
            reconcile: self.reconcile,
            relay_pid_sampled: None,
            delivery_rows: self.delivery_rows,
            start_at: self.start_at.map(rfc3339),
            // Known once the plan sizes them: `replay::run` fills it in.
            network_threads: None,
            other: Default::default(),
        }
    }

    /// `--duration` as ns after t0: records due later are not sent.
    pub fn stop_after_ns(&self) -> Option<u64> {
        self.duration_s
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .map(|d| d.as_nanos() as u64)
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
    pub options: RunOptions,
    /// The relay's NIP-11 document and the predictions made from it, for the header.
    pub preflight: Option<crate::capture::results::Preflight>,
    /// What is scraped during the run (`--scrape`, this machine's `/proc`), and how often.
    pub scrapes: Vec<crate::scrape::Source>,
    pub scrape_interval: Duration,
    /// `--metrics-listen`: the live metrics this replay counts into.
    pub live: Option<std::sync::Arc<crate::live::LiveMetrics>>,
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
            options: RunOptions {
                reconcile: Some(reconcile),
                relay_pid_sampled: Some(relay_pid.is_some()),
                ..load.run_options()
            },
            preflight: None,
            scrapes: Vec::new(),
            scrape_interval: Duration::from_secs(1),
            live: None,
        }
    }

    /// Scrapes what `scraping` names during the run, `{port}` being the target's port and
    /// the relay process `relay_pid`'s (each endpoint without a preset is read once now);
    /// counts into its live metrics when it serves them.
    pub fn scrape(&mut self, scraping: &crate::scrape::Scraping) -> anyhow::Result<()> {
        self.scrapes = scraping.sources(&crate::scrape::RunRelay {
            loopback: self.target.loopback(),
            port: self.target.url().port_or_known_default(),
            pid: self.relay_pid,
            detect: true,
        })?;
        self.scrape_interval = scraping.interval;
        self.live = scraping.live.as_ref().map(|s| s.metrics().clone());
        Ok(())
    }
}

/// An instant as the results header writes it: RFC 3339 UTC, milliseconds.
pub fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
