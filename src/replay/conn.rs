//! One task per connection: writes the records dispatched to it, matches the relay's
//! replies to them (OK by event id, EOSE/CLOSED by subscription id), expires them after the
//! timeout, and reconnects with backoff when the connection dies. Every record that reaches
//! a connection leaves it as exactly one outcome row.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{FutureExt, SinkExt, StreamExt};
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use tokio::net::TcpStream;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::{sleep_until, Instant};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::hold::Holds;
use super::shared::{Dispatch, Key, Shared};
use crate::capture::results::{ConnectRow, NoticeRow, Outcome, OutcomeRow, Row};
use crate::capture::Op;
use crate::guard::Target;
use crate::nostr::{Prefix, RelayMessage};

pub type Ws = WebSocketStream<TcpStream>;

/// Relay frames above this are counted as oversized and not parsed.
pub const OVERSIZED_BYTES: usize = 1 << 20;
/// NOTICE texts kept per connection as rows; all are counted.
const NOTICE_ROWS_PER_CONN: u32 = 20;
/// Records taken from the scheduler, or replies handled, in one go before the task yields.
const BATCH_MAX: usize = 256;
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const LINGER_QUIET: Duration = Duration::from_secs(1);
const LINGER_MAX: Duration = Duration::from_secs(30);

fn ws_config() -> WebSocketConfig {
    // Accept large frames so a relay's big stored events or a hostile peer's oversized frame
    // is counted rather than killing the connection.
    // A small read buffer: tungstenite zeroes the whole buffer on every read, and at 128 KiB
    // (its default) that memset was the largest single cost of replay. Replies are small;
    // larger frames are simply read in several steps.
    WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20))
        .read_buffer_size(8 << 10)
}

/// Opens connection `conn` to an address the guard checked (never resolving again), with
/// `TCP_NODELAY` on: Nagle would add ~40 ms to small frames.
pub async fn connect(target: &Target, conn: u32) -> Result<Ws, String> {
    let addr = target.addrs[conn as usize % target.addrs.len()];
    let attempt = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("TCP connect to {addr}: {e}"))?;
        tcp.set_nodelay(true)
            .map_err(|e| format!("TCP_NODELAY: {e}"))?;
        let (ws, _) = tokio_tungstenite::client_async_with_config(
            target.url.as_str(),
            tcp,
            Some(ws_config()),
        )
        .await
        .map_err(|e| format!("WebSocket handshake: {e}"))?;
        Ok(ws)
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "connect to {addr} timed out after {CONNECT_TIMEOUT:?}"
        )),
    }
}

/// A record on the wire, waiting for its reply.
struct InFlight {
    index: u64,
    op: Op,
    intended_ns: u64,
    sent_ns: u64,
    /// The part of its schedule lag during which the relay held lt back (see `hold`).
    held_ns: u64,
    bytes: u32,
    events: u32,
}

enum Link {
    Up {
        sink: SplitSink<Ws, Message>,
        stream: SplitStream<Ws>,
    },
    Down {
        retry_at: Instant,
        backoff: Duration,
    },
}

pub struct Conn {
    id: u32,
    shared: Arc<Shared>,
    target: Arc<Target>,
    link: Link,
    // Fx rather than SipHash: these maps are touched several times per record, and their
    // keys come from the user's own trace (event ids, record indexes), not from the relay,
    // so there is no hash flooding to defend against.
    by_id: HashMap<[u8; 32], InFlight>,
    by_sub: HashMap<String, InFlight>,
    /// Send order = deadline order, since the timeout is the same for all.
    deadlines: VecDeque<(Instant, Key)>,
    /// Records here: queued, waiting on a dependency, or in flight.
    open: HashSet<u64>,
    /// Ready to send once the per-connection cap allows.
    queue: VecDeque<Dispatch>,
    /// Waiting for record `after` to complete.
    waiting: HashMap<u64, Vec<Dispatch>>,
    notices_kept: u32,
    /// When this connection could not write what was due: its per-connection cap was
    /// reached, or the relay's socket was full.
    holds: Holds,
    /// Records completed since the last hand-over to the shared state (see `flush_done`).
    done: Vec<(OutcomeRow, Option<[u8; 32]>)>,
}

impl Conn {
    pub fn new(id: u32, shared: Arc<Shared>, target: Arc<Target>, ws: Option<Ws>) -> Conn {
        let link = match ws {
            Some(ws) => {
                shared.open_conns.fetch_add(1, Ordering::Relaxed);
                let (sink, stream) = ws.split();
                Link::Up { sink, stream }
            }
            None => Link::Down {
                retry_at: Instant::now() + BACKOFF_START,
                backoff: BACKOFF_START,
            },
        };
        Conn {
            id,
            shared,
            target,
            link,
            by_id: HashMap::default(),
            by_sub: HashMap::default(),
            deadlines: VecDeque::new(),
            open: HashSet::default(),
            queue: VecDeque::new(),
            waiting: HashMap::default(),
            notices_kept: 0,
            holds: Holds::default(),
            done: Vec::new(),
        }
    }

    fn in_flight(&self) -> usize {
        self.by_id.len() + self.by_sub.len()
    }

    fn idle(&self) -> bool {
        self.open.is_empty()
    }

    /// Runs until the scheduler is done with this connection and nothing is left open.
    pub async fn run(mut self, mut rx: UnboundedReceiver<Dispatch>) {
        let mut rx_open = true;
        loop {
            // Sending may complete records (CLOSE) and so free room: repeat while it helps.
            let mut before = usize::MAX;
            while !self.queue.is_empty() && self.queue.len() != before {
                before = self.queue.len();
                self.send_ready().await;
            }
            self.flush_done();
            if !rx_open && self.idle() {
                break;
            }
            let deadline = self.deadlines.front().map(|(t, _)| *t);
            let retry = match &self.link {
                Link::Down { retry_at, .. } => Some(*retry_at),
                Link::Up { .. } => None,
            };
            let up = matches!(self.link, Link::Up { .. });
            tokio::select! {
                d = rx.recv(), if rx_open => match d {
                    Some(d) => {
                        self.accept(d);
                        // Take what else is already queued, so it goes out in the same
                        // write: one system call for a burst, not one per record.
                        for _ in 1..BATCH_MAX {
                            match rx.try_recv() {
                                Ok(d) => self.accept(d),
                                Err(TryRecvError::Empty) => break,
                                Err(TryRecvError::Disconnected) => {
                                    rx_open = false;
                                    break;
                                }
                            }
                        }
                    }
                    None => rx_open = false,
                },
                frame = next_frame(&mut self.link), if up => {
                    self.on_frame(frame);
                    // Replies already read from the socket are handled before waiting again.
                    for _ in 1..BATCH_MAX {
                        if !matches!(self.link, Link::Up { .. }) {
                            break;
                        }
                        match next_frame(&mut self.link).now_or_never() {
                            Some(frame) => self.on_frame(frame),
                            None => break,
                        }
                    }
                    self.trim_deadlines();
                }
                _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    self.expire();
                }
                _ = sleep_until(retry.unwrap_or_else(Instant::now)), if retry.is_some() && rx_open => {
                    self.reconnect().await;
                }
            }
            self.flush_done();
        }
        self.linger().await;
        self.flush_done();
        if let Link::Up { mut sink, .. } = std::mem::replace(
            &mut self.link,
            Link::Down {
                retry_at: Instant::now(),
                backoff: BACKOFF_START,
            },
        ) {
            let _ = sink.close().await;
            self.shared.open_conns.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Hands the records completed since the last call to the shared state in one batch:
    /// one lock and one message to the writer per wake-up rather than per record.
    fn flush_done(&mut self) {
        if !self.done.is_empty() {
            self.shared.complete_all(std::mem::take(&mut self.done));
        }
    }

    /// Keeps reading until the relay has been quiet for [`LINGER_QUIET`] (at most
    /// [`LINGER_MAX`]). A relay that fell behind is still working through events whose
    /// records timed out; closing the socket at once would make it drop them (nostr-rs-relay
    /// does), turning lt's own hang-up into "lost" events.
    async fn linger(&mut self) {
        let until = Instant::now() + LINGER_MAX;
        while matches!(self.link, Link::Up { .. }) && Instant::now() < until {
            tokio::select! {
                frame = next_frame(&mut self.link) => self.on_frame(frame),
                _ = tokio::time::sleep(LINGER_QUIET) => break,
            }
        }
    }

    /// A record arrives from the scheduler.
    fn accept(&mut self, mut d: Dispatch) {
        if matches!(self.link, Link::Down { .. }) {
            // The connection is down when the record is due: it is not silently queued
            // behind a reconnect that may never come.
            self.finish_unsent(d, Outcome::Disconnected { code: None });
            return;
        }
        // Held time counts from when the record reached this connection (it may have
        // waited in the channel while the task was blocked writing).
        let reached = d.dispatched_ns.max(d.ready_ns);
        d.held_mark = self.holds.held_before(reached);
        self.holds.forget_before(reached);
        self.open.insert(d.index);
        match d.after {
            Some(dep) if self.open.contains(&dep) => self.waiting.entry(dep).or_default().push(d),
            _ => self.queue.push_back(d),
        }
    }

    /// Writes every record that may go now in one batch: frames are fed, then flushed once,
    /// so a burst costs one write system call rather than one per frame.
    async fn send_ready(&mut self) {
        let room = self
            .shared
            .per_conn_in_flight
            .saturating_sub(self.in_flight());
        if self.queue.is_empty() {
            return;
        }
        if room == 0 {
            // Records are due and the relay has not answered enough of the earlier ones. The
            // hold lasts until the backlog is written: writing the records ahead of one in
            // the backlog is pace the relay set, too.
            self.holds.start(self.shared.now_ns());
            return;
        }
        let mut batch: Vec<Dispatch> = self.queue.drain(..room.min(self.queue.len())).collect();
        let Link::Up { sink, .. } = &mut self.link else {
            for d in batch {
                self.finish_unsent(d, Outcome::Disconnected { code: None });
            }
            return;
        };
        // The frames move into the socket's buffer; their sizes stay for the rows.
        let bytes: Vec<u32> = batch.iter().map(|d| d.frame.len() as u32).collect();
        let started = self.shared.now_ns();
        // A write that cannot finish at once means the relay's socket is full: it has not
        // read what lt wrote before (TCP backpressure). The wait is the relay's.
        let written = {
            let write = async {
                for d in &mut batch {
                    sink.feed(Message::text(std::mem::take(&mut d.frame)))
                        .await?;
                }
                sink.flush().await
            };
            tokio::pin!(write);
            let holds = &mut self.holds;
            let mut blocked = false;
            std::future::poll_fn(|cx| {
                let p = write.as_mut().poll(cx);
                if p.is_pending() && !blocked {
                    blocked = true;
                    holds.start(started);
                }
                p
            })
            .await
        };
        let failed = written.err().map(|e| close_code(&e));
        if self.queue.is_empty() {
            self.holds.end(self.shared.now_ns());
        }
        if let Some(code) = failed {
            // Whether any of the batch reached the relay is unknown: none gets an answer.
            for (d, bytes) in batch.into_iter().zip(bytes) {
                let mut row = d.unsent_row(Outcome::Disconnected { code });
                row.bytes = bytes;
                self.done.push((row, None));
                self.release(d.index);
            }
            self.disconnect(code);
            return;
        }
        let sent_ns = self.shared.now_ns();
        let deadline = Instant::now() + self.shared.timeout;
        // Held by the relay: the scheduler's share (the global cap) and this connection's,
        // never more than the lag itself.
        let held: Vec<u64> = batch
            .iter()
            .map(|d| {
                let here = self.holds.held_before(sent_ns).saturating_sub(d.held_mark);
                (d.held_ns + here).min(sent_ns.saturating_sub(d.ready_ns))
            })
            .collect();
        self.shared
            .record_sent(batch.iter().map(|d| d.ready_ns), sent_ns);
        for ((d, bytes), held_ns) in batch.into_iter().zip(bytes).zip(held) {
            let key = d.key;
            let flight = InFlight {
                index: d.index,
                op: d.op,
                intended_ns: d.intended_ns,
                sent_ns,
                held_ns,
                bytes,
                events: 0,
            };
            // A reply names an id, so two records in flight with the same id cannot be told
            // apart: the earlier one is closed now rather than silently lost.
            let superseded = match key {
                Key::Ok(id) => {
                    self.deadlines.push_back((deadline, Key::Ok(id)));
                    self.by_id.insert(id, flight)
                }
                Key::Sub(sub) => {
                    self.deadlines.push_back((deadline, Key::Sub(sub.clone())));
                    self.by_sub.insert(sub, flight)
                }
                Key::None => {
                    self.complete(flight, Outcome::Ok);
                    None
                }
            };
            if let Some(old) = superseded {
                let outcome = Outcome::Rejected {
                    prefix: Prefix::Other,
                    message: "lt: sent again while still in flight; replies cannot be told apart"
                        .into(),
                };
                self.complete(old, outcome);
            }
        }
    }

    /// The row of a record that was sent.
    fn flight_row(&self, f: &InFlight, completed_ns: Option<u64>, outcome: Outcome) -> OutcomeRow {
        OutcomeRow {
            index: f.index,
            conn: self.id,
            op: f.op,
            intended_ns: f.intended_ns,
            sent_ns: Some(f.sent_ns),
            completed_ns,
            outcome,
            bytes: f.bytes,
            events_received: f.events,
            held_ns: f.held_ns,
        }
    }

    fn finish_unsent(&mut self, d: Dispatch, outcome: Outcome) {
        self.done.push((d.unsent_row(outcome), None));
        self.release(d.index);
    }

    /// A record leaves this connection with its outcome.
    fn complete(&mut self, f: InFlight, outcome: Outcome) {
        let now = self.shared.now_ns();
        let completed = match outcome {
            Outcome::Timeout | Outcome::Disconnected { .. } => None,
            _ => Some(now),
        };
        let row = self.flight_row(&f, completed, outcome);
        self.done.push((row, None));
        self.release(f.index);
    }

    /// Frees a record's slot and wakes what waited on it.
    fn release(&mut self, index: u64) {
        self.open.remove(&index);
        if let Some(ready) = self.waiting.remove(&index) {
            let now = self.shared.now_ns();
            let mark = self.holds.held_before(now);
            self.queue.extend(ready.into_iter().map(|mut d| {
                d.ready_ns = d.ready_ns.max(now);
                d.held_mark = mark;
                d
            }));
        }
    }

    fn on_frame(&mut self, frame: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>) {
        let msg = match frame {
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                let code = close_code(&e);
                self.disconnect(code);
                return;
            }
            None => {
                self.disconnect(None);
                return;
            }
        };
        let text = match &msg {
            Message::Text(t) => t.as_str(),
            Message::Close(c) => {
                let code = c.as_ref().map(|f| u16::from(f.code));
                self.disconnect(code);
                return;
            }
            Message::Binary(_) => {
                self.shared.unparseable.fetch_add(1, Ordering::Relaxed);
                return;
            }
            _ => return,
        };
        if text.len() > OVERSIZED_BYTES {
            self.shared.oversized.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let parsed = match RelayMessage::parse(text) {
            Ok(m) => m,
            Err(_) => {
                self.shared.unparseable.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        match parsed {
            RelayMessage::Ok {
                id,
                accepted,
                message,
            } => {
                let Some(f) = self.by_id.remove(&id) else {
                    // An OK for nothing in flight here: late (after its timeout) or unknown.
                    self.shared.late_acks.fetch_add(1, Ordering::Relaxed);
                    return;
                };
                let prefix = Prefix::of(&message);
                let outcome = match (accepted, prefix) {
                    (true, Prefix::Duplicate) => Outcome::Duplicate,
                    (true, _) => Outcome::Ok,
                    (false, prefix) => Outcome::Rejected {
                        prefix,
                        message: message.into_owned(),
                    },
                };
                self.complete(f, outcome);
            }
            RelayMessage::Eose(sub) => {
                if let Some(f) = self.by_sub.remove(sub.as_ref()) {
                    self.complete(f, Outcome::Ok);
                }
            }
            RelayMessage::Closed { sub, message } => {
                if let Some(f) = self.by_sub.remove(sub.as_ref()) {
                    let outcome = Outcome::Closed {
                        prefix: Prefix::of(&message),
                        message: message.into_owned(),
                    };
                    self.complete(f, outcome);
                }
            }
            RelayMessage::Event { sub, .. } => {
                if let Some(f) = self.by_sub.get_mut(sub.as_ref()) {
                    f.events += 1;
                }
            }
            RelayMessage::Notice(text) => {
                self.shared.notices.fetch_add(1, Ordering::Relaxed);
                if self.notices_kept < NOTICE_ROWS_PER_CONN {
                    self.notices_kept += 1;
                    let row = Row::Notice(NoticeRow {
                        conn: self.id,
                        at_ns: self.shared.now_ns(),
                        text: text.into_owned(),
                    });
                    self.shared.emit(row);
                }
            }
            RelayMessage::Auth(_) | RelayMessage::Count { .. } => {}
        }
    }

    /// Drops deadlines of records already answered from the front of the queue. Replies
    /// come roughly in send order, so this keeps the queue about as long as what is in
    /// flight, rather than everything sent in the last `timeout`.
    fn trim_deadlines(&mut self) {
        while let Some((_, key)) = self.deadlines.front() {
            let open = match key {
                Key::Ok(id) => self.by_id.contains_key(id),
                Key::Sub(sub) => self.by_sub.contains_key(sub),
                Key::None => false,
            };
            if open {
                break;
            }
            self.deadlines.pop_front();
        }
    }

    /// Records whose timeout passed.
    fn expire(&mut self) {
        let now = Instant::now();
        while let Some((t, _)) = self.deadlines.front() {
            if *t > now {
                break;
            }
            let Some((_, key)) = self.deadlines.pop_front() else {
                break;
            };
            match key {
                Key::Ok(id) => {
                    if let Some(f) = self.by_id.remove(&id) {
                        let row = self.flight_row(&f, None, Outcome::Timeout);
                        self.done.push((row, Some(id)));
                        self.release(f.index);
                    }
                }
                Key::Sub(sub) => {
                    if let Some(f) = self.by_sub.remove(&sub) {
                        self.complete(f, Outcome::Timeout);
                    }
                }
                Key::None => {}
            }
        }
    }

    /// The connection died: everything on it becomes `disconnected`, then retry later.
    fn disconnect(&mut self, code: Option<u16>) {
        self.holds.end(self.shared.now_ns());
        if matches!(self.link, Link::Up { .. }) {
            self.shared.open_conns.fetch_sub(1, Ordering::Relaxed);
        }
        self.link = Link::Down {
            retry_at: Instant::now() + BACKOFF_START,
            backoff: BACKOFF_START,
        };
        let flights: Vec<InFlight> = self
            .by_id
            .drain()
            .map(|(_, f)| f)
            .chain(self.by_sub.drain().map(|(_, f)| f))
            .collect();
        for f in flights {
            self.complete(f, Outcome::Disconnected { code });
        }
        self.deadlines.clear();
        let unsent: Vec<Dispatch> = self
            .queue
            .drain(..)
            .chain(self.waiting.drain().flat_map(|(_, v)| v))
            .collect();
        for d in unsent {
            self.finish_unsent(d, Outcome::Disconnected { code });
        }
        self.open.clear();
    }

    async fn reconnect(&mut self) {
        let backoff = match &self.link {
            Link::Down { backoff, .. } => *backoff,
            Link::Up { .. } => return,
        };
        let started = self.shared.now_ns();
        let t = std::time::Instant::now();
        let result = connect(&self.target, self.id).await;
        let latency_ns = t.elapsed().as_nanos() as u64;
        let error = match result {
            Ok(ws) => {
                let (sink, stream) = ws.split();
                self.link = Link::Up { sink, stream };
                self.shared.open_conns.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(e) => {
                let next = (backoff * 2).min(BACKOFF_MAX);
                self.link = Link::Down {
                    retry_at: Instant::now() + next,
                    backoff: next,
                };
                Some(e)
            }
        };
        self.shared.emit(Row::Connect(ConnectRow {
            conn: self.id,
            at_ns: started,
            initial: false,
            latency_ns,
            error,
        }));
    }
}

async fn next_frame(
    link: &mut Link,
) -> Option<Result<Message, tokio_tungstenite::tungstenite::Error>> {
    match link {
        Link::Up { stream, .. } => stream.next().await,
        Link::Down { .. } => std::future::pending().await,
    }
}

fn close_code(e: &tokio_tungstenite::tungstenite::Error) -> Option<u16> {
    match e {
        tokio_tungstenite::tungstenite::Error::Protocol(_) => Some(1002),
        _ => None,
    }
}
