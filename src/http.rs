//! The one HTTP client lt reads with (the NIP-11 preflight, `--scrape` endpoints): ureq over
//! rustls, connecting only to the addresses the guard checked (no second DNS lookup), over
//! https trusting the system's roots plus `--ca-file`, never following a redirect (a
//! redirect could point anywhere the guard never saw).

use std::path::PathBuf;
use std::time::Duration;

use crate::guard::Target;

/// A client for one checked target.
pub struct Client {
    agent: ureq::Agent,
}

impl Client {
    /// Every request gives up after `timeout` in all (connect, TLS, headers, body).
    pub fn new(target: &Target, ca_files: &[PathBuf], timeout: Duration) -> anyhow::Result<Client> {
        let mut config = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .max_redirects(0);
        if matches!(target.url().scheme(), "https" | "wss") {
            let roots = crate::tls::roots(ca_files)?;
            let certs: Vec<ureq::tls::Certificate<'static>> = roots
                .iter()
                .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
                .collect();
            config = config.tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
                    .build(),
            );
        }
        // ureq's `unversioned` resolver seam (pinned by Cargo.lock): no lookup of our own.
        let agent = ureq::Agent::with_parts(
            config.build(),
            ureq::unversioned::transport::DefaultConnector::new(),
            Checked(target.addrs().to_vec()),
        );
        Ok(Client { agent })
    }

    /// GETs `url` (on the client's target) and reads at most `max_bytes` of a 2xx answer's
    /// body as text; anything else is a one-line reason (`HTTP 401`, `timeout`, …).
    pub fn get_text(&self, url: &str, accept: &str, max_bytes: u64) -> Result<String, String> {
        let mut response = self
            .agent
            .get(url)
            .header("Accept", accept)
            .call()
            .map_err(|e| e.to_string())?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("HTTP {status}"));
        }
        response
            .body_mut()
            .with_config()
            .limit(max_bytes)
            .read_to_string()
            .map_err(|e| format!("reading the body: {e}"))
    }
}

/// Resolves every name to the addresses the guard checked: requests go to them and nowhere
/// else, with the URL's host in `Host` and as the TLS server name.
#[derive(Debug)]
struct Checked(Vec<std::net::SocketAddr>);

impl ureq::unversioned::resolver::Resolver for Checked {
    fn resolve(
        &self,
        _uri: &ureq::http::Uri,
        _config: &ureq::config::Config,
        _timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let mut out = self.empty();
        for addr in self.0.iter().take(16) {
            out.push(*addr);
        }
        if out.is_empty() {
            return Err(ureq::Error::HostNotFound);
        }
        Ok(out)
    }
}
