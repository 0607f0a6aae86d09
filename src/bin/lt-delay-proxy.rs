//! `lt-delay-proxy`: a TCP proxy on loopback that holds every byte coming back from the
//! relay for a fixed time. Put it in front of one side of `lt ab` to check that the
//! comparison reports that side worse by about that much (see docs/comparing-builds.md).
//!
//! With `--max-oks-per-s N` it is also a relay of known capacity: it lets at most N
//! `["OK",…]` frames a second through, across all connections, queueing the rest (and
//! what follows them on their connection), so above N events per second the answers fall
//! further and further behind — what `lt capacity` must find (docs/capacity.md).
//!
//! `lt-delay-proxy --listen PORT --to 127.0.0.1:PORT --delay 20ms`
//! `lt-delay-proxy --listen PORT --to 127.0.0.1:PORT --max-oks-per-s 250`

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;

/// Forwards TCP connections from 127.0.0.1:LISTEN to TO, delaying the replies.
#[derive(Debug, Parser)]
#[command(name = "lt-delay-proxy", version)]
struct Args {
    /// Port to listen on (127.0.0.1 only).
    #[arg(long)]
    listen: u16,
    /// Where to forward: a loopback address and port.
    #[arg(long)]
    to: SocketAddr,
    /// How long to hold each chunk the upstream sends back: `20ms`, `1s`.
    #[arg(long, value_parser = parse_delay, default_value = "0ms")]
    delay: Duration,
    /// Let at most this many OK frames a second through, over all connections.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    max_oks_per_s: Option<u32>,
}

/// A delay under an hour, read as every lt duration is (`20ms`, `1s`; see
/// `lt::units::duration`).
fn parse_delay(s: &str) -> Result<Duration, String> {
    match lt::units::duration(s)? {
        d if d < Duration::from_secs(3600) => Ok(d),
        _ => Err(format!(
            "{s:?} is not a delay under an hour, such as 20ms or 1s"
        )),
    }
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!(
                "lt-delay-proxy: {}",
                e.to_string().lines().next().unwrap_or("")
            );
            return ExitCode::from(2);
        }
    };
    // A test aid, never a path to anyone else's host.
    if !args.to.ip().is_loopback() {
        eprintln!(
            "lt-delay-proxy: --to must be a loopback address, not {}",
            args.to
        );
        return ExitCode::from(2);
    }
    let listener = match TcpListener::bind((Ipv4Addr::LOCALHOST, args.listen)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "lt-delay-proxy: listening on 127.0.0.1:{}: {e}",
                args.listen
            );
            return ExitCode::from(1);
        }
    };
    let limit = args.max_oks_per_s.map(|n| {
        Arc::new(Limiter {
            interval: Duration::from_secs_f64(1.0 / f64::from(n)),
            next: Mutex::new(Instant::now()),
        })
    });
    for client in listener.incoming().flatten() {
        let (to, delay, limit) = (args.to, args.delay, limit.clone());
        thread::spawn(move || serve(client, to, delay, limit));
    }
    ExitCode::SUCCESS
}

/// The OK frames' pace, shared by every connection: each takes the next free slot.
struct Limiter {
    interval: Duration,
    next: Mutex<Instant>,
}

impl Limiter {
    /// When the next OK may go.
    fn slot(&self) -> Instant {
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let slot = (*next).max(Instant::now());
        *next = slot + self.interval;
        slot
    }
}

/// Splits what the relay sends (its HTTP upgrade answer, then unmasked WebSocket frames)
/// into pieces, each whole frame on its own, and says which are OK frames.
#[derive(Default)]
struct Frames {
    buf: Vec<u8>,
    upgraded: bool,
    /// The answer was not a WebSocket upgrade (a NIP-11 document): bytes pass as they come.
    plain: bool,
}

impl Frames {
    /// The whole pieces `chunk` completes, each with whether it is an OK frame.
    fn push(&mut self, chunk: &[u8]) -> Vec<(Vec<u8>, bool)> {
        if self.plain {
            return vec![(chunk.to_vec(), false)];
        }
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        if !self.upgraded {
            let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                return out;
            };
            self.plain = !self.buf.starts_with(b"HTTP/1.1 101");
            if self.plain {
                return vec![(std::mem::take(&mut self.buf), false)];
            }
            out.push((self.buf.drain(..end + 4).collect(), false));
            self.upgraded = true;
        }
        while let Some(len) = frame_len(&self.buf) {
            let frame: Vec<u8> = self.buf.drain(..len).collect();
            let ok = frame[0] & 0x0f == 1 && payload(&frame).starts_with(b"[\"OK\"");
            out.push((frame, ok));
        }
        out
    }
}

/// The length of the whole frame at the start of `b`, once all of it is there.
fn frame_len(b: &[u8]) -> Option<usize> {
    if b.len() < 2 {
        return None;
    }
    let (head, len) = match b[1] & 0x7f {
        126 if b.len() >= 4 => (4, u64::from(u16::from_be_bytes([b[2], b[3]]))),
        127 if b.len() >= 10 => {
            let mut n = [0u8; 8];
            n.copy_from_slice(&b[2..10]);
            (10, u64::from_be_bytes(n))
        }
        126 | 127 => return None,
        n => (2, u64::from(n)),
    };
    let mask = if b[1] & 0x80 != 0 { 4 } else { 0 };
    let total = head + mask + usize::try_from(len).ok()?;
    (b.len() >= total).then_some(total)
}

/// A server frame's payload (unmasked: servers do not mask).
fn payload(frame: &[u8]) -> &[u8] {
    let head = match frame[1] & 0x7f {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    &frame[head.min(frame.len())..]
}

/// One connection: requests go up at once, replies come back `delay` late, in order, OKs
/// no faster than `limit` allows.
fn serve(client: TcpStream, to: SocketAddr, delay: Duration, limit: Option<Arc<Limiter>>) {
    let Ok(upstream) = TcpStream::connect(to) else {
        // Upstream not listening (yet): the client sees a closed connection and retries.
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (Ok(client_r), Ok(upstream_w)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    thread::spawn(move || pump(client_r, upstream_w));
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let mut upstream_r = upstream;
    thread::spawn(move || {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            match upstream_r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx
                        .send((Instant::now() + delay, buf[..n].to_vec()))
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    });
    let mut client_w = client;
    let mut frames = Frames::default();
    'chunks: for (due, chunk) in rx {
        wait_until(due);
        let Some(limit) = &limit else {
            if client_w.write_all(&chunk).is_err() {
                break;
            }
            continue;
        };
        for (piece, ok) in frames.push(&chunk) {
            if ok {
                wait_until(limit.slot());
            }
            if client_w.write_all(&piece).is_err() {
                break 'chunks;
            }
        }
    }
    let _ = client_w.shutdown(Shutdown::Both);
}

fn wait_until(due: Instant) {
    let now = Instant::now();
    if due > now {
        thread::sleep(due - now);
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
