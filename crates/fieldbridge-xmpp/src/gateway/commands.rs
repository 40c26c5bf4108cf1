//! Ad-hoc commands (XEP-0050) with data forms (XEP-0004): what a client
//! shows as a device's "Commands" menu. On a device JID: "Read now",
//! "Set a point" (users in `access.control`, devices with writable points)
//! and "Device info"; on the gateway's JID: "List devices". The list a
//! sender sees holds only what they may run.

use std::time::SystemTime;

use fieldbridge_core::audit::Via;
use fieldbridge_core::{DeviceId, DeviceSpec, DeviceStatus};
use minidom::Element;
use xmpp_parsers::jid::BareJid;

use super::guard::NOT_IN_CONTROL;
use super::jobs::{BUSY, Job, JobAction, JobOutcome, Reply};
use super::messages::parse_write;
use super::{Gateway, presence};
use crate::chat;
use crate::xml::{DefinedCondition, ErrorType};
use crate::xml::{NS_DISCO_ITEMS, element, iq_error, iq_result, set, text, with};

/// XEP-0050.
pub const NS_COMMANDS: &str = "http://jabber.org/protocol/commands";
/// XEP-0004.
pub const NS_DATA: &str = "jabber:x:data";

/// The commands of a device: (node, name).
const READ: (&str, &str) = ("read", "Read now");
const SET: (&str, &str) = ("set", "Set a point");
const INFO: (&str, &str) = ("info", "Device info");
/// The gateway's command.
const LIST: (&str, &str) = ("list", "List devices");

impl Gateway {
    /// The commands `who` may run on `device` (or on the gateway).
    fn commands_for(
        &self,
        device: Option<&DeviceSpec>,
        who: &BareJid,
    ) -> Vec<(&'static str, &'static str)> {
        match device {
            None => vec![LIST],
            Some(spec) => {
                let mut out = vec![READ, INFO];
                if self.access.may_control(who) && spec.points.values().any(|p| p.settings.writable)
                {
                    out.insert(1, SET);
                }
                out
            }
        }
    }

    /// disco#items for the commands node: the command list.
    pub(super) fn command_list(
        &self,
        el: &Element,
        jid: &str,
        device: Option<&DeviceSpec>,
        who: &BareJid,
    ) -> Element {
        let mut q = with(element("query", NS_DISCO_ITEMS), "node", NS_COMMANDS);
        for (node, name) in self.commands_for(device, who) {
            let mut item = with(element("item", NS_DISCO_ITEMS), "jid", jid);
            set(&mut item, "node", node);
            set(&mut item, "name", name);
            q.append_child(item);
        }
        iq_result(el, Some(q))
    }

    /// An `<iq type='set'><command/></iq>`: the reply, or `None` when the
    /// reply waits for the adapter (a queued [`Job`]).
    pub(super) fn command(
        &mut self,
        el: &Element,
        payload: &Element,
        device: Option<&DeviceSpec>,
        who: &BareJid,
    ) -> Option<Element> {
        let node = payload.attr("node").unwrap_or_default();
        if node == SET.0
            && let Some(spec) = device
            && spec.points.values().any(|p| p.settings.writable)
            && !self.access.may_control(who)
        {
            // A reader (outsiders never get here) asking to write, at any
            // step of the command: XEP-0050 §4.4's `forbidden`, as a chat
            // `set` or a XEP-0325 `set` gets.
            let refused = self
                .guard
                .control_refused_iq(el, who, &spec.id, "ad-hoc set");
            // A submitted form asked to write (audited); opening the form
            // did not yet.
            if let Some(form) = submitted_form(payload) {
                let point = field_value(form, "point").unwrap_or_default();
                let value = field_value(form, "value").unwrap_or_default();
                self.audit_refused(who, Via::Adhoc, spec, &point, &value, NOT_IN_CONTROL);
            }
            return Some(refused);
        }
        if !self
            .commands_for(device, who)
            .iter()
            .any(|(n, _)| *n == node)
        {
            // Unknown, or not for this sender: the same answer, so that an
            // outsider learns nothing about what exists.
            return Some(iq_error(
                el,
                ErrorType::Cancel,
                DefinedCondition::ItemNotFound,
                None,
            ));
        }
        let session = payload
            .attr("sessionid")
            .map_or_else(|| self.new_session(), str::to_owned);
        if payload.attr("action") == Some("cancel") {
            return Some(iq_result(el, Some(response(node, &session, "canceled"))));
        }
        let submitted = submitted_form(payload);
        match (node, device) {
            ("list", _) => Some(self.list_devices(el, &session)),
            ("info", Some(spec)) => Some(self.device_info(el, spec, &session)),
            ("read", Some(spec)) => {
                let job = Job {
                    device: spec.id.clone(),
                    action: JobAction::Read(spec.points.keys().cloned().collect()),
                    reply: Reply::Command {
                        request: el.clone(),
                        node: node.to_owned(),
                        session,
                    },
                };
                self.queue_job_for(el, job)
            }
            ("set", Some(spec)) => match submitted {
                None => Some(set_form(el, spec, &session)),
                Some(form) => {
                    let point = field_value(form, "point").unwrap_or_default();
                    let value = field_value(form, "value").unwrap_or_default();
                    let (point_id, value) = match parse_write(spec, &point, &value) {
                        Ok(pv) => pv,
                        Err(why) => {
                            self.audit_refused(who, Via::Adhoc, spec, &point, &value, &why);
                            return Some(iq_error(
                                el,
                                ErrorType::Modify,
                                DefinedCondition::BadRequest,
                                Some(&why),
                            ));
                        }
                    };
                    tracing::info!(jid = %who, device = %spec.id, point = %point_id, value = %value, "write asked by ad-hoc command");
                    let job = Job {
                        device: spec.id.clone(),
                        action: JobAction::Write {
                            point: point_id,
                            value: value.clone(),
                        },
                        reply: Reply::Command {
                            request: el.clone(),
                            node: node.to_owned(),
                            session,
                        },
                    };
                    let busy = self.queue_job_for(el, job);
                    if busy.is_some() {
                        self.audit_refused(who, Via::Adhoc, spec, &point, &value.to_string(), BUSY);
                    }
                    busy
                }
            },
            _ => Some(iq_error(
                el,
                ErrorType::Cancel,
                DefinedCondition::ItemNotFound,
                None,
            )),
        }
    }

    fn new_session(&mut self) -> String {
        self.commands.sessions += 1;
        format!("fb-{}", self.commands.sessions)
    }

    /// The result of a finished ad-hoc job.
    pub(super) fn command_job_done(
        &self,
        device: &DeviceId,
        request: &Element,
        node: &str,
        session: &str,
        outcome: JobOutcome,
    ) -> Element {
        let mut cmd = response(node, session, "completed");
        match outcome {
            JobOutcome::Written(Ok(v)) => {
                let point = request
                    .get_child("command", NS_COMMANDS)
                    .and_then(|c| c.get_child("x", NS_DATA))
                    .and_then(|x| field_value(x, "point"))
                    .unwrap_or_default();
                cmd.append_child(note(
                    "info",
                    &format!(
                        "{} set to {}.",
                        self.label(device, &point),
                        self.shown(device, &point, &v)
                    ),
                ));
            }
            JobOutcome::Written(Err(e)) => {
                cmd.append_child(note("error", &format!("Not written: {e}")));
            }
            JobOutcome::Values(values) => {
                let mut x = form("result", &format!("{device}: fresh readings"));
                for (point, r) in values {
                    let shown = match r {
                        Ok(v) => self.shown(device, point.as_str(), &v),
                        Err(e) => format!("error: {e}"),
                    };
                    x.append_child(field(
                        "text-single",
                        point.as_str(),
                        &self.label(device, point.as_str()),
                        &shown,
                    ));
                }
                cmd.append_child(x);
            }
        }
        iq_result(request, Some(cmd))
    }

    fn device_info(&self, el: &Element, spec: &DeviceSpec, session: &str) -> Element {
        let live = self.devices.get(&spec.id);
        let status = match live.and_then(|l| l.status.as_ref()) {
            None => "waiting for the first reading".to_owned(),
            Some(DeviceStatus::Online) => "online".to_owned(),
            Some(DeviceStatus::Stale) => "stale".to_owned(),
            Some(DeviceStatus::Offline { reason }) => format!("offline: {reason}"),
        };
        let mut x = form("result", spec.display_name());
        x.append_child(field(
            "jid-single",
            "jid",
            "Address",
            &self.me.device_jid(spec.id.as_str()),
        ));
        x.append_child(field("text-single", "status", "Status", &status));
        let now = SystemTime::now();
        for p in spec.points.values() {
            let mut label = p.label().to_owned();
            if p.settings.writable {
                label.push_str(" (writable)");
            }
            let line = chat::point_line(p, live.and_then(|l| l.latest.get(&p.id)), now);
            x.append_child(field(
                "text-single",
                &format!("point.{}", p.id),
                &label,
                &line,
            ));
        }
        let mut cmd = response(INFO.0, session, "completed");
        cmd.append_child(x);
        iq_result(el, Some(cmd))
    }

    fn list_devices(&self, el: &Element, session: &str) -> Element {
        let mut x = form("result", "Devices");
        for d in self.directory.devices() {
            let device = self.devices.get(&d.id);
            let status = device
                .map(|s| presence::status_text(Some(d), s))
                .unwrap_or_default();
            let state = match device.and_then(|l| l.status.as_ref()) {
                Some(DeviceStatus::Online) => "online",
                Some(DeviceStatus::Stale) => "stale",
                Some(DeviceStatus::Offline { .. }) => "offline",
                None => "waiting",
            };
            x.append_child(field(
                "text-single",
                d.id.as_str(),
                &format!(
                    "{} ({})",
                    d.display_name(),
                    self.me.device_jid(d.id.as_str())
                ),
                &format!("{state}: {status}"),
            ));
        }
        let mut cmd = response(LIST.0, session, "completed");
        cmd.append_child(x);
        iq_result(el, Some(cmd))
    }
}

/// The first stage of "Set a point": which point, which value.
fn set_form(el: &Element, spec: &DeviceSpec, session: &str) -> Element {
    let mut x = form("form", &format!("Set a point of {}", spec.display_name()));
    x.append_child(text(
        "instructions",
        NS_DATA,
        "Choose a writable point and the value to write.",
    ));
    let mut point = with(element("field", NS_DATA), "var", "point");
    set(&mut point, "type", "list-single");
    set(&mut point, "label", "Point");
    point.append_child(element("required", NS_DATA));
    // A default, so that clients (Gajim) preselect a point instead of
    // showing an empty list.
    if let Some(first) = spec.points.values().find(|p| p.settings.writable) {
        point.append_child(text("value", NS_DATA, first.id.as_str()));
    }
    for p in spec.points.values().filter(|p| p.settings.writable) {
        let label = match &p.settings.unit {
            Some(u) => format!("{} ({}, {u})", p.label(), p.kind),
            None => format!("{} ({})", p.label(), p.kind),
        };
        let mut option = with(element("option", NS_DATA), "label", label);
        option.append_child(text("value", NS_DATA, p.id.as_str()));
        point.append_child(option);
    }
    x.append_child(point);
    let mut value = with(element("field", NS_DATA), "var", "value");
    set(&mut value, "type", "text-single");
    set(&mut value, "label", "Value");
    value.append_child(element("required", NS_DATA));
    x.append_child(value);
    let mut cmd = response(SET.0, session, "executing");
    let mut actions = with(element("actions", NS_COMMANDS), "execute", "complete");
    actions.append_child(element("complete", NS_COMMANDS));
    cmd.append_child(actions);
    cmd.append_child(x);
    iq_result(el, Some(cmd))
}

fn response(node: &str, session: &str, status: &str) -> Element {
    let mut c = with(element("command", NS_COMMANDS), "node", node);
    set(&mut c, "sessionid", session);
    set(&mut c, "status", status);
    c
}

fn note(kind: &str, message: &str) -> Element {
    with(text("note", NS_COMMANDS, message), "type", kind)
}

fn form(kind: &str, title: &str) -> Element {
    let mut x = with(element("x", NS_DATA), "type", kind);
    x.append_child(text("title", NS_DATA, title));
    x
}

fn field(kind: &str, var: &str, label: &str, value: &str) -> Element {
    let mut f = with(element("field", NS_DATA), "var", var);
    set(&mut f, "type", kind);
    set(&mut f, "label", label);
    f.append_child(text("value", NS_DATA, value));
    f
}

/// The form a command request submits, if it submits one.
fn submitted_form(payload: &Element) -> Option<&Element> {
    payload
        .get_child("x", NS_DATA)
        .filter(|x| x.attr("type") == Some("submit"))
}

/// The first value of a submitted form's field.
fn field_value(form: &Element, var: &str) -> Option<String> {
    form.children()
        .find(|f| f.name() == "field" && f.attr("var") == Some(var))?
        .children()
        .find(|v| v.name() == "value")
        .map(Element::text)
}
