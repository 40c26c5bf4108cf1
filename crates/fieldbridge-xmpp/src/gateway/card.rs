//! How a device introduces itself, so that a client shows "Boiler room"
//! with a picture instead of a bare JID: its nickname (XEP-0172) in the
//! subscription answer, its vCard (XEP-0054: name, what it is, an avatar)
//! to readers who ask, and the avatar's hash in every presence
//! (XEP-0153), from which clients know to fetch the vCard.
//!
//! The avatars are PNGs drawn once by `assets/avatars/draw.py` and
//! embedded; [`Avatar::of`] is the one rule that picks a device's.

use std::sync::LazyLock;

use fieldbridge_core::{DeviceSpec, PointSpec, ValueKind};
use minidom::Element;
use xmpp_parsers::nick::Nick;
use xmpp_parsers::ns;
use xmpp_parsers::sha1::{Digest, Sha1};
use xmpp_parsers::vcard::{Binval, Photo, Type, VCard};
use xmpp_parsers::vcard_update::{self, VCardUpdate};

use super::Gateway;
use super::entity::point_title;
use crate::xml::{
    DefinedCondition, ErrorType, NS_PUBSUB_EVENT, element, iq_error, iq_result, stanza, text, with,
};

/// XEP-0054 (`vcard-temp`).
pub const NS_VCARD: &str = ns::VCARD;

/// A picture a device (or the gateway) shows as its avatar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Avatar {
    /// A device that measures a temperature.
    Thermometer,
    /// An electricity meter: power, energy, voltage or current.
    Meter,
    /// A switch or plug: every point is on/off.
    Switch,
    /// Any other device.
    Sensor,
    /// The gateway itself (the component's own JID).
    Gateway,
}

/// Units that make a device a thermometer.
const TEMPERATURE_UNITS: &[&str] = &["°C", "°F", "K", "℃", "℉", "degC", "degF"];

/// Units that make a device a meter.
const ELECTRICAL_UNITS: &[&str] = &[
    "W", "kW", "MW", "Wh", "kWh", "MWh", "V", "kV", "mV", "A", "mA", "kA", "VA", "kVA", "var",
    "kvar",
];

/// Every avatar, in declaration order: `AVATARS[a as usize] == a`.
const AVATARS: [Avatar; 5] = [
    Avatar::Thermometer,
    Avatar::Meter,
    Avatar::Switch,
    Avatar::Sensor,
    Avatar::Gateway,
];

/// Each avatar's SHA-1, computed once: every presence carries one.
static HASHES: LazyLock<[[u8; 20]; 5]> =
    LazyLock::new(|| AVATARS.map(|a| Sha1::digest(a.png()).into()));

impl Avatar {
    /// The avatar of a device, by what it measures, first match wins: a
    /// temperature unit on any point makes a thermometer (a boiler that
    /// also reports its pump is still known by its temperature); then an
    /// electrical unit a meter; then a device whose points are all on/off
    /// a switch; anything else a generic sensor.
    pub fn of(spec: &DeviceSpec) -> Self {
        let has_unit = |units: &[&str]| {
            spec.points
                .values()
                .filter_map(|p| p.settings.unit.as_ref())
                .any(|u| units.contains(&u.0.as_str()))
        };
        if has_unit(TEMPERATURE_UNITS) {
            Avatar::Thermometer
        } else if has_unit(ELECTRICAL_UNITS) {
            Avatar::Meter
        } else if !spec.points.is_empty() && spec.points.values().all(|p| p.kind == ValueKind::Bool)
        {
            Avatar::Switch
        } else {
            Avatar::Sensor
        }
    }

    /// The PNG (96×96).
    pub fn png(self) -> &'static [u8] {
        match self {
            Avatar::Thermometer => include_bytes!("../../assets/avatars/thermometer.png"),
            Avatar::Meter => include_bytes!("../../assets/avatars/meter.png"),
            Avatar::Switch => include_bytes!("../../assets/avatars/switch.png"),
            Avatar::Sensor => include_bytes!("../../assets/avatars/sensor.png"),
            Avatar::Gateway => include_bytes!("../../assets/avatars/gateway.png"),
        }
    }

    /// The SHA-1 of [`Avatar::png`], as XEP-0153 names a photo.
    pub fn sha1(self) -> [u8; 20] {
        HASHES[self as usize]
    }

    /// The `<x xmlns='vcard-temp:x:update'>` a presence carries.
    pub fn update(self) -> Element {
        VCardUpdate {
            photo: Some(vcard_update::Photo {
                data: Some(self.sha1()),
            }),
        }
        .into()
    }

    fn photo(self) -> Photo {
        Photo {
            type_: Type {
                data: "image/png".to_owned(),
            },
            binval: Binval {
                data: self.png().to_vec(),
            },
        }
    }
}

/// The device's nickname (XEP-0172): its display name.
pub fn nick(spec: &DeviceSpec) -> Element {
    Nick(spec.display_name().to_owned()).into()
}

/// The nickname as a PEP notification (XEP-0172 §4.5, XEP-0163), from the
/// device's bare JID: Gajim and Conversations take a contact's name from
/// there, not from the subscription answer. A device has no PEP service
/// to remember it for the user's clients, so it is sent when someone
/// subscribes and when their server probes (once per login).
fn nick_event(spec: &DeviceSpec, from: &str, to: &str) -> Element {
    let mut item = with(element("item", NS_PUBSUB_EVENT), "id", "current");
    item.append_child(nick(spec));
    let mut items = with(element("items", NS_PUBSUB_EVENT), "node", ns::NICK);
    items.append_child(item);
    let mut event = element("event", NS_PUBSUB_EVENT);
    event.append_child(items);
    let mut message = with(stanza("message", from, to), "type", "headline");
    message.append_child(event);
    message
}

/// What a device is, in a sentence or two: for its vCard's DESC.
fn description(spec: &DeviceSpec) -> String {
    let points: Vec<String> = spec.points.values().map(describe_point).collect();
    let points = if points.is_empty() {
        "no points".to_owned()
    } else {
        format!("points: {}", points.join(", "))
    };
    format!(
        "A field device on connection {}, bridged by fieldbridge; {points}.",
        spec.settings.connection
    )
}

fn describe_point(p: &PointSpec) -> String {
    match (&p.settings.unit, p.kind) {
        (Some(_), _) => point_title(p),
        (None, ValueKind::Bool) => format!("{} (on/off)", p.label()),
        (None, _) => p.label().to_owned(),
    }
}

/// A vCard of a name, a description and an avatar.
fn vcard(name: &str, description: &str, avatar: Avatar) -> Element {
    VCard {
        photo: Some(avatar.photo()),
        payloads: vec![
            text("FN", NS_VCARD, name),
            text("NICKNAME", NS_VCARD, name),
            text("DESC", NS_VCARD, description),
        ],
    }
    .into()
}

impl Gateway {
    /// The device's nickname event to `to`, if the device exists.
    pub(super) fn nick_event(&self, device: &str, from: &str, to: &str) -> Option<Element> {
        self.directory
            .device(device)
            .map(|spec| nick_event(spec, from, to))
    }

    /// A vCard iq to a device (`Some`) or to the service: a get is
    /// answered with its card, a set refused (the configuration names a
    /// device, not a client). `None` when `payload` is not a vCard.
    pub(super) fn vcard_iq(
        &self,
        el: &Element,
        kind: &str,
        payload: &Element,
        device: Option<&DeviceSpec>,
    ) -> Option<Element> {
        if payload.name() != "vCard" || payload.ns() != NS_VCARD {
            return None;
        }
        if kind != "get" {
            return Some(iq_error(
                el,
                ErrorType::Cancel,
                DefinedCondition::NotAllowed,
                Some("the vCard is made from the gateway's configuration"),
            ));
        }
        let card = match device {
            Some(spec) => vcard(spec.display_name(), &description(spec), Avatar::of(spec)),
            None => {
                let count = self.directory.len();
                let devices = if count == 1 { "device" } else { "devices" };
                vcard(
                    &self.me.name,
                    &format!(
                        "fieldbridge gateway: {count} field {devices} as XMPP contacts \
                         and pubsub nodes on {}.",
                        self.me.domain
                    ),
                    Avatar::Gateway,
                )
            }
        };
        Some(iq_result(el, Some(card)))
    }
}
