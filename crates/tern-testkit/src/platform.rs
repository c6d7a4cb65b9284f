//! The one way tests and benchmark drivers start Tern: any subset of the services as real
//! processes on loopback, on ports the OS assigns, every process killed when the
//! [`Platform`] is dropped.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use tern_testkit::Platform;
//! // One store node, users alice and bob (passwords pw-alice, pw-bob), an access node.
//! let p = Platform::builder().stores(1).users(&["alice", "bob"]).access(&[]).start().await?;
//! let port = p.access().pop3_port();
//! # let _ = port; Ok(()) }
//! ```
//!
//! Started in dependency order (store cluster with a leader, directory seeded, queue, SMTP,
//! access), then [`Platform::wait_ready`]: every process answers `/readyz`, and tern-smtp
//! greets 220 (its greeting follows its own store health check, which can lag `/readyz`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tern_trust::Role;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use crate::access::AccessNode;
use crate::bins::workspace_bin;
use crate::queue::QueueNode;
use crate::smtp::SmtpNode;
use crate::{seed_users, StoreCluster};

/// How long [`PlatformBuilder::start`] waits for every process to be ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// What to start; see [`Platform::builder`].
#[derive(Debug, Clone)]
pub struct PlatformBuilder {
    stores: usize,
    proxied: bool,
    store_bin: Option<PathBuf>,
    store_args: Vec<String>,
    deliver_on_accept: bool,
    users: Vec<String>,
    queue: Option<Vec<String>>,
    smtp: Option<Vec<String>>,
    access: Option<Vec<String>>,
    access_plaintext_auth: bool,
    access_tls: bool,
    scratch: Option<PathBuf>,
}

/// Running services.
pub struct Platform {
    /// The store nodes.
    pub cluster: StoreCluster,
    queue: Option<QueueNode>,
    smtp: Option<SmtpNode>,
    access: Option<AccessNode>,
    cert: PathBuf,
    key: PathBuf,
    scratch: Scratch,
}

/// The directory that holds service logs, addr files and the development certificate: a
/// temporary one removed with the platform, or one the caller owns.
enum Scratch {
    Temp(tempfile::TempDir),
    Given(PathBuf),
}

impl Scratch {
    fn path(&self) -> &Path {
        match self {
            Scratch::Temp(t) => t.path(),
            Scratch::Given(p) => p,
        }
    }
}

impl Default for PlatformBuilder {
    fn default() -> Self {
        PlatformBuilder {
            stores: 3,
            proxied: false,
            store_bin: None,
            store_args: Vec::new(),
            deliver_on_accept: true,
            users: Vec::new(),
            queue: None,
            smtp: None,
            access: None,
            access_plaintext_auth: true,
            access_tls: false,
            scratch: None,
        }
    }
}

fn owned(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

impl PlatformBuilder {
    /// Number of store nodes (default 3).
    pub fn stores(mut self, n: usize) -> Self {
        self.stores = n;
        self
    }

    /// Puts a fault-injecting proxy in front of every store node's advertised address
    /// ([`StoreCluster::start_proxied`]): the nodes and the services reach each node
    /// through its proxy; the test's own store clients reach the nodes directly.
    pub fn proxied_stores(mut self) -> Self {
        self.proxied = true;
        self
    }

    /// The tern-store binary (default: the workspace's, checked fresh).
    pub fn store_bin(mut self, bin: &Path) -> Self {
        self.store_bin = Some(bin.to_path_buf());
        self
    }

    /// Whether the store nodes deliver to local users at acceptance (default: yes, as a new
    /// cluster runs; no puts every message through a delivery worker).
    pub fn deliver_on_accept(mut self, on: bool) -> Self {
        self.deliver_on_accept = on;
        self
    }

    /// Extra flags for every store node.
    pub fn store_args(mut self, args: &[&str]) -> Self {
        self.store_args = owned(args);
        self
    }

    /// Users `NAME@example.test` with password `pw-NAME` (the domain example.test is always
    /// created).
    pub fn users(mut self, users: &[&str]) -> Self {
        self.users = owned(users);
        self
    }

    /// Starts a tern-queue node with these extra flags (retry times, DNS servers, ...).
    pub fn queue(mut self, args: &[&str]) -> Self {
        self.queue = Some(owned(args));
        self
    }

    /// Starts a tern-smtp node (and a queue node for it, if none was asked for) with these
    /// extra flags.
    pub fn smtp(mut self, args: &[&str]) -> Self {
        self.smtp = Some(owned(args));
        if self.queue.is_none() {
            self.queue = Some(Vec::new());
        }
        self
    }

    /// Starts a tern-access node (IMAP and POP3 on OS-assigned ports) with these extra
    /// flags.
    pub fn access(mut self, args: &[&str]) -> Self {
        self.access = Some(owned(args));
        self
    }

    /// Whether the access node allows plain-text login on loopback (default: yes).
    pub fn access_plaintext_auth(mut self, allowed: bool) -> Self {
        self.access_plaintext_auth = allowed;
        self
    }

    /// Whether the access node serves STARTTLS/STLS with the platform's certificate
    /// (default: no; IMAPS and POP3S listeners still need their `--*-listen` flags).
    pub fn access_tls(mut self, tls: bool) -> Self {
        self.access_tls = tls;
        self
    }

    /// Keeps logs, addr files and the certificate in `dir` (the caller removes it) instead of
    /// a temporary directory.
    pub fn scratch(mut self, dir: &Path) -> Self {
        self.scratch = Some(dir.to_path_buf());
        self
    }

    /// Starts what was asked for and waits until it is ready. Child processes inherit this
    /// process's environment (so `OTEL_EXPORTER_OTLP_ENDPOINT` reaches them).
    pub async fn start(self) -> anyhow::Result<Platform> {
        let scratch = match &self.scratch {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                Scratch::Given(dir.clone())
            }
            None => Scratch::Temp(
                tempfile::Builder::new()
                    .prefix("tern-platform-")
                    .tempdir()?,
            ),
        };
        let (cert, key) =
            tern_net::tls::ensure_dev_certificate(&scratch.path().join("tls"), &["localhost"])?;
        let store_bin = match &self.store_bin {
            Some(b) => b.clone(),
            None => workspace_bin("tern-store")?,
        };
        let mut store_args: Vec<&str> = self.store_args.iter().map(String::as_str).collect();
        store_args.extend(["--deliver-on-accept", bool_arg(self.deliver_on_accept)]);
        let cluster = if self.proxied {
            StoreCluster::start_proxied(&store_bin, self.stores, &store_args).await?
        } else {
            StoreCluster::start(&store_bin, self.stores, &store_args).await?
        };
        let users: Vec<&str> = self.users.iter().map(String::as_str).collect();
        seed_users(&cluster, 0, &users).await?;
        let mut p = Platform {
            cluster,
            queue: None,
            smtp: None,
            access: None,
            cert,
            key,
            scratch,
        };
        if let Some(args) = &self.queue {
            p.queue = Some(p.add_queue(&refs(args)).await?);
        }
        if let Some(args) = &self.smtp {
            p.smtp = Some(p.add_smtp(&refs(args)).await?);
        }
        if let Some(args) = &self.access {
            let mut all = if self.access_tls {
                p.tls_args()
            } else {
                Vec::new()
            };
            all.extend(args.iter().cloned());
            p.access = Some(
                p.add_access_with(self.access_plaintext_auth, &refs(&all))
                    .await?,
            );
        }
        p.wait_ready(READY_TIMEOUT).await?;
        Ok(p)
    }
}

fn bool_arg(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}

fn refs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

impl Platform {
    /// What to start: by default three store nodes and nothing else.
    pub fn builder() -> PlatformBuilder {
        PlatformBuilder::default()
    }

    /// Every service (three store nodes, queue, SMTP, access with STARTTLS) with users
    /// `NAME@example.test` (password `pw-NAME`); `queue_args` go to tern-queue (e.g.
    /// `--transports remote.test=127.0.0.1:PORT`).
    pub async fn start(users: &[&str], queue_args: &[&str]) -> anyhow::Result<Platform> {
        Platform::builder()
            .users(users)
            .queue(queue_args)
            .smtp(&[])
            .access(&[])
            .access_tls(true)
            .start()
            .await
    }

    /// gRPC addresses of the store nodes as the services reach them: each node's fault
    /// proxy on a platform built with [`PlatformBuilder::proxied_stores`], so a test can cut
    /// a service off from a node ([`crate::faultproxy::FaultProxy::block_from`] with
    /// the service's pid) as it cuts nodes off from each other.
    pub fn store_addrs(&self) -> Vec<String> {
        self.cluster
            .nodes
            .iter()
            .map(|n| n.advertise.clone().unwrap_or_else(|| n.addr.clone()))
            .collect()
    }

    /// The queue node. Panics when the platform was built without one: a mistake in the
    /// test, not in what it tests.
    pub fn queue(&self) -> &QueueNode {
        self.queue
            .as_ref()
            .expect("this Platform has no tern-queue (PlatformBuilder::queue)")
    }

    /// The queue node, to kill it.
    pub fn queue_mut(&mut self) -> &mut QueueNode {
        self.queue
            .as_mut()
            .expect("this Platform has no tern-queue (PlatformBuilder::queue)")
    }

    /// The SMTP node. Panics when the platform was built without one.
    pub fn smtp(&self) -> &SmtpNode {
        self.smtp
            .as_ref()
            .expect("this Platform has no tern-smtp (PlatformBuilder::smtp)")
    }

    /// The SMTP node, to kill it.
    pub fn smtp_mut(&mut self) -> &mut SmtpNode {
        self.smtp
            .as_mut()
            .expect("this Platform has no tern-smtp (PlatformBuilder::smtp)")
    }

    /// The access node. Panics when the platform was built without one.
    pub fn access(&self) -> &AccessNode {
        self.access
            .as_ref()
            .expect("this Platform has no tern-access (PlatformBuilder::access)")
    }

    /// The access node, to kill it.
    pub fn access_mut(&mut self) -> &mut AccessNode {
        self.access
            .as_mut()
            .expect("this Platform has no tern-access (PlatformBuilder::access)")
    }

    /// The development certificate tern-smtp and tern-access serve.
    pub fn cert(&self) -> &Path {
        &self.cert
    }

    /// Its private key.
    pub fn key(&self) -> &Path {
        &self.key
    }

    /// A scratch directory that lives as long as the platform (service logs are in it).
    pub fn scratch(&self) -> &Path {
        self.scratch.path()
    }

    /// Another tern-queue node on the same store cluster.
    pub async fn add_queue(&self, args: &[&str]) -> anyhow::Result<QueueNode> {
        let args = self.with_cluster_args(Role::Queue, args);
        QueueNode::start(self.scratch(), &self.store_addrs(), &refs(&args)).await
    }

    /// A channel to the queue node's Enqueue port, as tern-smtp connects (role `smtp`).
    pub async fn queue_channel(&self) -> anyhow::Result<tonic::transport::Channel> {
        let addr = &self.queue().grpc;
        self.cluster.connect(addr, Role::Smtp, Role::Queue).await
    }

    /// `args` after the cluster certificate flags of `role`.
    fn with_cluster_args(&self, role: Role, args: &[&str]) -> Vec<String> {
        let mut all = self.cluster.cluster_args(role);
        all.extend(args.iter().map(|s| s.to_string()));
        all
    }

    /// Another tern-smtp node on the same store cluster and queue node.
    pub async fn add_smtp(&self, args: &[&str]) -> anyhow::Result<SmtpNode> {
        let queue = std::slice::from_ref(&self.queue().grpc);
        let args = self.with_cluster_args(Role::Smtp, args);
        SmtpNode::start(
            self.scratch(),
            &self.store_addrs(),
            queue,
            &self.cert,
            &self.key,
            &refs(&args),
        )
        .await
    }

    /// Another tern-access node on the same store cluster, plain-text login allowed on
    /// loopback.
    pub async fn add_access(&self, args: &[&str]) -> anyhow::Result<AccessNode> {
        self.add_access_with(true, args).await
    }

    /// Another tern-access node, choosing whether plain-text login is allowed (pass
    /// [`Platform::tls_args`] among `args` for STARTTLS).
    pub async fn add_access_with(
        &self,
        plaintext_auth: bool,
        args: &[&str],
    ) -> anyhow::Result<AccessNode> {
        let args = self.with_cluster_args(Role::Access, args);
        AccessNode::start_with(
            self.scratch(),
            &self.store_addrs(),
            plaintext_auth,
            &refs(&args),
        )
        .await
    }

    /// `--tls-cert CERT --tls-key KEY` for the platform's development certificate.
    pub fn tls_args(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.cert.display().to_string(),
            "--tls-key".into(),
            self.key.display().to_string(),
        ]
    }

    /// `(service, metrics address)` of every process started, store nodes first.
    pub fn metrics_endpoints(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .cluster
            .nodes
            .iter()
            .map(|n| (format!("tern-store-{}", n.id), n.metrics.clone()))
            .collect();
        if let Some(q) = &self.queue {
            out.push(("tern-queue".into(), q.metrics.clone()));
        }
        if let Some(s) = &self.smtp {
            out.push(("tern-smtp".into(), s.metrics.clone()));
        }
        if let Some(a) = &self.access {
            out.push(("tern-access".into(), a.metrics.clone()));
        }
        out
    }

    /// Waits until every process answers `/readyz` with 200 and tern-smtp, if running,
    /// greets 220.
    pub async fn wait_ready(&self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        for (service, addr) in self.metrics_endpoints() {
            loop {
                if matches!(http_get(&addr, "/readyz").await, Ok((200, _))) {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("{service} at {addr} never became ready");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        if let Some(smtp) = &self.smtp {
            wait_greeting(smtp, deadline).await?;
        }
        Ok(())
    }
}

/// Waits until tern-smtp's MX listener greets 220 (it answers 421 until its store health
/// check has seen a leader).
pub async fn wait_greeting(smtp: &SmtpNode, deadline: Instant) -> anyhow::Result<()> {
    loop {
        if greets_220(&smtp.mx).await {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("tern-smtp never greeted 220:\n{}", smtp.log_text());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn greets_220(addr: &str) -> bool {
    let Ok(Ok(tcp)) =
        tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr)).await
    else {
        return false;
    };
    let mut line = String::new();
    let mut r = tokio::io::BufReader::new(tcp);
    matches!(
        tokio::time::timeout(Duration::from_secs(5), r.read_line(&mut line)).await,
        Ok(Ok(_))
    ) && line.starts_with("220")
}

/// A plain HTTP/1.1 GET of `path` on `addr`: the status code and the body.
pub async fn http_get(addr: &str, path: &str) -> anyhow::Result<(u16, String)> {
    let mut s = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .context("connect timed out")??;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .context("response timed out")??;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("no header end in {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("no status in {head:?}"))?;
    // axum answers /metrics with a Content-Length body (no chunking), so the rest is it.
    Ok((status, body.to_string()))
}
