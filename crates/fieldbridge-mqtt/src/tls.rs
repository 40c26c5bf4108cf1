//! TLS for `mqtts://`: rustls with the system's roots or `ca_file`, and a
//! client certificate if the settings name one, set up by the shared
//! [`fieldbridge_tls`] (as the XMPP component link is). The files are read
//! when the adapter starts.

use fieldbridge_core::files;

use crate::config::MqttConnection;
use crate::error::MqttError;

pub use fieldbridge_tls::PEM_FILE_LIMIT;
/// The most `password_file` may hold.
pub const PASSWORD_FILE_LIMIT: u64 = 4 * files::KIB;

/// rustls with the ring provider: the system's roots or `ca_file`, and
/// the client certificate if there is one.
pub(crate) fn tls_config(settings: &MqttConnection) -> Result<rustls::ClientConfig, MqttError> {
    let client = match (&settings.client_cert, &settings.client_key) {
        (Some(cert), Some(key)) => Some(fieldbridge_tls::ClientAuth { cert, key }),
        _ => None,
    };
    Ok(fieldbridge_tls::client_config(
        settings.ca_file.as_deref(),
        client,
    )?)
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
