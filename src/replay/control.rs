//! How a replay is steered and watched from outside it: a [`crate::transport::Stop`] handle
//! the caller sets (on Ctrl-C, or when `lt ab` ends a session), and a [`ReplayObserver`]
//! that is told the replay's phase and, once a second, its progress. What a signal means for
//! the process is the caller's business, not the library's.

/// Once a second while a replay runs: how far it is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Records in the trace, and records finished (with an outcome) so far.
    pub records: u64,
    pub completed: u64,
    pub sent: u64,
    pub succeeded: u64,
    /// Finished records that did not succeed (not counting `not_sent`).
    pub failed: u64,
    /// Records sent per second over the last second.
    pub sent_per_s: f64,
    /// Response time p99 so far, ms.
    pub response_p99_ms: f64,
}

/// Whoever shows a replay's progress (a progress bar, a log, nothing).
pub trait ReplayObserver: Send + Sync {
    /// A phase begins: "connecting 200 connections", "reconciling 12 unacknowledged events".
    fn phase(&self, _what: &str) {}
    /// Once a second from t0 until the records are all sent and answered.
    fn tick(&self, _progress: &Progress) {}
}

/// Shows nothing.
pub struct Quiet;

impl ReplayObserver for Quiet {}
