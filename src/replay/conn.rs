//! One connection of a network thread: its socket and its [`Book`]. It has no task of its
//! own: the thread's one loop (`net.rs`) hands it records, polls it when its socket (or a
//! connection attempt) has news, tells it when its time has come, and lets it write. The
//! connection writes the records due, reads the relay's replies, times records out, and
//! reconnects with backoff when the socket dies; the bookkeeping of every record (queue,
//! dependencies, in flight, outcomes) is the [`Book`], which it tells what happened.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{Sink, Stream as _};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::book::{Book, Done};
use super::dispatch::{Dispatch, Key};
use super::fanout::{self, Delivery};
use super::shared::Shared;
use crate::capture::results::{ConnectRow, NoticeRow, Row};
use crate::capture::Op;
use crate::guard::Target;
use crate::nostr::RelayMessage;
use crate::transport::{connect, Phases, Ws};

/// Relay frames above this are counted as oversized and not parsed.
pub const OVERSIZED_BYTES: usize = 1 << 20;
/// NOTICE texts kept per connection as rows; all are counted.
const NOTICE_ROWS_PER_CONN: u32 = 20;
/// Replies handled in one go before the other connections get their turn.
const READ_BATCH: usize = 256;
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
const LINGER_QUIET: Duration = Duration::from_secs(1);
const LINGER_MAX: Duration = Duration::from_secs(30);

fn ns(d: Duration) -> u64 {
    d.as_nanos() as u64
}

/// A connection attempt under way. Boxed: its future (TCP, TLS and the WebSocket handshake)
/// is ~8 KiB, needed only while reconnecting.
type Attempt = Pin<Box<dyn Future<Output = (Result<Ws, String>, Phases)>>>;

enum Link {
    Up(Box<Ws>),
    Down {
        /// When to try again, ns after t0.
        retry_ns: u64,
        backoff: Duration,
    },
    Connecting {
        attempt: Attempt,
        /// When the attempt began, ns after t0.
        started_ns: u64,
        backoff: Duration,
    },
}

/// Where the connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The schedule may still send records here.
    Playing,
    /// The schedule is over and nothing is open: reading until the relay is quiet (ns after
    /// t0), at most until `until`.
    Lingering {
        quiet_until: u64,
        until: u64,
    },
    /// Closing the WebSocket, at most until `until`.
    Closing {
        until: u64,
    },
    Finished,
}

/// A batch on its way into the socket: fed frame by frame, then flushed. A write that
/// cannot finish at once means the relay's socket is full: it has not read what lt wrote
/// before (TCP backpressure), and the wait is the relay's.
struct Write {
    batch: Vec<Dispatch>,
    /// Each frame's size, for the rows (the frames themselves move into the socket).
    bytes: Vec<u32>,
    /// Frames handed to the WebSocket so far.
    fed: usize,
    started: u64,
    blocked: bool,
}

pub struct Conn {
    id: u32,
    shared: Arc<Shared>,
    target: Arc<Target>,
    link: Link,
    phase: Phase,
    book: Book,
    write: Option<Write>,
    /// Records that came during a connection attempt: they wait for its end (and are sent
    /// if it succeeds) rather than fail at once.
    parked: Vec<Dispatch>,
    /// The timeout the thread's timer is asked to wake this connection for, ns after t0.
    /// Deadlines only move later (they are in send order): a wake-up for an earlier,
    /// since-answered record's deadline just finds nothing due and asks for the next.
    armed: Option<u64>,
    notices_kept: u32,
    /// Deliveries read since the thread last collected them.
    deliveries: Vec<Delivery>,
    /// Live subscriptions sent on this connection: id → the REQ's record index.
    live: HashMap<String, u64>,
}

impl Conn {
    pub fn new(id: u32, shared: Arc<Shared>, target: Arc<Target>, ws: Option<Ws>) -> Conn {
        let link = match ws {
            Some(ws) => {
                shared.conn_opened();
                Link::Up(Box::new(ws))
            }
            None => Link::Down {
                retry_ns: shared.now_ns() + ns(BACKOFF_START),
                backoff: BACKOFF_START,
            },
        };
        let book = Book::new(id, shared.per_conn_in_flight(), ns(shared.timeout()));
        Conn {
            id,
            shared,
            target,
            link,
            phase: Phase::Playing,
            book,
            write: None,
            parked: Vec::new(),
            armed: None,
            notices_kept: 0,
            deliveries: Vec::new(),
            live: HashMap::new(),
        }
    }

    fn up(&self) -> bool {
        matches!(self.link, Link::Up(_))
    }

    pub fn finished(&self) -> bool {
        self.phase == Phase::Finished
    }

    /// The earliest moment (ns after t0) this connection has something to do without news
    /// from its socket: a timeout, a retry, the end of its lingering or of its close.
    pub fn next_wake(&self) -> Option<u64> {
        let phase = match self.phase {
            Phase::Playing | Phase::Finished => None,
            Phase::Lingering { quiet_until, until } => Some(quiet_until.min(until)),
            Phase::Closing { until } => Some(until),
        };
        let retry = match (&self.link, self.phase) {
            (Link::Down { retry_ns, .. }, Phase::Playing) => Some(*retry_ns),
            _ => None,
        };
        [self.armed, retry, phase].into_iter().flatten().min()
    }

    /// A record arrives from the scheduler.
    pub fn accept(&mut self, d: Dispatch) {
        if let (Op::Req { query }, Key::Sub(sub)) = (d.op, &d.key) {
            if query.is_live() && self.shared.counts_deliveries() {
                self.live.insert(sub.clone(), d.index);
            }
        }
        if matches!(self.link, Link::Connecting { .. }) {
            self.parked.push(d);
            return;
        }
        let up = self.up();
        self.book.accept(d, up, self.shared.now_ns());
    }

    /// The socket or the connection attempt has news: takes it. True when replies are left
    /// unread after a batch (the caller polls again later, after the other connections).
    pub fn poll(&mut self, cx: &mut Context<'_>) -> bool {
        self.poll_connect(cx);
        if self.write.is_some() {
            self.poll_write(cx);
        }
        if let Phase::Closing { .. } = self.phase {
            self.poll_close(cx);
            return false;
        }
        self.read(cx)
    }

    /// Time has come for something (see [`Conn::next_wake`]) at `now`.
    pub fn on_time(&mut self, now: u64, schedule_over: bool, cx: &mut Context<'_>) {
        if self.armed.is_some_and(|t| t <= now) {
            self.armed = None;
            self.book.expire(now);
        }
        match self.phase {
            Phase::Playing => {
                if let Link::Down { retry_ns, backoff } = self.link {
                    if retry_ns <= now && !schedule_over {
                        self.link = Link::Connecting {
                            attempt: Box::pin(connect_owned(self.target.clone(), self.id)),
                            started_ns: self.shared.now_ns(),
                            backoff,
                        };
                        // As if woken: the attempt starts, and a socket it opens at once
                        // is read (which is what makes the socket wake this connection).
                        self.poll(cx);
                    }
                }
            }
            Phase::Lingering { quiet_until, until } if quiet_until.min(until) <= now => {
                self.phase = Phase::Closing {
                    until: until.max(now + ns(LINGER_QUIET)),
                };
                self.poll_close(cx);
            }
            Phase::Closing { until } if until <= now => self.close_now(),
            _ => {}
        }
    }

    /// Writes what may go now, then moves on in its life when there is nothing left to do:
    /// after the schedule (`schedule_over`), an idle connection lingers, closes, finishes.
    pub fn pump(&mut self, cx: &mut Context<'_>, schedule_over: bool) {
        // Sending may complete records (CLOSE) and so free room: repeat while it helps.
        while self.write.is_none() && self.book.queued() > 0 {
            let before = self.book.queued();
            self.start_write(cx);
            if self.book.queued() == before {
                break;
            }
        }
        if self.armed.is_none() {
            self.armed = self.book.next_deadline();
        }
        let quiet = self.write.is_none()
            && self.parked.is_empty()
            && self.book.idle()
            && !matches!(self.link, Link::Connecting { .. });
        if self.phase == Phase::Playing && schedule_over && quiet {
            self.phase = match self.link {
                Link::Up(_) => {
                    let now = self.shared.now_ns();
                    Phase::Lingering {
                        quiet_until: now + ns(LINGER_QUIET),
                        until: now + ns(LINGER_MAX),
                    }
                }
                _ => Phase::Finished,
            };
        }
        if matches!(self.phase, Phase::Lingering { .. } | Phase::Closing { .. }) && !self.up() {
            self.phase = Phase::Finished;
        }
    }

    /// Hands over the records finished and the deliveries read since the last call.
    /// Deliveries go after outcomes: a delivery follows its subscription's EOSE.
    pub fn take(&mut self, done: &mut Vec<Done>, deliveries: &mut Vec<Delivery>) {
        done.append(&mut self.book.take_done());
        deliveries.append(&mut self.deliveries);
    }

    /// Takes the records that may be written now and starts writing them: one batch, fed
    /// frame by frame and flushed once, so a burst costs one write system call.
    fn start_write(&mut self, cx: &mut Context<'_>) {
        // One clock reading before the write serves every step up to it: the clock is
        // read per record and per reply, and each reading counts there.
        let started = self.shared.now_ns();
        let batch = self.book.take_ready(started);
        if batch.is_empty() {
            return;
        }
        let bytes: Vec<u32> = batch.iter().map(|d| d.frame.len() as u32).collect();
        if !self.up() {
            self.book.write_failed(batch, &bytes, None, started);
            return;
        }
        self.write = Some(Write {
            batch,
            bytes,
            fed: 0,
            started,
            blocked: false,
        });
        self.poll_write(cx);
    }

    /// Carries the write under way as far as the socket takes it.
    fn poll_write(&mut self, cx: &mut Context<'_>) {
        let Some(w) = self.write.as_mut() else {
            return;
        };
        let Link::Up(ws) = &mut self.link else {
            // Only a socket that is up gets a write, and a write ends before the socket is
            // read again; should one still be left without its socket, its records fail
            // rather than wait forever.
            if let Some(Write { batch, bytes, .. }) = self.write.take() {
                self.book
                    .write_failed(batch, &bytes, None, self.shared.now_ns());
            }
            return;
        };
        let mut ws = Pin::new(&mut **ws);
        let mut step = || -> Poll<Result<(), WsError>> {
            while w.fed < w.batch.len() {
                std::task::ready!(ws.as_mut().poll_ready(cx))?;
                let frame = std::mem::take(&mut w.batch[w.fed].frame);
                ws.as_mut().start_send(Message::text(frame))?;
                w.fed += 1;
            }
            ws.as_mut().poll_flush(cx)
        };
        let result = match step() {
            Poll::Pending => {
                if !w.blocked {
                    w.blocked = true;
                    self.book.socket_blocked(w.started);
                }
                return;
            }
            Poll::Ready(r) => r,
        };
        let Some(Write { batch, bytes, .. }) = self.write.take() else {
            return;
        };
        let now = self.shared.now_ns();
        self.book.write_ended(now);
        if let Err(e) = result {
            let code = close_code(&e);
            self.book.write_failed(batch, &bytes, code, now);
            self.disconnect(code);
            return;
        }
        self.shared
            .record_sent(batch.iter().map(|d| d.ready_ns), now);
        // A CLOSE, which nothing answers, completes at a reading after its send time.
        self.book.sent(batch, &bytes, now, self.shared.now_ns());
    }

    /// Reads the replies the socket has, up to a batch. Not while a write is under way: its
    /// records are not in flight in the book until it ends, so a reply to one would look
    /// unknown. True when the batch was full.
    fn read(&mut self, cx: &mut Context<'_>) -> bool {
        let mut handled = 0;
        while self.write.is_none() && handled < READ_BATCH {
            let Link::Up(ws) = &mut self.link else {
                break;
            };
            let Poll::Ready(frame) = Pin::new(&mut **ws).poll_next(cx) else {
                break;
            };
            self.on_frame(frame);
            handled += 1;
        }
        if handled > 0 {
            self.book.trim_deadlines();
            if let Phase::Lingering { quiet_until, .. } = &mut self.phase {
                *quiet_until = self.shared.now_ns() + ns(LINGER_QUIET);
            }
        }
        handled == READ_BATCH
    }

    fn poll_connect(&mut self, cx: &mut Context<'_>) {
        let Link::Connecting {
            attempt,
            started_ns,
            backoff,
        } = &mut self.link
        else {
            return;
        };
        let Poll::Ready((result, phases)) = attempt.as_mut().poll(cx) else {
            return;
        };
        let (started_ns, backoff) = (*started_ns, *backoff);
        let latency_ns = self.shared.now_ns().saturating_sub(started_ns);
        let error = match result {
            Ok(ws) => {
                self.link = Link::Up(Box::new(ws));
                self.shared.conn_opened();
                None
            }
            Err(e) => {
                let next = (backoff * 2).min(BACKOFF_MAX);
                self.link = Link::Down {
                    retry_ns: self.shared.now_ns() + ns(next),
                    backoff: next,
                };
                Some(e)
            }
        };
        self.shared.emit(Row::Connect(ConnectRow {
            conn: self.id,
            at_ns: started_ns,
            initial: false,
            latency_ns,
            error,
            tcp_ns: phases.tcp_ns,
            tls_ns: phases.tls_ns,
            upgrade_ns: phases.upgrade_ns,
        }));
        for d in std::mem::take(&mut self.parked) {
            self.accept(d);
        }
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) {
        let Link::Up(ws) = &mut self.link else {
            self.phase = Phase::Finished;
            return;
        };
        if Pin::new(&mut **ws).poll_close(cx).is_ready() {
            self.close_now();
        }
    }

    /// Done with the socket, closed or not.
    fn close_now(&mut self) {
        self.link_down();
        self.phase = Phase::Finished;
    }

    fn on_frame(&mut self, frame: Option<Result<Message, WsError>>) {
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
                self.shared.count_unparseable();
                return;
            }
            _ => return,
        };
        if text.len() > OVERSIZED_BYTES {
            self.shared.count_oversized();
            return;
        }
        // A delivery in the usual shape is counted without parsing the event.
        if self.shared.counts_deliveries() {
            if let Some((sub, id)) = fanout::fast_delivery(text) {
                if !self.book.on_event(sub) {
                    self.delivered(sub, id);
                }
                return;
            }
        }
        let parsed = match RelayMessage::parse(text) {
            Ok(m) => m,
            Err(_) => {
                self.shared.count_unparseable();
                return;
            }
        };
        match parsed {
            RelayMessage::Ok {
                id,
                accepted,
                message,
            } => {
                let now = self.shared.now_ns();
                if !self.book.on_ok(&id, accepted, message, now) {
                    // An OK for nothing in flight here: late (after its timeout) or unknown.
                    self.shared.count_late_ack();
                }
            }
            RelayMessage::Eose(sub) => self.book.on_eose(&sub, self.shared.now_ns()),
            RelayMessage::Closed { sub, message } => {
                self.book.on_closed(&sub, message, self.shared.now_ns());
            }
            RelayMessage::Event { sub, event } => {
                if !self.book.on_event(&sub) && self.shared.counts_deliveries() {
                    if let Some(id) = crate::nostr::id_of(event.get()) {
                        self.delivered(&sub, id);
                    }
                }
            }
            RelayMessage::Notice(text) => {
                self.shared.count_notice();
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
            // A COUNT answers its request as an EOSE does a REQ's.
            RelayMessage::Count { sub, .. } => self.book.on_eose(&sub, self.shared.now_ns()),
            RelayMessage::Auth(_) => {}
        }
    }

    /// An event received on `sub` after its EOSE: for the fan-out ledger, by the REQ that
    /// opened the subscription (a read's, `None`, is only counted).
    fn delivered(&mut self, sub: &str, id: [u8; 32]) {
        self.deliveries.push(Delivery {
            req: self.live.get(sub).copied(),
            id,
            at_ns: self.shared.now_ns(),
        });
    }

    /// The connection died: everything on it becomes `disconnected`, then retry later.
    fn disconnect(&mut self, code: Option<u16>) {
        self.book.disconnect(code, self.shared.now_ns());
        self.armed = None;
        self.link_down();
    }

    /// The socket is gone: count it closed and retry after the first backoff.
    fn link_down(&mut self) {
        if self.up() {
            self.shared.conn_closed();
        }
        self.link = Link::Down {
            retry_ns: self.shared.now_ns() + ns(BACKOFF_START),
            backoff: BACKOFF_START,
        };
    }
}

/// [`connect`] with its target owned, so the attempt can be kept while it runs.
async fn connect_owned(target: Arc<Target>, conn: u32) -> (Result<Ws, String>, Phases) {
    let (ws, phases) = connect(&target, conn).await;
    (ws.map_err(|e| e.to_string()), phases)
}

fn close_code(e: &WsError) -> Option<u16> {
    match e {
        WsError::Protocol(_) => Some(1002),
        _ => None,
    }
}

/// The connection's life against a tiny WebSocket peer on loopback (fault injection: a
/// peer that acks, one that never answers, one that drops the connection). Moments are
/// handed to the connection explicitly (`on_time(now)`), so a 30 s timeout is judged
/// without waiting 30 s and each test runs in milliseconds.
#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::task::Poll;

    use futures_util::{SinkExt, StreamExt};
    use tokio::net::TcpListener;
    use tokio::sync::mpsc::UnboundedReceiver;

    use super::*;
    use crate::capture::results::{Outcome, OutcomeRow};
    use crate::capture::Role;
    use crate::guard::{self, AllowList};
    use crate::replay::shared::{Setup, ToWriter};
    use crate::transport::Stop;

    const TIMEOUT: Duration = Duration::from_secs(30);

    #[derive(Clone, Copy)]
    enum Peer {
        /// `OK true` for every EVENT.
        Ack,
        /// Reads and never answers.
        Silent,
        /// Drops the TCP connection (no close frame) on the first message.
        Drop,
    }

    /// A peer on a free loopback port, accepting any number of connections.
    async fn peer(kind: Peer) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("ws://{}/", listener.local_addr().expect("address"));
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                        return;
                    };
                    while let Some(Ok(msg)) = ws.next().await {
                        let Message::Text(text) = msg else { continue };
                        match kind {
                            Peer::Ack => {
                                let v: serde_json::Value =
                                    serde_json::from_str(text.as_str()).expect("a frame");
                                let ok = format!(r#"["OK",{},true,""]"#, v[1]["id"]);
                                if ws.send(Message::text(ok)).await.is_err() {
                                    return;
                                }
                            }
                            Peer::Silent => {}
                            Peer::Drop => return,
                        }
                    }
                });
            }
        });
        url
    }

    struct Rig {
        conn: Conn,
        shared: Arc<Shared>,
        rows: UnboundedReceiver<Vec<Row>>,
    }

    /// A connection opened to `url`, as a network thread opens its connections at start.
    async fn rig(url: &str) -> Rig {
        let target = guard::check(url, &AllowList::parse(&[]).expect("empty list"), &|_, _| {
            unreachable!("an IP host is not resolved")
        })
        .expect("loopback is allowed");
        let (tx, rows) = tokio::sync::mpsc::unbounded_channel();
        let shared = Arc::new(Shared::new(
            Setup {
                t0: std::time::Instant::now(),
                timeout: TIMEOUT,
                per_conn_in_flight: 10,
                reconcile: false,
                stop: Stop::new(),
                fanout: None,
                delivery_rows: false,
                live: None,
            },
            ToWriter {
                rows: tx,
                pending: Arc::new(AtomicUsize::new(0)),
            },
        ));
        let (ws, _) = connect(&target, 0).await;
        let ws = ws.expect("the peer accepts");
        let conn = Conn::new(0, shared.clone(), Arc::new(target), Some(ws));
        Rig { conn, shared, rows }
    }

    fn event(index: u64, now: u64) -> Dispatch {
        let id = [index as u8 + 1; 32];
        Dispatch {
            index,
            conn: 0,
            op: Op::Event {
                kind: 1,
                role: Role::Other,
            },
            frame: format!(r#"["EVENT",{{"id":"{}","kind":1}}]"#, hex::encode(id)),
            key: Key::Ok(id),
            after: None,
            intended_ns: now,
            ready_ns: now,
            dispatched_ns: now,
            held_ns: 0,
            held_mark: 0,
            recorded: None,
        }
    }

    /// One turn of the network loop for this connection: read its news, write what is due.
    async fn turn(conn: &mut Conn, schedule_over: bool) {
        std::future::poll_fn(|cx| {
            conn.poll(cx);
            conn.pump(cx, schedule_over);
            Poll::Ready(())
        })
        .await;
    }

    /// Tells the connection its moment `now` has come, as the thread's timer does.
    async fn at(conn: &mut Conn, now: u64, schedule_over: bool) {
        std::future::poll_fn(|cx| {
            conn.on_time(now, schedule_over, cx);
            Poll::Ready(())
        })
        .await;
    }

    /// Turns until `done` holds (the peer answers within milliseconds; 5 s is a failure).
    async fn until(conn: &mut Conn, schedule_over: bool, mut done: impl FnMut(&mut Conn) -> bool) {
        let give_up = tokio::time::Instant::now() + Duration::from_secs(5);
        while !done(conn) {
            assert!(
                tokio::time::Instant::now() < give_up,
                "the connection never got there"
            );
            turn(conn, schedule_over).await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    fn outcomes(conn: &mut Conn) -> Vec<OutcomeRow> {
        let (mut done, mut deliveries) = (Vec::new(), Vec::new());
        conn.take(&mut done, &mut deliveries);
        done.into_iter().map(|(row, _)| row).collect()
    }

    #[tokio::test]
    async fn an_answered_event_completes_ok_with_its_times() {
        let mut r = rig(&peer(Peer::Ack).await).await;
        let now = r.shared.now_ns();
        r.conn.accept(event(0, now));
        let mut got = Vec::new();
        until(&mut r.conn, false, |c| {
            got.extend(outcomes(c));
            !got.is_empty()
        })
        .await;
        assert_eq!(got.len(), 1);
        let row = &got[0];
        assert_eq!(row.outcome, Outcome::Ok);
        let (sent, completed) = (row.sent_ns.unwrap(), row.completed_ns.unwrap());
        assert!(now <= sent && sent <= completed, "{now} {sent} {completed}");
        // The deadline armed for it stays (deadlines only move later); waking for it finds
        // nothing due, and then nothing is armed.
        let stale = r.conn.next_wake().expect("the answered record's deadline");
        at(&mut r.conn, stale, false).await;
        turn(&mut r.conn, false).await;
        assert!(outcomes(&mut r.conn).is_empty(), "answered once only");
        assert_eq!(r.conn.next_wake(), None, "nothing left to wake for");
    }

    #[tokio::test]
    async fn an_unanswered_event_times_out_at_its_deadline_and_not_before() {
        let mut r = rig(&peer(Peer::Silent).await).await;
        let before = r.shared.now_ns();
        r.conn.accept(event(0, before));
        turn(&mut r.conn, false).await;
        let sent_by = r.shared.now_ns();
        let deadline = r.conn.next_wake().expect("a deadline is armed");
        assert!(
            before + ns(TIMEOUT) <= deadline && deadline <= sent_by + ns(TIMEOUT),
            "deadline {deadline} for a record sent between {before} and {sent_by}"
        );
        // A moment before its deadline: still in flight.
        at(&mut r.conn, deadline - 1, false).await;
        assert!(outcomes(&mut r.conn).is_empty());
        at(&mut r.conn, deadline, false).await;
        let got = outcomes(&mut r.conn);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].outcome, Outcome::Timeout);
        assert_eq!(got[0].completed_ns, None, "a timeout has no answer");
    }

    #[tokio::test]
    async fn a_dropped_connection_fails_what_was_in_flight_and_reconnects_after_backoff() {
        let mut r = rig(&peer(Peer::Drop).await).await;
        assert_eq!(r.shared.counts().open_conns, 1);
        r.conn.accept(event(0, r.shared.now_ns()));
        let mut got = Vec::new();
        until(&mut r.conn, false, |c| {
            got.extend(outcomes(c));
            !got.is_empty()
        })
        .await;
        // A TCP close without the closing handshake is a protocol error: 1002.
        assert_eq!(got[0].outcome, Outcome::Disconnected { code: Some(1002) });
        assert_eq!(r.shared.counts().open_conns, 0);
        // Down: the retry is the first backoff away, and nothing else is armed.
        let dropped_by = r.shared.now_ns();
        let retry = r.conn.next_wake().expect("a retry");
        assert!(
            retry > dropped_by.saturating_sub(ns(BACKOFF_START))
                && retry <= dropped_by + ns(BACKOFF_START),
            "retry {retry}, down by {dropped_by}"
        );
        // A record due while down fails at once rather than wait for a reconnect.
        r.conn.accept(event(1, dropped_by));
        assert_eq!(
            outcomes(&mut r.conn)[0].outcome,
            Outcome::Disconnected { code: None }
        );
        // Its moment comes: the attempt starts and succeeds, and says so in a row.
        at(&mut r.conn, retry, false).await;
        until(&mut r.conn, false, |c| c.up()).await;
        assert_eq!(r.shared.counts().open_conns, 1);
        let mut connects = Vec::new();
        while let Ok(rows) = r.rows.try_recv() {
            connects.extend(rows.into_iter().filter_map(|row| match row {
                Row::Connect(c) => Some(c),
                _ => None,
            }));
        }
        assert_eq!(connects.len(), 1, "{connects:?}");
        assert!(!connects[0].initial && connects[0].error.is_none());
    }

    #[tokio::test]
    async fn after_the_schedule_an_idle_connection_lingers_then_closes_and_finishes() {
        let mut r = rig(&peer(Peer::Ack).await).await;
        turn(&mut r.conn, true).await;
        let Phase::Lingering {
            quiet_until,
            until: max,
        } = r.conn.phase
        else {
            panic!("not lingering: {:?}", r.conn.phase);
        };
        assert_eq!(max - quiet_until, ns(LINGER_MAX) - ns(LINGER_QUIET));
        assert_eq!(r.conn.next_wake(), Some(quiet_until));
        assert!(!r.conn.finished());
        at(&mut r.conn, quiet_until, true).await;
        until(&mut r.conn, true, |c| c.finished()).await;
        assert_eq!(r.shared.counts().open_conns, 0);
        assert_eq!(r.conn.next_wake(), None);
    }
}
