//! A fault-injecting TCP proxy on loopback: what the tests put on a store node's advertised
//! address to cut it off from its peers without touching the process (the kernel here has no
//! netem, and tests bind only to loopback).
//!
//! Every connection to the proxy is forwarded to the target. [`Mode::Blackhole`] is a
//! partition as the network makes one: bytes stop flowing both ways on open connections
//! and new ones are accepted but never forwarded, so peers see time-outs, not resets.
//! [`Mode::Reset`] closes every connection and refuses new ones at once.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward everything.
    Pass,
    /// Forward nothing; hold connections open and silent.
    Blackhole,
    /// Close every connection, refuse new ones.
    Reset,
}

/// A running proxy; stops when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
    target: watch::Sender<Option<SocketAddr>>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a loopback port the OS picks; forwards nowhere until
    /// [`FaultProxy::set_target`] (so the proxy's address can be handed to a process before
    /// that process has bound its own).
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (mode, mode_rx) = watch::channel(Mode::Pass);
        let (target, target_rx) = watch::channel(None);
        let task = tokio::spawn(accept(listener, mode_rx, target_rx));
        Ok(Self {
            addr,
            mode,
            target,
            task,
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where connections go from now on.
    pub fn set_target(&self, target: SocketAddr) {
        self.target.send_replace(Some(target));
    }

    /// Changes what happens to traffic, on open connections too.
    pub fn set_mode(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept(
    listener: TcpListener,
    mode: watch::Receiver<Mode>,
    target: watch::Receiver<Option<SocketAddr>>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        // Reap finished connection tasks so the set stays small.
        while tasks.try_join_next().is_some() {}
        if *mode.borrow() == Mode::Reset {
            drop(client);
            continue;
        }
        let (mode, target) = (mode.clone(), *target.borrow());
        tasks.spawn(async move {
            let Some(target) = target else { return };
            if let Ok(server) = TcpStream::connect(target).await {
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                forward(client, server, mode).await;
            }
        });
    }
}

/// Copies both ways while the mode is Pass; holds still while Blackhole; returns (closing
/// both sides) on Reset or when either side closes.
async fn forward(client: TcpStream, server: TcpStream, mode: watch::Receiver<Mode>) {
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let mut up = tokio::spawn(pump(cr, sw, mode.clone()));
    let mut down = tokio::spawn(pump(sr, cw, mode));
    // Either direction ending ends the connection (dropping the halves closes both sides).
    tokio::select! {
        _ = &mut up => {}
        _ = &mut down => {}
    }
    up.abort();
    down.abort();
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // Wait while blackholed; stop on reset.
        loop {
            let m = *mode.borrow_and_update();
            match m {
                Mode::Pass => break,
                Mode::Reset => return,
                Mode::Blackhole => {
                    if mode.changed().await.is_err() {
                        return;
                    }
                }
            }
        }
        tokio::select! {
            r = from.read(&mut buf) => {
                let n = match r {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                // Bytes read just as a partition began are lost with it, as on a network.
                if *mode.borrow() != Mode::Pass {
                    continue;
                }
                if to.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
            changed = mode.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn echo() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut b = [0u8; 64];
                    while let Ok(n) = s.read(&mut b).await {
                        if n == 0 || s.write_all(&b[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn roundtrip(s: &mut TcpStream) -> Option<Vec<u8>> {
        s.write_all(b"ping").await.ok()?;
        let mut b = [0u8; 4];
        tokio::time::timeout(Duration::from_millis(300), s.read_exact(&mut b))
            .await
            .ok()?
            .ok()?;
        Some(b.to_vec())
    }

    #[tokio::test]
    async fn passes_blackholes_heals_and_resets() {
        let proxy = FaultProxy::start().await.unwrap();
        proxy.set_target(echo().await);
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(roundtrip(&mut s).await.as_deref(), Some(&b"ping"[..]));
        proxy.set_mode(Mode::Blackhole);
        assert_eq!(
            roundtrip(&mut s).await,
            None,
            "a partition lets nothing through"
        );
        proxy.set_mode(Mode::Pass);
        let mut fresh = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(roundtrip(&mut fresh).await.as_deref(), Some(&b"ping"[..]));
        proxy.set_mode(Mode::Reset);
        let mut b = [0u8; 1];
        let r = tokio::time::timeout(Duration::from_secs(2), fresh.read(&mut b)).await;
        assert!(matches!(r, Ok(Ok(0)) | Ok(Err(_))), "{r:?}");
    }
}
