//! File descriptors: a replay holds one socket per connection, and a process may open only
//! as many descriptors as its `RLIMIT_NOFILE` allows. lt raises its own soft limit to the
//! hard one at start, and when the connections still do not fit, says so before connecting
//! (with the limit and the fix) rather than failing connections mid-ramp.

/// Descriptors lt needs besides its connections: the trace and results files, epoll and
/// timer descriptors, the threads' wake-ups, stdio, the preflight's and reconciliation's
/// sockets.
pub const RESERVED: u64 = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// In force now.
    pub soft: u64,
    pub hard: u64,
    /// The soft limit before lt raised it.
    pub was: u64,
}

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit; the limit now in force.
pub fn raise() -> std::io::Result<Limit> {
    // SAFETY: getrlimit and setrlimit read and write the plain struct passed.
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let was = r.rlim_cur;
    if r.rlim_cur < r.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: r.rlim_max,
            rlim_max: r.rlim_max,
        };
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            r.rlim_cur = r.rlim_max;
        }
    }
    Ok(Limit {
        soft: r.rlim_cur,
        hard: r.rlim_max,
        was,
    })
}

/// Descriptors a replay of `connections` connections needs.
pub fn needed(connections: u32) -> u64 {
    u64::from(connections) + RESERVED
}

/// Whether `connections` fit under `limit`; if not, what to do, in one line.
pub fn check(connections: u32, limit: &Limit) -> Result<(), String> {
    let need = needed(connections);
    if need <= limit.soft {
        return Ok(());
    }
    Err(format!(
        "{connections} connections need about {need} file descriptors, but lt may open {} (hard limit {}): raise the limit where lt runs (`ulimit -n {need}`, or `prlimit --nofile={need} --pid PID`; above the hard limit as root or in /etc/security/limits.conf), or play fewer connections per process (--clients, or --shard I/N over several)",
        limit.soft, limit.hard
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_fit_with_room_for_lts_own_descriptors() {
        let limit = Limit {
            soft: 1024,
            hard: 4096,
            was: 1024,
        };
        assert!(check(1024 - RESERVED as u32, &limit).is_ok());
        let err = check(1000, &limit).unwrap_err();
        assert!(
            err.contains("1000 connections need about 1064 file descriptors"),
            "{err}"
        );
        assert!(err.contains("lt may open 1024 (hard limit 4096)"), "{err}");
        assert!(err.contains("ulimit -n 1064"), "{err}");
    }
}
