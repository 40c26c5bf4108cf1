//! Who is subscribed to which device, by presence and by pubsub, within
//! the limits that keep one user or one device from taking the gateway's
//! memory; each change is kept until the store has it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use fieldbridge_core::telemetry::{
    InternalEvent, SubscribersLoaded, SubscriptionChanged, Telemetry,
};
use fieldbridge_store::{Change, SubscriptionKind, Subscriptions};
use xmpp_parsers::jid::{BareJid, Jid};

/// A node's subscriptions per user (bare JID): one per resource, and
/// that many resources at most.
pub const MAX_RESOURCES_PER_USER: usize = 4;

/// Subscribers of one device, pubsub and presence each.
pub const MAX_SUBSCRIBERS_PER_DEVICE: usize = 1000;

/// Subscriptions of all kinds to all devices of the gateway.
pub const MAX_SUBSCRIPTIONS: usize = 50_000;

/// Every subscription, and the changes the store does not have yet.
#[derive(Debug)]
pub(super) struct Subscribers {
    subs: Subscriptions,
    /// Subscription changes not yet handed to the store writer.
    changes: Vec<Change>,
    /// Each node's pubsub subscribers as one shared list, made when first
    /// asked for after a change: every notification of the node holds it.
    lists: HashMap<String, Arc<[String]>>,
    /// Subscribers the access lists no longer allow (changed by a reload,
    /// or while the gateway was stopped): kept, so that allowing them again
    /// resumes them, but sent nothing.
    paused: HashSet<String>,
    /// Where subscriptions added and removed are counted.
    telemetry: Arc<Telemetry>,
}

/// Which subscription limit a request reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Limit {
    Resources,
    Device,
    Gateway,
}

impl Limit {
    /// The cause, for logs.
    pub(super) fn cause(self) -> &'static str {
        match self {
            Limit::Resources => "resources per user",
            Limit::Device => "subscribers per device",
            Limit::Gateway => "subscriptions per gateway",
        }
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Limit::Resources => write!(
                f,
                "at most {MAX_RESOURCES_PER_USER} resources of one user may subscribe to a node"
            ),
            Limit::Device => write!(
                f,
                "this device has its limit of {MAX_SUBSCRIBERS_PER_DEVICE} subscribers"
            ),
            Limit::Gateway => write!(
                f,
                "the gateway has its limit of {MAX_SUBSCRIPTIONS} subscriptions"
            ),
        }
    }
}

/// The `kind` label of a subscription.
fn kind_label(kind: SubscriptionKind) -> &'static str {
    match kind {
        SubscriptionKind::Presence => "presence",
        SubscriptionKind::Pubsub => "pubsub",
    }
}

impl Subscribers {
    /// The subscriptions the store kept.
    pub(super) fn new(subs: Subscriptions, telemetry: Arc<Telemetry>) -> Self {
        for (kind, of_kind) in [("presence", &subs.presence), ("pubsub", &subs.pubsub)] {
            let count = of_kind.values().map(|s| s.len() as u64).sum();
            SubscribersLoaded { kind, count }.emit(&telemetry);
        }
        Self {
            subs,
            changes: Vec::new(),
            lists: HashMap::new(),
            paused: HashSet::new(),
            telemetry,
        }
    }

    /// Pauses every subscriber whose account `allowed` refuses, resumes
    /// the others; how many are paused.
    pub(super) fn pause_unless(&mut self, allowed: impl Fn(&BareJid) -> bool) -> usize {
        self.paused = self
            .subs
            .presence
            .values()
            .chain(self.subs.pubsub.values())
            .flatten()
            .filter(|j| Jid::new(j).is_ok_and(|j| !allowed(&j.to_bare())))
            .cloned()
            .collect();
        self.lists.clear();
        self.paused.len()
    }

    fn of_kind(&self, kind: SubscriptionKind) -> &BTreeMap<String, BTreeSet<String>> {
        match kind {
            SubscriptionKind::Presence => &self.subs.presence,
            SubscriptionKind::Pubsub => &self.subs.pubsub,
        }
    }

    fn of_kind_mut(&mut self, kind: SubscriptionKind) -> &mut BTreeMap<String, BTreeSet<String>> {
        match kind {
            SubscriptionKind::Presence => &mut self.subs.presence,
            SubscriptionKind::Pubsub => &mut self.subs.pubsub,
        }
    }

    /// The subscribers of `node` that are not paused, in order.
    pub(super) fn of(&self, kind: SubscriptionKind, node: &str) -> impl Iterator<Item = &String> {
        self.of_kind(kind)
            .get(node)
            .into_iter()
            .flatten()
            .filter(|j| !self.paused.contains(j.as_str()))
    }

    /// Every node with its subscribers, in node order.
    pub(super) fn all(
        &self,
        kind: SubscriptionKind,
    ) -> impl Iterator<Item = (&String, &BTreeSet<String>)> {
        self.of_kind(kind).iter()
    }

    /// The pubsub subscribers of `node`, shared.
    pub(super) fn pubsub_list(&mut self, node: &str) -> Arc<[String]> {
        if let Some(list) = self.lists.get(node) {
            return list.clone();
        }
        let list: Arc<[String]> = self.of(SubscriptionKind::Pubsub, node).cloned().collect();
        self.lists.insert(node.to_owned(), list.clone());
        list
    }

    /// Whether `jid` is subscribed to `node`.
    pub(super) fn has(&self, kind: SubscriptionKind, node: &str, jid: &str) -> bool {
        self.of_kind(kind)
            .get(node)
            .is_some_and(|s| s.contains(jid))
    }

    /// Adds a subscription; false if it existed. It reaches the store with
    /// the next write of the connection loop, off the event loop.
    pub(super) fn subscribe(&mut self, kind: SubscriptionKind, node: &str, jid: &str) -> bool {
        let added = self
            .of_kind_mut(kind)
            .entry(node.to_owned())
            .or_default()
            .insert(jid.to_owned());
        if added {
            SubscriptionChanged {
                kind: kind_label(kind),
                added: true,
            }
            .emit(&self.telemetry);
            self.lists.remove(node);
            self.changes.push(Change::Subscribe {
                kind,
                node: node.to_owned(),
                jid: jid.to_owned(),
            });
        }
        added
    }

    /// Removes a subscription; false if there was none.
    pub(super) fn unsubscribe(&mut self, kind: SubscriptionKind, node: &str, jid: &str) -> bool {
        let removed = self
            .of_kind_mut(kind)
            .get_mut(node)
            .is_some_and(|s| s.remove(jid));
        if removed {
            SubscriptionChanged {
                kind: kind_label(kind),
                added: false,
            }
            .emit(&self.telemetry);
            self.lists.remove(node);
            self.changes.push(Change::Unsubscribe {
                kind,
                node: node.to_owned(),
                jid: jid.to_owned(),
            });
        }
        removed
    }

    /// Changes for the store writer.
    pub(super) fn take_changes(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.changes)
    }

    /// How many changes the store does not have yet.
    pub(super) fn unsaved(&self) -> usize {
        self.changes.len()
    }

    fn count(&self) -> usize {
        self.subs
            .pubsub
            .values()
            .chain(self.subs.presence.values())
            .map(|s| s.len())
            .sum()
    }

    /// The limit a new pubsub subscription of `user` to `node` would break.
    pub(super) fn pubsub_limit(&self, node: &str, user: &BareJid) -> Option<Limit> {
        let subscribers = self.subs.pubsub.get(node);
        let user = user.to_string();
        let resources = subscribers
            .into_iter()
            .flatten()
            .filter(|j| {
                j.strip_prefix(user.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            })
            .count();
        if resources >= MAX_RESOURCES_PER_USER {
            Some(Limit::Resources)
        } else if subscribers.map_or(0, |s| s.len()) >= MAX_SUBSCRIBERS_PER_DEVICE {
            Some(Limit::Device)
        } else if self.count() >= MAX_SUBSCRIPTIONS {
            Some(Limit::Gateway)
        } else {
            None
        }
    }

    /// The limit a new presence subscription to `device` would break.
    pub(super) fn presence_limit(&self, device: &str) -> Option<Limit> {
        if self.subs.presence.get(device).map_or(0, |s| s.len()) >= MAX_SUBSCRIBERS_PER_DEVICE {
            Some(Limit::Device)
        } else if self.count() >= MAX_SUBSCRIPTIONS {
            Some(Limit::Gateway)
        } else {
            None
        }
    }
}
