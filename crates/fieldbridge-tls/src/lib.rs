//! TLS client settings, one way for every link that needs them (MQTT
//! brokers and the XMPP component link), so that both trust the same roots
//! and read their PEM files alike while never importing each other.
//!
//! rustls with the ring provider only (no aws-lc, no OpenSSL): the gateway
//! cross-compiles for aarch64/armv7 with a plain toolchain. The files are
//! read with [`fieldbridge_core::files`], each bounded in size and required
//! to be a regular file (a FIFO or `/dev/zero` must not hang the gateway).

use std::path::Path;
use std::sync::Arc;

use fieldbridge_core::files;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

pub use rustls;

/// The most a PEM file (`ca_file`, `client_cert`, `client_key`) may hold:
/// a whole system CA bundle is about 200 KiB.
pub const PEM_FILE_LIMIT: u64 = files::MIB;

/// Why TLS settings could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file the settings name: missing, unreadable, not a regular file,
    /// or too large.
    #[error("{what}: {source}{}", hint(source))]
    File {
        /// What the file is for (the key naming it).
        what: &'static str,
        /// Why, with the path.
        source: files::FileError,
    },
    /// Settings or file contents that rustls refuses.
    #[error("{0}")]
    Invalid(String),
}

fn hint(e: &files::FileError) -> &'static str {
    match e.problem() {
        files::Problem::TooLarge(_) => ": is this a PEM file?",
        _ => "",
    }
}

/// A client certificate and its key, both PEM files.
#[derive(Debug, Clone, Copy)]
pub struct ClientAuth<'a> {
    /// `client_cert`: the certificate chain.
    pub cert: &'a Path,
    /// `client_key`: its private key.
    pub key: &'a Path,
}

fn read_pem(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    files::read_limited(path, PEM_FILE_LIMIT).map_err(|source| TlsError::File { what, source })
}

fn certs(what: &str, path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let mut pem = pem;
    rustls_pemfile::certs(&mut pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Invalid(format!("{what} {}: {e}", path.display())))
}

/// The roots to trust: the certificates in `ca_file`, or the system's.
pub fn roots(ca_file: Option<&Path>) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let pem = read_pem("ca_file", path)?;
            let found = certs("ca_file", path, &pem)?;
            if found.is_empty() {
                return Err(TlsError::Invalid(format!(
                    "ca_file {} holds no PEM certificate",
                    path.display()
                )));
            }
            for c in found {
                roots
                    .add(c)
                    .map_err(|e| TlsError::Invalid(format!("ca_file {}: {e}", path.display())))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(TlsError::Invalid(
                    "no system root certificates found (install ca-certificates, or set ca_file)"
                        .into(),
                ));
            }
        }
    }
    Ok(roots)
}

/// A rustls client configuration with the ring provider: trusting
/// `ca_file` (or the system's roots), presenting `client` if given. No
/// ALPN protocol is offered; a caller that needs one sets it.
pub fn client_config(
    ca_file: Option<&Path>,
    client: Option<ClientAuth<'_>>,
) -> Result<rustls::ClientConfig, TlsError> {
    let roots = roots(ca_file)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Invalid(e.to_string()))?
        .with_root_certificates(roots);
    match client {
        Some(ClientAuth { cert, key }) => {
            let pem = read_pem("client_cert", cert)?;
            let chain = certs("client_cert", cert, &pem)?;
            let pem = read_pem("client_key", key)?;
            let key_der: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut pem.as_slice())
                .map_err(|e| TlsError::Invalid(format!("client_key {}: {e}", key.display())))?
                .ok_or_else(|| {
                    TlsError::Invalid(format!("client_key {} holds no PEM key", key.display()))
                })?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| TlsError::Invalid(e.to_string()))
        }
        None => Ok(builder.with_no_client_auth()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_must_be_a_regular_file_with_a_certificate() {
        let err = client_config(Some(Path::new("/dev/zero")), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "ca_file: /dev/zero is a character device, not a regular file"
        );
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = client_config(Some(&empty), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("ca_file {} holds no PEM certificate", empty.display())
        );
    }
}
