//! Why connection or device settings cannot work.

use super::{MAX_BITS, MAX_REGISTERS};

/// A setting of a connection or device out of its range. Each names one
/// key; the loader reports it at the connection's or device's mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// `timeout: 0s`.
    #[error("timeout must be longer than 0s")]
    ZeroTimeout,
    /// `timeout` over a minute.
    #[error("timeout must be at most 60s (a device that slow is offline)")]
    TimeoutTooLong,
    /// `max_in_flight` outside 1 to 16.
    #[error("max_in_flight must be 1 to 16, not {0}")]
    MaxInFlight(u8),
    /// `data_bits` other than 7 or 8.
    #[error("data_bits must be 7 or 8, not {0}")]
    DataBits(u8),
    /// `stop_bits` other than 1 or 2.
    #[error("stop_bits must be 1 or 2, not {0}")]
    StopBits(u8),
    /// `baud: 0`.
    #[error("baud must be more than 0")]
    ZeroBaud,
    /// `inter_request_delay` over 10s.
    #[error("inter_request_delay must be at most 10s")]
    InterRequestDelayTooLong,
    /// `max_registers` outside 1 to 125.
    #[error("max_registers must be 1 to {max}, not {0}", max = MAX_REGISTERS)]
    MaxRegisters(u16),
    /// `max_bits` outside 1 to 2000.
    #[error("max_bits must be 1 to {max}, not {0}", max = MAX_BITS)]
    MaxBits(u16),
    /// `offline_after: 0`.
    #[error("offline_after must be 1 or more")]
    ZeroOfflineAfter,
}
