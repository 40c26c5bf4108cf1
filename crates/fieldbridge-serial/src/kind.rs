//! `serial:` as a connection kind (see [`fieldbridge_core::kind`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use fieldbridge_core::adapter::Adapter;
use fieldbridge_core::device::AdapterDevice;
use fieldbridge_core::kind::{AdapterKind, BuildContext, Described, DeviceProblem};
use fieldbridge_core::{ConnectionId, PointId};

use crate::SerialAdapter;
use crate::config::{SerialConnection, SerialDevice, SerialPoint};
use crate::format::Parser;

/// `serial:` lines.
#[derive(Debug)]
pub struct Serial;

impl AdapterKind for Serial {
    const NAME: &'static str = "serial";
    const DEFAULT_POLL: Option<Duration> = None;
    type Connection = SerialConnection;
    type Device = SerialDevice;
    type Point = SerialPoint;

    fn check_connection(settings: &SerialConnection) -> Result<(), String> {
        settings.check().map_err(|e| e.to_string())
    }

    /// The device's format against its points (a CSV point needs a
    /// column), and `write.ack`, which the adapter compiles only when it
    /// writes.
    fn check_device(
        device: &SerialDevice,
        points: &BTreeMap<PointId, SerialPoint>,
    ) -> Vec<DeviceProblem> {
        let parser = match Parser::new(device) {
            Ok(p) => p,
            Err(e) => return vec![(None, e.to_string())],
        };
        let mut out: Vec<DeviceProblem> = points
            .iter()
            .filter_map(|(id, p)| {
                let e = parser.check_point(p).err()?;
                Some((Some(id.clone()), e.to_string()))
            })
            .collect();
        if let Some(ack) = device.write.as_ref().and_then(|w| w.ack.as_deref())
            && let Err(e) = regex::Regex::new(ack)
        {
            out.push((
                None,
                format!("write.ack is not a valid regular expression: {e}"),
            ));
        }
        out
    }

    fn describe_connection(
        settings: &SerialConnection,
        _id: &ConnectionId,
        _ctx: &BuildContext,
    ) -> String {
        format!(", {} at {} baud", settings.port.display(), settings.baud)
    }

    fn describe_device(d: &AdapterDevice<SerialDevice, SerialPoint>) -> Described {
        let c = &d.config;
        let mut extra = format!(", format {}", c.format.name());
        if let Some(p) = &c.prefix {
            let _ = write!(extra, ", prefix {p:?}");
        }
        if let Some(r) = &c.request {
            let _ = write!(extra, ", request {:?}", r.send);
        }
        if let Some(w) = &c.write {
            let _ = write!(extra, ", write {:?}", w.template);
        }
        let points = d
            .points
            .iter()
            .map(|(id, p)| {
                let at = match (&p.key, &p.pointer, p.column, &p.capture, &p.nmea) {
                    (Some(k), ..) => format!("key {k}"),
                    (_, Some(ptr), ..) => format!("pointer {ptr}"),
                    (_, _, Some(col), ..) => format!("column {col}"),
                    (.., Some(cap), _) => format!("capture {cap}"),
                    (.., Some(n)) => format!("nmea {n}"),
                    _ => String::new(),
                };
                (id.clone(), format!(", {at}"))
            })
            .collect();
        (extra, points)
    }

    fn build(
        id: ConnectionId,
        settings: SerialConnection,
        devices: Vec<AdapterDevice<SerialDevice, SerialPoint>>,
        _ctx: &BuildContext,
    ) -> Box<dyn Adapter> {
        Box::new(SerialAdapter::new(id, settings, devices))
    }
}
