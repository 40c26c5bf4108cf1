//! The presence book: each device's presence to its presence subscribers
//! (available with its readings as status text, `xa` when stale,
//! unavailable when offline), what it last said, and the answers to
//! subscription requests and probes.
//!
//! Status changes go out at once; a text that changes only with the values
//! goes out at most once per status interval, so that a phone showing the
//! contact is not woken every few seconds.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fieldbridge_core::{DeviceId, DeviceSpec, DeviceStatus, PointSpec, display};
use fieldbridge_store::SubscriptionKind;
use minidom::Element;
use tokio::time::Instant;

use super::card;
use super::entity::{self, Entity};
use super::subscribers::Subscribers;
use super::{DeviceState, Gateway, Inbound, STATUS_SETTLE};
use crate::xml::{DefinedCondition, ErrorType, stanza_error};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::presence::{Presence, Show, Type};

/// What each device last said, and how it says it.
#[derive(Debug)]
pub(super) struct PresenceBook {
    said: HashMap<DeviceId, Said>,
    /// Each device's entity capabilities element, sent in every presence.
    caps: HashMap<DeviceId, Element>,
    /// Each device's spec: which points its text shows, and how.
    specs: HashMap<DeviceId, Arc<DeviceSpec>>,
    /// Each device's avatar hash (XEP-0153), sent in every presence.
    photo: HashMap<DeviceId, Element>,
    /// How often a status text may change with the values.
    interval: Duration,
}

/// The last presence a device sent.
#[derive(Debug, Default)]
struct Said {
    text: Option<String>,
    at: Option<Instant>,
    /// It went out for a status change, perhaps before the rest of that
    /// message's readings: the text may follow after [`STATUS_SETTLE`]
    /// instead of the status interval.
    for_status: bool,
}

impl PresenceBook {
    pub(super) fn new(interval: Duration) -> Self {
        Self {
            said: HashMap::new(),
            caps: HashMap::new(),
            specs: HashMap::new(),
            photo: HashMap::new(),
            interval,
        }
    }

    pub(super) fn set_interval(&mut self, interval: Duration) {
        self.interval = interval;
    }

    /// A device to speak for.
    pub(super) fn add(&mut self, spec: &Arc<DeviceSpec>) {
        self.said.entry(spec.id.clone()).or_default();
        self.caps.insert(spec.id.clone(), entity::device_caps(spec));
        self.specs.insert(spec.id.clone(), Arc::clone(spec));
        self.photo
            .insert(spec.id.clone(), card::Avatar::of(spec).update());
    }

    /// A device no longer spoken for (removed by a reload).
    pub(super) fn remove(&mut self, device: &DeviceId) {
        self.said.remove(device);
        self.caps.remove(device);
        self.specs.remove(device);
        self.photo.remove(device);
    }

    /// The device's status text now.
    fn text(&self, device: &str, state: &DeviceState) -> String {
        status_text(self.specs.get(device).map(|s| &**s), state)
    }

    /// The `<c/>` a device advertises.
    pub(super) fn caps(&self, device: &str) -> Option<&Element> {
        self.caps.get(device)
    }

    /// The device's presence to every subscriber, noted as said: built
    /// once (text, caps, sender), then addressed to each.
    pub(super) fn broadcast(
        &mut self,
        me: &Entity,
        device: &DeviceId,
        state: &DeviceState,
        subscribers: &Subscribers,
        now: Instant,
    ) -> Vec<Element> {
        let text = self.text(device.as_str(), state);
        let said = self.said.entry(device.clone()).or_default();
        said.text = Some(text.clone());
        said.at = Some(now);
        said.for_status = false;
        let current = self.current(me, device.as_str(), state, text);
        subscribers
            .of(SubscriptionKind::Presence, device.as_str())
            .filter_map(|to| addressed(&current, to))
            .collect()
    }

    /// A status change: to every subscriber at once.
    pub(super) fn status_changed(
        &mut self,
        me: &Entity,
        device: &DeviceId,
        state: &DeviceState,
        subscribers: &Subscribers,
        now: Instant,
    ) -> Vec<Element> {
        let out = self.broadcast(me, device, state, subscribers, now);
        if let Some(said) = self.said.get_mut(device) {
            said.for_status = true;
        }
        out
    }

    /// The new status text of an online device, if it may go out now.
    pub(super) fn refresh_if_due(
        &mut self,
        me: &Entity,
        device: &DeviceId,
        state: &DeviceState,
        subscribers: &Subscribers,
        now: Instant,
    ) -> Vec<Element> {
        if !self.text_refresh_due(device, state, now) {
            return Vec::new();
        }
        self.broadcast(me, device, state, subscribers, now)
    }

    fn text_refresh_due(&self, device: &DeviceId, state: &DeviceState, now: Instant) -> bool {
        let said = self.said.get(device);
        // Cheap tests first: the text is built only when it could be sent.
        state.status == Some(DeviceStatus::Online)
            && said.and_then(|s| s.at).is_none_or(|t| {
                let waited = now.duration_since(t);
                waited >= self.interval
                    || (said.is_some_and(|s| s.for_status) && waited >= STATUS_SETTLE)
            })
            && said.and_then(|s| s.text.as_deref()) != Some(&self.text(device.as_str(), state))
    }

    /// The device's current presence, addressed to `to`.
    pub(super) fn presence(
        &self,
        me: &Entity,
        device: &str,
        state: &DeviceState,
        to: &str,
    ) -> Option<Element> {
        addressed(
            &self.current(me, device, state, self.text(device, state)),
            to,
        )
    }

    /// The device's current presence, with `text` as its status, to nobody yet.
    fn current(&self, me: &Entity, device: &str, state: &DeviceState, text: String) -> Presence {
        let (kind, show) = match &state.status {
            None | Some(DeviceStatus::Offline { .. }) => (Type::Unavailable, None),
            Some(DeviceStatus::Stale) => (Type::None, Some(Show::Xa)),
            Some(DeviceStatus::Online) => (Type::None, None),
        };
        let mut p = Presence::new(kind);
        p.from = Jid::new(&me.device_full_jid(device)).ok();
        p.show = show;
        p.set_status("en", text);
        p.payloads.extend(self.caps.get(device).cloned());
        p.payloads.extend(self.photo.get(device).cloned());
        p
    }
}

/// `p` addressed to `to`; `None` when `to` is not a JID (a subscription
/// is checked when it is made, so only a damaged store could hold one):
/// a presence without `to` would go to the server itself.
fn addressed(p: &Presence, to: &str) -> Option<Element> {
    let mut p = p.clone();
    p.to = Some(Jid::new(to).ok()?);
    Some(p.into())
}

/// A presence from `from` to `to`: JIDs the gateway made or checked.
fn presence(kind: Type, from: &str, to: &str) -> Presence {
    let mut p = Presence::new(kind);
    p.from = Jid::new(from).ok();
    p.to = Jid::new(to).ok();
    p
}

/// The last word: every device unavailable to every subscriber.
pub(super) fn goodbye(me: &Entity, subscribers: &Subscribers) -> Vec<Element> {
    let mut out = Vec::new();
    for (device, jids) in subscribers.all(SubscriptionKind::Presence) {
        for to in jids {
            let mut p = presence(Type::Unavailable, &me.device_full_jid(device), to);
            p.set_status("en", "gateway stopped");
            out.push(p.into());
        }
    }
    out
}

/// What a removed device's subscribers read: it is gone, not failed.
pub(super) const REMOVED: &str = "removed from the configuration";

/// A device's last word when a reload removed it: unavailable, saying so,
/// to each of its presence subscribers (who stay subscribed, so that
/// adding it back brings them its presence again).
pub(super) fn removed(me: &Entity, device: &DeviceId, subscribers: &Subscribers) -> Vec<Element> {
    subscribers
        .of(SubscriptionKind::Presence, device.as_str())
        .map(|to| {
            let mut p = presence(Type::Unavailable, &me.device_full_jid(device.as_str()), to);
            p.set_status("en", REMOVED);
            p.into()
        })
        .collect()
}

/// How long the readings in a status text may grow when the device sets no
/// `summary`: about one line of a phone's contact list.
pub(super) const SUMMARY_WIDTH: usize = 80;

/// Latest readings as people read them, `Temperature 62.80 °C, pump on`:
/// the device's `summary` points in its order, or else its points in id
/// order as long as they fit [`SUMMARY_WIDTH`] (whole points only; the
/// first always shows).
fn readings_text(spec: &DeviceSpec, state: &DeviceState) -> String {
    let part = |p: &PointSpec| {
        let s = state.latest.get(&p.id)?;
        Some(format!(
            "{} {}",
            p.label(),
            display::with_unit(p, &s.reading.value)
        ))
    };
    let Some(summary) = &spec.settings.summary else {
        let mut out = String::new();
        for text in spec.points.values().filter_map(part) {
            if out.is_empty() {
                out = text;
            } else if out.chars().count() + 2 + text.chars().count() <= SUMMARY_WIDTH {
                out.push_str(", ");
                out.push_str(&text);
            } else {
                break;
            }
        }
        return out;
    };
    summary
        .iter()
        .filter_map(|id| spec.points.get(id))
        .filter_map(part)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The status text: the readings, or why there are none. Without the
/// device's spec (never the case for a known device) it shows no readings.
pub(super) fn status_text(spec: Option<&DeviceSpec>, state: &DeviceState) -> String {
    let readings = spec.map(|s| readings_text(s, state)).unwrap_or_default();
    match &state.status {
        None => "waiting for the first reading".to_owned(),
        Some(DeviceStatus::Online) if readings.is_empty() => "online".to_owned(),
        Some(DeviceStatus::Online) => readings,
        Some(DeviceStatus::Stale) if readings.is_empty() => "no fresh readings".to_owned(),
        Some(DeviceStatus::Stale) => format!("no fresh readings; last: {readings}"),
        Some(DeviceStatus::Offline { reason }) => reason.clone(),
    }
}

impl Gateway {
    /// A presence to a device: subscribe, unsubscribe and probe are
    /// answered; the rest (directed presence, errors) needs no answer.
    pub(super) fn on_presence(&mut self, inbound: &Inbound<'_>) -> Vec<Element> {
        let el = inbound.el;
        let kind = el.attr("type").unwrap_or("available");
        if !matches!(kind, "subscribe" | "unsubscribe" | "probe") {
            // Directed presence, unsubscribed, errors: nothing to say back.
            return Vec::new();
        }
        let Some(from) = &inbound.from else {
            self.guard.malformed(el, "presence without a valid sender");
            return Vec::new();
        };
        let bare = from.to_bare();
        let Some(device) = inbound.device.as_deref() else {
            return Vec::new();
        };
        let device_jid = self.me.device_jid(device);
        let answer = |kind, to: &str| presence(kind, &device_jid, to);
        let subscriber = bare.to_string();
        let exists = self.directory.device(device).is_some();
        if !exists
            && kind == "probe"
            && self.access.may_read(&bare)
            && self
                .subscribers
                .has(SubscriptionKind::Presence, device, &subscriber)
        {
            // A subscriber's device made at run time, not seen since the
            // gateway started, or removed by a reload: offline, not
            // "unsubscribed" (which would remove it from the subscriber's
            // roster).
            let mut p = presence(
                Type::Unavailable,
                &self.me.device_full_jid(device),
                &from.to_string(),
            );
            let why = if self.removed.contains_key(device) {
                REMOVED
            } else {
                "not seen since the gateway started"
            };
            p.set_status("en", why);
            return vec![p.into()];
        }
        if !exists || !self.access.may_read(&bare) {
            if kind == "unsubscribe" {
                return Vec::new();
            }
            self.guard
                .forbidden(&bare, "presence subscription or probe refused");
            return vec![answer(Type::Unsubscribed, &subscriber).into()];
        }
        let empty = DeviceState::default();
        let state = self.devices.get(device).unwrap_or(&empty);
        match kind {
            "subscribe" => {
                let known = self
                    .subscribers
                    .has(SubscriptionKind::Presence, device, &subscriber);
                if !known && let Some(limit) = self.subscribers.presence_limit(device) {
                    self.guard.limit_reached(&subscriber, limit.cause());
                    let mut p = answer(Type::Error, &from.to_string());
                    p.payloads.push(
                        stanza_error(
                            ErrorType::Cancel,
                            DefinedCondition::PolicyViolation,
                            Some(&limit.to_string()),
                        )
                        .into(),
                    );
                    return vec![p.into()];
                }
                if self
                    .subscribers
                    .subscribe(SubscriptionKind::Presence, device, &subscriber)
                {
                    tracing::info!(jid = %bare, device = %device, "presence subscription");
                }
                // XEP-0172 §4.1: the nickname goes with the subscription,
                // never in presence broadcasts (there the vCard names it).
                let mut subscribed = answer(Type::Subscribed, &subscriber);
                subscribed
                    .payloads
                    .extend(self.directory.device(device).map(|spec| card::nick(spec)));
                let mut out = vec![subscribed.into()];
                out.extend(self.presence.presence(&self.me, device, state, &subscriber));
                out.extend(self.nick_event(device, &device_jid, &subscriber));
                out
            }
            "unsubscribe" => {
                self.subscribers
                    .unsubscribe(SubscriptionKind::Presence, device, &subscriber);
                vec![answer(Type::Unsubscribed, &subscriber).into()]
            }
            _ => {
                let mut out: Vec<Element> = self
                    .presence
                    .presence(&self.me, device, state, &from.to_string())
                    .into_iter()
                    .collect();
                out.extend(self.nick_event(device, &device_jid, &subscriber));
                out
            }
        }
    }
}
