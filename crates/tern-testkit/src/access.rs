//! A real `tern-access` process on loopback ports the OS assigns, killed when dropped.

use std::path::Path;
use std::time::Duration;

use crate::service::{addr_list, ServiceProcess};

/// One tern-access process.
pub struct AccessNode {
    /// Bound POP3 address (`127.0.0.1:port`), if on.
    pub pop3: Option<String>,
    /// Bound POP3S address, if on.
    pub pop3s: Option<String>,
    /// Bound IMAP address, if on.
    pub imap: Option<String>,
    /// Bound IMAPS address, if on.
    pub imaps: Option<String>,
    /// Metrics/health address.
    pub metrics: String,
    process: ServiceProcess,
}

impl AccessNode {
    /// Starts tern-access against `store` (store gRPC addresses) with POP3 and IMAP on
    /// OS-assigned loopback ports, plain-text auth allowed (loopback development mode), plus `extra_args`.
    /// Its log goes to `dir/tern-access-N.log`.
    pub async fn start(dir: &Path, store: &[String], extra_args: &[&str]) -> anyhow::Result<Self> {
        Self::start_with(dir, store, true, extra_args).await
    }

    /// [`AccessNode::start`], choosing whether plain-text authentication is allowed.
    pub async fn start_with(
        dir: &Path,
        store: &[String],
        plaintext_auth: bool,
        extra_args: &[&str],
    ) -> anyhow::Result<Self> {
        let mut args = vec![
            "--store".to_string(),
            addr_list(store),
            "--pop3-listen".into(),
            "127.0.0.1:0".into(),
            "--imap-listen".into(),
            "127.0.0.1:0".into(),
            "--loopback-plaintext-auth".into(),
            plaintext_auth.to_string(),
        ];
        args.extend(extra_args.iter().map(|s| s.to_string()));
        let process = ServiceProcess::start("tern-access", dir, &args).await?;
        Ok(AccessNode {
            pop3: process.addrs.get("pop3").cloned(),
            pop3s: process.addrs.get("pop3s").cloned(),
            imap: process.addrs.get("imap").cloned(),
            imaps: process.addrs.get("imaps").cloned(),
            metrics: process.addrs.get("metrics").cloned().unwrap_or_default(),
            process,
        })
    }

    /// The POP3 port.
    pub fn pop3_port(&self) -> u16 {
        self.process.port("pop3")
    }

    /// The POP3S port.
    pub fn pop3s_port(&self) -> u16 {
        self.process.port("pop3s")
    }

    /// The IMAP port.
    pub fn imap_port(&self) -> u16 {
        self.process.port("imap")
    }

    /// The IMAPS port.
    pub fn imaps_port(&self) -> u16 {
        self.process.port("imaps")
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Its log so far (for assertion messages).
    pub fn log_text(&self) -> String {
        self.process.log_text()
    }

    /// SIGKILLs the process.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Sends SIGTERM (the clean stop) without waiting.
    pub fn terminate(&self) {
        self.process.terminate();
    }

    /// Waits up to `limit` for the process to exit.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        self.process.wait_exit(limit).await
    }
}
