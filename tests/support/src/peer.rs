//! A minimal in-process WebSocket peer that plays a relay.
//!
//! Replay's tests use it to inject faults a real relay produces only by accident (stalls,
//! dropped connections, garbage, slow acks), and the replay benchmark uses [`Behavior::AckAll`]
//! as the cheapest possible relay, so what it measures is lt and not the relay. It does not
//! validate events: it answers what a relay would answer to a valid one.

use std::borrow::Cow;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use lt::nostr::message::{ClientMessage, RelayMessage};

/// Largest message and frame the peer accepts: far above any relay's limit, so the peer never
/// is the reason a big event fails.
const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Pending connections the kernel may hold for us; thousands of clients connect at once at the
/// start of a replay (the kernel caps it at `net.core.somaxconn`).
const BACKLOG: u32 = 4096;

/// How the peer answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behavior {
    /// Answer every EVENT with `["OK",id,true,""]` and every REQ with `["EOSE",sub]` at once;
    /// ignore CLOSE. Anything else that is not a client message gets a NOTICE, as relays do.
    AckAll,
    /// Accept connections and read everything, never answer.
    Stall,
    /// Ack like [`Behavior::AckAll`], but after answering `after_messages` messages on a
    /// connection, drop its TCP connection without a close frame. Every connection is counted
    /// on its own, and new connections are accepted and behave the same; `0` drops each
    /// connection right after the handshake. The acks are flushed before the drop, but input
    /// the peer has not read (a pipelining client's later messages) makes the kernel reset the
    /// connection, as with a crashed relay.
    DropAfter { after_messages: u64 },
    /// Ack like [`Behavior::AckAll`], but before each answer also send one text frame that is
    /// not JSON, one JSON array of an unknown message type, and a NOTICE; and every
    /// `oversized_every` messages on a connection (`0`: never) one text frame of exactly
    /// `oversized_bytes` bytes (a NOTICE padded with `x` when it fits, else just `x`s).
    Garbage {
        oversized_every: u64,
        oversized_bytes: usize,
    },
    /// Ack like [`Behavior::AckAll`], but each answer goes out `delay` after its message
    /// arrived; answers stay in order per connection, and delays do not add up when messages
    /// are pipelined.
    Delay { delay: Duration },
    /// Read nothing for `pause` after the handshake, then ack like [`Behavior::AckAll`]: a
    /// relay too busy to read, whose socket fills until the client cannot write (TCP
    /// backpressure).
    PauseReading { pause: Duration },
    /// A relay with live subscriptions and no storage: every REQ gets its EOSE at once and
    /// stays open until its CLOSE; every EVENT is acked, then pushed to every open
    /// subscription (any connection's) whose filters match it. Deliveries are numbered
    /// from 1 across the peer; every `drop_every`-th is not sent and every
    /// `duplicate_every`-th is sent twice (`0`: never), and [`Peer::faults`] lists them.
    FanOut {
        drop_every: u64,
        duplicate_every: u64,
    },
}

/// Deliveries [`Behavior::FanOut`] dropped and sent twice: (subscription id, event id).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    pub dropped: Vec<(String, String)>,
    pub duplicated: Vec<(String, String)>,
    /// Deliveries sent, duplicates counted once.
    pub delivered: u64,
}

/// A subscription's filters and where its deliveries go.
type OpenSub = (
    Vec<lt::nostr::filter::Filter>,
    mpsc::UnboundedSender<String>,
);

/// The open subscriptions of a [`Behavior::FanOut`] peer, and what it did to deliveries.
#[derive(Default)]
struct FanState {
    /// (connection, subscription id) → its filters and the connection's outbound frames.
    subs: std::sync::Mutex<std::collections::HashMap<(u64, String), OpenSub>>,
    numbered: AtomicU64,
    faults: std::sync::Mutex<Faults>,
    next_conn: AtomicU64,
}

/// Counters since [`Peer::start`], summed over all connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerStats {
    /// TCP connections accepted, counted before the WebSocket handshake.
    pub accepted: u64,
    /// WebSocket handshakes completed (an HTTP request such as lt's NIP-11 preflight is
    /// accepted but completes none).
    pub websockets: u64,
    /// Text and binary WebSocket messages received.
    pub messages: u64,
    /// `OK` frames sent.
    pub events_acked: u64,
    /// `EOSE` frames sent.
    pub reqs_answered: u64,
    /// Payload bytes of the messages received.
    pub bytes_received: u64,
}

/// What the peer counts, shared by its connections ([`Peer::stats`] reads a snapshot).
#[derive(Default)]
pub struct Counters {
    accepted: AtomicU64,
    websockets: AtomicU64,
    messages: AtomicU64,
    events_acked: AtomicU64,
    reqs_answered: AtomicU64,
    bytes_received: AtomicU64,
    fan: FanState,
    /// The addresses connections came from.
    client_ips: std::sync::Mutex<std::collections::BTreeSet<std::net::IpAddr>>,
}

impl Counters {
    /// The counts so far.
    pub fn snapshot(&self) -> PeerStats {
        PeerStats {
            accepted: self.accepted.load(Ordering::Relaxed),
            websockets: self.websockets.load(Ordering::Relaxed),
            messages: self.messages.load(Ordering::Relaxed),
            events_acked: self.events_acked.load(Ordering::Relaxed),
            reqs_answered: self.reqs_answered.load(Ordering::Relaxed),
            bytes_received: self.bytes_received.load(Ordering::Relaxed),
        }
    }
}

/// A running peer. Dropping it (or [`Peer::shutdown`]) stops accepting and closes every
/// connection.
pub struct Peer {
    addr: SocketAddr,
    counters: Arc<Counters>,
    /// Owns the listener and, through a `JoinSet`, every connection task: aborting it closes
    /// them all.
    task: JoinHandle<()>,
}

impl Peer {
    /// Binds 127.0.0.1:0 (loopback only, so a test can never expose it) and serves on the
    /// current tokio runtime.
    pub async fn start(behavior: Behavior) -> std::io::Result<Peer> {
        let socket = TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        socket.bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
        let listener = socket.listen(BACKLOG)?;
        let addr = listener.local_addr()?;
        let counters = Arc::new(Counters::default());
        let task = tokio::spawn(accept_loop(listener, behavior, counters.clone()));
        Ok(Peer {
            addr,
            counters,
            task,
        })
    }

    /// `ws://127.0.0.1:PORT/`
    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stats(&self) -> PeerStats {
        self.counters.snapshot()
    }

    /// The addresses connections came from so far.
    pub fn client_ips(&self) -> Vec<std::net::IpAddr> {
        self.counters
            .client_ips
            .lock()
            .map(|ips| ips.iter().copied().collect())
            .unwrap_or_default()
    }

    /// What [`Behavior::FanOut`] dropped and duplicated so far.
    pub fn faults(&self) -> Faults {
        self.counters
            .fan
            .faults
            .lock()
            .map(|f| f.clone())
            .unwrap_or_default()
    }

    /// Stops accepting and closes every connection (without close frames). The sockets close
    /// when the runtime next runs the aborted tasks, which is at once on a multi-thread runtime.
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, behavior: Behavior, counters: Arc<Counters>) {
    let behavior = Arc::new(behavior);
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, from)) => {
                    counters.accepted.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut ips) = counters.client_ips.lock() {
                        ips.insert(from.ip());
                    }
                    conns.spawn(serve(stream, behavior.clone(), counters.clone()));
                }
                // Out of file descriptors or a connection reset before accept: the listener
                // itself is fine. Back off briefly so EMFILE does not become a busy loop.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            // Reap finished connections so the set does not grow over a long run.
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// One connection. Errors end the connection and nothing else: a client that goes away is
/// what a peer expects.
async fn serve(stream: TcpStream, behavior: Arc<Behavior>, counters: Arc<Counters>) {
    // Without NODELAY a small ack waits for the client's delayed ACK (~40 ms).
    if stream.set_nodelay(true).is_err() {
        return;
    }
    // A small read buffer, as in lt's own client (`replay::conn`): tungstenite zeroes the
    // whole buffer on every read, and at its 128 KiB default that memset would be most of
    // what the cheapest possible relay costs.
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES))
        .read_buffer_size(8 << 10);
    let Ok(ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else {
        return;
    };
    counters.websockets.fetch_add(1, Ordering::Relaxed);
    let _ = match *behavior {
        Behavior::Stall => stall(ws, &counters).await,
        Behavior::Delay { delay } => delayed(ws, delay, &counters).await,
        Behavior::AckAll | Behavior::Garbage { .. } => answer(ws, &behavior, None, &counters).await,
        Behavior::DropAfter { after_messages } => {
            answer(ws, &behavior, Some(after_messages), &counters).await
        }
        Behavior::PauseReading { pause } => {
            tokio::time::sleep(pause).await;
            answer(ws, &behavior, None, &counters).await
        }
        Behavior::FanOut {
            drop_every,
            duplicate_every,
        } => fan_out(ws, drop_every, duplicate_every, &counters).await,
    };
}

type Ws = WebSocketStream<TcpStream>;
type WsResult = Result<(), tokio_tungstenite::tungstenite::Error>;

async fn stall(mut ws: Ws, counters: &Counters) -> WsResult {
    while let Some(msg) = ws.next().await {
        count(&msg?, counters);
    }
    Ok(())
}

/// Counts a data message; returns its text if it is text.
fn count<'m>(msg: &'m Message, counters: &Counters) -> Option<&'m str> {
    let (len, text) = match msg {
        Message::Text(t) => (t.len(), Some(t.as_str())),
        Message::Binary(b) => (b.len(), None),
        _ => return None,
    };
    counters.messages.fetch_add(1, Ordering::Relaxed);
    counters
        .bytes_received
        .fetch_add(len as u64, Ordering::Relaxed);
    text
}

/// AckAll, DropAfter and Garbage: answers are fed as messages are read and flushed once no
/// more input is ready, so a pipelining client gets one write per batch, not per ack.
async fn answer(
    mut ws: Ws,
    behavior: &Behavior,
    drop_after: Option<u64>,
    counters: &Counters,
) -> WsResult {
    let mut seen: u64 = 0;
    if drop_after == Some(0) {
        return Ok(());
    }
    while let Some(msg) = ws.next().await {
        let mut next = Some(msg?);
        while let Some(msg) = next.take() {
            let data = matches!(msg, Message::Text(_) | Message::Binary(_));
            seen += u64::from(data);
            if let Some(reply) = count(&msg, counters).and_then(|t| reply_to(t, counters)) {
                if let Behavior::Garbage {
                    oversized_every,
                    oversized_bytes,
                } = *behavior
                {
                    for g in garbage(seen, oversized_every, oversized_bytes) {
                        ws.feed(Message::Text(g.into())).await?;
                    }
                }
                ws.feed(Message::Text(reply.into())).await?;
            }
            if data && drop_after.is_some_and(|n| seen >= n) {
                // Flush the acks, then drop the socket with no close frame: the fault a
                // crashing relay or a load balancer produces.
                ws.flush().await?;
                return Ok(());
            }
            // Pending and ended both give `None` here; the outer `next().await` tells them
            // apart.
            next = ws.next().now_or_never().flatten().transpose()?;
        }
        ws.flush().await?;
    }
    Ok(())
}

/// Delay: the reader stamps each answer with its due time; the writer sends them in order,
/// each at its own time.
async fn delayed(ws: Ws, delay: Duration, counters: &Counters) -> WsResult {
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, String)>();
    let reader = async move {
        while let Some(msg) = stream.next().await {
            let msg = msg?;
            if let Some(reply) = count(&msg, counters).and_then(|t| reply_to(t, counters)) {
                if tx.send((Instant::now() + delay, reply)).is_err() {
                    break;
                }
            }
        }
        Ok::<(), tokio_tungstenite::tungstenite::Error>(())
    };
    let writer = async move {
        while let Some((due, reply)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            sink.send(Message::Text(reply.into())).await?;
        }
        Ok::<(), tokio_tungstenite::tungstenite::Error>(())
    };
    // If the writer fails the socket is gone, and the reader ends on the same error.
    let (read, write) = tokio::join!(reader, writer);
    read.and(write)
}

/// FanOut: a reader that answers and fans out, and a writer for this connection's frames
/// (its answers and what other connections' events push to it).
async fn fan_out(ws: Ws, drop_every: u64, duplicate_every: u64, counters: &Counters) -> WsResult {
    let fan = &counters.fan;
    let conn = fan.next_conn.fetch_add(1, Ordering::Relaxed);
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let reader = async {
        while let Some(msg) = stream.next().await {
            let msg = msg?;
            let Some(text) = count(&msg, counters) else {
                continue;
            };
            match ClientMessage::parse(text) {
                Ok(ClientMessage::Event(raw)) => {
                    let Some(id) = event_id(raw.get()) else {
                        let _ = tx.send(notice("invalid: event has no valid id"));
                        continue;
                    };
                    counters.events_acked.fetch_add(1, Ordering::Relaxed);
                    let _ = tx.send(ok_frame(&id));
                    let Some(keys) = serde_json::from_str::<serde_json::Value>(raw.get())
                        .ok()
                        .and_then(|v| lt::nostr::filter::Keys::of(&v))
                    else {
                        continue;
                    };
                    let Ok(subs) = fan.subs.lock() else {
                        continue;
                    };
                    let mut targets: Vec<(&(u64, String), &mpsc::UnboundedSender<String>)> = subs
                        .iter()
                        .filter(|(_, (filters, _))| filters.iter().any(|f| f.matches(&keys)))
                        .map(|(k, (_, out))| (k, out))
                        .collect();
                    // A fixed order, so which delivery gets which number does not depend on
                    // the map's.
                    targets.sort_by(|a, b| a.0.cmp(b.0));
                    for ((_, sub), out) in targets {
                        let n = fan.numbered.fetch_add(1, Ordering::Relaxed) + 1;
                        let Ok(mut faults) = fan.faults.lock() else {
                            continue;
                        };
                        if drop_every > 0 && n % drop_every == 0 {
                            faults.dropped.push((sub.clone(), id.clone()));
                            continue;
                        }
                        let frame = format!("[\"EVENT\",{},{}]", serde_json::json!(sub), raw.get());
                        if duplicate_every > 0 && n % duplicate_every == 0 {
                            faults.duplicated.push((sub.clone(), id.clone()));
                            let _ = out.send(frame.clone());
                        }
                        faults.delivered += 1;
                        let _ = out.send(frame);
                    }
                }
                Ok(ClientMessage::Req { sub, filters }) => {
                    counters.reqs_answered.fetch_add(1, Ordering::Relaxed);
                    let _ = tx.send(RelayMessage::Eose(sub.clone()).to_frame());
                    let parsed: Vec<lt::nostr::filter::Filter> = filters
                        .iter()
                        .filter_map(|f| {
                            serde_json::from_str(f.get())
                                .ok()
                                .and_then(|v| lt::nostr::filter::Filter::parse(&v).ok())
                        })
                        .collect();
                    if let Ok(mut subs) = fan.subs.lock() {
                        subs.insert((conn, sub.into_owned()), (parsed, tx.clone()));
                    }
                }
                Ok(ClientMessage::Close(sub)) => {
                    if let Ok(mut subs) = fan.subs.lock() {
                        subs.remove(&(conn, sub.into_owned()));
                    }
                }
                Err(e) => {
                    let _ = tx.send(notice(&format!("could not parse command: {e}")));
                }
            }
        }
        Ok::<(), tokio_tungstenite::tungstenite::Error>(())
    };
    let writer = async {
        while let Some(first) = rx.recv().await {
            sink.feed(Message::Text(first.into())).await?;
            while let Ok(more) = rx.try_recv() {
                sink.feed(Message::Text(more.into())).await?;
            }
            sink.flush().await?;
        }
        Ok::<(), tokio_tungstenite::tungstenite::Error>(())
    };
    let read = tokio::select! {
        r = reader => r,
        w = writer => w,
    };
    // The connection is gone: its subscriptions with it.
    if let Ok(mut subs) = fan.subs.lock() {
        subs.retain(|(c, _), _| *c != conn);
    }
    read
}

/// What the peer answers to one text message, counting the answer; `None` for CLOSE.
pub fn reply_to(text: &str, counters: &Counters) -> Option<String> {
    if let Some(id) = fast_event_id(text) {
        counters.events_acked.fetch_add(1, Ordering::Relaxed);
        return Some(ok_frame(id));
    }
    match ClientMessage::parse(text) {
        Ok(ClientMessage::Event(raw)) => match event_id(raw.get()) {
            Some(id) => {
                counters.events_acked.fetch_add(1, Ordering::Relaxed);
                Some(ok_frame(&id))
            }
            None => Some(notice("invalid: event has no valid id")),
        },
        Ok(ClientMessage::Req { sub, .. }) => {
            counters.reqs_answered.fetch_add(1, Ordering::Relaxed);
            Some(RelayMessage::Eose(sub).to_frame())
        }
        Ok(ClientMessage::Close(_)) => None,
        Err(e) => Some(notice(&format!("could not parse command: {e}"))),
    }
}

/// The event id of a frame written the way lt writes it (`["EVENT",{"id":"<64 hex>",…`),
/// without parsing the rest: the benchmark wants the peer's cost per event near zero. The id
/// is checked to be 64 lowercase hex digits followed by its closing quote, so whatever comes
/// back is a well-formed id to echo; any other frame takes the parsing path.
pub fn fast_event_id(text: &str) -> Option<&str> {
    const PREFIX: &str = "[\"EVENT\",{\"id\":\"";
    let rest = text.strip_prefix(PREFIX)?;
    let id = rest.get(..64)?;
    let lower_hex = id
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    (lower_hex && rest.as_bytes().get(64) == Some(&b'"')).then_some(id)
}

/// The `id` of an event object, as lowercase hex, if it is 32 bytes of hex.
fn event_id(event: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct IdOnly<'a> {
        #[serde(borrow)]
        id: Cow<'a, str>,
    }
    let parsed: IdOnly<'_> = serde_json::from_str(event).ok()?;
    let mut id = [0u8; 32];
    hex::decode_to_slice(parsed.id.as_bytes(), &mut id).ok()?;
    Some(hex::encode(id))
}

/// `["OK","<id>",true,""]`.
pub fn ok_frame(id_hex: &str) -> String {
    let mut out = String::with_capacity(80);
    out.push_str("[\"OK\",\"");
    out.push_str(id_hex);
    out.push_str("\",true,\"\"]");
    out
}

fn notice(text: &str) -> String {
    RelayMessage::Notice(text.into()).to_frame()
}

/// The frames [`Behavior::Garbage`] sends before the answer to message number `seen` (from 1).
fn garbage(seen: u64, oversized_every: u64, oversized_bytes: usize) -> Vec<String> {
    let mut out = vec![
        "lt-peer garbage: {not json".to_owned(),
        r#"["LT-PEER-UNKNOWN","garbage"]"#.to_owned(),
        notice("lt-peer: garbage mode"),
    ];
    if oversized_every > 0 && seen % oversized_every == 0 {
        out.push(oversized(oversized_bytes));
    }
    out
}

/// Exactly `bytes` bytes: `["NOTICE","xxx…"]` when that fits, else `x`s.
pub fn oversized(bytes: usize) -> String {
    const HEAD: &str = "[\"NOTICE\",\"";
    const TAIL: &str = "\"]";
    let mut out = String::with_capacity(bytes);
    if bytes >= HEAD.len() + TAIL.len() {
        out.push_str(HEAD);
        out.push_str(&"x".repeat(bytes - HEAD.len() - TAIL.len()));
        out.push_str(TAIL);
    } else {
        out.push_str(&"x".repeat(bytes));
    }
    out
}
