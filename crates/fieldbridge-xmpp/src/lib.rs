//! fieldbridge's XMPP side: a XEP-0114 component that gives every device a
//! JID with presence and a pubsub node.

pub mod config;

pub use config::{AccessConfig, XmppConfig};

use std::path::PathBuf;
use std::sync::Arc;

use fieldbridge_core::{CommandRouter, Directory, Subscription};

/// What the component needs besides the bus.
#[derive(Debug, Clone)]
pub struct ComponentOptions {
    /// `xmpp:` from gateway.yaml.
    pub config: XmppConfig,
    /// The component secret.
    pub secret: String,
    /// Where subscriptions are kept.
    pub state_dir: PathBuf,
    /// The gateway's id.
    pub gateway_id: String,
}

/// Why the component stopped.
#[derive(Debug, thiserror::Error)]
pub enum XmppError {
    /// Local I/O (the state directory).
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Runs the component until `events` ends.
pub async fn run(
    _options: ComponentOptions,
    _directory: Arc<Directory>,
    mut events: Subscription,
    _commands: CommandRouter,
) -> Result<(), XmppError> {
    while events.recv().await.is_some() {}
    Ok(())
}
