//! How a caller ends a run from outside it (on Ctrl-C, or when `lt ab` ends a session):
//! what a signal means for the process is the caller's business, not the library's.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Asks a replay to stop scheduling (records not yet sent become `not_sent`, those in flight
/// get up to the timeout to be answered, and the results file is completed), or a recording
/// to stop accepting and complete its capture.
#[derive(Clone, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    pub fn new() -> Stop {
        Stop::default()
    }

    pub fn request(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn requested(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}
