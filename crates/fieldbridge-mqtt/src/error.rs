//! Why an MQTT connection cannot be set up: the files its settings name,
//! and TLS settings rustls refuses. Found when the adapter starts; the
//! devices then go offline with this reason.

use fieldbridge_core::files;

/// Why the adapter could not set up its connection.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    /// A file named in the configuration (password, CA, certificate, key):
    /// missing, unreadable, not a regular file, or too large.
    #[error("{what}: {source}{}", hint(what, source))]
    File {
        /// What the file is for (the key naming it).
        what: &'static str,
        /// Why, with the path.
        source: fieldbridge_core::files::FileError,
    },
    /// TLS settings that rustls refuses.
    #[error("TLS: {0}")]
    Tls(String),
}

fn hint(what: &str, e: &files::FileError) -> &'static str {
    match (what, e.problem()) {
        ("password_file", files::Problem::TooLarge(_)) => ": is this the password?",
        (_, files::Problem::TooLarge(_)) => ": is this a PEM file?",
        _ => "",
    }
}

impl From<fieldbridge_tls::TlsError> for MqttError {
    fn from(e: fieldbridge_tls::TlsError) -> Self {
        match e {
            fieldbridge_tls::TlsError::File { what, source } => MqttError::File { what, source },
            fieldbridge_tls::TlsError::Invalid(why) => MqttError::Tls(why),
        }
    }
}
