//! Topic routing and payload extraction, without I/O: a message in, the
//! events of the devices it reaches out; a command in, an answer or the
//! publish that performs it out.
//!
//! Each configured device is a rule: one device, or a template
//! (`sensors/{device}/state`) that creates a device per id seen, up to its
//! cap. Each rule has routes (its topic, its points' own topics, its
//! availability topic), matched in order against every message.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::SystemTime;

use fieldbridge_core::device::AdapterDevice;
use fieldbridge_core::{
    Action, AdapterError, Command, DeviceEvent, DeviceId, DeviceSpec, DeviceStatus, Directory,
    EventKind, PointId, Quality, Reading, Sample, Value,
};
use rumqttc::QoS;

use crate::adapter::not_connected;
use crate::config::{
    DEFAULT_MAX_DEVICES, DEFAULT_MAX_PAYLOAD, MqttConnection, MqttDevice, MqttPoint,
};
use crate::payload::{Cause, Payload, command_payload};
use crate::stats::MqttStats;
use crate::topic::Filter;
use crate::writes::{PendingWrite, WriteRequest};

/// Refused template ids remembered (to log each once); beyond, only counted.
const MAX_REMEMBERED_REFUSALS: usize = 1000;

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
    stats: MqttStats,
    warned_refusals: HashSet<(usize, String)>,
}

impl Router {
    /// Routes for `devices`; templates create devices in `directory`.
    pub fn new(
        settings: &MqttConnection,
        devices: Vec<AdapterDevice<MqttDevice, MqttPoint>>,
        directory: Option<Arc<Directory>>,
        stats: MqttStats,
    ) -> Self {
        let mut rules = Vec::new();
        let mut routes = Vec::new();
        let mut concrete = HashMap::new();
        for (i, d) in devices.into_iter().enumerate() {
            let qos: QoS = d.config.qos.into();
            let template = d.config.is_template();
            // Points reading the device topic, and points with their own
            // (one route per filter written).
            let mut on_device = Vec::new();
            let mut own: BTreeMap<&str, (&Filter, Vec<PointId>)> = BTreeMap::new();
            for (pid, p) in &d.points {
                match &p.topic {
                    Some(t) => own
                        .entry(t.as_str())
                        .or_insert((t, Vec::new()))
                        .1
                        .push(pid.clone()),
                    None => on_device.push(pid.clone()),
                }
            }
            let mut route = |filter: &Filter, target| {
                routes.push(Route {
                    filter: filter.clone(),
                    qos,
                    rule: i,
                    target,
                });
            };
            if let Some(f) = &d.config.topic
                && !on_device.is_empty()
            {
                route(f, Target::Points(on_device));
            }
            for (f, pids) in own.into_values() {
                route(f, Target::Points(pids));
            }
            if let Some(a) = &d.config.availability {
                route(&a.topic, Target::Availability);
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
        self.stats.message(matched);
        if !matched {
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
            this.stats.device_refused(&this.rules[rule].spec.id);
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
        if self.devices.contains_key(&id) {
            return refuse(format!("a device {id} exists already"), self);
        }
        let mut spec = (*r.spec).clone();
        spec.id = id.clone();
        // "Zigbee sensors" names the rule; its devices are "Zigbee sensors hall".
        spec.settings.name = r.spec.settings.name.as_ref().map(|n| format!("{n} {id}"));
        match directory.device(id.as_str()) {
            // Made by this rule before its connection restarted (a
            // reload): the same device again. Devices made at run time
            // are never replaced, so a rule that changed makes new ones
            // only.
            Some(existing) if **existing == spec => {}
            Some(_) => return refuse(format!("a device {id} exists already"), self),
            None => {
                if let Err(e) = directory.insert(spec.clone()) {
                    return refuse(e.to_string(), self);
                }
            }
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
                    a.topic.as_str().replace("{device}", device.as_str())
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
                Err(f) if f.cause() != Cause::BadTimestamp => {}
                Err(f) => self.stats.failure(device, None, &f),
            }
        }
        let mut samples = Vec::with_capacity(pids.len());
        for pid in pids {
            let Some(point) = r.points.get(pid) else {
                continue;
            };
            let reading = match payload.value(point) {
                Ok(v) => {
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
                    self.stats.failure(device, Some(pid), &f);
                    // The point keeps its last value, now bad; without one
                    // there is nothing to report.
                    let Some(last) = state.last.get(pid) else {
                        continue;
                    };
                    Reading {
                        point: pid.clone(),
                        value: last.clone(),
                        unit: None,
                        quality: Quality::Bad {
                            reason: f.to_string(),
                        },
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

    /// Handles a command: answers it now, or returns the publish that
    /// performs it (a write), for the loop to hand to the broker.
    pub(crate) fn command(&mut self, c: Command, connected: bool) -> Option<WriteRequest> {
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
                    let _ = c.reply.send(Err(not_connected()));
                    return None;
                }
                Some(WriteRequest {
                    topic: topic.for_device(c.device.as_str()),
                    qos: point.qos.into(),
                    retain: point.retain,
                    payload: command_payload(&value, point).into_bytes(),
                    write: PendingWrite {
                        value,
                        reply: c.reply,
                        device: c.device,
                        point: c.point,
                    },
                })
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

#[cfg(test)]
mod tests;
