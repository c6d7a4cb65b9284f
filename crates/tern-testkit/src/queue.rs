//! A real `tern-queue` process (Enqueue API and delivery workers) on loopback.

use std::path::Path;
use std::time::Duration;

use crate::service::{addr_list, ServiceProcess};

/// One tern-queue process.
pub struct QueueNode {
    /// Bound gRPC address of the Enqueue API.
    pub grpc: String,
    /// Metrics/health address.
    pub metrics: String,
    process: ServiceProcess,
}

impl QueueNode {
    /// Starts tern-queue against `store` with its API on an OS-assigned loopback port, fast
    /// polling for tests, plus `extra_args` (retry times, DNS servers, ports, ...).
    pub async fn start(dir: &Path, store: &[String], extra_args: &[&str]) -> anyhow::Result<Self> {
        let mut args = vec![
            "--store".to_string(),
            addr_list(store),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--poll-ms".into(),
            "100".into(),
            "--hostname".into(),
            "queue.example.test".into(),
        ];
        args.extend(extra_args.iter().map(|s| s.to_string()));
        let process = ServiceProcess::start("tern-queue", dir, &args).await?;
        Ok(QueueNode {
            grpc: process.addrs.get("grpc").cloned().unwrap_or_default(),
            metrics: process.addrs.get("metrics").cloned().unwrap_or_default(),
            process,
        })
    }

    /// `http://addr` of the Enqueue API.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.grpc)
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        self.process.log_text()
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
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
