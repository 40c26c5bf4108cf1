//! `connections.<id>.modbus_tcp` and `connections.<id>.modbus_rtu`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use fieldbridge_core::duration;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{Parity, SettingsError};

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
    pub fn check(&self) -> Result<(), SettingsError> {
        check_timeout(self.timeout)?;
        if !(1..=16).contains(&self.max_in_flight) {
            return Err(SettingsError::MaxInFlight(self.max_in_flight));
        }
        Ok(())
    }
}

fn check_timeout(t: Option<Duration>) -> Result<(), SettingsError> {
    match t {
        Some(t) if t.is_zero() => Err(SettingsError::ZeroTimeout),
        Some(t) if t > Duration::from_secs(60) => Err(SettingsError::TimeoutTooLong),
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
    #[serde(default = "fieldbridge_serialport::default_baud")]
    pub baud: u32,
    /// Data bits, 7 or 8 (default 8).
    #[serde(default = "fieldbridge_serialport::default_data_bits")]
    pub data_bits: u8,
    /// `none` (default), `even` (the Modbus RTU standard's default) or `odd`.
    #[serde(default)]
    pub parity: Parity,
    /// Stop bits, 1 (default) or 2.
    #[serde(default = "fieldbridge_serialport::default_stop_bits")]
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

impl ModbusRtuConnection {
    /// Why these settings cannot work, if they cannot.
    pub fn check(&self) -> Result<(), SettingsError> {
        check_timeout(self.timeout)?;
        if !(7..=8).contains(&self.data_bits) {
            return Err(SettingsError::DataBits(self.data_bits));
        }
        if !(1..=2).contains(&self.stop_bits) {
            return Err(SettingsError::StopBits(self.stop_bits));
        }
        if self.baud == 0 {
            return Err(SettingsError::ZeroBaud);
        }
        if self
            .inter_request_delay
            .is_some_and(|d| d > Duration::from_secs(10))
        {
            return Err(SettingsError::InterRequestDelayTooLong);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtu() -> ModbusRtuConnection {
        serde_json::from_str(r#"{"port": "/dev/ttyUSB0"}"#).expect("defaults load")
    }

    #[test]
    fn each_out_of_range_setting_is_its_own_cause() {
        assert_eq!(rtu().check(), Ok(()));
        let bus = ModbusRtuConnection {
            data_bits: 6,
            ..rtu()
        };
        assert_eq!(bus.check(), Err(SettingsError::DataBits(6)));
        assert_eq!(
            bus.check().unwrap_err().to_string(),
            "data_bits must be 7 or 8, not 6"
        );
        let bus = ModbusRtuConnection {
            timeout: Some(Duration::from_secs(61)),
            ..rtu()
        };
        assert_eq!(bus.check(), Err(SettingsError::TimeoutTooLong));
        let tcp = ModbusTcpConnection {
            address: "127.0.0.1:502".parse().expect("an address"),
            timeout: None,
            max_in_flight: 17,
        };
        assert_eq!(
            tcp.check().unwrap_err().to_string(),
            "max_in_flight must be 1 to 16, not 17"
        );
    }
}
