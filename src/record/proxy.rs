//! One client connection through the proxy: its own upstream connection, every frame
//! forwarded unchanged both ways as soon as it is read, and every text frame told to the
//! recorder after it is forwarded (so recording adds no delay of its own).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{FutureExt, Sink, SinkExt, Stream, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};

use super::stamped::{Arrival, Stamped};
use crate::guard::Target;
use crate::transport::connect;

/// What the proxy tells the recorder. Frames are handed over as read (shared bytes, no
/// copy on the forwarding path).
pub enum Note {
    /// A text frame, read at `at` and forwarded.
    Client {
        conn: u32,
        at: Instant,
        text: Utf8Bytes,
    },
    Relay {
        conn: u32,
        at: Instant,
        text: Utf8Bytes,
    },
    /// The client's connection is over (both directions).
    Closed { conn: u32, at: Instant },
}

/// How connections went, counted as they end.
#[derive(Default)]
pub struct Faults {
    pub connections: AtomicU64,
    pub open: AtomicU64,
    /// The upstream could not be reached for a client (the client got HTTP 502).
    pub upstream_unreachable: AtomicU64,
    /// Client handshakes that failed (not WebSocket, cut off).
    pub bad_handshakes: AtomicU64,
    /// Connections a side ended without a close frame (reset, EOF).
    pub client_aborts: AtomicU64,
    pub upstream_aborts: AtomicU64,
    /// Frames a side sent that WebSocket does not allow (bad opcode, bad UTF-8, oversized):
    /// the other side is closed with the code a relay would use.
    pub client_protocol_errors: AtomicU64,
    pub upstream_protocol_errors: AtomicU64,
    /// Binary, ping and pong frames, forwarded and not recorded.
    pub control_frames: AtomicU64,
    /// Plain HTTP requests (a client asking for the relay's NIP-11 document), answered with
    /// the upstream's document.
    pub info_requests: AtomicU64,
}

impl Faults {
    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

pub struct Shared {
    pub upstream: Target,
    /// For a wss:// upstream's NIP-11 document (fetched over https).
    pub ca_files: Vec<std::path::PathBuf>,
    pub notes: Sender<Note>,
    pub faults: Arc<Faults>,
    /// The next client connection's index in the trace.
    pub next_conn: std::sync::atomic::AtomicU32,
}

/// Frames up to 64 MiB pass; a relay's own limit is far below, so it is the relay that
/// refuses a large frame, as it would without the proxy.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20))
}

/// How long one direction waits for the other to finish once it has (the close reply).
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Serves a client on `tcp` until either side ends or `stop` says so.
pub async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) {
    let _ = tcp.set_nodelay(true);
    if !is_upgrade(&tcp).await {
        Faults::add(&shared.faults.info_requests);
        serve_info(tcp, &shared).await;
        return;
    }
    Faults::add(&shared.faults.connections);
    // The upstream first: a client of an unreachable relay is refused at its handshake,
    // as it would be without the proxy (with a reason it can read).
    let attempt = shared.faults.connections.load(Ordering::Relaxed) as u32;
    let (upstream, _) = connect(&shared.upstream, attempt).await;
    let refusal = upstream.as_ref().err().cloned();
    // The callback's type is tungstenite's; its error is an HTTP response, large by nature.
    #[allow(clippy::result_large_err)]
    let callback = |_: &Request, response: Response| -> Result<Response, ErrorResponse> {
        match &refusal {
            None => Ok(response),
            Some(why) => {
                let mut r = ErrorResponse::new(Some(format!(
                    "lt record: the upstream relay is unreachable: {why}"
                )));
                *r.status_mut() = tokio_tungstenite::tungstenite::http::StatusCode::BAD_GATEWAY;
                Err(r)
            }
        }
    };
    let (tcp, arrival) = Stamped::new(tcp);
    let client =
        tokio_tungstenite::accept_hdr_async_with_config(tcp, callback, Some(ws_config())).await;
    let (client, upstream) = match (client, upstream) {
        (Ok(c), Ok(u)) => (c, u),
        (_, Err(why)) => {
            Faults::add(&shared.faults.upstream_unreachable);
            eprintln!("lt record: a client ({peer}): upstream unreachable: {why}");
            return;
        }
        (Err(_), Ok(_)) => {
            Faults::add(&shared.faults.bad_handshakes);
            return;
        }
    };
    shared.faults.open.fetch_add(1, Ordering::Relaxed);
    // Numbered once both ends are up, so the trace's connections are exactly the
    // WebSocket sessions (no gaps for NIP-11 requests or refused clients).
    let conn = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let (client_tx, client_rx) = client.split();
    let (relay_tx, relay_rx) = upstream.split();
    let closing = AtomicBool::new(false);
    let up = forward(
        Way::Up(arrival),
        conn,
        client_rx,
        relay_tx,
        &shared,
        &closing,
        stop.clone(),
    );
    let down = forward(
        Way::Down,
        conn,
        relay_rx,
        client_tx,
        &shared,
        &closing,
        stop,
    );
    tokio::pin!(up, down);
    tokio::select! {
        _ = &mut up => { let _ = tokio::time::timeout(CLOSE_GRACE, down).await; }
        _ = &mut down => { let _ = tokio::time::timeout(CLOSE_GRACE, up).await; }
    }
    shared.faults.open.fetch_sub(1, Ordering::Relaxed);
    let _ = shared.notes.send(Note::Closed {
        conn,
        at: Instant::now(),
    });
}

/// Whether the request waiting on `tcp` asks for a WebSocket (looked at without reading it,
/// so the handshake still sees every byte). Anything unclear goes the WebSocket way, whose
/// handshake then says what is wrong.
async fn is_upgrade(tcp: &TcpStream) -> bool {
    let mut buf = vec![0u8; 8 << 10];
    let look = async {
        let mut seen = 0;
        loop {
            let n = tcp.peek(&mut buf).await.unwrap_or(0);
            let head = &buf[..n];
            if n == 0 || n == buf.len() || head.windows(4).any(|w| w == b"\r\n\r\n") {
                let text = String::from_utf8_lossy(head).to_ascii_lowercase();
                return n == 0 || n == buf.len() || text.contains("upgrade: websocket");
            }
            if n == seen {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            seen = n;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), look)
        .await
        .unwrap_or(true)
}

/// A plain HTTP request on the relay's URL is a client asking for its NIP-11 document (as
/// the platform's web app does before connecting): it gets the upstream's, as served.
async fn serve_info(mut tcp: TcpStream, shared: &Shared) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // The request head (peeked whole above); the document is the same for every path.
    let mut head = vec![0u8; 8 << 10];
    let _ = tcp.read(&mut head).await;
    let (upstream, ca_files) = (shared.upstream.clone(), shared.ca_files.clone());
    let info = tokio::task::spawn_blocking(move || crate::nip11::fetch(&upstream, &ca_files))
        .await
        .ok();
    let (status, body) = match info.as_ref().and_then(|p| p.document.clone()) {
        Some(doc) => ("200 OK", doc),
        None => (
            "502 Bad Gateway",
            info.and_then(|p| p.note)
                .unwrap_or_else(|| "the upstream's NIP-11 document could not be fetched".into()),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/nostr+json\r\nAccess-Control-Allow-Origin: *\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tcp.write_all(response.as_bytes()).await;
    let _ = tcp.shutdown().await;
}

/// The close code a relay would answer a bad frame with.
fn close_for(e: &WsError) -> CloseCode {
    match e {
        WsError::Capacity(_) => CloseCode::Size,
        WsError::Utf8(_) => CloseCode::Invalid,
        _ => CloseCode::Protocol,
    }
}

fn is_abort(e: &WsError) -> bool {
    matches!(
        e,
        WsError::Io(_) | WsError::ConnectionClosed | WsError::AlreadyClosed
    ) || matches!(e, WsError::Protocol(p) if p.to_string().contains("without closing handshake"))
}

fn going_away(why: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::Away,
        reason: why.into(),
    }))
}

/// Which way frames go.
#[derive(Clone)]
enum Way {
    /// Client → relay, with when the client's last bytes arrived.
    Up(Arrival),
    /// Relay → client.
    Down,
}

impl Way {
    /// When the frame just read arrived: by the kernel's stamp for a client's frame (its
    /// offset in the trace), by the clock for the relay's answer.
    fn arrived(&self) -> Instant {
        match self {
            Way::Up(arrival) => arrival.instant(),
            Way::Down => Instant::now(),
        }
    }

    fn note(&self, conn: u32, at: Instant, text: Utf8Bytes) -> Note {
        match self {
            Way::Up(_) => Note::Client { conn, at, text },
            Way::Down => Note::Relay { conn, at, text },
        }
    }

    /// The counters of the side frames come from.
    fn aborts<'f>(&self, f: &'f Faults) -> &'f AtomicU64 {
        match self {
            Way::Up(_) => &f.client_aborts,
            Way::Down => &f.upstream_aborts,
        }
    }

    fn protocol_errors<'f>(&self, f: &'f Faults) -> &'f AtomicU64 {
        match self {
            Way::Up(_) => &f.client_protocol_errors,
            Way::Down => &f.upstream_protocol_errors,
        }
    }

    fn bad_frame(&self) -> &'static str {
        match self {
            Way::Up(_) => "the client sent a frame WebSocket does not allow",
            Way::Down => "the relay sent a frame WebSocket does not allow",
        }
    }
}

/// Forwards one way until the source closes, fails or ends, or the destination is gone.
/// A source's close frame is forwarded; a source that fails with a bad frame gets the
/// destination closed with the code a relay would use; one that vanishes without a close
/// frame leaves the destination to be dropped the same way (the client sees what it would
/// have seen without the proxy). On `stop`, the destination is told the proxy is going
/// away and forwarding goes on until the close handshake ends.
async fn forward<From, To>(
    way: Way,
    conn: u32,
    mut from: From,
    mut to: To,
    shared: &Shared,
    closing: &AtomicBool,
    mut stop: watch::Receiver<bool>,
) where
    From: Stream<Item = Result<Message, WsError>> + Unpin,
    To: Sink<Message, Error = WsError> + Unpin,
{
    let mut stopping = *stop.borrow();
    if stopping {
        closing.store(true, Ordering::Relaxed);
        let _ = to.send(going_away("lt record is stopping")).await;
    }
    // Frames already read go out together, flushed once: one write for a burst rather than
    // one per frame, and no wait for a frame that has arrived.
    let mut unflushed = false;
    loop {
        let next = match from.next().now_or_never() {
            Some(m) => m,
            None => {
                if unflushed {
                    unflushed = false;
                    if to.flush().await.is_err() {
                        return;
                    }
                }
                tokio::select! {
                    m = from.next() => m,
                    _ = stop.changed(), if !stopping => {
                        stopping = true;
                        closing.store(true, Ordering::Relaxed);
                        let _ = to.send(going_away("lt record is stopping")).await;
                        continue;
                    }
                }
            }
        };
        match next {
            Some(Ok(msg)) => {
                let at = way.arrived();
                let text = match &msg {
                    Message::Text(t) => Some(t.clone()),
                    Message::Close(_) => None,
                    Message::Frame(_) => continue,
                    _ => {
                        Faults::add(&shared.faults.control_frames);
                        None
                    }
                };
                let close = matches!(msg, Message::Close(_));
                if close {
                    closing.store(true, Ordering::Relaxed);
                }
                if to.feed(msg).await.is_err() {
                    return;
                }
                unflushed = true;
                if let Some(t) = text {
                    let _ = shared.notes.send(way.note(conn, at, t));
                }
                if close {
                    let _ = to.flush().await;
                    return;
                }
            }
            Some(Err(e)) if !is_abort(&e) => {
                Faults::add(way.protocol_errors(&shared.faults));
                let _ = to
                    .send(Message::Close(Some(CloseFrame {
                        code: close_for(&e),
                        reason: way.bad_frame().into(),
                    })))
                    .await;
                return;
            }
            // After a close frame either way, a side that just drops the connection (as
            // nostr-rs-relay does instead of answering the close) ends it normally.
            Some(Err(_)) | None => {
                if !closing.load(Ordering::Relaxed) {
                    Faults::add(way.aborts(&shared.faults));
                }
                // Stopping, and the source went first (a relay that drops the connection
                // on the proxy's close): the destination still hears the proxy is going
                // away, rather than seeing its socket vanish.
                if !stopping && *stop.borrow() {
                    let _ = to.send(going_away("lt record is stopping")).await;
                }
                return;
            }
        }
    }
}
