//! Who subscribed to what, one database key per subscription.

use std::collections::{BTreeMap, BTreeSet};

use redb::TableDefinition;
use serde::{Deserialize, Serialize};

/// `(kind, node, jid) → ()`: one subscription is one key, so a subscribe or
/// an unsubscribe is one small insert or remove, not a rewrite of all of
/// them.
pub(crate) const TABLE: TableDefinition<'static, (u8, &str, &str), ()> =
    TableDefinition::new("fieldbridge:subscriptions");

/// What a subscriber subscribed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubscriptionKind {
    /// A device's presence (XMPP roster subscription); the JID is bare.
    Presence,
    /// A pubsub node; the JID is as given in the subscribe request.
    Pubsub,
}

impl SubscriptionKind {
    /// The key's first part. Stored: never renumber.
    pub(crate) fn code(self) -> u8 {
        match self {
            SubscriptionKind::Presence => 0,
            SubscriptionKind::Pubsub => 1,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(SubscriptionKind::Presence),
            1 => Some(SubscriptionKind::Pubsub),
            _ => None,
        }
    }
}

/// Subscribers per device (presence) and per node (pubsub).
///
/// The same shape the previous version kept in `subscriptions.json`, which
/// is how [`Store::open`](crate::Store::open) reads that file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscriptions {
    /// Bare JIDs subscribed to each device's presence, by device id.
    #[serde(default)]
    pub presence: BTreeMap<String, BTreeSet<String>>,
    /// JIDs (as given in the subscribe request) subscribed to each node.
    #[serde(default)]
    pub pubsub: BTreeMap<String, BTreeSet<String>>,
}

impl Subscriptions {
    /// The subscribers of `kind`.
    pub(crate) fn of_kind(
        &mut self,
        kind: SubscriptionKind,
    ) -> &mut BTreeMap<String, BTreeSet<String>> {
        match kind {
            SubscriptionKind::Presence => &mut self.presence,
            SubscriptionKind::Pubsub => &mut self.pubsub,
        }
    }

    /// Every subscription as (kind, node, jid).
    pub(crate) fn entries(&self) -> impl Iterator<Item = (SubscriptionKind, &str, &str)> {
        [
            (SubscriptionKind::Presence, &self.presence),
            (SubscriptionKind::Pubsub, &self.pubsub),
        ]
        .into_iter()
        .flat_map(|(kind, map)| {
            map.iter().flat_map(move |(node, jids)| {
                jids.iter()
                    .map(move |jid| (kind, node.as_str(), jid.as_str()))
            })
        })
    }
}

/// One change of the subscriptions, applied by
/// [`Store::commit`](crate::Store::commit) in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// `jid` subscribed to `node` (a device id for presence). Subscribing
    /// twice is the same as once.
    Subscribe {
        /// Presence or pubsub.
        kind: SubscriptionKind,
        /// The device id (presence) or pubsub node.
        node: String,
        /// The subscriber: a bare JID for presence, the JID as given for pubsub.
        jid: String,
    },
    /// `jid` unsubscribed from `node`. Unsubscribing one that is not
    /// subscribed does nothing.
    Unsubscribe {
        /// Presence or pubsub.
        kind: SubscriptionKind,
        /// The device id (presence) or pubsub node.
        node: String,
        /// The subscriber, as it was subscribed.
        jid: String,
    },
}
