//! Pubsub requests on the device nodes (XEP-0060): subscribe and
//! unsubscribe (within the subscription limits), subscriptions and
//! affiliations, and items requests, answered from the history (XEP-0059
//! pages for "what did I miss?"). The nodes are the gateway's own: nobody
//! else publishes, creates or configures them.

use fieldbridge_store::SubscriptionKind;
use minidom::Element;
use xmpp_parsers::jid::{BareJid, Jid};

use super::alerts::ALERTS_NODE;
use super::history::{self, Query};
use super::{Gateway, MAX_ITEMS_REPLY, NS_RSM};
use crate::xml::{
    DefinedCondition, ErrorType, NS_PUBSUB, NS_PUBSUB_ERRORS, child, element, iq_error,
    iq_error_with, iq_result, set, stanza_error, with,
};

impl Gateway {
    /// A pubsub error: a stanza error with XEP-0060's own condition.
    fn pubsub_error(
        el: &Element,
        kind: ErrorType,
        condition: DefinedCondition,
        pubsub_condition: Element,
        explanation: Option<&str>,
    ) -> Element {
        let mut error = stanza_error(kind, condition, explanation);
        error.other = Some(pubsub_condition);
        iq_error_with(el, error)
    }

    /// A pubsub request other than an items request.
    pub(super) fn pubsub(
        &mut self,
        el: &Element,
        kind: &str,
        payload: &Element,
        from: &BareJid,
    ) -> Element {
        let Some(action) = payload.children().next() else {
            return iq_error(el, ErrorType::Modify, DefinedCondition::BadRequest, None);
        };
        let node = action.attr("node");
        let known = node
            .and_then(|n| self.directory.device(n))
            .map(|d| d.id.clone())
            .or_else(|| {
                // The alarm transitions' node, subscribed to like a device's.
                (node == Some(ALERTS_NODE))
                    .then(|| fieldbridge_core::DeviceId::new(ALERTS_NODE).ok())
                    .flatten()
            });
        match (kind, action.name()) {
            ("set", "subscribe") => {
                let Some(node) = known else {
                    return iq_error(el, ErrorType::Cancel, DefinedCondition::ItemNotFound, None);
                };
                let Some(jid) = action.attr("jid").and_then(|j| Jid::new(j).ok()) else {
                    return Self::pubsub_error(
                        el,
                        ErrorType::Modify,
                        DefinedCondition::BadRequest,
                        element("jid-required", NS_PUBSUB_ERRORS),
                        None,
                    );
                };
                if &jid.to_bare() != from {
                    return Self::pubsub_error(
                        el,
                        ErrorType::Modify,
                        DefinedCondition::BadRequest,
                        element("invalid-jid", NS_PUBSUB_ERRORS),
                        None,
                    );
                }
                let jid = jid.to_string();
                let known = self
                    .subscribers
                    .has(SubscriptionKind::Pubsub, node.as_str(), &jid);
                if !known && let Some(limit) = self.subscribers.pubsub_limit(node.as_str(), from) {
                    self.guard.limit_reached(&jid, limit.cause());
                    return Self::pubsub_error(
                        el,
                        ErrorType::Cancel,
                        DefinedCondition::PolicyViolation,
                        element("too-many-subscriptions", NS_PUBSUB_ERRORS),
                        Some(&limit.to_string()),
                    );
                }
                self.subscribers
                    .subscribe(SubscriptionKind::Pubsub, node.as_str(), &jid);
                tracing::info!(jid = %jid, device = %node, "pubsub subscription");
                let mut sub = with(element("subscription", NS_PUBSUB), "node", node.as_str());
                set(&mut sub, "jid", jid.clone());
                set(&mut sub, "subscription", "subscribed");
                iq_result(el, Some(child(element("pubsub", NS_PUBSUB), sub)))
            }
            ("set", "unsubscribe") => {
                let Some(node) = known else {
                    return iq_error(el, ErrorType::Cancel, DefinedCondition::ItemNotFound, None);
                };
                let jid = action.attr("jid").unwrap_or_default();
                if !Jid::new(jid).is_ok_and(|j| &j.to_bare() == from) {
                    // Nobody unsubscribes someone else (XEP-0060 §6.2.3.3).
                    return Self::pubsub_error(
                        el,
                        ErrorType::Modify,
                        DefinedCondition::BadRequest,
                        element("invalid-jid", NS_PUBSUB_ERRORS),
                        None,
                    );
                }
                if !self
                    .subscribers
                    .unsubscribe(SubscriptionKind::Pubsub, node.as_str(), jid)
                {
                    return Self::pubsub_error(
                        el,
                        ErrorType::Cancel,
                        DefinedCondition::UnexpectedRequest,
                        element("not-subscribed", NS_PUBSUB_ERRORS),
                        None,
                    );
                }
                iq_result(el, None)
            }
            ("get", "affiliations") => {
                // Everyone who may read is a member of every node's
                // whitelist; the gateway alone publishes.
                let mut list = element("affiliations", NS_PUBSUB);
                for d in self.directory.devices() {
                    if node.is_some_and(|want| want != d.id.as_str()) {
                        continue;
                    }
                    let mut a = with(element("affiliation", NS_PUBSUB), "node", d.id.as_str());
                    set(&mut a, "affiliation", "member");
                    list.append_child(a);
                }
                if node.is_none_or(|want| want == ALERTS_NODE) {
                    let mut a = with(element("affiliation", NS_PUBSUB), "node", ALERTS_NODE);
                    set(&mut a, "affiliation", "member");
                    list.append_child(a);
                }
                iq_result(el, Some(child(element("pubsub", NS_PUBSUB), list)))
            }
            ("get", "subscriptions") => {
                let mut list = element("subscriptions", NS_PUBSUB);
                for (n, jids) in self.subscribers.all(SubscriptionKind::Pubsub) {
                    if node.is_some_and(|want| want != n) {
                        continue;
                    }
                    for j in jids
                        .iter()
                        .filter(|j| Jid::new(j).is_ok_and(|j| &j.to_bare() == from))
                    {
                        let mut s = with(element("subscription", NS_PUBSUB), "node", n.clone());
                        set(&mut s, "jid", j.clone());
                        set(&mut s, "subscription", "subscribed");
                        list.append_child(s);
                    }
                }
                iq_result(el, Some(child(element("pubsub", NS_PUBSUB), list)))
            }
            (_, other) => {
                // XEP-0060's answer to a pubsub request the service does not
                // offer (the nodes are the gateway's own: nobody publishes,
                // creates or configures them).
                self.guard
                    .refused(fieldbridge_core::telemetry::RefusalCause::Unsupported);
                let feature = match other {
                    "publish" => "publish",
                    "create" => "create-nodes",
                    "delete" => "delete-nodes",
                    "retract" => "retract-items",
                    "purge" => "purge-nodes",
                    "configure" => "config-node",
                    "options" => "subscription-options",
                    "default" => "retrieve-default",
                    _ => "",
                };
                let mut unsupported = element("unsupported", NS_PUBSUB_ERRORS);
                if !feature.is_empty() {
                    set(&mut unsupported, "feature", feature);
                }
                Self::pubsub_error(
                    el,
                    ErrorType::Cancel,
                    DefinedCondition::FeatureNotImplemented,
                    unsupported,
                    None,
                )
            }
        }
    }

    /// A pubsub items request: answered once the store was read (see
    /// [`Gateway::read_done`]); `Some` only for a request that is refused.
    pub(super) fn get_items(&mut self, el: &Element, payload: &Element) -> Option<Element> {
        let Some(action) = payload.get_child("items", NS_PUBSUB) else {
            return Some(iq_error(
                el,
                ErrorType::Modify,
                DefinedCondition::BadRequest,
                None,
            ));
        };
        if action.attr("node") == Some(ALERTS_NODE) && self.directory.device(ALERTS_NODE).is_none()
        {
            return Some(self.alert_items_reply(el, action));
        }
        let Some(node) = action
            .attr("node")
            .and_then(|n| self.directory.device(n))
            .map(|d| d.id.clone())
        else {
            return Some(iq_error(
                el,
                ErrorType::Cancel,
                DefinedCondition::ItemNotFound,
                None,
            ));
        };
        let wanted: Vec<&str> = action
            .children()
            .filter(|c| c.name() == "item")
            .filter_map(|c| c.attr("id"))
            .collect();
        // "What did I miss?": result set management (XEP-0059) with
        // <after> the last item id the subscriber has, or <before>
        // (empty: the last page) to page backwards.
        let rsm = payload.get_child("set", NS_RSM);
        let bound = |name: &str| {
            rsm.and_then(|r| r.get_child(name, NS_RSM)).map(|b| {
                let t = b.text();
                if t.is_empty() && name == "before" {
                    Ok(None)
                } else {
                    t.parse::<u64>().map(Some)
                }
            })
        };
        let (Ok(after), Ok(before)) = (
            bound("after").transpose().map(Option::flatten),
            bound("before").transpose().map(Option::flatten),
        ) else {
            return Some(iq_error(
                el,
                ErrorType::Modify,
                DefinedCondition::BadRequest,
                Some("<after> and <before> take an item id of this service"),
            ));
        };
        let query = if let Some(rsm) = rsm {
            let max = rsm
                .get_child("max", NS_RSM)
                .and_then(|m| m.text().parse::<usize>().ok())
                .unwrap_or(MAX_ITEMS_REPLY)
                .min(MAX_ITEMS_REPLY);
            Query::Page { after, before, max }
        } else if wanted.is_empty() {
            // Newest first is what max_items asks for; sent oldest
            // first, in publication order (XEP-0060 §6.5.7).
            let max = action
                .attr("max_items")
                .and_then(|m| m.parse::<usize>().ok())
                .unwrap_or(MAX_ITEMS_REPLY)
                .min(MAX_ITEMS_REPLY);
            Query::Page {
                after: None,
                before: None,
                max,
            }
        } else {
            Query::Ids(
                wanted
                    .iter()
                    .filter_map(|id| id.parse::<u64>().ok())
                    .collect(),
            )
        };
        let rsm = rsm.is_some();
        self.nodes.read(
            node.as_str(),
            query,
            history::Then::Items {
                request: el.clone(),
                rsm,
            },
        );
        None
    }
}
