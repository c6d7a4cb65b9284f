//! A real `tern-access` process on loopback ports the OS assigns, killed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// One tern-access process.
pub struct AccessNode {
    /// Bound POP3 address (`127.0.0.1:port`), if on.
    pub pop3: Option<String>,
    /// Bound POP3S address, if on.
    pub pop3s: Option<String>,
    /// Metrics/health address.
    pub metrics: String,
    log: PathBuf,
    child: Option<Child>,
}

/// A binary of this workspace built beside the running test (`target/debug/NAME`): tests of
/// one package use the binaries of another this way (cargo builds every workspace binary
/// for `cargo test --workspace`).
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join(name)
}

impl AccessNode {
    /// Starts tern-access against `store` (store gRPC addresses) with POP3 on an OS-assigned
    /// loopback port, plain-text auth allowed (loopback development mode), plus `extra_args`.
    /// Its log goes to `dir/access-N.log`.
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
        let bin = workspace_bin("tern-access");
        let n = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
        let addr_file = dir.join(format!("access-{n}.addr"));
        let log = dir.join(format!("access-{n}.log"));
        let stores: Vec<String> = store
            .iter()
            .map(|s| s.trim_start_matches("http://").to_string())
            .collect();
        let child = Command::new(&bin)
            .arg("--store")
            .arg(stores.join(","))
            .arg("--pop3-listen")
            .arg("127.0.0.1:0")
            .arg("--loopback-plaintext-auth")
            .arg(plaintext_auth.to_string())
            .arg("--metrics-listen")
            .arg("127.0.0.1:0")
            .arg("--addr-file")
            .arg(&addr_file)
            .args(extra_args)
            .env(
                "RUST_LOG",
                std::env::var("TERN_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut node = AccessNode {
            pop3: None,
            pop3s: None,
            metrics: String::new(),
            log,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(text) = std::fs::read_to_string(&addr_file) {
                for line in text.lines() {
                    match line.split_once('=') {
                        Some(("pop3", a)) => node.pop3 = Some(a.to_string()),
                        Some(("pop3s", a)) => node.pop3s = Some(a.to_string()),
                        Some(("metrics", a)) => node.metrics = a.to_string(),
                        _ => {}
                    }
                }
                return Ok(node);
            }
            if let Some(status) = node
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "tern-access exited at start ({status}): {}",
                    node.log_text()
                );
            }
            if Instant::now() > deadline {
                bail!("tern-access did not start within 30 s: {}", node.log_text());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The POP3 port.
    pub fn pop3_port(&self) -> u16 {
        port_of(self.pop3.as_deref())
    }

    /// The POP3S port.
    pub fn pop3s_port(&self) -> u16 {
        port_of(self.pop3s.as_deref())
    }

    /// Its log so far (for assertion messages).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILLs the process.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn port_of(addr: Option<&str>) -> u16 {
    addr.and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
}

impl Drop for AccessNode {
    fn drop(&mut self) {
        self.kill();
    }
}
