//! What is looked at at all, and how refusals are counted and logged: a
//! stanza from our own domain or from a sender over its rate is dropped
//! before any part sees it; malformed, forbidden and unsupported requests
//! are counted, and logged loudly once per cause or sender, then quietly,
//! so that a noisy peer cannot flood the log.

use std::collections::HashSet;
use std::sync::Arc;

use fieldbridge_core::DeviceId;
use fieldbridge_core::telemetry::{InternalEvent, RefusalCause, StanzaRefused, Telemetry};
use minidom::Element;
use tokio::time::Instant;
use xmpp_parsers::jid::{BareJid, Jid};

use crate::flood::{self, SenderLimits, Verdict};
use crate::xml::{DefinedCondition, ErrorType, iq_error};

/// What a reader who asked to write is told.
pub(super) const NOT_IN_CONTROL: &str = "You may not change this device (not in access.control).";

/// Refused senders remembered for quiet logging, at most.
const MAX_LOGGED_SENDERS: usize = 1000;

/// Admission and refusals.
#[derive(Debug)]
pub(super) struct Guard {
    senders: SenderLimits,
    /// Causes already logged at `info`.
    logged_causes: HashSet<&'static str>,
    /// Refused senders already logged at `info` (bounded).
    logged_senders: HashSet<BareJid>,
    /// Where refusals are counted (by cause, never by JID).
    telemetry: Arc<Telemetry>,
}

/// The sender of a stanza, if it has a valid one.
pub(super) fn sender(el: &Element) -> Option<Jid> {
    el.attr("from").and_then(|f| Jid::new(f).ok())
}

/// An IQ get or set that can be answered (it has a sender and an id).
pub(super) fn is_request(el: &Element) -> bool {
    el.name() == "iq"
        && matches!(el.attr("type"), Some("get" | "set"))
        && el.attr("id").is_some_and(|id| !id.is_empty())
        && sender(el).is_some()
}

impl Guard {
    pub(super) fn new(telemetry: Arc<Telemetry>) -> Self {
        Self {
            senders: SenderLimits::default(),
            logged_causes: HashSet::new(),
            logged_senders: HashSet::new(),
            telemetry,
        }
    }

    /// Counts a refusal; how many of its cause there were, with this one.
    pub(super) fn refused(&self, cause: RefusalCause) -> u64 {
        StanzaRefused { cause }.emit(&self.telemetry);
        Telemetry::count(&self.telemetry.stanzas_refused, [("cause", cause.name())])
    }

    /// Whether a stanza is looked at at all: not from our own `domain` (we
    /// never send requests to ourselves, so that is a bounce or a spoof,
    /// and answering could start a loop), and its sender within its rate.
    pub(super) fn admit(&mut self, el: &Element, from: Option<&Jid>, domain: &str) -> bool {
        let Some(from) = from else {
            return true;
        };
        if from.domain().as_str() == domain {
            self.malformed(el, "stanza from our own domain");
            return false;
        }
        match self.senders.check(&from.to_bare(), Instant::now()) {
            Verdict::Allowed => true,
            Verdict::FloodStarts => {
                self.refused(RefusalCause::RateLimited);
                tracing::info!(jid = %from.to_bare(), rate = flood::RATE, burst = flood::BURST, "sender over its rate limit: its stanzas are refused until it slows down");
                false
            }
            Verdict::Refused => {
                self.refused(RefusalCause::RateLimited);
                false
            }
        }
    }

    /// The answer to a stanza that was not admitted: a request from over
    /// the rate limit is told to wait (so that a client does not hang until
    /// its own timeout); anything else is dropped.
    pub(super) fn over_limit(el: &Element, from: Option<&Jid>, domain: &str) -> Vec<Element> {
        let own = from.is_some_and(|f| f.domain().as_str() == domain);
        if !own && is_request(el) {
            return vec![iq_error(
                el,
                ErrorType::Wait,
                DefinedCondition::ResourceConstraint,
                Some("too many requests; slow down"),
            )];
        }
        Vec::new()
    }

    pub(super) fn malformed(&mut self, el: &Element, why: &'static str) {
        let malformed = self.refused(RefusalCause::Malformed);
        let jid = el.attr("from").unwrap_or("?");
        if self.logged_causes.insert(why) {
            tracing::info!(
                jid,
                error = why,
                malformed,
                "malformed stanza dropped (further ones with this cause are logged at debug)"
            );
        } else {
            tracing::debug!(jid, error = why, malformed, "malformed stanza dropped");
        }
    }

    /// A sender refused for what `access` says: counted, and logged at
    /// `info` the first time for each sender (then at `debug`), so that an
    /// operator sees who was refused without a flood filling the log.
    pub(super) fn forbidden(&mut self, who: &BareJid, what: &'static str) {
        self.refused(RefusalCause::Forbidden);
        if self.logged_senders.len() >= MAX_LOGGED_SENDERS {
            self.logged_senders.clear();
        }
        if self.logged_senders.insert(who.clone()) {
            tracing::info!(jid = %who, "{what} (further refusals of this sender are logged at debug)");
        } else {
            tracing::debug!(jid = %who, "{what}");
        }
    }

    /// A reader asking to write who is not in `access.control` (outsiders
    /// never get this far): counted as forbidden and logged, by the way it
    /// asked (chat, ad-hoc, XEP-0325).
    pub(super) fn control_refused(&mut self, who: &BareJid, device: &DeviceId, how: &'static str) {
        self.refused(RefusalCause::Forbidden);
        tracing::info!(jid = %who, device = %device, "{how} refused: not in access.control");
    }

    /// [`Guard::control_refused`] for an IQ: the `forbidden` answer
    /// (XEP-0050 §4.4 and XEP-0325 alike), in the words chat uses.
    pub(super) fn control_refused_iq(
        &mut self,
        el: &Element,
        who: &BareJid,
        device: &DeviceId,
        how: &'static str,
    ) -> Element {
        self.control_refused(who, device, how);
        iq_error(
            el,
            ErrorType::Auth,
            DefinedCondition::Forbidden,
            Some(NOT_IN_CONTROL),
        )
    }

    /// A request refused by a limit: logged once per cause at `info`.
    pub(super) fn limit_reached(&mut self, jid: &str, cause: &'static str) {
        self.refused(RefusalCause::SubscriptionLimit);
        if self.logged_causes.insert(cause) {
            tracing::info!(
                jid,
                cause,
                "subscription refused (further ones for this cause are logged at debug)"
            );
        } else {
            tracing::debug!(jid, cause, "subscription refused");
        }
    }

    /// An IQ this entity does not answer.
    pub(super) fn unsupported(&mut self, el: &Element) -> Element {
        self.refused(RefusalCause::Unsupported);
        iq_error(
            el,
            ErrorType::Cancel,
            DefinedCondition::ServiceUnavailable,
            None,
        )
    }
}
