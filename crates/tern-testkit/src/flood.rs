//! A wrong-password flood over IMAP, POP3 and SMTP AUTH from many loopback networks, as an
//! attacker rotating source addresses would send it (issue 16). Used by the e2e test that
//! checks the platform stays up and by `cargo xtask bench flood`.
//!
//! Each client binds `127.N.0.1` (N = 1..=networks, distinct /24s, so throttling by network
//! alone cannot stop the flood), speaks the protocol by hand (only what a login needs) and
//! reconnects whenever the server closes the connection.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

/// Longest a flood client waits for one reply before it drops the connection.
const REPLY_WAIT: Duration = Duration::from_secs(10);

/// Where and whom to flood.
#[derive(Debug, Clone)]
pub struct Target {
    /// IMAP port on 127.0.0.1 (plaintext LOGIN allowed).
    pub imap: u16,
    /// POP3 port on 127.0.0.1 (plaintext USER/PASS allowed).
    pub pop3: u16,
    /// SMTP submission port on 127.0.0.1 (plaintext AUTH allowed on loopback).
    pub submission: u16,
    /// The account whose password is guessed.
    pub account: String,
}

impl Target {
    /// `account`'s password guessed on `p`'s IMAP, POP3 and submission ports.
    pub fn of(p: &crate::Platform, account: &str) -> Self {
        Target {
            imap: p.access().imap_port(),
            pop3: p.access().pop3_port(),
            submission: p.smtp().port("submission"),
            account: account.into(),
        }
    }
}

/// Starts what a flood runs against: `builder`'s store nodes with `users`, a queue, SMTP
/// with plain-text AUTH on its loopback submission port, and an access node.
pub async fn platform(
    builder: crate::platform::PlatformBuilder,
    users: &[&str],
) -> anyhow::Result<crate::Platform> {
    builder
        .users(users)
        .queue(&[])
        .smtp(&["--loopback-plaintext-auth"])
        .access(&[])
        .start()
        .await
}

/// What the flood's clients saw.
#[derive(Debug, Default)]
pub struct Tally {
    /// Login attempts answered "wrong password".
    pub refused: AtomicU64,
    /// Login attempts answered "try again later" (throttled or saturated).
    pub later: AtomicU64,
    /// Connections that failed or timed out (then reopened).
    pub broken: AtomicU64,
}

impl Tally {
    /// (refused, later, broken) so far.
    pub fn get(&self) -> (u64, u64, u64) {
        (
            self.refused.load(Ordering::Relaxed),
            self.later.load(Ordering::Relaxed),
            self.broken.load(Ordering::Relaxed),
        )
    }
}

/// A running flood; [`Flood::stop`] ends it.
pub struct Flood {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// What the clients saw.
    pub tally: Arc<Tally>,
}

#[derive(Debug, Clone, Copy)]
enum Protocol {
    Imap,
    Pop3,
    Smtp,
}

impl Flood {
    /// Starts `clients` connections, spread over the three protocols and over `networks`
    /// loopback /24s (127.1.0.1, 127.2.0.1, ...).
    pub fn start(target: Target, clients: usize, networks: u8) -> Flood {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Tally::default());
        let target = Arc::new(target);
        let tasks = (0..clients)
            .map(|i| {
                let protocol = [Protocol::Imap, Protocol::Pop3, Protocol::Smtp][i % 3];
                let source = Ipv4Addr::new(127, 1 + (i % usize::from(networks.max(1))) as u8, 0, 1);
                let (stop, tally, target) = (stop.clone(), tally.clone(), target.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let r = tokio::time::timeout(
                            REPLY_WAIT * 6,
                            client(protocol, source, &target, &tally, &stop),
                        )
                        .await;
                        if !matches!(r, Ok(Ok(()))) {
                            tally.broken.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                })
            })
            .collect();
        Flood { stop, tasks, tally }
    }

    /// Stops every client and waits for them.
    pub async fn stop(self) -> Arc<Tally> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        self.tally
    }
}

async fn connect(source: Ipv4Addr, port: u16) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
    socket
        .connect(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
        .await
}

/// One connection: log in wrongly until the server closes it or the flood stops.
async fn client(
    protocol: Protocol,
    source: Ipv4Addr,
    target: &Target,
    tally: &Tally,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    let port = match protocol {
        Protocol::Imap => target.imap,
        Protocol::Pop3 => target.pop3,
        Protocol::Smtp => target.submission,
    };
    let stream = connect(source, port).await?;
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut line = String::new();
    // Reads one reply line; Ok(false) when the server closed the connection.
    macro_rules! read_line {
        () => {{
            line.clear();
            match tokio::time::timeout(REPLY_WAIT, r.read_line(&mut line)).await {
                Ok(Ok(0)) => false,
                Ok(Ok(_)) => true,
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(std::io::ErrorKind::TimedOut.into()),
            }
        }};
    }
    if !read_line!() {
        return Ok(());
    }
    if let Protocol::Smtp = protocol {
        w.write_all(b"EHLO flood.test\r\n").await?;
        loop {
            if !read_line!() {
                return Ok(());
            }
            if !line.starts_with("250-") {
                break;
            }
        }
    }
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let account = &target.account;
        let verdict: &str = match protocol {
            Protocol::Imap => {
                let tag = format!("f{n}");
                w.write_all(format!("{tag} LOGIN {account} wrong-{n}\r\n").as_bytes())
                    .await?;
                loop {
                    if !read_line!() {
                        return Ok(());
                    }
                    if line.starts_with(&tag) {
                        break;
                    }
                }
                if line.contains("[UNAVAILABLE]") {
                    "later"
                } else {
                    "refused"
                }
            }
            Protocol::Pop3 => {
                w.write_all(format!("USER {account}\r\n").as_bytes())
                    .await?;
                if !read_line!() {
                    return Ok(());
                }
                w.write_all(format!("PASS wrong-{n}\r\n").as_bytes())
                    .await?;
                if !read_line!() {
                    return Ok(());
                }
                if line.contains("[SYS/TEMP]") || line.contains("[IN-USE]") {
                    "later"
                } else {
                    "refused"
                }
            }
            Protocol::Smtp => {
                let plain = base64::engine::general_purpose::STANDARD
                    .encode(format!("\0{account}\0wrong-{n}"));
                w.write_all(format!("AUTH PLAIN {plain}\r\n").as_bytes())
                    .await?;
                if !read_line!() {
                    return Ok(());
                }
                if line.starts_with("454") {
                    "later"
                } else if line.starts_with("421") {
                    return Ok(());
                } else {
                    "refused"
                }
            }
        };
        if verdict == "later" {
            tally.later.fetch_add(1, Ordering::Relaxed);
        } else {
            tally.refused.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// VmRSS of process `pid`, in bytes.
pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS in /proc/{pid}/status"))?;
    Ok(kib * 1024)
}
