//! Scraping during a run: every source on a thread of its own, asked every interval from
//! t0, so a slow or hanging endpoint delays nothing but its own next scrape (and never the
//! replay: the network threads do not wait for anything here). Each answer becomes a
//! `scrape` row; a series seen for the first time is defined by a `series` row before it.
//! A scrape that fails, times out or answers garbage is a gap: a row with its reason.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::{Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};

use super::exposition::{self, Metric};
use super::source::{Preset, ScrapeArg, MAX_OTHER_SERIES};
use crate::capture::results::{Row, ScrapeRow, ScrapeSource, SeriesRow};
use crate::guard::{self, AllowList};

/// Larger answers are not read (node_exporter's is 100–300 KB).
const MAX_BYTES: u64 = 16 << 20;

/// What a command scrapes in each of its runs, as its command line says it: built once and
/// turned into sources per run ([`Scraping::sources`]), because a relay lt starts per run
/// (`lt ab`, `lt capacity --spec`) has a port and a pid of its own.
#[derive(Debug, Clone)]
pub struct Scraping {
    /// `--scrape`; `{port}` in a URL is the run's relay port.
    pub scrapes: Vec<ScrapeArg>,
    pub allow: AllowList,
    pub ca_files: Vec<PathBuf>,
    /// Read this machine's `/proc` when the relay runs here (on loopback, or a pid given).
    pub host_stats: bool,
    pub interval: Duration,
    /// `--metrics-listen`: lt's own live metrics, served for the command's whole life and
    /// counted into by each of its runs.
    pub live: Option<std::sync::Arc<crate::live::Server>>,
}

/// The relay of one run, as far as scraping it goes.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunRelay {
    /// The relay is on this machine's loopback.
    pub loopback: bool,
    /// Its port, for `{port}` in a `--scrape` URL.
    pub port: Option<u16>,
    /// Its process on this machine.
    pub pid: Option<u32>,
    /// Read each endpoint named without a preset once, now, for its preset (else `other`);
    /// not in a dry run.
    pub detect: bool,
}

/// How a source is read.
enum Reader {
    Http {
        client: crate::http::Client,
        url: String,
    },
    Host,
    Process(u32),
}

impl Reader {
    fn read(&self) -> Result<Vec<Metric>, String> {
        match self {
            Reader::Http { client, url } => {
                let text = client.get_text(url, "text/plain; version=0.0.4", MAX_BYTES)?;
                exposition::parse(&text)
            }
            Reader::Host => super::local::host(),
            Reader::Process(pid) => super::local::process(*pid),
        }
    }
}

/// A source ready to scrape: its entry in the results header and how to read it.
pub struct Source {
    pub header: ScrapeSource,
    preset: Preset,
    reader: Reader,
}

impl Scraping {
    /// Nothing scraped.
    pub fn none() -> Scraping {
        Scraping {
            scrapes: Vec::new(),
            allow: AllowList::default(),
            ca_files: Vec::new(),
            host_stats: false,
            interval: Duration::from_secs(1),
            live: None,
        }
    }

    /// Every `--scrape` URL through the guard now, before any run (`{port}` as a port lt
    /// would fill in): a command that starts its relays later refuses at once, not at its
    /// first run.
    pub fn check(&self) -> anyhow::Result<()> {
        prepare(
            self,
            &RunRelay {
                port: Some(1),
                ..RunRelay::default()
            },
        )
        .map(drop)
    }

    /// The sources of one run against `relay`.
    pub fn sources(&self, relay: &RunRelay) -> anyhow::Result<Vec<Source>> {
        prepare(self, relay)
    }
}

/// `{port}` in a `--scrape` URL: the run's relay port.
fn with_port(url: &str, port: Option<u16>) -> anyhow::Result<String> {
    match (url.contains("{port}"), port) {
        (false, _) => Ok(url.to_owned()),
        (true, Some(p)) => Ok(url.replace("{port}", &p.to_string())),
        (true, None) => Err(anyhow!(
            "--scrape {}: {{port}} needs a relay whose port lt knows",
            shown(url)
        )),
    }
}

/// Checks every `--scrape` URL with the guard (a refusal is an error: lt reads only from
/// hosts it may load) and reads each once, before the run, for its preset when none was
/// named; an endpoint that does not answer then is no error (it may come up), it is read as
/// `other` unless named.
fn prepare(w: &Scraping, relay: &RunRelay) -> anyhow::Result<Vec<Source>> {
    let mut out = Vec::new();
    let interval_s = w.interval.as_secs_f64();
    // An answer slower than most of the interval would overlap the next scrape.
    let timeout = w.interval.mul_f64(0.9);
    for arg in &w.scrapes {
        let url = with_port(&arg.url, relay.port)?;
        let target = guard::check_http(&url, &w.allow, &guard::system_resolver)
            .map_err(|refusal| anyhow!("refusing to scrape --scrape {}: {refusal}", shown(&url)))?;
        let mut location = target.url().clone();
        location.set_query(None);
        let client = crate::http::Client::new(&target, &w.ca_files, timeout)
            .with_context(|| format!("--scrape {location}"))?;
        let url = target.url().to_string();
        let mut reader = Reader::Http {
            client,
            url: url.clone(),
        };
        let preset = arg.preset.unwrap_or_else(|| match relay.detect {
            true => reader.read().map_or(Preset::Other, |m| Preset::detect(&m)),
            false => Preset::Other,
        });
        if let Reader::Http { url: read, .. } = &mut reader {
            *read = preset.narrowed(&url);
        }
        out.push((location.to_string(), preset, reader));
    }
    let here = w.host_stats && (relay.loopback || relay.pid.is_some());
    if here {
        out.push(("/proc".into(), Preset::NodeExporter, Reader::Host));
    }
    if let Some(pid) = relay.pid.filter(|_| w.host_stats) {
        out.push((
            format!("/proc/{pid}"),
            Preset::Process,
            Reader::Process(pid),
        ));
    }
    Ok(out
        .into_iter()
        .enumerate()
        .map(|(i, (location, preset, reader))| Source {
            header: ScrapeSource {
                source: i as u16,
                location,
                preset: preset.word().to_owned(),
                interval_s,
            },
            preset,
            reader,
        })
        .collect())
}

/// A URL as an error may show it: without its query (a key may be in it) or userinfo.
fn shown(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            u.set_query(None);
            let _ = u.set_password(None);
            let _ = u.set_username("");
            u.to_string()
        }
        Err(_) => url.split(['?', '@']).next().unwrap_or_default().to_owned(),
    }
}

/// Where rows go (the run's results writer).
pub type Emit = Arc<dyn Fn(Vec<Row>) + Send + Sync>;

/// The scraping threads of a run. Stopping (or dropping) it takes a last scrape of every
/// source, so counters cover the whole run, and joins the threads.
pub struct Sampler {
    stop: Arc<StopSignal>,
    go: Vec<std::sync::mpsc::Sender<(Instant, Emit)>>,
    threads: Vec<JoinHandle<()>>,
}

impl Sampler {
    /// Starts a thread per source and waits for each one's first scrape, the baseline
    /// taken before the run's clock starts (at most the scrape timeout): a counter's
    /// increase then covers everything the run sent. The threads wait for [`Sampler::run`].
    pub fn start(sources: Vec<Source>, interval: Duration) -> Sampler {
        let stop = Arc::new(StopSignal::default());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
        let mut go = Vec::new();
        let mut threads = Vec::new();
        for source in sources {
            let (go_tx, go_rx) = std::sync::mpsc::channel::<(Instant, Emit)>();
            let (stop, ready) = (stop.clone(), ready_tx.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("lt-scrape-{}", source.header.source))
                .spawn(move || {
                    let mut state = State::new(source);
                    let baseline = state.scrape(None);
                    let _ = ready.send(());
                    let Ok((t0, emit)) = go_rx.recv() else {
                        return;
                    };
                    emit(baseline);
                    state.ticks(t0, interval, &stop, &emit);
                });
            if let Ok(t) = spawned {
                go.push(go_tx);
                threads.push(t);
            }
        }
        drop(ready_tx);
        for _ in 0..threads.len() {
            let _ = ready_rx.recv();
        }
        Sampler { stop, go, threads }
    }

    /// The run's clock started at `t0`: scrapes at `t0 + interval`, `t0 + 2 × interval`, …
    /// into `emit`.
    pub fn run(&mut self, t0: Instant, emit: Emit) {
        for go in self.go.drain(..) {
            let _ = go.send((t0, emit.clone()));
        }
    }

    /// Ends the scraping (see [`Sampler`]).
    pub fn stop(self) {}
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.raise();
        // Threads never told to run end at once (their `go` is closed here).
        self.go.clear();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The scraping threads' stop: each sleeps until its next scrape or the stop, whichever
/// comes first (one wake-up per scrape: naps of a few ms cost a scraping thread more CPU
/// than its scrapes).
#[derive(Default)]
struct StopSignal {
    raised: Mutex<bool>,
    changed: Condvar,
}

impl StopSignal {
    fn raise(&self) {
        if let Ok(mut raised) = self.raised.lock() {
            *raised = true;
        }
        self.changed.notify_all();
    }

    /// Sleeps until `due` or the stop; whether the stop came.
    fn wait_until(&self, due: Instant) -> bool {
        let Ok(mut raised) = self.raised.lock() else {
            return true;
        };
        while !*raised {
            let left = due.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            raised = match self.changed.wait_timeout(raised, left) {
                Ok((guard, _)) => guard,
                Err(_) => return true,
            };
        }
        *raised
    }
}

/// One source's thread: how it reads, and the ids of the series it has defined.
struct State {
    source: Source,
    ids: HashMap<(String, Vec<(String, String)>), u32>,
}

impl State {
    fn new(source: Source) -> State {
        State {
            source,
            ids: HashMap::new(),
        }
    }

    /// Scrapes every interval from `t0` until stopped, then once more.
    fn ticks(&mut self, t0: Instant, interval: Duration, stop: &StopSignal, emit: &Emit) {
        let at = |tick: u64| interval.saturating_mul(tick.min(u64::from(u32::MAX)) as u32);
        let mut tick: u64 = 1;
        loop {
            let due = t0 + at(tick);
            let last = stop.wait_until(due);
            let mut rows = self.scrape(Some(t0));
            if last {
                emit(rows);
                return;
            }
            // Ticks that passed while this scrape ran are gaps, each said as such.
            let next = (t0.elapsed().as_nanos() / interval.as_nanos().max(1)) as u64 + 1;
            let took = match rows.last() {
                Some(Row::Scrape(r)) => r.took_us,
                _ => 0,
            };
            for missed in tick + 1..next {
                rows.push(Row::Scrape(ScrapeRow {
                    source: self.source.header.source,
                    at_ns: at(missed).as_nanos() as u64,
                    took_us: 0,
                    values: Vec::new(),
                    error: Some(format!(
                        "not scraped: the scrape before took {:.1} s",
                        took as f64 / 1e6
                    )),
                }));
            }
            emit(rows);
            tick = next.max(tick + 1);
        }
    }

    /// One scrape: the rows defining series not seen before, then the `scrape` row. Its
    /// time is from `t0` (`None`: the baseline, before the clock started, at 0).
    fn scrape(&mut self, t0: Option<Instant>) -> Vec<Row> {
        let index = self.source.header.source;
        let asked = Instant::now();
        let result = self.source.reader.read();
        let mut rows = Vec::new();
        let mut row = ScrapeRow {
            source: index,
            at_ns: t0.map_or(0, |t0| {
                asked.saturating_duration_since(t0).as_nanos() as u64
            }),
            took_us: asked.elapsed().as_micros() as u64,
            values: Vec::new(),
            error: None,
        };
        match result {
            Ok(metrics) => {
                for m in metrics.into_iter().filter(|m| self.source.preset.keeps(m)) {
                    let kind = m.kind;
                    let key = (m.name, m.labels);
                    let id = match self.ids.get(&key) {
                        Some(id) => *id,
                        None if self.ids.len() >= MAX_OTHER_SERIES => continue,
                        None => {
                            let id = self.ids.len() as u32;
                            rows.push(Row::Series(SeriesRow {
                                source: index,
                                id,
                                name: key.0.clone(),
                                labels: key.1.clone(),
                                kind,
                            }));
                            self.ids.insert(key, id);
                            id
                        }
                    };
                    row.values.push((id, m.value));
                }
            }
            Err(e) => row.error = Some(e),
        }
        rows.push(Row::Scrape(row));
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_in_the_query_is_never_shown() {
        assert_eq!(
            shown("http://u:p@127.0.0.1:7777/metrics?auth=secret"),
            "http://127.0.0.1:7777/metrics"
        );
        assert!(!shown("not a url?auth=secret").contains("secret"));
    }

    #[test]
    fn the_host_is_scraped_every_interval_with_series_defined_first() {
        let rows = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = rows.clone();
        let scraping = Scraping {
            host_stats: true,
            interval: Duration::from_millis(100),
            ..Scraping::none()
        };
        let sources = scraping
            .sources(&RunRelay {
                loopback: true,
                pid: Some(std::process::id()),
                ..RunRelay::default()
            })
            .unwrap();
        assert_eq!(sources.len(), 2);
        let mut sampler = Sampler::start(sources, Duration::from_millis(100));
        sampler.run(
            Instant::now(),
            Arc::new(move |r| sink.lock().unwrap().extend(r)),
        );
        std::thread::sleep(Duration::from_millis(450));
        sampler.stop();
        let rows = rows.lock().unwrap();
        let mut defined = std::collections::HashSet::new();
        let mut scrapes = [0u32; 2];
        for row in rows.iter() {
            match row {
                Row::Series(s) => assert!(defined.insert((s.source, s.id))),
                Row::Scrape(s) => {
                    scrapes[s.source as usize] += 1;
                    for (id, _) in &s.values {
                        assert!(
                            defined.contains(&(s.source, *id)),
                            "{id} used before defined"
                        );
                    }
                }
                _ => panic!("{row:?}"),
            }
        }
        // The baseline, four or five ticks, and the last scrape at the stop.
        assert!(scrapes.iter().all(|n| (5..=7).contains(n)), "{scrapes:?}");
    }

    #[test]
    fn a_public_or_unnamed_host_is_refused() {
        let wanted = |url: &str| {
            let arg: ScrapeArg = url.parse().unwrap();
            let scraping = Scraping {
                scrapes: vec![arg],
                ..Scraping::none()
            };
            scraping
                .sources(&RunRelay::default())
                .err()
                .map(|e| format!("{e:#}"))
        };
        let e = wanted("http://203.0.113.9:9100/metrics?auth=secret").unwrap();
        assert!(
            e.contains("refusing to scrape") && !e.contains("secret"),
            "{e}"
        );
        let e = wanted("ftp://127.0.0.1/metrics").unwrap();
        assert!(e.contains("http:// or https://"), "{e}");
        let e = wanted("http://127.0.0.1:{port}/metrics").unwrap();
        assert!(e.contains("{port} needs a relay"), "{e}");
        assert_eq!(
            with_port("http://127.0.0.1:{port}/metrics", Some(7001)).unwrap(),
            "http://127.0.0.1:7001/metrics"
        );
    }
}
