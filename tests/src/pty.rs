//! Virtual serial lines: a socat pseudo-terminal pair, one end for the
//! gateway (as it would open /dev/ttyUSB0), the other played by the test.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::time::Instant;

use crate::require_tool;

const WAIT: Duration = Duration::from_secs(10);

/// A socat pty pair; both ends vanish when it is dropped or unplugged.
pub struct PtyPair {
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl PtyPair {
    /// Starts socat and waits until both ends exist.
    pub async fn start() -> anyhow::Result<Self> {
        require_tool("socat", "socat");
        let mut p = Self {
            dir: tempfile::tempdir()?,
            child: None,
        };
        p.plug().await?;
        Ok(p)
    }

    /// The end the gateway opens.
    pub fn dev(&self) -> PathBuf {
        self.dir.path().join("dev")
    }

    fn peer(&self) -> PathBuf {
        self.dir.path().join("peer")
    }

    /// (Re)creates the pair at the same paths, like a USB adapter plugged
    /// back in.
    pub async fn plug(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(self.child.is_none(), "already plugged");
        let link = |p: &Path| format!("pty,raw,echo=0,link={}", p.display());
        self.child = Some(
            Command::new("socat")
                .args([link(&self.dev()), link(&self.peer())])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?,
        );
        let deadline = Instant::now() + WAIT;
        while !(self.dev().exists() && self.peer().exists()) {
            anyhow::ensure!(Instant::now() < deadline, "socat made no ptys in {WAIT:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// Unplugs: socat exits and both ends disappear.
    pub async fn unplug(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let deadline = Instant::now() + WAIT;
        while self.dev().exists() {
            anyhow::ensure!(Instant::now() < deadline, "pty link not removed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// The device speaks: raw bytes onto the line.
    pub fn write(&self, bytes: &[u8]) -> anyhow::Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).open(self.peer())?;
        f.write_all(bytes)?;
        f.flush()?;
        Ok(())
    }

    /// The device listens: lines the gateway sends, trimmed.
    pub async fn lines(&self) -> anyhow::Result<tokio::sync::mpsc::Receiver<String>> {
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .open(self.peer())
            .await?;
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            let mut lines = BufReader::new(file).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                if tx.send(l.trim().to_owned()).await.is_err() {
                    return;
                }
            }
        });
        Ok(rx)
    }
}

impl Drop for PtyPair {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
