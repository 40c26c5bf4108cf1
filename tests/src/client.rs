//! A real XMPP client (tokio-xmpp) logged in to the test Prosody.
//!
//! A background task pumps stanzas both ways, so nothing that arrives
//! between two waits is lost: unmatched stanzas stay in a backlog that later
//! waits search first.

use std::time::Duration;

use futures::StreamExt;
use minidom::Element;
use minidom::rxml::{Namespace, NcName};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_xmpp::connect::DnsConfig;
use tokio_xmpp::xmlstream::Timeouts;
use tokio_xmpp::{Client, Event, Stanza};
use xmpp_parsers::jid::BareJid;

/// Stanza namespace of a client stream.
pub const NS_CLIENT: &str = "jabber:client";

/// A logged-in user.
pub struct XmppUser {
    /// `user@localhost`.
    pub jid: String,
    /// The full JID the server bound.
    pub full_jid: String,
    outgoing: mpsc::Sender<Element>,
    incoming: mpsc::Receiver<Element>,
    backlog: Vec<Element>,
    next_id: u64,
    task: tokio::task::JoinHandle<()>,
}

/// Builds an element; attributes are given as pairs.
pub fn el(name: &str, ns: &str, attrs: &[(&str, &str)]) -> Element {
    let mut e = Element::bare(name, ns);
    for (k, v) in attrs {
        let key = NcName::try_from(*k).expect("a valid attribute name");
        e.set_attr(Namespace::NONE, key, (*v).to_owned());
    }
    e
}

/// Appends `child` and returns the parent.
pub fn with_child(mut parent: Element, child: Element) -> Element {
    parent.append_child(child);
    parent
}

/// A XEP-0325 control `set` of one float point: `<set><double name value/></set>`.
pub fn control_set(point: &str, value: &str) -> Element {
    const NS_CONTROL: &str = "urn:xmpp:iot:control";
    with_child(
        el("set", NS_CONTROL, &[]),
        el("double", NS_CONTROL, &[("name", point), ("value", value)]),
    )
}

/// Serializes for failure messages.
pub fn xml(e: &Element) -> String {
    String::from(e)
}

impl XmppUser {
    /// Logs in `user@localhost` on the c2s `port`; returns once online.
    pub async fn connect(port: u16, user: &str, password: &str) -> anyhow::Result<Self> {
        let jid = BareJid::new(&format!("{user}@localhost"))?;
        let mut client = Client::new_plaintext(
            jid.clone(),
            password.to_owned(),
            DnsConfig::addr(&format!("127.0.0.1:{port}")),
            Timeouts::tight(),
        );
        let full_jid = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                match client.next().await {
                    Some(Event::Online { bound_jid, .. }) => return Ok(bound_jid.to_string()),
                    Some(Event::Disconnected(e)) => anyhow::bail!("login of {jid} failed: {e}"),
                    Some(Event::Stanza(_)) => {}
                    None => anyhow::bail!("client stream ended before login"),
                }
            }
        })
        .await
        .map_err(|_| anyhow::anyhow!("login of {jid} timed out"))??;
        let (out_tx, mut out_rx) = mpsc::channel::<Element>(1024);
        let (in_tx, in_rx) = mpsc::channel::<Element>(65536);
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    out = out_rx.recv() => match out {
                        Some(e) => match Stanza::try_from(e.clone()) {
                            Ok(s) => {
                                if client.send_stanza(s).await.is_err() {
                                    return;
                                }
                            }
                            Err(err) => eprintln!("test client cannot send {}: {err:?}", xml(&e)),
                        },
                        None => {
                            let _ = client.send_end().await;
                            return;
                        }
                    },
                    event = client.next() => match event {
                        Some(Event::Stanza(s)) => {
                            if in_tx.send(Element::from(s)).await.is_err() {
                                return;
                            }
                        }
                        Some(Event::Online { .. }) => {}
                        Some(Event::Disconnected(_)) | None => return,
                    },
                }
            }
        });
        let mut user = Self {
            jid: jid.to_string(),
            full_jid,
            outgoing: out_tx,
            incoming: in_rx,
            backlog: Vec::new(),
            next_id: 0,
            task,
        };
        // Available, so that the server routes presence and headlines to us.
        user.send(el("presence", NS_CLIENT, &[])).await?;
        Ok(user)
    }

    /// Sends a stanza.
    pub async fn send(&mut self, stanza: Element) -> anyhow::Result<()> {
        self.outgoing
            .send(stanza)
            .await
            .map_err(|_| anyhow::anyhow!("the client of {} is disconnected", self.jid))
    }

    /// Waits for a stanza matching `pred`; earlier unmatched stanzas count.
    pub async fn expect(
        &mut self,
        what: &str,
        within: Duration,
        pred: impl Fn(&Element) -> bool,
    ) -> anyhow::Result<Element> {
        if let Some(i) = self.backlog.iter().position(&pred) {
            return Ok(self.backlog.remove(i));
        }
        let deadline = Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.incoming.recv()).await {
                Ok(Some(e)) if pred(&e) => return Ok(e),
                Ok(Some(e)) => self.backlog.push(e),
                Ok(None) => anyhow::bail!("{} disconnected while waiting for {what}", self.jid),
                Err(_) => anyhow::bail!(
                    "{} got no {what} within {within:?}; received meanwhile:\n{}",
                    self.jid,
                    self.backlog.iter().map(xml).collect::<Vec<_>>().join("\n")
                ),
            }
        }
    }

    /// Forgets every stanza received so far and not matched, so that the
    /// next `expect` sees only what arrives from now on.
    pub fn forget_unmatched(&mut self) {
        self.unmatched();
        self.backlog.clear();
    }

    /// Every stanza received so far and not matched by an `expect`.
    pub fn unmatched(&mut self) -> &[Element] {
        while let Ok(e) = self.incoming.try_recv() {
            self.backlog.push(e);
        }
        &self.backlog
    }

    /// Sends an IQ `kind` ("get"/"set") with `payload` to `to` and waits for
    /// its result or error.
    pub async fn iq(&mut self, to: &str, kind: &str, payload: Element) -> anyhow::Result<Element> {
        self.next_id += 1;
        let id = format!("t{}", self.next_id);
        let iq = with_child(
            el("iq", NS_CLIENT, &[("to", to), ("type", kind), ("id", &id)]),
            payload,
        );
        self.send(iq).await?;
        self.expect(
            &format!("the answer to iq {id}"),
            Duration::from_secs(10),
            |e| {
                e.name() == "iq"
                    && e.attr("id") == Some(id.as_str())
                    && matches!(e.attr("type"), Some("result" | "error"))
            },
        )
        .await
    }

    /// Asks to see `jid`'s presence the way a real client does: the roster
    /// first, which makes this session one the server forwards
    /// subscription answers to (RFC 6121 §2.1.6), then `subscribe`; returns
    /// the `subscribed` answer.
    pub async fn subscribe_presence(&mut self, jid: &str) -> anyhow::Result<Element> {
        let own = self.jid.clone();
        let roster = self
            .iq(&own, "get", el("query", "jabber:iq:roster", &[]))
            .await?;
        anyhow::ensure!(
            roster.attr("type") == Some("result"),
            "roster: {}",
            xml(&roster)
        );
        self.send(el(
            "presence",
            NS_CLIENT,
            &[("to", jid), ("type", "subscribe")],
        ))
        .await?;
        self.expect("subscribed", Duration::from_secs(15), |e| {
            is_presence(e, jid, Some("subscribed"))
        })
        .await
    }

    /// Sends `text` as a chat message to `to`, in a thread of its own, and
    /// returns the body of the reply in that thread (which must be a chat
    /// message too, as the request was).
    pub async fn chat(&mut self, to: &str, text: &str) -> anyhow::Result<String> {
        let thread = format!("t-{}-{text}", self.next_id);
        self.next_id += 1;
        let with_text = |name: &str, content: &str| {
            let mut e = el(name, NS_CLIENT, &[]);
            e.append_text_node(content);
            e
        };
        let mut msg = el("message", NS_CLIENT, &[("to", to), ("type", "chat")]);
        msg.append_child(with_text("body", text));
        msg.append_child(with_text("thread", &thread));
        self.send(msg).await?;
        let reply = self
            .expect(
                &format!("the reply to {text:?}"),
                Duration::from_secs(15),
                |e| {
                    e.name() == "message"
                        && e.attr("from")
                            .is_some_and(|f| f.split('/').next() == Some(to))
                        && e.get_child("thread", NS_CLIENT)
                            .map(Element::text)
                            .as_deref()
                            == Some(thread.as_str())
                },
            )
            .await?;
        anyhow::ensure!(reply.attr("type") == Some("chat"), "{}", xml(&reply));
        reply
            .get_child("body", NS_CLIENT)
            .map(Element::text)
            .ok_or_else(|| anyhow::anyhow!("no body: {}", xml(&reply)))
    }

    /// Logs out.
    pub async fn close(self) {
        drop(self.outgoing);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

/// The stanza error condition of an `iq type='error'`, e.g. `forbidden`.
pub fn error_condition(iq: &Element) -> Option<String> {
    iq.get_child("error", NS_CLIENT)?
        .children()
        .find(|c| c.ns() == "urn:ietf:params:xml:ns:xmpp-stanzas" && c.name() != "text")
        .map(|c| c.name().to_owned())
}

/// The `<status>` text of a presence.
pub fn status_text(presence: &Element) -> Option<String> {
    presence.get_child("status", NS_CLIENT).map(Element::text)
}

/// The `<show>` of a presence.
pub fn show(presence: &Element) -> Option<String> {
    presence.get_child("show", NS_CLIENT).map(Element::text)
}

/// True for a presence from `from` (bare) with type `kind` (None = available).
pub fn is_presence(e: &Element, from: &str, kind: Option<&str>) -> bool {
    e.name() == "presence"
        && e.attr("from")
            .is_some_and(|f| f.split('/').next() == Some(from))
        && e.attr("type") == kind
}
