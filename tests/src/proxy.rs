//! A TCP proxy between the gateway and its server's component port, so
//! that a test can take the gateway's link down while the server, and the
//! users connected to it, stay up.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::free_port;
use crate::server::ComponentServer;

/// Listens on a free loopback port and forwards each connection to the
/// server's component port.
pub struct ComponentProxy {
    port: u16,
    target: u16,
    secret: String,
    /// Tells the links to cut.
    cut: watch::Sender<bool>,
    accept: Mutex<Option<JoinHandle<()>>>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl ComponentProxy {
    /// Starts forwarding to `server`'s component port.
    pub async fn start(server: &impl ComponentServer) -> anyhow::Result<Self> {
        let (cut, _) = watch::channel(false);
        let proxy = Self {
            port: free_port(),
            target: server.component_port(),
            secret: server.secret().to_owned(),
            cut,
            accept: Mutex::new(None),
            links: Arc::new(Mutex::new(Vec::new())),
        };
        proxy.listen().await?;
        Ok(proxy)
    }

    async fn listen(&self) -> anyhow::Result<()> {
        let addr = ("127.0.0.1", self.port);
        // The port was ours a moment ago (or until the last cut).
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(addr).await {
                Ok(l) => break l,
                Err(e) if Instant::now() >= deadline => {
                    anyhow::bail!("cannot listen on 127.0.0.1:{} again: {e}", self.port)
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        self.cut.send_replace(false);
        let (target, links, cut) = (self.target, self.links.clone(), self.cut.clone());
        *self.accept.lock().await = Some(tokio::spawn(async move {
            while let Ok((gateway, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else {
                    continue;
                };
                links
                    .lock()
                    .await
                    .push(tokio::spawn(link(gateway, server, cut.subscribe())));
            }
        }));
        Ok(())
    }

    /// Takes the link down the way a server going away does, but without
    /// losing anything in flight: the gateway sees its connection closed,
    /// everything it had sent still reaches the server, and from now on
    /// nothing listens (its reconnects are refused) until [`Self::restore`].
    /// Returns once the gateway has closed its side.
    pub async fn cut(&self) -> anyhow::Result<()> {
        if let Some(accept) = self.accept.lock().await.take() {
            accept.abort();
            let _ = accept.await;
        }
        self.cut.send_replace(true);
        let links: Vec<JoinHandle<()>> = std::mem::take(&mut *self.links.lock().await);
        for l in links {
            tokio::time::timeout(Duration::from_secs(10), l)
                .await
                .map_err(|_| anyhow::anyhow!("the gateway kept its link open 10 s after the cut"))?
                .map_err(|e| anyhow::anyhow!("proxy link failed: {e}"))?;
        }
        Ok(())
    }

    /// Listens again: the gateway's next reconnect gets through.
    pub async fn restore(&self) -> anyhow::Result<()> {
        self.listen().await
    }
}

impl ComponentServer for ComponentProxy {
    fn component_port(&self) -> u16 {
        self.port
    }
    fn secret(&self) -> &str {
        &self.secret
    }
    fn server_log(&self) -> String {
        "(the server behind the proxy logs elsewhere)".to_owned()
    }
}

impl Drop for ComponentProxy {
    fn drop(&mut self) {
        if let Ok(mut accept) = self.accept.try_lock()
            && let Some(a) = accept.take()
        {
            a.abort();
        }
        if let Ok(mut links) = self.links.try_lock() {
            for l in links.drain(..) {
                l.abort();
            }
        }
    }
}

/// Forwards both ways. On a cut: the gateway's side is closed for
/// writing (it reads the end of the stream), what the server sends
/// afterwards is dropped, and what the gateway still sends is forwarded
/// until it closes; then the server's side is closed.
async fn link(gateway: TcpStream, server: TcpStream, mut cut: watch::Receiver<bool>) {
    let _ = gateway.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut from_gateway, mut to_gateway) = gateway.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let upstream = async move {
        let mut buf = vec![0u8; 16384];
        loop {
            match from_gateway.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to_server.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to_server.shutdown().await;
    };
    let downstream = async move {
        let mut buf = vec![0u8; 16384];
        let cut = async move {
            let _ = cut.wait_for(|c| *c).await.is_ok();
        };
        tokio::pin!(cut);
        loop {
            tokio::select! {
                read = from_server.read(&mut buf) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if to_gateway.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                },
                () = &mut cut => break,
            }
        }
        let _ = to_gateway.shutdown().await;
    };
    tokio::join!(upstream, downstream);
}
