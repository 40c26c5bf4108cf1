//! The broker session on rumqttc, for MQTT 3.1.1 and MQTT 5 alike: the
//! adapter sees one [`Client`] and one stream of [`SessionEvent`]s.
//!
//! rumqttc's event loop runs in its own task, which sleeps with capped
//! exponential backoff and jitter after every connection error (rumqttc
//! itself would retry at once, thousands of times a second) and hands
//! events to the adapter through a bounded channel.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fieldbridge_core::backoff::Backoff;
use rumqttc::QoS;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::{DEFAULT_KEEP_ALIVE, MqttConnection, Protocol};
use crate::error::MqttError;
use crate::writes::Gate;

/// First retry delay after a connection error; doubles up to [`BACKOFF_CAP`].
pub const BACKOFF_START: Duration = Duration::from_millis(250);
/// Longest wait between connection attempts.
pub const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// Requests (publishes, subscribes) queued towards rumqttc's event loop.
pub const REQUEST_QUEUE: usize = 256;
/// Events queued from the event loop task to the adapter task.
const EVENT_QUEUE: usize = 256;
/// Largest MQTT packet accepted from the broker. Larger than any sane
/// payload, so that an oversized message is read and judged (its points
/// turn bad) rather than tearing the connection down, after which the
/// broker would deliver it again, for ever.
const MAX_INCOMING_PACKET: usize = 256 * 1024 * 1024;
/// Default QoS 1 messages in flight each way.
const DEFAULT_INFLIGHT: u16 = 100;

/// What the session tells the adapter, whatever the protocol version.
#[derive(Debug)]
pub enum SessionEvent {
    /// Connected; whether the broker kept our session.
    ConnAck {
        /// The broker kept our subscriptions and queued messages.
        session_present: bool,
    },
    /// A message.
    Publish {
        /// Its topic.
        topic: String,
        /// Its payload.
        payload: Bytes,
    },
    /// Subscriptions answered; how many were refused.
    SubAck {
        /// Refused filters.
        refused: usize,
    },
    /// A QoS 1 publish of ours was acknowledged (MQTT 5: maybe refused).
    PubAck {
        /// Its packet id.
        pkid: u16,
        /// MQTT 5: the broker's refusal.
        refused: Option<String>,
    },
    /// A publish of ours went out with this packet id (0 for QoS 0).
    Sent {
        /// Its packet id.
        pkid: u16,
    },
    /// The connection failed; the session waits (backoff) and retries.
    Error(String),
}

/// The client side of the session.
#[derive(Debug, Clone)]
pub enum Client {
    /// MQTT 3.1.1.
    V4(rumqttc::AsyncClient),
    /// MQTT 5.
    V5(rumqttc::v5::AsyncClient),
}

fn qos5(q: QoS) -> rumqttc::v5::mqttbytes::QoS {
    match q {
        QoS::AtMostOnce => rumqttc::v5::mqttbytes::QoS::AtMostOnce,
        QoS::AtLeastOnce => rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
        QoS::ExactlyOnce => rumqttc::v5::mqttbytes::QoS::ExactlyOnce,
    }
}

impl Client {
    /// Queues one SUBSCRIBE for all `filters`.
    pub fn try_subscribe_many(&self, filters: &[(String, QoS)]) -> Result<(), String> {
        match self {
            Client::V4(c) => c
                .try_subscribe_many(
                    filters
                        .iter()
                        .map(|(f, q)| rumqttc::SubscribeFilter::new(f.clone(), *q)),
                )
                .map_err(|e| e.to_string()),
            Client::V5(c) => c
                .try_subscribe_many(
                    filters
                        .iter()
                        .map(|(f, q)| rumqttc::v5::mqttbytes::v5::Filter::new(f.clone(), qos5(*q))),
                )
                .map_err(|e| e.to_string()),
        }
    }

    /// Queues a publish.
    pub fn try_publish(
        &self,
        topic: String,
        qos: QoS,
        retain: bool,
        payload: Vec<u8>,
    ) -> Result<(), String> {
        match self {
            Client::V4(c) => c
                .try_publish(topic, qos, retain, payload)
                .map_err(|e| e.to_string()),
            Client::V5(c) => c
                .try_publish(topic, qos5(qos), retain, payload)
                .map_err(|e| e.to_string()),
        }
    }

    /// Queues a DISCONNECT.
    pub fn try_disconnect(&self) {
        let _ = match self {
            Client::V4(c) => c.try_disconnect().map_err(|e| e.to_string()),
            Client::V5(c) => c.try_disconnect().map_err(|e| e.to_string()),
        };
    }
}

/// The password from `password` or `password_file`.
fn password(settings: &MqttConnection) -> Result<Option<String>, MqttError> {
    match (&settings.password, &settings.password_file) {
        (Some(p), _) => Ok(Some(p.clone())),
        (None, Some(path)) => Ok(Some(
            fieldbridge_core::files::read_text_limited(path, crate::tls::PASSWORD_FILE_LIMIT)
                .map_err(|source| MqttError::File {
                    what: "password_file",
                    source,
                })?
                .trim_end_matches(['\r', '\n'])
                .to_owned(),
        )),
        (None, None) => Ok(None),
    }
}

/// A running session: its client, its events, and the task polling it.
pub struct Session {
    /// Publishes and subscribes.
    pub client: Client,
    /// What happens.
    pub events: mpsc::Receiver<SessionEvent>,
    /// The event loop task (abort it to stop).
    pub task: JoinHandle<()>,
    /// Open while connected; publish through it (see [`crate::writes`]).
    pub gate: Arc<Gate>,
}

/// Starts a session (reads the password and TLS files first).
pub fn start(settings: &MqttConnection, client_id: &str) -> Result<Session, MqttError> {
    let url = &settings.url;
    let password = password(settings)?;
    let transport = if url.tls {
        Some(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(Arc::new(crate::tls::tls_config(settings)?)),
        ))
    } else {
        None
    };
    let keep_alive = settings.keep_alive.unwrap_or(DEFAULT_KEEP_ALIVE);
    let inflight = settings.max_inflight.unwrap_or(DEFAULT_INFLIGHT);
    let (tx, events) = mpsc::channel(EVENT_QUEUE);
    let gate = Arc::new(Gate::default());
    let (client, task) = match settings.protocol() {
        Protocol::V311 => {
            let mut o = rumqttc::MqttOptions::new(client_id, url.host.clone(), url.port);
            o.set_keep_alive(keep_alive);
            o.set_clean_session(settings.clean_session);
            o.set_inflight(inflight);
            o.set_max_packet_size(MAX_INCOMING_PACKET, MAX_INCOMING_PACKET);
            o.set_request_channel_capacity(REQUEST_QUEUE);
            if let Some(user) = &settings.username {
                o.set_credentials(user.clone(), password.unwrap_or_default());
            }
            if let Some(t) = transport {
                o.set_transport(t);
            }
            let (client, eventloop) = rumqttc::AsyncClient::new(o, REQUEST_QUEUE);
            (
                Client::V4(client),
                tokio::spawn(poll_v4(eventloop, tx, Arc::clone(&gate))),
            )
        }
        Protocol::V5 => {
            let mut o = rumqttc::v5::MqttOptions::new(client_id, url.host.clone(), url.port);
            o.set_keep_alive(keep_alive);
            o.set_clean_start(settings.clean_session);
            if !settings.clean_session {
                // MQTT 5 drops a session at disconnect unless told to keep it.
                o.set_session_expiry_interval(Some(u32::MAX));
            }
            o.set_outgoing_inflight_upper_limit(inflight);
            o.set_receive_maximum(Some(inflight));
            o.set_max_packet_size(Some(MAX_INCOMING_PACKET as u32));
            o.set_request_channel_capacity(REQUEST_QUEUE);
            if let Some(user) = &settings.username {
                o.set_credentials(user.clone(), password.unwrap_or_default());
            }
            if let Some(t) = transport {
                o.set_transport(t);
            }
            let (client, eventloop) = rumqttc::v5::AsyncClient::new(o, REQUEST_QUEUE);
            (
                Client::V5(client),
                tokio::spawn(poll_v5(eventloop, tx, Arc::clone(&gate))),
            )
        }
    };
    Ok(Session {
        client,
        events,
        task,
        gate,
    })
}

/// Sends `event`; after an error, sleeps the next backoff delay; after a
/// ConnAck, resets the backoff. False when the adapter stopped listening.
async fn forward(
    tx: &mpsc::Sender<SessionEvent>,
    event: Option<SessionEvent>,
    backoff: &mut Backoff,
) -> bool {
    let Some(event) = event else { return true };
    let error = matches!(event, SessionEvent::Error(_));
    if matches!(event, SessionEvent::ConnAck { .. }) {
        backoff.reset();
    }
    if tx.send(event).await.is_err() {
        return false;
    }
    if error {
        tokio::time::sleep(backoff.next_delay()).await;
    }
    true
}

async fn poll_v4(
    mut eventloop: rumqttc::EventLoop,
    tx: mpsc::Sender<SessionEvent>,
    gate: Arc<Gate>,
) {
    use rumqttc::{Event, Incoming, Outgoing, SubscribeReasonCode};
    let mut backoff = Backoff::new(BACKOFF_START, BACKOFF_CAP);
    loop {
        let event = match eventloop.poll().await {
            Ok(Event::Incoming(Incoming::ConnAck(a))) => {
                gate.open();
                Some(SessionEvent::ConnAck {
                    session_present: a.session_present,
                })
            }
            Ok(Event::Incoming(Incoming::Publish(p))) => Some(SessionEvent::Publish {
                topic: p.topic,
                payload: p.payload,
            }),
            Ok(Event::Incoming(Incoming::SubAck(a))) => Some(SessionEvent::SubAck {
                refused: a
                    .return_codes
                    .iter()
                    .filter(|c| matches!(c, SubscribeReasonCode::Failure))
                    .count(),
            }),
            Ok(Event::Incoming(Incoming::PubAck(a))) => Some(SessionEvent::PubAck {
                pkid: a.pkid,
                refused: None,
            }),
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => Some(SessionEvent::Sent { pkid }),
            Ok(_) => None,
            Err(e) => {
                // Publishes queued since rumqttc's own drain join its
                // pending list too (see `crate::writes`).
                gate.close(|| eventloop.clean());
                Some(SessionEvent::Error(e.to_string()))
            }
        };
        if !forward(&tx, event, &mut backoff).await {
            return;
        }
    }
}

async fn poll_v5(
    mut eventloop: rumqttc::v5::EventLoop,
    tx: mpsc::Sender<SessionEvent>,
    gate: Arc<Gate>,
) {
    use rumqttc::Outgoing;
    use rumqttc::v5::Event;
    use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason, SubscribeReasonCode};
    let mut backoff = Backoff::new(BACKOFF_START, BACKOFF_CAP);
    loop {
        let event = match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(a))) => {
                gate.open();
                Some(SessionEvent::ConnAck {
                    session_present: a.session_present,
                })
            }
            Ok(Event::Incoming(Packet::Publish(p))) => Some(SessionEvent::Publish {
                topic: String::from_utf8_lossy(&p.topic).into_owned(),
                payload: p.payload,
            }),
            Ok(Event::Incoming(Packet::SubAck(a))) => Some(SessionEvent::SubAck {
                refused: a
                    .return_codes
                    .iter()
                    .filter(|c| !matches!(c, SubscribeReasonCode::Success(_)))
                    .count(),
            }),
            Ok(Event::Incoming(Packet::PubAck(a))) => Some(SessionEvent::PubAck {
                pkid: a.pkid,
                refused: match a.reason {
                    PubAckReason::Success | PubAckReason::NoMatchingSubscribers => None,
                    other => Some(format!("the broker refused the publish: {other:?}")),
                },
            }),
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => Some(SessionEvent::Sent { pkid }),
            Ok(_) => None,
            Err(e) => {
                // Publishes queued since rumqttc's own drain join its
                // pending list too (see `crate::writes`).
                gate.close(|| eventloop.clean());
                Some(SessionEvent::Error(e.to_string()))
            }
        };
        if !forward(&tx, event, &mut backoff).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests;
