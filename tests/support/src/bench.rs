//! What the benches share: running a command for its own resource usage, the bench binary
//! re-run in a role of its own (a peer, a floor client), a blocking timerfd and a raw epoll
//! reader (lt's mechanisms without lt), and this process's CPU time.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub struct Usage {
    pub wall_s: f64,
    pub cpu_s: f64,
    pub max_rss_kib: u64,
    pub stdout: String,
}

/// Runs a command to completion (or until `stop_after`, then SIGTERM, and SIGKILL if it
/// lingers) and returns its own resource usage via wait4. (nostr-bench has no duration
/// option and ignores SIGINT when not on a terminal.)
// The child is reaped by wait4 (for its rusage), not Child::wait.
#[allow(clippy::zombie_processes)]
pub fn run(cmd: &mut Command, stop_after: Option<Duration>) -> Usage {
    let started = Instant::now();
    let out_path = std::env::temp_dir().join(format!("lt-bench-{}.out", std::process::id()));
    let out = std::fs::File::create(&out_path).expect("stdout file");
    let child = cmd
        .stdout(out)
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for our child; kill signals our child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let stop_at = stop_after.map(|d| started + d);
    let mut kill_at = None;
    let mut peak_kib = 0;
    loop {
        let rc = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if rc == pid {
            break;
        }
        assert_eq!(rc, 0, "wait4");
        peak_kib = peak_kib.max(vm_hwm_kib(pid));
        let now = Instant::now();
        if stop_at.is_some_and(|t| now >= t) && kill_at.is_none() {
            unsafe { libc::kill(pid, libc::SIGTERM) };
            kill_at = Some(now + Duration::from_secs(3));
        }
        if kill_at.is_some_and(|t| now >= t) {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut u = finish(started, usage, &out_path);
    // ru_maxrss would include this (large) bench process's RSS at fork time: exec keeps
    // the old address space's high-water mark. VmHWM of the child's own address space is
    // what we want; polled every 10 ms.
    u.max_rss_kib = peak_kib;
    u
}

/// Peak resident set of a live process's current address space, KiB.
pub fn vm_hwm_kib(pid: libc::pid_t) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// User plus system CPU time of a `rusage`, seconds.
pub fn cpu_s(usage: &libc::rusage) -> f64 {
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

pub fn finish(started: Instant, usage: libc::rusage, out_path: &Path) -> Usage {
    Usage {
        wall_s: started.elapsed().as_secs_f64(),
        cpu_s: cpu_s(&usage),
        max_rss_kib: usage.ru_maxrss as u64,
        stdout: std::fs::read_to_string(out_path).unwrap_or_default(),
    }
}

/// `CLOCK_MONOTONIC` now, ns.
pub fn mono_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// A blocking timerfd, armed at absolute `CLOCK_MONOTONIC` deadlines: lt's timing
/// mechanism without lt.
pub struct Timer(std::os::fd::OwnedFd);

impl Default for Timer {
    fn default() -> Self {
        Timer::new()
    }
}

impl Timer {
    pub fn new() -> Timer {
        use rustix::time::{timerfd_create, TimerfdClockId, TimerfdFlags};
        Timer(timerfd_create(TimerfdClockId::Monotonic, TimerfdFlags::CLOEXEC).expect("timerfd"))
    }

    /// Sleeps until `due` (ns, `CLOCK_MONOTONIC`); returns at once if it has passed.
    pub fn sleep_until(&self, due: u64) {
        use rustix::time::{timerfd_settime, Itimerspec, TimerfdTimerFlags, Timespec};
        let spec = Itimerspec {
            it_interval: Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: Timespec {
                tv_sec: (due / 1_000_000_000) as _,
                tv_nsec: (due % 1_000_000_000) as _,
            },
        };
        timerfd_settime(&self.0, TimerfdTimerFlags::ABSTIME, &spec).expect("timerfd_settime");
        if mono_ns() < due {
            let mut count = [0u8; 8];
            rustix::io::read(&self.0, &mut count).expect("timerfd read");
        }
    }
}

/// Reads whatever arrives on `fds` (raw bytes, discarded) until `stop`; returns the bytes
/// read. Level-triggered epoll, each readable socket drained without blocking.
pub fn read_raw_until(fds: &[i32], stop: &AtomicBool) -> u64 {
    // SAFETY: plain epoll and recv calls on sockets the caller keeps open until this returns;
    // every buffer passed is valid for its stated length.
    unsafe {
        let ep = libc::epoll_create1(libc::EPOLL_CLOEXEC);
        assert!(ep >= 0, "epoll_create1");
        for (i, &fd) in fds.iter().enumerate() {
            let mut ev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: i as u64,
            };
            assert_eq!(libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev), 0);
        }
        let mut ready = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
        let mut buf = vec![0u8; 64 << 10];
        let mut total = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let n = libc::epoll_wait(ep, ready.as_mut_ptr(), ready.len() as i32, 100);
            for ev in ready.iter().take(n.max(0) as usize) {
                let fd = fds[ev.u64 as usize];
                loop {
                    let got =
                        libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT);
                    if got <= 0 {
                        break;
                    }
                    total += got as u64;
                }
            }
        }
        libc::close(ep);
        total
    }
}

/// This process's CPU time so far, user + system, seconds.
pub fn self_cpu_s() -> f64 {
    // SAFETY: rusage is plain data that getrusage fills.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    cpu_s(&u)
}

/// A process this bench started in one of its roles; stopped when dropped.
pub struct RoleProcess(pub std::process::Child);

impl Drop for RoleProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn role_command(role: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("the bench's own path"));
    cmd.env("LT_BENCH_ROLE", role);
    cmd
}

/// Runs role `role` with `env` to its end; it prints two numbers, returned here.
pub fn role_figures(role: &str, env: &[(&str, &str)]) -> (u64, f64) {
    let out = role_command(role)
        .envs(env.iter().copied())
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("{role} process: {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut words = text.split_whitespace();
    let count = words.next().and_then(|w| w.parse().ok());
    let secs = words.next().and_then(|w| w.parse().ok());
    match (count, secs) {
        (Some(c), Some(s)) => (c, s),
        _ => panic!("{role} said {text:?}"),
    }
}

/// Role `role` (a peer) in a process of its own, and the URL it prints first. It serves
/// until its stdin closes, which dropping the `RoleProcess` does.
pub fn serving_role(role: &str) -> (RoleProcess, String) {
    let mut child = role_command(role)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{role} process: {e}"));
    let mut url = String::new();
    BufReader::new(child.stdout.take().expect("the role's stdout"))
        .read_line(&mut url)
        .expect("the role's URL");
    assert!(url.starts_with("ws://"), "{role} said {url:?}");
    (RoleProcess(child), url.trim().to_string())
}

/// `conns` blocking WebSocket connections to `url` (`ws://host:port/`), TCP_NODELAY on: the
/// floors' clients.
pub fn blocking_sockets(
    url: &str,
    conns: u32,
) -> Vec<tokio_tungstenite::tungstenite::WebSocket<std::net::TcpStream>> {
    let addr = url
        .trim_start_matches("ws://")
        .trim_end_matches('/')
        .to_string();
    (0..conns)
        .map(|_| {
            let tcp = std::net::TcpStream::connect(&addr).expect("connect");
            tcp.set_nodelay(true).expect("TCP_NODELAY");
            tokio_tungstenite::tungstenite::client(url, tcp)
                .expect("handshake")
                .0
        })
        .collect()
}
