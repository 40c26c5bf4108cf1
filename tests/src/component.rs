//! A bare XEP-0114 external component over a raw TCP socket: the stream
//! header, the `<handshake>` (hex SHA-1 of the stream id and the secret),
//! and then whatever the caller writes. No XML library between the caller
//! and the socket, so that it costs next to nothing to send with: the
//! baseline a real component is compared against.

use std::time::Duration;

use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The handshake's content: hex SHA-1 of `stream_id` followed by `secret`.
pub fn handshake_digest(stream_id: &str, secret: &str) -> String {
    let digest = Sha1::digest(format!("{stream_id}{secret}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `id` attribute of the server's `<stream:stream ...>` header.
fn stream_id(header: &str) -> Option<&str> {
    let start = header.find("<stream:stream")?;
    let tag = &header[start..];
    let tag = &tag[..tag.find('>')?];
    for quote in ['\'', '"'] {
        let needle = format!(" id={quote}");
        if let Some(i) = tag.find(&needle) {
            let value = &tag[i + needle.len()..];
            return value.find(quote).map(|end| &value[..end]);
        }
    }
    None
}

/// Connects to the component port on 127.0.0.1 and logs in as `domain`
/// with `secret`; returns the stream, ready for stanzas in
/// `jabber:component:accept`. Fails with what the server said when it
/// refuses, or after `within`.
pub async fn connect(
    port: u16,
    domain: &str,
    secret: &str,
    within: Duration,
) -> anyhow::Result<TcpStream> {
    let deadline = Instant::now() + within;
    tokio::time::timeout_at(deadline, async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream.set_nodelay(true)?;
        stream
            .write_all(
                format!(
                    "<stream:stream xmlns='jabber:component:accept' \
                     xmlns:stream='http://etherx.jabber.org/streams' to='{domain}'>"
                )
                .as_bytes(),
            )
            .await?;
        let mut seen = String::new();
        let mut buf = [0u8; 4096];
        let id = loop {
            if let Some(id) = stream_id(&seen) {
                break id.to_owned();
            }
            let n = stream.read(&mut buf).await?;
            anyhow::ensure!(n > 0, "the server closed the stream: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        };
        stream
            .write_all(
                format!("<handshake>{}</handshake>", handshake_digest(&id, secret)).as_bytes(),
            )
            .await?;
        loop {
            if seen.contains("<handshake/>") || seen.contains("<handshake></handshake>") {
                return Ok(stream);
            }
            anyhow::ensure!(
                !seen.contains("stream:error") && !seen.contains("</stream:stream>"),
                "the server refused the component login: {seen}"
            );
            let n = stream.read(&mut buf).await?;
            anyhow::ensure!(n > 0, "the server closed the stream: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
    .await
    .map_err(|_| anyhow::anyhow!("no component login on port {port} within {within:?}"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_is_hex_sha1_of_id_then_secret() {
        // The example of XEP-0114, checked with another SHA-1.
        assert_eq!(
            handshake_digest("3BF96D32", "sizzle"),
            "6065c4478cdb1505436fdd80bef893c8547c208c"
        );
    }

    #[test]
    fn the_stream_id_is_read_with_either_quote() {
        let prosody = "<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' \
            xml:lang='en' id='a5b0-c1' from='gw.localhost' xmlns='jabber:component:accept'>";
        assert_eq!(stream_id(prosody), Some("a5b0-c1"));
        let other =
            r#"<stream:stream from="gw.localhost" id="42" xmlns="jabber:component:accept">"#;
        assert_eq!(stream_id(other), Some("42"));
        assert_eq!(stream_id("<stream:stream from='x'"), None);
    }
}
