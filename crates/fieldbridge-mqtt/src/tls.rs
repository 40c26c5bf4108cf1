//! TLS for `mqtts://`: rustls with the system's roots or `ca_file`, and a
//! client certificate if the settings name one. The files are read when
//! the adapter starts, each bounded in size and required to be a regular
//! file (a FIFO or `/dev/zero` must not hang or exhaust the gateway).

use std::sync::Arc;

use fieldbridge_core::files;

use crate::config::MqttConnection;
use crate::error::MqttError;

/// The most a PEM file (`ca_file`, `client_cert`, `client_key`) may hold:
/// a whole system CA bundle is about 200 KiB.
pub const PEM_FILE_LIMIT: u64 = files::MIB;
/// The most `password_file` may hold.
pub const PASSWORD_FILE_LIMIT: u64 = 4 * files::KIB;

fn read_file(what: &'static str, path: &std::path::Path) -> Result<Vec<u8>, MqttError> {
    files::read_limited(path, PEM_FILE_LIMIT).map_err(|source| MqttError::File { what, source })
}

/// rustls with the ring provider: the system's roots or `ca_file`, and
/// the client certificate if there is one.
pub(crate) fn tls_config(settings: &MqttConnection) -> Result<rustls::ClientConfig, MqttError> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let tls = |e: String| MqttError::Tls(e);
    let mut roots = rustls::RootCertStore::empty();
    match &settings.ca_file {
        Some(path) => {
            let pem = read_file("ca_file", path)?;
            let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut pem.as_slice())
                .collect::<Result<_, _>>()
                .map_err(|e| tls(format!("ca_file {}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(tls(format!(
                    "ca_file {} holds no PEM certificate",
                    path.display()
                )));
            }
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| tls(format!("ca_file {}: {e}", path.display())))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(tls(
                    "no system root certificates found (install ca-certificates, or set ca_file)"
                        .into(),
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(e.to_string()))?
        .with_root_certificates(roots);
    match (&settings.client_cert, &settings.client_key) {
        (Some(cert), Some(key)) => {
            let pem = read_file("client_cert", cert)?;
            let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut pem.as_slice())
                .collect::<Result<_, _>>()
                .map_err(|e| tls(format!("client_cert {}: {e}", cert.display())))?;
            let pem = read_file("client_key", key)?;
            let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut pem.as_slice())
                .map_err(|e| tls(format!("client_key {}: {e}", key.display())))?
                .ok_or_else(|| tls(format!("client_key {} holds no PEM key", key.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| tls(e.to_string()))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn tls_files_must_be_regular_pem_files_of_sane_size() {
        let tls = |extra: serde_json::Value| -> MqttConnection {
            let mut v = json!({ "url": "mqtts://127.0.0.1" });
            v.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            serde_json::from_value(v).unwrap()
        };
        let err = tls_config(&tls(json!({ "ca_file": "/dev/zero" }))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "ca_file: /dev/zero is a character device, not a regular file"
        );
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.pem");
        std::fs::write(&big, vec![b'x'; 1024 * 1024 + 1]).unwrap();
        let err = tls_config(&tls(json!({ "ca_file": big }))).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "ca_file: {} is larger than 1 MiB: is this a PEM file?",
                big.display()
            )
        );
        let err = tls_config(&tls(
            json!({ "client_cert": dir.path(), "client_key": dir.path() }),
        ))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "client_cert: {} is a directory, not a regular file",
                dir.path().display()
            )
        );
    }
}
