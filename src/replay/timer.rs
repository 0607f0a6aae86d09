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
        let now = clock_gettime(ClockId::Monotonic);
        let at = Instant::now();
        let now_ns = now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64;
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
        let spec = Itimerspec {
            it_interval: timespec(0),
            it_value: timespec(self.t0_ns + ns),
        };
        // Re-arming also resets the expiration count, so an earlier expiry never counts.
        timerfd_settime(self.fd.get_ref(), TimerfdTimerFlags::ABSTIME, &spec)?;
        let mut count = [0u8; 8];
        loop {
            let mut ready = self.fd.readable().await?;
            let read = rustix::io::read(self.fd.get_ref(), &mut count);
            // Cleared after a successful read too: the count is now zero, and a later
            // expiry is a new edge that sets readiness again. One read per wait, not two.
            ready.clear_ready();
            match read {
                Ok(_) => return Ok(()),
                Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}
