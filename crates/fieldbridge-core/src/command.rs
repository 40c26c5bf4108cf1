//! Commands from sinks (a chat `set`, an ad-hoc form) to the adapter that
//! owns a device, and their answers.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::device::{Directory, PointSettings, PointSpec};
use crate::id::{ConnectionId, DeviceId, PointId};
use crate::value::{Value, ValueError, ValueKind};

/// How long a sink waits for an adapter's answer unless told otherwise.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// What a command asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Write this value to the point (already checked against its kind).
    Write(Value),
    /// Read the point now, bypassing the poll schedule.
    Read,
}

/// A command on its way to an adapter. The adapter must answer on `reply`;
/// dropping it unanswered is reported to the sender as an adapter failure.
#[derive(Debug)]
pub struct Command {
    /// The device addressed.
    pub device: DeviceId,
    /// The point addressed.
    pub point: PointId,
    /// What to do.
    pub action: Action,
    /// Where the adapter answers: the value now in effect, or why not.
    pub reply: oneshot::Sender<Result<Value, AdapterError>>,
}

/// Why an adapter could not do what a command asked, by cause, so that a
/// sink can answer by it (the XMPP side picks a stanza error condition)
/// and a person can read it (the text says what happened).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdapterError {
    /// The device refused the request or value (a Modbus "illegal data
    /// value", a value outside the point's `min`/`max`, a read back that
    /// differs): asking the same again will not help.
    #[error("{0}")]
    Refused(String),
    /// The point cannot do that here (no write template, a table that
    /// cannot be written, a read-only point).
    #[error("{0}")]
    Unsupported(String),
    /// The device or its link is down now, or the gateway is stopping:
    /// trying later may work.
    #[error("{0}")]
    Unavailable(String),
    /// The device did not answer in time.
    #[error("{0}")]
    NoAnswer(String),
    /// The device or point is not on this adapter's connection.
    #[error("{0}")]
    NotHere(String),
}

/// Why a command did not succeed, in words for the person who sent it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CommandError {
    /// No such device.
    #[error("unknown device {0:?}")]
    UnknownDevice(String),
    /// No such point on the device.
    #[error("{device} has no point {point:?}")]
    UnknownPoint {
        /// The device.
        device: DeviceId,
        /// The point asked for.
        point: String,
    },
    /// The point is not marked `writable: true`.
    #[error("{device}.{point} is read-only")]
    NotWritable {
        /// The device.
        device: DeviceId,
        /// The point.
        point: PointId,
    },
    /// The value does not fit the point.
    #[error("{0}")]
    InvalidValue(#[from] ValueError),
    /// The adapter did not answer in time.
    #[error("{device} did not answer within {}s", .after.as_secs_f32())]
    Timeout {
        /// The device.
        device: DeviceId,
        /// How long we waited.
        after: Duration,
    },
    /// The adapter is not running (shutting down, or it failed).
    #[error("the adapter for {0} is not running")]
    AdapterGone(DeviceId),
    /// The adapter tried and reported why it failed; or the value is
    /// outside the point's `min`/`max`, refused as a device would refuse it.
    #[error("{0}")]
    Failed(#[from] AdapterError),
}

/// Routes commands to the adapter owning each device. Cheap to clone; the
/// clones share one table, which a reload replaces
/// ([`CommandRouter::reconfigure`]).
#[derive(Clone, Debug)]
pub struct CommandRouter {
    table: Arc<RwLock<Arc<Table>>>,
    timeout: Duration,
}

/// The devices and their adapters' inboxes, as of the last (re)load.
#[derive(Debug)]
struct Table {
    directory: Arc<Directory>,
    routes: HashMap<DeviceId, mpsc::Sender<Command>>,
    /// For devices added at run time: the adapter of their connection.
    connections: HashMap<ConnectionId, mpsc::Sender<Command>>,
}

/// Collects each adapter's command inbox for the router.
#[derive(Debug, Clone)]
pub struct CommandRoutes {
    routes: HashMap<DeviceId, mpsc::Sender<Command>>,
    connections: HashMap<ConnectionId, mpsc::Sender<Command>>,
}

/// Commands queued per adapter before senders wait.
const COMMAND_QUEUE: usize = 64;

impl CommandRoutes {
    /// No routes yet.
    pub fn new() -> Self {
        Self {
            routes: HashMap::new(),
            connections: HashMap::new(),
        }
    }

    /// Creates the inbox of an adapter that owns `devices`.
    pub fn register(
        &mut self,
        devices: impl IntoIterator<Item = DeviceId>,
    ) -> mpsc::Receiver<Command> {
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        for d in devices {
            self.routes.insert(d, tx.clone());
        }
        rx
    }

    /// Creates the inbox of the adapter of `connection`, which owns
    /// `devices` and also any device added at run time on that connection
    /// (see [`Directory::insert`]).
    pub fn register_connection(
        &mut self,
        connection: &ConnectionId,
        devices: impl IntoIterator<Item = DeviceId>,
    ) -> mpsc::Receiver<Command> {
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        for d in devices {
            self.routes.insert(d, tx.clone());
        }
        self.connections.insert(connection.clone(), tx);
        rx
    }

    /// Forgets the inbox of `connection`'s adapter (stopped by a reload),
    /// for its devices too.
    pub fn remove_connection(&mut self, connection: &ConnectionId) {
        if let Some(tx) = self.connections.remove(connection) {
            self.routes.retain(|_, route| !route.same_channel(&tx));
        }
    }

    /// The router over these routes.
    pub fn into_router(self, directory: Arc<Directory>, timeout: Duration) -> CommandRouter {
        CommandRouter {
            table: Arc::new(RwLock::new(Arc::new(self.into_table(directory)))),
            timeout,
        }
    }

    fn into_table(self, directory: Arc<Directory>) -> Table {
        Table {
            directory,
            routes: self.routes,
            connections: self.connections,
        }
    }
}

impl Default for CommandRoutes {
    fn default() -> Self {
        Self::new()
    }
}

impl CommandRouter {
    /// After a reload: commands go by `routes` to the devices of
    /// `directory`, from every clone of this router. A command already on
    /// its way finishes with the adapter it was sent to.
    pub fn reconfigure(&self, routes: CommandRoutes, directory: Arc<Directory>) {
        let table = Arc::new(routes.into_table(directory));
        *self.table.write().unwrap_or_else(|p| p.into_inner()) = table;
    }

    fn table(&self) -> Arc<Table> {
        Arc::clone(&self.table.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Parses `text` for the point and writes it: the path of a chat `set`
    /// or a form submission. Checks writability, kind and limits before the
    /// adapter sees anything.
    pub async fn write_text(
        &self,
        device: &str,
        point: &str,
        text: &str,
    ) -> Result<Value, CommandError> {
        let value = Value::parse_as(text, self.writable_point(device, point)?.kind)?;
        self.write(device, point, value).await
    }

    /// Writes a typed value to a writable point. Every write passes here
    /// (chat, forms, XEP-0325 control), so this is where a value is checked
    /// against the point's kind and `min`/`max`, for every adapter.
    pub async fn write(
        &self,
        device: &str,
        point: &str,
        value: Value,
    ) -> Result<Value, CommandError> {
        let spec = self.writable_point(device, point)?;
        let value = coerce(value, spec.kind)?;
        within_limits(&value, &spec.settings)?;
        self.send(device, point, Action::Write(value)).await
    }

    /// Asks the adapter for a fresh reading of one point.
    pub async fn read(&self, device: &str, point: &str) -> Result<Value, CommandError> {
        self.send(device, point, Action::Read).await
    }

    fn writable_point(&self, device: &str, point: &str) -> Result<PointSpec, CommandError> {
        let table = self.table();
        let spec = table
            .directory
            .device(device)
            .ok_or_else(|| CommandError::UnknownDevice(device.to_owned()))?;
        let p = spec
            .points
            .get(point)
            .ok_or_else(|| CommandError::UnknownPoint {
                device: spec.id.clone(),
                point: point.to_owned(),
            })?;
        if !p.settings.writable {
            return Err(CommandError::NotWritable {
                device: spec.id.clone(),
                point: p.id.clone(),
            });
        }
        Ok(p.clone())
    }

    async fn send(&self, device: &str, point: &str, action: Action) -> Result<Value, CommandError> {
        let table = self.table();
        let spec = table
            .directory
            .device(device)
            .ok_or_else(|| CommandError::UnknownDevice(device.to_owned()))?;
        let point = spec
            .points
            .get_key_value(point)
            .map(|(k, _)| k.clone())
            .ok_or_else(|| CommandError::UnknownPoint {
                device: spec.id.clone(),
                point: point.to_owned(),
            })?;
        let device = spec.id.clone();
        let route = table
            .routes
            .get(&device)
            .or_else(|| table.connections.get(&spec.settings.connection))
            .ok_or_else(|| CommandError::AdapterGone(device.clone()))?;
        let (reply, answer) = oneshot::channel();
        let command = Command {
            device: device.clone(),
            point,
            action,
            reply,
        };
        let exchange = async {
            route
                .send(command)
                .await
                .map_err(|_| CommandError::AdapterGone(device.clone()))?;
            answer
                .await
                .map_err(|_| CommandError::AdapterGone(device.clone()))?
                .map_err(CommandError::Failed)
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(CommandError::Timeout {
                device,
                after: self.timeout,
            }),
        }
    }
}

/// Refuses a number outside the point's `min`/`max` with
/// [`AdapterError::Refused`], so that every sink answers it like a device's
/// own refusal (XMPP: `not-acceptable`). Other values have no limits: the
/// loader allows `min`/`max` on numeric points only.
fn within_limits(value: &Value, settings: &PointSettings) -> Result<(), CommandError> {
    let x = match value {
        Value::Int(i) => *i as f64,
        Value::Float(f) => *f,
        Value::Bool(_) | Value::Text(_) => return Ok(()),
    };
    let refused = |why: String| Err(CommandError::Failed(AdapterError::Refused(why)));
    // "1000000 °C is above the maximum 85 °C": both in the point's unit.
    let unit = settings
        .unit
        .as_ref()
        .map(|u| format!(" {u}"))
        .unwrap_or_default();
    if x.is_nan() && (settings.min.is_some() || settings.max.is_some()) {
        return refused(format!("{value} is not a number"));
    }
    if let Some(min) = settings.min
        && x < min
    {
        return refused(format!("{value}{unit} is below the minimum {min}{unit}"));
    }
    if let Some(max) = settings.max
        && x > max
    {
        return refused(format!("{value}{unit} is above the maximum {max}{unit}"));
    }
    Ok(())
}

/// Accepts an int for a float point and 0/1 for a bool point; refuses the rest.
fn coerce(value: Value, kind: ValueKind) -> Result<Value, CommandError> {
    match (value, kind) {
        (v @ Value::Bool(_), ValueKind::Bool)
        | (v @ Value::Int(_), ValueKind::Int)
        | (v @ Value::Float(_), ValueKind::Float)
        | (v @ Value::Text(_), ValueKind::Text) => Ok(v),
        (Value::Int(i), ValueKind::Float) => Ok(Value::Float(i as f64)),
        (Value::Int(i @ (0 | 1)), ValueKind::Bool) => Ok(Value::Bool(i == 1)),
        (Value::Float(f), ValueKind::Int) if f.fract() == 0.0 && f.abs() < 9e15 => {
            Ok(Value::Int(f as i64))
        }
        (Value::Text(t), kind) => Ok(Value::parse_as(&t, kind)?),
        (value, want) => Err(ValueError::WrongKind { value, want }.into()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::device::{DeviceSettings, DeviceSpec, PointSettings, PointSpec};
    use crate::id::ConnectionId;

    fn directory() -> Arc<Directory> {
        let point = |id: &str, kind, writable, min, max| PointSpec {
            id: PointId::new(id).unwrap(),
            kind,
            settings: PointSettings {
                writable,
                min,
                max,
                ..Default::default()
            },
        };
        let mut setpoint = point("setpoint", ValueKind::Float, true, Some(30.0), Some(85.0));
        setpoint.settings.unit = Some(crate::value::Unit("°C".into()));
        let points = [
            setpoint,
            point("level", ValueKind::Int, true, None, Some(10.0)),
            point("pump", ValueKind::Bool, true, None, None),
            point("temperature", ValueKind::Float, false, None, None),
        ];
        Arc::new(Directory::new([DeviceSpec {
            id: DeviceId::new("boiler").unwrap(),
            settings: DeviceSettings::on(ConnectionId::new("c").unwrap()),
            points: points
                .into_iter()
                .map(|p| (p.id.clone(), p))
                .collect::<BTreeMap<_, _>>(),
        }]))
    }

    /// A router whose adapter answers every command with `answer`, after
    /// recording it.
    fn router(
        timeout: Duration,
        answer: impl Fn(&Command) -> Option<Result<Value, AdapterError>> + Send + 'static,
    ) -> (
        CommandRouter,
        tokio::sync::mpsc::Receiver<(PointId, Action)>,
    ) {
        let mut routes = CommandRoutes::new();
        let mut inbox = routes.register([DeviceId::new("boiler").unwrap()]);
        let (seen_tx, seen) = mpsc::channel(16);
        tokio::spawn(async move {
            while let Some(c) = inbox.recv().await {
                let _ = seen_tx.send((c.point.clone(), c.action.clone())).await;
                match answer(&c) {
                    Some(a) => {
                        let _ = c.reply.send(a);
                    }
                    // Keep the command unanswered until the sender gives up.
                    None => std::mem::forget(c),
                }
            }
        });
        (routes.into_router(directory(), timeout), seen)
    }

    fn echo(c: &Command) -> Option<Result<Value, AdapterError>> {
        match &c.action {
            Action::Write(v) => Some(Ok(v.clone())),
            Action::Read => Some(Ok(Value::Float(21.5))),
        }
    }

    #[tokio::test]
    async fn typed_text_reaches_the_owning_adapter_as_a_value_of_the_points_kind() {
        let (r, mut seen) = router(DEFAULT_COMMAND_TIMEOUT, echo);
        assert_eq!(
            r.write_text("boiler", "setpoint", " 65.5 ").await,
            Ok(Value::Float(65.5))
        );
        assert_eq!(
            r.write_text("boiler", "pump", "on").await,
            Ok(Value::Bool(true))
        );
        assert_eq!(
            r.write("boiler", "setpoint", Value::Int(70)).await,
            Ok(Value::Float(70.0))
        );
        assert_eq!(
            r.read("boiler", "temperature").await,
            Ok(Value::Float(21.5))
        );
        let mut actions = Vec::new();
        while let Ok(a) = seen.try_recv() {
            actions.push(a);
        }
        assert_eq!(actions.len(), 4);
        assert_eq!(
            actions[1],
            (
                PointId::new("pump").unwrap(),
                Action::Write(Value::Bool(true))
            )
        );
    }

    #[tokio::test]
    async fn bad_writes_are_refused_before_the_adapter_sees_them() {
        let (r, mut seen) = router(DEFAULT_COMMAND_TIMEOUT, echo);
        assert!(matches!(
            r.write_text("boiler", "temperature", "5").await,
            Err(CommandError::NotWritable { .. })
        ));
        assert!(matches!(
            r.write_text("boiler", "nope", "5").await,
            Err(CommandError::UnknownPoint { .. })
        ));
        assert!(matches!(
            r.write_text("kettle", "setpoint", "5").await,
            Err(CommandError::UnknownDevice(_))
        ));
        let err = r
            .write_text("boiler", "setpoint", "warm")
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "\"warm\" is not a number");
        assert!(matches!(
            r.write("boiler", "pump", Value::Float(0.5)).await,
            Err(CommandError::InvalidValue(_))
        ));
        assert!(seen.try_recv().is_err(), "nothing reached the adapter");
    }

    #[tokio::test]
    async fn writes_outside_min_max_are_refused_in_words_before_the_adapter_sees_them() {
        let (r, mut seen) = router(DEFAULT_COMMAND_TIMEOUT, echo);
        let refused = |why: &str| Err(CommandError::Failed(AdapterError::Refused(why.into())));
        assert_eq!(
            r.write_text("boiler", "setpoint", "1e6").await,
            refused("1000000 °C is above the maximum 85 °C")
        );
        assert_eq!(
            r.write_text("boiler", "setpoint", "29.5").await,
            refused("29.5 °C is below the minimum 30 °C")
        );
        assert_eq!(
            r.write("boiler", "setpoint", Value::Int(-5)).await,
            refused("-5 °C is below the minimum 30 °C")
        );
        assert_eq!(
            r.write("boiler", "setpoint", Value::Float(f64::NAN)).await,
            refused("NaN is not a number")
        );
        assert_eq!(
            r.write("boiler", "level", Value::Int(11)).await,
            refused("11 is above the maximum 10")
        );
        assert_eq!(
            r.write_text("boiler", "setpoint", "85.5")
                .await
                .unwrap_err()
                .to_string(),
            "85.5 °C is above the maximum 85 °C"
        );
        assert!(seen.try_recv().is_err(), "nothing reached the adapter");

        // The limits themselves are allowed; a point without a `min` has none.
        assert_eq!(
            r.write_text("boiler", "setpoint", "30").await,
            Ok(Value::Float(30.0))
        );
        assert_eq!(
            r.write_text("boiler", "setpoint", "85").await,
            Ok(Value::Float(85.0))
        );
        assert_eq!(
            r.write("boiler", "level", Value::Float(10.0)).await,
            Ok(Value::Int(10))
        );
        assert_eq!(
            r.write_text("boiler", "level", "-1000").await,
            Ok(Value::Int(-1000))
        );
        let mut written = Vec::new();
        while let Ok((point, action)) = seen.try_recv() {
            written.push((point.to_string(), action));
        }
        assert_eq!(
            written,
            [
                ("setpoint".into(), Action::Write(Value::Float(30.0))),
                ("setpoint".into(), Action::Write(Value::Float(85.0))),
                ("level".into(), Action::Write(Value::Int(10))),
                ("level".into(), Action::Write(Value::Int(-1000))),
            ]
        );
    }

    #[tokio::test]
    async fn the_adapters_error_and_silence_reach_the_sender_in_words() {
        let busy = AdapterError::Unavailable("device busy".into());
        let (r, _seen) = router(DEFAULT_COMMAND_TIMEOUT, move |_| Some(Err(busy.clone())));
        let err = r.write_text("boiler", "pump", "off").await.unwrap_err();
        assert_eq!(
            err,
            CommandError::Failed(AdapterError::Unavailable("device busy".into()))
        );
        assert_eq!(err.to_string(), "device busy");
        let (r, _seen) = router(Duration::from_millis(50), |_| None);
        let err = r.write_text("boiler", "pump", "off").await.unwrap_err();
        assert!(matches!(err, CommandError::Timeout { .. }), "{err}");
        assert!(err.to_string().contains("did not answer"), "{err}");
    }

    #[tokio::test]
    async fn a_device_added_at_run_time_reaches_the_adapter_of_its_connection() {
        let dir = directory();
        let mut routes = CommandRoutes::new();
        let mut inbox = routes.register_connection(&ConnectionId::new("c").unwrap(), []);
        let r = routes.into_router(Arc::clone(&dir), DEFAULT_COMMAND_TIMEOUT);
        assert!(matches!(
            r.write_text("th-1", "pump", "on").await,
            Err(CommandError::UnknownDevice(_))
        ));
        let mut spec = (**dir.device("boiler").unwrap()).clone();
        spec.id = DeviceId::new("th-1").unwrap();
        dir.insert(spec).unwrap();
        tokio::spawn(async move {
            while let Some(c) = inbox.recv().await {
                let answer = match c.action {
                    Action::Write(v) if c.device.as_str() == "th-1" => Ok(v),
                    _ => Err(AdapterError::NotHere("unexpected".into())),
                };
                let _ = c.reply.send(answer);
            }
        });
        assert_eq!(
            r.write_text("th-1", "pump", "on").await,
            Ok(Value::Bool(true))
        );
    }

    #[tokio::test]
    async fn a_reload_reroutes_every_clone_of_the_router() {
        let c = ConnectionId::new("c").unwrap();
        let boiler = DeviceId::new("boiler").unwrap();
        let mut routes = CommandRoutes::new();
        let old = routes.register_connection(&c, [boiler.clone()]);
        let r = routes
            .clone()
            .into_router(directory(), DEFAULT_COMMAND_TIMEOUT);
        let held = r.clone();
        // The adapter restarts: its old inbox is forgotten, a new one serves.
        routes.remove_connection(&c);
        drop(old);
        let mut inbox = routes.register_connection(&c, [boiler]);
        r.reconfigure(routes.clone(), directory());
        tokio::spawn(async move {
            while let Some(cmd) = inbox.recv().await {
                let _ = cmd.reply.send(Ok(Value::Bool(true)));
            }
        });
        assert_eq!(
            held.write_text("boiler", "pump", "on").await,
            Ok(Value::Bool(true))
        );
        // The device is removed: unknown from now on.
        routes.remove_connection(&c);
        r.reconfigure(routes, Arc::new(Directory::new([])));
        assert!(matches!(
            held.write_text("boiler", "pump", "on").await,
            Err(CommandError::UnknownDevice(_))
        ));
    }

    #[tokio::test]
    async fn a_stopped_adapter_is_reported_not_waited_for() {
        let mut routes = CommandRoutes::new();
        drop(routes.register([DeviceId::new("boiler").unwrap()]));
        let r = routes.into_router(directory(), DEFAULT_COMMAND_TIMEOUT);
        assert!(matches!(
            r.write_text("boiler", "pump", "on").await,
            Err(CommandError::AdapterGone(_))
        ));
    }
}
