//! What Linux's `/proc` says about a relay's process group: which processes are in it, and
//! which listening sockets they hold. Everything here is best effort: processes come and go
//! while we read, and a `/proc` we cannot read yields "unknown", never an error.

use std::collections::HashSet;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// TCP state `LISTEN` in `/proc/net/tcp`.
const TCP_LISTEN: &str = "0A";

/// A process of the group: its pid and whether it is still running (not a zombie).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Member {
    pub pid: u32,
    pub running: bool,
}

/// Every process whose process group is `pgid`, or `None` when `/proc` cannot be read.
pub(super) fn group_members(pgid: u32) -> Option<Vec<Member>> {
    let entries = fs::read_dir("/proc").ok()?;
    let members = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let (state, group) = stat_state_and_group(pid)?;
            (group == pgid).then_some(Member {
                pid,
                running: state != 'Z' && state != 'X',
            })
        })
        .collect();
    Some(members)
}

/// Processes of the group that are still running; `None` when `/proc` cannot be read.
pub(super) fn running_members(pgid: u32) -> Option<usize> {
    group_members(pgid).map(|m| m.iter().filter(|m| m.running).count())
}

/// State letter and process group from `/proc/PID/stat`. The command name in parentheses may
/// hold spaces and parentheses itself, so the fields are counted from the last `)`.
fn stat_state_and_group(pid: u32) -> Option<(char, u32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let group = fields.nth(1)?.parse().ok()?;
    Some((state, group))
}

/// Inodes of the sockets the group's processes hold open.
fn group_socket_inodes(pgid: u32) -> HashSet<u64> {
    group_members(pgid)
        .unwrap_or_default()
        .into_iter()
        .flat_map(|m| socket_inodes(m.pid))
        .collect()
}

/// The process of the group that holds the listening socket on `port`: the relay itself,
/// not the shell that started it. The one to sample for CPU and memory.
pub(super) fn listener_pid(pgid: u32, port: u16) -> Option<u32> {
    let inodes: HashSet<u64> = listeners(port)?.iter().map(|l| l.inode).collect();
    group_members(pgid)?
        .into_iter()
        .filter(|m| m.running)
        .find(|m| socket_inodes(m.pid).iter().any(|i| inodes.contains(i)))
        .map(|m| m.pid)
}

/// Inodes of the sockets one process holds open.
fn socket_inodes(pid: u32) -> HashSet<u64> {
    let mut inodes = HashSet::new();
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return inodes;
    };
    for fd in fds.flatten() {
        let Ok(target) = fs::read_link(fd.path()) else {
            continue;
        };
        let inode = target
            .to_str()
            .and_then(|t| t.strip_prefix("socket:["))
            .and_then(|t| t.strip_suffix(']'))
            .and_then(|t| t.parse::<u64>().ok());
        inodes.extend(inode);
    }
    inodes
}

/// A TCP socket listening on the port we asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Listener {
    pub addr: IpAddr,
    pub inode: u64,
}

/// TCP listeners on `port`, IPv4 and IPv6; `None` when neither table can be read.
fn listeners(port: u16) -> Option<Vec<Listener>> {
    let v4 = fs::read_to_string("/proc/net/tcp").ok();
    let v6 = fs::read_to_string("/proc/net/tcp6").ok();
    if v4.is_none() && v6.is_none() {
        return None;
    }
    let tables = v4.iter().chain(v6.iter());
    Some(
        tables
            .flat_map(|t| t.lines().skip(1))
            .filter_map(|line| parse_listener(line, port))
            .collect(),
    )
}

/// One row of `/proc/net/tcp{,6}` if it is a listener on `port`.
fn parse_listener(line: &str, port: u16) -> Option<Listener> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (local, state, inode) = (fields.get(1)?, fields.get(3)?, fields.get(9)?);
    if *state != TCP_LISTEN {
        return None;
    }
    let (addr_hex, port_hex) = local.split_once(':')?;
    if u16::from_str_radix(port_hex, 16).ok()? != port {
        return None;
    }
    Some(Listener {
        addr: parse_addr(addr_hex)?,
        inode: inode.parse().ok()?,
    })
}

/// The kernel prints each 32-bit word of the address as a number in host byte order, so the
/// word's native-endian bytes are the address bytes in network order.
fn parse_addr(hex: &str) -> Option<IpAddr> {
    let words: Option<Vec<[u8; 4]>> = (0..hex.len() / 8)
        .map(|i| {
            let word = u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16).ok()?;
            Some(word.to_ne_bytes())
        })
        .collect();
    let bytes: Vec<u8> = words?.concat();
    match hex.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?))),
        32 => Some(IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(bytes).ok()?,
        ))),
        _ => None,
    }
}

/// Who holds the listener that answers on `127.0.0.1:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Owner {
    /// A process of the relay's group.
    Group,
    /// Listeners exist, none of them ours: another program holds the port (or the relay runs
    /// in a container and a proxy holds it).
    Other,
    /// `/proc` unreadable, or the listener is not in our network namespace.
    Unknown,
}

/// What `/proc` says about the port after the relay answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PortReport {
    pub owner: Owner,
    /// Addresses other than loopback that listen on the port: reachable from other hosts.
    pub exposed: Vec<IpAddr>,
}

pub(super) fn inspect_port(port: u16, pgid: u32) -> PortReport {
    let Some(listeners) = listeners(port) else {
        return PortReport {
            owner: Owner::Unknown,
            exposed: Vec::new(),
        };
    };
    let exposed = listeners
        .iter()
        .map(|l| l.addr)
        .filter(|a| !is_loopback(*a))
        .collect();
    // Only these can accept a connection to 127.0.0.1.
    let reachable: Vec<&Listener> = listeners
        .iter()
        .filter(|l| is_loopback(l.addr) || l.addr.is_unspecified())
        .collect();
    let owner = if reachable.is_empty() {
        Owner::Unknown
    } else {
        let ours = group_socket_inodes(pgid);
        if reachable.iter().any(|l| ours.contains(&l.inode)) {
            Owner::Group
        } else {
            Owner::Other
        }
    };
    PortReport { owner, exposed }
}

fn is_loopback(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn parse_listener_reads_v4_and_v6_rows() {
        let word = |a: [u8; 4]| format!("{:08X}", u32::from_ne_bytes(a));
        let v4 = format!(
            "   0: {}:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  0 0 4242 1",
            word([127, 0, 0, 1])
        );
        let l = parse_listener(&v4, 8080).unwrap();
        assert_eq!(l.addr, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(l.inode, 4242);
        assert_eq!(parse_listener(&v4, 8081), None);
        // Not listening (01 = ESTABLISHED).
        assert_eq!(parse_listener(&v4.replace(" 0A ", " 01 "), 8080), None);
        let any6 = format!(
            "   0: {}:1F90 {}:0000 0A 0:0 00:0 0 0 0 77 1",
            "0".repeat(32),
            "0".repeat(32)
        );
        assert_eq!(
            parse_listener(&any6, 8080).unwrap().addr,
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        );
    }

    #[test]
    fn inspect_port_finds_our_own_listener() {
        // This test process is in its own process group: a listener here is "ours".
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        // SAFETY: getpgrp(2) takes no arguments and cannot fail.
        let pgid = unsafe { libc::getpgrp() } as u32;
        let report = inspect_port(port, pgid);
        assert_eq!(report.owner, Owner::Group);
        assert!(report.exposed.is_empty());
        // From another group's point of view the same listener is someone else's.
        assert_eq!(inspect_port(port, pgid + 1).owner, Owner::Other);
    }

    #[test]
    fn inspect_port_reports_a_wildcard_listener() {
        let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        // SAFETY: getpgrp(2) takes no arguments and cannot fail.
        let pgid = unsafe { libc::getpgrp() } as u32;
        let report = inspect_port(port, pgid);
        assert_eq!(report.exposed, vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)]);
        assert_eq!(report.owner, Owner::Group);
    }
}
