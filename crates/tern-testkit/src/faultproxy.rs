//! A fault-injecting TCP proxy on loopback: what the tests put on a store node's advertised
//! address to cut it off from its peers without touching the process (the kernel here has no
//! netem, and tests bind only to loopback).
//!
//! Every connection to the proxy is forwarded to the target. [`Mode::Blackhole`] is a
//! partition as the network makes one: bytes stop flowing both ways on open connections
//! and new ones are accepted but never forwarded, so peers see time-outs, not resets.
//! [`Mode::Reset`] closes every connection and refuses new ones at once.
//!
//! [`FaultProxy::block_from`] cuts only the connections that given processes opened: every
//! node reaches a peer through that peer's proxy, so blocking node A's process at node B's
//! proxy cuts A→B (A's requests to B, and B's answers to them) while B→A, through A's proxy,
//! still flows. That is how a test makes one-way cuts, majority/minority splits and bridges
//! with one proxy per node. The proxy finds which process opened a connection the way `ss
//! -p` does: the client socket's inode from `/proc/net/tcp`, then the inode among the
//! blocked processes' file descriptors (Linux only, loopback IPv4 only, as the tests are).
//!
//! [`FaultProxy::set_delay`] adds latency: every chunk is forwarded that long after it
//! arrived, without holding back the chunks behind it (a slow link, not a slow reader).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

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
    blocked: watch::Sender<Arc<Vec<u32>>>,
    delay: watch::Sender<Duration>,
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
        let (blocked, blocked_rx) = watch::channel(Arc::new(Vec::new()));
        let (delay, delay_rx) = watch::channel(Duration::ZERO);
        let links = Links {
            mode: mode_rx,
            target: target_rx,
            blocked: blocked_rx,
            delay: delay_rx,
        };
        let task = tokio::spawn(accept(listener, links));
        Ok(Self {
            addr,
            mode,
            target,
            blocked,
            delay,
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

    /// Blackholes the connections these processes open (open ones too) while the mode is
    /// Pass; an empty list lets every process through again.
    pub fn block_from(&self, pids: &[u32]) {
        self.blocked.send_replace(Arc::new(pids.to_vec()));
    }

    /// Forwards every chunk `delay` after it arrived, on open connections too
    /// (`Duration::ZERO` for none).
    pub fn set_delay(&self, delay: Duration) {
        self.delay.send_replace(delay);
    }
}

/// What the accept loop watches.
struct Links {
    mode: watch::Receiver<Mode>,
    target: watch::Receiver<Option<SocketAddr>>,
    blocked: watch::Receiver<Arc<Vec<u32>>>,
    delay: watch::Receiver<Duration>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept(listener: TcpListener, links: Links) {
    let Links {
        mode,
        target,
        blocked,
        delay,
    } = links;
    let mut tasks = tokio::task::JoinSet::new();
    let Ok(own) = listener.local_addr() else {
        return;
    };
    loop {
        let Ok((client, peer)) = listener.accept().await else {
            continue;
        };
        // Reap finished connection tasks so the set stays small.
        while tasks.try_join_next().is_some() {}
        if *mode.borrow() == Mode::Reset {
            drop(client);
            continue;
        }
        let (mode, blocked, target) = (mode.clone(), blocked.clone(), *target.borrow());
        let delay = delay.clone();
        tasks.spawn(async move {
            let Some(target) = target else { return };
            // The client socket is the one whose local end is `peer` and remote end `own`.
            let inode = socket_inode(peer, own);
            let first = effective_mode(*mode.borrow(), inode, &blocked.borrow());
            let (effective, rx) = watch::channel(first);
            let judge = tokio::spawn(judge(inode, mode, blocked, effective));
            if let Ok(server) = TcpStream::connect(target).await {
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                forward(client, server, rx, delay).await;
            }
            judge.abort();
        });
    }
}

/// Keeps `effective` at what one connection gets: the proxy's mode, or Blackhole while the
/// process that opened it (the owner of socket `inode`) is blocked.
async fn judge(
    inode: Option<u64>,
    mut mode: watch::Receiver<Mode>,
    mut blocked: watch::Receiver<Arc<Vec<u32>>>,
    effective: watch::Sender<Mode>,
) {
    loop {
        let m = *mode.borrow_and_update();
        let pids = blocked.borrow_and_update().clone();
        let e = effective_mode(m, inode, &pids);
        effective.send_if_modified(|old| std::mem::replace(old, e) != e);
        tokio::select! {
            r = mode.changed() => if r.is_err() { return },
            r = blocked.changed() => if r.is_err() { return },
            _ = effective.closed() => return,
        }
    }
}

/// What a connection from the owner of socket `inode` gets under `mode` with `blocked`
/// processes.
fn effective_mode(mode: Mode, inode: Option<u64>, blocked: &[u32]) -> Mode {
    match (mode, inode) {
        (Mode::Pass, Some(inode)) if blocked.iter().any(|&p| owns_socket(p, inode)) => {
            Mode::Blackhole
        }
        (m, _) => m,
    }
}

/// The inode of the IPv4 TCP socket with this local and remote address, from
/// `/proc/net/tcp` (addresses there are hex, the IPv4 address in host byte order).
fn socket_inode(local: SocketAddr, remote: SocketAddr) -> Option<u64> {
    let hex = |a: SocketAddr| match a.ip() {
        IpAddr::V4(ip) => Some(format!(
            "{:08X}:{:04X}",
            u32::from_ne_bytes(ip.octets()),
            a.port()
        )),
        IpAddr::V6(_) => None,
    };
    let (l, r) = (hex(local)?, hex(remote)?);
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.len() > 9 && f[1] == l && f[2] == r)
            .then(|| f[9].parse().ok())
            .flatten()
    })
}

/// Whether process `pid` holds socket `inode` among its file descriptors.
fn owns_socket(pid: u32, inode: u64) -> bool {
    let wanted = format!("socket:[{inode}]");
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten()
        .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == wanted.as_str()))
}

/// Copies both ways while the mode is Pass; holds still while Blackhole; returns (closing
/// both sides) on Reset or when either side closes.
async fn forward(
    client: TcpStream,
    server: TcpStream,
    mode: watch::Receiver<Mode>,
    delay: watch::Receiver<Duration>,
) {
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let mut up = tokio::spawn(pump(cr, sw, mode.clone(), delay.clone()));
    let mut down = tokio::spawn(pump(sr, cw, mode, delay));
    // Either direction ending ends the connection (dropping the halves closes both sides).
    tokio::select! {
        _ = &mut up => {}
        _ = &mut down => {}
    }
    up.abort();
    down.abort();
}

/// Chunks in flight on a delayed link; reading stops while this many wait.
const IN_FLIGHT: usize = 256;

/// Reads from one side and hands each chunk, with the time it is due, to [`deliver`].
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    to: tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
    delay: watch::Receiver<Duration>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(IN_FLIGHT);
    let mut writer = tokio::spawn(deliver(rx, to));
    tokio::select! {
        _ = read_side(&mut from, &mut mode, &delay, tx) => {}
        _ = &mut writer => {}
    }
    writer.abort();
}

/// Writes each chunk once it is due; ends when the reader does or the write fails.
async fn deliver(
    mut rx: tokio::sync::mpsc::Receiver<(tokio::time::Instant, Vec<u8>)>,
    mut to: tokio::net::tcp::OwnedWriteHalf,
) {
    while let Some((due, chunk)) = rx.recv().await {
        tokio::time::sleep_until(due).await;
        if to.write_all(&chunk).await.is_err() {
            return;
        }
    }
}

async fn read_side(
    from: &mut tokio::net::tcp::OwnedReadHalf,
    mode: &mut watch::Receiver<Mode>,
    delay: &watch::Receiver<Duration>,
    to: tokio::sync::mpsc::Sender<(tokio::time::Instant, Vec<u8>)>,
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
                let due = tokio::time::Instant::now() + *delay.borrow();
                if to.send((due, buf[..n].to_vec())).await.is_err() {
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

    /// A connection this process opened is cut while this process is blocked (open ones
    /// and new ones alike), and flows again when it is not; blocking another process
    /// changes nothing for it.
    #[tokio::test]
    async fn blocks_the_connections_a_process_opened() {
        let proxy = FaultProxy::start().await.unwrap();
        proxy.set_target(echo().await);
        let mut open = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(roundtrip(&mut open).await.as_deref(), Some(&b"ping"[..]));
        let me = std::process::id();
        proxy.block_from(&[me + 1_000_000]);
        assert_eq!(roundtrip(&mut open).await.as_deref(), Some(&b"ping"[..]));
        proxy.block_from(&[me]);
        assert_eq!(
            roundtrip(&mut open).await,
            None,
            "an open connection is cut"
        );
        let mut fresh = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(roundtrip(&mut fresh).await, None, "so is a new one");
        proxy.block_from(&[]);
        let mut again = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(roundtrip(&mut again).await.as_deref(), Some(&b"ping"[..]));
    }

    /// A delayed link forwards everything, each way that much later, and is fast again when
    /// the delay is taken away.
    #[tokio::test]
    async fn delays_both_ways() {
        let proxy = FaultProxy::start().await.unwrap();
        proxy.set_target(echo().await);
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(roundtrip(&mut s).await.as_deref(), Some(&b"ping"[..]));
        proxy.set_delay(Duration::from_millis(120));
        let t = std::time::Instant::now();
        s.write_all(b"ping").await.unwrap();
        let mut b = [0u8; 4];
        s.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"ping");
        assert!(
            t.elapsed() >= Duration::from_millis(240),
            "{:?}",
            t.elapsed()
        );
        proxy.set_delay(Duration::ZERO);
        let t = std::time::Instant::now();
        assert_eq!(roundtrip(&mut s).await.as_deref(), Some(&b"ping"[..]));
        assert!(
            t.elapsed() < Duration::from_millis(200),
            "{:?}",
            t.elapsed()
        );
    }
}
