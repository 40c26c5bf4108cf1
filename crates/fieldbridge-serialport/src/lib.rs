//! Opening a serial port, one way for every adapter that needs one (the
//! serial line adapter and Modbus RTU), so that both apply line settings,
//! exclusivity and error context alike while never importing each other.
//!
//! The adapters keep their own config keys and checks (Modbus RTU allows
//! 7 or 8 data bits, a serial line 5 to 8); the types they share
//! ([`Parity`], [`FlowControl`]) live here and are re-exported from their
//! `config` modules.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::Deserialize;
use tokio_serial::SerialPortBuilderExt;

pub use tokio_serial::SerialStream;

/// Parity bit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Parity {
    /// No parity bit.
    #[default]
    None,
    /// Even parity.
    Even,
    /// Odd parity.
    Odd,
}

/// Flow control.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FlowControl {
    /// None.
    #[default]
    None,
    /// XON/XOFF.
    Software,
    /// RTS/CTS.
    Hardware,
}

/// How the line is driven, as the adapters' configs give it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineSettings {
    /// Line speed, in baud.
    pub baud: u32,
    /// Data bits, 5 to 8.
    pub data_bits: u8,
    /// Parity bit.
    pub parity: Parity,
    /// Stop bits, 1 or 2.
    pub stop_bits: u8,
    /// Flow control.
    pub flow_control: FlowControl,
}

/// `baud` when a config leaves it out: 9600 8N1 is what most field devices
/// ship with. For `#[serde(default = "fieldbridge_serialport::default_baud")]`.
pub fn default_baud() -> u32 {
    9600
}

/// `data_bits` when a config leaves it out.
pub fn default_data_bits() -> u8 {
    8
}

/// `stop_bits` when a config leaves it out.
pub fn default_stop_bits() -> u8 {
    1
}

/// A port that could not be opened; it names the port, as every message
/// about it should.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", port.display())]
pub struct OpenError {
    /// The port.
    pub port: PathBuf,
    /// Why (missing, busy, no permission, or settings it cannot take).
    #[source]
    pub source: tokio_serial::Error,
}

/// Opens `port` for async I/O with `line`'s settings, in exclusive mode:
/// a second opener (another gateway, a stray terminal program) would
/// garble frames on a line that carries one conversation at a time.
///
/// Settings outside what a UART takes (data bits not 5–8, stop bits not
/// 1–2) are refused here too, not silently replaced, even though the
/// adapters' config checks refuse them first.
pub fn open(port: &Path, line: &LineSettings) -> Result<SerialStream, OpenError> {
    let error = |source| OpenError {
        port: port.to_path_buf(),
        source,
    };
    let data_bits = data_bits(line.data_bits).map_err(error)?;
    let stop_bits = stop_bits(line.stop_bits).map_err(error)?;
    tokio_serial::new(port.to_string_lossy(), line.baud)
        .data_bits(data_bits)
        .parity(parity(line.parity))
        .stop_bits(stop_bits)
        .flow_control(flow_control(line.flow_control))
        .exclusive(true)
        .open_native_async()
        .map_err(error)
}

fn invalid(description: String) -> tokio_serial::Error {
    tokio_serial::Error::new(tokio_serial::ErrorKind::InvalidInput, description)
}

fn data_bits(bits: u8) -> tokio_serial::Result<tokio_serial::DataBits> {
    use tokio_serial::DataBits::*;
    match bits {
        5 => Ok(Five),
        6 => Ok(Six),
        7 => Ok(Seven),
        8 => Ok(Eight),
        _ => Err(invalid(format!("data_bits must be 5 to 8, not {bits}"))),
    }
}

fn stop_bits(bits: u8) -> tokio_serial::Result<tokio_serial::StopBits> {
    match bits {
        1 => Ok(tokio_serial::StopBits::One),
        2 => Ok(tokio_serial::StopBits::Two),
        _ => Err(invalid(format!("stop_bits must be 1 or 2, not {bits}"))),
    }
}

fn parity(p: Parity) -> tokio_serial::Parity {
    match p {
        Parity::None => tokio_serial::Parity::None,
        Parity::Even => tokio_serial::Parity::Even,
        Parity::Odd => tokio_serial::Parity::Odd,
    }
}

fn flow_control(f: FlowControl) -> tokio_serial::FlowControl {
    match f {
        FlowControl::None => tokio_serial::FlowControl::None,
        FlowControl::Software => tokio_serial::FlowControl::Software,
        FlowControl::Hardware => tokio_serial::FlowControl::Hardware,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_data_and_stop_bit_count_a_uart_takes_maps_and_others_are_refused() {
        use tokio_serial::DataBits::*;
        let mapped: Vec<_> = (5..=8).map(|b| data_bits(b).ok()).collect();
        assert_eq!(mapped, [Some(Five), Some(Six), Some(Seven), Some(Eight)]);
        for bad in [0, 4, 9, 255] {
            let e = data_bits(bad).err().map(|e| e.to_string());
            assert_eq!(e, Some(format!("data_bits must be 5 to 8, not {bad}")));
        }
        assert_eq!(stop_bits(1).ok(), Some(tokio_serial::StopBits::One));
        assert_eq!(stop_bits(2).ok(), Some(tokio_serial::StopBits::Two));
        let e = stop_bits(3).err().map(|e| e.to_string());
        assert_eq!(e, Some("stop_bits must be 1 or 2, not 3".to_string()));
    }

    #[test]
    fn parity_and_flow_control_map_to_their_own_kind() {
        assert_eq!(parity(Parity::None), tokio_serial::Parity::None);
        assert_eq!(parity(Parity::Even), tokio_serial::Parity::Even);
        assert_eq!(parity(Parity::Odd), tokio_serial::Parity::Odd);
        use tokio_serial::FlowControl as F;
        assert_eq!(flow_control(FlowControl::None), F::None);
        assert_eq!(flow_control(FlowControl::Software), F::Software);
        assert_eq!(flow_control(FlowControl::Hardware), F::Hardware);
    }

    #[test]
    fn config_spells_parity_and_flow_control_in_snake_case() {
        let p: Vec<Parity> = serde_json::from_str(r#"["none", "even", "odd"]"#).expect("parities");
        assert_eq!(p, [Parity::None, Parity::Even, Parity::Odd]);
        assert!(serde_json::from_str::<Parity>(r#""Even""#).is_err());
        let f: Vec<FlowControl> =
            serde_json::from_str(r#"["none", "software", "hardware"]"#).expect("flow controls");
        assert_eq!(
            f,
            [
                FlowControl::None,
                FlowControl::Software,
                FlowControl::Hardware
            ]
        );
        assert_eq!(Parity::default(), Parity::None);
        assert_eq!(FlowControl::default(), FlowControl::None);
    }
}
