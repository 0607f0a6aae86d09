//! Is a relay answering on `127.0.0.1:PORT`? A NIP-11 request, else a WebSocket upgrade
//! (some relays serve no NIP-11 document). Plain blocking sockets: starting a relay is
//! synchronous and runs before any load starts.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Answers larger than this are not a NIP-11 document or an upgrade response we wait for.
const MAX_ANSWER_BYTES: usize = 256 << 10;
/// The RFC 6455 sample key and the accept value a WebSocket server must derive from it.
const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const WS_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// Why a probe failed: nothing to connect to yet, or something answered but not as a relay.
#[derive(Debug)]
pub(super) enum Miss {
    Connect(String),
    Answer(String),
}

/// `Ok` when the relay answers NIP-11 (200 with a JSON object) or accepts a WebSocket
/// upgrade (101). `budget` bounds each of the two attempts.
pub(super) fn ready(port: u16, budget: Duration) -> Result<(), String> {
    let nip11_miss = match nip11(port, budget) {
        Ok(()) => return Ok(()),
        Err(Miss::Connect(e)) => return Err(format!("connect: {e}")),
        Err(Miss::Answer(e)) => e,
    };
    match upgrade(port, budget) {
        Ok(()) => Ok(()),
        Err(Miss::Connect(e) | Miss::Answer(e)) => {
            Err(format!("NIP-11: {nip11_miss}; WebSocket upgrade: {e}"))
        }
    }
}

/// A NIP-11 GET: 200 with a JSON object as the body.
pub(super) fn nip11(port: u16, budget: Duration) -> Result<(), Miss> {
    let request = format!(
        "GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: application/nostr+json\r\n\
         Connection: close\r\n\r\n"
    );
    let answer = exchange(port, &request, budget, |a| nip11_verdict(a).is_ok())?;
    nip11_verdict(&answer).map_err(Miss::Answer)
}

/// A WebSocket opening handshake: 101 with the accept value for our key. The socket is then
/// dropped; relays log at most a closed connection.
fn upgrade(port: u16, budget: Duration) -> Result<(), Miss> {
    let request = format!(
        "GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    let answer = exchange(port, &request, budget, |a| head(a).is_some())?;
    upgrade_verdict(&answer).map_err(Miss::Answer)
}

/// Sends `request` and reads until `done` says the answer is complete, the peer closes, or
/// `budget` runs out (servers that keep the connection open despite `Connection: close`).
fn exchange(
    port: u16,
    request: &str,
    budget: Duration,
    done: impl Fn(&[u8]) -> bool,
) -> Result<Vec<u8>, Miss> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let budget = budget.max(Duration::from_millis(10));
    let deadline = Instant::now() + budget;
    let mut stream =
        TcpStream::connect_timeout(&addr, budget).map_err(|e| Miss::Connect(e.to_string()))?;
    let answer_err = |e: std::io::Error| Miss::Answer(e.to_string());
    stream.set_write_timeout(Some(budget)).map_err(answer_err)?;
    stream.write_all(request.as_bytes()).map_err(answer_err)?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    while !done(&answer) && answer.len() < MAX_ANSWER_BYTES {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        stream.set_read_timeout(Some(left)).map_err(answer_err)?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // A reset after a partial answer still leaves the answer to judge.
            Err(_) if !answer.is_empty() => break,
            Err(e) => return Err(Miss::Answer(format!("read: {e}"))),
        }
    }
    Ok(answer)
}

/// The head of an HTTP answer.
struct Head {
    status: u16,
    /// Names in lower case.
    headers: Vec<(String, String)>,
    /// Where the body starts.
    body_at: usize,
}

/// The status code and headers, once the whole head has arrived.
fn head(answer: &[u8]) -> Option<Head> {
    let end = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
    let text = String::from_utf8_lossy(&answer[..end]);
    let mut lines = text.split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some(Head {
        status,
        headers,
        body_at: end + 4,
    })
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn nip11_verdict(answer: &[u8]) -> Result<(), String> {
    let Head {
        status,
        headers,
        body_at,
    } = head(answer).ok_or_else(|| incomplete(answer))?;
    if status != 200 {
        return Err(format!("HTTP status {status}, expected 200"));
    }
    let raw = &answer[body_at..];
    let chunked = header(&headers, "transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        dechunk(raw).ok_or("incomplete chunked body")?
    } else {
        raw.to_vec()
    };
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(v) if v.is_object() => Ok(()),
        Ok(_) => Err("the NIP-11 body is JSON but not an object".to_string()),
        Err(e) => Err(format!("the NIP-11 body is not JSON ({e})")),
    }
}

fn upgrade_verdict(answer: &[u8]) -> Result<(), String> {
    let Head {
        status, headers, ..
    } = head(answer).ok_or_else(|| incomplete(answer))?;
    if status != 101 {
        return Err(format!("HTTP status {status}, expected 101"));
    }
    match header(&headers, "sec-websocket-accept") {
        Some(WS_ACCEPT) => Ok(()),
        other => Err(format!("101 with Sec-WebSocket-Accept {other:?}")),
    }
}

fn incomplete(answer: &[u8]) -> String {
    if answer.is_empty() {
        return "connected, but no answer".to_string();
    }
    let first = String::from_utf8_lossy(&answer[..answer.len().min(80)]).into_owned();
    format!("incomplete HTTP answer starting {first:?}")
}

/// The body of a complete `Transfer-Encoding: chunked` message, or `None` if it is cut short.
fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&raw[..line_end]).ok()?;
        let size_hex = size_text.split(';').next()?.trim();
        let size = usize::from_str_radix(size_hex, 16).ok()?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(raw.get(..size)?);
        raw = raw.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nip11_verdict_reads_plain_and_chunked_bodies() {
        let plain =
            b"HTTP/1.1 200 OK\r\nContent-Type: application/nostr+json\r\n\r\n{\"name\":\"r\"}";
        assert_eq!(nip11_verdict(plain), Ok(()));
        let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
                        5\r\n{\"a\":\r\n3\r\n1}\n\r\n0\r\n\r\n";
        assert_eq!(nip11_verdict(chunked), Ok(()));
        let cut = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":";
        assert!(nip11_verdict(cut)
            .unwrap_err()
            .contains("incomplete chunked"));
        let html = b"HTTP/1.1 200 OK\r\n\r\n<html>nostr relay</html>";
        assert!(nip11_verdict(html).unwrap_err().contains("not JSON"));
        let array = b"HTTP/1.1 200 OK\r\n\r\n[1]";
        assert!(nip11_verdict(array).unwrap_err().contains("not an object"));
        let wrong = b"HTTP/1.1 404 Not Found\r\n\r\n{}";
        assert!(nip11_verdict(wrong).unwrap_err().contains("404"));
        assert!(nip11_verdict(b"").unwrap_err().contains("no answer"));
    }

    #[test]
    fn upgrade_verdict_wants_101_and_the_right_accept() {
        let good = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Accept: {WS_ACCEPT}\r\n\r\n"
        );
        assert_eq!(upgrade_verdict(good.as_bytes()), Ok(()));
        let bad = b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: x\r\n\r\n";
        assert!(upgrade_verdict(bad).unwrap_err().contains("Accept"));
        let refused = b"HTTP/1.1 400 Bad Request\r\n\r\n";
        assert!(upgrade_verdict(refused).unwrap_err().contains("400"));
    }

    #[test]
    fn ready_says_connect_when_nothing_listens() {
        // Bind then drop: the port is free and nothing answers on it.
        let port = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let err = ready(port, Duration::from_millis(200)).unwrap_err();
        assert!(err.starts_with("connect:"), "{err}");
    }
}
