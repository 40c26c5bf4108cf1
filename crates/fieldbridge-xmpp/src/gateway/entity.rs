//! Who we are, and what the service and each device JID say about
//! themselves, so that any client can find out what they are and what
//! they can do: service discovery (XEP-0030), entity
//! capabilities in every presence (XEP-0115), software version (XEP-0092),
//! last activity (XEP-0012: seconds since the device's last reading) and
//! entity time (XEP-0202). Names and avatars (vCard) are in `card`.

use std::time::SystemTime;

use fieldbridge_core::{DeviceSpec, PointSpec};
use minidom::Element;
use xmpp_parsers::caps::{Caps, compute_disco, hash_caps};
use xmpp_parsers::data_forms::{DataForm, DataFormType, Field};
use xmpp_parsers::disco::{DiscoInfoResult, DiscoItemsResult, Identity, Item as DiscoItem};
use xmpp_parsers::hashes::Algo;
use xmpp_parsers::jid::Jid;

use super::{Gateway, NS_RSM, commands};
use crate::sensordata;
use crate::xml::{DefinedCondition, ErrorType};
use crate::xml::{
    NS_DISCO_INFO, NS_DISCO_ITEMS, NS_PING, NS_PUBSUB, element, iq_error, iq_result, text, with,
};

/// The component's own identity: its domain (devices are
/// `<id>@<domain>`), its name, the resource its devices speak from.
#[derive(Debug)]
pub(super) struct Entity {
    pub(super) domain: String,
    pub(super) name: String,
    /// The resource devices speak from: the gateway's id.
    resource: String,
    /// When the gateway started (last activity of silent devices, uptime).
    started: SystemTime,
}

impl Entity {
    pub(super) fn new(domain: &str, gateway_id: &str) -> Self {
        Self {
            domain: domain.to_owned(),
            name: format!("fieldbridge {gateway_id}"),
            resource: gateway_id.to_owned(),
            started: SystemTime::now(),
        }
    }

    /// A device's bare JID: what subscriptions are answered from.
    pub(super) fn device_jid(&self, device: &str) -> String {
        format!("{device}@{}", self.domain)
    }

    /// The device's full JID (`boiler@gw.example.org/<gateway id>`): what
    /// its presence and messages come from. Clients such as Gajim apply
    /// presence to resources only, so a device that spoke from its bare
    /// JID stayed offline there. Subscription answers stay bare.
    pub(super) fn device_full_jid(&self, device: &str) -> String {
        format!("{device}@{}/{}", self.domain, self.resource)
    }
}

/// XEP-0092.
pub const NS_VERSION: &str = "jabber:iq:version";
/// XEP-0012.
pub const NS_LAST: &str = "jabber:iq:last";
/// XEP-0202.
pub const NS_TIME: &str = "urn:xmpp:time";
/// XEP-0115.
pub const NS_CAPS: &str = "http://jabber.org/protocol/caps";
/// The caps node: who made this software.
pub const CAPS_NODE: &str = "https://github.com/fieldbridge/fieldbridge";

/// What every device JID answers, as disco features.
pub const DEVICE_FEATURES: &[&str] = &[
    NS_DISCO_INFO,
    NS_DISCO_ITEMS,
    NS_PING,
    NS_VERSION,
    NS_LAST,
    NS_TIME,
    NS_CAPS,
    super::commands::NS_COMMANDS,
    crate::xml::NS_SENSORDATA,
    super::iot::NS_CONTROL,
    super::card::NS_VCARD,
];

/// A device's disco#info: a bot client named after the device.
///
/// The identity has no `xml:lang`: Profanity (through libstrophe) reads it
/// as a plain `lang` attribute and leaves it out of the caps hash, so with
/// one its hash never matched and it asked again on every presence.
/// Without one, every client computes the same hash.
pub fn device_disco(spec: &DeviceSpec) -> DiscoInfoResult {
    DiscoInfoResult {
        node: None,
        identities: vec![Identity {
            lang: None,
            ..Identity::new("client", "bot", "", spec.display_name())
        }],
        features: DEVICE_FEATURES.iter().map(|f| (*f).to_owned()).collect(),
        extensions: Vec::new(),
    }
}

/// The `<c/>` element of a device's presence (XEP-0115, sha-1 as the XEP
/// requires for interoperability).
pub fn device_caps(spec: &DeviceSpec) -> Element {
    let disco = device_disco(spec);
    match hash_caps(&compute_disco(&disco), Algo::Sha_1) {
        Ok(hash) => Caps::new(CAPS_NODE, hash).into(),
        // sha-1 is always supported; an empty ver only disables caching.
        Err(_) => with(element("c", NS_CAPS), "node", CAPS_NODE),
    }
}

/// A point as people read it: its name, and its unit if it has one
/// (`Temperature (°C)`).
pub fn point_title(p: &PointSpec) -> String {
    match &p.settings.unit {
        Some(u) => format!("{} ({u})", p.label()),
        None => p.label().to_owned(),
    }
}

/// The `FORM_TYPE` of a point's description in the disco#info of its node
/// (XEP-0128): what a program (the web dashboard) needs to show and write
/// it as the chat does, which disco's item names alone do not carry.
pub const NS_POINT_FORM: &str = "urn:fieldbridge:point:0";

/// disco#info of a point (`node` = point id, as the device's disco#items
/// list them): its title as identity, and a [`NS_POINT_FORM`] form with
/// `label`, `type`, `writable` and, where set, `unit`, `decimals`, `min`,
/// `max`. Outside the caps hash, which covers only the device's own info.
pub fn point_info(p: &PointSpec) -> DiscoInfoResult {
    let mut fields = vec![
        Field::text_single("label", p.label()),
        Field::text_single("type", &p.kind.to_string()),
        Field::text_single(
            "writable",
            if p.settings.writable { "true" } else { "false" },
        ),
    ];
    if let Some(u) = &p.settings.unit {
        fields.push(Field::text_single("unit", &u.to_string()));
    }
    if let Some(d) = p.settings.decimals {
        fields.push(Field::text_single("decimals", &d.to_string()));
    }
    for (var, v) in [("min", p.settings.min), ("max", p.settings.max)] {
        if let Some(v) = v {
            fields.push(Field::text_single(var, &v.to_string()));
        }
    }
    DiscoInfoResult {
        node: Some(p.id.to_string()),
        identities: vec![Identity {
            lang: None,
            ..Identity::new("hierarchy", "leaf", "", point_title(p))
        }],
        features: [NS_DISCO_INFO.to_owned()].into(),
        extensions: vec![DataForm::new(DataFormType::Result_, NS_POINT_FORM, fields)],
    }
}

impl Gateway {
    /// IQs every device and the service answer alike; `None` when `payload`
    /// is not one of them.
    pub(super) fn entity_iq(
        &self,
        el: &Element,
        kind: &str,
        payload: &Element,
        device: Option<&DeviceSpec>,
    ) -> Option<Element> {
        let ns = payload.ns();
        Some(match (kind, payload.name(), ns.as_str()) {
            ("get", "ping", NS_PING) => iq_result(el, None),
            ("get", "query", NS_VERSION) => {
                let mut q = element("query", NS_VERSION);
                q.append_child(text("name", NS_VERSION, "fieldbridge"));
                q.append_child(text("version", NS_VERSION, env!("CARGO_PKG_VERSION")));
                iq_result(el, Some(q))
            }
            ("get", "query", NS_LAST) => {
                // A device: since its last reading (or since the gateway
                // started, if it never sent one); the service: its uptime.
                let since = device
                    .and_then(|d| self.devices.get(&d.id))
                    .and_then(|l| l.latest.values().map(|s| s.at).max())
                    .unwrap_or(self.me.started);
                let seconds = SystemTime::now()
                    .duration_since(since)
                    .unwrap_or_default()
                    .as_secs();
                iq_result(
                    el,
                    Some(with(
                        element("query", NS_LAST),
                        "seconds",
                        seconds.to_string(),
                    )),
                )
            }
            ("get", "time", NS_TIME) => {
                let mut t = element("time", NS_TIME);
                t.append_child(text("tzo", NS_TIME, "+00:00"));
                t.append_child(text(
                    "utc",
                    NS_TIME,
                    sensordata::timestamp(SystemTime::now()),
                ));
                iq_result(el, Some(t))
            }
            _ => return None,
        })
    }

    /// A device node's meta-data (XEP-0060 §5.4, as a XEP-0128 form): what
    /// it is, what its items carry, who may read it, how much is kept.
    pub(super) fn node_meta_data(&self, spec: &DeviceSpec) -> DataForm {
        let points: Vec<String> = spec
            .points
            .values()
            .map(|p| match &p.settings.unit {
                Some(u) => format!("{} ({u})", p.id),
                None => p.id.to_string(),
            })
            .collect();
        let description = format!("Readings of {}: {}", spec.display_name(), points.join(", "));
        let max_items = self.nodes.limits(spec.id.as_str()).max_items.to_string();
        let fields = [
            ("pubsub#title", spec.display_name()),
            ("pubsub#description", &description),
            ("pubsub#type", crate::xml::NS_SENSORDATA),
            ("pubsub#access_model", self.access.access_model()),
            ("pubsub#publish_model", "publishers"),
            ("pubsub#persist_items", "true"),
            ("pubsub#max_items", &max_items),
            ("pubsub#owner", &self.me.domain),
        ];
        DataForm::new(
            DataFormType::Result_,
            "http://jabber.org/protocol/pubsub#meta-data",
            fields
                .into_iter()
                .map(|(var, value)| Field::text_single(var, value))
                .collect(),
        )
    }

    /// `node#ver` of the caps a device advertises.
    fn caps_node(&self, spec: &DeviceSpec) -> Option<String> {
        let ver = self.presence.caps(spec.id.as_str())?.attr("ver")?;
        Some(format!("{CAPS_NODE}#{ver}"))
    }

    /// disco#info and disco#items of a device JID: what it is, what it
    /// answers, and its points (each described by the disco#info of its
    /// node, [`point_info`]).
    pub(super) fn device_disco_iq(
        &self,
        el: &Element,
        kind: &str,
        payload: &Element,
        spec: &DeviceSpec,
    ) -> Option<Element> {
        let ns = payload.ns();
        Some(match (kind, payload.name(), ns.as_str()) {
            ("get", "query", NS_DISCO_INFO) => match payload.attr("node") {
                None => iq_result(el, Some(device_disco(spec).into())),
                // XEP-0115 §6.2: the node of the caps in its presence
                // answers the same, with the node named.
                Some(node) if self.caps_node(spec).as_deref() == Some(node) => {
                    let mut disco = device_disco(spec);
                    disco.node = Some(node.to_owned());
                    iq_result(el, Some(disco.into()))
                }
                Some(node) => match spec.points.get(node) {
                    Some(p) => iq_result(el, Some(point_info(p).into())),
                    None => iq_error(el, ErrorType::Cancel, DefinedCondition::ItemNotFound, None),
                },
            },
            ("get", "query", NS_DISCO_ITEMS) => {
                if payload.attr("node").is_some() {
                    return Some(iq_error(
                        el,
                        ErrorType::Cancel,
                        DefinedCondition::ItemNotFound,
                        None,
                    ));
                }
                // Ids and the domain were checked at start: always a JID.
                let Ok(jid) = Jid::new(&self.me.device_jid(spec.id.as_str())) else {
                    return Some(iq_error(
                        el,
                        ErrorType::Cancel,
                        DefinedCondition::InternalServerError,
                        None,
                    ));
                };
                let items = spec
                    .points
                    .values()
                    .map(|p| DiscoItem {
                        jid: jid.clone(),
                        node: Some(p.id.to_string()),
                        name: Some(point_title(p)),
                    })
                    .collect();
                let result = DiscoItemsResult {
                    node: None,
                    items,
                    rsm: None,
                };
                iq_result(el, Some(result.into()))
            }
            _ => return None,
        })
    }

    /// disco#info of the service, or of one of its nodes.
    pub(super) fn disco_info(&mut self, el: &Element, node: Option<&str>) -> Element {
        let (identity, extensions) = match node {
            None => (
                Identity::new("pubsub", "service", "", &self.me.name),
                Vec::new(),
            ),
            Some(super::alerts::ALERTS_NODE)
                if self.directory.device(super::alerts::ALERTS_NODE).is_none() =>
            {
                (Identity::new("pubsub", "leaf", "", "Alerts"), Vec::new())
            }
            Some(n) => {
                let Some(spec) = self.directory.device(n).cloned() else {
                    return iq_error(el, ErrorType::Cancel, DefinedCondition::ItemNotFound, None);
                };
                // A node's description (XEP-0128).
                let meta_data = self.node_meta_data(&spec);
                (
                    Identity::new("pubsub", "leaf", "", spec.display_name()),
                    vec![meta_data],
                )
            }
        };
        let features = [
            NS_DISCO_INFO,
            NS_DISCO_ITEMS,
            NS_PING,
            NS_VERSION,
            NS_LAST,
            NS_TIME,
            commands::NS_COMMANDS,
            super::card::NS_VCARD,
            NS_PUBSUB,
            "http://jabber.org/protocol/pubsub#subscribe",
            "http://jabber.org/protocol/pubsub#retrieve-items",
            NS_RSM,
            "http://jabber.org/protocol/pubsub#retrieve-subscriptions",
            "http://jabber.org/protocol/pubsub#retrieve-affiliations",
            "http://jabber.org/protocol/pubsub#last-published",
            "http://jabber.org/protocol/pubsub#persistent-items",
            "http://jabber.org/protocol/pubsub#meta-data",
            if self.access.access_model() == "open" {
                "http://jabber.org/protocol/pubsub#access-open"
            } else {
                "http://jabber.org/protocol/pubsub#access-whitelist"
            },
        ];
        let info = DiscoInfoResult {
            node: node.map(str::to_owned),
            identities: vec![Identity {
                lang: None,
                ..identity
            }],
            features: features.into_iter().map(str::to_owned).collect(),
            extensions,
        };
        iq_result(el, Some(info.into()))
    }

    /// disco#items of the service: its nodes, one per device.
    pub(super) fn disco_items(&mut self, el: &Element, node: Option<&str>) -> Element {
        let items = match node {
            None => match Jid::new(&self.me.domain) {
                Ok(service) => {
                    let mut items: Vec<DiscoItem> = self
                        .directory
                        .devices()
                        .map(|d| DiscoItem {
                            jid: service.clone(),
                            node: Some(d.id.to_string()),
                            name: Some(d.display_name().to_owned()),
                        })
                        .collect();
                    if self.directory.device(super::alerts::ALERTS_NODE).is_none() {
                        // Alarm transitions (issue 14).
                        items.push(DiscoItem {
                            jid: service,
                            node: Some(super::alerts::ALERTS_NODE.to_owned()),
                            name: Some("Alerts".to_owned()),
                        });
                    }
                    items
                }
                Err(_) => Vec::new(),
            },
            Some(n) if self.directory.device(n).is_some() || n == super::alerts::ALERTS_NODE => {
                Vec::new()
            }
            Some(_) => {
                return iq_error(el, ErrorType::Cancel, DefinedCondition::ItemNotFound, None);
            }
        };
        let result = DiscoItemsResult {
            node: node.map(str::to_owned),
            items,
            rsm: None,
        };
        iq_result(el, Some(result.into()))
    }
}
