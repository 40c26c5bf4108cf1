//! Work for an adapter asked for over XMPP (a chat `set`, an ad-hoc "Set a
//! point" or "Read now"), whose answer waits for the adapter. The gateway
//! stays free of I/O: it queues a [`Job`]; the connection loop runs it
//! through core's command router (which bounds it with a timeout) and hands
//! the [`JobOutcome`] back to [`Gateway::job_done`] for the reply.

use fieldbridge_core::audit::{Entry, Via};
use fieldbridge_core::telemetry::{InternalEvent, WriteEnded, WriteOutcome};
use fieldbridge_core::{
    AdapterError, CommandError, CommandRouter, DeviceId, DeviceSpec, PointId, Value,
};
use minidom::Element;
use xmpp_parsers::jid::{BareJid, Jid};

use super::Gateway;
use crate::xml::{DefinedCondition, ErrorType, iq_error};

/// Jobs waiting for a free slot before more are refused ("busy").
pub const MAX_QUEUED_JOBS: usize = 16;

/// Jobs running at once; each ends within the router's timeout.
pub const MAX_RUNNING_JOBS: usize = 16;

/// What a request is told when too many wait already.
pub(super) const BUSY: &str = "Too many requests at once; try again in a moment.";

/// What the adapter is asked to do.
#[derive(Debug, Clone, PartialEq)]
pub enum JobAction {
    /// Write a value (already parsed for the point's kind).
    Write {
        /// The point.
        point: PointId,
        /// The value.
        value: Value,
    },
    /// A fresh reading of each of these points.
    Read(Vec<PointId>),
    /// Several writes at once (a XEP-0325 `set`), in order.
    WriteMany(Vec<(PointId, Value)>),
}

/// How the answer goes back.
#[derive(Debug, Clone)]
pub(super) enum Reply {
    /// A chat message, addressed, typed and threaded like the request.
    Chat(Element),
    /// A XEP-0323 readout: `fields` messages to the requester.
    Readout {
        /// The requester's full JID.
        to: String,
        /// The request's sequence number, echoed.
        seqnr: String,
    },
    /// A XEP-0325 control `set`: the IQ result or error.
    Control(Element),
    /// An ad-hoc command's IQ result.
    Command {
        /// The request, for addressing the result.
        request: Element,
        /// The command node.
        node: String,
        /// The session.
        session: String,
    },
}

impl Reply {
    /// Who asked (bare JID) and how, for the audit; `None` for a readout,
    /// which writes nothing.
    fn requester(&self) -> Option<(String, Via)> {
        let (jid, via) = match self {
            Reply::Chat(reply) => (reply.attr("to"), Via::Chat),
            Reply::Command { request, .. } => (request.attr("from"), Via::Adhoc),
            Reply::Control(request) => (request.attr("from"), Via::Xep0325),
            Reply::Readout { .. } => return None,
        };
        let who = jid
            .and_then(|j| Jid::new(j).ok())
            .map(|j| j.to_bare().to_string())
            .unwrap_or_default();
        Some((who, via))
    }
}

/// One piece of adapter work and where its answer goes.
#[derive(Debug, Clone)]
pub struct Job {
    /// The device.
    pub device: DeviceId,
    /// What to do.
    pub action: JobAction,
    pub(super) reply: Reply,
}

/// What the adapter answered.
#[derive(Debug, Clone, PartialEq)]
pub enum JobOutcome {
    /// The value now in effect, or why not.
    Written(Result<Value, CommandError>),
    /// Each point's value (read, or now in effect), or why not.
    Values(Vec<(PointId, Result<Value, CommandError>)>),
}

impl Job {
    /// Asks the adapter through `router`; every request ends within the
    /// router's timeout.
    pub async fn run(self, router: CommandRouter) -> (Self, JobOutcome) {
        let device = self.device.as_str();
        let outcome = match &self.action {
            JobAction::Write { point, value } => {
                JobOutcome::Written(router.write(device, point.as_str(), value.clone()).await)
            }
            JobAction::Read(points) => {
                let reads = points.iter().map(|p| router.read(device, p.as_str()));
                let values = futures::future::join_all(reads).await;
                JobOutcome::Values(points.iter().cloned().zip(values).collect())
            }
            JobAction::WriteMany(writes) => {
                let mut out = Vec::with_capacity(writes.len());
                for (point, value) in writes {
                    let r = router.write(device, point.as_str(), value.clone()).await;
                    out.push((point.clone(), r));
                }
                JobOutcome::Values(out)
            }
        };
        (self, outcome)
    }
}

/// Commands in progress: jobs waiting for their adapter, ad-hoc sessions.
#[derive(Debug, Default)]
pub(super) struct Commands {
    /// Adapter work asked for since the connection loop last took it.
    jobs: Vec<Job>,
    /// Ad-hoc command sessions started (their ids).
    pub(super) sessions: u64,
    /// Stanzas that follow an IQ's reply (readout values), sent after it.
    pub(super) follow_ups: Vec<Element>,
}

/// How a write ended, for the `writes` counter: refused when the request
/// itself was wrong (the device never saw it or said no), failed when the
/// adapter or device could not do it.
fn write_outcome(result: &Result<Value, CommandError>) -> WriteOutcome {
    match result {
        Ok(_) => WriteOutcome::Done,
        Err(
            CommandError::UnknownDevice(_)
            | CommandError::UnknownPoint { .. }
            | CommandError::NotWritable { .. }
            | CommandError::InvalidValue(_)
            | CommandError::Failed(AdapterError::Refused(_) | AdapterError::Unsupported(_)),
        ) => WriteOutcome::Refused,
        Err(_) => WriteOutcome::Failed,
    }
}

/// The stanza error that says why a command failed, by its cause: a
/// client can tell "try later" (`wait`) from "not like this" (`modify`,
/// `cancel`).
pub(super) fn error_condition(e: &CommandError) -> (ErrorType, DefinedCondition) {
    match e {
        CommandError::UnknownDevice(_)
        | CommandError::UnknownPoint { .. }
        | CommandError::Failed(AdapterError::NotHere(_)) => {
            (ErrorType::Cancel, DefinedCondition::ItemNotFound)
        }
        CommandError::NotWritable { .. } => (ErrorType::Cancel, DefinedCondition::NotAllowed),
        CommandError::InvalidValue(_) => (ErrorType::Modify, DefinedCondition::BadRequest),
        CommandError::Failed(AdapterError::Refused(_)) => {
            (ErrorType::Modify, DefinedCondition::NotAcceptable)
        }
        CommandError::Failed(AdapterError::Unsupported(_)) => {
            (ErrorType::Cancel, DefinedCondition::FeatureNotImplemented)
        }
        CommandError::Timeout { .. } | CommandError::Failed(AdapterError::NoAnswer(_)) => {
            (ErrorType::Wait, DefinedCondition::RemoteServerTimeout)
        }
        CommandError::AdapterGone(_) | CommandError::Failed(AdapterError::Unavailable(_)) => {
            (ErrorType::Wait, DefinedCondition::ServiceUnavailable)
        }
    }
}

impl Gateway {
    /// Counts the writes of a finished job.
    fn count_writes(&self, job: &Job, outcome: &JobOutcome) {
        let device = &job.device;
        let emit = |r: &Result<Value, CommandError>| {
            WriteEnded {
                device,
                outcome: write_outcome(r),
            }
            .emit(&self.telemetry);
        };
        match (&job.action, outcome) {
            (JobAction::Write { .. }, JobOutcome::Written(r)) => emit(r),
            (JobAction::WriteMany(_), JobOutcome::Values(values)) => {
                values.iter().for_each(|(_, r)| emit(r));
            }
            _ => {}
        }
    }

    /// Queues adapter work, or says why not.
    pub(super) fn queue_job(&mut self, job: Job) -> Result<(), String> {
        if self.commands.jobs.len() >= MAX_QUEUED_JOBS {
            return Err(BUSY.to_owned());
        }
        self.commands.jobs.push(job);
        Ok(())
    }

    /// Queues adapter work asked for by the IQ `el`; the error reply when
    /// too much waits already.
    pub(super) fn queue_job_for(&mut self, el: &Element, job: Job) -> Option<Element> {
        self.queue_job(job).err().map(|busy| {
            iq_error(
                el,
                ErrorType::Wait,
                DefinedCondition::ResourceConstraint,
                Some(&busy),
            )
        })
    }

    /// Up to `max` queued jobs, oldest first, for the connection loop to
    /// run (it bounds how many run at once; the rest wait here, and past
    /// [`MAX_QUEUED_JOBS`] new ones are refused as busy).
    pub fn take_jobs(&mut self, max: usize) -> Vec<Job> {
        let n = max.min(self.commands.jobs.len());
        self.commands.jobs.drain(..n).collect()
    }

    /// Jobs waiting for the connection loop to take them.
    pub fn queued_jobs(&self) -> usize {
        self.commands.jobs.len()
    }

    /// The answer to a job once its adapter has spoken (a write is
    /// counted and audited here, with what the adapter answered).
    pub fn job_done(&self, job: Job, outcome: JobOutcome) -> Vec<Element> {
        self.count_writes(&job, &outcome);
        self.audit_job(&job, &outcome);
        match job.reply {
            Reply::Chat(reply) => {
                vec![self.chat_job_done(&job.device, &job.action, reply, outcome)]
            }
            Reply::Readout { to, seqnr } => self.readout_done(&job.device, &to, &seqnr, outcome),
            Reply::Control(request) => vec![self.control_done(&request, outcome)],
            Reply::Command {
                request,
                node,
                session,
            } => vec![self.command_job_done(&job.device, &request, &node, &session, outcome)],
        }
    }
}

impl Gateway {
    /// Audits the writes of a finished job, one entry per point.
    fn audit_job(&self, job: &Job, outcome: &JobOutcome) {
        let Some((who, via)) = job.reply.requester() else {
            return;
        };
        let device = job.device.as_str();
        let entry = |point: &PointId, asked: &Value, result: &Result<Value, CommandError>| {
            Entry::write(
                who.clone(),
                via,
                device,
                point.as_str(),
                asked.clone(),
                result.clone().map_err(|e| e.to_string()),
            )
        };
        match (&job.action, outcome) {
            (JobAction::Write { point, value }, JobOutcome::Written(result)) => {
                self.audit.record(entry(point, value, result));
            }
            (JobAction::WriteMany(writes), JobOutcome::Values(results)) => {
                for ((point, asked), (_, result)) in writes.iter().zip(results) {
                    self.audit.record(entry(point, asked, result));
                }
            }
            _ => {}
        }
    }

    /// Counts and audits a write refused before it reached the adapter (not allowed,
    /// unknown or read-only point, a value that does not fit, busy): the
    /// value as typed, typed as the point's kind when it parses.
    pub(super) fn audit_refused(
        &self,
        who: &BareJid,
        via: Via,
        spec: &DeviceSpec,
        point: &str,
        value: &str,
        why: &str,
    ) {
        WriteEnded {
            device: &spec.id,
            outcome: WriteOutcome::Refused,
        }
        .emit(&self.telemetry);
        let asked = spec
            .points
            .get(point)
            .and_then(|p| Value::parse_as(value, p.kind).ok())
            .unwrap_or_else(|| Value::Text(value.to_owned()));
        self.audit.record(Entry::write(
            who.to_string(),
            via,
            spec.id.as_str(),
            point,
            asked,
            Err(why.to_owned()),
        ));
    }
}
