//! Loading `gateway.yaml`: every problem at once, each with file:line:column
//! (or the environment variable) and the key path.
//!
//! The file is parsed into a position-carrying `tree`; environment
//! overrides (`FIELDBRIDGE__XMPP__SECRET`, collected by the `config` crate)
//! are grafted onto it; then each section, connection, device and point is
//! read on its own, so that a mistake in one does not hide the others.
//!
//! One job per module: `model` is what loading produces, `load` the
//! loader, `env` the overrides, `secrets` the component secret,
//! `device` the reading of one device, `kinds` the one list of connection
//! kinds (each described by its adapter crate), [`schema`] the JSON Schema.

mod de;
mod device;
mod env;
mod error;
mod kinds;
mod load;
mod model;
pub mod schema;
mod secrets;
mod tree;

pub use self::env::{ENV_PREFIX, ENV_SEPARATOR};
pub use self::error::{ConfigError, ConfigErrors, Location};
pub use self::kinds::{DeviceLines, Loaded, LoadedConnection};
pub use self::load::{CONFIG_FILE_LIMIT, Purpose, load, load_with_env};
pub use self::model::{
    Connection, GatewayConfig, GatewaySection, GatewaySettings, HttpListen, HttpListenSection,
    is_loopback, parse_listen,
};
pub use self::secrets::SECRET_FILE_LIMIT;

#[cfg(test)]
mod tests;
