//! Small helpers to build and read stanzas.
//!
//! IQ replies and stanza errors are xmpp-parsers types ([`Iq`],
//! [`StanzaError`]): a condition is a [`DefinedCondition`], never a
//! string that could be misspelt. Payloads of the XEPs xmpp-parsers lacks
//! (XEP-0050 sessions as used here, XEP-0323, XEP-0325) are plain minidom
//! elements; inbound stanzas are read as elements too, so that a malformed
//! one never fails a parse that takes the connection down with it.

use minidom::Element;
use minidom::rxml::{Namespace, NcName};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::Jid;
pub use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

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

/// A stanza error, with an explanation for people when there is one (in
/// English, and marked so).
pub fn stanza_error(
    kind: ErrorType,
    condition: DefinedCondition,
    explanation: Option<&str>,
) -> StanzaError {
    let mut error = StanzaError::new(kind, condition, "en", explanation.unwrap_or_default());
    if explanation.is_none() {
        error.texts.clear();
    }
    error
}

/// The error reply to an `iq` get/set.
pub fn iq_error(
    request: &Element,
    kind: ErrorType,
    condition: DefinedCondition,
    explanation: Option<&str>,
) -> Element {
    iq_error_with(request, stanza_error(kind, condition, explanation))
}

/// The error reply to an `iq` get/set, with an error built by the caller
/// (e.g. carrying a XEP's own condition).
pub fn iq_error_with(request: &Element, error: StanzaError) -> Element {
    let (from, to, id) = reply_header(request);
    Iq::Error {
        from,
        to,
        id,
        error,
        payload: None,
    }
    .into()
}

/// The result reply to an `iq` get/set.
pub fn iq_result(request: &Element, payload: Option<Element>) -> Element {
    let (from, to, id) = reply_header(request);
    Iq::Result {
        from,
        to,
        id,
        payload,
    }
    .into()
}

/// The reply's from, to and id: the request's to, from and id. The
/// request's sender was checked before anything answers it.
fn reply_header(request: &Element) -> (Option<Jid>, Option<Jid>, String) {
    let jid = |name| request.attr(name).and_then(|j| Jid::new(j).ok());
    (
        jid("to"),
        jid("from"),
        request.attr("id").unwrap_or_default().to_owned(),
    )
}

/// The element's child elements.
pub fn children(el: &Element) -> impl Iterator<Item = &Element> {
    el.children()
}

/// Serializes for logs and tests.
pub fn to_string(el: &Element) -> String {
    String::from(el)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Element {
        let mut iq = with(
            stanza("iq", "alice@example.org/x", "boiler@gw"),
            "type",
            "get",
        );
        set(&mut iq, "id", "q1");
        iq
    }

    #[test]
    fn an_error_reply_swaps_the_addresses_and_carries_condition_and_text() {
        let reply = iq_error(
            &request(),
            ErrorType::Cancel,
            DefinedCondition::ItemNotFound,
            Some("no such point"),
        );
        assert_eq!(
            to_string(&reply),
            "<iq xmlns='jabber:component:accept' from='boiler@gw' id='q1' \
             to='alice@example.org/x' type='error'><error type='cancel'><item-not-found \
             xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text \
             xmlns='urn:ietf:params:xml:ns:xmpp-stanzas' xml:lang='en'>no such point</text>\
             </error></iq>"
        );
        let bare = iq_error(
            &request(),
            ErrorType::Auth,
            DefinedCondition::Forbidden,
            None,
        );
        assert!(!to_string(&bare).contains("<text"), "{}", to_string(&bare));
    }
}
