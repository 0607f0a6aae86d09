//! A network thread: an OS thread running its own single-threaded tokio runtime, which owns
//! every connection whose id ≡ thread id (mod thread count), in one loop (`net`), and the
//! scheduler that feeds them. As few threads as the schedule needs, at most one per core
//! (see [`count`]).
//!
//! Why threads of their own rather than one multi-threaded runtime: a record's path from
//! "due" to "on the wire" then stays on one thread. With a scheduler thread handing records
//! to a shared runtime, every record woke a parked worker through a futex, and those context
//! switches were most of lt's CPU per event.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::conn::Conn;
use super::dispatch::{Dispatch, Layout};
use super::net::Net;
use super::schedule::{self, Schedule};
use super::shared::Shared;
use crate::guard::Target;
use crate::transport::{self, Phases};

/// Records per second one thread carries. Measured on the 2-core VM lt is developed on, into
/// the ack-only peer over 1000 connections, threads 1 and 2 alternating: at 20k records/s
/// one thread had the lower schedule lag p99 in 9 of 10 pairs (0.78–2.64 ms against
/// 1.05–3.08 ms: fewer busy threads than cores), though its thread is ~80% busy; at 30k/s
/// one thread fell behind where two kept up (2.5 ms against 1.25 ms).
pub const RATE_PER_THREAD: u64 = 25_000;

/// Network threads a trace with live subscriptions gets at least (cores allowing). The fan-out
/// a relay sends them is read on every subscriber's connection and is not in the trace's
/// rate. Measured (`cargo bench --bench fanout`, 1,000 subscribers, 100k deliveries/s, 2
/// cores, the scheduler on its own thread: `Setup::scheduler_thread`): lt's own schedule lag
/// p99 5.0–6.2 ms with one thread, 3.5–4.6 ms with two (goal ≤ 5), at 15% more CPU per
/// delivery.
pub const LIVE_THREADS: usize = 2;

/// How many threads a replay runs: `asked` (`--threads`), or else the fewest that carry the
/// trace's peak rate, so that the cores lt does not need stay with the relay — on a shared
/// machine every extra busy thread delays the others, lt's own schedule included; a trace
/// with live subscriptions at least [`LIVE_THREADS`]. At `--speed max` there is no rate to
/// size for: one per core. Never more than connections.
pub fn count(
    asked: Option<usize>,
    peak_per_s: u64,
    live: bool,
    max_speed: bool,
    cores: usize,
    conns: u32,
) -> usize {
    let wanted = match asked {
        Some(n) => n,
        None if max_speed => cores,
        None => {
            let by_rate = peak_per_s.div_ceil(RATE_PER_THREAD) as usize;
            let floor = if live { LIVE_THREADS } else { 1 };
            by_rate.max(floor).clamp(1, cores.max(1))
        }
    };
    wanted.clamp(1, conns.max(1) as usize)
}

/// Batches waiting per thread: bounds memory when lt runs ahead of the schedule (`--speed
/// max`) without starving a thread.
pub const BATCHES_QUEUED: usize = 4;

pub struct Setup {
    pub id: usize,
    /// Which connections this process plays and which thread owns each.
    pub layout: Layout,
    /// Connections in the whole run.
    pub conns: u32,
    pub target: Arc<Target>,
    /// Bounds concurrent connection attempts across all threads.
    pub connect_limiter: Arc<Semaphore>,
    pub schedule: Schedule,
    /// Whether the scheduler keeps time on a thread of its own rather than on the network
    /// thread. There, a due record waits behind the reading of every connection the
    /// network has woken: with the fan-out of live subscriptions that is hundreds of
    /// connections. Without fan-out the extra thread costs more than it saves: a wake-up
    /// more per record, and at 20k records/s over 1,000 connections a lag p99 of 0.80 ms
    /// against 0.65–0.69 (`cargo bench --bench replay`, step 2, measured when each
    /// connection had a task of its own).
    pub scheduler_thread: bool,
}

/// One initial connection attempt.
pub struct Connected {
    pub conn: u32,
    pub latency: Duration,
    pub error: Option<transport::ConnectError>,
    pub phases: Phases,
}

/// The control side of one network thread.
struct Handle {
    /// The thread's initial connection attempts, once all have finished.
    connected: oneshot::Receiver<Vec<Connected>>,
    /// Starts the replay, with the shared state anchored at t0. Dropped unsent: the thread
    /// closes its connections and ends.
    start: Option<oneshot::Sender<Arc<Shared>>>,
    /// Records for this thread's connections, in intended order.
    feed: Option<mpsc::Sender<Vec<Dispatch>>>,
    thread: JoinHandle<anyhow::Result<()>>,
}

/// A replay's network threads, from spawn to join. Every way out of a replay goes through
/// [`Threads::join`] (or [`Threads::fail`]): a thread never started closes its
/// connections and ends, one that ran finishes what it holds, and the first error wins.
pub struct Threads {
    handles: Vec<Handle>,
}

impl Threads {
    /// One thread per setup, each connecting its share of the connections at once.
    pub fn spawn(setups: impl IntoIterator<Item = Setup>) -> anyhow::Result<Threads> {
        let handles = setups
            .into_iter()
            .map(spawn)
            .collect::<anyhow::Result<_>>()?;
        Ok(Threads { handles })
    }

    /// Every thread's initial connection attempts, by connection; `Err` with the id of
    /// the first thread that ended before reporting them.
    pub async fn connected(&mut self) -> Result<Vec<Connected>, usize> {
        let mut all = Vec::new();
        let mut lost = None;
        for (id, h) in self.handles.iter_mut().enumerate() {
            match (&mut h.connected).await {
                Ok(report) => all.extend(report),
                Err(_) => lost = lost.or(Some(id)),
            }
        }
        all.sort_by_key(|c| c.conn);
        lost.map_or(Ok(all), Err)
    }

    /// Starts every thread with `shared`; returns each thread's feed, in thread order. A
    /// thread that already ended shows its error when joined.
    pub fn start(&mut self, shared: &Arc<Shared>) -> Vec<mpsc::Sender<Vec<Dispatch>>> {
        let mut feeds = Vec::with_capacity(self.handles.len());
        for h in &mut self.handles {
            if let Some(start) = h.start.take() {
                let _ = start.send(shared.clone());
            }
            feeds.extend(h.feed.take());
        }
        feeds
    }

    /// Waits for every thread to end (ending those never started); the first error wins.
    /// A second call has nothing left to wait for.
    pub async fn join(&mut self) -> anyhow::Result<()> {
        let handles = std::mem::take(&mut self.handles);
        let threads: Vec<_> = handles.into_iter().map(|h| h.thread).collect();
        tokio::task::spawn_blocking(move || {
            let mut first = Ok(());
            for t in threads {
                let r = t
                    .join()
                    .map_err(|_| anyhow!("a network thread panicked"))
                    .and_then(|r| r);
                if first.is_ok() {
                    first = r;
                }
            }
            first
        })
        .await
        .context("joining the network threads")?
    }

    /// Ends a replay that failed with `error`: joins the threads, and returns `error`.
    pub async fn fail(&mut self, error: anyhow::Error) -> anyhow::Error {
        let _ = self.join().await;
        error
    }
}

fn spawn(setup: Setup) -> anyhow::Result<Handle> {
    let (connected_tx, connected) = oneshot::channel();
    let (start, start_rx) = oneshot::channel();
    let (feed, feed_rx) = mpsc::channel(BATCHES_QUEUED);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a network runtime")?;
    let thread = std::thread::Builder::new()
        .name(format!("lt-net-{}", setup.id))
        .spawn(move || runtime.block_on(run(setup, connected_tx, start_rx, feed_rx)))
        .context("starting a network thread")?;
    Ok(Handle {
        connected,
        start: Some(start),
        feed: Some(feed),
        thread,
    })
}

async fn run(
    setup: Setup,
    connected: oneshot::Sender<Vec<Connected>>,
    start: oneshot::Receiver<Arc<Shared>>,
    feed: mpsc::Receiver<Vec<Dispatch>>,
) -> anyhow::Result<()> {
    let Setup {
        id,
        layout,
        conns,
        target,
        connect_limiter,
        schedule,
        scheduler_thread,
    } = setup;
    // Connect phase: bounded concurrency, each attempt timed, failures kept with their cause.
    // An attempt's task is ~8 KiB (TCP, TLS and the WebSocket handshake), and a task's
    // memory lasts until its result is taken: attempts are spawned only once they hold a
    // permit, and their results are taken as they finish, so only the attempts under way
    // hold memory, not one per connection.
    let mut attempts = tokio::task::JoinSet::new();
    let mut done = Vec::new();
    for c in (0..conns).filter(|&c| layout.mine(c) && layout.owner(c) == id) {
        let permit = connect_limiter
            .clone()
            .acquire_owned()
            .await
            .context("connect limiter")?;
        while let Some(a) = attempts.try_join_next() {
            done.push(a.context("connect task")?);
        }
        let target = target.clone();
        attempts.spawn(async move {
            let _permit = permit;
            let t = Instant::now();
            let (r, phases) = transport::connect(&target, c).await;
            (c, t.elapsed(), r, phases)
        });
    }
    while let Some(a) = attempts.join_next().await {
        done.push(a.context("connect task")?);
    }
    // In id order, so connection `c` lands at `local_index(c)`.
    done.sort_unstable_by_key(|a| a.0);
    let mut sockets = Vec::with_capacity(done.len());
    let mut report = Vec::with_capacity(done.len());
    for (conn, latency, r, phases) in done {
        report.push(Connected {
            conn,
            latency,
            error: r.as_ref().err().cloned(),
            phases,
        });
        sockets.push((conn, r.ok()));
    }
    if connected.send(report).is_err() {
        return Ok(());
    }
    let Ok(shared) = start.await else {
        return Ok(());
    };

    let conns = sockets
        .into_iter()
        .map(|(c, ws)| Conn::new(c, shared.clone(), target.clone(), ws))
        .collect();
    let (to_net, inbox) = mpsc::unbounded_channel();
    let net = Net::new(conns, inbox, layout, shared.clone());
    // On a scheduler error its sender is gone: connections drain what they have, then the
    // error is reported.
    let scheduled = if scheduler_thread {
        net.run(on_own_thread(format!("lt-sched-{id}"), move || {
            schedule::run(feed, to_net, shared, schedule)
        }))
        .await?
    } else {
        net.run(schedule::run(feed, to_net, shared, schedule)).await
    };
    scheduled.with_context(|| format!("scheduler of network thread {id}"))
}

/// Runs the future `make` makes on a thread of its own, with a runtime of its own, and
/// returns what it returned.
async fn on_own_thread<F, Fut>(name: String, make: F) -> anyhow::Result<std::io::Result<()>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = std::io::Result<()>>,
{
    let (done_tx, done_rx) = oneshot::channel();
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .and_then(|rt| rt.block_on(make()));
            let _ = done_tx.send(result);
        })
        .with_context(|| format!("starting thread {name}"))?;
    done_rx
        .await
        .map_err(|_| anyhow!("thread {name} ended without a result"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_sized_by_peak_rate_live_subscriptions_cores_and_connections() {
        // (asked, peak_per_s, live, max_speed, cores, conns, threads)
        let rows = [
            (None, 800, false, false, 2, 50, 1), // a light trace: one thread
            (None, RATE_PER_THREAD, false, false, 2, 1000, 1), // exactly one thread's worth
            (None, RATE_PER_THREAD + 1, false, false, 2, 1000, 2), // just over: two
            (None, 10 * RATE_PER_THREAD, false, false, 4, 1000, 4), // never more than cores
            (None, 10 * RATE_PER_THREAD, false, false, 4, 3, 3), // nor than connections
            (None, 0, false, false, 2, 10, 1),   // an empty trace still gets one
            (None, 800, true, false, 2, 50, 2),  // live subscriptions: two
            (None, 800, true, false, 1, 50, 1),  // ... cores allowing
            (None, 800, true, false, 4, 1, 1),   // ... and connections
            (None, 3 * RATE_PER_THREAD, true, false, 4, 50, 3), // the rate may ask for more
            (None, 800, false, true, 2, 50, 2),  // --speed max: one per core
            (None, 800, false, true, 8, 5, 5),   // ... but not past connections
            (Some(3), 800, false, false, 2, 50, 3), // --threads is obeyed, even past cores
            (Some(8), 800, false, false, 2, 4, 4), // ... but not past connections
            (Some(1), 800, true, false, 2, 50, 1), // ... and over live subscriptions
        ];
        for (asked, peak, live, max, cores, conns, want) in rows {
            assert_eq!(
                count(asked, peak, live, max, cores, conns),
                want,
                "{asked:?} {peak} {live} {max} {cores} {conns}"
            );
        }
    }
}
