//! A real node_exporter (Debian's `prometheus-node-exporter`, installed by
//! `scripts/install-relays`) on a loopback port of its own, and the plain HTTP GET that reads
//! an exposition: for the scrape tests and the scrape benchmark.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A program from one of Debian's packages that `scripts/install-relays` installs; the
/// test fails, naming the script and the package, when it is missing.
pub fn debian_binary(path: &str, package: &str) -> PathBuf {
    let path = PathBuf::from(path);
    assert!(
        path.is_file(),
        "{} not found: run scripts/install-relays (it installs Debian's {package})",
        path.display()
    );
    path
}

/// A loopback port free now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A node_exporter on a loopback port of its own, stopped on drop.
pub struct NodeExporter {
    child: Child,
    pub url: String,
}

impl NodeExporter {
    pub fn start() -> NodeExporter {
        let port = free_port();
        let child = Command::new(debian_binary(
            "/usr/bin/prometheus-node-exporter",
            "prometheus-node-exporter",
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start node_exporter");
        let url = format!("http://127.0.0.1:{port}/metrics");
        let deadline = Instant::now() + Duration::from_secs(15);
        while http_get(&url).is_none() {
            assert!(
                Instant::now() < deadline,
                "node_exporter did not answer on {url}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        NodeExporter { child, url }
    }
}

impl Drop for NodeExporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP GET's body, when the answer is 200.
pub fn http_get(url: &str) -> Option<String> {
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_once('/').map_or((rest, "/"), |(h, p)| (h, p));
    let mut s = std::net::TcpStream::connect(host).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    // A Go server answers an HTTP/1.0 request as HTTP/1.0.
    (head.split_whitespace().nth(1) == Some("200")).then(|| body.to_owned())
}
