//! TLS for `wss://` targets, through rustls: the system's root certificates plus the CA
//! files the user names (`--ca-file`, a staging CA or a self-signed certificate). The server
//! name checked is the URL's host; the TCP connection goes to the address the guard checked.
//! There is no way to turn certificate checks off.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

/// The client configuration: system roots (when the system has any) and every certificate
/// in `ca_files`. A CA file that cannot be read, or holds no certificate, is an error that
/// names it.
pub fn client_config(ca_files: &[PathBuf]) -> anyhow::Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    // The system's roots: missing or unreadable ones only narrow what is trusted.
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    for file in ca_files {
        let certs = ca_file(file)?;
        for cert in certs {
            roots.add(cert).map_err(|e| {
                anyhow::anyhow!(
                    "--ca-file {}: not a usable certificate: {e}",
                    file.display()
                )
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow::anyhow!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The roots [`client_config`] trusts, as DER: the system's, then every certificate in
/// `ca_files` (for clients that build their own configuration, such as the NIP-11 fetch).
pub fn roots(ca_files: &[PathBuf]) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let mut out = rustls_native_certs::load_native_certs().certs;
    for file in ca_files {
        out.extend(ca_file(file)?);
    }
    Ok(out)
}

/// Every certificate in a PEM file.
fn ca_file(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| anyhow::anyhow!("--ca-file {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("--ca-file {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(anyhow::anyhow!(
            "--ca-file {}: no PEM certificate in it",
            path.display()
        ));
    }
    Ok(certs)
}

/// Why a TLS handshake with `host` failed, in words a user acts on (the transport puts
/// "TLS with HOST: " before it).
pub fn why(host: &str, e: &std::io::Error) -> String {
    use rustls::{CertificateError, Error};
    let inner = e.get_ref().and_then(|inner| inner.downcast_ref::<Error>());
    let what = match inner {
        Some(Error::InvalidCertificate(CertificateError::UnknownIssuer)) => {
            "certificate from an unknown issuer (a staging CA? pass it with --ca-file)".to_owned()
        }
        Some(Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        )) => format!("certificate not valid for the name {host}"),
        Some(Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        )) => "certificate expired".to_owned(),
        Some(Error::InvalidCertificate(
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
        )) => "certificate not valid yet".to_owned(),
        Some(other) => other.to_string(),
        None => e.to_string(),
    };
    what
}
