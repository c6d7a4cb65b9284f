//! The whole platform as real processes on loopback, for end-to-end tests that follow mail
//! through every service (delivery traces, metrics): three tern-store nodes, one tern-queue,
//! one tern-smtp and one tern-access, on ports the OS assigns.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::access::AccessNode;
use crate::queue::QueueNode;
use crate::service::workspace_bin;
use crate::smtp::SmtpNode;
use crate::{seed_users, StoreCluster};

/// Every service, running.
pub struct Platform {
    /// The store nodes.
    pub cluster: StoreCluster,
    /// The queue node.
    pub queue: QueueNode,
    /// The SMTP node.
    pub smtp: SmtpNode,
    /// The access node (IMAP and POP3, plain-text login allowed on loopback).
    pub access: AccessNode,
    /// The development certificate tern-smtp and tern-access use.
    pub cert: PathBuf,
    scratch: tempfile::TempDir,
}

impl Platform {
    /// Starts everything with users `NAME@example.test` (password `pw-NAME`); `queue_args`
    /// go to tern-queue (e.g. `--transports remote.test=127.0.0.1:PORT`). Child processes
    /// inherit this process's environment (so `OTEL_EXPORTER_OTLP_ENDPOINT` reaches them).
    pub async fn start(users: &[&str], queue_args: &[&str]) -> anyhow::Result<Platform> {
        let scratch = tempfile::tempdir()?;
        let (cert, key) = tern_net::tls::ensure_dev_certificate(scratch.path(), &["localhost"])?;
        let cluster = StoreCluster::start(&workspace_bin("tern-store"), 3, &[]).await?;
        seed_users(&cluster, 0, users).await?;
        let stores: Vec<String> = cluster.nodes.iter().map(|n| n.addr.clone()).collect();
        let queue = QueueNode::start(scratch.path(), &stores, queue_args).await?;
        let smtp = SmtpNode::start(
            scratch.path(),
            &stores,
            std::slice::from_ref(&queue.grpc),
            &cert,
            &key,
            &[],
        )
        .await?;
        let cert_arg = cert.display().to_string();
        let key_arg = key.display().to_string();
        let access = AccessNode::start(
            scratch.path(),
            &stores,
            &["--tls-cert", &cert_arg, "--tls-key", &key_arg],
        )
        .await?;
        let p = Platform {
            cluster,
            queue,
            smtp,
            access,
            cert,
            scratch,
        };
        p.wait_ready(Duration::from_secs(30)).await?;
        Ok(p)
    }

    /// A scratch directory that lives as long as the platform.
    pub fn scratch(&self) -> &std::path::Path {
        self.scratch.path()
    }

    /// `(service, metrics address)` of every process, store nodes first.
    pub fn metrics_endpoints(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .cluster
            .nodes
            .iter()
            .map(|n| (format!("tern-store-{}", n.id), n.metrics.clone()))
            .collect();
        out.push(("tern-queue".into(), self.queue.metrics.clone()));
        out.push(("tern-smtp".into(), self.smtp.metrics.clone()));
        out.push(("tern-access".into(), self.access.metrics.clone()));
        out
    }

    /// Waits until every process answers `/readyz` with 200.
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
        Ok(())
    }
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
