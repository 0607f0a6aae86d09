//! Resource samples from /proc: CPU and RSS of lt itself and of the relay (`--relay-pid`).

use std::fs;
use std::time::Instant;

/// CPU time (user + system, in clock ticks) and resident bytes of a process.
fn usage(pid: &str) -> Option<(u64, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after `state`.
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let statm = fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split(' ').nth(1)?.parse().ok()?;
    Some((ticks, pages * page_size()))
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as u64
    } else {
        4096
    }
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if n > 0 {
        n as f64
    } else {
        100.0
    }
}

/// This process's CPU time, user + system, in ns, as the scheduler accounts it: /proc counts
/// in 10 ms ticks, a step of a whole percent of a core in each one-second sample.
fn own_cpu_ns() -> Option<u64> {
    // SAFETY: rusage is plain data that getrusage fills.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return None;
    }
    let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    Some(ns(u.ru_utime) + ns(u.ru_stime))
}

/// Turns successive readings of one process into CPU% (of one core) and RSS.
pub struct ProcessMeter {
    pid: String,
    /// When last read, and the CPU time then in ns.
    last: Option<(Instant, u64)>,
}

impl ProcessMeter {
    pub fn new(pid: Option<u32>) -> ProcessMeter {
        ProcessMeter {
            pid: pid.map_or_else(|| "self".to_owned(), |p| p.to_string()),
            last: None,
        }
    }

    /// `(cpu_pct, rss_bytes)`; CPU is `None` on the first reading or once the process is gone.
    pub fn read(&mut self) -> (Option<f32>, Option<u64>) {
        let Some((ticks, rss)) = usage(&self.pid) else {
            return (None, None);
        };
        let exact = if self.pid == "self" {
            own_cpu_ns()
        } else {
            None
        };
        let cpu_ns = exact.unwrap_or((ticks as f64 / ticks_per_second() * 1e9) as u64);
        let now = Instant::now();
        let cpu = self.last.map(|(t, prev)| {
            let secs = now.duration_since(t).as_secs_f64().max(1e-6);
            (cpu_ns.saturating_sub(prev) as f64 / 1e9 / secs * 100.0) as f32
        });
        self.last = Some((now, cpu_ns));
        (cpu, Some(rss))
    }
}

/// Facts about this machine for the results header.
pub fn machine() -> crate::capture::results::Machine {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_default();
    crate::capture::results::Machine { cores, kernel, cpu }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let mut m = ProcessMeter::new(None);
        let (cpu, rss) = m.read();
        assert!(cpu.is_none());
        assert!(rss.unwrap() > 1 << 20);
        // Busy for 300 ms of wall time: 30 of the kernel's 10 ms CPU ticks, so a meter that
        // reads anything at all reads well above zero.
        let until = std::time::Instant::now() + std::time::Duration::from_millis(300);
        let mut x = 0u64;
        while std::time::Instant::now() < until {
            for i in 0..10_000u64 {
                x = x.wrapping_add(i * i);
            }
        }
        std::hint::black_box(x);
        let (cpu, _) = m.read();
        let cpu = cpu.unwrap();
        // One busy thread: a good part of one core (other tests share the machine), never more
        // than all of them.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f32;
        assert!(cpu > 5.0 && cpu <= 100.0 * cores + 10.0, "{cpu}% of a core");
        assert_eq!(ProcessMeter::new(Some(u32::MAX)).read(), (None, None));
    }
}
