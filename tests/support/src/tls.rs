//! TLS in front of a real relay for the `wss://` tests: a test CA and a server certificate
//! made here (rcgen), and nginx (Debian's, installed by `scripts/install-relays`)
//! terminating TLS on a free loopback port and proxying the WebSocket to the relay. nginx
//! runs in the foreground in its own temporary prefix and is stopped when dropped; a
//! missing nginx fails the test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

/// A CA and a server certificate it signed for `names`, as PEM files in `dir`: `ca.pem`,
/// `server.pem`, `server.key`.
pub struct Certs {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn certs(dir: &Path, names: &[&str]) -> Certs {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "lt test CA");
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let key = KeyPair::generate().expect("server key");
    let params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
        .expect("server params");
    let cert = params
        .signed_by(&key, &ca, &ca_key)
        .expect("server certificate");
    let out = Certs {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    };
    std::fs::write(&out.ca, ca.pem()).unwrap();
    std::fs::write(&out.cert, cert.pem()).unwrap();
    std::fs::write(&out.key, key.serialize_pem()).unwrap();
    out
}

/// nginx on `127.0.0.1:port` with TLS, proxying WebSocket traffic to `upstream_port`.
pub struct Nginx {
    pub port: u16,
    child: Child,
    _prefix: tempfile::TempDir,
}

fn nginx_binary() -> PathBuf {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .expect("nginx not installed: run scripts/install-relays (it installs Debian's nginx)")
}

impl Nginx {
    pub fn start(certs: &Certs, upstream_port: u16) -> Nginx {
        let prefix = tempfile::Builder::new()
            .prefix("lt-nginx-")
            .tempdir()
            .expect("nginx prefix");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let p = prefix.path().display();
        let conf = format!(
            "worker_processes 1;\n\
             worker_rlimit_nofile 8192;\n\
             error_log {p}/error.log warn;\n\
             pid {p}/nginx.pid;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n\
               access_log off;\n\
               client_body_temp_path {p}/body;\n\
               proxy_temp_path {p}/proxy;\n\
               fastcgi_temp_path {p}/fastcgi;\n\
               uwsgi_temp_path {p}/uwsgi;\n\
               scgi_temp_path {p}/scgi;\n\
               server {{\n\
                 listen 127.0.0.1:{port} ssl;\n\
                 ssl_certificate {cert};\n\
                 ssl_certificate_key {key};\n\
                 location / {{\n\
                   proxy_pass http://127.0.0.1:{upstream_port};\n\
                   proxy_http_version 1.1;\n\
                   proxy_set_header Upgrade $http_upgrade;\n\
                   proxy_set_header Connection \"upgrade\";\n\
                   proxy_set_header Host $host;\n\
                   proxy_set_header Accept $http_accept;\n\
                   proxy_buffering off;\n\
                   proxy_read_timeout 300s;\n\
                 }}\n\
               }}\n\
             }}\n",
            cert = certs.cert.display(),
            key = certs.key.display(),
        );
        let conf_path = prefix.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(nginx_binary())
            .arg("-p")
            .arg(prefix.path())
            .arg("-c")
            .arg(&conf_path)
            .args(["-g", "daemon off; master_process on;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start nginx");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx not listening on {port}: {}",
                std::fs::read_to_string(prefix.path().join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Nginx {
            port,
            child,
            _prefix: prefix,
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGQUIT: a graceful stop of nginx and its workers.
        // SAFETY: kill(2) on the nginx master this helper started.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGQUIT) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
