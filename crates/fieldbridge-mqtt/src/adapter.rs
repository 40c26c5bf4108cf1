//! The MQTT transport loop: one broker session per connection, messages
//! routed to devices and points, availability, writes, and the truth about
//! each device while the broker is away.
//!
//! The session ([`crate::session`]) owns rumqttc and its backoff; this
//! module's task routes messages ([`Router`], synchronous and unit tested),
//! subscribes on the first ConnAck and on every ConnAck without a session
//! (rumqttc never resubscribes), re-subscribes availability topics on every
//! other ConnAck so that their retained messages are sent again, and
//! answers commands.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use fieldbridge_core::adapter::{Adapter, AdapterContext, AdapterFuture};
use fieldbridge_core::device::AdapterDevice;
use fieldbridge_core::files;
use fieldbridge_core::{
    Action, AdapterError, Command, ConnectionId, DeviceEvent, DeviceId, DeviceSpec, DeviceStatus,
    Directory, EventKind, PointId, Quality, Reading, Sample, Value,
};
use rumqttc::QoS;
use tokio::sync::oneshot;

use crate::config::{
    DEFAULT_MAX_DEVICES, DEFAULT_MAX_PAYLOAD, MqttConnection, MqttDevice, MqttPoint,
};
use crate::payload::{Cause, Payload, command_payload};
use crate::session::{self, Client, Session, SessionEvent};
use crate::topic::Filter;

/// Refused template ids remembered (to log each once); beyond, only counted.
const MAX_REMEMBERED_REFUSALS: usize = 1000;

/// Why the adapter could not set up its connection.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    /// The url in the configuration.
    #[error("{0}")]
    Url(String),
    /// A file named in the configuration (password, CA, certificate, key):
    /// missing, unreadable, not a regular file, or too large.
    #[error("{what}: {source}{}", hint(what, source))]
    File {
        /// What the file is for (the key naming it).
        what: &'static str,
        /// Why, with the path.
        source: fieldbridge_core::files::FileError,
    },
    /// TLS settings that rustls refuses.
    #[error("TLS: {0}")]
    Tls(String),
}

/// Counters of one adapter, shared with whoever wants to look (tests,
/// benches, future metrics).
#[derive(Debug, Default)]
pub struct MqttStats {
    inner: Mutex<StatsInner>,
}

#[derive(Debug, Default, Clone)]
struct StatsInner {
    messages: u64,
    readings: u64,
    unmatched: u64,
    connects: u64,
    subacks: u64,
    connection_errors: u64,
    failures: BTreeMap<(String, Cause), u64>,
    refused_devices: u64,
}

impl MqttStats {
    fn with<R>(&self, f: impl FnOnce(&mut StatsInner) -> R) -> R {
        f(&mut self.inner.lock().unwrap_or_else(|p| p.into_inner()))
    }
    /// Messages received from the broker.
    pub fn messages(&self) -> u64 {
        self.with(|s| s.messages)
    }
    /// Good readings extracted.
    pub fn readings(&self) -> u64 {
        self.with(|s| s.readings)
    }
    /// Messages that matched no device.
    pub fn unmatched(&self) -> u64 {
        self.with(|s| s.unmatched)
    }
    /// ConnAcks received (first connection and every reconnection).
    pub fn connects(&self) -> u64 {
        self.with(|s| s.connects)
    }
    /// SUBACKs received: after the n-th, the subscriptions asked for on
    /// the n-th ConnAck are in place.
    pub fn subacks(&self) -> u64 {
        self.with(|s| s.subacks)
    }
    /// Connection errors (each followed by a backoff).
    pub fn connection_errors(&self) -> u64 {
        self.with(|s| s.connection_errors)
    }
    /// Payload failures of `device` for `cause`.
    pub fn failures(&self, device: &str, cause: Cause) -> u64 {
        self.with(|s| {
            s.failures
                .get(&(device.to_owned(), cause))
                .copied()
                .unwrap_or(0)
        })
    }
    /// Ids a template rule did not create (invalid, taken, or over the cap).
    pub fn refused_devices(&self) -> u64 {
        self.with(|s| s.refused_devices)
    }
}

/// The adapter of one `mqtt` connection.
#[derive(Debug)]
pub struct MqttAdapter {
    id: ConnectionId,
    client_id: String,
    settings: MqttConnection,
    devices: Vec<AdapterDevice<MqttDevice, MqttPoint>>,
    directory: Option<Arc<Directory>>,
    stats: Arc<MqttStats>,
}

impl MqttAdapter {
    /// An adapter for connection `id` of gateway `gateway` (whose id is
    /// part of the default client id) and its devices.
    pub fn new(
        gateway: &str,
        id: ConnectionId,
        settings: MqttConnection,
        devices: Vec<AdapterDevice<MqttDevice, MqttPoint>>,
    ) -> Self {
        Self {
            client_id: settings.client_id(gateway, id.as_str()),
            id,
            settings,
            devices,
            directory: None,
            stats: Arc::default(),
        }
    }

    /// Where devices created by template rules are announced, so that core
    /// and sinks know them. Without it they are not created.
    pub fn with_directory(mut self, directory: Arc<Directory>) -> Self {
        self.directory = Some(directory);
        self
    }

    /// The adapter's counters.
    pub fn stats(&self) -> Arc<MqttStats> {
        Arc::clone(&self.stats)
    }

    /// The client id this adapter connects with.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }
}

impl Adapter for MqttAdapter {
    fn name(&self) -> String {
        format!("mqtt {}", self.id)
    }

    fn devices(&self) -> Vec<DeviceId> {
        self.devices
            .iter()
            .filter(|d| !d.config.is_template())
            .map(|d| d.spec.id.clone())
            .collect()
    }

    fn run(self: Box<Self>, ctx: AdapterContext) -> AdapterFuture {
        // Every event logged by the router (payload problems, template
        // refusals) carries the connection through this span.
        let span = tracing::info_span!("mqtt", connection = %self.id);
        Box::pin(tracing::Instrument::instrument(run(*self, ctx), span))
    }
}

/// The most a PEM file (`ca_file`, `client_cert`, `client_key`) may hold:
/// a whole system CA bundle is about 200 KiB.
pub const PEM_FILE_LIMIT: u64 = files::MIB;
/// The most `password_file` may hold.
pub const PASSWORD_FILE_LIMIT: u64 = 4 * files::KIB;

fn hint(what: &str, e: &files::FileError) -> &'static str {
    match (what, e.problem()) {
        ("password_file", files::Problem::TooLarge(_)) => ": is this the password?",
        (_, files::Problem::TooLarge(_)) => ": is this a PEM file?",
        _ => "",
    }
}

fn read_file(what: &'static str, path: &std::path::Path) -> Result<Vec<u8>, MqttError> {
    files::read_limited(path, PEM_FILE_LIMIT).map_err(|source| MqttError::File { what, source })
}

/// rustls with the ring provider: the system's roots or `ca_file`, and
/// the client certificate if there is one.
pub(crate) fn tls_config(settings: &MqttConnection) -> Result<rustls::ClientConfig, MqttError> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let tls = |e: String| MqttError::Tls(e);
    let mut roots = rustls::RootCertStore::empty();
    match &settings.ca_file {
        Some(path) => {
            let pem = read_file("ca_file", path)?;
            let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut pem.as_slice())
                .collect::<Result<_, _>>()
                .map_err(|e| tls(format!("ca_file {}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(tls(format!(
                    "ca_file {} holds no PEM certificate",
                    path.display()
                )));
            }
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| tls(format!("ca_file {}: {e}", path.display())))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(tls(
                    "no system root certificates found (install ca-certificates, or set ca_file)"
                        .into(),
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(e.to_string()))?
        .with_root_certificates(roots);
    match (&settings.client_cert, &settings.client_key) {
        (Some(cert), Some(key)) => {
            let pem = read_file("client_cert", cert)?;
            let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut pem.as_slice())
                .collect::<Result<_, _>>()
                .map_err(|e| tls(format!("client_cert {}: {e}", cert.display())))?;
            let pem = read_file("client_key", key)?;
            let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut pem.as_slice())
                .map_err(|e| tls(format!("client_key {}: {e}", key.display())))?
                .ok_or_else(|| tls(format!("client_key {} holds no PEM key", key.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| tls(e.to_string()))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

/// A write waiting for its publish to be sent or acknowledged.
#[derive(Debug)]
struct PendingWrite {
    value: Value,
    reply: oneshot::Sender<Result<Value, AdapterError>>,
    device: DeviceId,
    point: PointId,
}

async fn run(adapter: MqttAdapter, mut ctx: AdapterContext) {
    let MqttAdapter {
        id,
        client_id,
        settings,
        devices,
        directory,
        stats,
    } = adapter;
    let mut router = Router::new(&settings, devices, directory, Arc::clone(&stats));
    let Session {
        client,
        events: mut rx,
        task: poller,
    } = match session::start(&settings, &client_id) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(connection = %id, error = %e, "MQTT connection cannot be set up");
            let reason = format!("MQTT connection {id}: {e}");
            for ev in router.all_offline(&reason) {
                ctx.events.send(ev).await;
            }
            // Stay, answering commands, until the gateway stops.
            loop {
                tokio::select! {
                    _ = ctx.shutdown.cancelled() => return,
                    c = ctx.commands.recv() => match c {
                        Some(c) => { let _ = c.reply.send(Err(AdapterError::Unavailable(reason.clone()))); }
                        None => { ctx.shutdown.cancelled().await; return; }
                    },
                }
            }
        }
    };
    tracing::info!(connection = %id, url = %settings.url, client_id = %client_id, protocol = settings.protocol().name(), clean_session = settings.clean_session, "MQTT connecting");

    let mut connected = false;
    let mut subscribed_once = false;
    let mut outage_reported = false;
    // Writes handed to rumqttc, in order, not yet given a packet id.
    let mut unsent: VecDeque<(QoS, PendingWrite)> = VecDeque::new();
    // QoS 1 writes sent, waiting for PUBACK.
    let mut inflight: HashMap<u16, PendingWrite> = HashMap::new();
    // Writes we already answered (connection lost) that rumqttc may still
    // send after reconnecting: ignore their events.
    let mut abandoned: HashSet<u16> = HashSet::new();
    let mut orphans: usize = 0;
    let mut commands_open = true;

    loop {
        tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => break,
            ev = rx.recv() => {
                let Some(ev) = ev else { break };
                match ev {
                    SessionEvent::Error(e) => {
                        stats.with(|s| s.connection_errors += 1);
                        let was_connected = std::mem::replace(&mut connected, false);
                        if was_connected || !outage_reported {
                            tracing::warn!(connection = %id, error = %e, "MQTT broker unreachable; retrying with backoff");
                            outage_reported = true;
                            let reason = format!("MQTT broker {} unreachable: {e}", settings.url);
                            for ev in router.all_offline(&reason) {
                                ctx.events.send(ev).await;
                            }
                        } else {
                            tracing::debug!(connection = %id, error = %e, "MQTT broker still unreachable");
                        }
                        for (_, w) in unsent.drain(..) {
                            orphans += 1;
                            let _ = w.reply.send(Err(lost()));
                        }
                        for (pkid, w) in inflight.drain() {
                            abandoned.insert(pkid);
                            let _ = w.reply.send(Err(lost()));
                        }
                    }
                    SessionEvent::ConnAck { session_present } => {
                        connected = true;
                        outage_reported = false;
                        stats.with(|s| s.connects += 1);
                        // Everything on the first connection (a session kept
                        // from an earlier run may predate this configuration)
                        // and whenever the broker kept no session; otherwise
                        // the availability topics only, so that their
                        // retained messages are sent again.
                        let subs = if session_present && subscribed_once {
                            router.availability_subscriptions()
                        } else {
                            router.subscriptions()
                        };
                        subscribed_once = true;
                        tracing::info!(connection = %id, session_present, subscriptions = subs.len(), "MQTT connected");
                        if !subs.is_empty()
                            && let Err(e) = client.try_subscribe_many(&subs)
                        {
                            tracing::error!(connection = %id, error = %e, "cannot queue MQTT subscriptions");
                        }
                    }
                    SessionEvent::Publish { topic, payload } => {
                        let (events, created) = router.on_message(&topic, &payload, SystemTime::now());
                        for spec in created {
                            tracing::info!(connection = %id, device = %spec.id, "device created by a template rule");
                        }
                        for ev in events {
                            ctx.events.send(ev).await;
                        }
                    }
                    SessionEvent::SubAck { refused } => {
                        stats.with(|s| s.subacks += 1);
                        if refused > 0 {
                            tracing::error!(connection = %id, refused, "the broker refused subscriptions (check its ACL)");
                        }
                    }
                    SessionEvent::Sent { pkid } => {
                        if abandoned.remove(&pkid) {
                            continue;
                        }
                        if orphans > 0 {
                            orphans -= 1;
                            continue;
                        }
                        if let Some((qos, w)) = unsent.pop_front() {
                            if qos == QoS::AtMostOnce {
                                tracing::debug!(connection = %id, device = %w.device, point = %w.point, "write sent (QoS 0)");
                                let _ = w.reply.send(Ok(w.value));
                            } else {
                                inflight.insert(pkid, w);
                            }
                        }
                    }
                    SessionEvent::PubAck { pkid, refused } => {
                        if let Some(w) = inflight.remove(&pkid) {
                            match refused {
                                None => {
                                    tracing::debug!(connection = %id, device = %w.device, point = %w.point, "write acknowledged by the broker");
                                    let _ = w.reply.send(Ok(w.value));
                                }
                                Some(why) => {
                                    tracing::warn!(connection = %id, device = %w.device, point = %w.point, error = %why, "write refused by the broker");
                                    let _ = w.reply.send(Err(AdapterError::Refused(why)));
                                }
                            }
                        }
                    }
                }
            }
            c = ctx.commands.recv(), if commands_open => {
                let Some(c) = c else { commands_open = false; continue };
                if let Some(w) = router.command(c, connected, &client) {
                    unsent.push_back(w);
                }
            }
        }
    }
    // Leave politely (a DISCONNECT, so the broker does not publish our will
    // and keeps the session), but do not wait long for it.
    client.try_disconnect();
    let drained = tokio::time::timeout(Duration::from_secs(1), async {
        while let Some(ev) = rx.recv().await {
            if matches!(ev, SessionEvent::Error(_)) {
                break;
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::debug!(connection = %id, "MQTT disconnect not confirmed in time");
    }
    poller.abort();
    for (_, w) in unsent {
        let _ = w.reply.send(Err(AdapterError::Unavailable(
            "the gateway is stopping".into(),
        )));
    }
    for (_, w) in inflight {
        let _ = w.reply.send(Err(AdapterError::Unavailable(
            "the gateway is stopping".into(),
        )));
    }
}

/// A write whose fate is unknown: the link went before its acknowledgement.
fn lost() -> AdapterError {
    AdapterError::Unavailable("the connection to the MQTT broker was lost before the write was acknowledged; it may still be delivered".into())
}

/// One source of messages: a filter and who reads it.
#[derive(Debug)]
struct Route {
    filter: Filter,
    qos: QoS,
    rule: usize,
    target: Target,
}

#[derive(Debug)]
enum Target {
    /// These points of the rule's device(s) read the message.
    Points(Vec<PointId>),
    /// The rule's availability topic.
    Availability,
}

/// A device rule from the configuration: one device, or a template.
#[derive(Debug)]
struct Rule {
    spec: Arc<DeviceSpec>,
    config: MqttDevice,
    points: BTreeMap<PointId, MqttPoint>,
    template: bool,
    max_devices: usize,
    created: usize,
}

/// What the adapter remembers of one (configured or created) device.
#[derive(Debug, Default)]
struct DeviceState {
    last: HashMap<PointId, Value>,
    warned: HashSet<Cause>,
    /// The availability topic said offline last. Meanwhile readings (often retained ones) are uncertain,
    /// so that they do not make the device look online.
    offline: bool,
}

/// Topic routing and payload extraction, without I/O: messages in,
/// events out.
#[derive(Debug)]
pub struct Router {
    rules: Vec<Rule>,
    routes: Vec<Route>,
    /// Concrete devices: configured ones, and those templates created.
    devices: HashMap<DeviceId, (usize, DeviceState)>,
    /// Template id → device, per rule.
    instances: HashMap<(usize, String), DeviceId>,
    directory: Option<Arc<Directory>>,
    max_payload: usize,
    stats: Arc<MqttStats>,
    warned_refusals: HashSet<(usize, String)>,
}

impl Router {
    /// Routes for `devices`; templates create devices in `directory`.
    pub fn new(
        settings: &MqttConnection,
        devices: Vec<AdapterDevice<MqttDevice, MqttPoint>>,
        directory: Option<Arc<Directory>>,
        stats: Arc<MqttStats>,
    ) -> Self {
        let mut rules = Vec::new();
        let mut routes = Vec::new();
        let mut concrete = HashMap::new();
        for (i, d) in devices.into_iter().enumerate() {
            let qos: QoS = d.config.qos.into();
            let device_filter = d
                .config
                .topic
                .as_deref()
                .and_then(|t| Filter::parse(t).ok());
            let template = device_filter.as_ref().is_some_and(Filter::is_template);
            // Points reading the device topic, and points with their own.
            let mut on_device = Vec::new();
            let mut own: BTreeMap<String, Vec<PointId>> = BTreeMap::new();
            for (pid, p) in &d.points {
                match &p.topic {
                    Some(t) => own.entry(t.clone()).or_default().push(pid.clone()),
                    None => on_device.push(pid.clone()),
                }
            }
            if let Some(f) = device_filter
                && !on_device.is_empty()
            {
                routes.push(Route {
                    filter: f,
                    qos,
                    rule: i,
                    target: Target::Points(on_device),
                });
            }
            for (t, pids) in own {
                if let Ok(f) = Filter::parse(&t) {
                    routes.push(Route {
                        filter: f,
                        qos,
                        rule: i,
                        target: Target::Points(pids),
                    });
                }
            }
            if let Some(a) = &d.config.availability
                && let Ok(f) = Filter::parse(&a.topic)
            {
                routes.push(Route {
                    filter: f,
                    qos,
                    rule: i,
                    target: Target::Availability,
                });
            }
            if !template {
                concrete.insert(d.spec.id.clone(), (i, DeviceState::default()));
            }
            rules.push(Rule {
                max_devices: d.config.max_devices.unwrap_or(DEFAULT_MAX_DEVICES),
                spec: d.spec,
                config: d.config,
                points: d.points,
                template,
                created: 0,
            });
        }
        Self {
            rules,
            routes,
            devices: concrete,
            instances: HashMap::new(),
            directory,
            max_payload: settings.max_payload.unwrap_or(DEFAULT_MAX_PAYLOAD),
            stats,
            warned_refusals: HashSet::new(),
        }
    }

    /// Every filter to subscribe, with its QoS (the highest asked for).
    pub fn subscriptions(&self) -> Vec<(String, QoS)> {
        self.collect_subscriptions(|_| true)
    }

    /// Availability filters only (re-subscribed on every connection so that
    /// the broker sends their retained messages again).
    pub fn availability_subscriptions(&self) -> Vec<(String, QoS)> {
        self.collect_subscriptions(|r| matches!(r.target, Target::Availability))
    }

    fn collect_subscriptions(&self, keep: impl Fn(&Route) -> bool) -> Vec<(String, QoS)> {
        let mut out: BTreeMap<String, QoS> = BTreeMap::new();
        for r in self.routes.iter().filter(|r| keep(r)) {
            let q = out
                .entry(r.filter.subscription().to_owned())
                .or_insert(r.qos);
            if r.qos == QoS::AtLeastOnce {
                *q = QoS::AtLeastOnce;
            }
        }
        out.into_iter().collect()
    }

    /// Every known device offline, for `reason`.
    pub fn all_offline(&self, reason: &str) -> Vec<DeviceEvent> {
        let mut ids: BTreeSet<&DeviceId> = self.devices.keys().collect();
        ids.extend(self.instances.values());
        ids.into_iter()
            .map(|d| {
                status(
                    d,
                    DeviceStatus::Offline {
                        reason: reason.into(),
                    },
                )
            })
            .collect()
    }

    /// Routes one message; returns the events, and the devices a template
    /// created for it.
    pub fn on_message(
        &mut self,
        topic: &str,
        payload: &[u8],
        now: SystemTime,
    ) -> (Vec<DeviceEvent>, Vec<DeviceSpec>) {
        self.stats.with(|s| s.messages += 1);
        let mut events = Vec::new();
        let mut created = Vec::new();
        let mut matched = false;
        let mut parsed = Payload::new(payload, self.max_payload);
        for ri in 0..self.routes.len() {
            let route = &self.routes[ri];
            let Some(captured) = route.filter.capture(topic) else {
                continue;
            };
            matched = true;
            let rule = route.rule;
            let device = match captured {
                Some(text) if self.rules[rule].template => {
                    match self.instance(rule, text, &mut created) {
                        Some(d) => d,
                        None => continue,
                    }
                }
                _ => self.rules[rule].spec.id.clone(),
            };
            if payload.is_empty() {
                // An empty retained message clears a topic: nothing to read.
                tracing::debug!(device = %device, topic, "empty payload ignored");
                continue;
            }
            match &self.routes[ri].target {
                Target::Availability => {
                    if let Some(ev) = self.availability(rule, &device, payload, now) {
                        events.push(ev);
                    }
                }
                Target::Points(pids) => {
                    let pids = pids.clone();
                    self.points(rule, &device, &pids, &mut parsed, now, &mut events);
                }
            }
        }
        if !matched {
            self.stats.with(|s| s.unmatched += 1);
            tracing::trace!(topic, "message matches no device");
        }
        (events, created)
    }

    /// The device a template rule has (or now creates) for `text`.
    fn instance(
        &mut self,
        rule: usize,
        text: &str,
        created: &mut Vec<DeviceSpec>,
    ) -> Option<DeviceId> {
        if let Some(d) = self.instances.get(&(rule, text.to_owned())) {
            return Some(d.clone());
        }
        let r = &self.rules[rule];
        let refuse = |why: String, this: &mut Self| {
            this.stats.with(|s| s.refused_devices += 1);
            // Logged once per id, remembering a bounded number of ids: a
            // publisher inventing ids must not grow our memory.
            if this.warned_refusals.len() < MAX_REMEMBERED_REFUSALS
                && this.warned_refusals.insert((rule, text.to_owned()))
            {
                tracing::warn!(device = %this.rules[rule].spec.id, id = text, "template rule does not create this device: {why}");
            }
            None
        };
        if r.created >= r.max_devices {
            let why = format!("the rule already created max_devices ({})", r.max_devices);
            return refuse(why, self);
        }
        let id = match DeviceId::new(text) {
            Ok(id) => id,
            Err(e) => return refuse(format!("{text:?} is not a valid device id: {e}"), self),
        };
        let Some(directory) = self.directory.clone() else {
            return refuse("devices cannot be created at run time here".into(), self);
        };
        if self.devices.contains_key(&id) || directory.device(id.as_str()).is_some() {
            return refuse(format!("a device {id} exists already"), self);
        }
        let mut spec = (*r.spec).clone();
        spec.id = id.clone();
        // "Zigbee sensors" names the rule; its devices are "Zigbee sensors hall".
        spec.settings.name = r.spec.settings.name.as_ref().map(|n| format!("{n} {id}"));
        if let Err(e) = directory.insert(spec.clone()) {
            return refuse(e.to_string(), self);
        }
        self.rules[rule].created += 1;
        self.instances.insert((rule, text.to_owned()), id.clone());
        self.devices
            .insert(id.clone(), (rule, DeviceState::default()));
        created.push(spec);
        Some(id)
    }

    fn availability(
        &mut self,
        rule: usize,
        device: &DeviceId,
        payload: &[u8],
        now: SystemTime,
    ) -> Option<DeviceEvent> {
        let a = self.rules[rule].config.availability.as_ref()?;
        let raw = String::from_utf8_lossy(payload);
        // Plain text (`Online`), or Zigbee2MQTT's `{"state":"online"}`.
        let from_json = serde_json::from_slice::<serde_json::Value>(payload)
            .ok()
            .and_then(|v| v.get("state")?.as_str().map(str::to_owned));
        let text = from_json.as_deref().unwrap_or(raw.trim());
        let s = if text.eq_ignore_ascii_case(&a.online) {
            DeviceStatus::Online
        } else if text.eq_ignore_ascii_case(&a.offline) {
            DeviceStatus::Offline {
                reason: format!(
                    "the device reported {text:?} on {}",
                    a.topic.replace("{device}", device.as_str())
                ),
            }
        } else {
            let (_, state) = self.devices.get_mut(device)?;
            if state.warned.insert(Cause::WrongType) {
                tracing::warn!(device = %device, payload = %text.chars().take(40).collect::<String>(), "availability payload is neither the online nor the offline one; ignored");
            }
            return None;
        };
        if let Some((_, state)) = self.devices.get_mut(device) {
            state.offline = matches!(s, DeviceStatus::Offline { .. });
        }
        Some(DeviceEvent {
            device: device.clone(),
            at: now,
            kind: EventKind::Status(s),
        })
    }

    /// Reads `pids` from the payload as samples of `device`, each at the
    /// payload's timestamp if it has one (else `now`), into the message's one
    /// readings event for the device.
    fn points(
        &mut self,
        rule: usize,
        device: &DeviceId,
        pids: &[PointId],
        payload: &mut Payload<'_>,
        now: SystemTime,
        events: &mut Vec<DeviceEvent>,
    ) {
        let r = &self.rules[rule];
        let Some((_, state)) = self.devices.get_mut(device) else {
            return;
        };
        let mut at = now;
        if let Some(ptr) = &r.config.timestamp {
            match payload.timestamp(ptr) {
                Ok(Some(t)) => at = t,
                Ok(None) => {}
                // The points say what is wrong with the payload itself.
                Err(f) if f.cause != Cause::BadTimestamp => {}
                Err(f) => note_failure(&self.stats, state, device, None, f.cause, &f.message),
            }
        }
        let mut samples = Vec::with_capacity(pids.len());
        for pid in pids {
            let Some(point) = r.points.get(pid) else {
                continue;
            };
            let reading = match payload.value(point) {
                Ok(v) => {
                    self.stats.with(|s| s.readings += 1);
                    state.last.insert(pid.clone(), v.clone());
                    Reading {
                        point: pid.clone(),
                        value: v,
                        unit: None,
                        quality: if state.offline {
                            Quality::Uncertain
                        } else {
                            Quality::Good
                        },
                    }
                }
                Err(f) => {
                    note_failure(&self.stats, state, device, Some(pid), f.cause, &f.message);
                    // The point keeps its last value, now bad; without one
                    // there is nothing to report.
                    let Some(last) = state.last.get(pid) else {
                        continue;
                    };
                    Reading {
                        point: pid.clone(),
                        value: last.clone(),
                        unit: None,
                        quality: Quality::Bad { reason: f.message },
                    }
                }
            };
            samples.push(Sample { at, reading });
        }
        if samples.is_empty() {
            return;
        }
        // One message, one event per device: a device this message already
        // reached through another route gets these samples in that event.
        let existing = events
            .iter_mut()
            .find(|e| e.device == *device && matches!(e.kind, EventKind::Readings(_)));
        match existing {
            Some(DeviceEvent {
                kind: EventKind::Readings(already),
                ..
            }) => already.extend(samples),
            _ => events.push(DeviceEvent {
                device: device.clone(),
                at: now,
                kind: EventKind::Readings(samples),
            }),
        }
    }

    /// Handles a command: answers it now, or returns the write waiting for
    /// the broker.
    fn command(
        &mut self,
        c: Command,
        connected: bool,
        client: &Client,
    ) -> Option<(QoS, PendingWrite)> {
        let Some((rule, state)) = self.devices.get(&c.device) else {
            let _ = c.reply.send(Err(AdapterError::NotHere(format!(
                "{} is not on this connection",
                c.device
            ))));
            return None;
        };
        let Some(point) = self.rules[*rule].points.get(&c.point) else {
            let _ = c.reply.send(Err(AdapterError::NotHere(format!(
                "{} has no point {}",
                c.device, c.point
            ))));
            return None;
        };
        match c.action {
            Action::Read => {
                // MQTT devices push; the freshest value is the last one heard.
                let answer = state.last.get(&c.point).cloned().ok_or_else(|| {
                    AdapterError::Unavailable(format!(
                        "no value heard from {}.{} yet",
                        c.device, c.point
                    ))
                });
                let _ = c.reply.send(answer);
                None
            }
            Action::Write(value) => {
                let Some(topic) = &point.command_topic else {
                    let _ = c.reply.send(Err(AdapterError::Unsupported(format!(
                        "{}.{} has no command_topic to publish writes on",
                        c.device, c.point
                    ))));
                    return None;
                };
                if !connected {
                    let _ = c.reply.send(Err(AdapterError::Unavailable(
                        "not connected to the MQTT broker; try again later".into(),
                    )));
                    return None;
                }
                let topic = topic.replace("{device}", c.device.as_str());
                let payload = command_payload(&value, point);
                let qos: QoS = point.qos.into();
                match client.try_publish(topic.clone(), qos, point.retain, payload.into_bytes()) {
                    Ok(()) => {
                        tracing::debug!(device = %c.device, point = %c.point, topic, "write queued");
                        Some((
                            qos,
                            PendingWrite {
                                value,
                                reply: c.reply,
                                device: c.device,
                                point: c.point,
                            },
                        ))
                    }
                    Err(e) => {
                        tracing::warn!(device = %c.device, point = %c.point, error = %e, "write not queued");
                        let _ = c.reply.send(Err(AdapterError::Unavailable(format!(
                            "the MQTT client is busy: {e}"
                        ))));
                        None
                    }
                }
            }
        }
    }
}

fn status(device: &DeviceId, s: DeviceStatus) -> DeviceEvent {
    DeviceEvent {
        device: device.clone(),
        at: SystemTime::now(),
        kind: EventKind::Status(s),
    }
}

/// Counts a payload failure, and logs it the first time per device and cause.
fn note_failure(
    stats: &MqttStats,
    state: &mut DeviceState,
    device: &DeviceId,
    point: Option<&PointId>,
    cause: Cause,
    message: &str,
) {
    stats.with(|s| *s.failures.entry((device.to_string(), cause)).or_default() += 1);
    if state.warned.insert(cause) {
        let point = point.map(PointId::as_str).unwrap_or("");
        tracing::warn!(device = %device, point, cause = cause.name(), error = message, "payload unusable; the point keeps its last value with bad quality (logged once per device and cause)");
    }
}

#[cfg(test)]
mod tests;
