//! Who may do what: `access.read` and `access.control` entries matched
//! against a sender's bare JID.

use xmpp_parsers::jid::{BareJid, Jid};

/// One entry of an access list.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    /// `"*"`: anyone.
    Anyone,
    /// `example.org`: every account of that domain (not its subdomains).
    Domain(String),
    /// `alice@example.org`: that account, from any of its clients.
    Account(BareJid),
}

/// Why an access entry is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    /// Neither a JID, a domain nor `*`.
    #[error("{entry:?} is not a JID, a domain or \"*\": {reason}")]
    NotAJid {
        /// The entry as written.
        entry: String,
        /// Why the JID parser refused it.
        reason: String,
    },
    /// A full JID: access is per account.
    #[error(
        "{entry:?} has a resource; use the bare JID {bare:?} (access is per account, not per client)"
    )]
    HasResource {
        /// The entry as written.
        entry: String,
        /// The bare JID to write instead.
        bare: String,
    },
}

/// Parses one entry, or says why it is not one.
fn parse(entry: &str) -> Result<Entry, AccessError> {
    let e = entry.trim();
    if e == "*" {
        return Ok(Entry::Anyone);
    }
    let jid = Jid::new(e).map_err(|err| AccessError::NotAJid {
        entry: entry.to_owned(),
        reason: err.to_string(),
    })?;
    if jid.resource().is_some() {
        return Err(AccessError::HasResource {
            entry: entry.to_owned(),
            bare: jid.to_bare().to_string(),
        });
    }
    Ok(match jid.node() {
        Some(_) => Entry::Account(jid.to_bare()),
        None => Entry::Domain(jid.domain().to_string()),
    })
}

/// Why an access entry is invalid, if it is.
pub fn check_entry(entry: &str) -> Result<(), AccessError> {
    parse(entry).map(|_| ())
}

/// A parsed access list.
#[derive(Debug, Clone, Default)]
pub struct AccessList {
    entries: Vec<Entry>,
}

impl AccessList {
    /// Parses entries, skipping invalid ones (the config loader has refused
    /// them already).
    pub fn new(entries: &[String]) -> Self {
        Self {
            entries: entries.iter().filter_map(|e| parse(e).ok()).collect(),
        }
    }

    /// Whether `who` matches an entry.
    pub fn allows(&self, who: &BareJid) -> bool {
        self.entries.iter().any(|e| match e {
            Entry::Anyone => true,
            Entry::Domain(d) => who.domain().as_str() == d,
            Entry::Account(a) => a == who,
        })
    }
}

/// Read and control lists together.
#[derive(Debug, Clone, Default)]
pub struct Access {
    read: AccessList,
    control: AccessList,
}

impl Access {
    /// From `xmpp.access`.
    pub fn new(config: &crate::AccessConfig) -> Self {
        Self {
            read: AccessList::new(&config.read),
            control: AccessList::new(&config.control),
        }
    }

    /// May see devices (control implies read).
    pub fn may_read(&self, who: &BareJid) -> bool {
        self.read.allows(who) || self.control.allows(who)
    }

    /// May write writable points.
    pub fn may_control(&self, who: &BareJid) -> bool {
        self.control.allows(who)
    }

    /// The single accounts that may read (read and control lists, not
    /// domains or `*`), sorted, once each: the members of a room the
    /// gateway creates.
    pub fn accounts(&self) -> Vec<BareJid> {
        let mut out: Vec<BareJid> = self
            .read
            .entries
            .iter()
            .chain(&self.control.entries)
            .filter_map(|e| match e {
                Entry::Account(a) => Some(a.clone()),
                _ => None,
            })
            .collect();
        out.sort_by_key(|a| a.to_string());
        out.dedup();
        out
    }

    /// The pubsub access model this amounts to (XEP-0060 §4.5): `open`
    /// only when anyone may read, else `whitelist`.
    pub fn access_model(&self) -> &'static str {
        if self.read.entries.contains(&Entry::Anyone)
            || self.control.entries.contains(&Entry::Anyone)
        {
            "open"
        } else {
            "whitelist"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bare(s: &str) -> BareJid {
        BareJid::new(s).unwrap()
    }

    #[test]
    fn entries_match_accounts_domains_and_anyone() {
        let list = AccessList::new(&["alice@example.org".into(), "corp.example".into()]);
        assert!(list.allows(&bare("alice@example.org")));
        assert!(!list.allows(&bare("bob@example.org")));
        assert!(list.allows(&bare("bob@corp.example")));
        assert!(
            !list.allows(&bare("bob@sub.corp.example")),
            "a domain is not its subdomains"
        );
        assert!(AccessList::new(&["*".into()]).allows(&bare("x@y.z")));
        assert!(
            !AccessList::new(&[]).allows(&bare("x@y.z")),
            "empty means nobody"
        );
    }

    #[test]
    fn control_implies_read() {
        let access = Access::new(&crate::AccessConfig {
            read: vec![],
            control: vec!["op@example.org".into()],
        });
        assert!(access.may_read(&bare("op@example.org")));
        assert!(access.may_control(&bare("op@example.org")));
        assert!(!access.may_control(&bare("x@example.org")));
    }

    #[test]
    fn accounts_are_the_single_readers() {
        let access = Access::new(&crate::AccessConfig {
            read: vec!["example.org".into(), "bob@b.example".into(), "*".into()],
            control: vec!["alice@a.example".into(), "bob@b.example".into()],
        });
        assert_eq!(
            access.accounts(),
            vec![bare("alice@a.example"), bare("bob@b.example")]
        );
    }

    #[test]
    fn bad_entries_are_explained() {
        assert!(matches!(
            check_entry("not a jid"),
            Err(AccessError::NotAJid { .. })
        ));
        let full = check_entry("alice@example.org/phone").unwrap_err();
        assert_eq!(
            full,
            AccessError::HasResource {
                entry: "alice@example.org/phone".into(),
                bare: "alice@example.org".into(),
            }
        );
        assert!(
            full.to_string()
                .contains("use the bare JID \"alice@example.org\""),
            "{full}"
        );
        assert!(check_entry("example.org").is_ok());
    }
}
