//! `connections.<id>.modbus_tcp` and `connections.<id>.modbus_rtu`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use fieldbridge_core::duration;
use schemars::JsonSchema;
use serde::Deserialize;

use super::Parity;

/// `connections.<id>.modbus_tcp`: one TCP endpoint (a device, or a gateway
/// serving several unit ids), shared by the devices on it.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModbusTcpConnection {
    /// `host:port` of the server (IP address; the standard port is 502).
    pub address: SocketAddr,
    /// How long one request may take before it counts as failed and the
    /// connection is reopened (default 1s).
    #[serde(default, deserialize_with = "duration::optional")]
    #[schemars(schema_with = "duration::optional_schema")]
    pub timeout: Option<Duration>,
    /// Requests sent at the same time, each on its own TCP connection
    /// (default 1). Raise it only for gateways that serve several unit ids
    /// in parallel; devices are spread over the connections.
    #[serde(default = "one")]
    pub max_in_flight: u8,
}

fn one() -> u8 {
    1
}

impl ModbusTcpConnection {
    /// Why these settings cannot work, if they cannot.
    pub fn check(&self) -> Result<(), String> {
        check_timeout(self.timeout)?;
        if !(1..=16).contains(&self.max_in_flight) {
            return Err(format!(
                "max_in_flight must be 1 to 16, not {}",
                self.max_in_flight
            ));
        }
        Ok(())
    }
}

fn check_timeout(t: Option<Duration>) -> Result<(), String> {
    match t {
        Some(t) if t.is_zero() => Err("timeout must be longer than 0s".into()),
        Some(t) if t > Duration::from_secs(60) => {
            Err("timeout must be at most 60s (a device that slow is offline)".into())
        }
        _ => Ok(()),
    }
}

/// `connections.<id>.modbus_rtu`: one serial bus (RS-485/RS-232). It is
/// half-duplex: its devices share one scheduler, one request at a time.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModbusRtuConnection {
    /// The port; prefer a stable `/dev/serial/by-id/…` path.
    pub port: PathBuf,
    /// Line speed (default 9600).
    #[serde(default = "default_baud")]
    pub baud: u32,
    /// Data bits, 7 or 8 (default 8).
    #[serde(default = "default_data_bits")]
    pub data_bits: u8,
    /// `none` (default), `even` (the Modbus RTU standard's default) or `odd`.
    #[serde(default)]
    pub parity: Parity,
    /// Stop bits, 1 (default) or 2.
    #[serde(default = "default_stop_bits")]
    pub stop_bits: u8,
    /// How long a device has to answer one request (default 1s). After a
    /// timeout the port is closed, one more timeout is waited out (so that
    /// a late reply cannot be taken as the next answer), and the port is
    /// reopened with its input flushed.
    #[serde(default, deserialize_with = "duration::optional")]
    #[schemars(schema_with = "duration::optional_schema")]
    pub timeout: Option<Duration>,
    /// Silence kept on the bus between two requests (default 0s); slow
    /// devices and RS-485 converters may need 10–50ms.
    #[serde(default, deserialize_with = "duration::optional")]
    #[schemars(schema_with = "duration::optional_schema")]
    pub inter_request_delay: Option<Duration>,
}

fn default_baud() -> u32 {
    9600
}
fn default_data_bits() -> u8 {
    8
}
fn default_stop_bits() -> u8 {
    1
}

impl ModbusRtuConnection {
    /// Why these settings cannot work, if they cannot.
    pub fn check(&self) -> Result<(), String> {
        check_timeout(self.timeout)?;
        if !(7..=8).contains(&self.data_bits) {
            return Err(format!("data_bits must be 7 or 8, not {}", self.data_bits));
        }
        if !(1..=2).contains(&self.stop_bits) {
            return Err(format!("stop_bits must be 1 or 2, not {}", self.stop_bits));
        }
        if self.baud == 0 {
            return Err("baud must be more than 0".into());
        }
        if self
            .inter_request_delay
            .is_some_and(|d| d > Duration::from_secs(10))
        {
            return Err("inter_request_delay must be at most 10s".into());
        }
        Ok(())
    }
}
