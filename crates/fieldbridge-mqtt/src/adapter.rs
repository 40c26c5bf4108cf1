//! The MQTT transport loop: one broker session per connection, messages
//! routed to devices and points, availability, writes, and the truth about
//! each device while the broker is away.
//!
//! The session ([`crate::session`]) owns rumqttc and its backoff; the
//! [`Router`] (synchronous, unit tested) turns messages into events and
//! commands into publishes; [`crate::writes`] tells which write a packet id
//! answers. This loop subscribes on the first ConnAck and on every ConnAck
//! without a session (rumqttc never resubscribes), re-subscribes
//! availability topics on every other ConnAck so that their retained
//! messages are sent again, and answers commands.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fieldbridge_core::adapter::{Adapter, AdapterContext, AdapterFuture};
use fieldbridge_core::device::AdapterDevice;
use fieldbridge_core::{AdapterError, ConnectionId, DeviceId, Directory};

use crate::config::{MqttConnection, MqttDevice, MqttPoint};
use crate::router::Router;
use crate::session::{self, Session, SessionEvent};
use crate::stats::MqttStats;
use crate::writes::{Gate, PendingWrite, WriteRequest, Writes};

/// The adapter of one `mqtt` connection.
#[derive(Debug)]
pub struct MqttAdapter {
    id: ConnectionId,
    client_id: String,
    settings: MqttConnection,
    devices: Vec<AdapterDevice<MqttDevice, MqttPoint>>,
    directory: Option<Arc<Directory>>,
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
        }
    }

    /// Where devices created by template rules are announced, so that core
    /// and sinks know them. Without it they are not created.
    pub fn with_directory(mut self, directory: Arc<Directory>) -> Self {
        self.directory = Some(directory);
        self
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

async fn run(adapter: MqttAdapter, mut ctx: AdapterContext) {
    let MqttAdapter {
        id,
        client_id,
        settings,
        devices,
        directory,
    } = adapter;
    let stats = MqttStats::new(id.clone(), Arc::clone(ctx.events.telemetry()));
    let mut router = Router::new(&settings, devices, directory, stats.clone());
    let Session {
        client,
        events: mut rx,
        task: poller,
        gate,
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
    let mut writes: Writes<PendingWrite> = Writes::default();
    let mut commands_open = true;

    loop {
        tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => break,
            ev = rx.recv() => {
                let Some(ev) = ev else { break };
                match ev {
                    SessionEvent::Error(e) => {
                        stats.connection_error();
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
                        for w in writes.connection_lost() {
                            let _ = w.reply.send(Err(lost()));
                        }
                    }
                    SessionEvent::ConnAck { session_present } => {
                        connected = true;
                        outage_reported = false;
                        writes.connected(session_present);
                        stats.connected();
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
                        stats.suback();
                        if refused > 0 {
                            tracing::error!(connection = %id, refused, "the broker refused subscriptions (check its ACL)");
                        }
                    }
                    SessionEvent::Sent { pkid } => {
                        if let Some(w) = writes.sent(pkid) {
                            tracing::debug!(connection = %id, device = %w.device, point = %w.point, "write sent (QoS 0)");
                            let _ = w.reply.send(Ok(w.value));
                        }
                    }
                    SessionEvent::PubAck { pkid, refused } => {
                        if let Some(w) = writes.acked(pkid) {
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
                if let Some(request) = router.command(c, connected) {
                    publish(&client, &gate, &mut writes, request);
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
    for w in writes.drain() {
        let _ = w.reply.send(Err(AdapterError::Unavailable(
            "the gateway is stopping".into(),
        )));
    }
}

/// A write whose fate is unknown: the link went before its acknowledgement.
fn lost() -> AdapterError {
    AdapterError::Unavailable("the connection to the MQTT broker was lost before the write was acknowledged; it may still be delivered".into())
}

/// Hands a write to rumqttc, or answers it at once if it cannot take it.
fn publish(
    client: &session::Client,
    gate: &Gate,
    writes: &mut Writes<PendingWrite>,
    request: WriteRequest,
) {
    let WriteRequest {
        topic,
        qos,
        retain,
        payload,
        write: w,
    } = request;
    match gate.publish(|| client.try_publish(topic.clone(), qos, retain, payload)) {
        Some(Ok(())) => {
            tracing::debug!(device = %w.device, point = %w.point, topic, "write queued");
            writes.queued(qos, w);
        }
        // The session lost the broker; this loop has not heard yet.
        None => {
            let _ = w.reply.send(Err(not_connected()));
        }
        Some(Err(e)) => {
            tracing::warn!(device = %w.device, point = %w.point, error = %e, "write not queued");
            let _ = w.reply.send(Err(AdapterError::Unavailable(format!(
                "the MQTT client is busy: {e}"
            ))));
        }
    }
}

/// The answer to a write while the broker is away.
pub(crate) fn not_connected() -> AdapterError {
    AdapterError::Unavailable("not connected to the MQTT broker; try again later".into())
}
