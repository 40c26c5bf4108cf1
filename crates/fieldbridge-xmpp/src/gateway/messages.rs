//! Messages to a device JID: commands in words ([`crate::chat`]), answered
//! in the same chat; writes go to the adapter as [`Job`]s.

use fieldbridge_core::telemetry::{ChatAnswered, InternalEvent};
use std::collections::BTreeMap;
use std::time::SystemTime;

use fieldbridge_core::audit::Via;
use fieldbridge_core::{DeviceId, DeviceSpec, PointId, Value, display};
use minidom::Element;
use xmpp_parsers::jid::{BareJid, Jid};

use super::guard::NOT_IN_CONTROL;
use super::history::{Query, SCAN, Then};
use super::jobs::{Job, JobAction, JobOutcome, Reply};
use super::{Gateway, Inbound};
use crate::chat::{self, ChatCommand};
use crate::xml::{
    DefinedCondition, ErrorType, NS_COMPONENT, set, stanza, stanza_error, text, with,
};

impl Gateway {
    /// A chat or normal message to a device JID: a command in words; to
    /// the gateway's own JID, the alarm commands over every device.
    /// Other messages (headline, groupchat, errors, unknown types, no body)
    /// are dropped without a reply, so that two automatons can never
    /// answer each other forever.
    pub(super) fn on_message(&mut self, inbound: &Inbound<'_>) -> Vec<Element> {
        let el = inbound.el;
        let kind = el.attr("type").unwrap_or("normal");
        if kind != "chat" && kind != "normal" {
            return Vec::new();
        }
        let Some(body) = el
            .children()
            .find(|c| c.name() == "body")
            .map(Element::text)
        else {
            // Chat states, receipts, markers: nothing to answer.
            return Vec::new();
        };
        let Some(from) = &inbound.from else {
            self.guard.malformed(el, "message without a valid sender");
            return Vec::new();
        };
        let Some(device) = inbound.device.as_deref() else {
            return self.service_message(el, &body, from);
        };
        let bare = from.to_bare();
        let exists = self.directory.device(device).is_some();
        if !self.access.may_read(&bare) || !exists {
            // The same answer for "no such device" and "not yours": an
            // outsider learns nothing about which devices exist.
            self.guard.forbidden(&bare, "chat message refused");
            return vec![message_error(
                el,
                ErrorType::Auth,
                DefinedCondition::Forbidden,
            )];
        }
        ChatAnswered.emit(&self.telemetry);
        let reply = self.chat_reply_to(el, device, from);
        let may_control = self.access.may_control(&bare);
        let Some(spec) = self.directory.device(device).cloned() else {
            return Vec::new();
        };
        let answer = match chat::parse(&body) {
            ChatCommand::Help => chat::help(&spec, may_control),
            ChatCommand::Unknown(word) => chat::unknown_command(word, &spec, may_control),
            ChatCommand::Usage(usage) => chat::usage(usage, &spec, may_control),
            ChatCommand::Status => {
                let live = self.devices.get(device);
                chat::status(
                    &spec,
                    live.and_then(|l| l.status.as_ref()),
                    live.map(|l| &l.latest).unwrap_or(&BTreeMap::new()),
                    SystemTime::now(),
                )
            }
            ChatCommand::GetAll => chat::point_lines(
                &spec,
                self.devices
                    .get(device)
                    .map(|l| &l.latest)
                    .unwrap_or(&BTreeMap::new()),
                SystemTime::now(),
            ),
            ChatCommand::Get(point) => match chat::find_point(&spec, point) {
                Some(p) => chat::point_line(
                    p,
                    self.devices.get(device).and_then(|l| l.latest.get(&p.id)),
                    SystemTime::now(),
                ),
                None => unknown_point(&spec, point),
            },
            ChatCommand::History { point, count } => match chat::find_point(&spec, point) {
                Some(p) => {
                    // Answered once the store was read (Gateway::read_done);
                    // a snapshot repeats unchanged values, so read enough.
                    self.nodes.read(
                        device,
                        Query::Page {
                            after: None,
                            before: None,
                            max: SCAN,
                        },
                        Then::ChatHistory {
                            reply,
                            point: p.id.clone(),
                            count,
                        },
                    );
                    return Vec::new();
                }
                None => unknown_point(&spec, point),
            },
            ChatCommand::Alarms => self.alarms_text(Some(&spec)),
            ChatCommand::Ack(what) => self.ack(&bare, Via::Chat, Some(&spec), what),
            ChatCommand::Set(text) => {
                match self.queue_write(&spec, text, may_control, &bare, reply.clone()) {
                    Ok(()) => return Vec::new(),
                    Err(why) => why,
                }
            }
        };
        vec![with_body(reply, answer)]
    }

    /// A message to the gateway's own JID: `alarms` (every device's) and
    /// `ack <device>/<point>|all`; anything else gets what it answers.
    /// Outsiders get the same refusal as at a device.
    fn service_message(&mut self, el: &Element, body: &str, from: &Jid) -> Vec<Element> {
        let bare = from.to_bare();
        if !self.access.may_read(&bare) {
            self.guard.forbidden(&bare, "chat message refused");
            return vec![message_error(
                el,
                ErrorType::Auth,
                DefinedCondition::Forbidden,
            )];
        }
        ChatAnswered.emit(&self.telemetry);
        let answer = match chat::parse(body) {
            ChatCommand::Alarms => self.alarms_text(None),
            ChatCommand::Ack(what) => self.ack(&bare, Via::Chat, None, what),
            _ => format!(
                "{}: `alarms` lists every active alarm; `ack <device>/<point>` (or /offline) or `ack all` acknowledges one or all. Each device answers `help` at its own address.",
                self.me.name
            ),
        };
        let reply = reply_from(el, &self.me.domain, from);
        vec![with_body(reply, answer)]
    }

    /// Checks a chat `set` and queues it for the adapter, or says why not
    /// (and audits the refusal; a queued write is audited when done).
    fn queue_write(
        &mut self,
        spec: &DeviceSpec,
        text: &str,
        may_control: bool,
        who: &BareJid,
        reply: Element,
    ) -> Result<(), String> {
        let queued = self.check_and_queue_write(spec, text, may_control, who, reply);
        if let Err(why) = &queued {
            // What was asked, as far as it can be told.
            let (point, value) = match chat::point_and_value(spec, text) {
                Ok((p, value)) => (p.id.as_str(), value),
                Err(typed) => (typed, text.get(typed.len()..).unwrap_or_default().trim()),
            };
            self.audit_refused(who, Via::Chat, spec, point, value, why);
        }
        queued
    }

    fn check_and_queue_write(
        &mut self,
        spec: &DeviceSpec,
        text: &str,
        may_control: bool,
        who: &BareJid,
        reply: Element,
    ) -> Result<(), String> {
        if !may_control {
            self.guard.control_refused(who, &spec.id, "chat set");
            return Err(NOT_IN_CONTROL.to_owned());
        }
        let (point, value) =
            chat::point_and_value(spec, text).map_err(|typed| unknown_point(spec, typed))?;
        if value.is_empty() {
            return Err(chat::usage("set <point> <value>", spec, may_control));
        }
        let (point, value) = parse_write(spec, point.id.as_str(), value)?;
        tracing::info!(jid = %who, device = %spec.id, point = %point, value = %value, "write asked by chat");
        self.queue_job(Job {
            device: spec.id.clone(),
            action: JobAction::Write { point, value },
            reply: Reply::Chat(reply),
        })
    }

    /// The chat answer to a finished job.
    pub(super) fn chat_job_done(
        &self,
        device: &DeviceId,
        action: &JobAction,
        reply: Element,
        outcome: JobOutcome,
    ) -> Element {
        let point_id = match action {
            JobAction::Write { point, .. } => point.as_str(),
            JobAction::Read(_) | JobAction::WriteMany(_) => "",
        };
        let point = self.label(device, point_id);
        let text = match outcome {
            JobOutcome::Written(Ok(v)) => {
                tracing::info!(device = %device, point = point_id, value = %v, "write done");
                format!("{point} set to {}.", self.shown(device, point_id, &v))
            }
            JobOutcome::Written(Err(e)) => {
                tracing::warn!(device = %device, point = point_id, error = %e, "write failed");
                format!("Could not set {point}: {e}")
            }
            JobOutcome::Values(values) => values
                .iter()
                .map(|(p, r)| match r {
                    Ok(v) => format!(
                        "{} {}",
                        self.label(device, p.as_str()),
                        self.shown(device, p.as_str(), v)
                    ),
                    Err(e) => format!("{}: {e}", self.label(device, p.as_str())),
                })
                .collect::<Vec<_>>()
                .join("\n"),
        };
        with_body(reply, text)
    }

    /// `value unit` for a point of a device, as people read it.
    pub(super) fn shown(&self, device: &DeviceId, point: &str, v: &Value) -> String {
        self.directory
            .device(device.as_str())
            .and_then(|d| d.points.get(point))
            .map_or_else(|| v.to_string(), |p| display::with_unit(p, v))
    }

    /// A point's label, or the id of a point the device does not have.
    pub(super) fn label(&self, device: &DeviceId, point: &str) -> String {
        self.directory
            .device(device.as_str())
            .and_then(|d| d.points.get(point))
            .map_or(point, |p| p.label())
            .to_owned()
    }

    /// An empty reply to a chat message: from the device, to the sender's
    /// full JID, same type and thread.
    fn chat_reply_to(&self, el: &Element, device: &str, from: &Jid) -> Element {
        reply_from(el, &self.me.device_full_jid(device), from)
    }
}

/// An empty reply to the message `el` from `sender`: from `me`, to the
/// sender's full JID, of the same type and thread (XEP-0201), so that a
/// client shows it in the same conversation.
fn reply_from(el: &Element, me: &str, sender: &Jid) -> Element {
    let kind = el.attr("type").unwrap_or("normal");
    let mut reply = with(stanza("message", me, &sender.to_string()), "type", kind);
    if let Some(thread) = el.children().find(|c| c.name() == "thread") {
        reply.append_child(text("thread", NS_COMPONENT, thread.text()));
    }
    reply
}

/// A typed value for a writable point, or why not.
pub(super) fn parse_write(
    spec: &DeviceSpec,
    point: &str,
    value: &str,
) -> Result<(PointId, Value), String> {
    let Some(p) = spec.points.get(point) else {
        return Err(unknown_point(spec, point));
    };
    if !p.settings.writable {
        return Err(format!("{} is read-only.", p.label()));
    }
    let value = Value::parse_as(value, p.kind).map_err(|e| format!("{}: {e}", p.label()))?;
    Ok((p.id.clone(), value))
}

pub(super) fn unknown_point(spec: &DeviceSpec, point: &str) -> String {
    let known: Vec<&str> = spec.points.keys().map(PointId::as_str).collect();
    format!(
        "{} has no point {point:?}; its points: {}.",
        spec.display_name(),
        known.join(", ")
    )
}

pub(super) fn with_body(mut reply: Element, body: String) -> Element {
    reply.append_child(text("body", NS_COMPONENT, body));
    reply
}

/// The error reply to a message (RFC 6120 §8.3).
pub(super) fn message_error(
    request: &Element,
    kind: ErrorType,
    condition: DefinedCondition,
) -> Element {
    let mut m = with(
        stanza(
            "message",
            request.attr("to").unwrap_or_default(),
            request.attr("from").unwrap_or_default(),
        ),
        "type",
        "error",
    );
    if let Some(id) = request.attr("id") {
        set(&mut m, "id", id);
    }
    m.append_child(stanza_error(kind, condition, None).into());
    m
}
