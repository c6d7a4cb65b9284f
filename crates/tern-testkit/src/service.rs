//! A Tern service binary run as a child process on loopback, found through the addresses it
//! writes to its addr file, and killed when dropped. The store, queue, SMTP and access node
//! helpers are thin wrappers around it; the command line and the "has it started" step are
//! [`tern_spawn`]'s, shared with `cargo xtask up`.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tern_spawn::{Addrs, Startup};

pub use crate::bins::workspace_bin;

/// `HOST:PORT,HOST:PORT` for a `--store`/`--queue` flag, from addresses with or without
/// an `http://` scheme.
pub fn addr_list(addrs: &[String]) -> String {
    addrs
        .iter()
        .map(|s| s.trim_start_matches("http://"))
        .collect::<Vec<_>>()
        .join(",")
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
    pub addrs: Addrs,
    name: String,
    log: PathBuf,
    child: Option<Child>,
}

impl ServiceProcess {
    /// Starts workspace binary `bin` (checked fresh) with `args`, logging to
    /// `dir/<bin>-N.log`, and waits for its addr file.
    pub async fn start(bin: &str, dir: &Path, args: &[String]) -> anyhow::Result<Self> {
        let path = workspace_bin(bin)?;
        let n = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
        let addr_file = dir.join(format!("{bin}-{n}.addr"));
        let log = dir.join(format!("{bin}-{n}.log"));
        Self::launch(&path, bin, args, &addr_file, &log).await
    }

    /// Starts `path` with `args` plus `--metrics-listen 127.0.0.1:0 --addr-file ADDR_FILE`,
    /// appending its stderr to `log`, and waits until it has written the addr file (its
    /// listeners are bound). `name` is how errors call it. `RUST_LOG` is `TERN_TEST_LOG`
    /// (default `warn`), so a failing test can be rerun with more detail.
    pub async fn launch(
        path: &Path,
        name: &str,
        args: &[String],
        addr_file: &Path,
        log: &Path,
    ) -> anyhow::Result<Self> {
        let mut cmd = tern_spawn::service_command(path, args, addr_file)
            .with_context(|| format!("removing the old {}", addr_file.display()))?;
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        cmd.env(
            "RUST_LOG",
            std::env::var("TERN_TEST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", path.display()))?;
        let mut p = ServiceProcess {
            addrs: Addrs::new(),
            name: name.to_string(),
            log: log.to_path_buf(),
            child: Some(child),
        };
        p.addrs = p.wait_started(addr_file).await?;
        Ok(p)
    }

    async fn wait_started(&mut self, addr_file: &Path) -> anyhow::Result<Addrs> {
        let deadline = Instant::now() + tern_spawn::START_TIMEOUT;
        loop {
            let Some(child) = self.child.as_mut() else {
                bail!("{} is not running", self.name);
            };
            match tern_spawn::poll_startup(child, addr_file)? {
                Startup::Ready(addrs) => return Ok(addrs),
                Startup::Exited(status) => {
                    self.child = None;
                    bail!(
                        "{} exited at start ({status}); log:\n{}",
                        self.name,
                        self.log_tail()
                    );
                }
                Startup::Starting => {}
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not start within {:?}; log:\n{}",
                    self.name,
                    tern_spawn::START_TIMEOUT,
                    self.log_tail()
                );
            }
            tokio::time::sleep(tern_spawn::POLL_INTERVAL).await;
        }
    }

    /// The address called `name` in its addr file.
    pub fn addr(&self, name: &str) -> Option<&str> {
        self.addrs.get(name).map(String::as_str)
    }

    /// The port of address `name` (0 when absent).
    pub fn port(&self, name: &str) -> u16 {
        self.addr(name).and_then(tern_spawn::port_of).unwrap_or(0)
    }

    /// Its process id, while it runs (for reading /proc/PID, as the benchmarks do).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether it was started and not killed or stopped since.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Its log so far (for assertion messages).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last 30 lines of its log.
    pub fn log_tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// SIGKILLs the process (no chance to flush anything: the crash case).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM and returns at once, for a test that watches the process drain (see
    /// [`ServiceProcess::wait_exit`]).
    pub fn terminate(&self) {
        if let Some(c) = &self.child {
            // SAFETY: sending a signal to our own, not yet reaped, child process id.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
        }
    }

    /// Waits up to `limit` for the process to exit; its status, or `None` if it still
    /// runs (or was never started).
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            let status = self.child.as_mut()?.try_wait().ok().flatten();
            if let Some(status) = status {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERMs the process and waits up to 10 s for it to exit, then SIGKILLs it (the
    /// clean-stop case).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: sending a signal to our own, not yet reaped, child process id.
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
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
