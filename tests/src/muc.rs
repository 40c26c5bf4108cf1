//! A test client in a Multi-User Chat room (XEP-0045), on a server started
//! with [`crate::server::Options::muc`]: join with a nick, read and send
//! groupchat (with its XEP-0203 `<delay>`), see occupants come and go, and,
//! as the room's owner, configure, kick and destroy.
//!
//! Everything waits on the stanzas the room sends, through
//! [`XmppUser::expect`], so that nothing is lost between two waits.

use std::time::Duration;

use minidom::Element;

use crate::client::{NS_CLIENT, XmppUser, el, error_condition, with_child, xml};

/// XEP-0045: the join request.
pub const NS_MUC: &str = "http://jabber.org/protocol/muc";
/// XEP-0045: occupants' presence and status codes.
pub const NS_MUC_USER: &str = "http://jabber.org/protocol/muc#user";
/// XEP-0045: what an owner does.
pub const NS_MUC_OWNER: &str = "http://jabber.org/protocol/muc#owner";
/// XEP-0045: what a moderator does.
pub const NS_MUC_ADMIN: &str = "http://jabber.org/protocol/muc#admin";
/// XEP-0203.
pub const NS_DELAY: &str = "urn:xmpp:delay";
/// XEP-0004.
pub const NS_DATA: &str = "jabber:x:data";
/// XEP-0030.
pub const NS_DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";

/// How long the room may take to answer.
const WAIT: Duration = Duration::from_secs(15);

/// What joining said.
#[derive(Debug)]
pub struct Joined {
    /// The room's presence for us (status 110).
    pub presence: Element,
    /// The room did not exist and was created by this join (status 201);
    /// [`join`] has unlocked it as an instant room.
    pub created: bool,
}

/// The status codes of a MUC presence or message (`<x
/// xmlns='…muc#user'><status code=…/>`).
pub fn status_codes(stanza: &Element) -> Vec<u16> {
    stanza
        .get_child("x", NS_MUC_USER)
        .map(|x| {
            x.children()
                .filter(|c| c.is("status", NS_MUC_USER))
                .filter_map(|c| c.attr("code")?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The `<delay>` of a stanza: `(stamp, from)`.
pub fn delay(stanza: &Element) -> Option<(String, Option<String>)> {
    let d = stanza.get_child("delay", NS_DELAY)?;
    Some((
        d.attr("stamp")?.to_owned(),
        d.attr("from").map(str::to_owned),
    ))
}

/// The body of a message, if any.
pub fn body(message: &Element) -> Option<String> {
    message.get_child("body", NS_CLIENT).map(Element::text)
}

/// True for a presence from `room/nick` of `kind` (None = available).
pub fn is_occupant_presence(e: &Element, room: &str, nick: &str, kind: Option<&str>) -> bool {
    e.name() == "presence"
        && e.attr("from") == Some(format!("{room}/{nick}").as_str())
        && e.attr("type") == kind
}

/// True for a groupchat message from `room/nick` (`nick` None: from
/// anyone in it).
pub fn is_groupchat(e: &Element, room: &str, nick: Option<&str>) -> bool {
    let Some(from) = e.attr("from") else {
        return false;
    };
    let (bare, resource) = from.split_once('/').unwrap_or((from, ""));
    e.name() == "message"
        && e.attr("type") == Some("groupchat")
        && bare == room
        && nick.is_none_or(|n| n == resource)
}

/// Joins `room` as `nick` without its history (`<history maxchars='0'/>`,
/// as the gateway joins), so that what is read afterwards is what was
/// said since. A room this join created is unlocked as an instant room.
pub async fn join(user: &mut XmppUser, room: &str, nick: &str) -> anyhow::Result<Joined> {
    join_with(
        user,
        room,
        nick,
        el("history", NS_MUC, &[("maxchars", "0")]),
    )
    .await
}

/// [`join`], asking for up to `stanzas` messages of the room's history
/// (which the room sends with their XEP-0203 `<delay>`).
pub async fn join_with_history(
    user: &mut XmppUser,
    room: &str,
    nick: &str,
    stanzas: u32,
) -> anyhow::Result<Joined> {
    let n = stanzas.to_string();
    join_with(
        user,
        room,
        nick,
        el("history", NS_MUC, &[("maxstanzas", &n)]),
    )
    .await
}

async fn join_with(
    user: &mut XmppUser,
    room: &str,
    nick: &str,
    history: Element,
) -> anyhow::Result<Joined> {
    let to = format!("{room}/{nick}");
    user.send(with_child(
        el("presence", NS_CLIENT, &[("to", &to)]),
        with_child(el("x", NS_MUC, &[]), history),
    ))
    .await?;
    let presence = user
        .expect(&format!("{to} joined (or refused)"), WAIT, |e| {
            e.name() == "presence"
                && e.attr("from") == Some(to.as_str())
                && (e.attr("type") == Some("error") || status_codes(e).contains(&110))
        })
        .await?;
    anyhow::ensure!(
        presence.attr("type") != Some("error"),
        "joining {to} refused ({}): {}",
        error_condition(&presence).unwrap_or_default(),
        xml(&presence)
    );
    let created = status_codes(&presence).contains(&201);
    if created {
        // An instant room (XEP-0045 §10.1.2): the defaults, unlocked.
        let answer = user
            .iq(
                room,
                "set",
                with_child(
                    el("query", NS_MUC_OWNER, &[]),
                    el("x", NS_DATA, &[("type", "submit")]),
                ),
            )
            .await?;
        anyhow::ensure!(
            answer.attr("type") == Some("result"),
            "instant room {room}: {}",
            xml(&answer)
        );
    }
    Ok(Joined { presence, created })
}

/// The error presence `room/nick` answers a join with (for a join that
/// must be refused): its condition, e.g. `registration-required`.
pub async fn join_refused(user: &mut XmppUser, room: &str, nick: &str) -> anyhow::Result<String> {
    let to = format!("{room}/{nick}");
    user.send(with_child(
        el("presence", NS_CLIENT, &[("to", &to)]),
        with_child(
            el("x", NS_MUC, &[]),
            el("history", NS_MUC, &[("maxchars", "0")]),
        ),
    ))
    .await?;
    let presence = user
        .expect(&format!("an answer to joining {to}"), WAIT, |e| {
            e.name() == "presence"
                && e.attr("from") == Some(to.as_str())
                && (e.attr("type") == Some("error") || status_codes(e).contains(&110))
        })
        .await?;
    anyhow::ensure!(
        presence.attr("type") == Some("error"),
        "{} joined {to}, which should have refused: {}",
        user.jid,
        xml(&presence)
    );
    error_condition(&presence)
        .ok_or_else(|| anyhow::anyhow!("no error condition: {}", xml(&presence)))
}

/// Leaves `room` (unavailable presence to our occupant JID); returns once
/// the room confirmed it.
pub async fn leave(user: &mut XmppUser, room: &str, nick: &str) -> anyhow::Result<()> {
    let to = format!("{room}/{nick}");
    user.send(el(
        "presence",
        NS_CLIENT,
        &[("to", &to), ("type", "unavailable")],
    ))
    .await?;
    user.expect(&format!("{to} left"), WAIT, |e| {
        is_occupant_presence(e, room, nick, Some("unavailable"))
    })
    .await?;
    Ok(())
}

/// Says `text` in `room`.
pub async fn say(user: &mut XmppUser, room: &str, text: &str) -> anyhow::Result<()> {
    let mut b = el("body", NS_CLIENT, &[]);
    b.append_text_node(text);
    user.send(with_child(
        el("message", NS_CLIENT, &[("to", room), ("type", "groupchat")]),
        b,
    ))
    .await
}

/// Waits for a groupchat message in `room` from `nick` (None: anyone)
/// whose body satisfies `pred`.
pub async fn expect_groupchat(
    user: &mut XmppUser,
    room: &str,
    nick: Option<&str>,
    what: &str,
    within: Duration,
    pred: impl Fn(&str) -> bool,
) -> anyhow::Result<Element> {
    user.expect(what, within, |e| {
        is_groupchat(e, room, nick) && body(e).is_some_and(|b| pred(&b))
    })
    .await
}

/// Waits for `room/nick`'s presence of `kind` (None = available: someone
/// joined; `unavailable`: left or was kicked).
pub async fn expect_occupant(
    user: &mut XmppUser,
    room: &str,
    nick: &str,
    kind: Option<&str>,
) -> anyhow::Result<Element> {
    let what = match kind {
        None => format!("{room}/{nick} joined"),
        Some(k) => format!("{room}/{nick} presence of type {k}"),
    };
    user.expect(&what, WAIT, |e| is_occupant_presence(e, room, nick, kind))
        .await
}

/// Submits the room's configuration form with `fields` (`muc#roomconfig_…`
/// var, value), as an owner does; the others keep their values.
pub async fn configure(
    user: &mut XmppUser,
    room: &str,
    fields: &[(&str, &str)],
) -> anyhow::Result<()> {
    let mut form = el("x", NS_DATA, &[("type", "submit")]);
    let mut form_type = el("field", NS_DATA, &[("var", "FORM_TYPE")]);
    let mut v = el("value", NS_DATA, &[]);
    v.append_text_node("http://jabber.org/protocol/muc#roomconfig");
    form_type.append_child(v);
    form.append_child(form_type);
    for (var, value) in fields {
        let mut v = el("value", NS_DATA, &[]);
        v.append_text_node(*value);
        form.append_child(with_child(el("field", NS_DATA, &[("var", var)]), v));
    }
    let answer = user
        .iq(
            room,
            "set",
            with_child(el("query", NS_MUC_OWNER, &[]), form),
        )
        .await?;
    anyhow::ensure!(
        answer.attr("type") == Some("result"),
        "configuring {room}: {}",
        xml(&answer)
    );
    Ok(())
}

/// Kicks `nick` out of `room` (role `none`), as a moderator does; returns
/// the server's answer (a result, or the error a non-moderator gets).
pub async fn kick(
    user: &mut XmppUser,
    room: &str,
    nick: &str,
    reason: &str,
) -> anyhow::Result<Element> {
    let mut item = el("item", NS_MUC_ADMIN, &[("nick", nick), ("role", "none")]);
    let mut r = el("reason", NS_MUC_ADMIN, &[]);
    r.append_text_node(reason);
    item.append_child(r);
    user.iq(
        room,
        "set",
        with_child(el("query", NS_MUC_ADMIN, &[]), item),
    )
    .await
}

/// Destroys `room`, as its owner; fails unless the server did.
pub async fn destroy(user: &mut XmppUser, room: &str) -> anyhow::Result<()> {
    let answer = user
        .iq(
            room,
            "set",
            with_child(
                el("query", NS_MUC_OWNER, &[]),
                el("destroy", NS_MUC_OWNER, &[]),
            ),
        )
        .await?;
    anyhow::ensure!(
        answer.attr("type") == Some("result"),
        "destroying {room}: {}",
        xml(&answer)
    );
    Ok(())
}

/// The room's disco#info features (`muc_membersonly`, `muc_persistent`,
/// …), or the error condition when it does not exist (`item-not-found`).
pub async fn features(
    user: &mut XmppUser,
    room: &str,
) -> anyhow::Result<Result<Vec<String>, String>> {
    let answer = user
        .iq(room, "get", el("query", NS_DISCO_INFO, &[]))
        .await?;
    if answer.attr("type") != Some("result") {
        return Ok(Err(error_condition(&answer).unwrap_or_else(|| xml(&answer))));
    }
    Ok(Ok(answer
        .get_child("query", NS_DISCO_INFO)
        .map(|q| {
            q.children()
                .filter(|c| c.is("feature", NS_DISCO_INFO))
                .filter_map(|c| c.attr("var").map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()))
}
