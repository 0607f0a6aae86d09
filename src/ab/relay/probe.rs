//! Is a relay answering on `127.0.0.1:PORT`? A NIP-11 request (the same HTTP client as the
//! preflight's), else a WebSocket upgrade (some relays serve no NIP-11 document). Blocking:
//! starting a relay is synchronous and runs before any load starts.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// Why a probe failed: nothing to connect to yet, or something answered but not as a relay.
#[derive(Debug)]
pub(super) enum Miss {
    Connect(String),
    Answer(String),
}

/// `Ok` when the relay answers NIP-11 (200 with a JSON object) or accepts a WebSocket
/// upgrade (101); a build that listens with TLS (`tls`) must accept a WebSocket upgrade
/// over TLS for `localhost` with its CA. `budget` bounds each attempt.
pub(super) fn ready(
    port: u16,
    budget: Duration,
    tls: Option<&std::sync::Arc<rustls::ClientConfig>>,
) -> Result<(), String> {
    if let Some(config) = tls {
        return match tls_upgrade(port, budget, config) {
            Ok(()) => Ok(()),
            Err(Miss::Connect(e)) => Err(format!("connect: {e}")),
            Err(Miss::Answer(e)) => Err(format!("WebSocket upgrade over TLS: {e}")),
        };
    }
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
    let budget = budget.max(Duration::from_millis(10));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(budget))
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let response = agent
        .get(&format!("http://127.0.0.1:{port}/"))
        .header("Accept", "application/nostr+json")
        .call();
    let mut response = match response {
        Ok(r) => r,
        Err(ureq::Error::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return Err(Miss::Connect(e.to_string()))
        }
        Err(ureq::Error::ConnectionFailed) => {
            return Err(Miss::Connect("connection failed".into()))
        }
        Err(e) => return Err(Miss::Answer(e.to_string())),
    };
    let status = response.status();
    if status != 200 {
        return Err(Miss::Answer(format!("HTTP status {status}, expected 200")));
    }
    let body = response
        .body_mut()
        .with_config()
        .limit(256 << 10)
        .read_to_string()
        .map_err(|e| Miss::Answer(format!("reading the NIP-11 body: {e}")))?;
    crate::nip11::Document::parse(&body)
        .map(|_| ())
        .map_err(|e| Miss::Answer(format!("the NIP-11 body is {e}")))
}

/// A WebSocket opening handshake (tungstenite's client): 101 with the right accept value.
/// The socket is then dropped; relays log at most a closed connection.
fn upgrade(port: u16, budget: Duration) -> Result<(), Miss> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let budget = budget.max(Duration::from_millis(10));
    let stream =
        TcpStream::connect_timeout(&addr, budget).map_err(|e| Miss::Connect(e.to_string()))?;
    let answer = |e: std::io::Error| Miss::Answer(e.to_string());
    stream.set_read_timeout(Some(budget)).map_err(answer)?;
    stream.set_write_timeout(Some(budget)).map_err(answer)?;
    tokio_tungstenite::tungstenite::client(format!("ws://127.0.0.1:{port}/"), stream)
        .map(|_| ())
        .map_err(|e| Miss::Answer(e.to_string()))
}

/// A TLS handshake for `localhost` (the build's CA in `config`), then a WebSocket opening
/// handshake over it.
fn tls_upgrade(
    port: u16,
    budget: Duration,
    config: &std::sync::Arc<rustls::ClientConfig>,
) -> Result<(), Miss> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let budget = budget.max(Duration::from_millis(10));
    let tcp =
        TcpStream::connect_timeout(&addr, budget).map_err(|e| Miss::Connect(e.to_string()))?;
    let answer = |e: std::io::Error| Miss::Answer(e.to_string());
    tcp.set_read_timeout(Some(budget)).map_err(answer)?;
    tcp.set_write_timeout(Some(budget)).map_err(answer)?;
    let name = rustls::pki_types::ServerName::try_from("localhost")
        .map_err(|e| Miss::Answer(e.to_string()))?;
    let conn = rustls::ClientConnection::new(config.clone(), name)
        .map_err(|e| Miss::Answer(e.to_string()))?;
    let stream = rustls::StreamOwned::new(conn, tcp);
    tokio_tungstenite::tungstenite::client(format!("wss://localhost:{port}/"), stream)
        .map(|_| ())
        .map_err(|e| Miss::Answer(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_says_connect_when_nothing_listens() {
        // Bind then drop: the port is free and nothing answers on it.
        let port = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let err = ready(port, Duration::from_millis(200), None).unwrap_err();
        assert!(err.starts_with("connect:"), "{err}");
    }

    #[test]
    fn a_server_that_is_not_a_relay_is_named_as_such() {
        // A listener that answers plain HTTP 404 to everything.
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for s in listener.incoming().take(2) {
                use std::io::{Read, Write};
                let mut s = s.unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ = s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
            }
        });
        let err = ready(port, Duration::from_secs(2), None).unwrap_err();
        assert!(err.contains("NIP-11: HTTP status 404"), "{err}");
        assert!(err.contains("WebSocket upgrade"), "{err}");
    }
}
