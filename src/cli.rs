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
    /// Record real clients into a trace: a WebSocket proxy between them and a relay that
    /// keeps every client frame, its timing and the relay's answer.
    ///
    /// The upstream must be loopback or a host named with --allow-host; the proxy listens
    /// on loopback unless told otherwise.
    Record(RecordArgs),
    /// Turn an event dump (JSONL, as `lt export`, nak and strfry write) into a trace.
    Import(ImportArgs),
    /// Play a trace to a relay, open-loop at scaled time, and record every outcome.
    ///
    /// Only loopback, or hosts named with --allow-host, are ever sent load.
    Replay(ReplayArgs),
    /// Turn results files into a JSON and a Markdown report, with charts.
    Analyze(AnalyzeArgs),
    /// Compare two sets of runs of one trace: `lt compare A.ltr… -- B.ltr…`.
    Compare(CompareArgs),
    /// Compare two relay builds end to end: start each fresh per run (A B B A …), replay
    /// the same trace into it, analyze, compare.
    ///
    /// The relays are started by lt and reached on 127.0.0.1 only.
    Ab(AbArgs),
    /// Find the highest event rate a relay sustains under an SLO: a warm-up, a ramp, a
    /// bisection and a confirmation, each step a real replay; both bounds reported.
    ///
    /// Only loopback, or hosts named with --allow-host, are ever sent load; a host other
    /// than loopback also needs --max-rate.
    Capacity(CapacityArgs),
}

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Seed of every random choice; the same seed and options give a byte-identical file.
    #[arg(long, env = "SEED", default_value_t = 42)]
    pub seed: u64,

    /// Connections the trace is spread over.
    #[arg(long, env = "CLIENTS", default_value_t = 1000, value_parser = parse_clients)]
    pub clients: u32,

    /// Length of the traffic (`600`, `90s`, `10m`, `1.5h`). Units: us, ms, s, m, h, d, or several (`1h 30m`); a bare number is seconds.
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

    /// Share of clients holding live subscriptions: a home feed and the watched video's view
    /// counter, opened when a viewing session starts and CLOSEd when it ends. 0 (the
    /// default) gives traces without them, byte for byte as before.
    #[arg(long, env = "LIVE_SHARE", default_value_t = 0.0, value_parser = parse_share, allow_negative_numbers = true)]
    pub live_share: f64,

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

    /// Replace an existing capture. Without it lt refuses: results name their trace by
    /// fingerprint, and a replaced trace would no longer be the one they replayed.
    #[arg(long)]
    pub force: bool,

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

#[derive(Debug, Args)]
pub struct RecordArgs {
    /// Where clients connect: `HOST:PORT`. A non-loopback address must be given on purpose
    /// and is warned about: the proxy forwards whoever connects to the relay.
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub listen: String,

    /// The relay the clients are recorded against: `ws://HOST:PORT/` or `wss://…`. Must be
    /// loopback or a host named with --allow-host.
    #[arg(long, required_unless_present = "recover")]
    pub upstream: Option<String>,

    /// Instead of recording: copy every complete block of a recording that was killed
    /// (no trailer) into a complete capture at -o.
    #[arg(long, value_name = "PARTIAL", conflicts_with_all = ["upstream", "duration"])]
    pub recover: Option<PathBuf>,

    #[command(flatten)]
    pub target: TargetArgs,

    /// The capture to write (`.ltc`).
    #[arg(short, long)]
    pub output: PathBuf,

    /// Stop recording after this long (`90s`, `10m`); without it, Ctrl-C stops.
    /// Units: us, ms, s, m, h, d, or several (`1h 30m`); a bare number is seconds.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<f64>,

    /// How long a record waits for the relay's answer before it is written without one
    /// (at most 1h). Units: us, ms, s, m, h, d, or several (`1h 30m`); a bare number is seconds.
    #[arg(long, default_value = "10s", value_parser = parse_timeout)]
    pub answer_timeout: std::time::Duration,

    /// No progress line.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Events, one per line: event objects or `["EVENT",{…}]` frames; `-` for standard
    /// input. zstd-compressed input is recognised by its magic bytes.
    pub input: PathBuf,

    /// The capture to write (`.ltc`).
    #[arg(short, long)]
    pub output: PathBuf,

    /// Keep the events' own spacing (`created_at`, in input order, gaps capped by
    /// --max-gap). The default unless --rate is given.
    #[arg(long, value_enum, conflicts_with = "rate")]
    pub timing: Option<ImportTimingArg>,

    /// Longest gap kept between consecutive events with --timing created_at (at most
    /// 1h). Units: us, ms, s, m, h, d, or several (`1h 30m`); a bare number is seconds.
    #[arg(long, default_value = "5s", value_parser = parse_timeout)]
    pub max_gap: std::time::Duration,

    /// Spread the events as seeded Poisson arrivals at this many per second instead.
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<f64>,

    /// Seed of the arrivals with --rate.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    /// Connections the events are spread over; one author stays on one connection.
    #[arg(long, default_value_t = 100, value_parser = parse_clients)]
    pub clients: u32,

    /// Any bad line (not JSON, not an event, a wrong id or signature) is an error with its
    /// line number, instead of being counted and skipped.
    #[arg(long)]
    pub strict: bool,

    /// Do not check ids and signatures (faster; a relay will reject what does not verify).
    #[arg(long)]
    pub no_verify: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ImportTimingArg {
    #[value(name = "created_at", alias = "created-at")]
    CreatedAt,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// A trace file (`.ltc`) made by `lt synth`.
    pub trace: PathBuf,

    /// The relay: `ws://HOST:PORT/`. Required; there is no default target. Must be
    /// loopback or a host named with --allow-host.
    #[arg(long, env = "RELAY_URL")]
    pub relay: Option<String>,

    #[command(flatten)]
    pub target: TargetArgs,

    #[command(flatten)]
    pub load: LoadArgs,

    /// Sample this process's CPU and RSS each second (the relay's pid).
    #[arg(long)]
    pub relay_pid: Option<u32>,

    #[command(flatten)]
    pub scrape: ScrapeArgs,

    /// Profile the relay (--relay-pid) with `perf record` during the run; its hot functions
    /// go beside the results (`<results>.profile.json`) and into `lt analyze`'s report.
    #[arg(long, requires = "relay_pid")]
    pub profile: bool,

    /// Results file [default: reports/runs/<trace name>-<UTC time>.ltr].
    #[arg(short, long)]
    pub output: Option<PathBuf>,

    /// Play part I of N of a sharded replay (`2/4`): the trace connections c with
    /// c mod N = I, whole. `lt analyze` merges the N parts' results into one run.
    #[arg(long, env = "LT_SHARD", value_parser = parse_shard, conflicts_with = "shards")]
    pub shard: Option<(u32, u32)>,

    /// As --shard, with the index I taken from JOB_COMPLETION_INDEX (what a Kubernetes
    /// Indexed Job sets in each pod).
    #[arg(long)]
    pub shards: Option<u32>,

    /// Check the target and print the plan; open no socket.
    #[arg(long, env = "DRY_RUN", value_parser = parse_flag, default_value = "false", num_args = 0..=1, default_missing_value = "true")]
    pub dry_run: bool,

    /// With --dry-run: also fetch the relay's NIP-11 document (one HTTP request, no load)
    /// and predict which records its advertised limits refuse.
    #[arg(long)]
    pub preflight: bool,
}

/// Where lt may connect and how, for `replay` (`--relay`) and `record` (`--upstream`): the
/// allow-list, TLS roots and source addresses. [`TargetArgs::check`] turns them and the URL
/// into the one checked `guard::Target` (`target::check`). `ab` starts its relays on loopback itself and has
/// none of these.
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// Dedicated test hosts lt may connect to besides loopback: exact names, IPs or CIDRs
    /// (repeat, or separate with commas).
    #[arg(long = "allow-host", env = "LT_ALLOW_HOSTS", value_delimiter = ',')]
    pub allow_hosts: Vec<String>,

    /// For a wss:// relay: a PEM file of CA certificates to trust besides the system's (a
    /// staging CA, a self-signed certificate). Repeatable. Certificate checks cannot be
    /// turned off.
    #[arg(
        long = "ca-file",
        value_name = "PEM",
        env = "LT_CA_FILE",
        value_delimiter = ':'
    )]
    pub ca_files: Vec<PathBuf>,

    /// Local address to connect from (repeatable, or a range such as
    /// 127.0.0.2-127.0.0.9): connections are spread over them, past the ephemeral ports of
    /// one source address toward one relay address (~28k).
    #[arg(long = "source-addr", value_name = "ADDR", value_parser = parse_source_addrs)]
    pub source_addrs: Vec<Vec<std::net::IpAddr>>,
}

/// What is read from the relay's side during a run: Prometheus endpoints and this machine's
/// `/proc` (docs/relay-metrics.md).
#[derive(Debug, Clone, Args)]
pub struct ScrapeArgs {
    /// A Prometheus endpoint to scrape every --scrape-interval during the run: `URL` or
    /// `PRESET=URL`, the preset one of node-exporter, nostr-rs-relay, rnostr, other
    /// (detected from the first answer when not named); `rnostr=http://127.0.0.1:7777/metrics?auth=KEY`.
    /// `{port}` in the URL is the relay's port (of each run's relay, under `lt ab` and
    /// `lt capacity --spec`): `nostr-rs-relay=http://127.0.0.1:{port}/metrics`.
    /// Repeatable. Its host must pass the guard as a relay's does. A failing or slow
    /// endpoint never stops the run: its gaps are counted.
    #[arg(long = "scrape", value_name = "[PRESET=]URL", value_parser = parse_scrape)]
    pub scrapes: Vec<crate::scrape::ScrapeArg>,

    /// Time between scrapes (and between readings of this machine's /proc).
    #[arg(long, default_value = "1s", value_parser = parse_scrape_interval)]
    pub scrape_interval: std::time::Duration,

    /// Do not read this machine's /proc (host CPU, memory, disks, network; the relay process
    /// with --relay-pid) during a run against a relay on loopback, where it is read by default.
    #[arg(long)]
    pub no_host_stats: bool,

    /// Serve lt's own progress at http://ADDR/metrics in the Prometheus text format while
    /// the command runs (records sent, done by outcome, in flight, connections; schedule-lag
    /// and response-time histograms), e.g. 127.0.0.1:9464; port 0 picks a free one, said on
    /// stderr (docs/relay-metrics.md).
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,
}

impl ScrapeArgs {
    /// What every run of the command scrapes, the hosts of `--scrape` allowed by
    /// `allow_hosts` (loopback always), https ones trusting `ca_files` besides the system's;
    /// every host through the guard now, before any run. With `serve` (not in a dry run),
    /// `--metrics-listen` starts listening now, so a port in use fails before any load.
    pub fn scraping(
        &self,
        allow_hosts: &[String],
        ca_files: &[PathBuf],
        serve: bool,
    ) -> anyhow::Result<crate::scrape::Scraping> {
        let scraping = crate::scrape::Scraping {
            scrapes: self.scrapes.clone(),
            allow: crate::guard::AllowList::parse(allow_hosts).map_err(|e| anyhow::anyhow!(e))?,
            ca_files: ca_files.to_vec(),
            host_stats: !self.no_host_stats,
            interval: self.scrape_interval,
            live: None,
        };
        scraping.check()?;
        let live = match self.metrics_listen.filter(|_| serve) {
            Some(addr) => {
                let server = crate::live::Server::start(addr)?;
                eprintln!("lt: live metrics at http://{}/metrics", server.addr());
                Some(std::sync::Arc::new(server))
            }
            None => None,
        };
        Ok(crate::scrape::Scraping { live, ..scraping })
    }
}

fn parse_scrape(s: &str) -> Result<crate::scrape::ScrapeArg, String> {
    s.parse()
}

fn parse_scrape_interval(s: &str) -> Result<std::time::Duration, String> {
    match crate::units::duration(s)? {
        d if d >= std::time::Duration::from_millis(100)
            && d <= std::time::Duration::from_secs(60) =>
        {
            Ok(d)
        }
        _ => Err(format!("{s:?}: between 100ms and 60s")),
    }
}

/// How a trace is played: shared by `replay` and `ab`.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Time scale: `2x`, `0.5x`, `200%`, or `max` for as fast as the in-flight caps allow.
    #[arg(long, default_value = "1x", value_parser = parse_speed)]
    pub speed: crate::replay::Speed,

    /// Connections to open [default: the trace's clients]; trace clients fold onto them.
    #[arg(long, value_parser = parse_clients)]
    pub clients: Option<u32>,

    /// Network threads, each running its share of the connections and their schedule
    /// [default: the fewest that carry the trace's peak rate, at most one per core; one per
    /// core at `--speed max`].
    #[arg(long, value_parser = parse_positive_usize)]
    pub threads: Option<usize>,

    /// Connections opened at once during the connect phase.
    #[arg(long, default_value_t = 50, value_parser = parse_positive_usize)]
    pub connect_concurrency: usize,

    /// Records in flight (sent, not yet answered) across all connections.
    #[arg(long, default_value_t = 10_000, value_parser = parse_positive_usize)]
    pub max_in_flight: usize,

    /// Records in flight on one connection. The default stays under nostr-rs-relay's
    /// 128-slot result channel, past which it silently drops OKs.
    #[arg(long, default_value_t = 100, value_parser = parse_positive_usize)]
    pub per_conn_in_flight: usize,

    /// At the in-flight cap: `wait` (the wait is recorded as schedule lag) or `drop`
    /// (the record's outcome is `dropped`).
    #[arg(long, default_value = "wait", value_parser = parse_overload)]
    pub on_overload: crate::replay::Overload,

    /// How long a record may wait for its reply, at most 1h (10 s is the platform's publish
    /// timeout). Units: us, ms, s, m, h, d, or several (`1h 30m`); a bare number is seconds.
    #[arg(long, default_value = "10s", value_parser = parse_timeout)]
    pub timeout: std::time::Duration,

    /// Stop sending after this much of the (scaled) trace; the rest are `not_sent`.
    /// Units: us, ms, s, m, h, d, or several (`1h 30m`); a bare number is seconds.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<f64>,

    /// After the run, ask the relay by id for events that got no OK [default: on for
    /// loopback targets].
    #[arg(long, overrides_with = "no_reconcile")]
    pub reconcile: bool,

    /// Do not reconcile unacknowledged events.
    #[arg(long)]
    pub no_reconcile: bool,

    /// Open the connections, then start the clock at this wall-clock instant (RFC 3339,
    /// e.g. 2026-12-01T10:00:00Z): the shards of one run, on N machines, start together
    /// within their clock sync. An instant already past once connected is refused.
    #[arg(long, env = "LT_START_AT", value_parser = parse_start_at)]
    pub start_at: Option<chrono::DateTime<chrono::Utc>>,

    /// For a trace with live subscriptions: also write one results row per delivery (its
    /// subscription's REQ, the event id, when it arrived). Off by default: the rows grow
    /// with the fan-out; the report's figures do not need them.
    #[arg(long)]
    pub delivery_rows: bool,

    /// Refuse to run when the relay's NIP-11 limits would refuse any record of the trace
    /// (the preflight's predictions).
    #[arg(long)]
    pub strict_limits: bool,
}

/// Output and analysis options of `analyze`.
#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// Results files (`.ltr`) of one trace: repeats or shards merge exactly.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,

    /// Folder for the reports [default: reports/load-test].
    #[arg(long)]
    pub out_dir: Option<PathBuf>,

    /// The trace that was replayed: names example events by id in the error taxonomy.
    #[arg(long)]
    pub trace: Option<PathBuf>,

    /// Also write the latency distributions in HdrHistogram's percentile format (.hgrm).
    #[arg(long)]
    pub hgrm: bool,

    /// Read a results file that ends early (lt killed, disk full) up to its last complete
    /// block, or a sharded run with a part missing; the report is marked partial and not
    /// trustworthy.
    #[arg(long, visible_alias = "allow-partial")]
    pub partial: bool,

    /// A gate on the report: `METRIC OP VALUE`, e.g. 'response.p99 < 50ms', 'success >=
    /// 99.5%', 'timeouts == 0'. Any number in the JSON report by its path, or an alias
    /// (docs/reports.md). A time takes us, ms, s, m, h, d, or several (`1h 30m`); a share
    /// `%`; a size KB, MB or GB. Repeatable; lt analyze exits 1 when one fails.
    #[arg(long = "check", value_name = "EXPR", value_parser = parse_check)]
    pub checks: Vec<crate::analyze::checks::Expr>,

    /// Checks listed in a file: TOML `checks = [...]` or JSON `{"checks": [...]}`.
    #[arg(long = "checks", value_name = "FILE")]
    pub checks_file: Option<PathBuf>,

    /// Let checks pass on a run that is not trustworthy (lt itself the bottleneck, partial
    /// results); by default such a run fails every gate.
    #[arg(long)]
    pub allow_untrusted: bool,

    /// Write an issue draft (Markdown) per bottleneck found into DIR: evidence, how to
    /// reproduce, suggested labels; cryptography among the relay's top costs (from a real
    /// profile) gets one marked requires-security-review.
    #[arg(long, value_name = "DIR")]
    pub issues: Option<PathBuf>,

    /// Print only a Markdown block for a pull request's body (`pr`): the safety statement,
    /// the commands, the config, the results and the next steps.
    #[arg(long, value_name = "FORMAT", value_parser = ["pr"])]
    pub summary: Option<String>,
}

fn parse_check(s: &str) -> Result<crate::analyze::checks::Expr, String> {
    s.parse()
}

fn parse_fail_on(s: &str) -> Result<crate::analyze::gate::FailOn, String> {
    s.parse()
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Results files of side A, then `--`, then those of side B (same trace).
    #[arg(required = true, num_args = 1..)]
    pub a: Vec<PathBuf>,

    #[arg(last = true, required = true, num_args = 1..)]
    pub b: Vec<PathBuf>,

    /// Name of side A in the report.
    #[arg(long, default_value = "A")]
    pub a_name: String,

    /// Name of side B in the report.
    #[arg(long, default_value = "B")]
    pub b_name: String,

    /// The smallest difference that counts as better or worse: `5%` for every metric judged
    /// relative to A, or `METRIC=VALUE` for one metric, VALUE being `N%` (of A) and/or a
    /// floor in the metric's unit (`response_p50=10%,2ms`, `success_rate=1pp`,
    /// `failed=25`). Repeatable; defaults in docs/comparing-builds.md.
    #[arg(long, value_name = "[METRIC=]VALUE")]
    pub threshold: Vec<crate::analyze::thresholds::Override>,

    /// A release gate: exit 1 when B is worse on any metric (`worse`: overall worse or
    /// mixed), or on any of the listed ones (`response_p99,success_rate`).
    #[arg(long, value_name = "worse|METRIC,…", value_parser = parse_fail_on)]
    pub fail_on: Option<crate::analyze::gate::FailOn>,

    /// Folder for the reports [default: reports/load-test].
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct AbArgs {
    /// The trace both builds get (`.ltc`, from `lt synth`).
    #[arg(long)]
    pub trace: PathBuf,

    /// Build A as `NAME=COMMAND`; the command may use `{port}`, `{dir}` (a fresh, empty
    /// data directory per run) and `{config}` (the filled-in --a-config). It must make the
    /// relay listen on 127.0.0.1:{port}.
    #[arg(long = "a", value_name = "NAME=CMD")]
    pub a: String,

    /// Build B, as --a.
    #[arg(long = "b", value_name = "NAME=CMD", required_unless_present = "aa")]
    pub b: Option<String>,

    /// Calibrate: compare build A with itself (B is A, under the name NAME-again) and
    /// report how often the comparison called a difference that is not there.
    #[arg(long, conflicts_with_all = ["b", "b_config"])]
    pub aa: bool,

    /// With --aa: how many whole A/A comparisons to run (each of --runs runs a side)
    /// [default: 1].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub sessions: Option<u32>,

    /// Config template for A: a relay config file with `{port}` and `{dir}` in it.
    #[arg(long)]
    pub a_config: Option<PathBuf>,

    /// Config template for B.
    #[arg(long)]
    pub b_config: Option<PathBuf>,

    /// A listens with TLS: lt connects to wss://localhost:{port}/ and trusts this CA (PEM)
    /// for it, besides the system's roots.
    #[arg(long, value_name = "PEM")]
    pub a_tls_ca: Option<PathBuf>,

    /// B listens with TLS, as --a-tls-ca.
    #[arg(long, value_name = "PEM")]
    pub b_tls_ca: Option<PathBuf>,

    /// Runs per build, in ABBA order so slow drift cancels. Three or more measure the noise
    /// between repeats well; two is the least that measures it at all.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub runs: u32,

    /// Folder for everything [default: reports/ab/<A>-vs-<B>-<UTC time>].
    #[arg(long)]
    pub out: Option<PathBuf>,

    /// How long a relay may take to answer on its port after it starts (at most 1h).
    /// Units: us, ms, s, m, h, d, or several (`1h 30m`); a bare number is seconds.
    #[arg(long, default_value = "30s", value_parser = parse_timeout)]
    pub ready_timeout: std::time::Duration,

    /// The smallest difference that counts as better or worse: `5%` for every metric judged
    /// relative to A, or `METRIC=VALUE` for one metric, VALUE being `N%` (of A) and/or a
    /// floor in the metric's unit (`response_p50=10%,2ms`, `success_rate=1pp`,
    /// `failed=25`). Repeatable; defaults in docs/comparing-builds.md.
    #[arg(long, value_name = "[METRIC=]VALUE")]
    pub threshold: Vec<crate::analyze::thresholds::Override>,

    /// A release gate: exit 1 when B is worse on any metric (`worse`: overall worse or
    /// mixed), or on any of the listed ones (`response_p99,success_rate`).
    #[arg(long, value_name = "worse|METRIC,…", value_parser = parse_fail_on)]
    pub fail_on: Option<crate::analyze::gate::FailOn>,

    /// When B is worse: write issue drafts into DIR, the regression (figures, intervals,
    /// the command that found it) and what the rules found on B's runs.
    #[arg(long, value_name = "DIR")]
    pub issues: Option<PathBuf>,

    /// Profile each relay with `perf record` during its runs (hot functions per run report).
    #[arg(long)]
    pub profile: bool,

    /// Compare capacities: run the capacity search (the search options below) for A and
    /// for B, a fresh relay per step, alternating, --runs times each; the trace is split
    /// across each search's steps.
    #[arg(long, conflicts_with_all = ["aa", "issues", "fail_on", "profile"])]
    pub capacity: bool,

    #[command(flatten)]
    pub search: SearchArgs,

    #[command(flatten)]
    pub load: LoadArgs,

    #[command(flatten)]
    pub scrape: ScrapeArgs,
}

/// `lt capacity`: the relay, the workload, the SLO and the search.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("relay_to_load").required(true).args(["relay", "spec"])))]
pub struct CapacityArgs {
    /// A trace to play, its records split across the steps (at the speed each step's rate
    /// needs). Without one, each step is synthesized at its rate (the workload options).
    pub trace: Option<PathBuf>,

    /// A running relay: `ws://127.0.0.1:PORT/` (or a host named with --allow-host). Never
    /// restarted: its database grows from step to step.
    #[arg(long)]
    pub relay: Option<String>,

    /// Or a fresh relay per step, started by lt as `lt ab` starts them: `NAME=COMMAND` with
    /// `{port}`, `{dir}` and `{config}` (the filled-in --config).
    #[arg(long, value_name = "NAME=CMD", conflicts_with_all = ["relay", "relay_pid"])]
    pub spec: Option<String>,

    /// The config template for --spec, with `{port}` and `{dir}` in it.
    #[arg(long, requires = "spec")]
    pub config: Option<PathBuf>,

    /// How long a relay started for a step may take to answer on its port.
    #[arg(long, default_value = "30s", value_parser = parse_timeout, requires = "spec")]
    pub ready_timeout: std::time::Duration,

    /// Pid of the running relay (--relay) on this machine, sampled for CPU and memory.
    #[arg(long)]
    pub relay_pid: Option<u32>,

    #[command(flatten)]
    pub scrape: ScrapeArgs,

    #[command(flatten)]
    pub search: SearchArgs,

    /// Folder for the search [default: reports/capacity/<relay>-<UTC time>].
    #[arg(long)]
    pub out: Option<PathBuf>,

    #[command(flatten)]
    pub workload: WorkloadArgs,

    #[command(flatten)]
    pub target: TargetArgs,

    /// Connections opened at once during each step's connect phase.
    #[arg(long, default_value_t = 50, value_parser = parse_positive_usize)]
    pub connect_concurrency: usize,

    /// Records in flight across all connections (see `lt replay`).
    #[arg(long, default_value_t = 10_000, value_parser = parse_positive_usize)]
    pub max_in_flight: usize,

    /// Records in flight on one connection (see `lt replay`).
    #[arg(long, default_value_t = 100, value_parser = parse_positive_usize)]
    pub per_conn_in_flight: usize,

    /// How long a record may wait for its reply.
    #[arg(long, default_value = "10s", value_parser = parse_timeout)]
    pub timeout: std::time::Duration,

    /// Network threads [default: sized from each step's rate].
    #[arg(long, value_parser = parse_positive_usize)]
    pub threads: Option<usize>,

    /// Do not reconcile unacknowledged events after each step.
    #[arg(long)]
    pub no_reconcile: bool,

    /// Refuse a step whose relay advertises limits its trace would hit.
    #[arg(long)]
    pub strict_limits: bool,

    /// Check the target and the options, print the search's plan, and send nothing (no
    /// socket is opened, no relay started).
    #[arg(long)]
    pub dry_run: bool,
}

/// How a capacity search runs: its SLO, rates, precision and step lengths (`lt capacity`,
/// `lt ab --capacity`).
#[derive(Debug, Clone, Args)]
pub struct SearchArgs {
    /// An SLO term, as `lt analyze --check` takes it (`response.p99 < 100ms`, `success >=
    /// 99.9%`, `delivery.p99 < 1s`); repeatable, all must hold [default:
    /// `response.p99 < 200ms`, `success >= 99.9%`].
    #[arg(long, value_name = "EXPR", value_parser = parse_check)]
    pub slo: Vec<crate::analyze::checks::Expr>,

    /// The first step's rate, EVENT frames per second.
    #[arg(long, default_value_t = 100.0, value_parser = parse_rate)]
    pub start: f64,

    /// The ramp's factor from one step to the next until a step fails.
    #[arg(long, default_value_t = 2.0, value_parser = parse_factor)]
    pub factor: f64,

    /// The search ends when the lowest failing rate is within this of the highest passing
    /// one: `5%` or `0.05`.
    #[arg(long, default_value = "5%", value_parser = parse_precision)]
    pub precision: f64,

    /// No step above this rate (events per second); required for a target other than
    /// loopback.
    #[arg(long, value_parser = parse_rate)]
    pub max_rate: Option<f64>,

    /// End the search by then with the bounds so far (`5m`, `1h`); checked before each step.
    #[arg(long, value_parser = parse_deadline)]
    pub deadline: Option<std::time::Duration>,

    /// Length of a search step. Units: us, ms, s, m, h; a bare number is seconds.
    #[arg(long, default_value = "10s", value_parser = parse_timeout)]
    pub step: std::time::Duration,

    /// Length of the warm-up step at the start rate (not judged); 0 for none.
    #[arg(long, default_value = "5s", value_parser = parse_span)]
    pub warmup: std::time::Duration,

    /// Length of the confirmation (the first long step, at the highest short pass) and of
    /// every step after it: the answer always rests on steps this long.
    #[arg(long, default_value = "20s", value_parser = parse_timeout)]
    pub confirm: std::time::Duration,

    /// Pause between steps, for the relay to drain what the last one left.
    #[arg(long, default_value = "1s", value_parser = parse_span)]
    pub cooldown: std::time::Duration,
}

impl SearchArgs {
    pub fn params(&self) -> crate::capacity::search::Params {
        crate::capacity::search::Params {
            start: self.start,
            factor: self.factor,
            precision: self.precision,
            max_rate: self.max_rate,
            warmup: !self.warmup.is_zero(),
            ..Default::default()
        }
    }

    pub fn timing(&self) -> crate::capacity::run::Timing {
        crate::capacity::run::Timing {
            step: self.step,
            warmup: self.warmup,
            confirm: self.confirm,
            cooldown: self.cooldown,
            deadline: self.deadline,
        }
    }
}

/// The traffic model of a synthesized search (no trace given): `lt synth`'s options but
/// the rate and duration, which each step sets.
#[derive(Debug, Clone, Args)]
pub struct WorkloadArgs {
    /// Seed of the workload; each step's trace is seeded from it and the step's number.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    /// Connections each step's trace is spread over; with a trace, at most this many
    /// connections [default: 200 for a synthesized workload, the trace's own otherwise].
    #[arg(long, value_parser = parse_clients)]
    pub clients: Option<u32>,

    /// Share of publish actions that are view events (as `lt synth --mix`).
    #[arg(long, default_value = "0.9", value_parser = parse_mix)]
    pub mix: f64,

    /// Share of arrivals that are reads (as `lt synth --read-share`).
    #[arg(long, default_value_t = 0.2, value_parser = parse_share)]
    pub read_share: f64,

    /// Share of video bundles that edit an existing video.
    #[arg(long, default_value_t = 0.1, value_parser = parse_share)]
    pub edit_share: f64,

    /// Share of new hosted videos that also publish a NIP-71 mirror.
    #[arg(long, default_value_t = 0.2, value_parser = parse_share)]
    pub nip71_share: f64,

    /// Share of clients holding live subscriptions (so `delivery.p99` can be an SLO term).
    #[arg(long, default_value_t = 0.0, value_parser = parse_share)]
    pub live_share: f64,

    /// Creator keys publishing videos [default: clients / 50, at least 1].
    #[arg(long, value_parser = parse_clients)]
    pub creators: Option<u32>,

    /// `created_at` of each step's trace start (as `lt synth --epoch`).
    #[arg(long, default_value_t = DEFAULT_EPOCH, value_parser = parse_epoch)]
    pub epoch: u64,
}

/// Connections of a synthesized capacity step unless --clients says otherwise: enough to
/// spread the load as many clients do, few enough that each step's connect phase takes
/// well under a second.
pub const CAPACITY_CLIENTS: u32 = 200;

fn parse_factor(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if f.is_finite() && f > 1.0 && f <= 16.0 => Ok(f),
        _ => Err(format!(
            "{s:?} is not a factor above 1 and at most 16 (2 doubles)"
        )),
    }
}

/// A share given as `5%` or `0.05`, above 0 and below 1.
fn parse_precision(s: &str) -> Result<f64, String> {
    let v = match s.trim().strip_suffix('%') {
        Some(pct) => pct.trim().parse::<f64>().map(|p| p / 100.0),
        None => s.trim().parse::<f64>(),
    };
    match v {
        Ok(v) if v.is_finite() && v > 0.0 && v < 1.0 => Ok(v),
        _ => Err(format!(
            "{s:?} is not a precision above 0 and below 100%, such as 5% or 0.05"
        )),
    }
}

/// A positive duration of at most a week.
fn parse_deadline(s: &str) -> Result<std::time::Duration, String> {
    match crate::units::duration(s)? {
        d if !d.is_zero() && d <= std::time::Duration::from_secs(7 * 86_400) => Ok(d),
        _ => Err(format!("{s:?}: a deadline above 0 and at most 7d")),
    }
}

/// A duration that may be 0 (`0`, `2s`), at most an hour.
fn parse_span(s: &str) -> Result<std::time::Duration, String> {
    match crate::units::duration(s)? {
        d if d <= std::time::Duration::from_secs(3600) => Ok(d),
        _ => Err(format!("{s:?}: at most 1h")),
    }
}

/// clap's error on one line: its first paragraph may span lines ("…were not provided:"
/// then the arguments). A bad value that came from an environment variable (`MIX=abc`) is
/// put as the variable the user set, not as a flag they never typed.
pub fn one_line_error(e: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue};
    let msg = e.to_string();
    let first: Vec<&str> = msg
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    let mut line = first.join(" ").trim_start_matches("error: ").to_owned();
    if line.is_empty() {
        line = "invalid arguments".into();
    }
    let (Some(ContextValue::String(arg)), Some(ContextValue::String(value))) = (
        e.get(ContextKind::InvalidArg),
        e.get(ContextKind::InvalidValue),
    ) else {
        return line;
    };
    let flag = arg.split_whitespace().next().unwrap_or_default();
    let typed = std::env::args().any(|a| a == flag || a.starts_with(&format!("{flag}=")));
    let env = <Cli as clap::CommandFactory>::command()
        .get_subcommands()
        .flat_map(|c| c.get_arguments())
        .find(|a| a.get_long().is_some_and(|l| flag == format!("--{l}")))
        .and_then(|a| a.get_env().map(|v| v.to_string_lossy().into_owned()));
    match env {
        Some(var) if !typed && std::env::var(&var).is_ok_and(|v| v == *value) => {
            format!("{var}={value} (from the environment): {line}")
        }
        _ => line,
    }
}

fn parse_speed(s: &str) -> Result<crate::replay::Speed, String> {
    s.parse()
}

fn parse_overload(s: &str) -> Result<crate::replay::Overload, String> {
    s.parse()
}

fn parse_positive_usize(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("expected a whole number of at least 1".into()),
    }
}

/// `10`, `10s`, `500ms`, `1m`.
fn parse_timeout(s: &str) -> Result<std::time::Duration, String> {
    match crate::units::duration(s)? {
        d if !d.is_zero() && d <= std::time::Duration::from_secs(3600) => Ok(d),
        _ => Err("expected a positive time up to 1h, e.g. 10s, 500ms, 1m".into()),
    }
}

/// `DRY_RUN=1`, `true`, `yes`, `on` (and their opposites).
fn parse_flag(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err("expected 1 or 0 (true or false)".into()),
    }
}

/// Most addresses one `--source-addr` range may name.
const SOURCE_RANGE_MAX: u32 = 65_536;

/// One address, or an IPv4 range `A-B` (both ends included).
fn parse_source_addrs(s: &str) -> Result<Vec<std::net::IpAddr>, String> {
    use std::net::{IpAddr, Ipv4Addr};
    let s = s.trim();
    let Some((a, b)) = s.split_once('-') else {
        return s.parse::<IpAddr>().map(|ip| vec![ip]).map_err(|_| {
            format!("{s:?}: expected an IP address or a range such as 127.0.0.2-127.0.0.9")
        });
    };
    let (a, b) = match (a.trim().parse::<Ipv4Addr>(), b.trim().parse::<Ipv4Addr>()) {
        (Ok(a), Ok(b)) => (u32::from(a), u32::from(b)),
        _ => {
            return Err(format!(
                "{s:?}: a range is two IPv4 addresses, such as 127.0.0.2-127.0.0.9"
            ))
        }
    };
    if b < a || b - a >= SOURCE_RANGE_MAX {
        return Err(format!(
            "{s:?}: a range goes upwards and holds at most {SOURCE_RANGE_MAX} addresses"
        ));
    }
    Ok((a..=b).map(|n| IpAddr::V4(Ipv4Addr::from(n))).collect())
}

/// An RFC 3339 instant, as UTC.
fn parse_start_at(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| format!("{s:?}: expected an RFC 3339 time such as 2026-12-01T10:00:00Z ({e})"))
}

/// `I/N`: part I (from 0) of N.
fn parse_shard(s: &str) -> Result<(u32, u32), String> {
    let (i, n) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?}: expected I/N, e.g. 0/4"))?;
    let parse = |x: &str| {
        x.trim()
            .parse::<u32>()
            .map_err(|_| format!("{s:?}: expected I/N, e.g. 0/4"))
    };
    let (i, n) = (parse(i)?, parse(n)?);
    if n == 0 || i >= n {
        return Err(format!("{s:?}: I must be below N (0/4 … 3/4)"));
    }
    Ok((i, n))
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

/// A positive length in seconds: `600`, `600s`, `10m`, `1.5h`, `1h 30m` ([`units::duration`]).
///
/// [`units::duration`]: crate::units::duration
pub fn parse_duration(s: &str) -> Result<f64, String> {
    match crate::units::duration(s)? {
        d if !d.is_zero() => Ok(d.as_secs_f64()),
        _ => Err("expected a positive length of time, e.g. 600, 90s, 10m".into()),
    }
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

impl LoadArgs {
    /// The load options as the replay takes them (the "high" arguments: flags resolved).
    pub fn load(&self) -> crate::replay::Load {
        crate::replay::Load {
            speed: self.speed,
            clients: self.clients,
            threads: self.threads,
            connect_concurrency: self.connect_concurrency,
            max_in_flight: self.max_in_flight,
            per_conn_in_flight: self.per_conn_in_flight,
            overload: self.on_overload,
            timeout: self.timeout,
            duration_s: self.duration,
            reconcile: if self.no_reconcile {
                Some(false)
            } else if self.reconcile {
                Some(true)
            } else {
                None
            },
            delivery_rows: self.delivery_rows,
            start_at: self.start_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
        // Issue #28: one parser (humantime's units) for every duration flag.
        assert_eq!(parse_duration("1h 30m"), Ok(5400.0));
        assert_eq!(parse_duration("2d"), Ok(172800.0));
        for bad in ["0", "-3", "10 parsecs", "m", "inf"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_timeout("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_timeout("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["0s", "2h", "soon"] {
            assert!(parse_timeout(bad).is_err(), "{bad}");
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
