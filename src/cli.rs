//! What the user typed: clap types and value parsers. No file or socket is touched here.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::workload::{DEFAULT_EPOCH, DEFAULT_RATE_EPS};

/// lt: record-and-replay load testing for Nostr relays.
///
/// lt sends load only to loopback or to hosts you name as dedicated test infrastructure.
#[derive(Debug, Parser)]
#[command(name = "lt", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build a deterministic, signed trace of platform traffic into a capture file.
    Synth(SynthArgs),
    /// Show a capture's header, counts and sizes by kind, and verify its trailer.
    Inspect(InspectArgs),
    /// Write a capture's events as JSONL (one event object per line, as nak and strfry use).
    Export(ExportArgs),
}

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Seed of every random choice; the same seed and options give a byte-identical file.
    #[arg(long, env = "SEED", default_value_t = 42)]
    pub seed: u64,

    /// Connections the trace is spread over.
    #[arg(long, env = "CLIENTS", default_value_t = 1000, value_parser = parse_clients)]
    pub clients: u32,

    /// Length of the traffic: seconds, or with a unit (`90s`, `10m`, `1h`).
    #[arg(long, env = "DURATION_SEC", default_value = "600", value_parser = parse_duration, allow_negative_numbers = true)]
    pub duration: f64,

    /// Mean EVENT frames per second (Poisson arrivals). The default is deliberately light:
    /// raise it to find where a relay starts to hurt.
    #[arg(long, env = "RATE_EPS", default_value_t = DEFAULT_RATE_EPS, value_parser = parse_rate, allow_negative_numbers = true)]
    pub rate: f64,

    /// Share of publish actions that are view events, the rest being video bundles:
    /// `0.9`, `0.9/0.1` or `view:0.9,video:0.1`.
    #[arg(long, env = "MIX", default_value = "0.9", value_parser = parse_mix, allow_negative_numbers = true)]
    pub mix: f64,

    /// Share of arrivals that are reads (feed, view-count and channel REQs, each CLOSEd after
    /// its EOSE), from 0 to below 1.
    #[arg(long, env = "READ_SHARE", default_value_t = 0.2, value_parser = parse_share, allow_negative_numbers = true)]
    pub read_share: f64,

    /// Share of video bundles that edit an existing video (same `d`, later `created_at`).
    #[arg(long, default_value_t = 0.1, value_parser = parse_share, allow_negative_numbers = true)]
    pub edit_share: f64,

    /// Share of new hosted videos that also publish a NIP-71 34235/34236 mirror.
    #[arg(long, default_value_t = 0.2, value_parser = parse_share, allow_negative_numbers = true)]
    pub nip71_share: f64,

    /// Creator keys publishing videos [default: clients / 50, at least 1].
    #[arg(long, value_parser = parse_clients)]
    pub creators: Option<u32>,

    /// `created_at` of the trace start: unix seconds or an RFC 3339 time. The default,
    /// 2026-02-02T02:40:00Z, is accepted by nostr-rs-relay 0.8.12 and by rnostr 0.4.8
    /// (which refuses events over 3 years old) until early 2029.
    #[arg(long, default_value_t = DEFAULT_EPOCH, value_parser = parse_epoch)]
    pub epoch: u64,

    /// Output file, `-` for stdout [default: captures/<name>.ltc].
    #[arg(short, long)]
    pub output: Option<PathBuf>,

    /// Name of the capture under `captures/` [default: seed-<seed>].
    #[arg(long, conflicts_with = "output")]
    pub name: Option<String>,

    /// Signing threads [default: all cores]. The output does not depend on it.
    #[arg(long, env = "LT_THREADS", value_parser = parse_threads)]
    pub threads: Option<usize>,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A capture file (`.ltc`).
    pub file: PathBuf,

    /// Print the first N records' frames.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub frames: u64,

    /// Also verify every event's id and BIP-340 signature.
    #[arg(long)]
    pub verify: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A capture file (`.ltc`).
    pub file: PathBuf,

    /// Output file [default: stdout].
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

fn parse_clients(s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err("expected a whole number from 1 to 4294967295".into()),
    }
}

fn parse_threads(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if (1..=1024).contains(&n) => Ok(n),
        _ => Err("expected a whole number of threads from 1 to 1024".into()),
    }
}

fn positive(s: &str, what: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("expected a positive number of {what}")),
    }
}

fn parse_rate(s: &str) -> Result<f64, String> {
    positive(s, "events per second, e.g. 50 or 2.5")
}

/// `600`, `600s`, `10m`, `1.5h`.
pub fn parse_duration(s: &str) -> Result<f64, String> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let scale = match unit {
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err("expected seconds or a number with s, m or h (e.g. 600, 90s, 10m)".into()),
    };
    positive(num, "seconds (e.g. 600, 90s, 10m)").map(|v| v * scale)
}

/// A share from 0 to 1.
pub fn parse_share(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err("expected a share from 0 to 1, e.g. 0.2".into()),
    }
}

/// The view share: `0.9`, `0.9/0.1`, or the platform harness's `view:0.9,video:0.1`
/// (normalised to sum to 1).
pub fn parse_mix(s: &str) -> Result<f64, String> {
    const HELP: &str =
        "expected the share of view events from 0 to 1: 0.9, 0.9/0.1 or view:0.9,video:0.1";
    let s = s.trim();
    let num = |x: &str| {
        x.trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| HELP.to_string())
    };
    if s.contains(':') {
        let (mut view, mut video) = (None, None);
        for part in s.split(',') {
            let (k, v) = part.split_once(':').ok_or_else(|| HELP.to_string())?;
            match k.trim() {
                "view" => view = Some(num(v)?),
                "video" => video = Some(num(v)?),
                _ => return Err(format!("unknown mix entry {:?}; {HELP}", k.trim())),
            }
        }
        let (view, video) = (view.unwrap_or(0.0), video.unwrap_or(0.0));
        if view + video <= 0.0 {
            return Err(HELP.into());
        }
        return Ok(view / (view + video));
    }
    if let Some((a, b)) = s.split_once('/') {
        let (a, b) = (num(a)?, num(b)?);
        if (a + b - 1.0).abs() > 1e-6 {
            return Err(format!("{a}/{b} does not add up to 1; {HELP}"));
        }
        return Ok(a);
    }
    let v = num(s)?;
    if v > 1.0 {
        return Err(HELP.into());
    }
    Ok(v)
}

/// Unix seconds or RFC 3339.
pub fn parse_epoch(s: &str) -> Result<u64, String> {
    let s = s.trim();
    if let Ok(v) = s.parse::<u64>() {
        return Ok(v);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .and_then(|t| u64::try_from(t.timestamp()).ok())
        .ok_or_else(|| {
            "expected unix seconds or an RFC 3339 time (e.g. 2026-02-02T02:40:00Z)".into()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_forms() {
        assert_eq!(parse_mix("0.9"), Ok(0.9));
        assert_eq!(parse_mix("0.9/0.1"), Ok(0.9));
        assert!((parse_mix("video:0.1,view:0.9").unwrap() - 0.9).abs() < 1e-12);
        assert!((parse_mix("view:9,video:1").unwrap() - 0.9).abs() < 1e-12);
        for bad in ["1.5", "-0.1", "0.5/0.6", "view:x", "audio:1", "", "nan"] {
            assert!(parse_mix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("600"), Ok(600.0));
        assert_eq!(parse_duration("10m"), Ok(600.0));
        assert_eq!(parse_duration("1.5h"), Ok(5400.0));
        for bad in ["0", "-3", "10d", "m", "inf"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn epochs() {
        assert_eq!(parse_epoch("1770000000"), Ok(1_770_000_000));
        assert_eq!(parse_epoch("2026-02-02T02:40:00Z"), Ok(1_770_000_000));
        assert!(parse_epoch("yesterday").is_err());
    }

    #[test]
    fn rates_and_clients() {
        assert!(parse_rate("-3").is_err());
        assert!(parse_rate("0").is_err());
        assert_eq!(parse_rate("2.5"), Ok(2.5));
        assert!(parse_clients("0").is_err());
        assert_eq!(parse_clients("50"), Ok(50));
    }
}
