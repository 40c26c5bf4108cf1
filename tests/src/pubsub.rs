//! A pubsub subscriber's view of device nodes: subscribe, then read the
//! XEP-0323 fields of each notification.

use std::time::Duration;

use minidom::Element;

use crate::client::{XmppUser, el, with_child, xml};
use crate::prosody::COMPONENT;

/// XEP-0060.
pub const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";
/// XEP-0060 notifications.
pub const NS_EVENT: &str = "http://jabber.org/protocol/pubsub#event";
/// XEP-0323.
pub const NS_SENSORDATA: &str = "urn:xmpp:iot:sensordata";

/// The item elements of an items answer (`<pubsub><items>`).
pub fn items_of(answer: &Element) -> Vec<Element> {
    answer
        .get_child("pubsub", NS_PUBSUB)
        .and_then(|p| p.get_child("items", NS_PUBSUB))
        .unwrap_or_else(|| panic!("no items in {}", xml(answer)))
        .children()
        .cloned()
        .collect()
}

/// The XEP-0323 `seqnr` of an item's payload.
pub fn seqnr(item: &Element) -> u64 {
    item.get_child("fields", NS_SENSORDATA)
        .and_then(|f| f.attr("seqnr"))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no seqnr in {}", xml(item)))
}

/// Subscribes the user's bare JID to `node`; fails unless subscribed.
pub async fn subscribe(user: &mut XmppUser, node: &str) -> anyhow::Result<()> {
    let jid = user.jid.clone();
    let sub = el("subscribe", NS_PUBSUB, &[("node", node), ("jid", &jid)]);
    let answer = user
        .iq(
            COMPONENT,
            "set",
            with_child(el("pubsub", NS_PUBSUB, &[]), sub),
        )
        .await?;
    anyhow::ensure!(
        answer.attr("type") == Some("result"),
        "subscribing to {node}: {}",
        xml(&answer)
    );
    Ok(())
}

/// The fields of an item (`<item><fields>`): every point of the device's
/// state, whatever time each was read at.
pub fn fields_of(item: &Element) -> Vec<Field> {
    item.get_child("fields", NS_SENSORDATA)
        .and_then(|f| f.get_child("node", NS_SENSORDATA))
        .map(|n| {
            n.children()
                .filter(|ts| ts.name() == "timestamp")
                .flat_map(|ts| ts.children().map(field))
                .collect()
        })
        .unwrap_or_default()
}

/// The answer to an items request for `node` (`attrs` beside `node`, e.g.
/// `max_items`).
pub async fn get_items(
    user: &mut XmppUser,
    node: &str,
    attrs: &[(&str, &str)],
) -> anyhow::Result<Element> {
    let mut all = vec![("node", node)];
    all.extend_from_slice(attrs);
    let items = el("items", NS_PUBSUB, &all);
    user.iq(
        COMPONENT,
        "get",
        with_child(el("pubsub", NS_PUBSUB, &[]), items),
    )
    .await
}

/// The node's last item (`max_items='1'`), once the device has published
/// one, within `within`: its fields.
pub async fn last_item(
    user: &mut XmppUser,
    node: &str,
    within: Duration,
) -> anyhow::Result<Vec<Field>> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let answer = get_items(user, node, &[("max_items", "1")]).await?;
        if let Some(item) = items_of(&answer).first() {
            return Ok(fields_of(item));
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no item of {node} within {within:?}"
        );
        // Polled, as a client would: nothing to await but the next request.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One field of a notification, as a subscriber reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// `numeric`, `boolean` or `string`.
    pub kind: String,
    /// The point.
    pub name: String,
    /// As sent.
    pub value: String,
    /// The unit, for numbers that have one.
    pub unit: Option<String>,
    /// Marked `invalid='true'` (bad quality).
    pub invalid: bool,
}

/// Waits for the next notification from `node` and returns its fields
/// (every point of the device's state, whatever time each was read at).
pub async fn next_fields(
    user: &mut XmppUser,
    node: &str,
    within: Duration,
) -> anyhow::Result<Vec<Field>> {
    let m = user
        .expect(&format!("a notification from node {node}"), within, |e| {
            e.name() == "message"
                && e.attr("from") == Some(COMPONENT)
                && e.get_child("event", NS_EVENT)
                    .and_then(|ev| ev.get_child("items", NS_EVENT))
                    .is_some_and(|i| i.attr("node") == Some(node))
        })
        .await?;
    anyhow::ensure!(m.attr("type") == Some("headline"), "{}", xml(&m));
    let fields: Vec<Field> = m
        .get_child("event", NS_EVENT)
        .and_then(|e| e.get_child("items", NS_EVENT))
        .and_then(|i| i.get_child("item", NS_EVENT))
        .map(fields_of)
        .unwrap_or_default();
    anyhow::ensure!(!fields.is_empty(), "no fields in {}", xml(&m));
    Ok(fields)
}

fn field(e: &Element) -> Field {
    Field {
        kind: e.name().to_owned(),
        name: e.attr("name").unwrap_or_default().to_owned(),
        value: e.attr("value").unwrap_or_default().to_owned(),
        unit: e.attr("unit").map(str::to_owned),
        invalid: e.attr("invalid") == Some("true"),
    }
}
