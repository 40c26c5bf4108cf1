//! `mqtt:` as a connection kind (see [`fieldbridge_core::kind`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fieldbridge_core::adapter::Adapter;
use fieldbridge_core::device::AdapterDevice;
use fieldbridge_core::kind::{AdapterKind, BuildContext, Described, DeviceProblem, NamedFile};
use fieldbridge_core::{ConnectionId, DeviceSpec, PointId, StaleDefault};

use crate::MqttAdapter;
use crate::config::{DEFAULT_MAX_DEVICES, MqttConnection, MqttDevice, MqttPoint};
use crate::tls::{PASSWORD_FILE_LIMIT, PEM_FILE_LIMIT};

/// `mqtt:` brokers.
#[derive(Debug)]
pub struct Mqtt;

/// Staleness of an MQTT device without `availability` or `stale_after`:
/// three missed reports at 300 s, Tasmota's default report interval
/// (TelePeriod), the longest of common firmware's defaults (Shelly and
/// ESPHome report more often), so that one lost report or a slow Wi-Fi
/// reconnect does not show the device away.
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(15 * 60);

impl AdapterKind for Mqtt {
    const NAME: &'static str = "mqtt";
    const DEFAULT_POLL: Option<Duration> = None;
    type Connection = MqttConnection;
    type Device = MqttDevice;
    type Point = MqttPoint;

    fn check_connection(settings: &MqttConnection) -> Result<(), String> {
        settings.check()
    }

    fn resolve_paths(settings: &mut MqttConnection, base: &Path) {
        settings.resolve_paths(base);
    }

    /// The password file and the PEM files, with the limits the adapter
    /// reads them with.
    fn files(s: &MqttConnection) -> Vec<NamedFile<'_>> {
        fn pem<'a>(key: &'static str, path: Option<&'a Path>) -> Option<NamedFile<'a>> {
            path.map(|path| NamedFile {
                key,
                path,
                limit: PEM_FILE_LIMIT,
                text: false,
                holds: "a PEM file",
            })
        }
        let password = s.password_file.as_deref().map(|path| NamedFile {
            key: "password_file",
            path,
            limit: PASSWORD_FILE_LIMIT,
            text: true,
            holds: "the password",
        });
        [
            password,
            pem("ca_file", s.ca_file.as_deref()),
            pem("client_cert", s.client_cert.as_deref()),
            pem("client_key", s.client_key.as_deref()),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    fn check_point(point: &MqttPoint) -> Result<(), String> {
        point.check()
    }

    fn check_device(
        device: &MqttDevice,
        points: &BTreeMap<PointId, MqttPoint>,
    ) -> Vec<DeviceProblem> {
        crate::config::check_device(device, points)
    }

    /// A writable point publishes its writes on its `command_topic`: one
    /// without the other is a mistake.
    fn check_spec(spec: &DeviceSpec, points: &BTreeMap<PointId, MqttPoint>) -> Vec<DeviceProblem> {
        points
            .iter()
            .filter_map(|(id, p)| {
                let writable = spec.points.get(id).is_some_and(|s| s.settings.writable);
                match (writable, &p.command_topic) {
                    (true, None) => Some((
                        Some(id.clone()),
                        "a writable point needs a `command_topic` to publish writes on".into(),
                    )),
                    (false, Some(_)) => Some((
                        Some(id.clone()),
                        "`command_topic` is for writable points: add `writable: true`".into(),
                    )),
                    _ => None,
                }
            })
            .collect()
    }

    /// MQTT devices report at their own pace, many only on change
    /// (Zigbee2MQTT): with `availability`, the device's own online and
    /// offline (a last will the broker publishes when it is lost) is the
    /// truth, and a timer would show a quiet device away while it says it
    /// is online; without it, [`DEFAULT_STALE_AFTER`].
    fn stale_default(device: &MqttDevice) -> StaleDefault {
        if device.availability.is_some() {
            StaleDefault::Never
        } else {
            StaleDefault::After(DEFAULT_STALE_AFTER)
        }
    }

    fn is_rule(device: &MqttDevice) -> bool {
        device.is_template()
    }

    fn describe_connection(s: &MqttConnection, id: &ConnectionId, ctx: &BuildContext) -> String {
        let mut extra = format!(
            ", {}, MQTT {}, client id {}",
            s.url,
            s.protocol().name(),
            s.client_id(&ctx.gateway_id, id.as_str())
        );
        extra.push_str(if s.clean_session {
            ", clean session"
        } else {
            ", persistent session"
        });
        if let Some(u) = &s.username {
            let _ = write!(extra, ", user {u}");
        }
        if let Some(ca) = &s.ca_file {
            let _ = write!(extra, ", CA {}", ca.display());
        }
        if s.client_cert.is_some() {
            extra.push_str(", client certificate");
        }
        extra
    }

    fn describe_device(d: &AdapterDevice<MqttDevice, MqttPoint>) -> Described {
        let c = &d.config;
        let mut extra = String::new();
        if let Some(t) = &c.topic {
            if t.is_template() {
                let _ = write!(
                    extra,
                    ", template {t} (up to {} devices)",
                    c.max_devices.unwrap_or(DEFAULT_MAX_DEVICES)
                );
            } else {
                let _ = write!(extra, ", topic {t}");
            }
        }
        if let Some(a) = &c.availability {
            let _ = write!(
                extra,
                ", availability {} ({}/{})",
                a.topic, a.online, a.offline
            );
        }
        if let Some(ts) = &c.timestamp {
            let _ = write!(extra, ", timestamp {ts}");
        }
        let points = d
            .points
            .iter()
            .map(|(id, p)| {
                let mut line = String::new();
                match &p.json {
                    Some(ptr) => {
                        let _ = write!(line, ", json {ptr}");
                    }
                    None => line.push_str(", whole payload"),
                }
                if let Some(t) = &p.topic {
                    let _ = write!(line, " of {t}");
                }
                if let Some(t) = &p.command_topic {
                    let _ = write!(
                        line,
                        ", writes {:?} to {t}",
                        p.payload.as_deref().unwrap_or("{value}")
                    );
                }
                (id.clone(), line)
            })
            .collect();
        (extra, points)
    }

    /// Template rules announce the devices they create in the directory.
    fn build(
        id: ConnectionId,
        settings: MqttConnection,
        devices: Vec<AdapterDevice<MqttDevice, MqttPoint>>,
        ctx: &BuildContext,
    ) -> Box<dyn Adapter> {
        Box::new(
            MqttAdapter::new(&ctx.gateway_id, id, settings, devices)
                .with_directory(Arc::clone(&ctx.directory)),
        )
    }
}
