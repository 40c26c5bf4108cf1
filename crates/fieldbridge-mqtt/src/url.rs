//! `mqtt://host:port` and `mqtts://host:port`.

/// A broker address from `url:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// `mqtts://`: TLS.
    pub tls: bool,
}

impl BrokerUrl {
    /// Parses the url, or says what is wrong with it.
    pub fn parse(url: &str) -> Result<Self, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("mqtts://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("mqtt://") {
            (false, r)
        } else {
            return Err(format!(
                "url {url:?} must start with mqtt:// or mqtts:// (e.g. mqtt://127.0.0.1:1883)"
            ));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '@', '?']) {
            return Err(format!(
                "url {url:?}: give only host and port; put credentials in `username` and `password`"
            ));
        }
        let default_port = if tls { 8883 } else { 1883 };
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("url {url:?}: missing `]`"))?;
            match after.strip_prefix(':') {
                Some(p) => (host, Some(p)),
                None if after.is_empty() => (host, None),
                None => return Err(format!("url {url:?}: unexpected {after:?}")),
            }
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        if host.is_empty() {
            return Err(format!("url {url:?} has no host"));
        }
        let port = match port {
            None => default_port,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => n,
                _ => return Err(format!("url {url:?}: port {p:?} is not 1 to 65535")),
            },
        };
        Ok(Self {
            host: host.to_owned(),
            port,
            tls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let ok = |u: &str, host: &str, port, tls| {
            assert_eq!(
                BrokerUrl::parse(u),
                Ok(BrokerUrl {
                    host: host.into(),
                    port,
                    tls
                }),
                "{u}"
            )
        };
        ok("mqtt://127.0.0.1:1883", "127.0.0.1", 1883, false);
        ok("mqtt://broker.local", "broker.local", 1883, false);
        ok("mqtts://broker.local", "broker.local", 8883, true);
        ok("mqtts://[::1]:8884/", "::1", 8884, true);
        for bad in [
            "tcp://x:1",
            "mqtt://",
            "mqtt://x:0",
            "mqtt://x:99999",
            "mqtt://u:p@x",
            "mqtt://x/topic",
        ] {
            assert!(BrokerUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
