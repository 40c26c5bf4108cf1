//! A deliberately dumb XMPP client that writes raw XML, for sending what a
//! well-behaved library refuses to: malformed stanzas, as any remote user
//! could.

use std::collections::VecDeque;
use std::time::Duration;

use minidom::Element;
use minidom::rxml::error::EndOrError;
use minidom::rxml::parser::Options;
use minidom::rxml::{Parse, RawParser, WithOptions};
use minidom::tree_builder::TreeBuilder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// A logged-in raw client session.
pub struct RawClient {
    stream: TcpStream,
    seen: String,
    /// What arrives after login, parsed into stanzas as it comes.
    stanzas: Stanzas,
}

/// The server's side of the stream, read as XML (with a token limit of
/// 1 MiB: rxml's default of 8 KiB, which minidom's own `parse` keeps, is
/// less than a long text reading): complete stanzas in the order they
/// arrived.
struct Stanzas {
    parser: Option<(RawParser, TreeBuilder)>,
    queue: VecDeque<minidom::Element>,
    error: Option<String>,
}

impl Stanzas {
    fn new() -> Self {
        Self {
            parser: None,
            queue: VecDeque::new(),
            error: None,
        }
    }

    /// Starts reading at a stanza boundary, as inside a stream that
    /// declared `jabber:client` (the server's header went by before).
    fn start(&mut self, rest: &str) {
        let options = Options {
            max_token_length: 1 << 20,
            ..Default::default()
        };
        self.parser = Some((RawParser::with_options(options), TreeBuilder::new()));
        self.feed(
            b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>",
        );
        self.feed(rest.as_bytes());
    }

    fn feed(&mut self, mut bytes: &[u8]) {
        let Some((parser, tree)) = self.parser.as_mut() else {
            return;
        };
        if self.error.is_some() {
            return;
        }
        loop {
            match parser.parse(&mut bytes, false) {
                Ok(Some(event)) => {
                    if let Err(e) = tree.process_event(event) {
                        self.error = Some(format!("{e}"));
                        return;
                    }
                    // Back at the stream's level: a stanza is complete.
                    if tree.depth() == 1 {
                        while let Some(stanza) = tree.unshift_child() {
                            self.queue.push_back(stanza);
                        }
                    }
                }
                Ok(None) => {
                    self.error = Some("the stream ended".into());
                    return;
                }
                Err(EndOrError::NeedMoreData) => return,
                Err(EndOrError::Error(e)) => {
                    self.error = Some(format!("{e}"));
                    return;
                }
            }
        }
    }
}

fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";

/// Creates the account `user@localhost` with `password` by in-band
/// registration (XEP-0077) on the c2s `port`, as a new user's client
/// would; the server must allow it (see
/// [`crate::server::Options::in_band_registration`]). Fails unless the
/// server answered with success within 10 s.
pub async fn register(port: u16, user: &str, password: &str) -> anyhow::Result<()> {
    let stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream.set_nodelay(true)?;
    let mut c = RawClient {
        stream,
        seen: String::new(),
        stanzas: Stanzas::new(),
    };
    c.send(HEADER).await?;
    let features = c.read_until("</stream:features>").await?;
    anyhow::ensure!(
        features.contains("http://jabber.org/features/iq-register"),
        "the server offers no in-band registration: {features}"
    );
    let rest = std::mem::take(&mut c.seen);
    c.stanzas.start(&rest);
    c.send(&format!(
        "<iq type='set' id='reg'><query xmlns='jabber:iq:register'>\
         <username>{user}</username><password>{password}</password></query></iq>"
    ))
    .await?;
    let answer = c.reply("reg").await?;
    anyhow::ensure!(
        answer.attr("type") == Some("result"),
        "registering {user}: {}",
        String::from(&answer)
    );
    c.send("</stream:stream>").await?;
    Ok(())
}

impl RawClient {
    /// Logs in `user@localhost` with SASL PLAIN (the test Prosody allows it
    /// on loopback) and binds a resource.
    pub async fn login(port: u16, user: &str, password: &str) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream.set_nodelay(true)?;
        let mut c = Self {
            stream,
            seen: String::new(),
            stanzas: Stanzas::new(),
        };
        c.send(HEADER).await?;
        c.read_until("</stream:features>").await?;
        let auth = base64(format!("\0{user}\0{password}").as_bytes());
        c.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{auth}</auth>"
        ))
        .await?;
        c.read_until("<success").await?;
        c.send(HEADER).await?;
        c.read_until("</stream:features>").await?;
        c.send("<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
            .await?;
        c.read_until("</iq>").await?;
        // From here on, everything is also read as stanzas.
        let rest = c.seen.clone();
        c.stanzas.start(&rest);
        c.send("<presence/>").await?;
        Ok(c)
    }

    /// The reply (`result` or `error`) to the IQ with `id`, read as XML:
    /// the first `<iq>` stanza of the server's stream with that id, within
    /// 10 s. (Unlike [`Self::read_until`], text that merely looks like it,
    /// elsewhere in another stanza, does not count.)
    pub async fn reply(&mut self, id: &str) -> anyhow::Result<Element> {
        self.reply_within(id, Duration::from_secs(10)).await
    }

    /// [`Self::reply`], waiting at most `within`.
    pub async fn reply_within(&mut self, id: &str, within: Duration) -> anyhow::Result<Element> {
        self.expect(&format!("the reply to iq {id}"), within, |e| {
            e.name() == "iq"
                && e.attr("id") == Some(id)
                && matches!(e.attr("type"), Some("result" | "error"))
        })
        .await
    }

    /// The first stanza received (after login) that `matches`, within
    /// `within`; the others stay queued for later waits. `what` names it
    /// in the error.
    pub async fn expect(
        &mut self,
        what: &str,
        within: Duration,
        matches: impl Fn(&Element) -> bool,
    ) -> anyhow::Result<Element> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(i) = self.stanzas.queue.iter().position(&matches) {
                return Ok(self.stanzas.queue.remove(i).expect("just found"));
            }
            if let Some(e) = &self.stanzas.error {
                anyhow::bail!("the stream did not parse ({e}) before {what}");
            }
            let n = tokio::time::timeout_at(deadline, self.fill())
                .await
                .map_err(|_| anyhow::anyhow!("no {what} within {within:?}; {}", self.got()))??;
            anyhow::ensure!(
                n > 0,
                "connection closed while waiting for {what}; {}",
                self.got()
            );
        }
    }

    /// What arrived and was not taken, for failure messages: the last
    /// stanzas (all of them, unless there are many) and the last text.
    fn got(&self) -> String {
        const SHOWN: usize = 20;
        let queue = &self.stanzas.queue;
        let skipped = queue.len().saturating_sub(SHOWN);
        let stanzas: Vec<String> = queue.iter().skip(skipped).map(String::from).collect();
        let tail: String = {
            let chars: Vec<char> = self.seen.chars().collect();
            chars[chars.len().saturating_sub(500)..].iter().collect()
        };
        let skipped = if skipped > 0 {
            format!("{skipped} stanzas, then:\n")
        } else {
            String::new()
        };
        format!(
            "got: {skipped}{}\n(the stream's last text: {tail})",
            stanzas.join("\n")
        )
    }

    /// Ends the XML view and hands over the socket, for a reader that
    /// only counts what arrives (what was received and not yet taken by a
    /// wait is dropped).
    pub fn into_stream(self) -> TcpStream {
        self.stream
    }

    /// Reads what the server sent next, into both views.
    async fn fill(&mut self) -> anyhow::Result<usize> {
        let mut buf = [0u8; 4096];
        let n = self.stream.read(&mut buf).await?;
        self.stanzas.feed(&buf[..n]);
        self.seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        Ok(n)
    }

    /// Writes raw text.
    pub async fn send(&mut self, xml: &str) -> anyhow::Result<()> {
        self.stream.write_all(xml.as_bytes()).await?;
        Ok(())
    }

    /// Reads until the received text contains `needle`; returns everything
    /// received up to and including it.
    pub async fn read_until(&mut self, needle: &str) -> anyhow::Result<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(i) = self.seen.find(needle) {
                let end = i + needle.len();
                let rest = self.seen.split_off(end);
                return Ok(std::mem::replace(&mut self.seen, rest));
            }
            let n = tokio::time::timeout_at(deadline, self.fill())
                .await
                .map_err(|_| anyhow::anyhow!("no {needle:?} within 10s; got: {}", self.seen))??;
            anyhow::ensure!(
                n > 0,
                "connection closed while waiting for {needle:?}; got: {}",
                self.seen
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(super::base64(input.as_bytes()), want);
        }
    }
}
