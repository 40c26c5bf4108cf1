//! A Modbus device's own keys under `devices.<id>`.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{MAX_BITS, MAX_REGISTERS, Order, SettingsError};

/// A Modbus device's own keys under `devices.<id>`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModbusDevice {
    /// The unit (slave) id (default 1): 1 to 247 on an RTU bus; TCP devices
    /// often ignore it or want 255, gateways route by it.
    #[serde(default = "default_unit")]
    pub unit: u8,
    /// Registers that may be read in vain to merge two reads into one
    /// (default 8). 0 reads only registers that belong to points.
    #[serde(default = "default_max_gap")]
    pub max_gap: u16,
    /// The same for coils and discrete inputs (default 64).
    #[serde(default = "default_max_bit_gap")]
    pub max_bit_gap: u16,
    /// Most registers per read, for devices that refuse long reads
    /// (default and maximum 125).
    #[serde(default = "default_max_registers")]
    pub max_registers: u16,
    /// Most coils or discrete inputs per read (default and maximum 2000).
    #[serde(default = "default_max_bits")]
    pub max_bits: u16,
    /// Word and byte order of this device's points that do not set their
    /// own (default `ABCD`, big-endian).
    #[serde(default)]
    pub order: Order,
    /// Poll cycles in a row that must fail before the device is reported
    /// offline (default 2, so that presence changes within about two poll
    /// periods plus the timeout).
    #[serde(default = "default_offline_after")]
    pub offline_after: u32,
}

fn default_unit() -> u8 {
    1
}
fn default_max_gap() -> u16 {
    8
}
fn default_max_bit_gap() -> u16 {
    64
}
fn default_max_registers() -> u16 {
    MAX_REGISTERS
}
fn default_max_bits() -> u16 {
    MAX_BITS
}
fn default_offline_after() -> u32 {
    2
}

impl Default for ModbusDevice {
    fn default() -> Self {
        Self {
            unit: default_unit(),
            max_gap: default_max_gap(),
            max_bit_gap: default_max_bit_gap(),
            max_registers: default_max_registers(),
            max_bits: default_max_bits(),
            order: Order::default(),
            offline_after: default_offline_after(),
        }
    }
}

impl ModbusDevice {
    /// Why these settings cannot work, if they cannot.
    pub fn check(&self) -> Result<(), SettingsError> {
        if !(1..=MAX_REGISTERS).contains(&self.max_registers) {
            return Err(SettingsError::MaxRegisters(self.max_registers));
        }
        if !(1..=MAX_BITS).contains(&self.max_bits) {
            return Err(SettingsError::MaxBits(self.max_bits));
        }
        if self.offline_after == 0 {
            return Err(SettingsError::ZeroOfflineAfter);
        }
        Ok(())
    }
}
