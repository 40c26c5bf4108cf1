//! The IoT XEPs on device JIDs, for software that speaks them rather than
//! chat: sensor-data readout (XEP-0323: a `req` IQ is `accepted`, then the
//! values follow as `fields` messages, momentary ones read fresh from the
//! adapter, historical ones from the history) and control (XEP-0325: a
//! `set` IQ writes writable points).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::SystemTime;

use fieldbridge_core::audit::Via;
use fieldbridge_core::{CommandError, DeviceId, DeviceSpec, PointId, Quality, Reading, Sample};
use fieldbridge_store::Snapshot;
use minidom::Element;
use xmpp_parsers::jid::BareJid;

use super::Gateway;
use super::guard::NOT_IN_CONTROL;
use super::history::{Query, Then};
use super::jobs::{BUSY, Job, JobAction, JobOutcome, Reply, error_condition};
use super::messages::parse_write;
use crate::sensordata::{self, FieldType};
use crate::xml::{DefinedCondition, ErrorType};
use crate::xml::{NS_SENSORDATA, element, iq_error, iq_result, set, stanza, with};

/// XEP-0325.
pub const NS_CONTROL: &str = "urn:xmpp:iot:control";

/// Historical values sent for one readout at most.
pub const MAX_HISTORICAL: usize = 1000;

/// The field types of XEP-0323 §5.6 that ask for stored values.
const HISTORICAL: &[&str] = &[
    "historicalSecond",
    "historicalMinute",
    "historicalHour",
    "historicalDay",
    "historicalWeek",
    "historicalMonth",
    "historicalQuarter",
    "historicalYear",
    "historicalOther",
];

/// Whether an attribute of a `req` is `true`.
fn flag(req: &Element, name: &str) -> bool {
    req.attr(name) == Some("true")
}

impl Gateway {
    /// A XEP-0323 `req`: `accepted` now, the values in messages after.
    pub(super) fn readout(
        &mut self,
        el: &Element,
        req: &Element,
        spec: &DeviceSpec,
        from: &str,
    ) -> Vec<Element> {
        let seqnr = req.attr("seqnr").unwrap_or("0").to_owned();
        let wanted: Vec<&str> = req
            .children()
            .filter(|c| c.name() == "field")
            .filter_map(|c| c.attr("name"))
            .collect();
        let points: Vec<PointId> = spec
            .points
            .keys()
            .filter(|p| wanted.is_empty() || wanted.contains(&p.as_str()))
            .cloned()
            .collect();
        let historical = flag(req, "all") || HISTORICAL.iter().any(|h| flag(req, h));
        // No type asked for: the momentary values (XEP-0323 §3.1).
        let momentary = flag(req, "momentary") || flag(req, "all") || !historical;
        // Not `queued`: the readout starts at once (XEP-0323 §3.1).
        let accepted = with(element("accepted", NS_SENSORDATA), "seqnr", seqnr.clone());
        let mut out = vec![iq_result(el, Some(accepted))];
        if historical {
            // Sent when the store was read (Gateway::read_done).
            self.nodes.read(
                spec.id.as_str(),
                Query::Page {
                    after: None,
                    before: None,
                    max: MAX_HISTORICAL,
                },
                Then::Historical {
                    to: from.to_owned(),
                    seqnr: seqnr.clone(),
                    points: points.clone(),
                    done: !momentary,
                },
            );
        }
        if momentary {
            let job = Job {
                device: spec.id.clone(),
                action: JobAction::Read(points),
                reply: Reply::Readout {
                    to: from.to_owned(),
                    seqnr: seqnr.clone(),
                },
            };
            if let Err(busy) = self.queue_job(job) {
                out.push(self.readout_message(
                    spec.id.as_str(),
                    from,
                    failure(&seqnr, spec.id.as_str(), &busy),
                ));
            }
        }
        out
    }

    /// A historical readout once the store was read: the stored values
    /// of `points`, oldest first, each reading once (an item repeats the
    /// values that did not change).
    pub(super) fn historical_done(
        &self,
        device: &str,
        to: &str,
        seqnr: &str,
        points: &[PointId],
        done: bool,
        items: &[Arc<Snapshot>],
    ) -> Element {
        let mut seen = HashSet::new();
        let samples = items
            .iter()
            .flat_map(|i| &i.samples)
            .filter(|s| points.contains(&s.reading.point))
            .filter(|s| seen.insert((s.reading.point.clone(), s.at)));
        let fields = sensordata::fields(seqnr, device, samples, FieldType::Historical, done);
        match crate::reader::parse_element(&fields) {
            Some(fields) => self.readout_message(device, to, fields),
            None => self.historical_failed(device, to, seqnr),
        }
    }

    /// A historical readout that could not be read.
    pub(super) fn historical_failed(&self, device: &str, to: &str, seqnr: &str) -> Element {
        self.readout_message(
            device,
            to,
            failure(seqnr, device, "The history cannot be read right now."),
        )
    }

    fn readout_message(&self, device: &str, to: &str, payload: Element) -> Element {
        let mut m = stanza("message", &self.me.device_jid(device), to);
        m.append_child(payload);
        m
    }

    /// The momentary values, once the adapter answered: `fields` with what
    /// was read, then a `failure` naming what could not be.
    pub(super) fn readout_done(
        &self,
        device: &DeviceId,
        to: &str,
        seqnr: &str,
        outcome: JobOutcome,
    ) -> Vec<Element> {
        let JobOutcome::Values(values) = outcome else {
            return Vec::new();
        };
        let spec = self.directory.device(device.as_str());
        let mut readings = Vec::new();
        let mut errors = Vec::new();
        let now = SystemTime::now();
        for (point, r) in values {
            match r {
                Ok(value) => readings.push(Sample {
                    at: now,
                    reading: Reading {
                        unit: spec
                            .and_then(|s| s.points.get(&point))
                            .and_then(|p| p.settings.unit.clone()),
                        point,
                        value,
                        quality: Quality::Good,
                    },
                }),
                Err(e) => errors.push(format!("{point}: {e}")),
            }
        }
        let fields = |done| {
            let text = sensordata::fields(
                seqnr,
                device.as_str(),
                &readings,
                FieldType::Momentary,
                done,
            );
            crate::reader::parse_element(&text)
        };
        let mut out = Vec::new();
        if errors.is_empty() {
            out.extend(fields(true).map(|f| self.readout_message(device.as_str(), to, f)));
        } else {
            if !readings.is_empty() {
                out.extend(fields(false).map(|f| self.readout_message(device.as_str(), to, f)));
            }
            out.push(self.readout_message(
                device.as_str(),
                to,
                failure(seqnr, device.as_str(), &errors.join("; ")),
            ));
        }
        out
    }

    /// A XEP-0325 `set`: every parameter checked before anything is
    /// written; the answer waits for the adapter.
    pub(super) fn control(
        &mut self,
        el: &Element,
        payload: &Element,
        spec: &DeviceSpec,
        who: &BareJid,
    ) -> Option<Element> {
        // Every parameter asked for; a refused set is audited for each.
        let asked: Vec<(&str, &str)> = payload
            .children()
            .filter_map(|p| Some((p.attr("name")?, p.attr("value")?)))
            .collect();
        let audit_refused = |gw: &Self, why: &str| {
            for (point, value) in &asked {
                gw.audit_refused(who, Via::Xep0325, spec, point, value, why);
            }
        };
        if !self.access.may_control(who) {
            audit_refused(self, NOT_IN_CONTROL);
            return Some(self.guard.control_refused_iq(el, who, &spec.id, "control"));
        }
        let mut writes = Vec::new();
        for p in payload.children() {
            let (Some(name), Some(value)) = (p.attr("name"), p.attr("value")) else {
                return Some(iq_error(
                    el,
                    ErrorType::Modify,
                    DefinedCondition::BadRequest,
                    Some("a parameter needs name and value"),
                ));
            };
            match parse_write(spec, name, value) {
                Ok(w) => writes.push(w),
                Err(why) => {
                    // Nothing of the set is written.
                    audit_refused(self, &why);
                    return Some(iq_error(
                        el,
                        ErrorType::Modify,
                        DefinedCondition::BadRequest,
                        Some(&why),
                    ));
                }
            }
        }
        if writes.is_empty() {
            return Some(iq_error(
                el,
                ErrorType::Modify,
                DefinedCondition::BadRequest,
                Some("nothing to set"),
            ));
        }
        tracing::info!(jid = %who, device = %spec.id, parameters = writes.len(), "control set");
        let job = Job {
            device: spec.id.clone(),
            action: JobAction::WriteMany(writes),
            reply: Reply::Control(el.clone()),
        };
        let busy = self.queue_job_for(el, job);
        if busy.is_some() {
            audit_refused(self, BUSY);
        }
        busy
    }

    /// The control result: success, or the first failure in words.
    pub(super) fn control_done(&self, request: &Element, outcome: JobOutcome) -> Element {
        let failed: Vec<(Option<PointId>, CommandError)> = match outcome {
            JobOutcome::Values(values) => values
                .into_iter()
                .filter_map(|(p, r)| r.err().map(|e| (Some(p), e)))
                .collect(),
            JobOutcome::Written(r) => r.err().map(|e| (None, e)).into_iter().collect(),
        };
        // The first failure's cause names the condition; the text has all.
        let Some((_, first)) = failed.first() else {
            return iq_result(request, None);
        };
        let (kind, condition) = error_condition(first);
        let text: Vec<String> = failed
            .iter()
            .map(|(p, e)| match p {
                Some(p) => format!("{p}: {e}"),
                None => e.to_string(),
            })
            .collect();
        iq_error(request, kind, condition, Some(&text.join("; ")))
    }
}

/// A XEP-0323 `failure`: the readout ended with an error.
fn failure(seqnr: &str, device: &str, message: &str) -> Element {
    let mut f = with(element("failure", NS_SENSORDATA), "seqnr", seqnr);
    set(&mut f, "done", "true");
    let mut e = with(element("error", NS_SENSORDATA), "nodeId", device);
    set(
        &mut e,
        "timestamp",
        sensordata::timestamp(SystemTime::now()),
    );
    e.append_text_node(message);
    f.append_child(e);
    f
}
