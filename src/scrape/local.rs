//! This machine's own figures, without any exporter, read from `/proc` with the `procfs`
//! crate and written as the series node_exporter and Prometheus' process collector would
//! write them, so the report and the rules read a local run and a scraped one alike:
//!
//! - the host: CPU by mode, load, memory and swap, disks, network devices, open files and
//!   TCP retransmissions (node_exporter's `node_…` names);
//! - the relay process (`--relay-pid`): CPU, RSS, threads, open fds, read/write bytes and
//!   context switches (`process_…` names).

use super::exposition::{Kind, Metric};

fn metric(name: &str, labels: &[(&str, &str)], kind: Kind, value: f64) -> Metric {
    let mut labels: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    labels.sort();
    Metric {
        name: name.to_owned(),
        labels,
        kind,
        value,
    }
}

/// The host's series now. A file that cannot be read leaves its series out (a container
/// may hide `/proc/diskstats`); none readable at all is an error.
pub fn host() -> Result<Vec<Metric>, String> {
    let mut out = Vec::new();
    // Each reader says whether its file could be read; any one is enough.
    let read = [
        cpu(&mut out),
        memory(&mut out),
        disks(&mut out),
        network(&mut out),
    ];
    if read.contains(&true) {
        Ok(out)
    } else {
        Err("none of /proc/stat, /proc/loadavg, /proc/meminfo, /proc/diskstats, /proc/net/dev could be read".into())
    }
}

/// CPU time by core and mode (`/proc/stat`).
fn cpu(out: &mut Vec<Metric>) -> bool {
    use procfs::CurrentSI;
    let tps = procfs::ticks_per_second() as f64;
    let mut read = false;
    if let Ok(stat) = procfs::KernelStats::current() {
        read = true;
        for (i, cpu) in stat.cpu_time.iter().enumerate() {
            let cpu_label = i.to_string();
            let modes = [
                ("user", Some(cpu.user)),
                ("nice", Some(cpu.nice)),
                ("system", Some(cpu.system)),
                ("idle", Some(cpu.idle)),
                ("iowait", cpu.iowait),
                ("irq", cpu.irq),
                ("softirq", cpu.softirq),
                ("steal", cpu.steal),
            ];
            for (mode, ticks) in modes {
                if let Some(t) = ticks {
                    out.push(metric(
                        "node_cpu_seconds_total",
                        &[("cpu", &cpu_label), ("mode", mode)],
                        Kind::Counter,
                        t as f64 / tps,
                    ));
                }
            }
        }
    }
    read
}

/// Load, memory, swap (`/proc/loadavg`, `/proc/meminfo`, `/proc/vmstat`).
fn memory(out: &mut Vec<Metric>) -> bool {
    use procfs::Current;
    let mut read = false;
    if let Ok(load) = procfs::LoadAverage::current() {
        read = true;
        out.push(metric("node_load1", &[], Kind::Gauge, f64::from(load.one)));
    }
    if let Ok(mem) = procfs::Meminfo::current() {
        read = true;
        let gauges = [
            ("node_memory_MemTotal_bytes", Some(mem.mem_total)),
            ("node_memory_MemAvailable_bytes", mem.mem_available),
            ("node_memory_SwapTotal_bytes", Some(mem.swap_total)),
            ("node_memory_SwapFree_bytes", Some(mem.swap_free)),
        ];
        for (name, v) in gauges {
            if let Some(v) = v {
                out.push(metric(name, &[], Kind::Gauge, v as f64));
            }
        }
    }
    if let Ok(vm) = procfs::vmstat() {
        for (key, name) in [
            ("pswpin", "node_vmstat_pswpin"),
            ("pswpout", "node_vmstat_pswpout"),
        ] {
            if let Some(v) = vm.get(key) {
                out.push(metric(name, &[], Kind::Untyped, *v as f64));
            }
        }
    }
    read
}

/// Block devices (`/proc/diskstats`).
fn disks(out: &mut Vec<Metric>) -> bool {
    let mut read = false;
    if let Ok(disks) = procfs::diskstats() {
        read = true;
        for d in disks.iter().filter(|d| real_disk(&d.name)) {
            let device = [("device", d.name.as_str())];
            // /proc/diskstats counts 512-byte sectors whatever the device's own size.
            out.push(metric(
                "node_disk_read_bytes_total",
                &device,
                Kind::Counter,
                d.sectors_read as f64 * 512.0,
            ));
            out.push(metric(
                "node_disk_written_bytes_total",
                &device,
                Kind::Counter,
                d.sectors_written as f64 * 512.0,
            ));
            out.push(metric(
                "node_disk_io_time_seconds_total",
                &device,
                Kind::Counter,
                d.time_in_progress as f64 / 1000.0,
            ));
        }
    }
    read
}

/// Network devices, TCP retransmissions, open files (`/proc/net/dev`, `/proc/net/snmp`,
/// `/proc/sys/fs/file-nr`).
fn network(out: &mut Vec<Metric>) -> bool {
    let mut read = false;
    if let Ok(devs) = procfs::net::dev_status() {
        read = true;
        for (name, d) in &devs {
            let device = [("device", name.as_str())];
            let counters = [
                ("node_network_receive_bytes_total", d.recv_bytes),
                ("node_network_transmit_bytes_total", d.sent_bytes),
                ("node_network_receive_drop_total", d.recv_drop),
                ("node_network_transmit_drop_total", d.sent_drop),
                ("node_network_receive_errs_total", d.recv_errs),
                ("node_network_transmit_errs_total", d.sent_errs),
            ];
            for (metric_name, v) in counters {
                out.push(metric(metric_name, &device, Kind::Counter, v as f64));
            }
        }
    }
    if let Ok(snmp) = procfs::net::snmp() {
        out.push(metric(
            "node_netstat_Tcp_RetransSegs",
            &[],
            Kind::Untyped,
            snmp.tcp_retrans_segs as f64,
        ));
        out.push(metric(
            "node_netstat_Tcp_OutSegs",
            &[],
            Kind::Untyped,
            snmp.tcp_out_segs as f64,
        ));
    }
    if let Some(allocated) = std::fs::read_to_string("/proc/sys/fs/file-nr")
        .ok()
        .and_then(|t| {
            t.split_whitespace()
                .next()
                .and_then(|n| n.parse::<f64>().ok())
        })
    {
        out.push(metric("node_filefd_allocated", &[], Kind::Gauge, allocated));
    }
    read
}

/// Block devices worth showing: not loop devices, RAM disks or zram.
fn real_disk(name: &str) -> bool {
    !(name.starts_with("loop") || name.starts_with("ram") || name.starts_with("zram"))
}

/// Process `pid`'s series now; an error once the process is gone.
pub fn process(pid: u32) -> Result<Vec<Metric>, String> {
    let p = procfs::process::Process::new(pid as i32).map_err(|e| format!("process {pid}: {e}"))?;
    let stat = p.stat().map_err(|e| format!("process {pid}: {e}"))?;
    let tps = procfs::ticks_per_second() as f64;
    let mut out = vec![
        metric(
            "process_cpu_seconds_total",
            &[],
            Kind::Counter,
            (stat.utime + stat.stime) as f64 / tps,
        ),
        metric("process_threads", &[], Kind::Gauge, stat.num_threads as f64),
        metric(
            "process_resident_memory_bytes",
            &[],
            Kind::Gauge,
            (stat.rss * procfs::page_size()) as f64,
        ),
    ];
    if let Ok(n) = p.fd_count() {
        out.push(metric("process_open_fds", &[], Kind::Gauge, n as f64));
    }
    // /proc/PID/io is readable only by the process' owner (or root): left out otherwise.
    if let Ok(io) = p.io() {
        out.push(metric(
            "process_io_read_bytes_total",
            &[],
            Kind::Counter,
            io.read_bytes as f64,
        ));
        out.push(metric(
            "process_io_write_bytes_total",
            &[],
            Kind::Counter,
            io.write_bytes as f64,
        ));
    }
    if let Ok(status) = p.status() {
        for (kind, v) in [
            ("voluntary", status.voluntary_ctxt_switches),
            ("involuntary", status.nonvoluntary_ctxt_switches),
        ] {
            if let Some(v) = v {
                out.push(metric(
                    "process_context_switches_total",
                    &[("kind", kind)],
                    Kind::Counter,
                    v as f64,
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_reads_as_node_exporter_would_write_it() {
        let m = host().unwrap();
        let cores = std::thread::available_parallelism().unwrap().get();
        let idle = m
            .iter()
            .filter(|x| x.name == "node_cpu_seconds_total" && x.label("mode") == Some("idle"))
            .count();
        assert!(idle >= cores, "{idle} idle series for {cores} cores");
        assert!(m
            .iter()
            .any(|x| x.name == "node_memory_MemAvailable_bytes" && x.value > 0.0));
        assert!(m.iter().any(
            |x| x.name == "node_network_receive_bytes_total" && x.label("device") == Some("lo")
        ));
    }

    #[test]
    fn this_process_reads_and_a_gone_one_is_an_error() {
        let m = process(std::process::id()).unwrap();
        let threads = m.iter().find(|x| x.name == "process_threads").unwrap();
        assert!(threads.value >= 1.0);
        assert!(m
            .iter()
            .any(|x| x.name == "process_resident_memory_bytes" && x.value > 1e6));
        assert!(process(u32::MAX - 1).is_err());
    }
}
