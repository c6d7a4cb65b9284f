//! Test support: real `tern-store` (and `tern-access`, [`access`]) processes on loopback, on ports the OS assigns, cleaned
//! up when the [`StoreCluster`] is dropped.
//!
//! Used by the services' integration tests and by the `tern-*-bench` load generators.
//! Dependencies: `tern-net` for the development TLS certificate, `tokio`
//! and `tonic` to talk to the nodes, `tempfile` for data directories, `libc` to send
//! SIGKILL/SIGTERM the way an operator's `kill` would.

pub mod access;
/// A tiny authoritative DNS server on loopback, so MX routing is tested without the real DNS.
pub mod dns;

pub mod platform;
/// Real tern-queue processes.
pub mod queue;
/// Running any Tern service binary as a child process.
pub mod service;
/// Real tern-smtp processes.
pub mod smtp;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tern_proto::store::v1 as pb;
use tern_proto::store::v1::{
    admin_client::AdminClient, directory_client::DirectoryClient,
    mailboxes_client::MailboxesClient, messages_client::MessagesClient,
};
use tonic::transport::Channel;

/// One tern-store process.
pub struct StoreNode {
    /// Raft id.
    pub id: u64,
    /// gRPC address (kept across restarts).
    pub addr: String,
    /// Metrics/health address of the current process.
    pub metrics: String,
    data_dir: PathBuf,
    child: Option<Child>,
}

/// A cluster of tern-store processes.
pub struct StoreCluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    extra_args: Vec<String>,
    /// The nodes, index 0 = id 1.
    pub nodes: Vec<StoreNode>,
}

impl StoreCluster {
    /// Starts `n` nodes and initializes them as one cluster; waits for a leader.
    pub async fn start(bin: &Path, n: usize, extra_args: &[&str]) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("tern-cluster-").tempdir()?;
        let mut cluster = StoreCluster {
            bin: bin.to_path_buf(),
            dir,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            nodes: Vec::new(),
        };
        for id in 1..=n as u64 {
            let data_dir = cluster.dir.path().join(format!("node-{id}"));
            let node = StoreNode {
                id,
                addr: "127.0.0.1:0".into(),
                metrics: String::new(),
                data_dir,
                child: None,
            };
            cluster.nodes.push(node);
            cluster.spawn(id as usize - 1).await?;
        }
        let members = cluster
            .nodes
            .iter()
            .map(|n| pb::Member {
                id: n.id,
                addr: n.addr.clone(),
                ..Default::default()
            })
            .collect();
        let mut admin = cluster.admin(0).await?;
        admin
            .init(pb::InitClusterRequest { members })
            .await
            .context("initializing the cluster")?;
        cluster.wait_leader(Duration::from_secs(30)).await?;
        Ok(cluster)
    }

    /// Starts one more process (id = number of nodes + 1) that is not part of the cluster
    /// yet: an operator adds it with `AddNode`. Returns its index.
    pub async fn add_process(&mut self) -> anyhow::Result<usize> {
        let id = self.nodes.len() as u64 + 1;
        let data_dir = self.dir.path().join(format!("node-{id}"));
        self.nodes.push(StoreNode {
            id,
            addr: "127.0.0.1:0".into(),
            metrics: String::new(),
            data_dir,
            child: None,
        });
        let i = self.nodes.len() - 1;
        self.spawn(i).await?;
        Ok(i)
    }

    /// Starts `n` nodes that bootstrap themselves from `--initial-members` (as `cargo xtask up`
    /// and a StatefulSet do) instead of an `Init` call. The ports are picked by the OS (bind
    /// to port 0, note the port, release it) before the nodes start.
    pub async fn start_bootstrapped(
        bin: &Path,
        n: usize,
        extra_args: &[&str],
    ) -> anyhow::Result<Self> {
        let mut addrs = Vec::new();
        for _ in 0..n {
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            addrs.push(l.local_addr()?.to_string());
        }
        let spec = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| format!("{}={a}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let dir = tempfile::Builder::new().prefix("tern-cluster-").tempdir()?;
        let mut args: Vec<String> = extra_args.iter().map(|s| s.to_string()).collect();
        args.extend(["--initial-members".to_string(), spec]);
        let mut cluster = StoreCluster {
            bin: bin.to_path_buf(),
            dir,
            extra_args: args,
            nodes: Vec::new(),
        };
        for (i, addr) in addrs.into_iter().enumerate() {
            let id = i as u64 + 1;
            let data_dir = cluster.dir.path().join(format!("node-{id}"));
            cluster.nodes.push(StoreNode {
                id,
                addr,
                metrics: String::new(),
                data_dir,
                child: None,
            });
            cluster.spawn(i).await?;
        }
        cluster.wait_leader(Duration::from_secs(30)).await?;
        Ok(cluster)
    }

    /// Starts (or restarts) node `i` on its address, and waits until it answers.
    pub async fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let node = &mut self.nodes[i];
        std::fs::create_dir_all(&node.data_dir)?;
        let addr_file = node.data_dir.join("addr");
        let _ = std::fs::remove_file(&addr_file);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.data_dir.join("log"))?;
        let child = Command::new(&self.bin)
            .arg("--id")
            .arg(node.id.to_string())
            .arg("--listen")
            .arg(&node.addr)
            .arg("--data-dir")
            .arg(&node.data_dir)
            .arg("--metrics-listen")
            .arg("127.0.0.1:0")
            .arg("--addr-file")
            .arg(&addr_file)
            .args(&self.extra_args)
            .env(
                "RUST_LOG",
                std::env::var("TERN_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        node.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(text) = std::fs::read_to_string(&addr_file) {
                for line in text.lines() {
                    if let Some(a) = line.strip_prefix("grpc=") {
                        node.addr = a.to_string();
                    }
                    if let Some(a) = line.strip_prefix("metrics=") {
                        node.metrics = a.to_string();
                    }
                }
                break;
            }
            if let Some(status) = node
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "node {} exited at start ({status}); log: {}",
                    node.id,
                    tail(&node.data_dir.join("log"))
                );
            }
            if Instant::now() > deadline {
                bail!("node {} did not start within 30 s", node.id);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// SIGKILLs node `i` (no chance to flush anything: the crash case).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERMs node `i` and waits for it to exit (the clean-stop case).
    pub fn stop(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            // SAFETY: sending a signal to our own child process id.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if c.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The data directory of node `i` (RocksDB in `db/`, snapshots in `snapshots/`).
    pub fn data_dir(&self, i: usize) -> &Path {
        &self.nodes[i].data_dir
    }

    /// Whether node `i` is running.
    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].child.is_some()
    }

    /// `http://addr` of node `i`.
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://{}", self.nodes[i].addr)
    }

    /// A channel to node `i`.
    pub async fn channel(&self, i: usize) -> anyhow::Result<Channel> {
        Channel::from_shared(self.endpoint(i))?
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .initial_stream_window_size(tern_proto::client::STREAM_WINDOW)
            .initial_connection_window_size(tern_proto::client::CONNECTION_WINDOW)
            .connect()
            .await
            .with_context(|| format!("connecting to node {}", self.nodes[i].id))
    }

    /// Admin client of node `i`.
    pub async fn admin(&self, i: usize) -> anyhow::Result<AdminClient<Channel>> {
        Ok(AdminClient::new(self.channel(i).await?))
    }

    /// Directory client of node `i`.
    pub async fn directory(&self, i: usize) -> anyhow::Result<DirectoryClient<Channel>> {
        Ok(DirectoryClient::new(self.channel(i).await?))
    }

    /// Mailboxes client of node `i`.
    pub async fn mailboxes(&self, i: usize) -> anyhow::Result<MailboxesClient<Channel>> {
        Ok(MailboxesClient::new(self.channel(i).await?))
    }

    /// Messages client of node `i`.
    pub async fn messages(&self, i: usize) -> anyhow::Result<MessagesClient<Channel>> {
        Ok(MessagesClient::new(self.channel(i).await?))
    }

    /// Waits until a running node reports a leader that is running; returns its index.
    pub async fn wait_leader(&self, timeout: Duration) -> anyhow::Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            for i in 0..self.nodes.len() {
                if !self.is_running(i) {
                    continue;
                }
                if let Ok(mut admin) = self.admin(i).await {
                    if let Ok(s) = admin.status(pb::ClusterStatusRequest {}).await {
                        let s = s.into_inner();
                        if let Some(li) = self.nodes.iter().position(|n| n.id == s.leader_id) {
                            if self.is_running(li) {
                                return Ok(li);
                            }
                        }
                    }
                }
            }
            if Instant::now() > deadline {
                bail!("no leader within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until node `i` has applied at least `index`.
    pub async fn wait_applied(
        &self,
        i: usize,
        index: u64,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(mut admin) = self.admin(i).await {
                if let Ok(s) = admin.status(pb::ClusterStatusRequest {}).await {
                    if s.into_inner().last_applied >= index {
                        return Ok(());
                    }
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "node {} did not apply index {index} within {timeout:?}",
                    self.nodes[i].id
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Cluster status as node `i` sees it.
    pub async fn status(&self, i: usize) -> anyhow::Result<pb::ClusterStatusResponse> {
        Ok(self
            .admin(i)
            .await?
            .status(pb::ClusterStatusRequest {})
            .await?
            .into_inner())
    }

    /// The last lines of node `i`'s log (for failure messages).
    pub fn log_tail(&self, i: usize) -> String {
        tail(&self.nodes[i].data_dir.join("log"))
    }

    /// The data directory of the cluster.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for StoreCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Appends `body` to `account`'s `mailbox` through `client`, in 1 MiB chunks.
pub async fn append(
    client: &mut MessagesClient<Channel>,
    account: &str,
    mailbox: &str,
    body: &[u8],
    delivery_id: &str,
) -> Result<pb::AppendResponse, tonic::Status> {
    let header = pb::AppendHeader {
        account: account.into(),
        mailbox: mailbox.into(),
        flags: vec![],
        internal_date: 0,
        delivery_id: delivery_id.into(),
        size: body.len() as u64,
    };
    let mut msgs = vec![pb::AppendRequest {
        header: Some(header),
        chunk: vec![],
    }];
    for c in body.chunks(1 << 20) {
        msgs.push(pb::AppendRequest {
            header: None,
            chunk: c.to_vec(),
        });
    }
    client
        .append(futures::stream::iter(msgs))
        .await
        .map(|r| r.into_inner())
}

/// Every message record of a mailbox (and the mailbox's status).
pub async fn list_all(
    client: &mut MessagesClient<Channel>,
    account: &str,
    mailbox: &str,
) -> Result<pb::ListMessagesResponse, tonic::Status> {
    let req = pb::ListMessagesRequest {
        account: account.into(),
        mailbox: mailbox.into(),
        uids: None,
        changed_since: 0,
    };
    client.list(req).await.map(|r| r.into_inner())
}

/// Reads a whole message back.
pub async fn fetch(
    client: &mut MessagesClient<Channel>,
    account: &str,
    mailbox: &str,
    uid: u32,
) -> Result<Vec<u8>, tonic::Status> {
    use futures::StreamExt;
    let mut stream = client
        .fetch(pb::FetchRequest {
            account: account.into(),
            mailbox: mailbox.into(),
            uid,
            offset: 0,
            length: 0,
            uid_validity: 0,
        })
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?.data);
    }
    Ok(out)
}

/// Creates `example.test` with the given users (password "pw-<name>").
pub async fn seed_users(cluster: &StoreCluster, node: usize, users: &[&str]) -> anyhow::Result<()> {
    let mut dir = cluster.directory(node).await?;
    dir.add_domain(pb::AddDomainRequest {
        name: "example.test".into(),
    })
    .await?;
    for u in users {
        dir.add_user(pb::AddUserRequest {
            address: format!("{u}@example.test"),
            password: format!("pw-{u}"),
            quota_bytes: 0,
        })
        .await?;
    }
    Ok(())
}
