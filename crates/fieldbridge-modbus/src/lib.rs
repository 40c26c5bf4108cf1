//! fieldbridge's Modbus adapter: Modbus TCP endpoints and RTU buses.
//!
//! What it owns: reading register maps ([`config`]) as values
//! ([`codec`]), planning the fewest reads per poll cycle ([`plan`]), one
//! scheduler per connection that polls each device at its own period
//! (one request at a time on an RTU bus, fairly), reconnecting and
//! recovering from timeouts, and writes.
//!
//! Data flows: scheduler → read plan of a device → tokio-modbus request
//! (always under a timeout) → registers → [`codec::Codec::decode`] → raw
//! value (not scaled: core applies `scale`/`offset`) → one
//! `EventSender::readings` event per poll cycle with every point it read
//! (a point whose read failed with its bad quality). Status goes the same way: online after a good cycle,
//! offline (with the reason) after `offline_after` failed cycles. Commands
//! from core come back in on the adapter's inbox and are written with FC
//! 5, 6, 15 or 16, read back, and the new value published at once.

pub mod adapter;
pub mod codec;
pub mod config;
pub mod kind;
pub mod plan;
pub mod scan;
pub mod transport;

pub use adapter::{ModbusAdapter, Transport};
pub use kind::{Modbus, ModbusRtu, ModbusTcp, ModbusTransport};
