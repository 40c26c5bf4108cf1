//! The `xmpp:` section of `gateway.yaml`.

use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use xmpp_parsers::jid::BareJid;

/// `xmpp:` — how the gateway reaches its XMPP server and who may use it.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct XmppConfig {
    /// The component's domain, as configured on the server
    /// (`Component "gw.example.org"` in Prosody). Devices become
    /// `<device-id>@<component>`.
    pub component: String,
    /// The server's component port, `host:port` (Prosody and ejabberd
    /// listen on 5347 by default). The component protocol itself is not
    /// encrypted: a link that leaves the machine needs `tls`.
    #[serde(default = "default_server")]
    pub server: String,
    /// Encrypts the link with TLS from the first byte (ejabberd's
    /// `ejabberd_service` with `tls: true`, Prosody's Direct-TLS port with
    /// `net_multiplex`). A failed TLS handshake is an error, never a
    /// fallback to clear text.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// The component secret. Prefer `secret_file` or the environment
    /// variable `FIELDBRIDGE__XMPP__SECRET`, so that the secret stays out of
    /// the config file.
    #[serde(default)]
    pub secret: Option<String>,
    /// A file holding the component secret (surrounding whitespace is
    /// ignored). Relative paths are relative to the config file.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// Who may see and control devices.
    #[serde(default)]
    pub access: AccessConfig,
    /// How often a device's status text may change with its values
    /// (default 60s). A client shows the text beside the contact, and a
    /// phone is woken for each change: values that change every poll must
    /// not wake it every poll. Online, stale and offline are sent at once.
    #[serde(default, deserialize_with = "fieldbridge_core::duration::optional")]
    #[schemars(schema_with = "fieldbridge_core::duration::optional_schema")]
    pub status_interval: Option<Duration>,
}

/// `xmpp.tls` — how the server's certificate is checked.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The name the server's certificate must cover, also sent as SNI
    /// (default: the component's domain, which is how Prosody picks the
    /// certificate).
    #[serde(default)]
    pub server_name: Option<String>,
    /// A PEM file of the CA certificates to trust instead of the system's
    /// roots (a private CA). Relative paths are relative to the config file.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

impl TlsConfig {
    /// The name the server's certificate must cover, sent as SNI:
    /// `server_name`, or the component's domain.
    pub fn name<'a>(&'a self, component: &'a str) -> &'a str {
        self.server_name.as_deref().unwrap_or(component)
    }
}

fn default_server() -> String {
    "127.0.0.1:5347".to_owned()
}

/// `xmpp.access` — lists of bare JIDs (`alice@example.org`), domains
/// (`example.org`, meaning every account there) or `"*"` (anyone).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessConfig {
    /// May subscribe to devices' presence and pubsub nodes and read values.
    /// Empty (the default) means nobody: access is opened deliberately.
    #[serde(default)]
    pub read: Vec<String>,
    /// May write points marked `writable` (implies read).
    #[serde(default)]
    pub control: Vec<String>,
}

/// `alerts:` — who hears of alarms (issue 14): chat messages to readers,
/// and a multi-user chat room the gateway joins. Empty (the default): alarms
/// are still on the `alerts` pubsub node and in `alarms`, but nobody is
/// messaged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// Bare JIDs (`alice@example.org`) that get every alert as a chat
    /// message from the device's JID. Each must be allowed by
    /// `xmpp.access.read`: an alert says what a device reads.
    #[serde(default)]
    pub to: Vec<String>,
    /// A multi-user chat room (`plant-alerts@conference.example.org`) the
    /// gateway joins and posts every alert to. If it does not exist and the
    /// service lets it, the gateway creates it members-only, with the
    /// readers as members.
    #[serde(default)]
    pub room: Option<String>,
    /// The gateway's nickname in `room` (default: `gateway.id`). A room
    /// message starting with `<nick>:` or `<nick>,` is a command.
    #[serde(default)]
    pub nick: Option<String>,
    /// Every this long, each raised, unacknowledged critical alarm is sent
    /// again, prefixed `Reminder:` (default: off). `ack` stops it.
    #[serde(default, deserialize_with = "fieldbridge_core::duration::optional")]
    #[schemars(schema_with = "fieldbridge_core::duration::optional_schema")]
    pub remind: Option<Duration>,
}

impl AlertsConfig {
    /// The recipients that are bare JIDs (the loader refused the others).
    pub fn recipients(&self) -> Vec<BareJid> {
        self.to.iter().filter_map(|t| account(t).ok()).collect()
    }

    /// The room, if it is a valid bare JID with a node.
    pub fn room_jid(&self) -> Option<BareJid> {
        self.room.as_deref().and_then(|r| account(r).ok())
    }

    /// The nickname in the room: `nick`, or the gateway id.
    pub fn nick_or<'a>(&'a self, gateway_id: &'a str) -> &'a str {
        self.nick.as_deref().unwrap_or(gateway_id)
    }

    /// Checks what serde cannot: recipients and the room are bare JIDs of
    /// an account or room, every recipient may read (by `access`), the
    /// nickname and reminder make sense. Paths are below `alerts`.
    pub fn problems(&self, access: Option<&AccessConfig>) -> Vec<ConfigProblem> {
        let mut out = Vec::new();
        let readers = access.map(crate::access::Access::new);
        for (i, to) in self.to.iter().enumerate() {
            let path = format!("to[{i}]");
            match account(to) {
                Err(message) => out.push(ConfigProblem { path, message }),
                Ok(jid) => {
                    if let Some(a) = &readers
                        && !a.may_read(&jid)
                    {
                        out.push(ConfigProblem {
                            path,
                            message: format!(
                                "{jid} may not read devices, and an alert tells what they read: add it (or its domain) to xmpp.access.read, or remove it here"
                            ),
                        });
                    }
                }
            }
        }
        if let Some(room) = &self.room
            && let Err(message) = checked_account(room, "plant-alerts@conference.example.org")
        {
            out.push(ConfigProblem {
                path: "room".into(),
                message,
            });
        }
        if let Some(nick) = &self.nick
            && (nick.trim().is_empty() || nick.trim() != nick || nick.chars().any(char::is_control))
        {
            out.push(ConfigProblem {
                path: "nick".into(),
                message: format!(
                    "{nick:?} is not a nickname: use a word without surrounding spaces, e.g. fieldbridge"
                ),
            });
        }
        if self.remind == Some(Duration::ZERO) {
            out.push(ConfigProblem {
                path: "remind".into(),
                message: "a reminder every 0 s would never stop: use e.g. 30m, or remove `remind` to send none".into(),
            });
        }
        out
    }
}

/// `text` as the bare JID of an account or room (`node@domain`), or why not.
fn account(text: &str) -> Result<BareJid, String> {
    checked_account(text, "alice@example.org")
}

/// [`account`], with `example` in the message for what is no JID at all.
fn checked_account(text: &str, example: &str) -> Result<BareJid, String> {
    match xmpp_parsers::jid::Jid::new(text) {
        Err(e) => Err(format!(
            "{text:?} is not a JID ({e}); use a bare JID, e.g. {example}"
        )),
        Ok(j) if j.resource().is_some() => Err(format!(
            "{text:?} has a resource; use the bare JID {:?}",
            j.to_bare().to_string()
        )),
        Ok(j) if j.node().is_none() => Err(format!(
            "{text:?} is a domain; use a bare JID with a name before the @, e.g. {example}"
        )),
        Ok(j) => Ok(j.to_bare()),
    }
}

/// A problem found in the `xmpp:` section, with the key path below `xmpp`
/// (e.g. `access.read[1]`), for the config loader to report with a position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Key path relative to `xmpp`, e.g. `component` or `access.read[1]`.
    pub path: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl XmppConfig {
    /// The name the server's certificate is checked against, when the link
    /// is encrypted: `tls.server_name`, or the component's domain.
    pub fn tls_server_name(&self) -> Option<&str> {
        self.tls.as_ref().map(|t| t.name(&self.component))
    }

    /// Whether `server` names this machine (a loopback address or
    /// `localhost`): a clear-text link that goes nowhere else is fine.
    pub fn server_is_local(&self) -> bool {
        let host = self
            .server
            .rsplit_once(':')
            .map_or(self.server.as_str(), |(h, _)| h);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.to_canonical().is_loopback())
    }

    /// A warning when the link is clear text and leaves the machine (no
    /// `tls`, `server` not loopback): a note in `check` and at startup,
    /// not a refusal, since a trusted network (a VPN, a private LAN) may be
    /// the operator's choice.
    pub fn clear_text_warning(&self) -> Option<String> {
        (self.tls.is_none() && !self.server_is_local()).then(|| {
            format!(
                "the XMPP link to {} is clear text: every stanza and the secret's digest cross the network readable; add `xmpp.tls` for a link that leaves the machine",
                self.server
            )
        })
    }

    /// Makes a relative `tls.ca_file` relative to `base`, the
    /// configuration file's directory.
    pub fn resolve_paths(&mut self, base: &std::path::Path) {
        if let Some(ca) = self.tls.as_mut().and_then(|t| t.ca_file.as_mut())
            && ca.is_relative()
        {
            *ca = base.join(&*ca);
        }
    }

    /// [`XmppConfig::status_interval`], or its default.
    pub fn status_interval(&self) -> Duration {
        self.status_interval
            .unwrap_or(crate::gateway::STATUS_INTERVAL)
    }

    /// Checks what serde cannot: the domain, the server address, access
    /// entries. The secret is resolved and checked by the loader.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut out = Vec::new();
        let mut problem = |path: String, message: String| out.push(ConfigProblem { path, message });
        match xmpp_parsers::jid::Jid::new(&self.component) {
            Ok(j) if j.node().is_none() && j.resource().is_none() => {}
            _ => problem(
                "component".into(),
                format!(
                    "{:?} is not a domain; use the component's domain as declared on the server, e.g. gw.example.org",
                    self.component
                ),
            ),
        }
        match self.server.rsplit_once(':') {
            Some((host, port))
                if !host.is_empty()
                    && !host.contains(char::is_whitespace)
                    && port.parse::<u16>().is_ok_and(|p| p > 0) => {}
            _ => problem(
                "server".into(),
                format!("{:?} is not host:port, e.g. 127.0.0.1:5347", self.server),
            ),
        }
        if let Some(name) = self.tls.as_ref().and_then(|t| t.server_name.as_deref())
            && fieldbridge_tls::rustls::pki_types::ServerName::try_from(name).is_err()
        {
            problem(
                "tls.server_name".into(),
                format!("{name:?} is not a DNS name or IP address, e.g. gw.example.org"),
            );
        }
        for (list, entries) in [
            ("read", &self.access.read),
            ("control", &self.access.control),
        ] {
            for (i, entry) in entries.iter().enumerate() {
                if let Err(e) = crate::access::check_entry(entry) {
                    problem(format!("access.{list}[{i}]"), e.to_string());
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(component: &str, server: &str, read: &[&str], control: &[&str]) -> XmppConfig {
        XmppConfig {
            component: component.into(),
            server: server.into(),
            tls: None,
            secret: None,
            secret_file: None,
            access: AccessConfig {
                read: read.iter().map(|s| s.to_string()).collect(),
                control: control.iter().map(|s| s.to_string()).collect(),
            },
            status_interval: None,
        }
    }

    fn paths(c: &XmppConfig) -> Vec<String> {
        c.problems().into_iter().map(|p| p.path).collect()
    }

    #[test]
    fn a_good_section_has_no_problems() {
        let c = config(
            "gw.example.org",
            "127.0.0.1:5347",
            &["example.org", "*", "bob@other.example"],
            &["alice@example.org"],
        );
        assert_eq!(c.problems(), vec![]);
        assert!(paths(&config("gw.localhost", "[::1]:5347", &[], &[])).is_empty());
    }

    #[test]
    fn every_problem_is_reported_with_its_key_path() {
        let c = config(
            "boiler@gw.example.org",
            "localhost",
            &["example.org", "alice@example.org/phone", "not a jid"],
            &["@@"],
        );
        assert_eq!(
            paths(&c),
            vec![
                "component",
                "server",
                "access.read[1]",
                "access.read[2]",
                "access.control[0]"
            ]
        );
        let problems = c.problems();
        assert!(problems[0].message.contains("not a domain"), "{problems:?}");
        assert!(problems[2].message.contains("bare JID"), "{problems:?}");
    }

    #[test]
    fn only_a_clear_text_link_off_the_machine_is_warned_about() {
        for local in [
            "127.0.0.1:5347",
            "[::1]:5347",
            "localhost:5347",
            "127.8.0.1:1",
            "[::ffff:127.0.0.1]:5347",
        ] {
            let c = config("gw.example.org", local, &[], &[]);
            assert!(c.server_is_local(), "{local}");
            assert_eq!(c.clear_text_warning(), None, "{local}");
        }
        for remote in [
            "192.0.2.1:5347",
            "[2001:db8::1]:5347",
            "localhost.example.org:1",
        ] {
            assert!(
                !config("gw.example.org", remote, &[], &[]).server_is_local(),
                "{remote}"
            );
        }
        let mut c = config("gw.example.org", "xmpp.example.org:5347", &[], &[]);
        assert!(!c.server_is_local());
        let w = c.clear_text_warning().unwrap();
        assert!(w.contains("xmpp.example.org:5347 is clear text"), "{w}");
        c.tls = Some(TlsConfig::default());
        assert_eq!(c.clear_text_warning(), None);
        assert_eq!(c.tls_server_name(), Some("gw.example.org"));
        c.tls = Some(TlsConfig {
            server_name: Some("not a name".into()),
            ca_file: Some("ca.pem".into()),
        });
        assert_eq!(paths(&c), vec!["tls.server_name"]);
        c.resolve_paths(std::path::Path::new("/etc/fieldbridge"));
        assert_eq!(
            c.tls.as_ref().and_then(|t| t.ca_file.as_deref()),
            Some(std::path::Path::new("/etc/fieldbridge/ca.pem"))
        );
    }

    #[test]
    fn ports_must_be_valid() {
        for bad in [
            "host:0",
            "host:65536",
            "host:",
            ":5347",
            "host:port",
            "my host:5347",
        ] {
            assert_eq!(
                paths(&config("gw.example.org", bad, &[], &[])),
                vec!["server"],
                "{bad}"
            );
        }
        assert_eq!(
            paths(&config("gw.example.org/res", "h:1", &[], &[])),
            vec!["component"]
        );
    }
}
