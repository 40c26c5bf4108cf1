//! The alerts room (XEP-0045): the gateway joins `alerts.room` as
//! `<component>/alerts` with its nickname on every connect, asking for no
//! history; a room it had to create (status 201) is configured
//! members-only, persistent and non-anonymous, with every reader account
//! as member. Kicked, banned, refused, or the room gone: it joins again
//! after the capped backoff of core's [`Backoff`]. It never answers its
//! own messages or the room's history; a message addressed to its nick
//! (`fieldbridge: alarms`) is a command, and an `ack` there counts only
//! from an occupant whose real JID the room shows and `access.control`
//! lists.

use std::collections::HashMap;
use std::time::Duration;

use fieldbridge_core::audit::Via;
use fieldbridge_core::backoff::Backoff;
use minidom::Element;
use tokio::time::Instant;
use xmpp_parsers::jid::{BareJid, Jid};

use super::Gateway;
use super::items::NS_DELAY;
use crate::chat::{self, ChatCommand};
use crate::xml::{NS_COMPONENT, child, element, set, stanza, text, with};

/// The resource the gateway is in the room from.
pub const RESOURCE: &str = "alerts";
/// XEP-0045 join.
pub const NS_MUC: &str = "http://jabber.org/protocol/muc";
/// XEP-0045 occupant information.
pub const NS_MUC_USER: &str = "http://jabber.org/protocol/muc#user";
/// XEP-0045 room configuration.
pub const NS_MUC_OWNER: &str = "http://jabber.org/protocol/muc#owner";
/// XEP-0045 affiliations.
pub const NS_MUC_ADMIN: &str = "http://jabber.org/protocol/muc#admin";
/// XEP-0004 data forms.
pub const NS_DATA: &str = "jabber:x:data";
/// A join with no answer this long is tried again.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(30);
/// The first wait before joining again; it doubles up to [`REJOIN_CAP`].
pub const REJOIN_START: Duration = Duration::from_secs(2);
/// The longest wait before joining again.
pub const REJOIN_CAP: Duration = Duration::from_secs(120);

/// Where the gateway stands with its room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    /// Not in it, not trying (no link, or no room).
    Out,
    /// Join sent at the instant.
    Joining(Instant),
    /// In the room.
    In,
    /// Out, joining again at the instant.
    Waiting(Instant),
}

/// The room's state machine and who is in it.
#[derive(Debug)]
pub(super) struct Room {
    pub(super) state: State,
    backoff: Backoff,
    /// Occupants by nickname, with their real bare JID when the room
    /// shows it.
    occupants: HashMap<String, Option<BareJid>>,
    /// The nickname the room gave the gateway (a service may change the
    /// one asked for, status 210): its messages are never answered either.
    given_nick: Option<String>,
}

impl Default for Room {
    fn default() -> Self {
        Self {
            state: State::Out,
            backoff: Backoff::new(REJOIN_START, REJOIN_CAP),
            occupants: HashMap::new(),
            given_nick: None,
        }
    }
}

impl Room {
    /// Whether the gateway is in the room (alerts go there now).
    pub(super) fn is_in(&self) -> bool {
        self.state == State::In
    }

    /// The link is down: out, joining again on connect.
    pub(super) fn disconnected(&mut self) {
        self.state = State::Out;
        self.occupants.clear();
        self.given_nick = None;
    }

    /// Leaves `room` (a reload named another, or the gateway stops).
    pub(super) fn leave(&mut self, domain: &str, room: &BareJid, nick: &str) -> Vec<Element> {
        let was = self.state;
        self.disconnected();
        if was == State::Out {
            return Vec::new();
        }
        vec![with(
            stanza(
                "presence",
                &format!("{domain}/{RESOURCE}"),
                &format!("{room}/{nick}"),
            ),
            "type",
            "unavailable",
        )]
    }
}

/// The status codes of a MUC presence or message.
fn statuses(el: &Element) -> Vec<u16> {
    el.get_child("x", NS_MUC_USER)
        .map(|x| {
            x.children()
                .filter(|c| c.name() == "status")
                .filter_map(|c| c.attr("code")?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The real bare JID an occupant's presence shows, if the room shows it.
fn real_jid(el: &Element) -> Option<BareJid> {
    let item = el
        .get_child("x", NS_MUC_USER)?
        .get_child("item", NS_MUC_USER)?;
    Jid::new(item.attr("jid")?).ok().map(|j| j.to_bare())
}

/// The stanza error's condition, for the log.
fn error_condition(el: &Element) -> String {
    el.children()
        .find(|c| c.name() == "error")
        .and_then(|e| e.children().find(|c| c.name() != "text"))
        .map_or_else(|| "no reason given".to_owned(), |c| c.name().to_owned())
}

/// The command in a room message addressed to `nick` (`nick: alarms`,
/// `nick, ack all`, any case), if it is one.
pub fn addressed<'a>(body: &'a str, nick: &str) -> Option<&'a str> {
    let body = body.trim_start();
    let head = body.get(..nick.len())?;
    if !head.eq_ignore_ascii_case(nick) {
        return None;
    }
    let rest = body.get(nick.len()..)?;
    let rest = rest.strip_prefix(':').or_else(|| rest.strip_prefix(','))?;
    Some(rest.trim())
}

/// A data form field with one value.
fn field(var: &str, value: &str) -> Element {
    child(
        with(element("field", NS_DATA), "var", var),
        text("value", NS_DATA, value),
    )
}

impl Gateway {
    /// Joins the room (when there is one): no history, the nickname.
    pub(super) fn room_join(&mut self, now: Instant) -> Vec<Element> {
        let Some(room) = &self.alerts.settings.room else {
            self.alerts.room.state = State::Out;
            return Vec::new();
        };
        self.alerts.room.state = State::Joining(now);
        self.alerts.room.occupants.clear();
        let mut history = element("history", NS_MUC);
        set(&mut history, "maxchars", "0");
        let x = child(element("x", NS_MUC), history);
        let to = format!("{room}/{}", self.alerts.settings.nick);
        tracing::info!(room = %room, nick = %self.alerts.settings.nick, "joining the alerts room");
        vec![child(stanza("presence", &self.room_occupant_jid(), &to), x)]
    }

    /// Out of the room for `why`: joining again after the backoff.
    fn room_failed(&mut self, now: Instant, why: &str) {
        let delay = self.alerts.room.backoff.next_delay();
        self.alerts.room.state = State::Waiting(now + delay);
        self.alerts.room.occupants.clear();
        tracing::warn!(room = ?self.alerts.settings.room.as_ref().map(ToString::to_string), retry_in = ?delay, "not in the alerts room: {why}");
    }

    /// Joins again when the wait is over, or when a join had no answer.
    pub(super) fn room_retry(&mut self, now: Instant) -> Vec<Element> {
        match self.alerts.room.state {
            State::Waiting(at) if now >= at => self.room_join(now),
            State::Joining(since) if now.saturating_duration_since(since) >= JOIN_TIMEOUT => {
                self.room_failed(now, "the room did not answer the join");
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// A stanza from the room (or for the gateway's occupant JID from a
    /// room it is no longer in): handled here, `None` for all others.
    pub(super) fn on_room_stanza(
        &mut self,
        el: &Element,
        from: Option<&Jid>,
    ) -> Option<Vec<Element>> {
        let from = from?;
        // Asked of every stanza: compared in place, nothing allocated.
        let ours = self.alerts.settings.room.as_ref().is_some_and(|room| {
            from.node().map(|n| n.as_str()) == room.node().map(|n| n.as_str())
                && from.domain().as_str() == room.domain().as_str()
        });
        if !ours {
            let to_occupant = el
                .attr("to")
                .and_then(|to| to.strip_prefix(self.me.domain.as_str()))
                .and_then(|rest| rest.strip_prefix('/'))
                == Some(RESOURCE);
            // An old room's last words: nothing to answer.
            return (to_occupant && el.name() != "iq").then(Vec::new);
        }
        let now = Instant::now();
        Some(match el.name() {
            "presence" => self.room_presence(el, from, now),
            "message" => self.room_message(el, from, now),
            "iq" => {
                match el.attr("type") {
                    Some("error") => {
                        tracing::warn!(room = %from, id = el.attr("id").unwrap_or_default(), error = %error_condition(el), "the alerts room refused a request")
                    }
                    Some("result") => {
                        tracing::debug!(room = %from, id = el.attr("id").unwrap_or_default(), "the alerts room took a request")
                    }
                    _ => {}
                }
                Vec::new()
            }
            _ => Vec::new(),
        })
    }

    fn room_presence(&mut self, el: &Element, from: &Jid, now: Instant) -> Vec<Element> {
        let kind = el.attr("type").unwrap_or("available");
        let nick = from.resource().map(|r| r.as_str().to_owned());
        let codes = statuses(el);
        let mine = codes.contains(&110) || nick.as_deref() == Some(&self.alerts.settings.nick);
        if kind == "error" {
            if mine || nick.is_none() {
                let why = format!("the join was refused ({})", error_condition(el));
                self.room_failed(now, &why);
            }
            return Vec::new();
        }
        let Some(nick) = nick else {
            return Vec::new();
        };
        if !mine {
            if kind == "unavailable" {
                self.alerts.room.occupants.remove(&nick);
            } else {
                self.alerts.room.occupants.insert(nick, real_jid(el));
            }
            return Vec::new();
        }
        if kind == "unavailable" {
            if codes.contains(&303) {
                return Vec::new();
            }
            let why = if codes.contains(&307) {
                "kicked"
            } else if codes.contains(&301) {
                "banned"
            } else if codes.contains(&321) || codes.contains(&322) {
                "removed as it is not a member"
            } else if codes.contains(&332) {
                "the service is shutting down"
            } else {
                "the room let it go (destroyed, or restarted)"
            };
            self.room_failed(now, why);
            return Vec::new();
        }
        if self.alerts.room.is_in() {
            return Vec::new();
        }
        self.alerts.room.state = State::In;
        self.alerts.room.backoff.reset();
        self.alerts.room.given_nick = Some(nick);
        tracing::info!(room = %from.to_bare(), "in the alerts room");
        let mut out = Vec::new();
        if codes.contains(&201) {
            out.extend(self.room_configure(&from.to_bare()));
        }
        out.extend(self.room_entered());
        out
    }

    /// A room the gateway created: members-only, persistent, real JIDs
    /// visible (so that an `ack` there can be checked), the readers as
    /// members.
    fn room_configure(&self, room: &BareJid) -> Vec<Element> {
        tracing::info!(room = %room, "created the alerts room: members-only, with the readers as members");
        let me = self.room_occupant_jid();
        let room = room.to_string();
        let mut form = with(element("x", NS_DATA), "type", "submit");
        for (var, value) in [
            ("FORM_TYPE", "http://jabber.org/protocol/muc#roomconfig"),
            ("muc#roomconfig_roomname", "fieldbridge alerts"),
            ("muc#roomconfig_membersonly", "1"),
            ("muc#roomconfig_persistentroom", "1"),
            ("muc#roomconfig_whois", "anyone"),
        ] {
            form.append_child(field(var, value));
        }
        let mut config = with(stanza("iq", &me, &room), "type", "set");
        set(&mut config, "id", "alerts-room-config");
        config.append_child(child(element("query", NS_MUC_OWNER), form));
        // The members first, then the form that unlocks the room, so that
        // nobody who may read finds it members-only without being one. One
        // iq per member: Prosody (0.12) applies only the first item of an
        // admin query.
        let mut out = Vec::new();
        for (n, m) in self.access.accounts().into_iter().enumerate() {
            let mut item = with(element("item", NS_MUC_ADMIN), "affiliation", "member");
            set(&mut item, "jid", m.to_string());
            let mut admin = with(stanza("iq", &me, &room), "type", "set");
            set(&mut admin, "id", format!("alerts-room-member-{n}"));
            admin.append_child(child(element("query", NS_MUC_ADMIN), item));
            out.push(admin);
        }
        out.push(config);
        out
    }

    fn room_message(&mut self, el: &Element, from: &Jid, now: Instant) -> Vec<Element> {
        let kind = el.attr("type").unwrap_or("normal");
        if kind == "error" {
            // Most likely: the room no longer has the gateway as occupant.
            let why = format!("the room refused a message ({})", error_condition(el));
            self.room_failed(now, &why);
            return Vec::new();
        }
        let Some(nick) = from.resource().map(|r| r.as_str().to_owned()) else {
            return Vec::new();
        };
        if kind != "groupchat"
            || nick == self.alerts.settings.nick
            || self.alerts.room.given_nick.as_deref() == Some(nick.as_str())
            || el.get_child("delay", NS_DELAY).is_some()
        {
            // Its own messages, history, private messages: never answered.
            return Vec::new();
        }
        let Some(body) = el
            .children()
            .find(|c| c.name() == "body")
            .map(Element::text)
        else {
            return Vec::new();
        };
        let Some(command) = addressed(&body, &self.alerts.settings.nick) else {
            return Vec::new();
        };
        let answer = match chat::parse(command) {
            ChatCommand::Alarms => self.alarms_text(None),
            ChatCommand::Ack(what) => match self.alerts.room.occupants.get(&nick).cloned().flatten() {
                Some(who) => self.ack(&who, Via::Room, None, what),
                None => "This room does not show me who you are, so I cannot tell whether you may acknowledge: acknowledge in a chat with the device (or the gateway), or make the room show real JIDs.".to_owned(),
            },
            _ => {
                let me = &self.alerts.settings.nick;
                format!("I answer `{me}: alarms` and `{me}: ack <device>/<point>` or `{me}: ack all`.")
            }
        };
        let Some(room) = &self.alerts.settings.room else {
            return Vec::new();
        };
        let mut m = with(
            stanza("message", &self.room_occupant_jid(), &room.to_string()),
            "type",
            "groupchat",
        );
        m.append_child(text("body", NS_COMPONENT, format!("{nick}: {answer}")));
        vec![m]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_addressed_by_nick() {
        assert_eq!(
            addressed("fieldbridge: alarms", "fieldbridge"),
            Some("alarms")
        );
        assert_eq!(
            addressed("  FieldBridge,  ack all ", "fieldbridge"),
            Some("ack all")
        );
        assert_eq!(addressed("fieldbridge alarms", "fieldbridge"), None);
        assert_eq!(addressed("hello fieldbridge: alarms", "fieldbridge"), None);
        assert_eq!(addressed("fb", "fieldbridge"), None);
        assert_eq!(addressed("é", "e"), None);
    }
}
