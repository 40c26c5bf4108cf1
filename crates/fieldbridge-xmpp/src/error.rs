//! What can go wrong with the component, worded for the operator who has
//! to fix it.

use std::path::PathBuf;
use std::time::Duration;

/// What went wrong with the component: the connection (reaching the
/// server, the login, the stream) or its state directory.
///
/// Connection errors are not fatal to [`run`](crate::run), which retries with backoff
/// and logs them; they are typed so that the log says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum XmppError {
    /// The server's component port could not be reached.
    #[error("cannot reach the XMPP server at {server}: {source}")]
    Connect {
        /// host:port
        server: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The TLS link could not be set up: the CA file, or a handshake the
    /// server or rustls refused. The gateway never falls back to clear text.
    #[error(
        "TLS to the XMPP server at {server} failed: {reason} (its certificate is checked \
         for {name} against {trusted}); not falling back to clear text"
    )]
    Tls {
        /// host:port
        server: String,
        /// The name the certificate must cover.
        name: String,
        /// What the certificate is checked against (`ca_file` or the
        /// system's roots).
        trusted: String,
        /// What went wrong.
        reason: String,
        /// The settings are wrong (the CA file, a certificate rustls
        /// refuses, a port that does not speak TLS): retrying will not fix it.
        misconfigured: bool,
    },
    /// Connecting and logging in took too long.
    #[error("no answer from the XMPP server at {server} within {after:?}")]
    Timeout {
        /// host:port
        server: String,
        /// How long we waited.
        after: Duration,
    },
    /// The server refused the secret (`<not-authorized/>`).
    #[error(
        "the server refused the component secret for {domain} (not-authorized): \
         check component_secret on the server against the gateway's secret"
    )]
    NotAuthorized {
        /// The component domain.
        domain: String,
    },
    /// Another process is connected as this component (`<conflict/>`).
    #[error(
        "another process is already connected as component {domain} (conflict): \
         is a second gateway running?"
    )]
    Conflict {
        /// The component domain.
        domain: String,
    },
    /// The server does not serve this component domain.
    #[error("the server has no component {domain} (host-unknown): declare it, see deploy/")]
    HostUnknown {
        /// The component domain.
        domain: String,
    },
    /// Any other stream error or protocol surprise.
    #[error("XMPP stream as {domain}: {reason}")]
    Protocol {
        /// The component domain.
        domain: String,
        /// What happened.
        reason: String,
    },
    /// Reading or writing the established stream failed.
    #[error("XMPP stream I/O: {0}")]
    Io(#[source] std::io::Error),
    /// The state directory cannot be used.
    #[error("state in {dir}: {source}")]
    State {
        /// The directory.
        dir: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

impl XmppError {
    /// Failures that retrying will not fix without someone changing a setting.
    pub fn needs_operator(&self) -> bool {
        matches!(
            self,
            XmppError::NotAuthorized { .. }
                | XmppError::HostUnknown { .. }
                | XmppError::Tls {
                    misconfigured: true,
                    ..
                }
        )
    }
}

/// Logs a failed connection attempt: each distinct failure loudly once,
/// then quietly while it lasts.
pub(crate) fn log_connect_error(e: &XmppError, last: &mut Option<String>, delay: Duration) {
    let text = e.to_string();
    // Say each distinct failure loudly once, then quietly while it lasts.
    if last.as_deref() != Some(&text) {
        if e.needs_operator() {
            tracing::error!(error = %text, retry_in = ?delay, "cannot connect to the XMPP server");
        } else {
            tracing::warn!(error = %text, retry_in = ?delay, "cannot connect to the XMPP server");
        }
        *last = Some(text);
    } else {
        tracing::debug!(error = %text, retry_in = ?delay, "still cannot connect");
    }
}
