//! A Tern service binary run as a child process on loopback, found through the addresses it
//! writes to its addr file, and killed when dropped. The access and queue node helpers are
//! thin wrappers around it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

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

/// The first loopback TCP port from `from` (within 1000) that can be bound now: for peer
/// servers (Dovecot, Postfix) that take a port number rather than reporting one they chose.
pub fn free_loopback_port(from: u16) -> anyhow::Result<u16> {
    (from..from.saturating_add(1000))
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .with_context(|| {
            format!(
                "no free loopback port in {from}..{}",
                from.saturating_add(1000)
            )
        })
}

/// One running service process.
pub struct ServiceProcess {
    /// `name=HOST:PORT` lines of its addr file (`pop3`, `grpc`, `metrics`, ...).
    pub addrs: BTreeMap<String, String>,
    log: PathBuf,
    child: Option<Child>,
}

impl ServiceProcess {
    /// Starts workspace binary `bin` with `args` plus `--metrics-listen 127.0.0.1:0
    /// --addr-file ...`, logging to `dir/<bin>-N.log`, and waits for its addr file.
    pub async fn start(bin: &str, dir: &Path, args: &[String]) -> anyhow::Result<Self> {
        let path = workspace_bin(bin);
        let n = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
        let addr_file = dir.join(format!("{bin}-{n}.addr"));
        let log = dir.join(format!("{bin}-{n}.log"));
        let child = Command::new(&path)
            .args(args)
            .arg("--metrics-listen")
            .arg("127.0.0.1:0")
            .arg("--addr-file")
            .arg(&addr_file)
            .env(
                "RUST_LOG",
                std::env::var("TERN_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting {}", path.display()))?;
        let mut p = ServiceProcess {
            addrs: BTreeMap::new(),
            log,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(text) = std::fs::read_to_string(&addr_file) {
                for line in text.lines() {
                    if let Some((k, v)) = line.split_once('=') {
                        p.addrs.insert(k.to_string(), v.to_string());
                    }
                }
                return Ok(p);
            }
            if let Some(status) = p.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                bail!("{bin} exited at start ({status}): {}", p.log_text());
            }
            if Instant::now() > deadline {
                bail!("{bin} did not start within 30 s: {}", p.log_text());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The port of address `name` (0 when absent).
    pub fn port(&self, name: &str) -> u16 {
        self.addrs
            .get(name)
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or(0)
    }

    /// Its process id, while it runs (for reading /proc/PID, as the benchmarks do).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
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

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
