//! fieldbridge's serial line adapter: sensors, meters and microcontrollers
//! that print readings on a serial line (USB-serial, RS-232, RS-485 ASCII).
//!
//! Bytes from the port are cut into frames by [`framing`] (which never ends
//! the stream on bad data), each frame is parsed by the device's
//! [`format`](mod@format) (key=value, JSON, CSV, regex or [`nmea`]), and each point's
//! field becomes a raw reading: one frame, one event of all its readings,
//! for core to normalize.

pub mod adapter;
pub mod config;
pub mod format;
pub mod framing;
pub mod kind;
pub mod nmea;

pub use adapter::SerialAdapter;
pub use kind::Serial;
