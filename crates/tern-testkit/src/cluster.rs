//! A cluster of real tern-store processes on loopback, on ports the OS assigns (or picked
//! up front for a bootstrapped cluster), killed when the [`StoreCluster`] is dropped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tern_proto::client::{StoreInterceptor, TracedChannel};
use tern_proto::store::v1 as pb;
use tern_proto::store::v1::{
    admin_client::AdminClient, directory_client::DirectoryClient,
    mailboxes_client::MailboxesClient, messages_client::MessagesClient,
};
use tern_proto::tls::ClusterTls;
use tern_trust::Role;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::faultproxy::FaultProxy;
use crate::service::ServiceProcess;

/// The trust domain of every test cluster's certificates.
pub const TRUST_DOMAIN: &str = "tern.test";

/// One tern-store process.
pub struct StoreNode {
    /// Raft id.
    pub id: u64,
    /// gRPC address (kept across restarts).
    pub addr: String,
    /// Metrics/health address of the current process.
    pub metrics: String,
    /// The address the other nodes use, when not `addr` (a [`FaultProxy`] in front of it).
    pub advertise: Option<String>,
    data_dir: PathBuf,
    process: Option<ServiceProcess>,
}

/// A cluster of tern-store processes.
pub struct StoreCluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    extra_args: Vec<String>,
    /// Client TLS per role, read once from the cluster's development PKI.
    clients: Mutex<HashMap<Role, Arc<ClusterTls>>>,
    /// The nodes, index 0 = id 1.
    pub nodes: Vec<StoreNode>,
    /// With [`StoreCluster::start_proxied`]: the proxy in front of each node (same index),
    /// through which every other node reaches it.
    pub proxies: Vec<FaultProxy>,
}

impl StoreNode {
    /// Its process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().and_then(ServiceProcess::pid)
    }
}

impl StoreCluster {
    /// No nodes yet; a scratch directory with a development PKI (trust domain `tern.test`,
    /// in [`StoreCluster::tls_dir`]) that every process of the test uses.
    fn new(bin: &Path, extra_args: Vec<String>) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("tern-cluster-").tempdir()?;
        tern_trust::pki::ensure_dev_pki(&dir.path().join("tls"), TRUST_DOMAIN)?;
        Ok(StoreCluster {
            bin: bin.to_path_buf(),
            dir,
            extra_args,
            clients: Mutex::default(),
            nodes: Vec::new(),
            proxies: Vec::new(),
        })
    }

    /// The development PKI: `ca.crt`, `ca.key`, and `ROLE.crt`/`ROLE.key` for every role.
    pub fn tls_dir(&self) -> PathBuf {
        self.dir.path().join("tls")
    }

    /// `--cluster-ca CA --cluster-cert CERT --cluster-key KEY` for a process of `role`.
    pub fn cluster_args(&self, role: Role) -> Vec<String> {
        let f = tern_trust::pki::files(&self.tls_dir(), role);
        [
            ("--cluster-ca", f.ca),
            ("--cluster-cert", f.cert),
            ("--cluster-key", f.key),
        ]
        .into_iter()
        .flat_map(|(flag, path)| [flag.to_string(), path.display().to_string()])
        .collect()
    }

    /// A `ternctl` command with the admin certificate of this cluster's PKI (no profile or
    /// certificate from the environment); add `--endpoint` and the subcommand.
    pub fn ternctl(&self) -> anyhow::Result<std::process::Command> {
        let admin = tern_trust::pki::files(&self.tls_dir(), Role::Admin);
        let mut cmd = std::process::Command::new(crate::bins::workspace_bin("ternctl")?);
        cmd.arg("--ca")
            .arg(admin.ca)
            .arg("--cert")
            .arg(admin.cert)
            .arg("--key")
            .arg(admin.key);
        for var in [
            "TERNCTL_PROFILE",
            "TERNCTL_CA",
            "TERNCTL_CERT",
            "TERNCTL_KEY",
        ] {
            cmd.env_remove(var);
        }
        Ok(cmd)
    }

    /// Client TLS as `role`, from the cluster's PKI.
    pub fn client_tls(&self, role: Role) -> anyhow::Result<Arc<ClusterTls>> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tls) = clients.get(&role) {
            return Ok(tls.clone());
        }
        let tls = ClusterTls::load(&tern_trust::pki::files(&self.tls_dir(), role))?;
        clients.insert(role, tls.clone());
        Ok(tls)
    }

    /// Starts `n` nodes and initializes them as one cluster; waits for a leader.
    pub async fn start(bin: &Path, n: usize, extra_args: &[&str]) -> anyhow::Result<Self> {
        let mut cluster = Self::new(bin, extra_args.iter().map(|s| s.to_string()).collect())?;
        for id in 1..=n as u64 {
            let data_dir = cluster.dir.path().join(format!("node-{id}"));
            let node = StoreNode {
                id,
                addr: "127.0.0.1:0".into(),
                metrics: String::new(),
                advertise: None,
                data_dir,
                process: None,
            };
            cluster.nodes.push(node);
            cluster.spawn(id as usize - 1).await?;
        }
        cluster.init_all().await?;
        Ok(cluster)
    }

    /// Initializes every node as one cluster (members at their advertised addresses) and
    /// waits for a leader.
    async fn init_all(&self) -> anyhow::Result<()> {
        let members = self
            .nodes
            .iter()
            .map(|n| pb::Member {
                id: n.id,
                addr: n.advertise.clone().unwrap_or_else(|| n.addr.clone()),
                ..Default::default()
            })
            .collect();
        let mut admin = self.admin(0).await?;
        admin
            .init(pb::InitClusterRequest { members })
            .await
            .context("initializing the cluster")?;
        self.wait_leader(Duration::from_secs(30)).await?;
        Ok(())
    }

    /// Like [`StoreCluster::start`], with a [`FaultProxy`] in front of every node: each node
    /// advertises its proxy, so the other nodes (Raft, read index, forwarded writes) reach it
    /// only through it, while the test's own clients ([`StoreCluster::channel`]) go straight
    /// to the node. Cutting node `i` off from its peers' traffic is then
    /// `cluster.proxies[i].set_mode(Mode::Blackhole)`.
    pub async fn start_proxied(bin: &Path, n: usize, extra_args: &[&str]) -> anyhow::Result<Self> {
        let mut cluster = Self::new(bin, extra_args.iter().map(|s| s.to_string()).collect())?;
        for id in 1..=n as u64 {
            let proxy = FaultProxy::start().await?;
            cluster.nodes.push(StoreNode {
                id,
                addr: "127.0.0.1:0".into(),
                metrics: String::new(),
                advertise: Some(proxy.addr().to_string()),
                data_dir: cluster.dir.path().join(format!("node-{id}")),
                process: None,
            });
            let i = id as usize - 1;
            cluster.spawn(i).await?;
            proxy.set_target(cluster.nodes[i].addr.parse()?);
            cluster.proxies.push(proxy);
        }
        cluster.init_all().await?;
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
            advertise: None,
            data_dir,
            process: None,
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
        let mut args: Vec<String> = extra_args.iter().map(|s| s.to_string()).collect();
        args.extend(["--initial-members".to_string(), spec]);
        let mut cluster = Self::new(bin, args)?;
        for (i, addr) in addrs.into_iter().enumerate() {
            let id = i as u64 + 1;
            let data_dir = cluster.dir.path().join(format!("node-{id}"));
            cluster.nodes.push(StoreNode {
                id,
                addr,
                metrics: String::new(),
                advertise: None,
                data_dir,
                process: None,
            });
            cluster.spawn(i).await?;
        }
        cluster.wait_leader(Duration::from_secs(30)).await?;
        Ok(cluster)
    }

    /// Starts (or restarts) node `i` on its address, and waits until it has bound its
    /// listeners (its addr file).
    pub async fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let cluster_args = self.cluster_args(Role::Store);
        let node = &mut self.nodes[i];
        std::fs::create_dir_all(&node.data_dir)?;
        let mut args = vec![
            "--id".to_string(),
            node.id.to_string(),
            "--listen".into(),
            node.addr.clone(),
            "--data-dir".into(),
            node.data_dir.display().to_string(),
        ];
        if let Some(a) = &node.advertise {
            args.extend(["--advertise".to_string(), a.clone()]);
        }
        args.extend(cluster_args);
        args.extend(self.extra_args.iter().cloned());
        let process = ServiceProcess::launch(
            &self.bin,
            &format!("tern-store node {}", node.id),
            &args,
            &node.data_dir.join("addr"),
            &node.data_dir.join("log"),
        )
        .await?;
        if let Some(a) = process.addr("grpc") {
            node.addr = a.to_string();
        }
        node.metrics = process.addr("metrics").unwrap_or_default().to_string();
        node.process = Some(process);
        Ok(())
    }

    /// SIGKILLs node `i` (no chance to flush anything: the crash case).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut p) = self.nodes[i].process.take() {
            p.kill();
        }
    }

    /// SIGTERMs node `i` and waits for it to exit (the clean-stop case).
    pub fn stop(&mut self, i: usize) {
        if let Some(mut p) = self.nodes[i].process.take() {
            p.stop();
        }
    }

    /// The data directory of node `i` (RocksDB in `db/`, snapshots in `snapshots/`).
    pub fn data_dir(&self, i: usize) -> &Path {
        &self.nodes[i].data_dir
    }

    /// Whether node `i` is running.
    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].process.is_some()
    }

    /// `http://addr` of node `i`.
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://{}", self.nodes[i].addr)
    }

    /// A channel to node `i`, connected now, with the certificate of `role` (the store
    /// admits each role to its own methods only).
    pub async fn channel(&self, i: usize, role: Role) -> anyhow::Result<Channel> {
        self.connect(&self.nodes[i].addr, role, Role::Store)
            .await
            .with_context(|| format!("node {}", self.nodes[i].id))
    }

    /// A channel to `addr` (`host:port`), connected now, as `role` to a server of
    /// `server_role` (a store node, or tern-queue's Enqueue port), with this cluster's PKI.
    pub async fn connect(
        &self,
        addr: &str,
        role: Role,
        server_role: Role,
    ) -> anyhow::Result<Channel> {
        let tls = self.client_tls(role)?;
        tern_proto::tls::endpoint(addr)?
            .timeout(Duration::from_secs(30))
            .connect_with_connector(tls.connector(server_role))
            .await
            .with_context(|| format!("connecting to {server_role} at {addr} as {role}"))
    }

    /// Admin client of node `i`, as an operator (role `admin`).
    pub async fn admin(&self, i: usize) -> anyhow::Result<AdminClient<Channel>> {
        Ok(AdminClient::new(self.channel(i, Role::Admin).await?))
    }

    /// Directory client of node `i`, as an operator (role `admin`).
    pub async fn directory(&self, i: usize) -> anyhow::Result<DirectoryClient<Channel>> {
        Ok(DirectoryClient::new(self.channel(i, Role::Admin).await?))
    }

    /// Logs `account` in on node `i` as an access node does (CheckPassword with the access
    /// role's certificate) and returns a channel whose calls carry the session token it got:
    /// the store admits an access node's mailbox calls only for that account.
    pub async fn login(
        &self,
        i: usize,
        account: &str,
        password: &str,
    ) -> anyhow::Result<TracedChannel> {
        let token = self.session_token(i, account, password).await?;
        Ok(InterceptedService::new(
            self.channel(i, Role::Access).await?,
            StoreInterceptor::with_token(&token),
        ))
    }

    /// The session token a password check on node `i` returns to an access node.
    pub async fn session_token(
        &self,
        i: usize,
        account: &str,
        password: &str,
    ) -> anyhow::Result<String> {
        let channel = self.channel(i, Role::Access).await?;
        let r = DirectoryClient::new(channel)
            .check_password(pb::CheckPasswordRequest {
                address: account.into(),
                password: password.into(),
                ..Default::default()
            })
            .await
            .with_context(|| format!("logging {account} in"))?
            .into_inner();
        let session = r
            .session
            .filter(|_| r.ok)
            .with_context(|| format!("{account}: wrong password, or no session token"))?;
        Ok(session.token)
    }

    /// [`StoreCluster::login`] with the test password of [`crate::seed_users`]
    /// (`pw-LOCALPART`).
    pub async fn session(&self, i: usize, account: &str) -> anyhow::Result<TracedChannel> {
        let local = account.split('@').next().unwrap_or(account);
        self.login(i, account, &format!("pw-{local}")).await
    }

    /// Mailboxes client of node `i` for `account`'s session ([`StoreCluster::session`]).
    pub async fn mailboxes(
        &self,
        i: usize,
        account: &str,
    ) -> anyhow::Result<MailboxesClient<TracedChannel>> {
        Ok(MailboxesClient::new(self.session(i, account).await?))
    }

    /// Messages client of node `i` for `account`'s session ([`StoreCluster::session`]);
    /// delivery is the queue's: `channel(i, Role::Queue)`.
    pub async fn messages(
        &self,
        i: usize,
        account: &str,
    ) -> anyhow::Result<MessagesClient<TracedChannel>> {
        // A long run's mailbox lists as one response of many MiB (80,000 records after a
        // 30-minute chaos run): more than tonic's 4 MiB default.
        Ok(MessagesClient::new(self.session(i, account).await?)
            .max_decoding_message_size(256 << 20))
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
        let text = std::fs::read_to_string(self.nodes[i].data_dir.join("log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
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
