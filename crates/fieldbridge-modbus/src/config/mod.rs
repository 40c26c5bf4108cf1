//! The Modbus adapter's part of `gateway.yaml`.
//!
//! Addresses are **0-based protocol addresses**, as they travel on the wire:
//! `holding: 0` is the first holding register. Device manuals often use the
//! Modicon numbering instead (`40001` = first holding register): write those
//! under `register:` and the table is taken from the first digit and the
//! address is the rest minus one (`register: 40101` = `holding: 100`,
//! `register: 30001` = `input: 0`, `register: 10005` = `discrete: 4`,
//! `register: 00012` or `12` = `coil: 11`; six digits work the same way:
//! `register: 400101` = `holding: 100`).
//!
//! One module per job: [`connection`] (the TCP endpoint and RTU bus),
//! [`device`] (a device's own keys), [`error`] (their range errors), [`point`] (a point, checked as it
//! loads), [`types`] (tables, data types, orders) and [`names`] (`enum`
//! maps). Everything is re-exported here, so paths stay
//! `fieldbridge_modbus::config::…`.

use std::time::Duration;

pub mod connection;
pub mod device;
pub mod error;
pub mod names;
pub mod point;
pub mod types;

pub use connection::{ModbusRtuConnection, ModbusTcpConnection};
pub use device::ModbusDevice;
pub use error::SettingsError;
pub use fieldbridge_serialport::Parity;
pub use names::EnumMap;
pub use point::{Location, LocationError, ModbusPoint, PointError, RawModbusPoint, modicon};
pub use types::{DataType, Order, Table};

/// Registers one read may return (the protocol's limit for FC 3 and 4).
pub const MAX_REGISTERS: u16 = 125;
/// Coils or discrete inputs one read may return (FC 1 and 2).
pub const MAX_BITS: u16 = 2000;
/// Default time a device has to answer one request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
/// Default poll period of a Modbus device.
pub const DEFAULT_POLL: Duration = Duration::from_secs(5);
