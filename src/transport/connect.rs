//! Opening a client connection: TCP (from a chosen source address when there are some),
//! TLS for `wss://`, then the WebSocket upgrade, each phase timed; used for replay's first
//! connections, every reconnect and reconciliation, and for `record`'s upstreams.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::WebSocketStream;

use super::stream::Stream;
use crate::guard::Target;

pub type Ws = WebSocketStream<Stream>;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

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

/// Why a connection attempt failed. The text is what results rows and messages show; the
/// variant is what a caller decides by (a certificate the client does not accept fails
/// every connection alike, so a replay stops before any load).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConnectError {
    /// The TCP socket or its connect: refused, unreachable, out of local ports.
    #[error("{0}")]
    Tcp(String),
    /// The TLS handshake with `host` (or `host` is no server name).
    #[error("TLS with {host}: {why}")]
    Tls { host: String, why: String },
    #[error("WebSocket handshake: {0}")]
    Upgrade(String),
    #[error("connect to {addr} timed out after {after:?}{}", if *.in_tls { " (TLS handshake)" } else { "" })]
    Timeout {
        addr: SocketAddr,
        after: Duration,
        /// TCP was up and the TLS handshake was not done.
        in_tls: bool,
    },
}

impl ConnectError {
    /// The TLS handshake failed (not a timeout during it).
    pub fn is_tls(&self) -> bool {
        matches!(self, ConnectError::Tls { .. })
    }
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
async fn tcp_connect(target: &Target, addr: SocketAddr, conn: u32) -> Result<TcpStream, String> {
    let out_of_ports = |e: &std::io::Error, from: &str| {
        if e.kind() == std::io::ErrorKind::AddrNotAvailable {
            format!(
                "TCP connect to {addr}{from}: {e} (no local port left toward this address: spread connections over more --source-addr)"
            )
        } else {
            format!("TCP connect to {addr}{from}: {e}")
        }
    };
    let sources = target.sources();
    let Some(source) = (!sources.is_empty()).then(|| sources[conn as usize % sources.len()]) else {
        return TcpStream::connect(addr)
            .await
            .map_err(|e| out_of_ports(&e, ""));
    };
    let from = format!(" from {source}");
    let socket = match (source, addr) {
        (IpAddr::V4(_), SocketAddr::V4(_)) => tokio::net::TcpSocket::new_v4(),
        (IpAddr::V6(_), SocketAddr::V6(_)) => tokio::net::TcpSocket::new_v6(),
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
        .bind(SocketAddr::new(source, 0))
        .map_err(|e| out_of_ports(&e, &from))?;
    socket
        .connect(addr)
        .await
        .map_err(|e| out_of_ports(&e, &from))
}

/// Opens connection `conn` to an address the guard checked (never resolving again), with
/// `TCP_NODELAY` on (Nagle would add ~40 ms to small frames); for `wss://`, TLS with the
/// URL's host as the server name. Times each phase.
pub async fn connect(target: &Target, conn: u32) -> (Result<Ws, ConnectError>, Phases) {
    let addr = target.addrs()[conn as usize % target.addrs().len()];
    let mut phases = Phases::default();
    let attempt = async {
        let t = std::time::Instant::now();
        let tcp = tcp_connect(target, addr, conn)
            .await
            .map_err(ConnectError::Tcp)?;
        phases.tcp_ns = Some(t.elapsed().as_nanos() as u64);
        tcp.set_nodelay(true)
            .map_err(|e| ConnectError::Tcp(format!("TCP_NODELAY: {e}")))?;
        let stream = match target.tls() {
            None => Stream::Plain(tcp),
            Some(config) => {
                let host = target.url().host_str().unwrap_or_default();
                let tls_error = |why: String| ConnectError::Tls {
                    host: host.to_owned(),
                    why,
                };
                let name = rustls::pki_types::ServerName::try_from(host.to_owned())
                    .map_err(|e| tls_error(format!("not a server name ({e})")))?;
                let t = std::time::Instant::now();
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| tls_error(crate::tls::why(host, &e)))?;
                phases.tls_ns = Some(t.elapsed().as_nanos() as u64);
                Stream::Tls(Box::new(tls))
            }
        };
        let t = std::time::Instant::now();
        let ws = super::upgrade::upgrade(stream, target.url(), ws_config())
            .await
            .map_err(ConnectError::Upgrade)?;
        phases.upgrade_ns = Some(t.elapsed().as_nanos() as u64);
        Ok(ws)
    };
    let result = match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
        Ok(r) => r,
        Err(_) => Err(ConnectError::Timeout {
            addr,
            after: CONNECT_TIMEOUT,
            in_tls: phases.tcp_ns.is_some() && target.tls().is_some() && phases.tls_ns.is_none(),
        }),
    };
    (result, phases)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The texts results rows carry, unchanged by the error's type.
    #[test]
    fn each_error_says_what_it_said_as_text() {
        let tls = ConnectError::Tls {
            host: "relay.test".into(),
            why: "certificate expired".into(),
        };
        assert_eq!(tls.to_string(), "TLS with relay.test: certificate expired");
        assert!(tls.is_tls());
        let timeout = |in_tls| ConnectError::Timeout {
            addr: "127.0.0.1:7777".parse().unwrap(),
            after: CONNECT_TIMEOUT,
            in_tls,
        };
        assert_eq!(
            timeout(true).to_string(),
            "connect to 127.0.0.1:7777 timed out after 10s (TLS handshake)"
        );
        assert!(!timeout(true).is_tls());
        assert_eq!(
            timeout(false).to_string(),
            "connect to 127.0.0.1:7777 timed out after 10s"
        );
        assert_eq!(
            ConnectError::Upgrade("HTTP error: 403 Forbidden".into()).to_string(),
            "WebSocket handshake: HTTP error: 403 Forbidden"
        );
        assert!(!ConnectError::Tcp("TCP connect to x: refused".into()).is_tls());
    }
}
