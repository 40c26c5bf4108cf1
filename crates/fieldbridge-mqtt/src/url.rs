//! `mqtt://host:port` and `mqtts://host:port`, checked when the
//! configuration is read.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer};

/// Why a `url:` is not a broker address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Neither `mqtt://` nor `mqtts://`.
    #[error("url {0:?} must start with mqtt:// or mqtts:// (e.g. mqtt://127.0.0.1:1883)")]
    Scheme(String),
    /// A path, credentials or a query after the address.
    #[error("url {0:?}: give only host and port; put credentials in `username` and `password`")]
    NotJustAddress(String),
    /// `[` without `]`.
    #[error("url {0:?}: missing `]`")]
    Bracket(String),
    /// Something after `]` that is not `:port`.
    #[error("url {url:?}: unexpected {after:?}")]
    AfterAddress {
        /// The url.
        url: String,
        /// What followed the IPv6 address.
        after: String,
    },
    /// No host.
    #[error("url {0:?} has no host")]
    NoHost(String),
    /// A port that is not 1 to 65535.
    #[error("url {url:?}: port {port:?} is not 1 to 65535")]
    Port {
        /// The url.
        url: String,
        /// The port as written.
        port: String,
    },
}

/// A broker address from `url:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// `mqtts://`: TLS.
    pub tls: bool,
    /// As written (shown by `Display`).
    text: String,
}

impl BrokerUrl {
    /// Parses the url, or says what is wrong with it.
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("mqtts://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("mqtt://") {
            (false, r)
        } else {
            return Err(UrlError::Scheme(url.to_owned()));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '@', '?']) {
            return Err(UrlError::NotJustAddress(url.to_owned()));
        }
        let default_port = if tls { 8883 } else { 1883 };
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| UrlError::Bracket(url.to_owned()))?;
            match after.strip_prefix(':') {
                Some(p) => (host, Some(p)),
                None if after.is_empty() => (host, None),
                None => {
                    return Err(UrlError::AfterAddress {
                        url: url.to_owned(),
                        after: after.to_owned(),
                    });
                }
            }
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        if host.is_empty() {
            return Err(UrlError::NoHost(url.to_owned()));
        }
        let port = match port {
            None => default_port,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => n,
                _ => {
                    return Err(UrlError::Port {
                        url: url.to_owned(),
                        port: p.to_owned(),
                    });
                }
            },
        };
        Ok(Self {
            host: host.to_owned(),
            port,
            tls,
            text: url.to_owned(),
        })
    }

    /// The url as written in `gateway.yaml`.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

written_as_text!(BrokerUrl);

impl<'de> Deserialize<'de> for BrokerUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        BrokerUrl::parse(&text).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let ok = |u: &str, host: &str, port, tls| {
            let url = BrokerUrl::parse(u).unwrap();
            assert_eq!(
                (url.host.as_str(), url.port, url.tls),
                (host, port, tls),
                "{u}"
            );
            assert_eq!(url.to_string(), u, "shown as written");
        };
        ok("mqtt://127.0.0.1:1883", "127.0.0.1", 1883, false);
        ok("mqtt://broker.local", "broker.local", 1883, false);
        ok("mqtts://broker.local", "broker.local", 8883, true);
        ok("mqtts://[::1]:8884/", "::1", 8884, true);
        let bad = |u: &str| BrokerUrl::parse(u).unwrap_err();
        assert!(matches!(bad("tcp://x:1"), UrlError::Scheme(_)));
        assert!(matches!(bad("mqtt://"), UrlError::NoHost(_)));
        assert!(matches!(bad("mqtt://x:0"), UrlError::Port { .. }));
        assert!(matches!(bad("mqtt://x:99999"), UrlError::Port { .. }));
        assert!(matches!(bad("mqtt://u:p@x"), UrlError::NotJustAddress(_)));
        assert!(matches!(bad("mqtt://x/topic"), UrlError::NotJustAddress(_)));
        assert!(matches!(bad("mqtt://[::1"), UrlError::Bracket(_)));
        assert!(matches!(
            bad("mqtt://[::1]x"),
            UrlError::AfterAddress { .. }
        ));
    }
}
