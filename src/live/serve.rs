//! The HTTP side of `--metrics-listen`: `GET /metrics` answered on a thread of its own, so
//! a scraper (or a stalled one) never touches the replay's threads; the exposition is
//! encoded per request from the metrics' atomics.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::anyhow;

use super::LiveMetrics;

/// The content type of the text exposition format, version 0.0.4.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// lt's live metrics served at `http://ADDR/metrics` until dropped.
pub struct Server {
    addr: SocketAddr,
    metrics: Arc<LiveMetrics>,
    http: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "live metrics at http://{}/metrics", self.addr)
    }
}

impl Server {
    /// Listens on `addr` (port 0: any free port, see [`Server::addr`]).
    pub fn start(addr: SocketAddr) -> anyhow::Result<Server> {
        let http = tiny_http::Server::http(addr)
            .map_err(|e| anyhow!("--metrics-listen {addr}: cannot listen: {e}"))?;
        let addr = http
            .server_addr()
            .to_ip()
            .ok_or_else(|| anyhow!("--metrics-listen {addr}: not an IP socket"))?;
        let http = Arc::new(http);
        let metrics = Arc::new(LiveMetrics::new()?);
        let thread = std::thread::Builder::new()
            .name("lt-metrics".into())
            .spawn({
                let (http, metrics) = (http.clone(), metrics.clone());
                move || serve(&http, &metrics)
            })
            .map_err(|e| anyhow!("--metrics-listen {addr}: starting its thread: {e}"))?;
        Ok(Server {
            addr,
            metrics,
            http,
            thread: Some(thread),
        })
    }

    /// Where it listens (the port chosen when asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn metrics(&self) -> &Arc<LiveMetrics> {
        &self.metrics
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.http.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Answers requests until the server is unblocked. A client that goes away mid-answer is
/// its own loss, never the run's.
fn serve(http: &tiny_http::Server, metrics: &LiveMetrics) {
    for request in http.incoming_requests() {
        let path = request.url().split('?').next().unwrap_or("");
        let response = match (request.method(), path) {
            (tiny_http::Method::Get | tiny_http::Method::Head, "/metrics") => {
                match metrics.encode() {
                    Ok(text) => text_response(200, text, CONTENT_TYPE),
                    Err(e) => {
                        text_response(500, format!("encoding lt's metrics: {e}\n"), "text/plain")
                    }
                }
            }
            (_, "/metrics") => text_response(405, "GET /metrics\n".into(), "text/plain"),
            _ => text_response(404, "lt serves /metrics only\n".into(), "text/plain"),
        };
        let _ = request.respond(response);
    }
}

fn text_response(
    status: u16,
    body: String,
    content_type: &str,
) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let mut response = tiny_http::Response::from_string(body).with_status_code(status);
    if let Ok(header) = tiny_http::Header::from_bytes("Content-Type", content_type) {
        response.add_header(header);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_the_exposition_at_metrics_and_nothing_else() {
        let server = Server::start("127.0.0.1:0".parse().unwrap()).unwrap();
        server.metrics().run_started(7);
        let base = format!("http://{}", server.addr());
        let get = |path: &str| {
            ureq::get(&format!("{base}{path}"))
                .call()
                .map_err(|e| e.to_string())
                .and_then(|mut r| r.body_mut().read_to_string().map_err(|e| e.to_string()))
        };
        let text = get("/metrics").unwrap();
        assert!(text.lines().any(|l| l == "lt_run_records 7"), "{text}");
        assert!(get("/").unwrap_err().contains("404"));
        drop(server);
        assert!(get("/metrics").is_err());
    }

    #[test]
    fn an_address_in_use_is_refused_with_the_flag_and_the_address() {
        let first = Server::start("127.0.0.1:0".parse().unwrap()).unwrap();
        let err = Server::start(first.addr()).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("--metrics-listen {}: cannot listen", first.addr())),
            "{err}"
        );
    }
}
