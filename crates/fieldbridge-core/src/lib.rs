//! fieldbridge's core: the device model, the event bus, normalization, command
//! routing and the simulator.
//!
//! Data flows one way: an [`adapter::Adapter`] reports status, and what it
//! read of a device at once as one batch of raw readings, through an
//! [`adapter::EventSender`]; the [`normalize`] engine applies each point's
//! scale, offset, deadband and rate limits, tracks each device's staleness,
//! and publishes one [`event::DeviceEvent`] per device update on the
//! [`bus::Bus`]; sinks (the XMPP component) read their own
//! [`bus::Subscription`]. Commands flow back through the
//! [`command::CommandRouter`] to the adapter owning the device.
//!
//! Nothing here knows a protocol: adapters and sinks meet only through these
//! types. Each adapter describes its connection kind to the gateway with one
//! [`kind::AdapterKind`] impl.

pub mod adapter;
pub mod alarm;
pub mod audit;
pub mod backoff;
pub mod bus;
pub mod command;
pub mod device;
pub mod display;
pub mod duration;
pub mod event;
pub mod files;
pub mod id;
pub mod kind;
pub mod normalize;
pub mod process;
pub mod simulator;
pub mod telemetry;
pub mod value;
pub mod watchdog;

pub use adapter::{Adapter, AdapterContext, EventSender};
pub use bus::{Bus, Subscription};
pub use command::{Action, AdapterError, Command, CommandError, CommandRouter, CommandRoutes};
pub use device::{
    DeviceSettings, DeviceSpec, Directory, HistorySettings, PointSettings, PointSpec, StaleDefault,
};
pub use event::{DeviceEvent, DeviceStatus, EventKind};
pub use id::{ConnectionId, DeviceId, IdError, PointId};
pub use kind::{AdapterKind, BuildContext};
pub use value::{Quality, Reading, Sample, Unit, Value, ValueError, ValueKind};
