//! Shared by the delivery tests: a scripted SMTP peer on loopback (the remote MX), and a
//! platform with helpers to enqueue and read back.
#![allow(dead_code)] // each test file uses part of it

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tern_proto::queue::v1 as qpb;
use tern_proto::queue::v1::queue_client::QueueClient as EnqueueClient;
use tern_proto::store::v1 as pb;
use tern_proto::store::v1::queue_client::QueueClient as StoreQueueClient;
use tern_testkit::dns::{DnsServer, Zone};
use tern_testkit::{list_all, Platform};
use tern_trust::Role;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

// ------------------------------------------------------------------ a scripted SMTP peer

/// How the peer answers.
#[derive(Clone, Default)]
pub struct Script {
    /// RCPT gets 451 in this many transactions first.
    pub temp_fail_transactions: usize,
    /// These recipients get 550 5.1.1.
    pub reject: Vec<String>,
    /// Wait this long before answering the final dot.
    pub data_delay: Duration,
    /// Wait this long before answering each RCPT.
    pub rcpt_delay: Duration,
}

/// One transaction the peer accepted (250 to the final dot).
#[derive(Clone, Debug)]
pub struct Received {
    #[allow(dead_code)] // kept for failure messages (Debug)
    pub from: String,
    pub rcpts: Vec<String>,
    pub data: Vec<u8>,
}

#[derive(Default)]
pub struct PeerState {
    pub connections: usize,
    /// RCPT commands read (answered or not yet).
    pub rcpts_seen: usize,
    pub transactions: Vec<Instant>,
    pub received: Vec<Received>,
}

/// A loopback SMTP server that counts connections and follows a script.
pub struct Peer {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<PeerState>>,
    pub task: tokio::task::JoinHandle<()>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Peer {
    pub async fn start(script: Script) -> anyhow::Result<Peer> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(PeerState::default()));
        let st = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                st.lock().unwrap().connections += 1;
                tokio::spawn(serve(sock, st.clone(), script.clone()));
            }
        });
        Ok(Peer { addr, state, task })
    }

    pub fn connections(&self) -> usize {
        self.state.lock().unwrap().connections
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    pub fn transaction_times(&self) -> Vec<Instant> {
        self.state.lock().unwrap().transactions.clone()
    }
}

pub async fn serve(sock: tokio::net::TcpStream, state: Arc<Mutex<PeerState>>, script: Script) {
    let (r, mut w) = sock.into_split();
    let mut r = BufReader::new(r);
    let _ = w.write_all(b"220 peer.example ESMTP\r\n").await;
    let (mut from, mut rcpts) = (String::new(), Vec::<String>::new());
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let cmd = line.trim_end().to_string();
        let upper = cmd.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO") {
            "250-peer.example\r\n250-PIPELINING\r\n250-SIZE 50000000\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n".into()
        } else if upper.starts_with("MAIL FROM:") {
            from = cmd[10..]
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_string();
            rcpts.clear();
            "250 2.1.0 ok\r\n".into()
        } else if upper.starts_with("RCPT TO:") {
            state.lock().unwrap().rcpts_seen += 1;
            tokio::time::sleep(script.rcpt_delay).await;
            let addr = cmd[8..]
                .split_whitespace()
                .next()
                .unwrap_or("")
                .trim_matches(['<', '>'])
                .to_string();
            let n = state.lock().unwrap().transactions.len();
            if n < script.temp_fail_transactions {
                "451 4.3.0 try again later\r\n".into()
            } else if script.reject.contains(&addr) {
                format!("550 5.1.1 <{addr}>: no such user\r\n")
            } else {
                rcpts.push(addr);
                "250 2.1.5 ok\r\n".into()
            }
        } else if upper == "DATA" {
            state.lock().unwrap().transactions.push(Instant::now());
            if rcpts.is_empty() {
                "554 5.5.1 no valid recipients\r\n".into()
            } else {
                let _ = w.write_all(b"354 go ahead\r\n").await;
                let mut data = Vec::new();
                loop {
                    let mut l = Vec::new();
                    if r.read_until(b'\n', &mut l).await.unwrap_or(0) == 0 {
                        return;
                    }
                    if l == b".\r\n" {
                        break;
                    }
                    data.extend_from_slice(l.strip_prefix(b".").unwrap_or(&l));
                }
                tokio::time::sleep(script.data_delay).await;
                state.lock().unwrap().received.push(Received {
                    from: from.clone(),
                    rcpts: std::mem::take(&mut rcpts),
                    data,
                });
                "250 2.0.0 queued\r\n".into()
            }
        } else if upper == "RSET" || upper == "NOOP" {
            rcpts.clear();
            "250 2.0.0 ok\r\n".into()
        } else if upper == "QUIT" {
            let _ = w.write_all(b"221 2.0.0 bye\r\n").await;
            return;
        } else {
            "502 5.5.2 not implemented\r\n".into()
        };
        if w.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

// ------------------------------------------------------------------ the platform

/// `nodes` store nodes, users alice, bob and carol, and a queue node with `queue_args`.
pub async fn platform(nodes: usize, queue_args: &[&str]) -> anyhow::Result<Platform> {
    Platform::builder()
        .stores(nodes)
        .users(&["alice", "bob", "carol"])
        .queue(queue_args)
        .start()
        .await
}

/// [`platform`] whose store nodes deliver nothing at acceptance: every message goes through a
/// delivery worker, for the tests of the worker's own local delivery.
pub async fn worker_platform(nodes: usize, queue_args: &[&str]) -> anyhow::Result<Platform> {
    Platform::builder()
        .stores(nodes)
        .deliver_on_accept(false)
        .users(&["alice", "bob", "carol"])
        .queue(queue_args)
        .start()
        .await
}

pub async fn enqueue(p: &Platform, from: &str, to: &[&str], body: &[u8]) -> anyhow::Result<String> {
    enqueue_at(p.queue_channel().await?, from, to, body).await
}

/// [`enqueue`] as tern-smtp does for a client that authenticated as `submitter`.
pub async fn enqueue_as(
    p: &Platform,
    submitter: &str,
    from: &str,
    to: &[&str],
    body: &[u8],
) -> anyhow::Result<String> {
    let envelope = qpb::Envelope {
        submitter: submitter.into(),
        ..envelope(from, to, body.len())
    };
    enqueue_whole(p.queue_channel().await?, envelope, body).await
}

/// The envelope tern-smtp sends for a client that did not authenticate.
pub fn envelope(from: &str, to: &[&str], size: usize) -> qpb::Envelope {
    qpb::Envelope {
        sender: from.into(),
        recipients: to
            .iter()
            .map(|a| qpb::Recipient {
                address: a.to_string(),
                ..Default::default()
            })
            .collect(),
        received_from: "test".into(),
        size: size as u64,
        ..Default::default()
    }
}

pub async fn inbox(
    p: &Platform,
    node: usize,
    user: &str,
) -> anyhow::Result<Vec<pb::MessageRecord>> {
    let account = format!("{user}@example.test");
    let mut m = p.cluster.messages(node, &account).await?;
    Ok(list_all(&mut m, &account, "INBOX").await?.messages)
}

pub async fn queue_entries(p: &Platform, node: usize) -> anyhow::Result<Vec<pb::QueueEntry>> {
    let mut q = StoreQueueClient::new(p.cluster.channel(node, Role::Admin).await?);
    Ok(q.list(pb::ListQueueRequest { limit: 1000 })
        .await?
        .into_inner()
        .entries)
}

/// Waits until the store's queue is empty.
pub async fn drained(p: &Platform, node: usize, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let entries = queue_entries(p, node).await.unwrap_or_default();
        if entries.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "queue not drained: {entries:#?}\nqueue log:\n{}",
                p.queue().log_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn enqueue_at(
    channel: tonic::transport::Channel,
    from: &str,
    to: &[&str],
    body: &[u8],
) -> anyhow::Result<String> {
    enqueue_whole(channel, envelope(from, to, body.len()), body).await
}

/// Enqueues `body` in one request; returns the queue id.
pub async fn enqueue_whole(
    channel: tonic::transport::Channel,
    envelope: qpb::Envelope,
    body: &[u8],
) -> anyhow::Result<String> {
    let req = qpb::EnqueueRequest {
        envelope: Some(envelope),
        chunk: body.to_vec().into(),
        last: true,
    };
    Ok(EnqueueClient::new(channel)
        .enqueue(futures::stream::iter(vec![req]))
        .await?
        .into_inner()
        .queue_id)
}

pub fn message(n: usize) -> Vec<u8> {
    format!(
        "From: alice@example.test\r\nTo: someone\r\nSubject: test {n}\r\nMessage-ID: <m{n}@example.test>\r\n\r\nbody {n}\r\n.leading dot\r\n"
    )
    .into_bytes()
}

/// A zone where remote.example's first MX refuses connections and the second accepts.
pub async fn dns_for(peer: &Peer) -> anyhow::Result<DnsServer> {
    let _ = peer;
    let zone = Zone::new()
        .mx("remote.example", 10, "mx1.remote.example")
        .mx("remote.example", 20, "mx2.remote.example")
        .a("mx1.remote.example", "127.0.0.2".parse()?)
        .a("mx2.remote.example", "127.0.0.1".parse()?);
    Ok(DnsServer::start(zone).await?)
}

pub fn remote_args(dns: &DnsServer, peer: &Peer) -> Vec<String> {
    vec![
        "--dns-servers".into(),
        dns.addr.to_string(),
        "--remote-port".into(),
        peer.addr.port().to_string(),
    ]
}

/// A one-node platform whose remote mail goes to a peer that refuses `rejected` (and
/// accepts everyone else); the DNS server must live as long as the platform.
pub async fn refusing(rejected: &[&str]) -> anyhow::Result<(Peer, DnsServer, Platform)> {
    let peer = Peer::start(Script {
        reject: rejected.iter().map(|r| r.to_string()).collect(),
        ..Default::default()
    })
    .await?;
    let dns = dns_for(&peer).await?;
    let args = remote_args(&dns, &peer);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let p = platform(1, &args).await?;
    Ok((peer, dns, p))
}
