//! Small helpers to build and read stanzas with minidom.
//!
//! Stanzas are built as plain elements rather than xmpp-parsers structs:
//! several XEPs used here have no typed module (XEP-0050, XEP-0323) or
//! private fields (pubsub), and a malformed inbound stanza must never fail
//! a parse that takes the connection down with it.

use minidom::Element;
use minidom::rxml::{Namespace, NcName};

/// The stanza namespace of a XEP-0114 component stream.
pub const NS_COMPONENT: &str = "jabber:component:accept";
/// XMPP stanza error conditions.
pub const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
/// Stream errors and features.
pub const NS_STREAMS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
/// XEP-0030 info.
pub const NS_DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
/// XEP-0030 items.
pub const NS_DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
/// XEP-0060.
pub const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";
/// XEP-0060 notifications.
pub const NS_PUBSUB_EVENT: &str = "http://jabber.org/protocol/pubsub#event";
/// XEP-0060 errors.
pub const NS_PUBSUB_ERRORS: &str = "http://jabber.org/protocol/pubsub#errors";
/// XEP-0199.
pub const NS_PING: &str = "urn:xmpp:ping";
/// XEP-0323.
pub const NS_SENSORDATA: &str = "urn:xmpp:iot:sensordata";

/// An element with no attributes or children.
pub fn element(name: &str, ns: &str) -> Element {
    Element::bare(name, ns)
}

/// Sets an attribute; `name` is one of our own literal attribute names.
pub fn set(el: &mut Element, name: &str, value: impl Into<String>) {
    match NcName::try_from(name) {
        Ok(n) => el.set_attr(Namespace::NONE, n, value.into()),
        Err(_) => debug_assert!(false, "invalid attribute name {name}"),
    }
}

/// Builder-style [`set`].
pub fn with(mut el: Element, name: &str, value: impl Into<String>) -> Element {
    set(&mut el, name, value);
    el
}

/// Builder-style `append_child`.
pub fn child(mut el: Element, c: Element) -> Element {
    el.append_child(c);
    el
}

/// An element with text content.
pub fn text(name: &str, ns: &str, content: impl Into<String>) -> Element {
    let mut el = element(name, ns);
    el.append_text(content.into());
    el
}

/// A stanza (`iq`, `message`, `presence`) with from/to.
pub fn stanza(name: &str, from: &str, to: &str) -> Element {
    with(with(element(name, NS_COMPONENT), "from", from), "to", to)
}

/// The error reply to an `iq` get/set.
pub fn iq_error(
    request: &Element,
    kind: &str,
    condition: &str,
    explanation: Option<&str>,
) -> Element {
    let mut error = with(element("error", NS_COMPONENT), "type", kind);
    error.append_child(element(condition, NS_STANZAS));
    if let Some(t) = explanation {
        error.append_child(text("text", NS_STANZAS, t));
    }
    reply(request, "error", Some(error))
}

/// The result reply to an `iq` get/set.
pub fn iq_result(request: &Element, payload: Option<Element>) -> Element {
    reply(request, "result", payload)
}

fn reply(request: &Element, kind: &str, payload: Option<Element>) -> Element {
    let from = request.attr("to").unwrap_or_default();
    let to = request.attr("from").unwrap_or_default();
    let mut iq = with(stanza("iq", from, to), "type", kind);
    set(&mut iq, "id", request.attr("id").unwrap_or_default());
    if let Some(p) = payload {
        iq.append_child(p);
    }
    iq
}

/// The element's child elements.
pub fn children(el: &Element) -> impl Iterator<Item = &Element> {
    el.children()
}

/// Serializes for logs and tests.
pub fn to_string(el: &Element) -> String {
    String::from(el)
}
