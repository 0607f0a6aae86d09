//! What `--scrape [PRESET=]URL` names: an endpoint and the preset that knows what its series
//! mean. Without a preset the first answer decides (node_exporter's `node_` series, the
//! relays' own names), else it is read as `other`.

use std::fmt;
use std::str::FromStr;

use super::exposition::Metric;

/// The presets: which series are kept, and what the report makes of them.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// node_exporter, or lt's own reading of this machine's `/proc` (the same names).
    NodeExporter,
    NostrRsRelay,
    Rnostr,
    /// A relay process on this machine read from `/proc/PID` (Prometheus' `process_` names).
    Process,
    /// Any exposition: counters as rates, gauges as values, histograms as quantiles.
    Other,
}

/// node_exporter's series the report reads; the rest of its ~1,500 are not kept.
const NODE_SERIES: [&str; 20] = [
    "node_cpu_seconds_total",
    "node_load1",
    "node_memory_MemTotal_bytes",
    "node_memory_MemAvailable_bytes",
    "node_memory_SwapTotal_bytes",
    "node_memory_SwapFree_bytes",
    "node_vmstat_pswpin",
    "node_vmstat_pswpout",
    "node_disk_read_bytes_total",
    "node_disk_written_bytes_total",
    "node_disk_io_time_seconds_total",
    "node_network_receive_bytes_total",
    "node_network_transmit_bytes_total",
    "node_network_receive_drop_total",
    "node_network_transmit_drop_total",
    "node_network_receive_errs_total",
    "node_network_transmit_errs_total",
    "node_filefd_allocated",
    "node_netstat_Tcp_RetransSegs",
    "node_netstat_Tcp_OutSegs",
];

/// node_exporter's collectors that write [`NODE_SERIES`]: asked for by name
/// (`?collect[]=…`, node_exporter ≥ 0.16), node_exporter skips the others (a third of its
/// answer here, and most of its own CPU per scrape), and lt reads less.
const NODE_COLLECTORS: [&str; 8] = [
    "cpu",
    "loadavg",
    "meminfo",
    "vmstat",
    "diskstats",
    "netdev",
    "filefd",
    "netstat",
];

/// Series kept from an endpoint read as `other`: a bound on what one scrape may add to the
/// results (an exporter with 100,000 series would otherwise write them every second).
pub const MAX_OTHER_SERIES: usize = 5_000;

impl Preset {
    pub const ALL: [Preset; 5] = [
        Preset::NodeExporter,
        Preset::NostrRsRelay,
        Preset::Rnostr,
        Preset::Process,
        Preset::Other,
    ];

    pub fn word(self) -> &'static str {
        match self {
            Preset::NodeExporter => "node-exporter",
            Preset::NostrRsRelay => "nostr-rs-relay",
            Preset::Rnostr => "rnostr",
            Preset::Process => "process",
            Preset::Other => "other",
        }
    }

    /// The preset an answer's series say, for a `--scrape` given without one.
    pub fn detect(metrics: &[Metric]) -> Preset {
        let has = |prefix: &str| metrics.iter().any(|m| m.name.starts_with(prefix));
        if has("node_cpu_seconds_total") {
            Preset::NodeExporter
        } else if has("nostr_relay_") {
            Preset::Rnostr
        } else if has("nostr_events_write_seconds") || has("nostr_cmd_event_total") {
            Preset::NostrRsRelay
        } else {
            Preset::Other
        }
    }

    /// `url` asking only for what this preset reads, where the endpoint can be asked:
    /// node_exporter's collectors, when the URL has no query of its own.
    pub fn narrowed(self, url: &str) -> String {
        match self {
            Preset::NodeExporter if !url.contains('?') => {
                let collect: Vec<String> = NODE_COLLECTORS
                    .iter()
                    .map(|c| format!("collect[]={c}"))
                    .collect();
                format!("{url}?{}", collect.join("&"))
            }
            _ => url.to_owned(),
        }
    }

    /// Whether a series is kept in the results.
    pub fn keeps(self, m: &Metric) -> bool {
        match self {
            Preset::NodeExporter => NODE_SERIES.contains(&m.name.as_str()),
            Preset::NostrRsRelay => m.name.starts_with("nostr_"),
            Preset::Rnostr => m.name.starts_with("nostr_relay_") || m.name.starts_with("process_"),
            Preset::Process | Preset::Other => true,
        }
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

impl FromStr for Preset {
    type Err = String;

    fn from_str(s: &str) -> Result<Preset, String> {
        let s = s.trim().to_ascii_lowercase().replace('_', "-");
        Preset::ALL
            .into_iter()
            .find(|p| p.word() == s || (s == "node" && *p == Preset::NodeExporter))
            .ok_or_else(|| {
                format!(
                    "unknown preset {s:?}; expected one of {}",
                    Preset::ALL.map(Preset::word).join(", ")
                )
            })
    }
}

/// `--scrape` as given: the URL (not yet through the guard) and the preset, if named.
#[derive(Debug, Clone, PartialEq)]
pub struct ScrapeArg {
    pub preset: Option<Preset>,
    pub url: String,
}

impl FromStr for ScrapeArg {
    type Err = String;

    /// `URL` or `PRESET=URL` (`node-exporter=http://127.0.0.1:9100/metrics`,
    /// `rnostr=http://127.0.0.1:7777/metrics?auth=KEY`). A URL's own `=` (its query) comes
    /// after `://`, so a prefix is only what precedes the first `=` when that has no `:`.
    fn from_str(s: &str) -> Result<ScrapeArg, String> {
        let s = s.trim();
        match s.split_once('=') {
            Some((preset, url)) if !preset.contains(':') && !preset.contains('/') => {
                Ok(ScrapeArg {
                    preset: Some(preset.parse()?),
                    url: url.trim().to_owned(),
                })
            }
            _ => Ok(ScrapeArg {
                preset: None,
                url: s.to_owned(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scrape::exposition::Kind;

    #[test]
    fn a_preset_prefix_is_read_and_a_query_is_not_one() {
        let a: ScrapeArg = "rnostr=http://127.0.0.1:7777/metrics?auth=k=1"
            .parse()
            .unwrap();
        assert_eq!(a.preset, Some(Preset::Rnostr));
        assert_eq!(a.url, "http://127.0.0.1:7777/metrics?auth=k=1");
        let a: ScrapeArg = "http://127.0.0.1:7777/metrics?auth=k".parse().unwrap();
        assert_eq!(a.preset, None);
        let a: ScrapeArg = "node_exporter=http://127.0.0.1:9100/metrics"
            .parse()
            .unwrap();
        assert_eq!(a.preset, Some(Preset::NodeExporter));
        let e = "nginx=http://127.0.0.1/".parse::<ScrapeArg>().unwrap_err();
        assert!(e.contains("node-exporter, nostr-rs-relay"), "{e}");
    }

    #[test]
    fn node_exporter_is_asked_for_its_collectors_and_nothing_else_is_changed() {
        let url = "http://127.0.0.1:9100/metrics";
        let narrowed = Preset::NodeExporter.narrowed(url);
        assert!(
            narrowed.starts_with("http://127.0.0.1:9100/metrics?collect[]=cpu&"),
            "{narrowed}"
        );
        assert_eq!(
            narrowed.matches("collect[]=").count(),
            NODE_COLLECTORS.len()
        );
        assert_eq!(
            Preset::NodeExporter.narrowed("http://h/m?x=1"),
            "http://h/m?x=1"
        );
        assert_eq!(Preset::NostrRsRelay.narrowed(url), url);
    }

    #[test]
    fn presets_are_detected_from_the_series() {
        let m = |name: &str| Metric {
            name: name.into(),
            labels: vec![],
            kind: Kind::Counter,
            value: 1.0,
        };
        assert_eq!(
            Preset::detect(&[m("node_cpu_seconds_total")]),
            Preset::NodeExporter
        );
        assert_eq!(
            Preset::detect(&[m("nostr_relay_new_event")]),
            Preset::Rnostr
        );
        assert_eq!(
            Preset::detect(&[m("nostr_cmd_event_total")]),
            Preset::NostrRsRelay
        );
        assert_eq!(Preset::detect(&[m("http_requests_total")]), Preset::Other);
        assert!(!Preset::NodeExporter.keeps(&m("node_scrape_collector_success")));
        assert!(Preset::NodeExporter.keeps(&m("node_cpu_seconds_total")));
    }
}
