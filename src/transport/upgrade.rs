//! The client side of the WebSocket upgrade (RFC 6455 §4.1), done here rather than by
//! tungstenite's handshake, for memory: tungstenite reads the server's response into a
//! 4 KiB buffer and hands that buffer on as the connection's read buffer for good, so every
//! connection kept 4 KiB whatever `read_buffer_size` said. Here the response is read into a
//! small buffer that is dropped, and the connection starts with a read buffer of lt's size.
//! Framing after the upgrade is tungstenite's, as before.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;
use url::Url;

use super::stream::Stream;

/// A response head larger than this is not a relay's answer to an upgrade.
const MAX_HEAD: usize = 16 << 10;
const MAX_HEADERS: usize = 64;

/// The request line's target and the Host header's value for `url`.
fn request(url: &Url, key: &str) -> String {
    let mut target = url.path().to_owned();
    if let Some(q) = url.query() {
        target.push('?');
        target.push_str(q);
    }
    let host = url.host_str().unwrap_or_default();
    let host = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    format!(
        "GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n"
    )
}

/// Checks a complete response head against the key sent. The error says what was wrong.
fn check(response: &httparse::Response<'_, '_>, key: &str) -> Result<(), String> {
    let code = response.code.unwrap_or(0);
    if code != 101 {
        return Err(format!(
            "HTTP error: {code} {}",
            response.reason.unwrap_or_default()
        ));
    }
    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_owned())
    };
    if !header("Upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")) {
        return Err("the response's Upgrade header is not \"websocket\"".into());
    }
    if !header("Connection").is_some_and(|v| {
        v.split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
    }) {
        return Err("the response's Connection header does not say \"Upgrade\"".into());
    }
    if header("Sec-WebSocket-Accept").as_deref() != Some(derive_accept_key(key.as_bytes()).as_str())
    {
        return Err("Sec-WebSocket-Accept does not match the key sent".into());
    }
    Ok(())
}

/// Upgrades `stream` to a WebSocket for `url`. Bytes the server sent after its response
/// (a first frame) are kept for the WebSocket to read.
pub async fn upgrade(
    mut stream: Stream,
    url: &Url,
    config: WebSocketConfig,
) -> Result<WebSocketStream<Stream>, String> {
    let key = generate_key();
    stream
        .write_all(request(url, &key).as_bytes())
        .await
        .map_err(|e| format!("sending the upgrade request: {e}"))?;
    let mut head = Vec::with_capacity(512);
    loop {
        let read = stream
            .read_buf(&mut head)
            .await
            .map_err(|e| format!("reading the upgrade response: {e}"))?;
        if read == 0 {
            return Err(format!(
                "the server closed the connection {} bytes into its upgrade response",
                head.len()
            ));
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&head) {
            Ok(httparse::Status::Complete(len)) => {
                check(&response, &key)?;
                let rest = head[len..].to_vec();
                return Ok(WebSocketStream::from_partially_read(
                    stream,
                    rest,
                    Role::Client,
                    Some(config),
                )
                .await);
            }
            Ok(httparse::Status::Partial) if head.len() < MAX_HEAD => {}
            Ok(httparse::Status::Partial) => {
                return Err(format!(
                    "no end to the upgrade response's head in its first {MAX_HEAD} bytes"
                ))
            }
            Err(e) => return Err(format!("the upgrade response is not HTTP: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_names_the_path_query_and_host_with_a_port_only_when_given() {
        let r = request(
            &Url::parse("ws://127.0.0.1:7777/sub/path?x=1").unwrap(),
            "k",
        );
        assert!(
            r.starts_with("GET /sub/path?x=1 HTTP/1.1\r\nHost: 127.0.0.1:7777\r\n"),
            "{r}"
        );
        assert!(r.ends_with("Sec-WebSocket-Key: k\r\n\r\n"), "{r}");
        let r = request(&Url::parse("wss://relay.test/").unwrap(), "k");
        assert!(
            r.starts_with("GET / HTTP/1.1\r\nHost: relay.test\r\n"),
            "{r}"
        );
        let r = request(&Url::parse("ws://[::1]:80/").unwrap(), "k");
        assert!(r.contains("Host: [::1]\r\n"), "{r}");
    }

    fn parsed<'h, 'b>(
        head: &'b str,
        headers: &'h mut [httparse::Header<'b>],
    ) -> httparse::Response<'h, 'b> {
        let mut r = httparse::Response::new(headers);
        assert!(r.parse(head.as_bytes()).unwrap().is_complete());
        r
    }

    #[test]
    fn a_response_is_accepted_only_as_a_switch_to_websocket_for_this_key() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        // RFC 6455 §1.3's example.
        let good = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        let mut h = [httparse::EMPTY_HEADER; 8];
        assert_eq!(check(&parsed(good, &mut h), key), Ok(()));
        let cases = [
            (
                "HTTP/1.1 403 Forbidden\r\n\r\n",
                "HTTP error: 403 Forbidden",
            ),
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
                "Upgrade header",
            ),
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: close\r\n\r\n",
                "Connection header",
            ),
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: AAAA\r\n\r\n",
                "does not match",
            ),
        ];
        for (head, why) in cases {
            let mut h = [httparse::EMPTY_HEADER; 8];
            let err = check(&parsed(head, &mut h), key).unwrap_err();
            assert!(err.contains(why), "{head:?}: {err}");
        }
    }
}
