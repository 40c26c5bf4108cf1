//! A plain HTTP/1.1 GET over a TcpStream, for the gateway's listeners
//! (`/metrics`, `/healthz`, the dashboard's files; no HTTP client crate for
//! a few requests), and reading
//! samples out of the Prometheus text format.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// An answer: its status code, headers and body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status code (200, 503, ...).
    pub status: u16,
    /// The status line and the headers, as sent.
    pub head: String,
    /// The body, as text.
    pub body: String,
}

/// GETs `path` from 127.0.0.1:`port`, within five seconds.
pub async fn get(port: u16, path: &str) -> anyhow::Result<Answer> {
    tokio::time::timeout(Duration::from_secs(5), async {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
        s.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await?;
        let text = String::from_utf8(raw)?;
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| anyhow::anyhow!("no end of headers in {text:?}"))?;
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("no status in {head:?}"))?;
        anyhow::ensure!(
            !head
                .to_ascii_lowercase()
                .contains("transfer-encoding: chunked"),
            "a chunked answer, which this client does not read: {head}"
        );
        Ok(Answer {
            status,
            head: head.to_owned(),
            body: body.to_owned(),
        })
    })
    .await
    .map_err(|_| anyhow::anyhow!("GET {path} on port {port} took over 5 s"))?
}

/// GETs `path` until `ok` holds of the answer, within `within`; the
/// answer. Fails with the last answer seen.
pub async fn get_until(
    port: u16,
    path: &str,
    within: Duration,
    ok: impl Fn(&Answer) -> bool,
) -> anyhow::Result<Answer> {
    let deadline = Instant::now() + within;
    loop {
        let answer = get(port, path).await;
        match &answer {
            Ok(a) if ok(a) => return Ok(a.clone()),
            _ if Instant::now() >= deadline => {
                anyhow::bail!("GET {path}: not as expected within {within:?}; last: {answer:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// The sum of the samples of `name` whose labels include every pair of
/// `labels` (0 when there is none).
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let (set, value) = match rest.strip_prefix('{') {
                Some(r) => r.split_once("} ")?,
                None => ("", rest.strip_prefix(' ')?),
            };
            let all = labels
                .iter()
                .all(|(k, v)| set.split(',').any(|p| p == format!("{k}=\"{v}\"")));
            all.then(|| value.trim().parse::<f64>().ok()).flatten()
        })
        .sum()
}
