//! A high-resolution deadline for a tokio runtime: a timerfd armed at an absolute
//! `CLOCK_MONOTONIC` time and awaited through the runtime's own poll.
//!
//! tokio's timer has 1 ms granularity (its wheel ticks in milliseconds and `epoll_wait`
//! takes milliseconds), which alone would put the schedule lag of a record at up to 1 ms.
//! A timerfd fires on the kernel's high-resolution clock; being a file descriptor, it wakes
//! the runtime exactly like a socket does.

use std::io;
use std::os::fd::OwnedFd;
use std::time::Instant;

use rustix::time::{
    clock_gettime, timerfd_create, timerfd_settime, ClockId, Itimerspec, TimerfdClockId,
    TimerfdFlags, TimerfdTimerFlags, Timespec,
};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

pub struct Deadline {
    fd: AsyncFd<OwnedFd>,
    /// The anchor `t0` on `CLOCK_MONOTONIC`, ns.
    t0_ns: u64,
}

fn timespec(ns: u64) -> Timespec {
    Timespec {
        tv_sec: (ns / 1_000_000_000) as _,
        tv_nsec: (ns % 1_000_000_000) as _,
    }
}

/// `CLOCK_MONOTONIC` now, ns: the clock the timerfd keeps.
fn monotonic_ns() -> u64 {
    let now = clock_gettime(ClockId::Monotonic);
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

impl Deadline {
    /// A timer whose deadlines are given in ns after `t0`. Must be made inside the runtime
    /// that will await it.
    pub fn new(t0: Instant) -> io::Result<Deadline> {
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        // std's Instant is CLOCK_MONOTONIC on Linux; t0 (past or future) is read back
        // through it.
        let now_ns = monotonic_ns();
        let at = Instant::now();
        let t0_ns = if t0 >= at {
            now_ns + (t0 - at).as_nanos() as u64
        } else {
            now_ns.saturating_sub((at - t0).as_nanos() as u64)
        };
        // SAFETY: the AsyncFd owns the OwnedFd for its whole life, so the descriptor stays
        // open and the same until the AsyncFd is dropped.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        Ok(Deadline { fd, t0_ns })
    }

    /// Returns once `ns` after t0 has passed (at once if it already has).
    pub async fn wait(&mut self, ns: u64) -> io::Result<()> {
        let due = self.t0_ns + ns;
        let spec = Itimerspec {
            it_interval: timespec(0),
            it_value: timespec(due),
        };
        // Re-arming resets the expiration count, so an earlier expiry never counts, and the
        // count is never read: the next expiry is a new edge for the runtime's edge-triggered
        // poll whatever the count, and the clock says whether it was this one. A read per
        // record was a system call in five of replay's.
        timerfd_settime(self.fd.get_ref(), TimerfdTimerFlags::ABSTIME, &spec)?;
        loop {
            let mut ready = self.fd.readable().await?;
            ready.clear_ready();
            // Readiness left by an expiry whose wait was given up (a stop) is not this one.
            if monotonic_ns() >= due {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn waits_end_at_or_after_their_deadlines_never_before() {
        runtime().block_on(async {
            let t0 = Instant::now();
            let mut timer = Deadline::new(t0).unwrap();
            for ms in [2u64, 3, 3, 7, 12] {
                timer.wait(ms * 1_000_000).await.unwrap();
                assert!(t0.elapsed() >= Duration::from_millis(ms), "{ms} ms");
            }
            // A deadline already past returns at once.
            let before = Instant::now();
            timer.wait(0).await.unwrap();
            assert!(before.elapsed() < Duration::from_millis(500));
        });
    }

    #[test]
    fn an_expiry_whose_wait_was_given_up_does_not_end_the_next_wait() {
        runtime().block_on(async {
            let t0 = Instant::now();
            let mut timer = Deadline::new(t0).unwrap();
            // Given up before its 5 ms deadline; the timer still expires, unread.
            let given_up = tokio::time::timeout(Duration::from_millis(1), timer.wait(5_000_000));
            assert!(given_up.await.is_err());
            tokio::time::sleep(Duration::from_millis(20)).await;
            // Its readiness is left over; the next wait must still last until its own time.
            timer.wait(60_000_000).await.unwrap();
            assert!(t0.elapsed() >= Duration::from_millis(60));
        });
    }
}
