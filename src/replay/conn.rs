//! One task per connection: the socket loop. It writes the records dispatched to it, reads
//! the relay's replies, wakes at deadlines, and reconnects with backoff when the connection
//! dies; the bookkeeping of every record (queue, dependencies, in flight, outcomes) is the
//! connection's [`Book`], which this loop tells what happened.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::{sleep_until, Instant};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::book::Book;
use super::dispatch::{Dispatch, Key};
use super::fanout::{self, Delivery};
use super::shared::Shared;
use super::stream::Stream;
use crate::capture::results::{ConnectRow, NoticeRow, Row};
use crate::capture::Op;
use crate::guard::Target;
use crate::nostr::RelayMessage;

pub type Ws = WebSocketStream<Stream>;

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
    // (its default) that memset was the largest single cost of replay; and every connection
    // keeps it (since lt does the upgrade itself, `upgrade.rs`, at this size; it grows to
    // the largest frame a connection receives). Replies are small; larger frames are read
    // in several steps. 2 KiB against 4: 2 KiB less per open connection, the same ceiling
    // (`cargo bench --bench replay`, steps 1 and 6).
    WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20))
        .read_buffer_size(2 << 10)
}

/// How long each phase of a connection attempt took (`None`: not reached, or no TLS).
#[derive(Debug, Clone, Copy, Default)]
pub struct Phases {
    pub tcp_ns: Option<u64>,
    pub tls_ns: Option<u64>,
    pub upgrade_ns: Option<u64>,
}

/// The TCP connection of connection `conn`: from its source address when there are some
/// (`--source-addr`), else from wherever the kernel chooses. An exhausted port range is
/// named as such.
async fn tcp_connect(
    target: &Target,
    addr: std::net::SocketAddr,
    conn: u32,
) -> Result<TcpStream, String> {
    let out_of_ports = |e: &std::io::Error, from: &str| {
        if e.kind() == std::io::ErrorKind::AddrNotAvailable {
            format!(
                "TCP connect to {addr}{from}: {e} (no local port left toward this address: spread connections over more --source-addr)"
            )
        } else {
            format!("TCP connect to {addr}{from}: {e}")
        }
    };
    let Some(source) =
        (!target.sources.is_empty()).then(|| target.sources[conn as usize % target.sources.len()])
    else {
        return TcpStream::connect(addr)
            .await
            .map_err(|e| out_of_ports(&e, ""));
    };
    let from = format!(" from {source}");
    let socket = match (source, addr) {
        (std::net::IpAddr::V4(_), std::net::SocketAddr::V4(_)) => tokio::net::TcpSocket::new_v4(),
        (std::net::IpAddr::V6(_), std::net::SocketAddr::V6(_)) => tokio::net::TcpSocket::new_v6(),
        _ => {
            return Err(format!(
                "TCP connect to {addr}{from}: the source and the relay's address are not of one IP version"
            ))
        }
    }
    .map_err(|e| format!("TCP socket{from}: {e}"))?;
    // The port is chosen at connect, not at bind (IP_BIND_ADDRESS_NO_PORT): bound without a
    // destination, every socket of a source address would need a port of its own, so one
    // address's range would be shared by all relay addresses instead of serving each.
    let on: libc::c_int = 1;
    // SAFETY: the descriptor is the socket's own and open; the option value is a c_int.
    let set = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&socket),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            std::ptr::addr_of!(on).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if set != 0 {
        let e = std::io::Error::last_os_error();
        return Err(format!("TCP socket{from}: IP_BIND_ADDRESS_NO_PORT: {e}"));
    }
    socket
        .bind(std::net::SocketAddr::new(source, 0))
        .map_err(|e| out_of_ports(&e, &from))?;
    socket
        .connect(addr)
        .await
        .map_err(|e| out_of_ports(&e, &from))
}

/// Opens connection `conn` to an address the guard checked (never resolving again), with
/// `TCP_NODELAY` on (Nagle would add ~40 ms to small frames); for `wss://`, TLS with the
/// URL's host as the server name. Times each phase.
pub async fn connect(target: &Target, conn: u32) -> (Result<Ws, String>, Phases) {
    let addr = target.addrs[conn as usize % target.addrs.len()];
    let mut phases = Phases::default();
    let attempt = async {
        let t = std::time::Instant::now();
        let tcp = tcp_connect(target, addr, conn).await?;
        phases.tcp_ns = Some(t.elapsed().as_nanos() as u64);
        tcp.set_nodelay(true)
            .map_err(|e| format!("TCP_NODELAY: {e}"))?;
        let stream = match &target.tls {
            None => Stream::Plain(tcp),
            Some(config) => {
                let host = target.url.host_str().unwrap_or_default();
                let name = rustls::pki_types::ServerName::try_from(host.to_owned())
                    .map_err(|e| format!("TLS with {host}: not a server name ({e})"))?;
                let t = std::time::Instant::now();
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| crate::tls::why(host, &e))?;
                phases.tls_ns = Some(t.elapsed().as_nanos() as u64);
                Stream::Tls(Box::new(tls))
            }
        };
        let t = std::time::Instant::now();
        let ws = super::upgrade::upgrade(stream, &target.url, ws_config())
            .await
            .map_err(|e| format!("WebSocket handshake: {e}"))?;
        phases.upgrade_ns = Some(t.elapsed().as_nanos() as u64);
        Ok(ws)
    };
    let result = match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "connect to {addr} timed out after {CONNECT_TIMEOUT:?}{}",
            if phases.tcp_ns.is_some() && target.tls.is_some() && phases.tls_ns.is_none() {
                " (TLS handshake)"
            } else {
                ""
            }
        )),
    };
    (result, phases)
}

enum Link {
    /// One owner for both directions, unsplit: the loop writes only between reads (never
    /// awaiting both at once), and a split stream takes a lock on every poll.
    Up(Box<Ws>),
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
    book: Book,
    notices_kept: u32,
    /// Deliveries read since the last hand-over to the fan-out ledger.
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
                retry_at: Instant::now() + BACKOFF_START,
                backoff: BACKOFF_START,
            },
        };
        let book = Book::new(
            id,
            shared.per_conn_in_flight(),
            shared.timeout().as_nanos() as u64,
        );
        Conn {
            id,
            shared,
            target,
            link,
            book,
            notices_kept: 0,
            deliveries: Vec::new(),
            live: HashMap::new(),
        }
    }

    fn up(&self) -> bool {
        matches!(self.link, Link::Up(_))
    }

    /// Runs until the scheduler is done with this connection and nothing is left open.
    /// Records come boxed: a channel allocates its first block of 32 slots up front, and
    /// at a pointer each that is 256 bytes per connection rather than 4.6 KiB.
    pub async fn run(mut self, mut rx: UnboundedReceiver<Box<Dispatch>>) {
        let mut rx_open = true;
        // One timer for the timeouts, armed at the earliest deadline and re-armed only after
        // it fires. Deadlines only move later (they are in send order), so a timer armed at
        // an earlier, since-answered record's deadline just fires once for nothing and is
        // re-armed. A new tokio timer per loop (one per reply) cost a wake-up of the runtime
        // each: a third of replay's system calls.
        let timeouts = tokio::time::sleep_until(Instant::now());
        tokio::pin!(timeouts);
        let mut armed = false;
        loop {
            // Sending may complete records (CLOSE) and so free room: repeat while it helps.
            let mut before = usize::MAX;
            while self.book.queued() > 0 && self.book.queued() != before {
                before = self.book.queued();
                self.send_ready().await;
            }
            self.flush_done();
            if !rx_open && self.book.idle() {
                break;
            }
            if !armed {
                if let Some(ns) = self.book.next_deadline() {
                    let at = Instant::from_std(self.shared.t0() + Duration::from_nanos(ns));
                    timeouts.as_mut().reset(at);
                    armed = true;
                }
            }
            let retry = match &self.link {
                Link::Down { retry_at, .. } => Some(*retry_at),
                Link::Up(_) => None,
            };
            let up = matches!(self.link, Link::Up(_));
            tokio::select! {
                d = rx.recv(), if rx_open => match d {
                    Some(d) => {
                        self.accept(*d);
                        // Take what else is already queued, so it goes out in the same
                        // write: one system call for a burst, not one per record.
                        for _ in 1..BATCH_MAX {
                            match rx.try_recv() {
                                Ok(d) => self.accept(*d),
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
                        if !matches!(self.link, Link::Up(_)) {
                            break;
                        }
                        match next_frame(&mut self.link).now_or_never() {
                            Some(frame) => self.on_frame(frame),
                            None => break,
                        }
                    }
                    self.book.trim_deadlines();
                }
                _ = &mut timeouts, if armed => {
                    armed = false;
                    self.book.expire(self.shared.now_ns());
                }
                _ = retry_due(retry), if retry.is_some() && rx_open => {
                    // Boxed: a connection attempt's future (TCP, TLS and the WebSocket
                    // handshake) is ~8 KiB, and inline it would make every connection's
                    // task that much larger for the whole run; it is needed only while
                    // reconnecting.
                    Box::pin(self.reconnect()).await;
                }
            }
            self.flush_done();
        }
        self.linger().await;
        self.flush_done();
        if let Link::Up(mut ws) = std::mem::replace(
            &mut self.link,
            Link::Down {
                retry_at: Instant::now(),
                backoff: BACKOFF_START,
            },
        ) {
            let _ = ws.close(None).await;
            self.shared.conn_closed();
        }
    }

    /// Hands the records completed since the last call to the shared state in one batch:
    /// one lock and one message to the writer per wake-up rather than per record.
    fn flush_done(&mut self) {
        let done = self.book.take_done();
        if !done.is_empty() {
            self.shared.complete_all(done);
        }
        // After the outcomes: a delivery follows its subscription's EOSE.
        if !self.deliveries.is_empty() {
            self.shared.delivered(std::mem::take(&mut self.deliveries));
        }
    }

    /// Keeps reading until the relay has been quiet for [`LINGER_QUIET`] (at most
    /// [`LINGER_MAX`]). A relay that fell behind is still working through events whose
    /// records timed out; closing the socket at once would make it drop them (nostr-rs-relay
    /// does), turning lt's own hang-up into "lost" events.
    async fn linger(&mut self) {
        let until = Instant::now() + LINGER_MAX;
        while matches!(self.link, Link::Up(_)) && Instant::now() < until {
            tokio::select! {
                frame = next_frame(&mut self.link) => self.on_frame(frame),
                _ = tokio::time::sleep(LINGER_QUIET) => break,
            }
        }
    }

    /// A record arrives from the scheduler.
    fn accept(&mut self, d: Dispatch) {
        if let (Op::Req { query }, Key::Sub(sub)) = (d.op, &d.key) {
            if query.is_live() && self.shared.counts_deliveries() {
                self.live.insert(sub.clone(), d.index);
            }
        }
        let up = self.up();
        self.book.accept(d, up, self.shared.now_ns());
    }

    /// Writes every record that may go now in one batch: frames are fed, then flushed once,
    /// so a burst costs one write system call rather than one per frame.
    async fn send_ready(&mut self) {
        // One clock reading before the write serves every step up to it: the clock is
        // read per record and per reply, and each reading counts there.
        let started = self.shared.now_ns();
        let mut batch = self.book.take_ready(started);
        if batch.is_empty() {
            return;
        }
        // The frames move into the socket's buffer; their sizes stay for the rows.
        let bytes: Vec<u32> = batch.iter().map(|d| d.frame.len() as u32).collect();
        let Link::Up(sink) = &mut self.link else {
            self.book.write_failed(batch, &bytes, None, started);
            return;
        };
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
            let book = &mut self.book;
            let mut blocked = false;
            std::future::poll_fn(|cx| {
                let p = write.as_mut().poll(cx);
                if p.is_pending() && !blocked {
                    blocked = true;
                    book.socket_blocked(started);
                }
                p
            })
            .await
        };
        let now = self.shared.now_ns();
        self.book.write_ended(now);
        if let Err(e) = written {
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
        self.link_down();
    }

    /// The socket is gone: count it closed and retry after the first backoff.
    fn link_down(&mut self) {
        if self.up() {
            self.shared.conn_closed();
        }
        self.link = Link::Down {
            retry_at: Instant::now() + BACKOFF_START,
            backoff: BACKOFF_START,
        };
    }

    async fn reconnect(&mut self) {
        let backoff = match &self.link {
            Link::Down { backoff, .. } => *backoff,
            Link::Up(_) => return,
        };
        let started = self.shared.now_ns();
        let t = std::time::Instant::now();
        let (result, phases) = connect(&self.target, self.id).await;
        let latency_ns = t.elapsed().as_nanos() as u64;
        let error = match result {
            Ok(ws) => {
                self.link = Link::Up(Box::new(ws));
                self.shared.conn_opened();
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
            tcp_ns: phases.tcp_ns,
            tls_ns: phases.tls_ns,
            upgrade_ns: phases.upgrade_ns,
        }));
    }
}

/// Returns at `retry`. A future that makes its timer only when first polled: `select!`
/// builds every branch's future on each turn of the loop, enabled or not, and a timer made
/// and dropped per reply read the clock and the runtime's handle for nothing.
async fn retry_due(retry: Option<Instant>) {
    if let Some(at) = retry {
        sleep_until(at).await;
    }
}

async fn next_frame(
    link: &mut Link,
) -> Option<Result<Message, tokio_tungstenite::tungstenite::Error>> {
    match link {
        Link::Up(ws) => ws.next().await,
        Link::Down { .. } => std::future::pending().await,
    }
}

fn close_code(e: &tokio_tungstenite::tungstenite::Error) -> Option<u16> {
    match e {
        tokio_tungstenite::tungstenite::Error::Protocol(_) => Some(1002),
        _ => None,
    }
}
